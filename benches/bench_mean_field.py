"""Benchmark: the vectorised mean-field phase diagram against a plain loop of scipy.integrate.quad.

The phase diagram (tanh; q*, chi_1, chi_2, c*, chi_c, xi_q, xi_c and the chi_1 = 1 boundary) is
computed on a GRID x GRID grid of (sigma_w^2, sigma_b^2) by :func:`zoo.analysis.mean_field.phase_diagram`.
The baseline solves each grid point on its own with scipy: ``brentq`` on the length map with
``quad`` inside for q*, ``quad`` for chi_1 and chi_2, and ``brentq`` on the correlation map with
nested ``quad`` for c* (chaotic points). It runs on a random subset of points and its time is
extrapolated to the whole grid; the maximum errors on the subset are reported too.

    .venv/bin/python benches/bench_mean_field.py [--grid 200] [--subset 24] [--subset-c 4]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.analysis import mean_field as mf  # noqa: E402

PDF = 1.0 / math.sqrt(2.0 * math.pi)
OPTS = dict(epsabs=1e-13, epsrel=1e-12, limit=200)


def _gauss(f) -> float:
    """Int Dz f(z) by adaptive quadrature (split at 0 where tanh(sqrt(q) z) turns)."""
    g = lambda z: f(z) * PDF * math.exp(-0.5 * z * z)  # noqa: E731
    return integrate.quad(g, -12.0, 0.0, **OPTS)[0] + integrate.quad(g, 0.0, 12.0, **OPTS)[0]


def _quad_point(sw: float, sb: float) -> dict:
    V = lambda q: _gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2)  # noqa: E731
    F = lambda q: sw * V(q) + sb - q  # noqa: E731
    if F(1e-12) <= 0:
        q = 0.0
    else:
        q = optimize.brentq(F, 1e-12, sw + sb + 1.0, xtol=1e-14, rtol=1e-14)
    s = math.sqrt(q)
    chi1 = sw * _gauss(lambda z: (1 - math.tanh(s * z) ** 2) ** 2)
    chi2 = sw * _gauss(lambda z: (2 * math.tanh(s * z) * (1 - math.tanh(s * z) ** 2)) ** 2)
    return {"q_star": q, "chi_1": chi1, "chi_2": chi2}


def _quad_c_star(sw: float, sb: float, q: float) -> float:
    s = math.sqrt(q)

    def cmap(c: float) -> float:
        r = math.sqrt(max(0.0, 1 - c * c))
        inner = lambda z1: _gauss(lambda z2: math.tanh(s * (c * z1 + r * z2)))  # noqa: E731
        return (sw * _gauss(lambda z1: math.tanh(s * z1) * inner(z1)) + sb) / q

    return optimize.brentq(lambda c: cmap(c) - c, 0.0, 1.0 - 1e-6, xtol=1e-10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--subset", type=int, default=24, help="grid points solved by the scipy loop")
    ap.add_argument("--subset-c", type=int, default=4, help="chaotic points whose c* scipy solves (slow)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sw_axis = torch.logspace(math.log10(0.8), math.log10(20.0), args.grid, dtype=torch.float64)
    sb_axis = torch.linspace(0.0, 0.5, args.grid, dtype=torch.float64)
    t0 = time.perf_counter()
    pd = mf.phase_diagram(sw_axis, sb_axis, "tanh")
    t_vec = time.perf_counter() - t0
    n_points = args.grid**2
    chaotic = pd.fixed.chaotic

    rng = np.random.default_rng(0)
    picks = rng.choice(n_points, size=args.subset, replace=False)
    errs = {"q_star": 0.0, "chi_1": 0.0, "chi_2": 0.0}
    t0 = time.perf_counter()
    for k in picks:
        i, j = divmod(int(k), args.grid)
        ref = _quad_point(float(sw_axis[i]), float(sb_axis[j]))
        for key in errs:
            got = float(getattr(pd.fixed, key)[i, j])
            errs[key] = max(errs[key], abs(got - ref[key]) / max(abs(ref[key]), 1e-12))
    t_1d = (time.perf_counter() - t0) / args.subset

    chaos_idx = np.flatnonzero(chaotic.reshape(-1).numpy())
    picks_c = rng.choice(chaos_idx, size=min(args.subset_c, len(chaos_idx)), replace=False)
    err_c = 0.0
    t0 = time.perf_counter()
    for k in picks_c:
        i, j = divmod(int(k), args.grid)
        ref = _quad_c_star(float(sw_axis[i]), float(sb_axis[j]), float(pd.fixed.q_star[i, j]))
        err_c = max(err_c, abs(float(pd.fixed.c_star[i, j]) - ref))
    t_c = (time.perf_counter() - t0) / max(1, len(picks_c))

    frac_chaos = float(chaotic.double().mean())
    t_loop_1d = t_1d * n_points
    t_loop = t_loop_1d + t_c * n_points * frac_chaos
    print(f"phase diagram {args.grid}x{args.grid} = {n_points} points (tanh), torch threads = {args.threads}")
    print(f"  vectorised (q*, chi_1, chi_2, c*, chi_c, xi_q, xi_c + boundary): {t_vec:8.2f} s")
    print(f"  scipy quad loop, q*/chi_1/chi_2: {t_1d * 1e3:8.1f} ms/point on {args.subset} points -> "
          f"{t_loop_1d:9.0f} s extrapolated")
    print(f"  scipy nested quad, c*:           {t_c:8.2f} s/point on {len(picks_c)} chaotic points "
          f"({frac_chaos:.0%} of the grid chaotic)")
    print(f"  extrapolated loop total:         {t_loop:9.0f} s")
    print(f"ratio (loop / vectorised): {t_loop / t_vec:.0f}x overall, {t_loop_1d / t_vec:.0f}x counting only q*, chi_1, chi_2")
    print("max error against scipy on the subset: " + ", ".join(f"{k} {v:.1e} (rel)" for k, v in errs.items())
          + f", c* {err_c:.1e} (abs)")


if __name__ == "__main__":
    main()
