"""Radially averaged Fourier power spectra of spatial maps, and the ring where their power peaks.

For maps ``r_u(x)`` on an ``n x n`` grid of bin size ``d`` (m), the power spectrum is
``P_u(k) = |FFT(r_u - mean r_u)|^2`` at wave vectors ``k = 2 pi (i, j) / (n d)`` (rad/m). The
radial average bins ``|k|`` in shells of width ``dk = 2 pi / (n d)`` (the Fourier lattice
spacing). The ring radius is the shell with the largest mean power (DC excluded); the power
fraction near the ring is the share of a map's non-DC power within ``+- dk`` of it.

In the grid-cell theory (Sorscher et al. 2019) grid maps are built from plane waves on the ring
``|k| = k*`` where the place-cell tuning's power ``|p~(k)|^2`` peaks (see
:mod:`zoo.analysis.pattern_formation`).
"""

from __future__ import annotations

import numpy as np
import torch

from .protocols import MapStack, SpatialMaps
from .registry import AnalysisResult, register_analysis


def _maps_and_extent(maps, extent):
    if isinstance(maps, MapStack):
        maps, extent = maps.maps, maps.extent
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[1] < 2 or maps.shape[2] < 2:
        raise ValueError(f"maps must be [U, H, W] with H, W >= 2, got {maps.shape}")
    if extent is None or len(extent) != 4:
        raise ValueError("give the maps' extent (xmin, xmax, ymin, ymax) or a MapStack")
    if np.isinf(maps).any():
        raise ValueError("maps hold inf values")
    return maps, tuple(float(e) for e in extent)


def power_spectra(maps, extent=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(power [U, H, W], kx [W], ky [H])``: mean-removed 2-D power spectra (NaN bins set to the
    map's mean), with wave numbers in rad per unit of ``extent``; ``fftshift``-ed (k = 0 at centre)."""
    maps, extent = _maps_and_extent(maps, extent)
    h, w = maps.shape[1:]
    mean = np.nanmean(maps, axis=(1, 2), keepdims=True)
    mean = np.nan_to_num(mean)
    centred = np.where(np.isnan(maps), 0.0, maps - mean)
    power = np.abs(np.fft.fft2(centred)) ** 2 / (h * w)
    kx = 2 * np.pi * np.fft.fftfreq(w, d=(extent[1] - extent[0]) / w)
    ky = 2 * np.pi * np.fft.fftfreq(h, d=(extent[3] - extent[2]) / h)
    return np.fft.fftshift(power, axes=(1, 2)), np.fft.fftshift(kx), np.fft.fftshift(ky)


def shell_index(kx: np.ndarray, ky: np.ndarray, dk: float) -> np.ndarray:
    """Shell ``[len(ky), len(kx)]`` of every wave vector: ``rint(|k| / dk)`` (shell 0 is k = 0)."""
    return np.rint(np.hypot(kx[None, :], ky[:, None]) / dk).astype(int)


def radial_profile(power: np.ndarray, kx: np.ndarray, ky: np.ndarray, dk: float | None = None):
    """``(k_centres [K], profile [U, K])``: mean power in shells ``[i dk - dk/2, i dk + dk/2)``.

    ``dk`` defaults to the coarser Fourier lattice spacing. Shell 0 holds only k = 0."""
    power = np.asarray(power, dtype=np.float64)
    if power.ndim == 2:
        power = power[None]
    if dk is None:
        dk = max(np.diff(kx).max(initial=0), np.diff(ky).max(initial=0))
    if not dk > 0:
        raise ValueError("dk must be positive")
    shell = shell_index(kx, ky, dk).ravel()
    n_shells = shell.max() + 1
    counts = np.bincount(shell, minlength=n_shells).astype(np.float64)
    flat = power.reshape(power.shape[0], -1)
    sums = np.zeros((power.shape[0], n_shells))
    np.add.at(sums.T, shell, flat.T)  # one scatter for all units
    with np.errstate(invalid="ignore"):
        profile = sums / counts
    return np.arange(n_shells) * dk, profile


def ring_radius(k: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Radius ``[U]`` (or scalar for a 1-D profile) of the shell with most power, k = 0 excluded;
    refined by a parabola through the peak shell and its neighbours."""
    profile = np.atleast_2d(np.asarray(profile, dtype=np.float64))
    p = np.where(np.isfinite(profile), profile, -np.inf)
    p[:, 0] = -np.inf
    i = p.argmax(1)
    dk = k[1] - k[0]
    lo = np.clip(i - 1, 0, p.shape[1] - 1)
    hi = np.clip(i + 1, 0, p.shape[1] - 1)
    rows = np.arange(p.shape[0])
    y0, y1, y2 = profile[rows, lo], profile[rows, i], profile[rows, hi]
    denom = y0 - 2 * y1 + y2
    ok = (lo > 0) & (hi > i) & (lo < i) & np.isfinite(denom) & (denom < 0)
    shift = np.where(ok, 0.5 * (y0 - y2) / np.where(ok, denom, 1.0), 0.0)
    out = k[i] + np.clip(shift, -0.5, 0.5) * dk
    return out if out.size > 1 else out[0]


def ring_power_fraction(power: np.ndarray, kx: np.ndarray, ky: np.ndarray, radius, width: float) -> np.ndarray:
    """Fraction ``[U]`` of each map's non-DC power with ``| |k| - radius | <= width``."""
    power = np.asarray(power, dtype=np.float64)
    if power.ndim == 2:
        power = power[None]
    kk = np.hypot(kx[None, :], ky[:, None])
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (power.shape[0],))
    near = (np.abs(kk[None] - radius[:, None, None]) <= width) & (kk[None] > 0)
    total = power.sum((1, 2)) - power[:, kk == 0].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (power * near).sum((1, 2)) / total, np.nan)


def angular_order(power: np.ndarray, kx: np.ndarray, ky: np.ndarray, radius: float, width: float,
                  orders: tuple[int, ...] = (2, 4, 6)) -> np.ndarray:
    """``[U, len(orders)]``: how each map's power on the ring ``| |k| - radius | <= width`` is spread
    over directions, as the magnitude of its angular harmonics ``|sum_k P(k) e^{i m theta_k}| / sum_k P(k)``.

    Between 0 and 1: plane waves at six directions 60 degrees apart (a hexagonal lattice) give
    ``m = 6`` near 1 and ``m = 2, 4`` near 0; four at 90 degrees (a square lattice) ``m = 4``; one
    plane wave (bands, stripes) all even ``m`` near 1, and ``m = 2`` separates it from the lattices;
    isotropic power gives values of order ``1 / sqrt(number of wave vectors on the ring)``. The
    square Fourier lattice has four-fold symmetry, so ``m = 2`` and ``m = 6`` of evenly spread power
    vanish and ``m = 4`` need not. In Sorscher et al.'s pattern formation the maps pass through a
    stripe stage before the hexagonal one. A sheared lattice has only one of its three wave-vector
    pairs on the ring and reads as bands there (``m = 2``); :func:`zoo.analysis.gridness.ellipse_corrected`
    tells the two apart. NaN for maps with no power on the ring, and for orders
    ``m >= N / 2`` where the ring holds wave vectors in only ``N`` directions: there harmonic ``m``
    aliases ``N - m`` (the lowest shell's 8 directions, 45 degrees apart, cannot tell m = 6 from
    m = 2). Needs a square Fourier lattice (equal spacing in kx and ky: square bins of a square
    box), whose symmetry those zeros rely on."""
    if not _square_lattice(kx, ky):
        raise ValueError("angular_order needs a square Fourier lattice (equal kx and ky spacing)")
    power = np.asarray(power, dtype=np.float64)
    if power.ndim == 2:
        power = power[None]
    kk = np.hypot(kx[None, :], ky[:, None])
    on_ring = (np.abs(kk - radius) <= width) & (kk > 0)
    p, theta = power[:, on_ring], np.arctan2(ky[:, None], kx[None, :])[on_ring]
    harmonics = np.abs(p @ np.exp(1j * np.outer(theta, orders)))
    total = p.sum(1, keepdims=True)
    resolved = 2 * np.asarray(orders) < len(np.unique(np.round(theta, 9)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total > 0) & resolved, harmonics / total, np.nan)


def _square_lattice(kx: np.ndarray, ky: np.ndarray) -> bool:
    dkx, dky = np.diff(kx).max(initial=0), np.diff(ky).max(initial=0)
    return bool(dkx > 0 and np.isclose(dkx, dky))


def ring_angular_order(maps, extent=None, radius: float | None = None,
                       orders: tuple[int, ...] = (2, 4, 6)) -> np.ndarray:
    """``[U, len(orders)]``: :func:`angular_order` of each of ``maps`` on the ring ``radius`` +- one
    lattice spacing (default radius: the maps' mean ring, :func:`ring_radius`); all NaN when the
    Fourier lattice is not square."""
    power, kx, ky = power_spectra(maps, extent)
    if not _square_lattice(kx, ky):
        return np.full((len(power), len(orders)), np.nan)
    k, profile = radial_profile(power, kx, ky)
    radius = float(ring_radius(k, np.nanmean(profile, axis=0))) if radius is None else radius
    return angular_order(power, kx, ky, radius, k[1], orders)


def median_angular_order(order: np.ndarray) -> np.ndarray:
    """``[len(orders)]``: medians over maps of ``order [U, len(orders)]`` (:func:`ring_angular_order`),
    over the maps where it is defined; NaN for an order defined for none."""
    order = np.atleast_2d(order)
    return np.array([np.median(column[np.isfinite(column)]) if np.isfinite(column).any() else np.nan
                     for column in order.T])


@register_analysis("spectrum", protocol=SpatialMaps, version="3", quick_params={"n_positions": 20_000})
def spectrum(model, task, *, n_positions: int = 200_000, bins: int = 20) -> AnalysisResult:
    """Radially averaged power spectrum of a model's spatial maps: ring radius, power near it, and
    the median angular order of the power on that ring (m = 2 bands, 4 squares, 6 hexagons;
    :func:`median_angular_order`).

    ``n_positions`` and ``bins`` are passed to models whose ``spatial_maps`` takes them."""
    import inspect

    params = inspect.signature(model.spatial_maps).parameters
    options = {k: v for k, v in {"n_positions": n_positions, "bins": bins, "task": task}.items() if k in params}
    stack = model.spatial_maps(**options)
    power, kx, ky = power_spectra(stack)
    k, profile = radial_profile(power, kx, ky)
    mean_profile = np.nanmean(profile, axis=0)
    radius = float(ring_radius(k, mean_profile))
    dk = float(k[1] - k[0])
    per_unit = np.atleast_1d(ring_radius(k, profile))
    fraction = ring_power_fraction(power, kx, ky, radius, dk)
    unit = stack.units
    summary = {
        "n_maps": int(power.shape[0]),
        f"ring_radius_rad_per_{unit}": radius,
        f"median_unit_ring_radius_rad_per_{unit}": float(np.median(per_unit)),
        f"lattice_spacing_rad_per_{unit}": dk,
        "median_power_fraction_near_ring": float(np.nanmedian(fraction)) if np.isfinite(fraction).any() else 0.0,
    }
    order = median_angular_order(ring_angular_order(stack, radius=radius))
    summary.update({f"median_angular_order_{m}": float(v) for m, v in zip((2, 4, 6), order) if np.isfinite(v)})
    return AnalysisResult(summary=summary, arrays={"k": k, "mean_profile": mean_profile,
                                                   "unit_ring_radius": per_unit, "power_fraction": fraction})
