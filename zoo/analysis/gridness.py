"""Ratemaps, spatial autocorrelograms and gridness scores, vectorised over units.

Gridness follows DeepMind's scorer (Banino et al. 2018, used by Sorscher et al. 2019):

1. spatial autocorrelogram (SAC) of a ratemap ``r [n, n]``: at every lag, the Pearson
   correlation of ``r`` with its shifted copy over the overlapping (non-NaN) bins; ``[2n-1, 2n-1]``;
2. the SAC is rotated by 30, 45, 60, 90, 120, 135, 150 degrees (cubic spline,
   ``scipy.ndimage.rotate(..., reshape=False)``, constant 0 outside);
3. on a ring mask (inner radius ``0.2 n``, outer radius ``f n`` for ``f`` in
   ``linspace(0.4, 1.0, 10)``), ``c_a`` = correlation of the SAC with its rotation by ``a``
   (centred on the ring mean of the unrotated SAC, normalised by its ring variance + 1e-5);
4. ``score_60 = (c60 + c120)/2 - (c30 + c90 + c150)/3``, ``score_90 = c90 - (c45 + c135)/2``
   (min/max variant: ``min(c60, c120) - max(c30, c90, c150)``); each score is the maximum over
   the masks.

Vectorisation: the SAC of every unit at once by FFT (overlap normalisation from the FFTs of the
masks); the rotation is linear, ``rot(S) = E_a (P S P^T)`` with ``P`` the cubic-spline prefilter
along one axis and ``E_a`` the sparse spline evaluation at the rotated coordinates, both taken
from scipy itself once per (size, angle), so all units rotate in one sparse matrix product and
agree with ``scipy.ndimage.rotate`` to rounding.

Spacing and orientation come from the SAC's local maxima (the six nearest to the centre). Sheared
lattices, which the score misses, are scored after the ellipse through those six peaks is stretched
into a circle (``ellipse=True``; :func:`ellipse_corrected`), against surrogates corrected alike.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .protocols import MapStack, SpatialMaps
from .registry import AnalysisResult, register_analysis

ANGLES = (30, 45, 60, 90, 120, 135, 150)
MASK_INNER = 0.2
MASK_OUTER = tuple(np.linspace(0.4, 1.0, 10).tolist())


# ----------------------------------------------------------------------------- ratemaps


def ratemaps(positions: torch.Tensor, activations: torch.Tensor, bins: int,
             extent: tuple[float, float, float, float], reduce: str = "mean"):
    """Bin ``activations [P, U]`` by ``positions [P, 2]`` (x, y) into ``bins x bins`` maps.

    Returns ``maps [U, bins, bins]`` (rows index y, columns x; NaN where a bin was never visited)
    for ``reduce="mean"``, or ``(sums [U, bins, bins], counts [bins, bins])`` for ``reduce="sum"``.
    Positions outside ``extent = (xmin, xmax, ymin, ymax)`` are dropped; one ``index_add`` for all units.
    """
    positions, activations = torch.as_tensor(positions), torch.as_tensor(activations)
    if positions.dim() != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must be [P, 2], got {tuple(positions.shape)}")
    if activations.dim() != 2 or activations.shape[0] != positions.shape[0]:
        raise ValueError(f"activations must be [P, U] with P = {positions.shape[0]}, got {tuple(activations.shape)}")
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    xmin, xmax, ymin, ymax = extent
    fx = (positions[:, 0].double() - xmin) / (xmax - xmin)
    fy = (positions[:, 1].double() - ymin) / (ymax - ymin)
    inside = (fx >= 0) & (fx <= 1) & (fy >= 0) & (fy <= 1) & torch.isfinite(fx) & torch.isfinite(fy)
    ix = (fx[inside] * bins).long().clamp_(0, bins - 1)
    iy = (fy[inside] * bins).long().clamp_(0, bins - 1)
    flat = iy * bins + ix
    acts = activations[inside].double()
    sums = torch.zeros(activations.shape[1], bins * bins, dtype=torch.float64).index_add_(1, flat, acts.T)
    counts = torch.bincount(flat, minlength=bins * bins).double()
    if reduce == "sum":
        return sums.reshape(-1, bins, bins), counts.reshape(bins, bins)
    maps = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))
    return maps.reshape(-1, bins, bins)


# ----------------------------------------------------------------------------- autocorrelograms


def _as_stack(maps) -> np.ndarray:
    if isinstance(maps, MapStack):
        maps = maps.maps
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2] or maps.shape[1] < 3:
        raise ValueError(f"maps must be square, [U, n, n] with n >= 3, got {maps.shape}")
    if np.isinf(maps).any():
        raise ValueError("maps hold inf values (NaN marks unvisited bins; inf is not allowed)")
    return maps


def autocorrelograms(maps) -> np.ndarray:
    """Overlap-normalised spatial autocorrelograms ``[U, 2n-1, 2n-1]`` of ``maps [U, n, n]``.

    At lag ``k`` the value is the Pearson correlation of ``r(x)`` and ``r(x + k)`` over bins where
    both are defined (NaN bins are excluded), as DeepMind's ``calculate_sac``; undefined lags
    (zero variance, e.g. a single overlapping bin) are 0. Lag ``(0, 0)`` sits at ``[n-1, n-1]``.
    """
    import scipy.fft as sfft

    maps = _as_stack(maps)
    n = maps.shape[1]
    m = 2 * n - 1
    size = (sfft.next_fast_len(m, real=True),) * 2
    nan = np.isnan(maps)
    shared = not nan.any() or bool((nan == nan[:1]).all())  # ratemaps share one visited-bin mask
    valid = (~(nan[:1] if shared else nan)).astype(np.float64)
    # Pearson correlation is blind to a constant offset: centring first avoids cancellation
    x = np.nan_to_num(maps - np.nanmean(np.where(nan.all((1, 2), keepdims=True), 0.0, maps), axis=(1, 2), keepdims=True))
    # corr(a, b)[i] = sum_j a[j] b[j - (i - n + 1)] (DeepMind's filter2(b, a): full convolution with b
    # rotated by 180 degrees). For real b, FFT(rot180 b) = phase * conj(FFT(b)) on the padded grid.
    w0 = np.fft.fftfreq(size[0])[:, None]
    w1 = np.fft.rfftfreq(size[1])[None, :]
    phase = np.exp(-2j * np.pi * (n - 1) * (w0 + w1))
    fx, fx2, fv = sfft.rfft2(x, size), sfft.rfft2(x * x, size), sfft.rfft2(valid, size)

    def corr(fa, fb):
        return sfft.irfft2(fa * (phase * np.conj(fb)), size)[..., :m, :m]

    prod = corr(fx, fx)
    sum1 = corr(fv, fx)            # sum of r over the overlap (DeepMind: filter2(seq1, ones_seq2))
    sq1 = corr(fv, fx2)
    nb = np.rint(corr(fv, fv))
    if shared:                     # with one mask, the other side's sums are the lag-reversed ones
        sum2, sq2 = sum1[..., ::-1, ::-1], sq1[..., ::-1, ::-1]
    else:
        sum2, sq2 = corr(fx, fv), corr(fx2, fv)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_nb = np.where(nb >= 1, 1.0 / nb, 0.0)
        mean1, mean2 = sum1 * inv_nb, sum2 * inv_nb
        ex1, ex2 = sq1 * inv_nb, sq2 * inv_nb
        var1 = ex1 - mean1 * mean1
        var2 = ex2 - mean2 * mean2
        cov = prod * inv_nb
        cov -= mean1 * mean2
        # variances that vanish up to FFT rounding are exactly zero (a single or constant overlap)
        ex1 = np.maximum(np.abs(ex1), np.abs(ex2), out=ex1)
        ex1 *= 1e-10
        degenerate = (var1 <= ex1) | (var2 <= ex1) | (nb < 1)
        var1 *= var2
        var1[degenerate] = 1.0
        cov /= np.sqrt(var1, out=var1)
    cov[degenerate] = 0.0
    return cov


# ----------------------------------------------------------------------------- rotation and masks


@lru_cache(maxsize=8)
def _rotation_operator(size: int, angles: tuple[float, ...]):
    """``(P [size, size], E sparse [len(angles) * size^2, size^2])`` with
    ``rotate(S, a) = E_a @ vec(P S P^T)`` exactly as ``scipy.ndimage.rotate(S, a, reshape=False)``.

    ``P`` is scipy's cubic-spline prefilter along one axis (applied to the identity). ``E_a`` (the
    spline evaluation at the rotated coordinates) is read off scipy by probing: an output pixel
    depends only on coefficients within 3 bins of its source coordinate, so coefficient images
    with ones on a lattice of pitch 9 (81 probes per angle) tell every weight apart.
    """
    import scipy.sparse as sp
    from scipy import ndimage, special

    pitch = 9
    prefilter = ndimage.spline_filter1d(np.eye(size), order=3, axis=0, mode="constant")
    out_r, out_c = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    probes = np.zeros((pitch * pitch, size, size))
    for k in range(pitch * pitch):
        probes[k, k // pitch::pitch, k % pitch::pitch] = 1.0
    blocks = []
    for angle in angles:
        c, s = special.cosdg(angle), special.sindg(angle)
        # scipy's mapping from output (row, col) to input coordinates for rotate(..., reshape=False)
        src_r = c * (out_r - centre) + s * (out_c - centre) + centre
        src_c = -s * (out_r - centre) + c * (out_c - centre) + centre
        resp = ndimage.rotate(probes, angle, axes=(2, 1), reshape=False, order=3, mode="constant",
                              cval=0.0, prefilter=False)          # [probe, out_r, out_c]
        rows, cols, vals = [], [], []
        for k in range(pitch * pitch):
            a, b = k // pitch, k % pitch
            # the lattice point of class (a, b) nearest to each output's source coordinate
            jr = a + pitch * np.rint((src_r - a) / pitch)
            jc = b + pitch * np.rint((src_c - b) / pitch)
            v = resp[k]
            keep = (np.abs(v) > 1e-15) & (jr >= 0) & (jr < size) & (jc >= 0) & (jc < size)
            rows.append((out_r * size + out_c)[keep])
            cols.append((jr * size + jc)[keep].astype(np.int64))
            vals.append(v[keep])
        blocks.append(sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                    shape=(size * size, size * size)))
    return prefilter, sp.vstack(blocks).tocsr()


def rotate_stack(sacs: np.ndarray, angles=ANGLES) -> np.ndarray:
    """All ``sacs [U, m, m]`` rotated by each angle (degrees): ``[len(angles), U, m, m]``.

    Equal to ``scipy.ndimage.rotate(sac, angle, reshape=False)`` (cubic spline, zeros outside)."""
    sacs = np.asarray(sacs, dtype=np.float64)
    u, m, _ = sacs.shape
    prefilter, op = _rotation_operator(m, tuple(int(a) if float(a).is_integer() else float(a) for a in angles))
    coeffs = prefilter @ sacs @ prefilter.T                  # [U, m, m] spline coefficients
    out = op @ coeffs.reshape(u, m * m).T                     # [A * m^2, U]
    return out.T.reshape(u, len(angles), m, m).transpose(1, 0, 2, 3)


def ring_masks(n: int, inner: float = MASK_INNER, outer=MASK_OUTER) -> np.ndarray:
    """Ring masks ``[len(outer), 2n-1, 2n-1]`` (1 inside): ``inner * n < r <= outer_i * n``, with ``r``
    the distance in bins from the SAC centre (DeepMind's ``circle_mask`` differences)."""
    size = 2 * n - 1
    half = size // 2
    coords = np.linspace(-half, half, size)
    r = np.sqrt(coords[None, :] ** 2 + coords[:, None] ** 2)
    outer = np.atleast_1d(np.asarray(outer, dtype=np.float64))
    return ((r[None] <= outer[:, None, None] * n) & ~(r[None] <= inner * n)).astype(np.float64)


def _scores_from(s: np.ndarray, r: np.ndarray, masks: np.ndarray, min_max: bool):
    """Scores ``[U, M]`` (score_60, score_90) from SAC pixels ``s [P, U]``, rotated pixels
    ``r [P, A, U]`` and masks ``[M, P]`` (any pixel subset closed under the ring sums).
    Every ring sum over all masks, angles and units is one matrix product."""
    p, a, u = r.shape
    area = masks.sum(1)[:, None]                                 # [M, 1]
    ring_sum = masks @ s                                         # [M, U]
    mean = ring_sum / area
    # sum_ring (s - mean)^2 and sum_ring (s - mean) * (rot - mean); the ring sum of (s - mean) is 0
    var = (masks @ (s * s) - 2 * mean * ring_sum + mean**2 * area) / area + 1e-5
    rs = (masks @ (r * s[:, None, :]).reshape(p, a * u)).reshape(-1, a, u)
    rr = (masks @ r.reshape(p, a * u)).reshape(-1, a, u)
    corr = (rs - mean[:, None, :] * rr) / (area[:, :, None] * var[:, None, :])   # [M, A, U]
    c = {angle: corr[:, j] for j, angle in enumerate(ANGLES)}
    if min_max:
        s60 = np.minimum(c[60], c[120]) - np.maximum(c[30], np.maximum(c[90], c[150]))
    else:
        s60 = (c[60] + c[120]) / 2 - (c[30] + c[90] + c[150]) / 3
    s90 = c[90] - (c[45] + c[135]) / 2
    return s60.T, s90.T


@lru_cache(maxsize=8)
def _half_ring_operator(n: int, inner: float, outer: tuple[float, ...]):
    """``(P, E_H, pixels, masks_H)``: the rotation restricted to the pixels that the ring masks use,
    and of those only one of each pair ``(p, -p)``: an autocorrelogram and its rotations are
    point-symmetric, so every ring sum is twice the sum over this half (the factor cancels)."""
    m = 2 * n - 1
    masks = ring_masks(n, inner, outer).reshape(len(outer), -1)
    dy, dx = (np.mgrid[0:m, 0:m] - (n - 1)).reshape(2, -1)
    half = (dy > 0) | ((dy == 0) & (dx > 0))
    pixels = np.flatnonzero(half & (masks.sum(0) > 0))
    prefilter, op = _rotation_operator(m, ANGLES)
    rows = (pixels[:, None] + np.arange(len(ANGLES))[None, :] * m * m).ravel()  # pixel-major: [P * A]
    return prefilter, op[rows], pixels, np.ascontiguousarray(masks[:, pixels])


def grid_scores(maps, *, min_max: bool = False, inner: float = MASK_INNER, outer=MASK_OUTER,
                chunk: int = 128, ellipse: bool = False) -> dict[str, np.ndarray]:
    """Gridness of every map in ``maps [U, n, n]`` (array, tensor or :class:`MapStack`).

    Returns ``score_60 [U]``, ``score_90 [U]`` (max over ring masks), ``mask_60 [U]``, ``mask_90 [U]``
    (index of the best mask) and ``sac [U, 2n-1, 2n-1]``. With ``ellipse``, the scores are those of
    the ellipse-corrected autocorrelograms (:func:`ellipse_corrected`; ``sac`` stays the raw one) and
    its ``axis_ratio [U]`` and ``major_axis [U]`` are added. Units are processed in chunks of
    ``chunk`` (small chunks keep the temporaries in cache: 4x faster than 512 here); every step
    inside a chunk is a batched array operation.
    """
    maps = _as_stack(maps)
    n = maps.shape[1]
    outer = tuple(float(o) for o in np.atleast_1d(outer))
    prefilter, op, pixels, masks = _half_ring_operator(n, float(inner), outer)
    out: dict[str, list[np.ndarray]] = {"score_60": [], "score_90": [], "mask_60": [], "mask_90": [], "sac": []}
    for start in range(0, maps.shape[0], chunk):
        sacs = autocorrelograms(maps[start:start + chunk])
        scored = sacs
        if ellipse:
            corrected = ellipse_corrected(sacs)
            scored = corrected["sac"]
            for key in ("axis_ratio", "major_axis"):
                out.setdefault(key, []).append(corrected[key])
        u = sacs.shape[0]
        coeffs = (prefilter @ scored @ prefilter.T).reshape(u, -1)   # spline coefficients [U, m^2]
        rotated = (op @ coeffs.T).reshape(len(pixels), len(ANGLES), u)  # [P_half, A, U]
        flat = np.ascontiguousarray(scored.reshape(u, -1)[:, pixels].T)  # [P_half, U]
        s60, s90 = _scores_from(flat, rotated, masks, min_max)
        out["score_60"].append(s60.max(1))
        out["score_90"].append(s90.max(1))
        out["mask_60"].append(s60.argmax(1))
        out["mask_90"].append(s90.argmax(1))
        out["sac"].append(sacs)
    return {k: np.concatenate(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- spacing and orientation


def grid_geometry(sacs: np.ndarray, bin_size: float = 1.0, n_peaks: int = 6) -> dict[str, np.ndarray]:
    """Spacing and orientation of each SAC ``[U, m, m]`` from its ``n_peaks`` nearest local maxima.

    A peak is a positive 3 x 3 local maximum at least 2 bins from the centre; its position is
    refined to a fraction of a bin by a parabola through it and its neighbours along each axis, and
    the peaks are ranked by their refined distance from the centre (a sheared lattice's third-nearest
    peak pair can share its bin distance with a farther pair). Equally near peaks (to 1e-6 bins: a
    square lattice's four diagonals) are ranked by their axis's angle in [0, 180) degrees, so a peak is
    taken with its mirror image and the choice does not rest on how the sort orders ties (numpy's
    argsort dispatches to SIMD code chosen by the CPU, and CI's CPU ordered them differently).
    Returns ``spacing [U]`` (median distance of the peaks from the centre, in the units of
    ``bin_size``; NaN with fewer than 3 peaks), ``orientation [U]`` (degrees in [0, 60): the
    smallest peak angle mod 60, counter-clockwise from +x with rows as +y, as in :func:`ratemaps`),
    ``n_found [U]`` and ``peaks [U, n_peaks, 2]`` (each peak's ``(x, y)`` offset from the centre in
    bins, nearest first; NaN where fewer were found).
    """
    sacs = np.asarray(sacs, dtype=np.float64)
    u, m, _ = sacs.shape
    t = torch.from_numpy(sacs)[:, None]
    pooled = torch.nn.functional.max_pool2d(t, 3, stride=1, padding=1)[:, 0].numpy()
    c = (m - 1) / 2
    yy, xx = np.mgrid[0:m, 0:m] - c
    is_peak = (sacs >= pooled) & (sacs > 0) & (np.hypot(xx, yy)[None] >= 2)

    def refine(v0, v1, v2):  # vertex of the parabola through (-1, v0), (0, v1), (1, v2)
        denom = v0 - 2 * v1 + v2
        ok = denom < 0
        return np.where(ok, 0.5 * (v0 - v2) / np.where(ok, denom, -1.0), 0.0).clip(-0.5, 0.5)

    px, py = np.broadcast_to(xx, sacs.shape).copy(), np.broadcast_to(yy, sacs.shape).copy()  # [U, m, m]
    py[:, 1:-1] += refine(sacs[:, :-2], sacs[:, 1:-1], sacs[:, 2:])               # not on the border
    px[:, :, 1:-1] += refine(sacs[:, :, :-2], sacs[:, :, 1:-1], sacs[:, :, 2:])
    distance = np.where(is_peak, np.round(np.hypot(px, py), 6), np.inf).reshape(u, -1)
    axis_angle = (np.round(np.degrees(np.arctan2(py, px)) % 180.0, 6) % 180.0).reshape(u, -1)
    k = min(n_peaks, distance.shape[1])
    order = np.lexsort((axis_angle, distance), axis=-1)[:, :k]              # [U, k] flat bin indices
    found = np.isfinite(np.take_along_axis(distance, order, axis=1))
    n_found = found.sum(1)
    px, py = np.take_along_axis(px.reshape(u, -1), order, 1), np.take_along_axis(py.reshape(u, -1), order, 1)
    dist_peaks = np.where(found, np.hypot(px, py), np.nan)
    spacing = np.nanmedian(np.where(n_found[:, None] > 0, dist_peaks, 0.0), axis=1) if k else np.full(u, np.nan)
    angles = np.degrees(np.arctan2(py, px)) % 60.0
    orientation = np.where(found, angles, np.inf).min(1)
    spacing = np.where(n_found >= 3, spacing * bin_size, np.nan)
    orientation = np.where(n_found >= 3, orientation, np.nan)
    peaks = np.stack([np.where(found, px, np.nan), np.where(found, py, np.nan)], axis=-1)
    return {"spacing": spacing, "orientation": orientation, "n_found": n_found, "peaks": peaks}


def ellipse_corrected(sacs: np.ndarray) -> dict[str, np.ndarray]:
    """Autocorrelograms ``[U, m, m]`` with the ellipse through their six central peaks stretched
    into a circle, the correction for sheared or compressed grids of Brandon et al. (Science 2011)
    and Stensola et al. (Nature 2015).

    For each SAC, the centred conic ``a x^2 + b x y + c y^2 = 1``, i.e. ``p^T A p = 1``, is fitted
    by least squares to the six peaks of :func:`grid_geometry` (they come in pairs ``+-p``, so three
    pairs fix it). If ``A`` is positive definite, with semi-axes ``r_min <= r_max``, the SAC is
    resampled (bilinear, zero outside) under ``M = r_max A^(1/2)``, which maps the ellipse onto the
    circle of radius ``r_max`` (the minor axis is stretched, the major one kept):
    ``corrected(q) = sac(M^-1 q)``. Returns ``sac [U, m, m]`` (unchanged where no ellipse fits: fewer
    than six peaks, or a conic that is not an ellipse), ``axis_ratio [U]`` (``r_min / r_max`` in
    (0, 1]; NaN where none fits), ``major_axis [U]`` (the direction of the ellipse's major axis, the
    lattice's stretch, in degrees in [0, 180) counter-clockwise from +x with rows as +y; NaN where
    none fits) and ``corrected [U]`` (bool).

    Any lattice is a linear image of any other, so the correction can also raise the hexagonal score
    of a square or noisy map whose six nearest peaks happen to lie on an ellipse: compare corrected
    scores with corrected null scores (``grid_scores(..., ellipse=True)`` on the surrogates). Noise
    maps' peaks also fit ellipses, some very thin (axis ratios down to ~0.1), so read ``axis_ratio``
    and ``major_axis`` for maps that pass that null.
    """
    sacs = np.asarray(sacs, dtype=np.float64)
    u, m, _ = sacs.shape
    peaks = grid_geometry(sacs, n_peaks=6)["peaks"]                         # [U, 6, 2]
    found = np.isfinite(peaks).all((1, 2))
    x, y = np.nan_to_num(peaks[..., 0]), np.nan_to_num(peaks[..., 1])
    design = np.stack([x * x, x * y, y * y], axis=-1)                         # [U, 6, 3]
    conic = (np.linalg.pinv(design) @ np.ones((u, 6, 1)))[..., 0]             # [U, 3] least squares
    a = np.stack([np.stack([conic[:, 0], conic[:, 1] / 2], -1),
                  np.stack([conic[:, 1] / 2, conic[:, 2]], -1)], axis=-2)      # [U, 2, 2]
    lam, vec = np.linalg.eigh(a)                                              # ascending eigenvalues
    ok = found & (lam[:, 0] > 0)
    lam = np.where(ok[:, None], lam, 1.0)
    semi = 1.0 / np.sqrt(lam)                                                 # [U, 2]: r_max, r_min
    # M^-1 = V diag(1 / (r_max sqrt(lam))) V^T, in (x, y) = (column, row) offsets; affine_grid's
    # normalised coordinates scale both axes alike, so the same matrix serves there
    inverse = vec @ (vec.transpose(0, 2, 1) / (semi[:, :1] * np.sqrt(lam))[..., None])
    theta = torch.zeros(u, 2, 3, dtype=torch.float64)
    theta[:, :, :2] = torch.from_numpy(inverse)
    grid = torch.nn.functional.affine_grid(theta, [u, 1, m, m], align_corners=True)
    resampled = torch.nn.functional.grid_sample(torch.from_numpy(sacs)[:, None], grid, mode="bilinear",
                                                padding_mode="zeros", align_corners=True)[:, 0].numpy()
    return {"sac": np.where(ok[:, None, None], resampled, sacs),
            "axis_ratio": np.where(ok, semi[:, 1] / semi[:, 0], np.nan),
            "major_axis": np.where(ok, np.degrees(np.arctan2(vec[:, 1, 0], vec[:, 0, 0])) % 180.0, np.nan),
            "corrected": ok}


# ----------------------------------------------------------------------------- the null distribution


def isotropic_surrogates(maps, n_surrogates: int = 20, seed: int = 0, chunk: int = 64) -> np.ndarray:
    """Surrogates ``[U, n_surrogates, n, n]`` of ``maps [U, n, n]``: each has its map's radially
    averaged power spectrum and its map's values, but its power is spread evenly within each shell.

    Phase-randomising a map keeps its 2-D power spectrum, hence (nearly) its autocorrelogram and its
    gridness; these surrogates also spread each shell's power evenly over the shell's wave vectors,
    which removes a lattice's six-fold symmetry. For each map:

    1. its radial power profile ``P(|k|)`` (:func:`zoo.analysis.spatial_spectra.radial_profile`,
       shells one Fourier lattice spacing wide, NaN bins at the map's mean);
    2. a periodic Gaussian random field on the map's own ``n x n`` Fourier lattice, with expected
       power proportional to ``P(|k|)`` at every wave vector of a shell (none at k = 0) and random
       phases. On a coarse lattice the low shells hold few wave vectors (8 in shell 1, at 45 degree
       steps), so there "evenly over the shell" is not "evenly over directions";
    3. its values replaced rank for rank by the map's own (amplitude-adjusted surrogates,
       Theiler et al. 1992): a rectified, sparse map keeps its sparsity and its sign. Ranking
       moves some power between shells (for trained ReLU units, a few percent of the total);
       iterating steps 2-3 (Schreiber & Schmitz 1996) matched the trained units' profiles worse.

    NaN (unvisited) bins stay NaN; a constant map gives constant surrogates. Deterministic for a
    given stack, ``seed`` and ``chunk``.
    """
    from .spatial_spectra import power_spectra, radial_profile, shell_index

    if n_surrogates < 1:
        raise ValueError(f"n_surrogates must be positive, got {n_surrogates}")
    maps = _as_stack(maps)
    u, n, _ = maps.shape
    k, profile = radial_profile(*power_spectra(maps, extent=(0, n, 0, n)))   # k in rad per bin
    profile = np.nan_to_num(profile)
    freq = 2 * np.pi * np.fft.fftfreq(n)
    amplitude = np.sqrt(profile[:, shell_index(freq, freq, k[1])])     # [U, n, n], unshifted
    amplitude[:, 0, 0] = 0.0
    flat = maps.reshape(u, n * n)
    sorted_values = np.sort(flat, axis=1)                              # NaNs last
    unvisited = np.isnan(flat)
    rng = np.random.default_rng(seed)
    out = np.empty((u, n_surrogates, n * n))
    for start in range(0, u, chunk):
        part = slice(start, min(start + chunk, u))
        shape = (part.stop - part.start, n_surrogates, n, n)
        spectrum = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        field = np.fft.ifft2(spectrum * amplitude[part, None]).real.reshape(*shape[:2], n * n)
        field[np.broadcast_to(unvisited[part, None], field.shape)] = np.inf   # ranked last, like the NaNs
        ranks = field.argsort(-1).argsort(-1)
        out[part] = np.take_along_axis(np.broadcast_to(sorted_values[part, None], field.shape), ranks, -1)
    return out.reshape(u, n_surrogates, n, n)


def null_scores(maps, n_surrogates: int = 20, seed: int = 0, min_max: bool = False,
                ellipse: bool = False) -> dict[str, np.ndarray]:
    """``score_60`` and ``score_90`` ``[U, n_surrogates]`` of each map's :func:`isotropic_surrogates`:
    the gridness that maps with the same values and radial spectrum reach without a lattice (scored
    as :func:`grid_scores` with ``min_max`` and ``ellipse``)."""
    surrogates = isotropic_surrogates(maps, n_surrogates, seed)
    u, s, n, _ = surrogates.shape
    scores = grid_scores(surrogates.reshape(u * s, n, n), min_max=min_max, ellipse=ellipse)
    return {key: scores[key].reshape(u, s) for key in ("score_60", "score_90")}


def constant_maps(maps, tol: float = 1e-6) -> np.ndarray:
    """``[U]``: maps whose range over the visited bins is at most ``tol`` (dead or saturated units;
    all-NaN maps count as constant). Their gridness is 0 and they have no null."""
    maps = _as_stack(maps)
    visited = np.isfinite(maps)
    return np.where(visited, maps, -np.inf).max((1, 2)) - np.where(visited, maps, np.inf).min((1, 2)) <= tol


def map_dimension(maps, tol: float = 1e-6) -> float:
    """How many different maps the stack holds: the participation ratio of their correlations.

    With ``C [U', U']`` the Pearson correlations between the non-constant maps (over the bins every
    map visits) and ``lambda_i`` its eigenvalues, ``PR = (sum lambda)^2 / sum lambda^2``, between 1 (every
    map the same pattern up to gain and offset: a fraction of "grid units" then counts one pattern ``U'``
    times) and ``U'`` (uncorrelated maps, with many more bins than maps: 512 white-noise maps of 20 x 20
    bins give about 224, so compare stacks of the same size and bins). Non-constant means a range above
    ``tol`` (absolute, as for dead units: :func:`constant_maps`), however small the map. Computed from the
    Gram matrix of the standardised maps, ``tr C = U'`` and ``tr C^2 = ||C||_F^2``, without an
    eigendecomposition. NaN with no non-constant map.
    """
    maps = _as_stack(maps)
    flat = maps[~constant_maps(maps, tol)].reshape(-1, maps.shape[1] * maps.shape[2])
    flat = flat[:, np.isfinite(flat).all(0)]
    if len(flat) == 0 or flat.shape[1] < 2:
        return float("nan")
    z = flat - flat.mean(1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = z[norm[:, 0] > 0] / norm[norm[:, 0] > 0]
    if len(z) == 0:
        return float("nan")
    corr = z @ z.T
    return float(len(corr) ** 2 / (corr**2).sum())


def null_threshold(maps, n_surrogates: int = 20, seed: int = 0, min_max: bool = False,
                   key: str = "score_60", ellipse: bool = False) -> tuple[float, np.ndarray]:
    """``(threshold, null [U, n_surrogates])``: ``key`` of :func:`null_scores` for every map that is not
    constant (:func:`constant_maps`; rows of NaN for the constant ones), and their 95th percentile,
    pooled over maps (NaN when every map is constant).

    A stationary field with no preferred direction passes it with probability 5%; maps that are
    uneven over the box pass less often, so for them the test is conservative. Compare the fraction
    of the *non-constant* maps above it with 5%."""
    maps = _as_stack(maps)
    varying = ~constant_maps(maps)
    null = np.full((len(maps), n_surrogates), np.nan)
    if not varying.any():
        return float("nan"), null
    # surrogates of the whole stack, so a unit's null does not depend on which other units are constant
    null[varying] = null_scores(maps, n_surrogates, seed, min_max, ellipse)[key][varying]
    return float(np.nanquantile(null, 0.95)), null


def null_rank(scores, null) -> tuple[float, float]:
    """``(mean_rank, chance_se)``: how each map's score ranks among its own surrogates' scores
    (``null [U, K]`` from :func:`null_threshold`; rows of NaN, the constant maps, are left out),
    averaged over the maps: the fraction of its surrogates that score below it, ties counting half.

    A population statistic, where :func:`null_threshold` counts single units: a weak shift shared by
    many units (each a little more hexagonal than its surrogates) moves the mean rank well above 0.5
    while few units pass a 95th percentile. At chance each map's score is exchangeable with its K
    surrogates' (a stationary field with no preferred direction), so its rank is uniform on
    ``{0, 1/K, ..., 1}``: mean 0.5, variance ``(K + 2) / (12 K)``. ``chance_se`` is the standard error
    of the mean over the U maps with a null, ``sqrt((K + 2) / (12 K U))``, treating maps as
    independent (ties only shrink the variance, so it is an upper bound; amplitude-adjusted
    surrogates are exchangeable with the map only approximately). NaN, NaN when no map has a null."""
    scores, null = np.asarray(scores, dtype=float), np.asarray(null, dtype=float)
    if null.ndim != 2 or scores.shape != null.shape[:1] or null.shape[1] < 1:
        raise ValueError(f"need scores [U] and a null [U, K] with K >= 1, got {scores.shape} and {null.shape}")
    rows = np.isfinite(null).all(1) & np.isfinite(scores)
    u, k = int(rows.sum()), null.shape[1]
    if u == 0:
        return float("nan"), float("nan")
    x, s = scores[rows, None], null[rows]
    ranks = ((s < x).sum(1) + 0.5 * (s == x).sum(1)) / k
    return float(ranks.mean()), float(np.sqrt((k + 2) / (12 * k * u)))


# ----------------------------------------------------------------------------- the analysis


@register_analysis("gridness", protocol=SpatialMaps, version="5", quick_params={"n_positions": 20_000})
def gridness(model, task, *, min_max: bool = False, threshold_lenient: float = 0.3,
             threshold_strict: float = 0.8, n_positions: int = 200_000, bins: int = 20,
             n_surrogates: int = 20, null_seed: int = 0, ellipse: bool = False) -> AnalysisResult:
    """Gridness (score_60, score_90; DeepMind's scorer) of every spatial map, with grid spacing, and
    against a null: the 95th percentile of score_60 over ``n_surrogates`` :func:`isotropic_surrogates`
    of every non-constant map, pooled (``null_score_60_p95``; :func:`null_threshold`), and the
    fraction of the non-constant maps above it (``grid_fraction_above_null``; chance: 5%), and the
    mean rank of each map's score_60 among its own surrogates' (``null_rank_60`` with its chance
    standard error ``null_rank_60_se``; chance: 0.5; :func:`null_rank`).

    With ``ellipse`` every score, the maps' and the surrogates', is that of the ellipse-corrected
    autocorrelogram (:func:`ellipse_corrected`), and ``median_axis_ratio`` (over the maps with an
    ellipse), ``axis_ratio [U]`` and ``major_axis [U]`` are added; spacing stays that of the raw
    autocorrelogram.

    ``n_positions`` and ``bins`` are passed to models whose ``spatial_maps`` takes them (ratemaps).
    """
    import inspect

    params = inspect.signature(model.spatial_maps).parameters
    options = {k: v for k, v in {"n_positions": n_positions, "bins": bins, "task": task}.items() if k in params}
    stack = model.spatial_maps(**options)
    maps = _as_stack(stack)
    scores = grid_scores(maps, min_max=min_max, ellipse=ellipse)
    n = maps.shape[-1]
    bin_size = (stack.extent[1] - stack.extent[0]) / n
    geom = grid_geometry(scores["sac"], bin_size)
    s60 = scores["score_60"]
    grid = s60 > threshold_lenient
    spacing_grid = geom["spacing"][grid]
    summary: dict[str, Any] = {
        "n_maps": int(len(s60)),
        "median_score_60": float(np.median(s60)),
        "median_score_90": float(np.median(scores["score_90"])),
        "max_score_60": float(s60.max()),
        "grid_fraction_0.3": float((s60 > threshold_lenient).mean()),
        "grid_fraction_0.8": float((s60 > threshold_strict).mean()),
        "n_grid_with_spacing": int(np.isfinite(spacing_grid).sum()),
    }
    threshold, null = null_threshold(maps, n_surrogates, null_seed, min_max, ellipse=ellipse)
    if np.isfinite(threshold):  # of the non-constant maps, for which chance is 5%
        summary["null_score_60_p95"] = threshold
        summary["grid_fraction_above_null"] = float((s60 > threshold)[np.isfinite(null[:, 0])].mean())
        summary["null_rank_60"], summary["null_rank_60_se"] = null_rank(s60, null)
    if np.isfinite(spacing_grid).any():  # left out (not NaN) when no grid unit has a measurable spacing
        summary[f"median_spacing_{stack.units}"] = float(np.nanmedian(spacing_grid))
    arrays = {"score_60": s60, "score_90": scores["score_90"], "spacing": geom["spacing"],
              "orientation": geom["orientation"], "maps": maps.astype(np.float32),
              "sac": np.asarray(scores["sac"], dtype=np.float32), "null_score_60": null, "extent": np.asarray(stack.extent, dtype=float)}
    if ellipse:
        ratio = scores["axis_ratio"]
        arrays["axis_ratio"], arrays["major_axis"] = ratio, scores["major_axis"]
        summary["median_axis_ratio"] = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else float("nan")
    return AnalysisResult(summary=summary, arrays=arrays)
