"""The pattern-formation theory of grid cells (Sorscher, Mel, Ganguli & Ocko 2019), as code.

Place-cell covariance. With place-cell tunings ``p_j(x)`` the (position x position) covariance
is ``Sigma(x, x') = sum_j p_j(x) p_j(x')``. Averaged over translations it depends only on
``delta = x' - x``; its eigenvectors are plane waves ``exp(i k.x)`` with eigenvalue
``S(k) = sum_j |p~_j(k)|^2 / A`` (``A`` the box area), the power spectrum of the tunings.

Difference of Gaussians with width ``sigma`` and surround VARIANCE ratio ``s``: for a dense,
translation-invariant code the tuning is ``G_sigma - G_{sqrt(s) sigma}`` (normalised Gaussians),
so ``p~(k) = exp(-sigma^2 k^2 / 2) - exp(-s sigma^2 k^2 / 2)``; setting ``d p~ / d(k^2) = 0``::

    k*^2 = 2 ln s / ((s - 1) sigma^2)          (sigma = 0.12 m, s = 2: k* = 9.81 rad/m)

plane-wave wavelength ``2 pi / k*`` = 0.640 m, hexagonal grid spacing ``4 pi / (sqrt 3 k*)``
= 0.739 m. A Gaussian code (no surround) peaks at ``k = 0``.

A code that cannot yet path-integrate keeps the start position's code while the targets move on by
a displacement ``d``: it fits the blurred tunings ``E_d p(x + d)``, of spectrum ``S(k) phi(k)^2``
(``phi`` the displacements' characteristic function), whose ring lies below ``k*``
(:func:`blurred_optimal_k`).

Pattern-forming dynamics of a map ``g(x)`` on a periodic ``n x n`` grid (one Euler step)::

    g <- phi(g + dt (-g + Sigma g))     (ReLU maps then rescaled to unit RMS)

with ``Sigma g = IFFT(S(k) FFT(g))`` (``S`` scaled to max 1.5, so ring modes grow; tanh
bounds the growth by saturating, ReLU has no scale of its own). ``phi = ReLU`` (non-negative
firing) selects hexagonal patterns through three-wave interactions on the ring; an odd ``phi``
(tanh) gives stripes or mixtures. Several maps learned together are kept orthogonal with
Sanger's rule (map ``i`` loses its projections on maps ``j < i``), giving a hierarchy of grids.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .gridness import grid_geometry, grid_scores
from .spatial_spectra import power_spectra, radial_profile, ring_radius

_PHI = {"relu": lambda g: np.maximum(g, 0.0), "tanh": np.tanh, "linear": lambda g: g}


# ----------------------------------------------------------------------------- analytic theory


def dog_spectrum(k, sigma: float = 0.12, surround_scale: float = 2.0, dog: bool = True) -> np.ndarray:
    """``|p~(k)|^2`` of the translation-invariant DoG (or Gaussian) tuning at ``k`` (rad/m)."""
    k2 = np.asarray(k, dtype=np.float64) ** 2
    p = np.exp(-sigma**2 * k2 / 2)
    if dog:
        p = p - np.exp(-surround_scale * sigma**2 * k2 / 2)
    return p**2


def optimal_k(sigma: float = 0.12, surround_scale: float = 2.0) -> float:
    """``k* = sqrt(2 ln s / ((s - 1) sigma^2))`` (rad/m); ``s`` is the surround VARIANCE ratio."""
    if sigma <= 0 or surround_scale <= 1:
        raise ValueError(f"need sigma > 0 and surround_scale > 1, got {sigma}, {surround_scale}")
    return math.sqrt(2 * math.log(surround_scale) / ((surround_scale - 1) * sigma**2))


def grid_spacing(k: float) -> float:
    """Spacing ``4 pi / (sqrt(3) k)`` of a hexagonal grid built from plane waves of wave number ``k``."""
    return 4 * math.pi / (math.sqrt(3) * k)


def displacement_characteristic(k, displacements) -> np.ndarray:
    """Isotropic characteristic function ``phi(k) = E_d J0(k |d|)`` of ``displacements [..., 2]`` (m).

    ``J0(k |d|)`` is ``cos(k u.d)`` averaged over the directions ``u`` of a wave vector of length
    ``k`` (rad/m), so ``phi`` is the Fourier transform of the displacement density averaged over
    directions. Returns ``[K]`` for ``k [K]``."""
    from scipy.special import j0

    d = np.asarray(displacements, dtype=np.float64)
    if d.ndim < 1 or d.shape[-1] != 2 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"displacements must be a finite non-empty [..., 2] array, got shape {d.shape}")
    r = np.linalg.norm(d.reshape(-1, 2), axis=1)
    k = np.atleast_1d(np.asarray(k, dtype=np.float64))
    rows = max(1, 2**22 // r.size)                        # [rows, samples] blocks of about 32 MB
    return np.concatenate([j0(np.outer(k[i:i + rows], r)).mean(1) for i in range(0, len(k), rows)])


def blurred_optimal_k(displacements, sigma: float = 0.12, surround_scale: float = 2.0) -> float:
    """Peak (rad/m) of ``S(k) phi(k)^2``: the ring a code forms when it cannot path-integrate.

    A network whose state keeps the code of the start position ``x_0`` while the loss asks for the
    place cells at ``x_t = x_0 + d`` is fitting the blurred tunings ``E_d p(x_0 + d)``, whose power
    spectrum is ``S(k) phi(k)^2`` (``phi`` from :func:`displacement_characteristic`, ``S`` the DoG
    spectrum of :func:`dog_spectrum`). Displacements lower the peak from ``k*`` (no displacement,
    or perfect path integration) towards 0. For isotropic Gaussian displacements of variance
    ``tau^2`` per axis the peak has a closed form::

        k^2 = 2 ln((tau^2 + s sigma^2) / (tau^2 + sigma^2)) / ((s - 1) sigma^2)
    """
    k_star = optimal_k(sigma, surround_scale)
    k = np.linspace(k_star / 100, k_star, 100)           # phi <= 1 and S rises up to k*: the peak is below k*
    power = dog_spectrum(k, sigma, surround_scale) * displacement_characteristic(k, displacements) ** 2
    i = int(np.argmax(power))
    fine = np.linspace(k[max(i - 1, 0)], k[min(i + 1, len(k) - 1)], 201)
    power = dog_spectrum(fine, sigma, surround_scale) * displacement_characteristic(fine, displacements) ** 2
    return float(fine[np.argmax(power)])


# ----------------------------------------------------------------------------- empirical covariance


def grid_positions(n: int, box: float) -> np.ndarray:
    """Bin centres ``[n*n, 2]`` (x fastest) of an ``n x n`` grid over ``[-box/2, box/2]^2``."""
    c = (np.arange(n) + 0.5) / n * box - box / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


def covariance_spectrum(place_cells, n: int = 55, box: float | None = None) -> dict[str, np.ndarray]:
    """Translation-averaged place-cell covariance and its spectrum on a periodic ``n x n`` grid.

    ``place_cells`` has ``activation(pos [..., 2]) -> [..., Np]`` (e.g. ``tasks.path_integration.
    PlaceCells``, best with ``periodic=True``). Returns ``spectrum [n, n]`` (``S(k)``, fftshift-ed,
    ``S = sum_j |FFT p_j|^2 / n^2``), ``kx``, ``ky`` (rad/m), ``covariance [n, n]`` (``C(delta)``,
    centred: ``C(delta) = mean_x sum_j p_j(x) p_j(x + delta)``), ``k`` and ``profile`` (radial mean).
    """
    import torch

    box = float(box if box is not None else place_cells.box[0])
    pos = torch.from_numpy(grid_positions(n, box)).float()
    p = place_cells.activation(pos).double().numpy().T.reshape(-1, n, n)      # [Np, n, n]
    p = p - p.mean((1, 2), keepdims=True)      # centred tunings: the covariance, S(0) = 0
    f = np.fft.fft2(p)
    spec = (np.abs(f) ** 2).sum(0) / n**2                                      # [n, n]
    cov = np.real(np.fft.ifft2(spec))            # mean_x sum_j p_j(x) p_j(x + delta)
    kx = ky = np.fft.fftshift(2 * np.pi * np.fft.fftfreq(n, d=box / n))
    shifted = np.fft.fftshift(spec)
    k, profile = radial_profile(shifted, kx, ky)
    return {"spectrum": shifted, "kx": kx, "ky": ky, "covariance": np.fft.fftshift(cov), "k": k,
            "profile": profile[0]}


def empirical_ring(place_cells, n: int = 55, box: float | None = None) -> dict[str, float]:
    """The covariance spectrum's ring radius against the analytic ``k*`` (rad/m)."""
    spec = covariance_spectrum(place_cells, n, box)
    k_emp = float(ring_radius(spec["k"], spec["profile"]))
    out = {"k_empirical": k_emp, "lattice_spacing": float(spec["k"][1] - spec["k"][0])}
    if getattr(place_cells, "dog", True):
        out["k_star"] = optimal_k(place_cells.sigma, place_cells.surround_scale)
    return out


# ----------------------------------------------------------------------------- dynamics


def _fft_operator(spectrum: np.ndarray, gain: float = 1.0):
    """``g [M, n, n] -> gain * Sigma g`` through the (unshifted) spectrum, scaled to max ``gain``."""
    import scipy.fft as sfft

    s = np.fft.ifftshift(spectrum)
    n = s.shape[-1]
    half = (gain * s / s.max())[:, : n // 2 + 1]   # real maps: the half spectrum suffices
    return lambda g: sfft.irfft2(sfft.rfft2(g) * half, s=s.shape)


def simulate(spectrum: np.ndarray, n_maps: int = 32, steps: int = 1000, dt: float = 0.1,
             nonlinearity: str = "relu", sanger: bool = False, gain: float = 1.5, seed: int = 0) -> np.ndarray:
    """Run the pattern-forming dynamics for ``n_maps`` maps on the grid of ``spectrum [n, n]``.

    Each map follows ``g <- phi(g + dt(-g + Sigma g))`` with ``Sigma`` scaled so that its top
    eigenvalue is ``gain`` (> 1: the ring modes grow). ReLU (and linear) maps have no amplitude
    of their own (``phi(a g) = a phi(g)``), so they are rescaled to unit RMS after every step;
    tanh bounds the growth itself by saturating. With ``sanger=True`` map ``i`` also loses its
    projections on maps ``0..i-1`` after every step (Sanger's rule), so the maps learn successive
    patterns. Starts from N(0, 0.01) noise (its absolute value for ReLU). Returns ``[M, n, n]``.
    """
    if nonlinearity not in _PHI:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose from {', '.join(_PHI)}")
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if spectrum.ndim != 2 or spectrum.shape[0] != spectrum.shape[1] or not np.isfinite(spectrum).all():
        raise ValueError("spectrum must be a finite square [n, n] array")
    if not spectrum.max() > 0:
        raise ValueError("spectrum has no positive power")
    phi, apply = _PHI[nonlinearity], _fft_operator(spectrum, gain)
    rescale = nonlinearity != "tanh"
    n = spectrum.shape[0]
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_maps, n, n)) * 0.1
    if nonlinearity == "relu":
        g = np.abs(g)
    for _ in range(steps):
        g = phi(g + dt * (apply(g) - g))
        if sanger:
            g = _sanger(g)
        if rescale:
            rms = np.sqrt((g**2).mean((1, 2), keepdims=True))
            g = g / np.where(rms > 0, rms, 1.0)
    return g


def _sanger(g: np.ndarray) -> np.ndarray:
    """Remove from each map its projections on the maps before it (Gram-Schmidt in learning order).

    With the Gram matrix ``F F^T = L L^T`` (Cholesky), ``L^{-1} F`` has orthonormal rows spanning
    the same nested subspaces; map ``i`` becomes ``L_ii (L^{-1} F)_i``. Norms are reset by the caller."""
    m = g.shape[0]
    flat = g.reshape(m, -1)
    gram = flat @ flat.T
    jitter = 1e-12 * max(np.trace(gram) / m, 1e-300)
    chol = np.linalg.cholesky(gram + jitter * np.eye(m))
    ortho = np.linalg.solve(chol, flat)
    return (np.diag(chol)[:, None] * ortho).reshape(g.shape)


def pattern_formation(place_cells=None, *, n: int = 55, n_maps: int = 32, steps: int = 1000, dt: float = 0.1,
                      seed: int = 0) -> dict[str, Any]:
    """ReLU against tanh maps and a Sanger hierarchy on the place-cell spectrum: scores and spacings.

    ``place_cells`` defaults to the path-integration task's DoG cells on a torus. Returns a dict
    with ``relu_maps``, ``tanh_maps``, ``sanger_maps`` ``[M, n, n]``, their ``score_60`` arrays, the
    medians, and the Sanger maps' ``spacing`` (m) in learning order.
    """
    if place_cells is None:
        from zoo.tasks.path_integration import PlaceCells

        place_cells = PlaceCells(periodic=True)
    box = place_cells.box[0]
    spec = covariance_spectrum(place_cells, n, box)
    out: dict[str, Any] = {"spectrum": spec}
    for name in ("relu", "tanh"):
        maps = simulate(spec["spectrum"], n_maps, steps, dt, name, seed=seed)
        s60 = grid_scores(maps)["score_60"]
        out[f"{name}_maps"], out[f"{name}_score_60"] = maps, s60
        out[f"{name}_median_score_60"] = float(np.median(s60))
        out[f"{name}_fraction_0.3"] = float((s60 > 0.3).mean())
    hier = simulate(spec["spectrum"], min(n_maps, 8), steps, dt, "relu", sanger=True, seed=seed)
    scores = grid_scores(hier)
    geom = grid_geometry(scores["sac"], box / n)
    power, kx, ky = power_spectra(hier, (-box / 2, box / 2, -box / 2, box / 2))
    k, prof = radial_profile(power, kx, ky)
    out.update(sanger_maps=hier, sanger_score_60=scores["score_60"], sanger_spacing=geom["spacing"],
               sanger_ring_radius=np.atleast_1d(ring_radius(k, prof)))
    return out
