"""Models of retinal ganglion cells (McIntosh, Maheswaranathan, Nayebi, Ganguli & Baccus, NeurIPS 2016).

Every model maps a stimulus window ``x [N, lags, H, W]`` (z-scored contrast, frames ``t-lags+1 .. t``,
10 ms each) to firing rates ``[N, cells]`` in spikes per 10 ms bin:

* :class:`RetinaCNN` (``retina-*/cnn``), the paper's network::

      a1 = relu(BN(conv_15x15(x)) + sigma_n xi)   8 channels, valid convolution (36 x 36 for 50 x 50)
      a2 = relu(BN(conv_11x11(a1)) + sigma_n xi)  8 channels (26 x 26)
      r  = softplus(W a2 + b)                     one output per cell
      xi ~ N(0, 1) in training only (Gaussian-noise injection, sigma_n = 0.1); BN: batch normalisation
      (as the lab's ``bn_cnn``; ``batchnorm=False`` gives the 2016 network without it, which on one CPU
      core and a few thousand steps loses its second layer to dead ReLUs under Adam)
      penalty = l2 * sum ||W_l||^2 + l1 * mean |r|            (L2 on weights, L1 on activity)

* :class:`RetinaLN` (``retina-*/ln``): per cell, one spatiotemporal filter ``k_c [lags, k, k]`` on a
  ``k x k`` cutout centred on the cell's receptive field, then ``r_c = softplus(k_c . x_cut + b_c)``;
  the filter is a sum of ``rank`` (default 2) space-time separable terms ``sum_r s_r(x) t_r(tau)``
  (530 numbers instead of 9000 per cell: estimable from minutes of data; ``rank=None``: free);
* the GLM (``retina-*/glm``): the same plus a spike-history filter ``h_c [hist]`` on the cell's own
  counts in the ``hist`` preceding bins, ``r_c = softplus(k_c . x_cut + h_c . y_past + b_c)``,
  fit by maximum Poisson likelihood (with an L2 penalty ``l2 ||k||^2``) on the recorded past spikes,
  and evaluated open loop (:meth:`RetinaLN.simulate`: its own simulated spikes feed the history).

All give receptive fields as spike-triggered averages of their own responses to white noise
(:func:`receptive_fields`). The CNN provides the :class:`~zoo.analysis.protocols.LayeredMap`
protocol (its three layers as maps) and :class:`~zoo.analysis.protocols.SpatialMaps` (first-layer
filters or the cells' receptive fields; extent in mm at 50 um per pixel).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.response_prediction import receptive_fields, spatial_rf
from ..registry import register

PIXEL_MM = 0.05  # mm per stimulus pixel, as zoo.tasks.retina (analyses never import tasks, nor models tasks)


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class RetinaCNN(nn.Module):
    """``forward(x [N, lags, F, F]) -> rates [N, n_cells]`` (spikes per bin); see the module docstring."""

    def __init__(self, n_cells: int = 8, lags: int = 40, frame_size: int = 50, channels: tuple = (8, 8),
                 kernels: tuple = (15, 11), noise_std: float = 0.1, l2: float = 1e-3, l1: float = 1e-3, seed: int = 0,
                 batchnorm: bool = True):
        super().__init__()
        if n_cells < 1 or lags < 1 or frame_size < kernels[0] + kernels[1] - 1:
            raise ValueError(f"need n_cells, lags >= 1 and frame_size >= {kernels[0] + kernels[1] - 1}, "
                             f"got {n_cells}, {lags}, {frame_size}")
        self.n_cells, self.lags, self.frame_size = n_cells, lags, frame_size
        self.noise_std, self.l2, self.l1 = noise_std, l2, l1
        self.input_shape = (lags, frame_size, frame_size)
        torch.manual_seed(seed)  # the initial weights (PyTorch's defaults) follow the seed
        self.conv1 = nn.Conv2d(lags, channels[0], kernels[0])
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernels[1])
        self.batchnorm = batchnorm
        # batch normalisation after each convolution (the lab's bn_cnn); an affine map in eval mode
        self.bn1 = nn.BatchNorm2d(channels[0]) if batchnorm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(channels[1]) if batchnorm else nn.Identity()
        side = frame_size - kernels[0] - kernels[1] + 2
        self.dense = nn.Linear(channels[1] * side * side, n_cells)
        with torch.no_grad():
            self.dense.weight.mul_(0.1)
            self.dense.bias.fill_(_inv_softplus(0.05))  # about 5 Hz at the start
        self._activity: torch.Tensor | None = None

    def _noisy(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise_std > 0:
            h = h + self.noise_std * torch.randn_like(h)
        return torch.relu(h)

    def layer_maps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """``[x -> a1, a1 -> a2, a2 -> r]`` on ``[B, lags, F, F]``, ``[B, 8, 36, 36]``, ``[B, 8, 26, 26]``."""
        return [lambda x: self._noisy(self.bn1(self.conv1_windows(x))), lambda a: self._noisy(self.bn2(self.conv2(a))),
                lambda a: F.softplus(self.dense(a.flatten(1)))]

    def conv1_windows(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1`` on windows ``[B, lags, F, F] -> [B, 8, 36, 36]`` by FFT (equal to ``self.conv1(x)``;
        about 10x faster in float32, and far faster in the float64 forward-mode passes of the analyses)."""
        H, W = x.shape[-2:]
        k = self.conv1.kernel_size[0]
        kernel = torch.fft.rfft2(self.conv1.weight.flip(-1, -2).to(x.dtype), s=(H, W))  # [C, lags, H, W//2+1]
        spec = torch.einsum("bjhw,cjhw->bchw", torch.fft.rfft2(x), kernel)
        return torch.fft.irfft2(spec, s=(H, W))[..., k - 1:, k - 1:] + self.conv1.bias.to(x.dtype)[:, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected stimulus windows [N, {self.lags}, {self.frame_size}, {self.frame_size}], "
                             f"got {tuple(x.shape)}")
        h = x
        for f in self.layer_maps():
            h = f(h)
        self._activity = h if self.training else None
        return h

    def conv1_blocks(self, stim: torch.Tensor) -> torch.Tensor:
        """First-layer pre-activations of every window of blocks ``stim [B, L + lags - 1, F, F]``:
        ``[B * L, 8, 36, 36]``, by FFT. Each frame is transformed once and shared by the ``lags``
        windows that contain it; a valid correlation equals the circular one on an ``F x F`` grid
        (no wrap-around reaches the valid part), so this equals ``conv1`` on each window."""
        B, Lt, H, W = stim.shape
        L, k = Lt - self.lags + 1, self.conv1.kernel_size[0]
        frames = torch.fft.rfft2(stim)  # [B, Lt, H, W//2+1]
        windows = frames.unfold(1, self.lags, 1)  # [B, L, H, W//2+1, lags]
        kernel = torch.fft.rfft2(self.conv1.weight.flip(-1, -2), s=(H, W))  # [C, lags, H, W//2+1]
        out = torch.fft.irfft2(torch.einsum("blhwj,cjhw->blchw", windows, kernel), s=(H, W))
        out = out[..., k - 1:, k - 1:] + self.conv1.bias[:, None, None]
        return out.reshape(B * L, *out.shape[2:])

    def forward_blocks(self, stim: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """Rates ``[B, cells, L]`` for the task's blocks; equal (to float32 rounding) to :meth:`forward`
        on every window, about 10x faster to train (the first layer by FFT, see :meth:`conv1_blocks`)."""
        B, L = stim.shape[0], stim.shape[1] - self.lags + 1
        maps = self.layer_maps()
        h = self._noisy(self.bn1(self.conv1_blocks(stim)))
        for f in maps[1:]:
            h = f(h)
        self._activity = h if self.training else None
        return h.reshape(B, L, -1).permute(0, 2, 1)

    def penalty(self) -> torch.Tensor:
        """``l2 * sum_l ||W_l||^2 + l1 * mean |r|`` (activity of the last training forward pass)."""
        out = self.l2 * sum((m.weight**2).sum() for m in (self.conv1, self.conv2, self.dense))
        if self._activity is not None:
            out = out + self.l1 * self._activity.abs().mean()
        return out

    def first_layer_filters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank-1 split of each first-layer filter: ``spatial [C, k, k]`` and ``temporal [C, lags]``
        (signs chosen so the spatial map's largest-magnitude pixel is positive; lag 0 = current frame)."""
        w = self.conv1.weight.detach()  # [C, lags, k, k]; channel j = frame t - lags + 1 + j
        C, L, k, _ = w.shape
        u, s, vh = torch.linalg.svd(w.reshape(C, L, k * k), full_matrices=False)
        temporal, spatial = u[:, :, 0] * s[:, :1], vh[:, 0]
        peak = spatial.gather(1, spatial.abs().argmax(1, keepdim=True)).sign()
        return (spatial * peak).reshape(C, k, k), (temporal * peak).flip(1)

    def spatial_maps(self, kind: str = "filters", n_frames: int = 2000, seed: int = 0):
        """``kind="filters"``: spatial parts of the first-layer filters ``[8, 15, 15]``;
        ``"receptive_fields"``: the cells' white-noise STA at its peak lag ``[cells, F, F]``. Extent in mm."""
        from zoo.analysis.protocols import MapStack

        if kind == "filters":
            maps = self.first_layer_filters()[0]
        elif kind == "receptive_fields":
            maps = spatial_rf(receptive_fields(self, n_frames=n_frames, seed=seed))
        else:
            raise ValueError(f"unknown kind {kind!r}; choose 'filters' or 'receptive_fields'")
        half = maps.shape[-1] * PIXEL_MM / 2
        return MapStack(maps=maps.float(), extent=(-half, half, -half, half), units="mm")


class RetinaLN(nn.Module):
    """LN model (``hist = 0``) or GLM (``hist > 0``): ``forward(x [N, lags, F, F], history [N, cells, hist])``.

    ``centres [cells][2]`` (row, column; px) are the cells' receptive-field centres, from the task
    (spike-triggered average of the training data); each cell sees a ``cutout x cutout`` patch there."""

    def __init__(self, n_cells: int = 8, lags: int = 40, frame_size: int = 50, centres=None, cutout: int = 15,
                 hist: int = 0, l2: float = 1e-3, seed: int = 0, rank: int | None = 2):
        super().__init__()
        if n_cells < 1 or lags < 1 or cutout < 1 or hist < 0 or (rank is not None and rank < 1):
            raise ValueError(f"need n_cells, lags, cutout, rank >= 1 and hist >= 0, got {n_cells}, {lags}, {cutout}, "
                             f"{rank}, {hist}")
        centres = torch.as_tensor(centres if centres is not None else [[frame_size // 2] * 2] * n_cells)
        if centres.shape != (n_cells, 2):
            raise ValueError(f"centres must be [n_cells={n_cells}, 2], got {tuple(centres.shape)}")
        self.n_cells, self.lags, self.frame_size, self.cutout, self.hist, self.l2 = \
            n_cells, lags, frame_size, cutout, hist, l2
        self.input_shape = (lags, frame_size, frame_size)
        g = torch.Generator().manual_seed(seed)
        self.rank = rank
        if rank is None:  # a free spatiotemporal filter per cell
            self.full_filters = nn.Parameter(torch.randn(n_cells, lags, cutout, cutout, generator=g) * 1e-3)
        else:  # a sum of `rank` space-time separable filters per cell (far fewer parameters to estimate)
            self.spatial = nn.Parameter(torch.randn(n_cells, rank, cutout, cutout, generator=g) / cutout)
            self.temporal = nn.Parameter(torch.zeros(n_cells, rank, lags))
        self.bias = nn.Parameter(torch.full((n_cells,), _inv_softplus(0.05)))
        if hist:
            self.history_filter = nn.Parameter(torch.zeros(n_cells, hist))
        off = torch.arange(cutout) - cutout // 2 + cutout // 2  # index into the padded frame
        self.register_buffer("rows", centres[:, 0, None].long() + off, persistent=False)  # [cells, k]
        self.register_buffer("cols", centres[:, 1, None].long() + off, persistent=False)
        self.centres = centres.tolist()

    @property
    def filters(self) -> torch.Tensor:
        """The stimulus filters ``k [cells, lags, k, k]`` (window channel j = frame ``t - lags + 1 + j``)."""
        if self.rank is None:
            return self.full_filters
        return torch.einsum("crl,crij->clij", self.temporal, self.spatial)

    def cutouts(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, lags, F, F] -> [N, lags, cells, k, k]`` (zeros outside the frame)."""
        p = self.cutout // 2
        xp = F.pad(x, (p, p, p, p))
        return xp[:, :, self.rows[:, :, None], self.cols[:, None, :]]

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected stimulus windows [N, {self.lags}, {self.frame_size}, {self.frame_size}], "
                             f"got {tuple(x.shape)}")
        drive = torch.einsum("nlcij,clij->nc", self.cutouts(x), self.filters) + self.bias
        if self.hist:
            if history is None:
                history = torch.zeros(x.shape[0], self.n_cells, self.hist, dtype=x.dtype)
            if history.shape != (x.shape[0], self.n_cells, self.hist):
                raise ValueError(f"history must be [N, {self.n_cells}, {self.hist}], got {tuple(history.shape)}")
            drive = drive + (history * self.history_filter).sum(-1)
        return F.softplus(drive)

    # -- block interface (used by the task: no [N, lags, F, F] window copies) ------------------------
    def drive_blocks(self, stim: torch.Tensor) -> torch.Tensor:
        """Stimulus drive incl. bias ``[B, cells, L]`` of blocks ``stim [B, L + lags - 1, F, F]``:
        the cutouts of every frame, then a grouped 1-D convolution over time (one group per cell)."""
        B, Lt = stim.shape[:2]
        k = self.cutout
        cut = self.cutouts(stim)  # [B, Lt, cells, k, k]
        if self.rank is None:
            cut = cut.permute(0, 2, 3, 4, 1).reshape(B, self.n_cells * k * k, Lt)
            weight = self.full_filters.permute(0, 2, 3, 1).reshape(self.n_cells, k * k, self.lags)
            return F.conv1d(cut, weight, self.bias, groups=self.n_cells)
        projected = torch.einsum("btcij,crij->bcrt", cut, self.spatial).reshape(B, -1, Lt)  # [B, cells*rank, Lt]
        return F.conv1d(projected, self.temporal, self.bias, groups=self.n_cells)

    def history_term(self, history: torch.Tensor, length: int) -> torch.Tensor:
        """``sum_j h_c[j] y_c(t - hist + j)`` ``[B, cells, L]`` from raw past counts ``[B, cells, L + hist]``."""
        return F.conv1d(history[:, :, :length + self.hist - 1], self.history_filter.unsqueeze(1), groups=self.n_cells)

    @torch.no_grad()
    def simulate(self, drive: torch.Tensor, n_trials: int, generator: torch.Generator,
                 max_rate: float = 2.0) -> torch.Tensor:
        """Run the GLM open loop on its stimulus drive ``[cells, T]`` (from :meth:`drive_blocks`): at each bin
        ``r(t) = softplus(drive(t) + h . y(t-hist .. t-1))`` and ``y(t) ~ Poisson(r(t))`` from its own past
        spikes; ``max_rate`` (spikes per bin, 200 Hz) caps the rate, since a fitted positive history filter can
        otherwise run away. Returns the rates ``[n_trials, cells, T]`` (spikes per bin); their mean over trials is the
        GLM's prediction of the trial-averaged rate from the stimulus alone. A loop over time only
        (each step depends on the previous spikes), vectorised over trials and cells."""
        C, T = drive.shape
        past = torch.zeros(n_trials, C, self.hist)
        out = torch.empty(n_trials, C, T)
        h = self.history_filter.detach()
        for t in range(T):
            rate = F.softplus(drive[:, t] + (past * h).sum(-1)).clamp_max(max_rate)
            out[:, :, t] = rate
            spikes = torch.poisson(rate, generator=generator)
            past = torch.cat([past[..., 1:], spikes[..., None]], dim=-1)
        return out

    def forward_blocks(self, stim: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """Rates ``[B, cells, L]`` for blocks (the task's batches); equal to :meth:`forward` on every window."""
        drive = self.drive_blocks(stim)
        if self.hist and history is not None:
            drive = drive + self.history_term(history, drive.shape[-1])
        return F.softplus(drive)

    def penalty(self) -> torch.Tensor:
        """``l2 * ||k||^2`` on the stimulus filters (a ridge prior; none on the history filter)."""
        return self.l2 * (self.filters**2).sum()


# ----------------------------------------------------------------------------- registry

_PAPER = "mcintosh2016"
_NOTE = ("Trained on a simulated retina (zoo.tasks.retina: ON/OFF bipolar subunits, contrast adaptation, amacrine "
         "inhibition, OFF-transient and ON-sustained ganglion cells, Poisson spikes with a 2 ms dead time), since "
         "real salamander recordings are not obtainable here; `--set data_file=...` is not a builder option, use "
         "`zoo.task(NAME, data_file=PATH)` to read a recording in the lab's layout. ")
_CNN_RECIPE = {"batch_size": 20, "lr": 2e-3, "optimizer": "adam", "max_steps": 2000, "limit_val_batches": 5,
               "eval_batch_size": 16, "storage_dtype": "float16"}
_LN_RECIPE = {"batch_size": 8, "lr": 5e-3, "optimizer": "adam", "max_steps": 1500, "limit_val_batches": 20,
              "eval_batch_size": 16, "storage_dtype": "float16"}


_EARLY_STOPPING = {"keep_best": True, "early_stop_patience": 5, "val_check_interval": 100, "limit_val_batches": 1.0}
_EARLY_STOPPING_NOTE = (" Validation-based early stopping, the same at every point of the data-efficiency curve: the "
                        "loss on the whole validation split (the last 10% of the training data) every 100 steps; the "
                        "exported weights are those of the lowest one, and training stops after 5 validations "
                        "(500 steps) without improvement.")
DATA_FRACTIONS = (0.05, 0.1, 0.25, 0.5)  # the data-efficiency curve below 100% (retina-natural/{cnn,ln}-<pct>pct)


def _register_family(task: str, stimulus: str) -> None:
    def cnn(n_cells: int | None = None, lags: int = 40, frame_size: int | None = None, noise_std: float = 0.1,
            l2: float = 1e-5, l1: float = 1e-5, seed: int = 0, batchnorm: bool = True) -> RetinaCNN:
        return RetinaCNN(n_cells or 8, lags, frame_size or 50, (8, 8), (15, 11), noise_std, l2, l1, seed, batchnorm)

    def ln(n_cells: int | None = None, lags: int = 40, frame_size: int | None = None, centres=None,
           cutout: int = 15, l2: float = 1e-3, seed: int = 0) -> RetinaLN:
        return RetinaLN(n_cells or 8, lags, frame_size or 50, centres, cutout, 0, l2, seed)

    def glm(n_cells: int | None = None, lags: int = 40, frame_size: int | None = None, centres=None,
            cutout: int = 15, hist: int | None = None, l2: float = 1e-3, seed: int = 0) -> RetinaLN:
        return RetinaLN(n_cells or 8, lags, frame_size or 50, centres, cutout, hist or 20, l2, seed)

    short = task.split("-")[1]
    for kind, builder, recipe, blocks, what in (
        ("cnn", cnn, _CNN_RECIPE, 5, "the paper's CNN (8@15x15 over 40 frames -> 8@11x11 -> dense -> softplus; "
                                     "noise injection, batch norm, L2 on weights, L1 on activity, Poisson loss)"),
        ("ln", ln, _LN_RECIPE, 25, "LN model (rank-2 15x15x40 spatiotemporal filter on a cutout at each cell's RF, "
                                   "softplus)"),
        ("glm", glm, _LN_RECIPE, 25, "GLM (the LN model plus a 20-bin spike-history filter, max Poisson likelihood; "
                                     "evaluated open loop)"),
    ):
        builder.__name__ = f"retina_{short}_{kind}"
        notes = (_NOTE + "Shorter training than the paper's (CPU, one shared core); float16 storage; weaker weight "
                 "penalties than the paper's 1e-3 (l2 = l1 = 1e-5: at 1e-3 the CNN stays below the LN model within "
                 "this budget).")
        curve = task == "retina-natural" and kind != "glm"  # the paper's data-efficiency curves: CNN and LN
        if curve:  # one protocol for every point of the curve: the weights of the lowest validation loss
            recipe = {**recipe, **_EARLY_STOPPING}
            notes += _EARLY_STOPPING_NOTE
        # the CNN trains on 20 blocks of 5 bins per step: batch-norm statistics over 20 stimulus segments
        register(f"{task}/{kind}", task=task, weights="file", paper=_PAPER, recipe=recipe, task_kwargs={"block": blocks},
                 description=f"Ganglion cells under {stimulus}: {what}.", notes=notes)(builder)
        if curve:
            for fraction in DATA_FRACTIONS:
                register(f"{task}/{kind}-{round(fraction * 100)}pct", task=task, weights="file", paper=_PAPER,
                         recipe=recipe, task_kwargs={"block": blocks, "train_fraction": fraction},
                         description=f"Ganglion cells under {stimulus}: {what}; trained on the first {fraction:.0%} of "
                         "the training data (a point of the data-efficiency curve; same recipe and steps).",
                         notes=notes)(builder)


_register_family("retina-natural", "natural scenes with fixational eye movements")
_register_family("retina-whitenoise", "binary white-noise checkerboards")
