"""Path integration in a square box with place-cell targets (Sorscher, Mel, Ganguli, Ocko 2019).

An agent runs a smooth random walk in a ``box_width x box_height`` box centred at the origin;
the network receives its Cartesian velocity at each step (and a linear encoding of the
place-cell code at the start position as its initial state) and must output the place-cell
code of its current position.

Trajectories (the authors' generator, vectorised over the batch; dt = 0.02 s)::

    turn_t  ~ N(0, sigma_turn = 11.52 rad/s) * dt          (rad per step)
    speed_t ~ Rayleigh(b = 0.13 * 2 pi m/s)                 (m/s)
    near a wall (distance < 0.03 m) and heading towards it (|angle to wall normal| < pi/2):
        turn by sign(a) * (pi/2 - |a|) and slow down to 0.25 x speed
    x_{t+1} = x_t + speed_t * dt * (cos hd_t, sin hd_t),   hd_{t+1} = hd_t + turn_t

Place cells (``n_place_cells`` centres ``c_j`` uniform in the box, drawn from a FIXED seed so
every model shares them), tuning width ``sigma`` (m), surround VARIANCE ratio ``s``::

    p_j(x) = softmax_j(-|x - c_j|^2 / 2 sigma^2) - softmax_j(-|x - c_j|^2 / (2 s sigma^2)),
    then shifted by |min_j p_j| and renormalised to sum 1 (a distribution over cells).

``dog=False`` gives plain Gaussian (softmax) place cells; ``periodic=True`` a torus.
A curriculum: ``warmup_sequence_length=5, warmup_batches=4000`` trains on 5-step trajectories for
the first 4,000 batches and on ``sequence_length`` steps after; evaluation always uses
``sequence_length``.

Batch (batch first): ``(velocity [B, T, 2] m/step, init_code [B, Np], target_code [B, T, Np],
position [B, T, 2] m)``. Loss: softmax cross-entropy ``-sum_j p_j log softmax(logits)_j``,
averaged over batch and time. Decoding: the mean centre of the 3 most active output cells.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .base import GeneratedBatches, Task

_SPLIT_OFFSET = {"train": 0, "val": 10_000_019, "test": 20_000_003}
_ROWS_PER_BLOCK = 256   # positions per block of PlaceCells.activation (256 x 512 cells: 0.5 MB per temporary)


class PlaceCells:
    """Difference-of-Gaussians (or Gaussian) place cells with fixed centres.

    ``centres [Np, 2]`` in m, drawn uniformly in the box from ``torch.Generator(centre_seed)``; with
    ``centre_layout="numpy"`` drawn as the authors' code draws them (``np.random.seed(centre_seed)``,
    then the x and the y coordinates: with seed 0, their very centres); with ``centre_layout="halton"``
    the first ``Np`` points of a scrambled Halton sequence (``scipy.stats.qmc``, seeded by
    ``centre_seed``): as uniform on average, with fewer clumps and gaps (low discrepancy), but
    rectilinear (its base-2 and base-3 digits stratify x and y), and networks trained on it form
    square lattices aligned with the box (docs/grid-cells.md): the layout's structure, not only
    its density, pins the learned lattice.
    ``activation(pos [..., 2]) -> [..., Np]`` (non-negative, sums to 1 over cells).
    """

    def __init__(self, n: int = 512, sigma: float = 0.12, surround_scale: float = 2.0, dog: bool = True,
                 periodic: bool = False, box_width: float = 2.2, box_height: float = 2.2, centre_seed: int = 0,
                 centre_layout: str = "uniform"):
        if n < 3:
            raise ValueError(f"need at least 3 place cells (top-3 decoding), got {n}")
        if sigma <= 0 or surround_scale <= 1.0 and dog:
            raise ValueError(f"need sigma > 0 and surround_scale > 1 for DoG cells, got {sigma}, {surround_scale}")
        self.n, self.sigma, self.surround_scale, self.dog, self.periodic = n, sigma, surround_scale, dog, periodic
        self.box = (float(box_width), float(box_height))
        if centre_layout == "uniform":
            unit = torch.rand(n, 2, generator=torch.Generator().manual_seed(centre_seed), dtype=torch.float64)
        elif centre_layout == "numpy":   # the authors' draw: np.random.seed(centre_seed), then x, then y
            rng = np.random.RandomState(centre_seed)
            unit = torch.from_numpy(np.stack([rng.uniform(0, 1, n), rng.uniform(0, 1, n)], axis=1))
        elif centre_layout == "halton":
            from scipy.stats import qmc

            unit = torch.from_numpy(qmc.Halton(d=2, scramble=True, seed=centre_seed).random(n))
        else:
            raise ValueError(f"unknown centre_layout {centre_layout!r}; choose 'uniform', 'numpy' or 'halton'")
        self.centres = ((unit - 0.5) * torch.tensor(self.box, dtype=torch.float64)).float()

    def sq_dist(self, pos: torch.Tensor) -> torch.Tensor:
        """Squared distance ``[..., Np]`` from ``pos [..., 2]`` to every centre (wrapped on a torus)."""
        dx = (pos[..., 0:1] - self.centres[:, 0]).abs()
        dy = (pos[..., 1:2] - self.centres[:, 1]).abs()
        if self.periodic:
            dx = torch.minimum(dx, self.box[0] - dx)
            dy = torch.minimum(dy, self.box[1] - dy)
        return dx * dx + dy * dy

    def activation(self, pos: torch.Tensor) -> torch.Tensor:
        """The place-cell code ``[..., Np]`` (a distribution over cells) at positions ``pos [..., 2]`` (m)."""
        if pos.shape[-1] != 2:
            raise ValueError(f"positions must be [..., 2], got {tuple(pos.shape)}")
        if not torch.isfinite(pos).all():
            raise ValueError("positions hold NaN or inf")
        flat = pos.reshape(-1, 2).float()
        out = flat.new_empty(len(flat), self.n)
        # In blocks of rows whose temporaries stay in cache: each row's code is computed on its own,
        # so the numbers are bit for bit those of one pass over the batch, sooner (a training batch
        # of 200 x 20 positions makes ~20 memory-bound passes over [4000, 512] arrays; the ratio:
        # benches/bench_grid_training.py).
        for start in range(0, len(flat), _ROWS_PER_BLOCK):
            out[start:start + _ROWS_PER_BLOCK] = self._code(flat[start:start + _ROWS_PER_BLOCK])
        return out.reshape(*pos.shape[:-1], self.n)

    def _code(self, pos: torch.Tensor) -> torch.Tensor:
        """The code ``[P, Np]`` at ``pos [P, 2]`` (float32, finite)."""
        norm2 = self.sq_dist(pos)
        out = torch.softmax(-norm2 / (2 * self.sigma**2), dim=-1)
        if self.dog:
            out = out - torch.softmax(-norm2 / (2 * self.surround_scale * self.sigma**2), dim=-1)
            out = out + out.min(-1, keepdim=True).values.abs()
            out = out / out.sum(-1, keepdim=True)
        return out

    def decode(self, code: torch.Tensor, k: int = 3) -> torch.Tensor:
        """Position ``[..., 2]``: the mean centre of the ``k`` most active cells of ``code [..., Np]``."""
        idx = code.topk(k, dim=-1).indices
        return self.centres[idx].mean(-2)


def silent_units(maps: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """``[U]``: units whose ratemap ``[U, H, W]`` is constant over the box (to ``tol``): dead (a ReLU
    unit never active) or saturated; the "dead units" of issue 13's targets. Unvisited (NaN) bins
    are ignored (:func:`zoo.analysis.gridness.constant_maps`)."""
    from zoo.analysis.gridness import constant_maps

    return constant_maps(maps, tol)


class PathIntegration(Task):
    """The path-integration task; see the module docstring for the generative model and units."""

    name = "path-integration"
    # zoo.task(NAME) takes the place cells' layout from the model's card: a network is evaluated on the
    # place cells it was trained with (cards without them, the older ones, used the defaults)
    card_options = ("centre_seed", "centre_layout")

    def __init__(self, seed: int = 0, n_place_cells: int = 512, place_cell_rf: float = 0.12,
                 surround_scale: float = 2.0, dog: bool = True, periodic: bool = False,
                 box_width: float = 2.2, box_height: float = 2.2, sequence_length: int = 20,
                 dt: float = 0.02, centre_seed: int = 0, centre_layout: str = "uniform", batches_per_epoch: int = 1000,
                 eval_batches: int = 10, ratemap_positions: int = 200_000, ratemap_bins: int = 20,
                 warmup_sequence_length: int = 0, warmup_batches: int = 0):
        super().__init__(seed)
        if sequence_length < 1 or dt <= 0 or box_width <= 0 or box_height <= 0:
            raise ValueError("sequence_length, dt and the box size must be positive")
        if warmup_batches < 0 or (warmup_batches > 0 and warmup_sequence_length < 1):
            raise ValueError("a curriculum needs warmup_batches >= 0 and, when it is > 0, warmup_sequence_length >= 1; "
                             f"got warmup_batches={warmup_batches}, warmup_sequence_length={warmup_sequence_length}")
        self.place_cells = PlaceCells(n_place_cells, place_cell_rf, surround_scale, dog, periodic,
                                      box_width, box_height, centre_seed, centre_layout)
        self.box_width, self.box_height = float(box_width), float(box_height)
        self.periodic, self.sequence_length, self.dt = periodic, int(sequence_length), float(dt)
        # curriculum: the first `warmup_batches` training batches have `warmup_sequence_length` steps
        self.warmup_sequence_length, self.warmup_batches = int(warmup_sequence_length), int(warmup_batches)
        self.batches_per_epoch, self.eval_batches = int(batches_per_epoch), int(eval_batches)
        self.ratemap_positions, self.ratemap_bins = int(ratemap_positions), int(ratemap_bins)
        self.turn_sigma = 11.52          # rad/s, sd of the rotational velocity
        self.speed_scale = 0.13 * 2 * math.pi  # m/s, Rayleigh scale b
        self.border = 0.03               # m
        self.options = dict(n_place_cells=n_place_cells, place_cell_rf=place_cell_rf,
                            surround_scale=surround_scale, dog=dog, periodic=periodic, box_width=box_width,
                            box_height=box_height, sequence_length=sequence_length, dt=dt, centre_seed=centre_seed,
                            centre_layout=centre_layout, warmup_sequence_length=warmup_sequence_length,
                            warmup_batches=warmup_batches)

    # -- trajectories ------------------------------------------------------------------------
    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (-self.box_width / 2, self.box_width / 2, -self.box_height / 2, self.box_height / 2)

    def _avoid_wall(self, pos: torch.Tensor, hd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(near_wall [B] bool, turn [B] rad)`` for positions ``[B, 2]`` and headings ``[B]``."""
        x, y = pos[:, 0], pos[:, 1]
        w, h = self.box_width / 2, self.box_height / 2
        dists = torch.stack([w - x, h - y, w + x, h + y], dim=-1)
        d_wall, which = dists.min(-1)
        theta = which.to(hd.dtype) * (math.pi / 2)  # outward normal of the nearest wall
        a = torch.remainder(torch.remainder(hd, 2 * math.pi) - theta + math.pi, 2 * math.pi) - math.pi
        near = (d_wall < self.border) & (a.abs() < math.pi / 2)
        turn = torch.where(near, torch.sign(a) * (math.pi / 2 - a.abs()), torch.zeros_like(a))
        return near, turn

    def trajectories(self, batch_size: int, generator: torch.Generator,
                     sequence_length: int | None = None) -> dict[str, torch.Tensor]:
        """Raw trajectories: ``position [B, T+2, 2]`` (m), ``heading [B, T+2]`` (rad),
        ``speed [B, T+1]`` (m per step), all float64, from ``generator`` only; ``T`` is
        ``sequence_length`` (default: the task's)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        B, T, dt = batch_size, self.sequence_length if sequence_length is None else int(sequence_length), self.dt
        f64 = torch.float64
        pos = torch.zeros(B, T + 2, 2, dtype=f64)
        hd = torch.zeros(B, T + 2, dtype=f64)
        pos[:, 0, 0] = (torch.rand(B, generator=generator, dtype=f64) - 0.5) * self.box_width
        pos[:, 0, 1] = (torch.rand(B, generator=generator, dtype=f64) - 0.5) * self.box_height
        hd[:, 0] = torch.rand(B, generator=generator, dtype=f64) * 2 * math.pi
        random_turn = torch.randn(B, T + 1, generator=generator, dtype=f64) * self.turn_sigma
        # Rayleigh(b) = b * sqrt(-2 log U)
        u = torch.rand(B, T + 1, generator=generator, dtype=f64).clamp_min(1e-300)
        random_speed = self.speed_scale * torch.sqrt(-2.0 * torch.log(u))
        step = torch.zeros(B, T + 1, dtype=f64)
        for t in range(T + 1):  # a loop over time only; every step is vectorised over the batch
            v = random_speed[:, t]
            if self.periodic:
                turn = torch.zeros(B, dtype=f64)
            else:
                near, turn = self._avoid_wall(pos[:, t], hd[:, t])
                v = torch.where(near, 0.25 * v, v)
            turn = turn + dt * random_turn[:, t]
            step[:, t] = v * dt
            direction = torch.stack([torch.cos(hd[:, t]), torch.sin(hd[:, t])], dim=-1)
            pos[:, t + 1] = pos[:, t] + step[:, t, None] * direction
            hd[:, t + 1] = hd[:, t] + turn
        if self.periodic:
            box = torch.tensor([self.box_width, self.box_height], dtype=f64)
            pos = torch.remainder(pos + box / 2, box) - box / 2
        hd = torch.remainder(hd + math.pi, 2 * math.pi) - math.pi
        return {"position": pos, "heading": hd, "speed": step}

    def start_displacements(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Displacement ``[B, T, 2]`` (m) of each target position from the start, whose place-cell code
        is the initial state (:meth:`make_batch`'s alignment): what a network that does not
        path-integrate must bridge (:func:`zoo.analysis.pattern_formation.blurred_optimal_k`). On a
        torus each displacement is the shortest one between the wrapped positions."""
        position = self.trajectories(batch_size, generator)["position"]
        moved = position[:, 2:] - position[:, 1:2]
        if self.periodic:
            box = torch.tensor([self.box_width, self.box_height], dtype=moved.dtype)
            moved = torch.remainder(moved + box / 2, box) - box / 2
        return moved

    def make_batch(self, generator: torch.Generator, batch_size: int = 200,
                   sequence_length: int | None = None) -> tuple[torch.Tensor, ...]:
        """One batch ``(velocity [B,T,2], init_code [B,Np], target_code [B,T,Np], position [B,T,2])``.

        As in the authors' code: the velocity of step t moves the agent from ``position[t-1]``
        to ``position[t]`` (``init`` is the position before the first step)."""
        traj = self.trajectories(batch_size, generator, sequence_length)
        speed, hd, pos = traj["speed"][:, 1:], traj["heading"][:, 1:-1], traj["position"]
        velocity = torch.stack([speed * torch.cos(hd), speed * torch.sin(hd)], dim=-1).float()
        target_pos = pos[:, 2:].float()
        init_pos = pos[:, 1].float()
        return (velocity, self.place_cells.activation(init_pos), self.place_cells.activation(target_pos), target_pos)

    # -- Task interface -------------------------------------------------------------------------
    def dataloader(self, split: str, batch_size: int):
        if split not in _SPLIT_OFFSET:
            raise ValueError(f"unknown split {split!r}; use train, val or test")
        n = self.batches_per_epoch if split == "train" else self.eval_batches
        seed = self.seed + _SPLIT_OFFSET[split]
        # evaluation always uses the task's own sequence length (None); training follows the curriculum
        length = self.training_sequence_length if split == "train" else (lambda _: None)
        return GeneratedBatches(lambda g, index: self.make_batch(g, batch_size, length(index)), n, seed).loader()

    def training_sequence_length(self, batch_index: int) -> int:
        """Steps per trajectory of training batch ``batch_index`` (0-based, counted over epochs and, under
        DDP, over all ranks' batches together): ``warmup_sequence_length`` for the first
        ``warmup_batches`` batches, then ``sequence_length``."""
        return self.warmup_sequence_length if batch_index < self.warmup_batches else self.sequence_length

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "source": "generated trajectories (Sorscher et al. 2019 generator)",
                "seed": self.seed, **self.options, "turn_sigma_rad_s": self.turn_sigma,
                "speed_rayleigh_b_m_s": self.speed_scale, "border_m": self.border,
                "batches_per_epoch": self.batches_per_epoch}

    def model_kwargs(self) -> dict[str, Any]:
        return {"n_place_cells": self.place_cells.n}

    def example_batch(self, batch_size: int = 4, model: torch.nn.Module | None = None):
        return self.make_batch(torch.Generator().manual_seed(self.seed + _SPLIT_OFFSET["val"]), batch_size)

    def forward(self, model: torch.nn.Module, batch) -> torch.Tensor:
        """Logits ``[B, T, Np]`` of the model on ``(velocity, init_code, ...)``."""
        return model(batch[0], batch[1])

    def loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy ``-mean_{b,t} sum_j p_j log softmax(z)_j`` (one pass, ``log_softmax``).

        The log-softmax is taken in float32 even when the logits come from a bf16 autocast region
        (``--precision bf16-mixed``): on the CPU, autocast leaves ``log_softmax`` in bf16, whose
        8-bit mantissa is coarse against the loss's whole reducible range (about 0.1 nat, from
        ln 512 = 6.238 for uniform logits to the targets' entropy, 6.143 for the default cells)."""
        velocity, init_code, target, position = batch
        if target.shape[-1] != self.place_cells.n:
            raise ValueError(f"targets have {target.shape[-1]} cells, task has {self.place_cells.n}")
        logits = self.forward(model, batch)
        if logits.shape != target.shape:
            raise ValueError(f"model output {tuple(logits.shape)} does not match targets {tuple(target.shape)}")
        loss = -(target * torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)).sum(-1).mean()
        with torch.no_grad():
            decoded = self.place_cells.decode(logits.detach(), k=3)
            err_cm = 100.0 * (decoded - position).norm(dim=-1).mean()
        return loss, {"decoding_error_cm": err_cm}

    @torch.no_grad()
    def probe(self, model: torch.nn.Module, n_positions: int = 50_000) -> dict[str, float]:
        """Gridness during training (the emergence curve; ``zoo train`` logs it every
        ``probe_every_n_steps``): the card's grid metrics (:meth:`evaluate`) from one ratemap draw of
        ``n_positions`` fresh positions (a fixed seed, so the curve's points are comparable)."""
        return self._grid_metrics(model, seed=999, n_positions=n_positions)

    def evaluate(self, model: torch.nn.Module, split: str = "test", batch_size: int = 200,
                 max_batches: int | None = None, gridness: bool = True, decoding_positions: int = 200_000,
                 ratemap_draws: int = 2) -> dict[str, float]:
        """The card's metrics on fresh data of ``split``.

        Loss on ``max_batches`` batches; ``decoding_error_cm`` on at least ``decoding_positions``
        fresh positions (whole batches of ``batch_size`` trajectories), with ``decoding_error_cm_se``,
        the standard error over batches (independent trajectories). With ``gridness``, averaged over
        ``ratemap_draws`` independent ratemaps of every unit (``ratemap_positions`` positions each):
        the fractions of units with score_60 above 0.3 and 0.8, the fraction of the active units above
        the 95th percentile of their isotropic surrogates' scores (:func:`zoo.analysis.gridness.null_threshold`;
        chance: 5%), the mean rank of a unit's score_60 among its own surrogates' (:func:`zoo.analysis.gridness.null_rank`;
        chance: 0.5), the same fraction for the ellipse-corrected scores against equally corrected surrogates
        (``grid_fraction_ellipse_above_null``: sheared lattices; :func:`zoo.analysis.gridness.ellipse_corrected`;
        chance: 5%), the median score_60, the fraction of
        dead units (constant over the box: :func:`silent_units`), the medians over the active units of the angular
        order of their power within one shell of k* (``angular_order_2/4/6``: bands, squares, hexagons;
        :func:`zoo.analysis.spatial_spectra.angular_order`), how many different maps the active units carry
        (``map_dimension``, the participation ratio of their correlations: 1 when every unit has the same map,
        as on the loss plateau, where the fractions above count one pattern many times;
        :func:`zoo.analysis.gridness.map_dimension`), the median spacing of the grid units (score_60 > 0.3)
        and the peak of the maps' mean radial power spectrum (rad/m; Sorscher et al.: near k* =
        9.81 for the default place cells)."""
        metrics = super().evaluate(model, split, batch_size, max_batches)
        g = torch.Generator().manual_seed(self.seed + _SPLIT_OFFSET[split] + 3)
        per_batch = []
        with torch.no_grad():
            for _ in range(max(1, math.ceil(decoding_positions / (batch_size * self.sequence_length)))):
                _, extra = self.loss(model, self.make_batch(g, batch_size))
                per_batch.append(float(extra["decoding_error_cm"]))
        metrics["decoding_error_cm"] = float(np.mean(per_batch))
        metrics["decoding_error_cm_se"] = float(np.std(per_batch, ddof=1) / math.sqrt(len(per_batch))) if len(per_batch) > 1 else 0.0
        metrics["decoding_positions"] = len(per_batch) * batch_size * self.sequence_length
        if gridness and hasattr(model, "spatial_maps"):
            draws = [self._grid_metrics(model, self.seed + _SPLIT_OFFSET[split] + 7 + d) for d in range(ratemap_draws)]
            for key in draws[0]:   # the mean over the draws where it is defined (NaN if none)
                values = np.array([d[key] for d in draws], dtype=float)
                metrics[key] = float(values[np.isfinite(values)].mean()) if np.isfinite(values).any() else float("nan")
            metrics["ratemap_draws"] = ratemap_draws
        return metrics

    def _grid_metrics(self, model: torch.nn.Module, seed: int, n_positions: int | None = None) -> dict[str, float]:
        """Gridness, dead units, grid spacing and spectrum peak of one ratemap draw (see :meth:`evaluate`)."""
        from zoo.analysis.gridness import grid_geometry, grid_scores, map_dimension, null_rank, null_threshold
        from zoo.analysis.pattern_formation import optimal_k
        from zoo.analysis.spatial_spectra import (median_angular_order, power_spectra, radial_profile, ring_angular_order,
                                                 ring_radius)

        stack = model.spatial_maps(task=self, n_positions=n_positions or self.ratemap_positions, bins=self.ratemap_bins,
                                   seed=seed)
        scores = grid_scores(stack)
        s60 = scores["score_60"]
        spacing = grid_geometry(scores["sac"], (self.extent[1] - self.extent[0]) / self.ratemap_bins)["spacing"]
        k, profile = radial_profile(*power_spectra(stack))
        grid = s60 > 0.3
        threshold, null = null_threshold(stack, seed=seed)
        active = np.isfinite(null[:, 0])
        corrected = grid_scores(stack, ellipse=True)["score_60"]   # sheared lattices, against corrected surrogates
        corrected_threshold = null_threshold(stack, seed=seed, ellipse=True)[0]
        order = [float("nan")] * 3   # on the DoG ring k*; Gaussian place cells have none
        if self.place_cells.dog and active.any():
            k_star = optimal_k(self.place_cells.sigma, self.place_cells.surround_scale)
            order = median_angular_order(ring_angular_order(stack.maps.numpy()[active], stack.extent, k_star))
        return {"grid_fraction_0.3": float(grid.mean()), "grid_fraction_0.8": float((s60 > 0.8).mean()),
                "null_score_60_p95": threshold,
                "grid_fraction_above_null": float((s60[active] > threshold).mean()) if active.any() else 0.0,
                "null_rank_60": null_rank(s60, null)[0],
                "grid_fraction_ellipse_above_null":
                    float((corrected[active] > corrected_threshold).mean()) if active.any() else 0.0,
                "median_score_60": float(np.median(s60)),
                "dead_fraction": float(1 - active.mean()),
                "map_dimension": map_dimension(stack),
                "median_grid_spacing_m": float(np.nanmedian(spacing[grid])) if np.isfinite(spacing[grid]).any() else float("nan"),
                "spectrum_peak_rad_per_m": float(ring_radius(k, np.nanmean(profile, axis=0))),
                **{f"angular_order_{m}": float(v) for m, v in zip((2, 4, 6), order)}}
