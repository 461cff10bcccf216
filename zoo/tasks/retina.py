"""Ganglion-cell responses to white noise and natural scenes (McIntosh, Maheswaranathan et al., NeurIPS 2016).

Real salamander recordings are not obtainable here, so the task ships a **simulated retina whose
circuit is known** (:class:`RetinaCircuit`) and reads any file in the lab's HDF5 layout through the
one loader (:class:`RetinaFile`), so a user's own recording loads unchanged::

    zoo train retina-natural/cnn --set ...            # simulated data, generated once per seed
    zoo.task("retina-natural/cnn", data_file="my_recording.h5")   # a real recording, same code

The lab's layout (deep-retina; 10 ms bins, ``T`` bins, ``cells`` ganglion cells)::

    train/stimulus                    [T, H, W]     contrast (any float or integer dtype)
    train/response/firing_rate_10ms   [cells, T]    Hz (spike counts smoothed, sd 10 ms)
    train/response/binned             [cells, T]    spike counts per 10 ms bin
    train/time                        [T]           s (optional)
    test/stimulus, test/response/...  as train      (held-out stimulus)
    test/repeats/cellNN               [trials, T]   spike counts of cell NN on each repeat (optional;
                                                    without them no reliability ceiling is reported)

Stimuli (10 ms frames, 50 x 50 pixels of 50 um, in contrast units ``(I - mean) / mean``):

* ``whitenoise``: binary checkerboards of 2 x 2-pixel (100 um) squares, each +-``contrast`` (0.35)
  independently per frame;
* ``natural``: grey photographs bundled with scikit-image, each downsampled 3x, normalised to zero
  mean and RMS ``contrast``; a new image (random flip/transpose) every ``image_s`` = 1 s, moved by a
  fixational random walk (Gaussian steps of ``walk_px`` = 1.5 pixels per frame). Two photographs
  (camera, gravel) are held out for the test stimulus.

The circuit (all vectorised over time, space and cells; exact FIR filters, so generation in
chunks gives the same numbers as one pass): ON and OFF bipolar subunits on a 2-pixel grid
(centre-surround difference of Gaussians, biphasic temporal filters, divisive contrast gain control
with a slow time constant, half-wave rectification), wide-field amacrine inhibition onto bipolar
terminals, two ganglion-cell types (OFF transient, ON sustained) pooling rectified subunits of
their polarity, a softplus output nonlinearity saturating at 150 Hz, and spikes from a Bernoulli
process at 1 ms with a paralyzable 2 ms dead time (refractory period). Every parameter and its unit
is in :class:`CircuitParams`. Default data set: 60,000 training bins (10 min) and 3,000 test bins
(30 s) x 20 repeats, about 35 s to generate on one core, 306 MiB (stimulus stored as float16).

Batches (block sampling: one item is ``block`` consecutive bins, its stimulus history included)::

    (stimulus [B, block + lags - 1, H, W]  z-scored with the train split's mean and sd,
     counts   [B, cells, block]            spike counts (targets),
     history  [B, cells, block + hist]     the cells' own past counts (for GLMs; zeros before t=0))

:meth:`RetinaTask.forward` hands models with ``forward_blocks`` the blocks themselves (the CNN's first layer
by FFT shares each frame's transform among its windows) and unfolds each block into ``block`` windows of
``lags`` frames for any other model.
Loss: Poisson negative log-likelihood ``mean(rate - y log rate)`` (rate in spikes per bin) plus
the model's own ``penalty`` (L2 on weights, L1 on activity) when it has one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import file_lock
from .base import EpochShuffle, Task
from .sentiment import cache_dir

DATA_VERSION = 1
BIN_S = 0.01  # s, one time bin (10 ms), as the lab's data
PIXEL_MM = 0.05  # mm on the retina per stimulus pixel (50 um)
TRAIN_IMAGES = ("astronaut", "brick", "chelsea", "coffee", "coins", "grass", "moon", "rocket", "hubble_deep_field")
TEST_IMAGES = ("camera", "gravel")


class RetinaDataError(ValueError):
    """A retina data file is missing, unreadable, or lacks / mis-shapes a dataset of the lab's layout."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"retina data file {self.path}: {reason}")

    def __reduce__(self):  # picklable (it crosses process boundaries in `zoo figures --jobs`)
        return type(self), (self.path, self.reason)


# ============================================================================ stimuli


def white_noise(n_frames: int, generator: torch.Generator, size: int = 50, contrast: float = 0.35,
                checker: int = 2) -> torch.Tensor:
    """Binary checkerboard ``[n_frames, size, size]`` (float32): each ``checker x checker``-pixel square
    (2 px = 100 um) is +-``contrast`` independently per 10 ms frame."""
    if n_frames < 1 or size < 1 or checker < 1:
        raise ValueError(f"need n_frames, size, checker >= 1, got {n_frames}, {size}, {checker}")
    n = math.ceil(size / checker)
    bits = torch.randint(0, 2, (n_frames, n, n), generator=generator, dtype=torch.int8)
    frames = (bits.float() * 2 - 1) * contrast
    return frames.repeat_interleave(checker, 1).repeat_interleave(checker, 2)[:, :size, :size].contiguous()


def _photographs(names: tuple[str, ...], downsample: int = 3, contrast: float = 0.35) -> list[torch.Tensor]:
    """scikit-image's bundled photographs as grey contrast images ``[h, w]`` (mean 0, RMS ``contrast``)."""
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("natural-scene stimuli need scikit-image (`pip install scikit-image`)") from err
    images = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        if img.ndim == 3:
            img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721])  # luminance, as skimage.color.rgb2gray
        h, w = (img.shape[0] // downsample) * downsample, (img.shape[1] // downsample) * downsample
        img = img[:h, :w].reshape(h // downsample, downsample, w // downsample, downsample).mean((1, 3))
        img = (img - img.mean()) / (img.std() + 1e-12) * contrast
        images.append(torch.from_numpy(img).float())
    return images


def natural_scenes(n_frames: int, generator: torch.Generator, size: int = 50, images: tuple[str, ...] = TRAIN_IMAGES,
                   contrast: float = 0.35, image_s: float = 1.0, walk_px: float = 1.5) -> torch.Tensor:
    """Natural-scene movie ``[n_frames, size, size]``: a new photograph every ``image_s`` seconds
    (random choice, flip and transpose, random start), moved by a Gaussian random walk of sd
    ``walk_px`` pixels per 10 ms frame (fixational eye movements), clipped at the image border."""
    if n_frames < 1:
        raise ValueError(f"need n_frames >= 1, got {n_frames}")
    photos = _photographs(tuple(images), contrast=contrast)
    per_image = max(1, int(round(image_s / BIN_S)))
    n_seg = math.ceil(n_frames / per_image)
    choice = torch.randint(0, len(photos), (n_seg,), generator=generator)
    flips = torch.randint(0, 2, (n_seg, 3), generator=generator)
    steps = torch.randn(n_seg, per_image, 2, generator=generator) * walk_px
    starts = torch.rand(n_seg, 2, generator=generator)
    ar = torch.arange(size)
    out = torch.empty(n_seg * per_image, size, size)
    for s in range(n_seg):  # one iteration per image (per second), every frame of it at once
        img = photos[int(choice[s])]
        if flips[s, 0]:
            img = img.flip(0)
        if flips[s, 1]:
            img = img.flip(1)
        if flips[s, 2]:
            img = img.T
        room = torch.tensor([img.shape[0] - size, img.shape[1] - size], dtype=torch.float32)
        pos = starts[s] * room + steps[s].cumsum(0)
        pos = torch.minimum(pos.clamp_min(0), room).round().long()  # [per_image, 2]
        rows = pos[:, 0, None, None] + ar[None, :, None]
        cols = pos[:, 1, None, None] + ar[None, None, :]
        out[s * per_image:(s + 1) * per_image] = img[rows, cols]
    return out[:n_frames].contiguous()


def make_stimulus(kind: str, n_frames: int, generator: torch.Generator, size: int = 50,
                  split: str = "train") -> torch.Tensor:
    """``kind`` = "natural" or "whitenoise"; the test split of natural scenes uses the held-out photographs."""
    if kind == "whitenoise":
        return white_noise(n_frames, generator, size)
    if kind == "natural":
        return natural_scenes(n_frames, generator, size, TEST_IMAGES if split == "test" else TRAIN_IMAGES)
    raise ValueError(f"unknown stimulus kind {kind!r}; choose 'natural' or 'whitenoise'")


# ============================================================================ the circuit


@dataclass
class CircuitParams:
    """Every parameter of the simulated retina, with its unit (pixels are 50 um, bins 10 ms)."""

    size: int = 50                  # px, side of the stimulus
    subunit_spacing: int = 2        # px, grid spacing of bipolar subunits (100 um)
    centre_sigma: float = 1.0       # px, sd of the bipolar receptive-field centre (50 um)
    surround_sigma: float = 4.0     # px, sd of the bipolar surround (200 um)
    surround_weight: float = 0.7    # surround integral / centre integral (dimensionless)
    filter_bins: int = 30           # bins, length of the bipolar temporal filter (300 ms)
    on_tau: tuple = (0.020, 0.040)  # s, time constants of the ON filter's two gamma lobes (n = 3)
    on_biphasic: float = 0.5        # area of the ON filter's second lobe / first (0: monophasic)
    off_tau: tuple = (0.015, 0.030)  # s, the OFF filter's lobes (faster)
    off_biphasic: float = 0.9       # OFF filter is more transient
    adapt_tau: float = 0.5          # s, time constant of the local contrast estimate (slow gain control)
    adapt_bins: int = 150           # bins, length of the contrast-estimate kernel (3 tau)
    adapt_gain: float = 4.0         # 1/contrast, divisive gain: v = u / (1 + adapt_gain * c)
    bipolar_threshold: float = 0.02  # contrast units, rectification threshold of bipolar release
    amacrine_sigma: float = 6.0     # px, sd of amacrine pooling (300 um)
    amacrine_tau: float = 0.03      # s, amacrine low-pass time constant (delay 1 bin)
    amacrine_bins: int = 15         # bins, amacrine kernel length
    amacrine_weight: float = 0.3    # inhibition weight onto bipolar terminals (dimensionless)
    cells_per_type: int = 4         # ganglion cells of each type (OFF transient, ON sustained)
    ganglion_sigma: tuple = (2.5, 3.5)  # px, sd of subunit pooling (OFF, ON)
    ganglion_slope: tuple = (90.0, 90.0)   # 1/contrast, slope beta of softplus(beta (x - theta)) (OFF, ON)
    ganglion_threshold: tuple = (0.03, 0.02)  # contrast units, theta (OFF, ON)
    ganglion_scale: tuple = (12.0, 12.0)  # Hz, drive = scale * softplus(beta (x - theta)) (OFF, ON)
    max_rate: float = 150.0         # Hz, saturation: rate = max_rate * tanh(drive / max_rate)
    centre_region: tuple = (17.0, 33.0)  # px, ganglion centres uniform in this square
    dead_time_ms: int = 2           # ms, paralyzable refractory period
    spike_dt_ms: int = 1            # ms, time step of the spike generator
    seed: int = 0                   # seeds the cells' positions only (the circuit is otherwise fixed)

    def history_bins(self) -> int:
        """Bins of stimulus history the rate at one bin depends on (all FIR kernels chained)."""
        return self.filter_bins + self.adapt_bins + self.amacrine_bins


def _gamma_lobe(t: torch.Tensor, tau: float) -> torch.Tensor:
    g = (t / tau) ** 3 * torch.exp(-t / tau)
    return g / g.sum()


def biphasic_filter(bins: int, tau: tuple, biphasic: float) -> torch.Tensor:
    """``k[j]``, j = 0 (current frame) .. bins-1: difference of two 3rd-order gamma lobes, unit L2 norm."""
    t = (torch.arange(bins, dtype=torch.float64) + 1) * BIN_S
    k = _gamma_lobe(t, tau[0]) - biphasic * _gamma_lobe(t, tau[1])
    return (k / k.norm()).float()


def _gaussian2d(sigma: float, radius: int) -> torch.Tensor:
    ax = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def causal_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y[..., t] = sum_j kernel[j] x[..., t - j]`` (zeros before t = 0), by FFT; ``x [..., T]``, ``kernel [K]``."""
    T, K = x.shape[-1], kernel.shape[-1]
    n = 1 << (T + K - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x.double(), n) * torch.fft.rfft(kernel.double(), n), n)
    return y[..., :T].to(x.dtype)


class RetinaCircuit:
    """The ground-truth retina: ``rates(stimulus [T, H, W]) -> [cells, T]`` (Hz), ``spikes(...)``.

    Cells are ordered OFF transient (``cells_per_type``) then ON sustained. ``centres [cells, 2]``
    (row, column; px) and ``cell_types`` ("OFF", "ON") describe them. Deterministic: the only random
    draw is of the cell positions, from ``params.seed``.
    """

    def __init__(self, params: CircuitParams | None = None, **overrides: Any):
        p = params or CircuitParams()
        p = CircuitParams(**{**asdict(p), **overrides})
        self.p = p
        s = p.subunit_spacing
        self.grid = p.size // s  # subunits per side
        self.sub_pos = torch.arange(self.grid, dtype=torch.float32) * s + (s - 1) / 2  # px
        r = int(math.ceil(3 * p.surround_sigma))
        dog = _gaussian2d(p.centre_sigma, r) - p.surround_weight * _gaussian2d(p.surround_sigma, r)
        self.dog = (dog / dog.norm()).float()  # unit L2 norm: white noise of sd c gives drive sd c
        # the same filter as two separable Gaussians (each the outer product of a 1-D kernel with itself)
        ax = torch.arange(-r, r + 1, dtype=torch.float64)
        self._gauss1d = [(torch.exp(-ax**2 / (2 * sd**2)) / torch.exp(-ax**2 / (2 * sd**2)).sum()).float()
                         for sd in (p.centre_sigma, p.surround_sigma)]
        self._dog_weights = (1.0 / float(dog.norm()), -p.surround_weight / float(dog.norm()))
        self.radius = r
        self.k_on = biphasic_filter(p.filter_bins, p.on_tau, p.on_biphasic)
        self.k_off = -biphasic_filter(p.filter_bins, p.off_tau, p.off_biphasic)
        lag = torch.arange(p.adapt_bins, dtype=torch.float64)
        a = torch.exp(-lag * BIN_S / p.adapt_tau)
        a[0] = 0.0  # the contrast estimate uses the past only
        self.k_adapt = (a / a.sum()).float()
        lag = torch.arange(p.amacrine_bins, dtype=torch.float64)
        am = torch.exp(-(lag - 1).clamp_min(0) * BIN_S / p.amacrine_tau)
        am[0] = 0.0  # one-bin synaptic delay
        self.k_amacrine = (am / am.sum()).float()
        ra = int(math.ceil(2.5 * p.amacrine_sigma / s))
        self.amacrine_space = _gaussian2d(p.amacrine_sigma / s, ra).float()
        g_am = self.amacrine_space.sum(0)  # its 1-D factor (the 2-D Gaussian is the outer product)
        offset = torch.arange(self.grid + 2 * ra)[:, None] - torch.arange(self.grid)[None, :]
        self._amacrine_band = torch.where((offset >= 0) & (offset <= 2 * ra), g_am[offset.clamp(0, 2 * ra)],
                                          torch.zeros(()))  # [grid + 2 ra, grid]
        g = torch.Generator().manual_seed(p.seed)
        n = p.cells_per_type
        lo, hi = p.centre_region
        self.centres = lo + (hi - lo) * torch.rand(2 * n, 2, generator=g)  # px (row, col)
        self.cell_types = ["OFF"] * n + ["ON"] * n
        type_idx = torch.tensor([0] * n + [1] * n)
        sig = torch.tensor(p.ganglion_sigma)[type_idx]
        d2 = ((self.sub_pos[None, :, None] - self.centres[:, 0, None, None]) ** 2
              + (self.sub_pos[None, None, :] - self.centres[:, 1, None, None]) ** 2)  # [cells, grid, grid]
        w = torch.exp(-d2 / (2 * sig[:, None, None] ** 2)) * (d2 < (2.5 * sig[:, None, None]) ** 2)
        self.pool = (w / w.sum((1, 2), keepdim=True)).reshape(2 * n, -1)  # [cells, grid*grid]
        self.type_idx = type_idx
        self.slope = torch.tensor(p.ganglion_slope)[type_idx]
        self.threshold = torch.tensor(p.ganglion_threshold)[type_idx]
        self.scale = torch.tensor(p.ganglion_scale)[type_idx]

    def _bands(self, padded: int) -> list[torch.Tensor]:
        """Banded matrices ``M [padded, grid]`` with ``M[i, j] = g[i - s j]``: ``x @ M`` filters the rows of
        ``x`` with the 1-D Gaussian ``g`` and samples them at the subunit grid (stride ``s``), as one matmul."""
        s, k = self.p.subunit_spacing, 2 * self.radius + 1
        i = torch.arange(padded)[:, None] - s * torch.arange(self.grid)[None, :]
        inside = (i >= 0) & (i < k)
        return [torch.where(inside, g[i.clamp(0, k - 1)], torch.zeros(())) for g in self._gauss1d]

    @property
    def n_cells(self) -> int:
        return len(self.cell_types)

    # -- stages (each [..., T] along the last axis) ------------------------------------------
    def bipolar_drive(self, stimulus: torch.Tensor) -> torch.Tensor:
        """Linear drive ``u [2, grid, grid, T]`` (ON, OFF) of every subunit: DoG in space, biphasic in time."""
        x = F.pad(stimulus.float(), (self.radius,) * 4)  # [T, H + 2r, W + 2r], zero padding
        sp = 0
        for band, w in zip(self._bands(x.shape[-1]), self._dog_weights):  # separable: M^T x M per Gaussian
            sp = sp + w * (band.T @ x @ band)
        sp = sp.permute(1, 2, 0)  # [grid, grid, T]
        return torch.stack([causal_filter(sp, self.k_on), causal_filter(sp, self.k_off)])

    def bipolar_output(self, drive: torch.Tensor) -> torch.Tensor:
        """Contrast gain control then rectification: ``b = relu(u / (1 + g_a c) - theta_b)``,
        ``c = sqrt(sum_j k_adapt[j] u[t-j]^2)`` (past only, time constant ``adapt_tau``)."""
        return torch.relu(drive * self.gain(drive) - self.p.bipolar_threshold)

    def gain(self, drive: torch.Tensor) -> torch.Tensor:
        """The contrast gain ``1 / (1 + adapt_gain * c(t))`` (dimensionless, ``[..., T]``) of each subunit."""
        c = causal_filter(drive**2, self.k_adapt).clamp_min(0).sqrt()
        return 1 / (1 + self.p.adapt_gain * c)

    def amacrine(self, bipolar: torch.Tensor) -> torch.Tensor:
        """Wide-field amacrine signal ``[grid, grid, T]``: ON+OFF release pooled by a Gaussian of
        sd ``amacrine_sigma`` and low-passed (delay 1 bin, time constant ``amacrine_tau``)."""
        pooled = bipolar.sum(0).permute(2, 0, 1)[:, None]  # [T, 1, grid, grid]
        ra = self.amacrine_space.shape[-1] // 2
        padded = F.pad(pooled, (ra,) * 4, mode="replicate")[:, 0]  # [T, grid + 2 ra, grid + 2 ra]
        pooled = self._amacrine_band.T @ padded @ self._amacrine_band  # separable Gaussian, two matmuls
        return causal_filter(pooled.permute(1, 2, 0), self.k_amacrine)

    def _rates_exact(self, stimulus: torch.Tensor) -> torch.Tensor:
        drive = self.bipolar_drive(stimulus)
        b = self.bipolar_output(drive)
        b = torch.relu(b - self.p.amacrine_weight * self.amacrine(b)[None])  # inhibition at the terminals
        flat = b.reshape(2, -1, b.shape[-1])  # [polarity, grid*grid, T]; polarity 0 = ON, 1 = OFF
        x_off = self.pool[self.type_idx == 0] @ flat[1]
        x_on = self.pool[self.type_idx == 1] @ flat[0]
        x = torch.cat([x_off, x_on])  # [cells, T]
        drive = self.scale[:, None] * F.softplus(self.slope[:, None] * (x - self.threshold[:, None]))
        return self.p.max_rate * torch.tanh(drive / self.p.max_rate)

    def rates(self, stimulus: torch.Tensor, chunk: int = 4000, progress=None) -> torch.Tensor:
        """Firing rates ``[cells, T]`` (Hz) for ``stimulus [T, H, W]`` (contrast), computed in chunks of
        ``chunk`` bins, each with the exact stimulus history it needs (identical to one pass)."""
        if stimulus.dim() != 3 or stimulus.shape[1:] != (self.p.size, self.p.size):
            raise ValueError(f"stimulus must be [T, {self.p.size}, {self.p.size}], got {tuple(stimulus.shape)}")
        if not torch.isfinite(stimulus).all():
            raise ValueError("stimulus holds NaN or inf")
        T, hist = stimulus.shape[0], self.p.history_bins()
        out = torch.empty(self.n_cells, T)
        for start in range(0, T, chunk):
            lo = max(0, start - hist)
            stop = min(T, start + chunk)
            out[:, start:stop] = self._rates_exact(stimulus[lo:stop])[:, start - lo:]
            if progress is not None:
                progress.update(stop - start)
        return out

    @torch.no_grad()
    def receptive_fields(self, n_frames: int = 3000, lags: int = 40, seed: int = 0) -> torch.Tensor:
        """The true cells' spike-triggered averages of their rates to binary white noise (2-px checkers of
        +-0.35 contrast, expressed in units of that contrast): ``[cells, lags, H, W]``, lag 0 = current frame."""
        stim = white_noise(n_frames + lags - 1, torch.Generator().manual_seed(seed), self.p.size)
        r = self.rates(stim)[:, lags - 1:].double()  # [cells, n_frames]
        x = (stim / 0.35).double().reshape(len(stim), -1)
        sta = torch.stack([r @ x[lags - 1 - j: lags - 1 - j + n_frames] for j in range(lags)], 1)
        return (sta / r.sum(1)[:, None, None]).reshape(self.n_cells, lags, self.p.size, self.p.size).float()

    def spikes(self, rates: torch.Tensor, n_trials: int, generator: torch.Generator) -> torch.Tensor:
        """Spike counts ``[n_trials, cells, T]`` (int16) per 10 ms bin from ``rates [cells, T]`` (Hz).

        A Bernoulli event at each ``spike_dt_ms`` step with p = rate dt; an event becomes a spike only
        if no event fell in the preceding ``dead_time_ms`` (a paralyzable dead time: refractoriness)."""
        sub = int(round(BIN_S * 1000 / self.p.spike_dt_ms))
        dead = int(round(self.p.dead_time_ms / self.p.spike_dt_ms))
        p = (rates.clamp_min(0) * self.p.spike_dt_ms / 1000).clamp_max(0.95)
        C, T = rates.shape
        events = torch.rand(n_trials, C, T * sub, generator=generator) < p.repeat_interleave(sub, dim=-1)[None]
        ev = events.float()
        recent = F.max_pool1d(F.pad(ev.reshape(-1, 1, T * sub), (dead, 0))[..., :-1], dead, stride=1)
        kept = events & (recent.reshape(ev.shape) == 0)
        return kept.reshape(n_trials, C, T, sub).sum(-1).to(torch.int16)


def gaussian_smooth(x: torch.Tensor, sigma_bins: float = 1.0) -> torch.Tensor:
    """``x [..., T]`` convolved along time with a unit-area Gaussian of sd ``sigma_bins`` (edges replicated)."""
    r = int(math.ceil(4 * sigma_bins))
    ax = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(ax**2) / (2 * sigma_bins**2))
    k = (k / k.sum())[None, None]
    shape = x.shape
    flat = x.float().reshape(-1, 1, shape[-1])
    return F.conv1d(F.pad(flat, (r, r), mode="replicate"), k).reshape(shape)


def smooth_rate(counts: torch.Tensor, sigma_bins: float = 1.0) -> torch.Tensor:
    """Counts ``[..., T]`` per bin -> rate in Hz smoothed by a Gaussian of sd ``sigma_bins`` bins
    (the lab's ``firing_rate_10ms``: sd 10 ms)."""
    return gaussian_smooth(counts, sigma_bins) / BIN_S


# ============================================================================ generation


def _dataset_path(kind: str, seed: int, spec: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "retina" / f"retina-{kind}-seed{seed}-v{DATA_VERSION}-{digest}.h5"


def generate_dataset(path: os.PathLike | str, kind: str, seed: int, train_frames: int, test_frames: int,
                     n_repeats: int, circuit: RetinaCircuit, progress: bool = True) -> Path:
    """Simulate the retina on ``kind`` stimuli and write ``path`` atomically in the lab's layout.

    Train: one trial of ``train_frames`` bins; test: ``n_repeats`` trials of one ``test_frames``
    stimulus. The ground truth (true rates, cell centres and types, circuit parameters) goes into
    an extra ``truth/`` group that the loader does not need."""
    from tqdm.auto import tqdm

    from zoo.checkpoint import atomic_path

    path = Path(path)
    g = torch.Generator().manual_seed(seed * 7919 + {"natural": 1, "whitenoise": 2}[kind])
    total = train_frames + test_frames
    with tqdm(total=2 * total, desc=f"simulating retina ({kind}, seed {seed})", unit="bin",
              disable=not progress) as bar, atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["source"] = "zoo simulated retina (zoo.tasks.retina.RetinaCircuit)"
        f.attrs["stimulus_kind"] = kind
        f.attrs["seed"] = seed
        f.attrs["data_version"] = DATA_VERSION
        f.attrs["circuit"] = json.dumps(asdict(circuit.p))
        f.attrs["bin_s"] = BIN_S
        f.attrs["pixel_mm"] = PIXEL_MM
        truth = f.create_group("truth")
        truth["centres_px"] = circuit.centres.numpy()
        truth.attrs["cell_types"] = json.dumps(circuit.cell_types)
        for split, frames, trials in (("train", train_frames, 1), ("test", test_frames, n_repeats)):
            stim = make_stimulus(kind, frames, g, circuit.p.size, split)
            bar.update(frames)
            rates = circuit.rates(stim, progress=bar)
            counts = circuit.spikes(rates, trials, g)
            grp = f.create_group(split)
            grp.create_dataset("stimulus", data=stim.numpy().astype(np.float16),
                               chunks=(min(100, frames), circuit.p.size, circuit.p.size))
            grp["time"] = np.arange(frames) * BIN_S
            resp = grp.create_group("response")
            resp["binned"] = counts[0].numpy()
            resp["firing_rate_10ms"] = smooth_rate(counts.float().mean(0)).numpy()
            truth[f"{split}_rate"] = rates.numpy()
            if split == "test":
                rep = grp.create_group("repeats")
                for c in range(circuit.n_cells):
                    rep[f"cell{c + 1:02d}"] = counts[:, c].numpy()
    return path


# ============================================================================ the loader


@dataclass
class SplitInfo:
    frames: int
    cells: int
    height: int
    width: int
    repeat_keys: list[str] = field(default_factory=list)


class RetinaFile:
    """Reads any file in the lab's layout, in windows (never the whole stimulus at once).

    ``stimulus(split, start, stop) -> [stop-start, H, W]`` float32, ``counts(split, start, stop)``
    ``-> [cells, stop-start]``, ``repeats(split) -> [trials, cells, T]`` (None without repeats).
    Opening checks every dataset's presence, rank and length and raises :class:`RetinaDataError`
    naming the file and the dataset otherwise.
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        if not self.path.exists():
            raise RetinaDataError(self.path, "file does not exist")
        self._h5: h5py.File | None = None
        self.info: dict[str, SplitInfo] = {}
        try:
            with h5py.File(self.path, "r") as f:
                for split in ("train", "test"):
                    self.info[split] = self._check_split(f, split)
        except RetinaDataError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise RetinaDataError(self.path, f"unreadable HDF5 ({type(err).__name__}: {err})") from None
        if self.info["train"].cells != self.info["test"].cells:
            raise RetinaDataError(self.path, f"train has {self.info['train'].cells} cells, test {self.info['test'].cells}")
        if self.info["train"].height != self.info["test"].height or self.info["train"].width != self.info["test"].width:
            raise RetinaDataError(self.path, "train/stimulus and test/stimulus frames differ in size")

    def _check_split(self, f: h5py.File, split: str) -> SplitInfo:
        def need(key: str, ndim: int) -> h5py.Dataset:
            if key not in f:
                raise RetinaDataError(self.path, f"missing dataset {key!r} (the lab's layout: train/ and test/ with "
                                                 "stimulus [T,H,W] and response/binned [cells,T])")
            d = f[key]
            if not isinstance(d, h5py.Dataset) or d.ndim != ndim:
                shape = getattr(d, "shape", "a group")
                raise RetinaDataError(self.path, f"dataset {key!r} must have {ndim} dimensions, has shape {shape}")
            return d

        stim = need(f"{split}/stimulus", 3)
        binned = need(f"{split}/response/binned", 2)
        T = stim.shape[0]
        if binned.shape[1] != T:
            raise RetinaDataError(self.path, f"dataset '{split}/response/binned' has {binned.shape[1]} bins, "
                                             f"'{split}/stimulus' has {T}")
        if f"{split}/response/firing_rate_10ms" in f:
            fr = need(f"{split}/response/firing_rate_10ms", 2)
            if fr.shape != binned.shape:
                raise RetinaDataError(self.path, f"dataset '{split}/response/firing_rate_10ms' has shape {fr.shape}, "
                                                 f"'{split}/response/binned' {binned.shape}")
        if T < 1 or binned.shape[0] < 1:
            raise RetinaDataError(self.path, f"split {split!r} is empty")
        keys: list[str] = []
        if f"{split}/repeats" in f:
            keys = sorted(f[f"{split}/repeats"].keys())
            if len(keys) != binned.shape[0]:
                raise RetinaDataError(self.path, f"'{split}/repeats' has {len(keys)} cells, response {binned.shape[0]}")
            trials = None
            for k in keys:
                d = need(f"{split}/repeats/{k}", 2)
                if d.shape[1] != T or (trials is not None and d.shape[0] != trials):
                    raise RetinaDataError(self.path, f"dataset '{split}/repeats/{k}' has shape {d.shape}, expected "
                                                     f"[trials, {T}] with the same trials for every cell")
                trials = d.shape[0]
        return SplitInfo(T, binned.shape[0], stim.shape[1], stim.shape[2], keys)

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def __getstate__(self):  # a DataLoader worker reopens the file
        return {**self.__dict__, "_h5": None}

    def stimulus(self, split: str, start: int, stop: int) -> torch.Tensor:
        x = self.h5[f"{split}/stimulus"][start:stop]
        out = torch.from_numpy(np.asarray(x, dtype=np.float32))
        if not torch.isfinite(out).all():
            raise RetinaDataError(self.path, f"dataset '{split}/stimulus' holds NaN or inf in bins {start}..{stop}")
        return out

    def counts(self, split: str, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.h5[f"{split}/response/binned"][:, start:stop], dtype=np.float32))

    def repeats(self, split: str = "test") -> torch.Tensor | None:
        keys = self.info[split].repeat_keys
        if not keys:
            return None
        return torch.stack([torch.from_numpy(np.asarray(self.h5[f"{split}/repeats/{k}"][()], dtype=np.float32))
                            for k in keys], dim=1)  # [trials, cells, T]

    def stimulus_stats(self, split: str = "train", window: int = 2000) -> tuple[float, float]:
        """Mean and sd of the stimulus over ``split``, accumulated window by window."""
        T = self.info[split].frames
        s = s2 = 0.0
        n = 0
        for a in range(0, T, window):
            x = self.stimulus(split, a, min(T, a + window)).double()
            s += float(x.sum())
            s2 += float((x * x).sum())
            n += x.numel()
        mean = s / n
        return mean, math.sqrt(max(s2 / n - mean**2, 1e-12))


class _Blocks(Dataset):
    """Item ``i``: stimulus, counts and spike history of ``block`` bins starting at ``starts[i]``."""

    def __init__(self, data: RetinaFile, split: str, starts: np.ndarray, block: int, lags: int, hist: int,
                 mean: float, sd: float):
        self.data, self.split, self.starts, self.block = data, split, starts, block
        self.lags, self.hist, self.mean, self.sd = lags, hist, mean, sd

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        t0 = int(self.starts[i])
        stim = (self.data.stimulus(self.split, t0 - self.lags + 1, t0 + self.block) - self.mean) / self.sd
        counts = self.data.counts(self.split, t0, t0 + self.block)
        lo = max(0, t0 - self.hist)
        past = self.data.counts(self.split, lo, t0 + self.block)
        history = F.pad(past, (self.hist - (t0 - lo), 0))
        return stim, counts, history


# ============================================================================ metrics


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis (``[..., T]`` each)."""
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)


def split_half_ceiling(repeats: torch.Tensor, n_splits: int = 50, seed: int = 0) -> torch.Tensor:
    """The retina's reliability ceiling per cell: the mean Pearson correlation between the smoothed
    rates of two random halves of the repeated trials (``repeats [trials, cells, T]``), over ``n_splits`` splits."""
    n = repeats.shape[0]
    if n < 2:
        raise ValueError("the reliability ceiling needs at least 2 repeated trials")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_splits):
        perm = torch.randperm(n, generator=g)
        a = smooth_rate(repeats[perm[: n // 2]].mean(0))
        b = smooth_rate(repeats[perm[n // 2:]].mean(0))
        out.append(pearson(a, b))
    return torch.stack(out).mean(0)


def explainable_variance_fraction(pred: torch.Tensor, repeats: torch.Tensor) -> torch.Tensor:
    """Fraction of explainable variance explained per cell (Cadena et al. 2019):
    ``1 - (MSE(pred, r_bar) - s2/n) / (Var(r_bar) - s2/n)`` with ``r_bar`` the smoothed trial mean,
    ``s2`` the mean (over time) of the across-trial variance of the smoothed rates, ``n`` trials.
    ``pred [cells, T]`` in Hz (smoothed like the data), ``repeats [trials, cells, T]`` counts."""
    rates = smooth_rate(repeats)
    n = rates.shape[0]
    mean = rates.mean(0)
    noise = rates.var(0, unbiased=True).mean(-1) / n
    mse = ((pred - mean) ** 2).mean(-1)
    return 1 - (mse - noise) / (mean.var(-1, unbiased=False) - noise).clamp_min(1e-12)


# ============================================================================ the task


class RetinaTask(Task):
    """Ganglion-cell responses in 10 ms bins; see the module docstring. ``kind`` is the simulated stimulus.

    Options: ``data_file`` (a file in the lab's layout; default: the simulated retina, generated once
    per seed into ``$ZOO_CACHE_DIR/retina``), ``lags`` (frames of history, 40 = 400 ms), ``block``
    (bins per item), ``hist`` (bins of spike history for GLMs), ``val_fraction`` (last part of train),
    ``train_fraction`` (use only the first part of the training blocks: data-efficiency curves),
    ``train_frames`` / ``test_frames`` / ``n_repeats`` (size of the simulated set), ``retina_seed``
    (the simulated cells' positions; the data's noise and stimuli follow ``seed``), ``stimulus_mean``
    and ``stimulus_sd`` (the z-scoring; default: the train split's, recorded in the card's data so a
    model can be evaluated on other data with its own training normalisation).
    """

    kind = ""
    card_options = ("stimulus_mean", "stimulus_sd")  # zoo.task(NAME) takes them from the model's card
    train_frames_checked = 10_000  # bins of the training blocks on which evaluate() measures the fit

    def __init__(self, seed: int = 0, data_file: str | None = None, lags: int = 40, block: int = 25, hist: int = 20,
                 val_fraction: float = 0.1, train_fraction: float = 1.0, train_frames: int = 60_000,
                 test_frames: int = 3_000, n_repeats: int = 20, retina_seed: int = 0,
                 stimulus_mean: float | None = None, stimulus_sd: float | None = None):
        super().__init__(seed)
        if (stimulus_mean is None) != (stimulus_sd is None) or (stimulus_sd is not None and not stimulus_sd > 0):
            raise ValueError("give both stimulus_mean and stimulus_sd (> 0), or neither")
        if lags < 1 or block < 1 or hist < 1:
            raise ValueError(f"lags, block and hist must be positive, got {lags}, {block}, {hist}")
        if not 0 < train_fraction <= 1 or not 0 < val_fraction < 1:
            raise ValueError(f"need 0 < train_fraction <= 1 and 0 < val_fraction < 1, got {train_fraction}, {val_fraction}")
        self.data_file = data_file
        self.lags, self.block, self.hist = int(lags), int(block), int(hist)
        self.val_fraction, self.train_fraction = float(val_fraction), float(train_fraction)
        self.train_frames, self.test_frames, self.n_repeats = int(train_frames), int(test_frames), int(n_repeats)
        self.retina_seed = int(retina_seed)
        self._data: RetinaFile | None = None
        self._stats = None if stimulus_sd is None else (float(stimulus_mean), float(stimulus_sd))
        self._circuit: RetinaCircuit | None = None

    # -- data -------------------------------------------------------------------------------
    @property
    def circuit(self) -> RetinaCircuit:
        """The simulated retina (the ground truth of the default data)."""
        if self._circuit is None:
            self._circuit = RetinaCircuit(seed=self.retina_seed)
        return self._circuit

    def data_path(self) -> Path:
        if self.data_file:
            return Path(self.data_file).expanduser()
        spec = {"kind": self.kind, "train": self.train_frames, "test": self.test_frames, "repeats": self.n_repeats,
                "circuit": asdict(self.circuit.p)}
        return _dataset_path(self.kind, self.seed, spec)

    @property
    def data(self) -> RetinaFile:
        """The loader over the data file (generating the simulated set first if it is not cached)."""
        if self._data is None:
            path = self.data_path()
            if not self.data_file and not path.exists():
                generate_dataset(path, self.kind, self.seed, self.train_frames, self.test_frames, self.n_repeats,
                                 self.circuit)
            self._data = RetinaFile(path)
        return self._data

    @property
    def stimulus_stats(self) -> tuple[float, float]:
        if self._stats is None:
            self._stats = self.data.stimulus_stats("train")
        return self._stats

    def _starts(self, split: str) -> np.ndarray:
        first = max(self.lags - 1, 0)
        if split == "test":
            T = self.data.info["test"].frames
            return np.arange(first, T - self.block + 1, self.block)
        T = self.data.info["train"].frames
        starts = np.arange(first, T - self.block + 1, self.block)
        n_val = max(1, int(round(len(starts) * self.val_fraction)))
        if split == "val":
            return starts[-n_val:]
        train = starts[: len(starts) - n_val - 1]  # one block gap: no stimulus window spans the boundary
        return train[: max(1, int(round(len(train) * self.train_fraction)))]

    def dataloader(self, split: str, batch_size: int) -> DataLoader:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; use train, val or test")
        source = "test" if split == "test" else "train"
        mean, sd = self.stimulus_stats
        ds = _Blocks(self.data, source, self._starts(split), self.block, self.lags, self.hist, mean, sd)
        return DataLoader(ds, batch_size=batch_size, sampler=EpochShuffle(len(ds), self.seed, shuffle=split == "train"))

    def example_batch(self, batch_size: int = 4, model: torch.nn.Module | None = None):
        """A small batch straight from the circuit (no data file needed) unless ``data_file`` is set."""
        if self.data_file:
            return next(iter(self.dataloader("val", batch_size)))
        g = torch.Generator().manual_seed(self.seed + 99)
        length = self.lags - 1 + batch_size * self.block
        stim = make_stimulus(self.kind, length + self.hist, g, self.circuit.p.size, "test")
        rates = self.circuit.rates(stim)
        counts = self.circuit.spikes(rates, 1, g)[0].float()
        stim = (stim - stim.mean()) / stim.std()
        s0 = self.hist + self.lags - 1
        items = []
        for i in range(batch_size):
            t0 = s0 + i * self.block
            items.append((stim[t0 - self.lags + 1:t0 + self.block], counts[:, t0:t0 + self.block],
                          counts[:, t0 - self.hist:t0 + self.block]))
        return tuple(torch.stack(x) for x in zip(*items))

    def describe(self) -> dict[str, Any]:
        mean, sd = self.stimulus_stats
        out: dict[str, Any] = {"task": self.name, "seed": self.seed, "lags": self.lags, "block": self.block,
                               "hist": self.hist, "bin_s": BIN_S, "val_fraction": self.val_fraction,
                               "train_fraction": self.train_fraction, "stimulus_mean": mean, "stimulus_sd": sd}
        if self.data_file:
            out["source"] = f"recording {self.data_file} (lab's HDF5 layout)"
        else:
            out.update({"source": f"simulated retina (zoo.tasks.retina), {self.kind} stimulus; generated, since "
                                  "real salamander recordings are not obtainable here",
                        "train_frames": self.train_frames, "test_frames": self.test_frames,
                        "n_repeats": self.n_repeats, "retina_seed": self.retina_seed,
                        "circuit": asdict(self.circuit.p), "data_version": DATA_VERSION})
        return out

    def model_kwargs(self) -> dict[str, Any]:
        info = self.data.info["train"]
        return {"n_cells": info.cells, "lags": self.lags, "frame_size": info.height, "hist": self.hist,
                "centres": self.rf_centres()}

    @torch.no_grad()
    def rf_centres(self, max_frames: int = 30_000, window: int = 2000) -> list[list[int]]:
        """Each cell's receptive-field centre ``[cells][row, col]`` (px) from the spike-triggered
        average of the spatially whitened stimulus (each frame's spectrum divided by the square root
        of the mean power spectrum, so natural scenes' correlations do not smear it) over the first
        ``max_frames`` training bins: the pixel of largest energy (over the first 15 lags) of the
        STA blurred by a 5 x 5 box."""
        data, mean = self.data, self.stimulus_stats[0]
        info = data.info["train"]
        T = min(info.frames, max_frames)
        L = min(self.lags, 15)
        power = torch.zeros(info.height, info.width, dtype=torch.float64)
        for a in range(0, T, window):
            power += (torch.fft.fft2(data.stimulus("train", a, min(T, a + window)).double() - mean).abs() ** 2).sum(0)
        whitener = (power / T).clamp_min(1e-12).rsqrt()
        sta = torch.zeros(info.cells, L, info.height * info.width, dtype=torch.float64)
        for a in range(L - 1, T, window):
            b = min(T, a + window)
            frames = torch.fft.ifft2(torch.fft.fft2(data.stimulus("train", a - L + 1, b).double() - mean) * whitener).real
            stim = frames.reshape(b - a + L - 1, -1)
            y = data.counts("train", a, b).double()
            for j in range(L):  # one matmul per lag
                sta[:, j] += y @ stim[L - 1 - j: L - 1 - j + (b - a)]
        blurred = F.avg_pool2d(sta.reshape(-1, 1, info.height, info.width).float(), 5, stride=1, padding=2,
                               count_include_pad=False)
        energy = (blurred.reshape(info.cells, L, -1) ** 2).sum(1)
        idx = energy.reshape(info.cells, -1).argmax(-1)
        return [[int(i // info.width), int(i % info.width)] for i in idx]

    # -- model on data ----------------------------------------------------------------------
    def windows(self, stim: torch.Tensor) -> torch.Tensor:
        """``[B, block + lags - 1, H, W] -> [B * block, lags, H, W]`` (frame ``t - lags + 1 .. t`` per bin)."""
        B, Lt, H, W = stim.shape
        block = Lt - self.lags + 1
        return stim.unfold(1, self.lags, 1).permute(0, 1, 4, 2, 3).reshape(B * block, self.lags, H, W)

    def forward(self, model: torch.nn.Module, batch) -> torch.Tensor:
        """Predicted rates ``[B, cells, block]`` in spikes per bin. Models with ``forward_blocks`` take the
        blocks and raw history directly; others get every window ``[B * block, lags, H, W]``."""
        stim, counts, history = batch
        B, C, L = counts.shape
        if hasattr(model, "forward_blocks"):
            return model.forward_blocks(stim, history)
        x = self.windows(stim)
        if getattr(model, "hist", 0):
            h = history.unfold(2, self.hist, 1)[:, :, :L]  # [B, C, L, hist]: bins t-hist .. t-1
            out = model(x, h.permute(0, 2, 1, 3).reshape(B * L, C, self.hist))
        else:
            out = model(x)
        return out.reshape(B, L, -1).permute(0, 2, 1)

    def loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Poisson NLL ``mean(rate - y log rate)`` (+ the model's ``penalty``) and the batch's correlation."""
        counts = batch[1]
        rate = self.forward(model, batch)
        if rate.shape != counts.shape:
            raise ValueError(f"model output {tuple(rate.shape)} does not match targets {tuple(counts.shape)}")
        nll = (rate - counts * torch.log(rate + 1e-6)).mean()
        loss = nll + model.penalty() if hasattr(model, "penalty") else nll
        with torch.no_grad():
            corr = pearson(rate.detach().transpose(0, 1).reshape(counts.shape[1], -1),
                           counts.transpose(0, 1).reshape(counts.shape[1], -1)).nanmean()
        return loss, {"poisson_nll": nll.detach(), "bin_correlation": corr.float()}

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, split: str = "test", histories: torch.Tensor | None = None,
                batch_size: int = 16) -> torch.Tensor:
        """Predicted rates ``[cells, T']`` (Hz) over the whole of ``split`` (bins ``lags-1 ..``), in blocks.
        With ``histories [trials, cells, T]`` (past counts of each trial, for a model with spike
        history) the result is ``[trials, cells, T']``: the stimulus pathway is run once per block."""
        source = "test" if split == "test" else "train"
        mean, sd = self.stimulus_stats
        starts = self._starts(split)
        ds = _Blocks(self.data, source, starts, self.block, self.lags, self.hist, mean, sd)
        outs = []
        for i in range(0, len(ds), batch_size):
            items = [ds[j] for j in range(i, min(len(ds), i + batch_size))]
            stim, counts, hist = (torch.stack(x) for x in zip(*items))
            if histories is None:
                out = self.forward(model, (stim, counts, hist))[None]  # [1, b, C, block]
            else:
                padded = F.pad(histories, (self.hist, 0))
                trial_hist = torch.stack([padded[..., int(s): int(s) + self.block + self.hist]
                                          for s in starts[i:i + len(items)]], dim=1)  # [R, b, C, block+hist]
                if hasattr(model, "drive_blocks"):
                    drive = model.drive_blocks(stim)
                    out = torch.stack([F.softplus(drive + model.history_term(h, self.block)) for h in trial_hist])
                else:
                    out = torch.stack([self.forward(model, (stim, counts, h)) for h in trial_hist])
            outs.append(out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1))
        pred = torch.cat(outs, dim=-1) / BIN_S
        return pred if histories is not None else pred[0]

    def test_span(self) -> slice:
        starts = self._starts("test")
        return slice(int(starts[0]), int(starts[-1]) + self.block)

    @torch.no_grad()
    def simulate(self, model: torch.nn.Module, split: str = "test", n_trials: int = 50, seed: int = 0) -> torch.Tensor:
        """A GLM's open-loop prediction ``[cells, T']`` (Hz, mean over ``n_trials`` simulated trials) of
        ``split``: the stimulus drive in blocks, then :meth:`RetinaLN.simulate` over the whole span."""
        source = "test" if split == "test" else "train"
        mean, sd = self.stimulus_stats
        ds = _Blocks(self.data, source, self._starts(split), self.block, self.lags, self.hist, mean, sd)
        drives = []
        for i in range(0, len(ds), 16):
            stim = torch.stack([ds[j][0] for j in range(i, min(len(ds), i + 16))])
            d = model.drive_blocks(stim)  # [b, C, block]
            drives.append(d.permute(1, 0, 2).reshape(d.shape[1], -1))
        drive = torch.cat(drives, dim=1)
        rates = model.simulate(drive, n_trials, torch.Generator().manual_seed(seed))
        return rates.mean(0) / BIN_S

    @torch.no_grad()
    def test_prediction(self, model: torch.nn.Module, n_sim: int = 50, batch_size: int = 16,
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(pred [cells, T'] Hz, per_trial [trials, cells, T'] or None)`` over the test span, the
        prediction :meth:`evaluate` scores (pass it there and to :meth:`traces` to compute it once): a
        GLM open loop (mean of ``n_sim`` simulated trials, its own spikes feeding its history), a
        history model without a simulator conditioned on each recorded repeat's past, any other model
        from the stimulus. The model is run in eval mode."""
        was = model.training
        model.eval()
        try:
            return self._predict_test_span(model, n_sim, batch_size)
        finally:
            model.train(was)

    def _predict_test_span(self, model: torch.nn.Module, n_sim: int, batch_size: int,
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(model, "hist", 0) and hasattr(model, "simulate"):
            return self.simulate(model, n_trials=n_sim, seed=self.seed), None
        if getattr(model, "hist", 0):
            per_trial = self.predict(model, "test", histories=self.data.repeats("test"), batch_size=batch_size)
            return per_trial.mean(0), per_trial
        return self.predict(model, "test", batch_size=batch_size), None

    def traces(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predicted, recorded)`` rates ``[cells, T']`` (Hz) over the test span, both smoothed by the
        same 10 ms Gaussian; ``pred``: the first element of :meth:`test_prediction`."""
        return gaussian_smooth(pred), smooth_rate(self.data.repeats("test")[..., self.test_span()].mean(0))

    def heldout_set(self, kind: str | None = None, seed: int = 7_777, frames: int = 1_500,
                    repeats: int = 20) -> "RetinaTask":
        """A task over fresh held-out data with repeated trials: ``kind`` ("natural" or "whitenoise";
        default this task's) stimuli of ``frames`` bins, ``repeats`` trials, simulated with ``seed``
        (held-out photographs for natural scenes) and cached; normalised with *this* task's stimulus
        statistics (the trained model's), so a model is tested on another ensemble as it was trained.
        A task over a recording has no simulator: its held-out set is the recording's test split."""
        kind = kind or self.kind
        if kind not in RETINA_TASKS:
            raise ValueError(f"unknown stimulus kind {kind!r}; choose from {', '.join(RETINA_TASKS)}")
        mean, sd = self.stimulus_stats
        options = dict(seed=self.seed, lags=self.lags, block=self.block, hist=self.hist, stimulus_mean=mean,
                       stimulus_sd=sd, retina_seed=self.retina_seed)
        if self.data_file:
            if kind != self.kind:
                raise ValueError(f"{self.data_file} is a {self.kind} recording; no {kind} held-out set can be made")
            return type(self)(data_file=self.data_file, **options)
        spec = {"heldout": True, "frames": frames, "repeats": repeats, "retina_seed": self.retina_seed,
                "circuit": asdict(self.circuit.p)}
        path = _dataset_path(kind, seed, spec)
        with file_lock(path.with_name(f".{path.name}.lock")):  # processes sharing the cache simulate it once
            if not path.exists():
                generate_dataset(path, kind, seed, 200, frames, repeats, self.circuit, progress=False)
        return RETINA_TASKS[kind](data_file=str(path), **options)

    def heldout_kinds(self) -> list[str]:
        """The stimulus kinds :meth:`heldout_set` can make: both for the simulated retina, the
        recording's own for a recording."""
        return [self.kind] if self.data_file else list(RETINA_TASKS)

    def true_subunits(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The simulated circuit's bipolar subunit: ``(spatial [21, 21], temporal [2, lags])`` (ON, OFF
        temporal filters, lag 0 first); ``None`` for a recording (its circuit is unknown)."""
        if self.data_file:
            return None
        return self.circuit.dog, torch.stack([self.circuit.k_on, self.circuit.k_off])

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "test", batch_size: int = 16,
                 max_batches: int | None = None, n_sim: int = 50, train_fit: bool = True,
                 prediction: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> dict[str, float]:
        """Poisson NLL, and on the test split with repeats: per-cell and mean Pearson correlation of the
        prediction (smoothed by the same 10 ms Gaussian) with the trial-averaged smoothed rate, the split-half ceiling, and the fraction of
        explainable variance. A GLM is run open loop (``n_sim`` simulated trials; its own spikes feed
        its history), so every model predicts from the stimulus alone.

        The fit to the model's own training data, for the train/test gap of the data-efficiency curves:
        ``train_poisson_nll`` and ``train_bin_correlation`` (per-bin Pearson r of the prediction with
        the single-trial counts, mean over cells) on up to ``train_frames_checked`` bins of the training
        blocks actually used (``train_fraction``; a model with spike history is conditioned on the
        recorded past there), beside ``poisson_nll`` and ``test_bin_correlation`` (the same per-bin r
        against each held-out repeat, averaged over repeats) on the test split; ``train_fit=False``
        (or no training blocks) leaves the train fit out. ``prediction``: :meth:`test_prediction`'s
        result, when already computed."""
        repeats = self.data.repeats("test") if split == "test" else None
        if repeats is None:
            return super().evaluate(model, split, batch_size, max_batches)
        n_train = max(1, self.train_frames_checked // (self.block * batch_size))
        fit = super().evaluate(model, "train", batch_size, max_batches=n_train) if train_fit else {}
        was = model.training
        model.eval()
        rep = repeats[..., self.test_span()]
        extra: dict[str, float] = {}
        pred, per_trial = prediction if prediction is not None else self._predict_test_span(model, n_sim, batch_size)
        rates = pred if per_trial is None else per_trial
        nll = (rates * BIN_S - rep * torch.log(rates * BIN_S + 1e-6)).mean()
        if getattr(model, "hist", 0) and hasattr(model, "simulate"):
            # for comparison: one-step-ahead, conditioned on each recorded repeat's own past spikes
            cond = self.predict(model, "test", histories=repeats, batch_size=batch_size).mean(0)
            extra["test_correlation_conditional"] = float(pearson(gaussian_smooth(cond), smooth_rate(rep.mean(0))).mean())
        model.train(was)
        pred_bins = pred * BIN_S  # expected counts per bin
        pred = gaussian_smooth(pred)  # the same 10 ms Gaussian as the recorded rates
        target = smooth_rate(rep.mean(0))
        corr = pearson(pred, target).float()
        ceiling = split_half_ceiling(rep, seed=self.seed).float()
        fev = explainable_variance_fraction(pred, rep).float()
        single = torch.stack([pearson(pred_bins, trial) for trial in rep]).nanmean(0)  # [cells]
        extra["test_bin_correlation"] = float(single.mean())
        if "poisson_nll" in fit:
            extra.update(train_poisson_nll=fit["poisson_nll"], train_bin_correlation=fit["bin_correlation"])
        metrics = {"loss": float(nll), "poisson_nll": float(nll), "test_correlation": float(corr.mean()),
                   "ceiling_correlation": float(ceiling.mean()), "explained_variance_fraction": float(fev.mean()),
                   "test_correlation_sem": float(corr.std() / math.sqrt(len(corr))) if len(corr) > 1 else 0.0, **extra}
        for c in range(len(corr)):
            metrics[f"test_correlation_cell{c + 1:02d}"] = float(corr[c])
            metrics[f"ceiling_correlation_cell{c + 1:02d}"] = float(ceiling[c])
        return metrics


class NaturalScenes(RetinaTask):
    """Ganglion cells under natural scenes with fixational eye movements (simulated retina by default)."""

    name = "retina-natural"
    kind = "natural"


class WhiteNoise(RetinaTask):
    """Ganglion cells under binary white-noise checkerboards (simulated retina by default)."""

    name = "retina-whitenoise"
    kind = "whitenoise"


RETINA_TASKS = {"natural": NaturalScenes, "whitenoise": WhiteNoise}
