"""Benchmark: the zoo's batched torch LASSO solver against scikit-learn, and vectorised state
evolution against a ``scipy.integrate.quad`` loop, each ratio measured in the same run.

1. LASSO (MAP for a Laplace signal in Gaussian noise, PAPERS.md §5): ``|y - X s|^2 / 2 + lam |s|_1``,
   ``lam = sqrt(2)`` (unit variances), ``X`` of size ``N x P`` with ``N(0, 1/P)`` entries, ``P = 1000``,
   ``alpha = N/P`` (default 1). Ours: :func:`zoo.models.linear_inference.lasso` (FISTA with adaptive
   restart, all problems batched in one tensor, float64). Baseline: ``sklearn.linear_model.Lasso``
   (coordinate descent, ``alpha = lam / N``, no intercept), one problem after another. Both stop
   on the LASSO duality gap, set so that each certifies ``gap <= 1e-8 * objective``; the printed
   objectives are then compared (they agree to ~1e-8 relative by construction, and we check it).
   Timed for 1 problem and for 100 problems.
2. State evolution of the LASSO on 100 alphas in [0.5, 8]: :func:`zoo.analysis.state_evolution.map_state_evolution`
   (vectorised Gauss-Legendre) against the same damped fixed-point iteration with every expectation
   computed by ``scipy.integrate.quad`` (adaptive, ``epsabs = 1e-13``, split at the kinks), one alpha
   at a time. Accuracy: the largest error of each against a reference made with 4x the panels.

    .venv/bin/python benches/bench_m_estimation.py [--P 1000] [--alpha 1] [--problems 100] [--threads 1] [--quick]

scikit-learn is a bench/test extra (``pip install scikit-learn``); without it part 1 is skipped.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, special

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.analysis import state_evolution as se  # noqa: E402
from zoo.models import linear_inference as li  # noqa: E402
from zoo.tasks.linear_inference import LinearInference  # noqa: E402

REL = 1e-8


def lasso_bench(P: int, alpha: float, problems: int) -> None:
    try:
        from sklearn.linear_model import Lasso
    except ImportError:
        print("scikit-learn is not installed: skipping the LASSO comparison (pip install scikit-learn)")
        return
    lam = math.sqrt(2.0)
    task = LinearInference(seed=11, alpha=alpha, P=P)
    X, y, _ = task.problems(problems)
    N = X.shape[1]
    print(f"LASSO: P={P}, N={N}, lam={lam:.4f}, float64, stop at duality gap <= {REL:g} x objective")
    for B in (1, problems):
        Xb, yb = X[:B].contiguous(), y[:B].contiguous()
        t0 = time.perf_counter()
        s, info = li.lasso(Xb, yb, lam, gap_tol=REL)
        t_ours = time.perf_counter() - t0
        f_ours, gap_ours = li.lasso_duality_gap(Xb, yb, s, lam)
        # scikit-learn: objective/N and its gap test is gap_N < tol * |y|^2 / N, i.e. gap < tol |y|^2:
        # tol = REL * F / |y|^2 certifies the same relative gap (F from our solve, before timing it)
        t_sk, f_sk, gap_sk = 0.0, [], []
        for b in range(B):
            Xn, yn = Xb[b].numpy(), yb[b].numpy()
            tol = REL * float(f_ours[b]) / float(yn @ yn)
            model = Lasso(alpha=lam / N, fit_intercept=False, tol=tol, max_iter=1_000_000, selection="cyclic")
            t0 = time.perf_counter()
            model.fit(Xn, yn)
            t_sk += time.perf_counter() - t0
            w = torch.from_numpy(model.coef_.astype(np.float64))[None]
            f, g = li.lasso_duality_gap(Xb[b : b + 1], yb[b : b + 1], w, lam)
            f_sk.append(float(f[0]))
            gap_sk.append(float(g[0]))
        f_sk, gap_sk = np.array(f_sk), np.array(gap_sk)
        rel = np.abs(f_ours.numpy() - f_sk) / f_sk
        print(f"  {B:4d} problem(s): torch {t_ours:8.3f} s ({info.iterations} iterations), sklearn {t_sk:8.3f} s; "
              f"sklearn / torch = {t_sk / t_ours:6.2f}x")
        print(f"       max relative gap: torch {float((gap_ours / f_ours).max()):.1e}, sklearn {float((gap_sk / f_sk).max()):.1e}; "
              f"max |F_torch - F_sklearn| / F = {rel.max():.1e} ({'ok' if rel.max() <= 2 * REL else 'ABOVE 2e-8'})")


# -- the quad-loop baseline of the state evolution (scalar numpy/scipy) -------------------------------

def _laplace_scalar(r: float, q: float, b: float) -> tuple[float, float, float]:
    """``(E[s|r], Var[s|r], density of r)`` for a Laplace(b) prior, scalar."""
    sq = math.sqrt(q)
    ap, am = (r - q / b) / sq, -(r + q / b) / sq
    lp, lm = -r / b + special.log_ndtr(ap), r / b + special.log_ndtr(am)
    wp = 1.0 / (1.0 + math.exp(lm - lp))
    wm = 1.0 - wp
    kp = math.exp(-0.5 * ap * ap - special.log_ndtr(ap)) / math.sqrt(2 * math.pi)
    km = math.exp(-0.5 * am * am - special.log_ndtr(am)) / math.sqrt(2 * math.pi)
    mp, mm = r - q / b + sq * kp, r + q / b - sq * km
    vp, vm = q * (1 - kp * (kp + ap)), q * (1 - km * (km + am))
    mean = wp * mp + wm * mm
    var = wp * vp + wm * vm + wp * wm * (mp - mm) ** 2
    dens = math.exp(np.logaddexp(lp, lm) + q / (2 * b * b)) / (2 * b)
    return mean, var, dens


def se_quad(alpha: float, damping: float = 0.8, tol: float = 1e-12, max_iter: int = 5000) -> float:
    """LASSO state evolution (Laplace signal, unit Gaussian noise) with quad integrals."""
    b = math.sqrt(0.5)
    q_d = lam_s = 2.0 / alpha
    for _ in range(max_iter):
        theta = lam_s / b
        R = 40 * math.sqrt(1 + q_d)

        def err(r, q_d=q_d, theta=theta):
            m, v, p = _laplace_scalar(r, q_d, b)
            soft = math.copysign(max(abs(r) - theta, 0.0), r)
            return ((soft - m) ** 2 + v) * p

        def on(r, q_d=q_d):
            return _laplace_scalar(r, q_d, b)[2]

        kw = dict(epsabs=1e-13, epsrel=1e-12, limit=500)
        q_s = 2 * (integrate.quad(err, 0, theta, **kw)[0] + integrate.quad(err, theta, R, **kw)[0])
        frac = 2 * integrate.quad(on, theta, R, **kw)[0]
        lam_r = lam_s * frac
        new_lam = (1 + lam_r) / alpha      # quadratic loss u^2/2: closed form noise side
        new_qd = (1 + q_s) / alpha
        nq = math.exp((1 - damping) * math.log(q_d) + damping * math.log(new_qd))
        nl = math.exp((1 - damping) * math.log(lam_s) + damping * math.log(new_lam))
        done = max(abs(nq / q_d - 1), abs(nl / lam_s - 1)) < tol
        q_d, lam_s = nq, nl
        if done:
            break
    return q_s


def se_bench(n_alpha: int) -> None:
    alphas = np.geomspace(0.5, 8.0, n_alpha)
    a = torch.as_tensor(alphas)
    t0 = time.perf_counter()
    ours = se.map_state_evolution(a).mse.numpy()
    t_ours = time.perf_counter() - t0
    ref = se.map_state_evolution(a, quad=se.Quadrature(panels=192, order=24)).mse.numpy()
    t0 = time.perf_counter()
    base = np.array([se_quad(float(x)) for x in alphas])
    t_base = time.perf_counter() - t0
    print(f"State evolution (LASSO, Laplace signal, Gaussian noise) on {n_alpha} alphas in [0.5, 8]:")
    print(f"  vectorised Gauss-Legendre {t_ours:7.3f} s, quad loop {t_base:7.3f} s; quad / ours = {t_base / t_ours:6.1f}x")
    e_ours, e_base = np.abs(ours - ref).max(), np.abs(base - ref).max()
    print(f"  max |error| vs a 4x-panel reference: ours {e_ours:.1e}, quad {e_base:.1e} "
          f"(quad / ours = {e_base / max(e_ours, 1e-17):.1f}x); MSE at alpha=1: {float(np.interp(1.0, alphas, ours)):.6f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--P", type=int, default=1000)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--n-alpha", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="P=200, 10 problems, 10 alphas")
    args = p.parse_args()
    if args.quick:
        args.P, args.problems, args.n_alpha = 200, 10, 10
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    print(f"threads: {args.threads}, torch {torch.__version__}")
    lasso_bench(args.P, args.alpha, args.problems)
    se_bench(args.n_alpha)


if __name__ == "__main__":
    main()
