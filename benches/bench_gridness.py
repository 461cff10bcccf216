"""Gridness of 4,096 ratemaps: the vectorised scorer against a per-unit loop (the oracle).

The baseline is DeepMind's scorer written plainly, one unit at a time: the autocorrelogram by
six direct 2-D convolutions, ``scipy.ndimage.rotate`` for each of seven angles, and a loop over
the ten ring masks. The vectorised :func:`zoo.analysis.gridness.grid_scores` scores all units with
FFTs, one sparse rotation operator and matrix products. The two must agree to 1e-6 (checked
here as well as in the tests). Target: at least 20 times faster.

    .venv/bin/python benches/bench_gridness.py [--units 4096] [--oracle-units 4096] [--bins 20]

Both sides run on one thread. ``--oracle-units`` below ``--units`` times the oracle on a subset and scales its time linearly
(it is a loop over units); the printout says so.
"""

from __future__ import annotations

import os

# one BLAS thread for both sides: a like-for-like single-core comparison (and no spinning
# BLAS threads on a shared machine, which slows the small matrix products down several-fold)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys
import time
from pathlib import Path

import numpy as np  # noqa: E402
from scipy import ndimage, signal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.analysis.gridness import grid_scores  # noqa: E402


def _sac(m: np.ndarray) -> np.ndarray:
    ones = np.where(np.isnan(m), 0.0, 1.0)
    m = np.nan_to_num(m)
    f = lambda b, x: signal.convolve2d(x, np.rot90(b, 2), mode="full")  # noqa: E731
    prod, s1, s2 = f(m, m), f(m, ones), f(ones, m)
    q1, q2, nb = f(m**2, ones), f(ones, m**2), f(ones, ones)
    with np.errstate(all="ignore"):
        sd = np.sqrt(q1 / nb - s1**2 / nb**2) * np.sqrt(q2 / nb - s2**2 / nb**2)
        return np.nan_to_num((prod / nb - s1 * s2 / nb**2) / sd)


def oracle(m: np.ndarray) -> tuple[float, float]:
    n = m.shape[0]
    sac = _sac(m)
    rot = {a: ndimage.rotate(sac, a, reshape=False) for a in (30, 45, 60, 90, 120, 135, 150)}
    x = np.linspace(-(n - 1), n - 1, 2 * n - 1)
    r = np.hypot(x[None], x[:, None])
    b60 = b90 = -np.inf
    for outer in np.linspace(0.4, 1.0, 10):
        mask = (r <= outer * n) * (1 - (r <= 0.2 * n))
        area = mask.sum()
        mean = (sac * mask).sum() / area
        cen = (sac - mean) * mask
        var = (cen**2).sum() / area + 1e-5
        c = {a: (cen * (rot[a] - mean) * mask).sum() / area / var for a in rot}
        b60 = max(b60, (c[60] + c[120]) / 2 - (c[30] + c[90] + c[150]) / 3)
        b90 = max(b90, c[90] - (c[45] + c[135]) / 2)
    return b60, b90


def synthetic_maps(units: int, bins: int, seed: int = 0) -> np.ndarray:
    """A mix of hexagonal, square and noisy maps, like the ratemaps of a trained network."""
    rng = np.random.default_rng(seed)
    c = (np.arange(bins) + 0.5) / bins * 2.2 - 1.1
    x, y = np.meshgrid(c, c)
    k = 4 * np.pi / (np.sqrt(3) * rng.uniform(0.4, 0.9, units))
    th = rng.uniform(0, np.pi, units)
    waves = sum(np.cos(k[:, None, None] * (np.cos(th + a)[:, None, None] * x + np.sin(th + a)[:, None, None] * y)
                       + rng.uniform(0, 2 * np.pi, (units, 1, 1))) for a in (0, np.pi / 3, 2 * np.pi / 3))
    weight = rng.uniform(0, 2, (units, 1, 1))
    return np.maximum(weight * waves + rng.standard_normal((units, bins, bins)), 0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--oracle-units", type=int, default=4096)
    parser.add_argument("--bins", type=int, default=20)
    args = parser.parse_args(argv)
    maps = synthetic_maps(args.units, args.bins)

    grid_scores(maps[:2])  # builds the cached rotation operator for this size
    start = time.perf_counter()
    fast = grid_scores(maps)
    t_fast = time.perf_counter() - start

    n_or = min(args.oracle_units, args.units)
    start = time.perf_counter()
    slow = np.array([oracle(m) for m in maps[:n_or]])
    t_slow = (time.perf_counter() - start) * args.units / n_or
    err = max(np.abs(fast["score_60"][:n_or] - slow[:, 0]).max(), np.abs(fast["score_90"][:n_or] - slow[:, 1]).max())

    print(f"gridness of {args.units} maps of {args.bins} x {args.bins} bins (score_60 and score_90, 10 masks)")
    print(f"  vectorised (warm operator): {t_fast:8.2f} s")
    scaled = "" if n_or == args.units else f" (timed on {n_or} units, scaled linearly)"
    print(f"  per-unit oracle:            {t_slow:8.2f} s{scaled}")
    print(f"  speed-up: {t_slow / t_fast:.1f}x (target >= 20x); max |difference| = {err:.2e} (must be < 1e-6)")
    print(f"  fraction of maps with score_60 > 0.3: {(fast['score_60'] > 0.3).mean():.3f}")
    if err >= 1e-6:
        raise SystemExit("vectorised scores disagree with the oracle")


if __name__ == "__main__":
    main()
