"""Estimators of high-dimensional linear inference (Advani & Ganguli 2016; PAPERS.md §5).

Entries ``linear-inference/{map,ridge,optimal,amp}``: each is a module whose
``forward(X [B, N, P], y [B, N]) -> s_hat [B, P]`` solves a batch of independent problems
``y = X s0 + eps`` (task :mod:`zoo.tasks.linear_inference`), all at once, in float64.

* ``map``: ``argmin sum_mu rho(y_mu - x_mu . s) + sum_i sigma(s_i)`` with ``rho = -log P_noise``,
  ``sigma = -log P_signal`` (LASSO for a Laplace prior and Gaussian noise, least absolute
  deviations for Laplace noise).
* ``ridge``: quadratic loss ``|y - X s|^2 / (2 s_n^2)`` and the best quadratic penalty
  ``|s|^2 / (2 s_s^2)``, solved by batched conjugate gradients.
* ``optimal``: the optimal M-estimator, ``rho_opt``, ``sigma_opt`` of Advani & Ganguli eq. 15,
  built by :class:`zoo.analysis.state_evolution.SmoothedPenalty` from the posterior-mean denoiser
  at the replica fixed point ``(q_s, q_d)`` of the configured ``alpha``.
* ``amp``: Bayes-optimal approximate message passing (GAMP with scalar variances and the
  posterior-mean denoisers of signal and noise), the MMSE reference.

Convex problems are solved by FISTA with gradient-based adaptive restart when the loss is smooth
(O'Donoghue & Candes 2015), by ADMM with a cached Cholesky factor when it is not (LAD). The
stopping rule is the proximal-gradient mapping ``|s - prox(s - t grad)|/t`` below ``tol`` per
component (``tol = 1e-9`` by default); for the LASSO :func:`lasso` also stops on the duality gap.

These entries have nothing to train (``weights="seed"``): an estimator is a deterministic
function of its config (prior, noise, alpha, variances), so the seed is recorded but unused.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis import state_evolution as se
from ..registry import register

ESTIMATORS = ("map", "ridge", "optimal", "amp")
METRICS_FILE = Path(__file__).with_name("linear_inference_metrics.json")


# ---------------------------------------------------------------------------------------------
# batched solvers
# ---------------------------------------------------------------------------------------------

@dataclass
class SolveInfo:
    """How a batch of solves ended: ``iterations`` run, the final stopping ``residual [B]``."""

    iterations: int
    residual: torch.Tensor
    converged: bool


def _check_problem(X: torch.Tensor, y: torch.Tensor) -> None:
    if X.ndim != 3 or y.ndim != 2 or X.shape[:2] != y.shape:
        raise ValueError(f"expected X [B, N, P] and y [B, N], got {tuple(X.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("X and y must be finite (found NaN or inf)")


def _mv(X: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.bmm(X, s.unsqueeze(-1)).squeeze(-1)


def _tmv(X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.bmm(r.unsqueeze(1), X).squeeze(1)


def spectral_norm_sq(X: torch.Tensor, iters: int = 60, generator: torch.Generator | None = None) -> torch.Tensor:
    """``||X_b||_2^2`` for each problem ``[B]`` by power iteration on ``X^T X`` (a lower bound that is
    tight to ~1e-6 here; callers add a 2 % margin)."""
    g = generator or torch.Generator().manual_seed(0)
    v = torch.randn(X.shape[0], X.shape[2], generator=g, dtype=X.dtype)
    for _ in range(iters):
        v = _tmv(X, _mv(X, v))
        v = v / v.norm(dim=-1, keepdim=True)
    return _tmv(X, _mv(X, v)).norm(dim=-1)


CHUNK_BYTES = 2**25  # CPU: solve at most this many bytes of X at once (cache-sized; 16 problems of P = N = 1000
#                     in one batch ran 2x slower per problem than 1-4 at a time on the project's 2-core machine)


def chunked(solver, X: torch.Tensor, y: torch.Tensor, *args, chunk_bytes: int | None = None, **kwargs
            ) -> tuple[torch.Tensor, SolveInfo]:
    """Run ``solver(X, y, *args, **kwargs)`` on slices of the batch of at most ``chunk_bytes`` of ``X`` each
    (CPU only: matrix-vector products are memory-bound, and a cache-sized batch is fastest; on a GPU
    the whole batch goes at once). Returns the joined estimates and one :class:`SolveInfo`."""
    per_problem = X[0].numel() * X.element_size()
    limit = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    if X.device.type != "cpu" or X.shape[0] * per_problem <= limit:
        return solver(X, y, *args, **kwargs)
    per = max(1, limit // per_problem)
    parts = [solver(X[i : i + per], y[i : i + per], *args, **kwargs) for i in range(0, X.shape[0], per)]
    info = SolveInfo(max(p[1].iterations for p in parts), torch.cat([p[1].residual for p in parts]),
                     all(p[1].converged for p in parts))
    return torch.cat([p[0] for p in parts]), info


def objective(X, y, s, loss: se.Penalty, reg: se.Penalty) -> torch.Tensor:
    """``sum_mu loss(y - X s) + sum_i reg(s)`` per problem ``[B]``."""
    return loss.value(y - _mv(X, s)).sum(-1) + reg.value(s).sum(-1)


def fista(X: torch.Tensor, y: torch.Tensor, loss: se.Penalty, reg: se.Penalty, *, tol: float = 1e-9,
          max_iter: int = 20000, s_init: torch.Tensor | None = None, check_every: int = 10,
          stop=None) -> tuple[torch.Tensor, SolveInfo]:
    """Minimise ``sum loss(y - X s) + sum reg(s)`` (``loss`` smooth) for every problem of the batch.

    FISTA with step ``1 / (sup loss'' * 1.02 ||X||^2)`` per problem and gradient-based adaptive
    restart. Stops when every problem's proximal-gradient mapping has RMS below ``tol`` (or
    ``stop(s, residual y - X s, gradient) -> [B] bool`` says so; checked every ``check_every`` iterations).
    Returns ``(s [B, P], SolveInfo)``.
    """
    _check_problem(X, y)
    if not loss.smooth:
        raise ValueError(f"FISTA needs a smooth loss, got {loss!r}; use admm")
    B, N, P = X.shape
    L = 1.02 * loss.curvature_bound() * spectral_norm_sq(X)
    t = (1.0 / L)[:, None]
    s = torch.zeros(B, P, dtype=X.dtype) if s_init is None else s_init.clone()
    z, mom = s.clone(), torch.ones(B, 1, dtype=X.dtype)
    res = torch.full((B,), math.inf, dtype=X.dtype)
    it = 0
    for it in range(1, max_iter + 1):
        grad = -_tmv(X, loss.grad(y - _mv(X, z)))
        s_new = reg.prox(z - t * grad, t)
        restart = ((z - s_new) * (s_new - s)).sum(-1, keepdim=True) > 0
        mom_new = 0.5 * (1 + torch.sqrt(1 + 4 * mom * mom))
        mom_new = torch.where(restart, torch.ones_like(mom_new), mom_new)
        beta = torch.where(restart, torch.zeros_like(mom), (mom - 1) / mom_new)
        z = s_new + beta * (s_new - s)
        s, mom = s_new, mom_new
        if it % check_every == 0:
            u = y - _mv(X, s)
            g = -_tmv(X, loss.grad(u))
            res = (s - reg.prox(s - t * g, t)).norm(dim=-1) / (t[:, 0] * math.sqrt(P))
            done = res < tol
            if stop is not None:
                done = done | stop(s, u, g)
            if bool(done.all()):
                return s, SolveInfo(it, res, True)
    return s, SolveInfo(it, res, False)


def admm(X: torch.Tensor, y: torch.Tensor, loss: se.Penalty, reg: se.Penalty, *, tol: float = 1e-9,
         max_iter: int = 20000, beta: float = 1.0, check_every: int = 5) -> tuple[torch.Tensor, SolveInfo]:
    """ADMM (Boyd et al. 2011, sec. 3) for ``min sum loss(u) + sum reg(v)`` s.t. ``u = y - X s``, ``v = s``:
    any convex ``loss`` and ``reg`` with proximal maps (least absolute deviations, non-smooth MAP).

    ``s``-step: ``(X^T X + I) s = X^T (y - u + w_1) + v - w_2`` with a Cholesky factor made once per
    problem (of ``I_N + X X^T`` by Woodbury when ``N < P``); ``u``, ``v``: proximal steps at ``1/beta``;
    scaled duals ``w``. Stops when the RMS primal residual and ``beta`` times the RMS change of
    ``(u, v)`` (the dual residual) are both below ``tol``; returns ``v``, the iterate that is exactly
    where the regulariser's kinks put it (zeros of the LASSO-type penalties)."""
    _check_problem(X, y)
    B, N, P = X.shape
    dt = X.dtype
    if N >= P:
        chol = torch.linalg.cholesky(X.mT @ X + torch.eye(P, dtype=dt))

        def solve(b):
            return torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
    else:
        chol = torch.linalg.cholesky(X @ X.mT + torch.eye(N, dtype=dt))

        def solve(b):  # (I + X^T X)^-1 b = b - X^T (I + X X^T)^-1 X b
            return b - _tmv(X, torch.cholesky_solve(_mv(X, b).unsqueeze(-1), chol).squeeze(-1))
    s = torch.zeros(B, P, dtype=dt)
    u, v = y.clone(), s.clone()
    w1, w2 = torch.zeros_like(u), torch.zeros_like(v)
    t = torch.tensor(1.0 / beta, dtype=dt)
    res = torch.full((B,), math.inf, dtype=dt)
    it = 0
    for it in range(1, max_iter + 1):
        s = solve(_tmv(X, y - u + w1) + v - w2)
        Xs = _mv(X, s)
        u_new = loss.prox(y - Xs + w1, t)
        v_new = reg.prox(s + w2, t)
        r1, r2 = y - Xs - u_new, s - v_new
        w1, w2 = w1 + r1, w2 + r2
        if it % check_every == 0:
            primal = torch.sqrt(((r1 * r1).sum(-1) + (r2 * r2).sum(-1)) / (N + P))
            dual = beta * torch.sqrt((_tmv(X, u_new - u) ** 2).sum(-1) / P + ((v_new - v) ** 2).sum(-1) / P)
            res = torch.maximum(primal, dual)
        u, v = u_new, v_new
        if it % check_every == 0 and bool((res < tol).all()):
            return v, SolveInfo(it, res, True)
    return v, SolveInfo(it, res, False)


def lasso_duality_gap(X, y, s, lam: float, r: torch.Tensor | None = None, Xtr: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(primal, gap)`` of ``|y - X s|^2 / 2 + lam |s|_1`` per problem, with the dual point
    ``nu = r min(1, lam / |X^T r|_inf)``, ``r = y - X s`` (the usual LASSO certificate); ``r`` and
    ``X^T r`` are computed unless given."""
    r = y - _mv(X, s) if r is None else r
    Xtr = _tmv(X, r) if Xtr is None else Xtr
    primal = 0.5 * (r * r).sum(-1) + lam * s.abs().sum(-1)
    scale = torch.clamp(lam / Xtr.abs().amax(-1), max=1.0)[:, None]
    nu = r * scale
    dual = 0.5 * (y * y).sum(-1) - 0.5 * ((y - nu) ** 2).sum(-1)
    return primal, primal - dual


def lasso(X: torch.Tensor, y: torch.Tensor, lam: float, *, gap_tol: float = 1e-10, max_iter: int = 100000,
          check_every: int = 10, chunk_bytes: int | None = None) -> tuple[torch.Tensor, SolveInfo]:
    """``argmin |y - X s|^2 / 2 + lam |s|_1`` per problem by FISTA (cache-sized chunks of the batch on
    CPU, :func:`chunked`), stopped when every problem's duality gap is below ``gap_tol`` times its
    primal objective (a certificate of relative accuracy)."""
    def one(X, y):
        def stop(s, r, grad):
            primal, gap = lasso_duality_gap(X, y, s, lam, r, -grad)
            return gap <= gap_tol * primal

        return fista(X, y, se.Quadratic(1.0), se.Absolute(1.0 / lam), tol=0.0, max_iter=max_iter,
                     check_every=check_every, stop=stop)

    return chunked(one, X, y, chunk_bytes=chunk_bytes)


def conjugate_gradient_ridge(X: torch.Tensor, y: torch.Tensor, weight: float, *, tol: float = 1e-12,
                             max_iter: int = 1000) -> tuple[torch.Tensor, SolveInfo]:
    """``(X^T X + weight I) s = X^T y`` per problem by batched conjugate gradients (relative residual ``tol``)."""
    _check_problem(X, y)
    b = _tmv(X, y)
    s = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(-1, keepdim=True)
    bn = b.norm(dim=-1).clamp_min(1e-300)
    it = 0
    for it in range(1, max_iter + 1):
        Ap = _tmv(X, _mv(X, p)) + weight * p
        step = rr / (p * Ap).sum(-1, keepdim=True)
        s = s + step * p
        r = r - step * Ap
        rr_new = (r * r).sum(-1, keepdim=True)
        if bool((rr_new.sqrt()[:, 0] / bn < tol).all()):
            return s, SolveInfo(it, rr_new.sqrt()[:, 0] / bn, True)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return s, SolveInfo(it, rr.sqrt()[:, 0] / bn, False)


def amp(X: torch.Tensor, y: torch.Tensor, signal: se.Law, noise: se.Law, *, tol: float = 1e-9, max_iter: int = 500,
        damping: float = 1.0) -> tuple[torch.Tensor, SolveInfo]:
    """Bayes-optimal AMP (GAMP with scalar variances; Rangan 2011) for ``X_ij ~ N(0, 1/P)``::

        V_p = <v>,  p = X s_hat - V_p g,  w = y - p,  g = (w - E[eps | w; V_p]) / V_p,
        V_r = 1 / (alpha <(1 - Var[eps | w; V_p] / V_p) / V_p>),  r = s_hat + V_r X^T g,
        s_hat, v = E[s | r; V_r], Var[s | r; V_r]

    (``alpha = N/P``, ``<.>`` the mean over components). Its fixed point's error obeys the Bayes
    state evolution (the replica MMSE for log-concave priors). Stops when the RMS change of
    ``s_hat`` is below ``tol``."""
    _check_problem(X, y)
    B, N, P = X.shape
    alpha = N / P
    s = torch.zeros(B, P, dtype=X.dtype)
    v = torch.full((B, P), signal.var, dtype=X.dtype)
    g = torch.zeros(B, N, dtype=X.dtype)
    change = torch.full((B,), math.inf, dtype=X.dtype)
    it = 0
    for it in range(1, max_iter + 1):
        Vp = v.mean(-1, keepdim=True)
        w = y - _mv(X, s) + Vp * g
        m_e, v_e = noise.posterior(w, Vp)
        g = (w - m_e) / Vp
        Vr = 1.0 / (alpha * ((1 - v_e / Vp) / Vp).mean(-1, keepdim=True))
        r = s + Vr * _tmv(X, g)
        s_new, v_new = signal.posterior(r, Vr)
        if damping < 1:
            s_new = damping * s_new + (1 - damping) * s
            v_new = damping * v_new + (1 - damping) * v
        change = (s_new - s).norm(dim=-1) / math.sqrt(P)
        s, v = s_new, v_new
        if bool((change < tol).all()):
            return s, SolveInfo(it, change, True)
    return s, SolveInfo(it, change, False)


# ---------------------------------------------------------------------------------------------
# the estimator module
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _penalties(estimator: str, signal: se.Law, noise: se.Law, alpha: float):
    """``(regulariser, loss)`` of an M-estimator (``(None, None)`` for AMP); cached, so loads are cheap."""
    if estimator == "map":
        return se.map_penalty(signal), se.map_penalty(noise)
    if estimator == "ridge":
        return se.ridge_penalty(signal, noise)
    if estimator == "optimal":
        return se.optimal_penalties(alpha, signal, noise)[:2]
    return None, None


@functools.lru_cache(maxsize=256)
def _theory(estimator: str, signal: se.Law, noise: se.Law, alpha: float) -> se.StateEvolution:
    """The estimator's state evolution at ``alpha`` (cached)."""
    a = torch.tensor([alpha], dtype=torch.float64)
    if estimator in ("map", "ridge"):
        reg, loss = _penalties(estimator, signal, noise, alpha)
        return se.m_estimator_state_evolution(a, signal, noise, reg, loss)
    if estimator == "optimal":
        return se.optimal_state_evolution(a, signal, noise, signal_var=signal.var, noise_var=noise.var)
    bayes = se.mmse_state_evolution(a, signal, noise)
    return se.StateEvolution(a, bayes.amp_mse, bayes.amp_q_d, bayes.amp_q_d, bayes.amp_mse, 0, "replica")


class LinearEstimator(nn.Module):
    """One estimator of ``s0`` from ``(X, y)``; ``forward(X [B, N, P], y [B, N]) -> s_hat [B, P]``.

    ``theory`` is the estimator's state evolution at the configured ``alpha`` (computed on first
    use) and ``theory_mse`` its asymptotic per-component error. The last solve's
    :class:`SolveInfo` is kept in ``last_info``. There are no tensors to store: the optimal
    M-estimator's penalties are functions of the config (:func:`_penalties`).
    """

    def __init__(self, estimator: str, prior: str, noise: str, alpha: float, signal_var: float, noise_var: float,
                 rho: float, tol: float, max_iter: int):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha = N/P must be positive and finite, got {alpha!r}")
        if noise == "sparse":
            raise ValueError("noise must be 'gaussian' or 'laplace'")
        self.signal, self.noise = se.Law(prior, signal_var, rho), se.Law(noise, noise_var, rho)
        self.estimator, self.alpha, self.tol, self.max_iter = estimator, float(alpha), float(tol), int(max_iter)
        with torch.device("cpu"):  # the registry may build under a meta-device context; theory runs on CPU
            self.reg, self.loss = _penalties(estimator, self.signal, self.noise, self.alpha)
        self.last_info: SolveInfo | None = None

    @property
    def theory(self) -> se.StateEvolution:
        with torch.device("cpu"):
            return _theory(self.estimator, self.signal, self.noise, self.alpha)

    @property
    def theory_mse(self) -> float:
        return float(self.theory.mse[0])

    def extra_repr(self) -> str:
        return f"{self.estimator}: prior={self.signal.kind}, noise={self.noise.kind}, alpha={self.alpha:g}, reg={self.reg!r}, loss={self.loss!r}"

    @torch.no_grad()
    def forward(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_problem(X, y)
        X, y = X.to(torch.float64), y.to(torch.float64)
        if self.estimator == "optimal" and abs(X.shape[1] / X.shape[2] - self.alpha) > 1e-9 * self.alpha + 0.5 / X.shape[2]:
            raise ValueError(f"this optimal M-estimator is built for alpha = {self.alpha:g} but the data has "
                             f"N/P = {X.shape[1]}/{X.shape[2]}; load it with alpha={X.shape[1] / X.shape[2]:g}")
        if self.estimator == "amp":
            s, info = chunked(amp, X, y, self.signal, self.noise, tol=self.tol, max_iter=self.max_iter)
        elif self.estimator == "ridge":
            # |y - Xs|^2 / (2 s_n^2) + |s|^2 / (2 s_s^2)  <=>  (X^T X + (s_n^2 / s_s^2) I) s = X^T y
            s, info = chunked(conjugate_gradient_ridge, X, y, self.noise.var / self.signal.var, tol=min(self.tol, 1e-12))
        elif self.loss.smooth:
            s, info = chunked(fista, X, y, self.loss, self.reg, tol=self.tol, max_iter=self.max_iter)
        else:
            s, info = chunked(admm, X, y, self.loss, self.reg, tol=self.tol, max_iter=self.max_iter)
        self.last_info = info
        if not info.converged:
            warnings.warn(f"{self.estimator} did not reach tol={self.tol:g} in {info.iterations} iterations "
                          f"(largest residual {float(info.residual.max()):.2e}); raise max_iter or tol", RuntimeWarning, stacklevel=2)
        return s

    def objective(self, X: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The M-estimator's objective at ``s`` per problem ``[B]`` (not defined for ``amp``)."""
        if self.reg is None:
            raise ValueError("AMP is not an M-estimator: it has no objective")
        return objective(X.to(torch.float64), y.to(torch.float64), s, self.loss, self.reg)


# ---------------------------------------------------------------------------------------------
# measured card metrics (made by benches-style script `python -m zoo.models.linear_inference`)
# ---------------------------------------------------------------------------------------------

def card_metrics(estimator: str) -> dict[str, Any]:
    """``{"theory_mse": {alpha: v}, "simulated_mse": {...}, "simulated_mse_se": {...}, ...}`` for the
    default setting (Laplace prior, Gaussian noise, unit variances), read from the measured record
    ``linear_inference_metrics.json`` beside this module (see :func:`measure`)."""
    if estimator not in ESTIMATORS:
        raise KeyError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if not METRICS_FILE.exists():
        return {}
    record = json.loads(METRICS_FILE.read_text())
    return {**record["estimators"][estimator], "simulation": record["simulation"]}


DESCRIPTIONS = {
    "map": "MAP M-estimator: loss -log P_noise, regulariser -log P_signal (LASSO for Laplace prior, Gaussian noise)",
    "ridge": "ridge regression with the best quadratic penalty (loss |r|^2/2s_n^2, penalty |s|^2/2s_s^2)",
    "optimal": "optimal M-estimator: Moreau-smoothed loss and regulariser at the replica fixed point (Advani & Ganguli eq. 15)",
    "amp": "Bayes-optimal AMP with posterior-mean denoisers: the MMSE reference",
}


def _register(estimator: str) -> None:
    def builder(prior: str = "laplace", noise: str = "gaussian", alpha: float = 1.0, signal_var: float = 1.0,
                noise_var: float = 1.0, rho: float = 0.1, tol: float = 1e-9, max_iter: int = 20000,
                seed: int = 0) -> LinearEstimator:
        return LinearEstimator(estimator, prior, noise, alpha, signal_var, noise_var, rho, tol, max_iter)

    builder.__name__ = f"linear_inference_{estimator}"
    builder.__doc__ = DESCRIPTIONS[estimator] + "."
    extra: dict[str, Any] = {}
    accepted = inspect.signature(register).parameters
    if "metrics" in accepted:  # the registry passes a seed entry's measured metrics to its card
        extra["metrics"] = lambda estimator=estimator: card_metrics(estimator)
    if "training" in accepted:
        extra["training"] = ("nothing to train: a deterministic estimator of its config (convex solver / AMP); "
                             "card metrics measured by `python -m zoo.papers.m_estimation --measure`")
    register(
        f"linear-inference/{estimator}", task="linear-inference", weights="seed", paper="advani2016",
        task_kwargs={"prior": "laplace", "noise": "gaussian", "alpha": 1.0, "P": 200},
        description=DESCRIPTIONS[estimator] + ".",
        notes="Nothing to train: the estimator is a deterministic function of its config (prior, noise, alpha); "
              "the seed is recorded but unused. Measured errors: linear_inference_metrics.json (card_metrics).",
        **extra,
    )(builder)


for _name in ESTIMATORS:
    _register(_name)
