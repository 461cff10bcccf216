"""State evolution of high-dimensional M-estimation and the replica MMSE (Advani & Ganguli 2016).

Problem (PAPERS.md §5): ``y = X s0 + eps``, ``X`` of size ``N x P`` with i.i.d. ``N(0, 1/P)``
entries, ``alpha = N / P``; ``s0_i`` i.i.d. from a signal law, ``eps_mu`` i.i.d. from a noise law.
An M-estimator minimises ``sum_mu rho(y_mu - x_mu . s) + sum_i sigma(s_i)``. As ``N, P -> inf`` at
fixed ``alpha`` its per-component error ``q_s = |s_hat - s0|^2 / P`` is the solution of four scalar
equations (Advani & Ganguli, PRX 2016, eqs. 8-11, in this normalisation; the same equations are the
state evolution of max-sum GAMP), with ``r = s0 + sqrt(q_d) z`` and ``w = eps + sqrt(q_s) z``,
``z ~ N(0, 1)``::

    q_s      = E[(P_{lam_s sigma}(r) - s0)^2]                       (signal-side error)
    lam_r    = lam_s E[P'_{lam_s sigma}(r)]                          (response of s_hat)
    1/lam_s  = alpha E[1 - P'_{lam_r rho}(w)] / lam_r                (response of the residuals)
    q_d      = alpha lam_s^2 E[(w - P_{lam_r rho}(w))^2] / lam_r^2   (effective noise on s0)

``P_{t f}(v) = argmin_x (x - v)^2 / (2 t) + f(x)`` is the proximal map. The Bayes-optimal (MMSE)
error is the replica fixed point (Advani & Ganguli eq. 13; the state evolution of Bayes AMP)::

    q_s = mmse_s(q_d),     1/q_d = alpha J(q_s),     J(q) = (q - mmse_eps(q)) / q^2,

with ``mmse_s(q)`` the error of the posterior mean of ``s0`` from ``s0 + sqrt(q) z`` and ``J`` the
Fisher information of ``eps + sqrt(q_s) z``. Where it has several fixed points (non-log-concave
priors) the MMSE is the one that minimises the replica potential (Gaussian noise)
``phi(E) = I(s0; s0 + sqrt(q_d(E)) z) + alpha/2 [log(1 + E/s_n^2) - E/(s_n^2 + E)]``,
``q_d(E) = (s_n^2 + E)/alpha``.

The optimal M-estimator (Advani & Ganguli eq. 15) uses
``rho_opt = -M_{q_s}[log(P_eps * N(0, q_s))]`` and ``sigma_opt = -M_{q_d}[log(P_s * N(0, q_d))]``
(``M_t[f](x) = min_y (x - y)^2 / (2 t) + f(y)``, the Moreau envelope; ``*`` is convolution) at the
MMSE fixed point ``(q_s, q_d)``. Then ``P_{q_d sigma_opt}`` is the posterior-mean denoiser of the
signal and ``P_{q_s rho_opt}`` the posterior mean of the noise given ``w``, so the four equations
above hold with ``lam_s = q_d``, ``lam_r = q_s``: for log-concave laws it attains the MMSE.
:class:`SmoothedPenalty` builds these functions exactly from the closed-form posterior mean.

Laws: ``gaussian``, ``laplace`` and ``sparse`` (Bernoulli-Gaussian: 0 with probability
``1 - rho``, else ``N(0, var / rho)``), all of variance ``var`` and symmetric. Their posterior
means and variances in Gaussian noise are in closed form (truncated normals for the Laplace law).

Quadrature. Every expectation is a 1-D integral over ``r`` against the density of
``s0 + sqrt(q) z`` (closed form), using ``E[(f(r) - s0)^2] = E[(f(r) - eta(r))^2] + mmse``. The
integrand is even for these laws and odd estimators, so it runs over ``r >= 0``, mapped by
``r = c sinh(u)`` (``c = sqrt(q)``: dense where the density has its narrow peak, sparse in the
exponential tails) and split at the estimator's kinks (soft thresholds), with composite
Gauss-Legendre panels: accurate to ~1e-13 (checked against ``scipy.integrate.quad`` in the tests
and the bench). Everything is vectorised torch float64 over a batch of ``alpha`` values.

    >>> se = map_state_evolution(torch.tensor([1.0, 2.0, 4.0]), "laplace", "gaussian")
    >>> [round(v, 3) for v in se.mse.tolist()]
    [0.705, 0.446, 0.239]
    >>> [round(v, 3) for v in mmse_state_evolution(torch.tensor([1.0, 2.0, 4.0])).mse.tolist()]
    [0.597, 0.39, 0.222]
    >>> [round(v, 3) for v in ridge_mse_closed_form(torch.tensor([1.0, 2.0, 4.0])).tolist()]
    [0.618, 0.414, 0.236]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch

from .registry import AnalysisResult, register_analysis

Tensor = torch.Tensor
_DT = torch.float64
_SQ2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class StateEvolutionError(RuntimeError):
    """The state-evolution equations have no solution, or the solver could not find it."""


# ---------------------------------------------------------------------------------------------
# laws (signal priors and noise distributions)
# ---------------------------------------------------------------------------------------------

LAWS = ("gaussian", "laplace", "sparse")


def _t(x) -> Tensor:
    return torch.as_tensor(x, dtype=_DT)


def _mills(a: Tensor) -> Tensor:
    """``phi(a) / Phi(a)`` (inverse Mills ratio), stable for all ``a``."""
    return torch.exp(-0.5 * a * a - _LOG_SQRT_2PI - torch.special.log_ndtr(a))


@dataclass(frozen=True)
class Law:
    """A symmetric scalar law of variance ``var``: ``kind`` in ``gaussian | laplace | sparse``.

    ``rho`` is the fraction of non-zero components of the ``sparse`` (Bernoulli-Gaussian) law.
    Methods act elementwise on float64 tensors and broadcast ``r`` against ``q``.
    """

    kind: str = "laplace"
    var: float = 1.0
    rho: float = 0.1

    def __post_init__(self):
        if self.kind not in LAWS:
            raise ValueError(f"unknown law {self.kind!r}; choose from {', '.join(LAWS)}")
        if not (isinstance(self.var, (int, float)) and math.isfinite(self.var) and self.var > 0):
            raise ValueError(f"the variance of a {self.kind} law must be a positive finite number, got {self.var!r}")
        if self.kind == "sparse" and not (0 < self.rho <= 1):
            raise ValueError(f"the sparse law's non-zero fraction rho must lie in (0, 1], got {self.rho!r}")

    @property
    def b(self) -> float:
        """Laplace scale: density ``exp(-|x|/b) / (2b)``, variance ``2 b^2``."""
        return math.sqrt(self.var / 2.0)

    @property
    def log_concave(self) -> bool:
        return self.kind != "sparse" or self.rho == 1.0

    @property
    def spread(self) -> float:
        """Largest component standard deviation (sets the quadrature range)."""
        return math.sqrt(self.var / self.rho) if self.kind == "sparse" else math.sqrt(self.var)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator, dtype=_DT) -> Tensor:
        """Draws of shape ``shape`` from ``generator`` (deterministic given its seed)."""
        if self.kind == "gaussian":
            return torch.randn(shape, generator=generator, dtype=dtype) * math.sqrt(self.var)
        if self.kind == "laplace":
            u = torch.rand(shape, generator=generator, dtype=dtype)
            sign = torch.where(torch.rand(shape, generator=generator, dtype=dtype) < 0.5, -1.0, 1.0)
            return sign * (-self.b) * torch.log1p(-u)
        on = torch.rand(shape, generator=generator, dtype=dtype) < self.rho
        return on * torch.randn(shape, generator=generator, dtype=dtype) * math.sqrt(self.var / self.rho)

    def log_density(self, x: Tensor) -> Tensor:
        """``log P(x)`` (MAP penalty is its negative). The sparse law has an atom: not defined."""
        if self.kind == "gaussian":
            return -0.5 * x * x / self.var - 0.5 * math.log(2 * math.pi * self.var)
        if self.kind == "laplace":
            return -x.abs() / self.b - math.log(2 * self.b)
        raise ValueError("the sparse (Bernoulli-Gaussian) law has an atom at 0: no density, so no MAP penalty")

    # -- in Gaussian noise: r = x + sqrt(q) z -------------------------------------------------
    def log_smoothed_density(self, r: Tensor, q: Tensor) -> Tensor:
        """``log (P * N(0, q))(r)``: the density of ``x + sqrt(q) z``."""
        r, q = torch.broadcast_tensors(_t(r), _t(q))
        if self.kind == "gaussian":
            v = self.var + q
            return -0.5 * r * r / v - 0.5 * torch.log(2 * math.pi * v)
        if self.kind == "laplace":
            b, sq = self.b, q.sqrt()
            lp = -r / b + torch.special.log_ndtr((r - q / b) / sq)
            lm = r / b + torch.special.log_ndtr(-(r + q / b) / sq)
            return torch.logaddexp(lp, lm) + q / (2 * b * b) - math.log(2 * b)
        vs = self.var / self.rho + q
        l0 = math.log1p(-self.rho) - 0.5 * r * r / q - 0.5 * torch.log(2 * math.pi * q) if self.rho < 1 else None
        l1 = math.log(self.rho) - 0.5 * r * r / vs - 0.5 * torch.log(2 * math.pi * vs)
        return l1 if l0 is None else torch.logaddexp(l0, l1)

    def posterior(self, r: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """``(E[x | r], Var[x | r])`` for ``r = x + sqrt(q) z``: the posterior-mean denoiser ``eta``
        and ``q eta'(r)``."""
        r, q = torch.broadcast_tensors(_t(r), _t(q))
        if self.kind == "gaussian":
            g = self.var / (self.var + q)
            return g * r, g * q
        if self.kind == "laplace":
            b, sq = self.b, q.sqrt()
            mp, mm = r - q / b, r + q / b
            ap, am = mp / sq, -mm / sq  # P(branch) ~ Phi(ap), Phi(am)
            lp = -r / b + torch.special.log_ndtr(ap)
            lm = r / b + torch.special.log_ndtr(am)
            wp = torch.sigmoid(lp - lm)
            wm = 1.0 - wp
            kp, km = _mills(ap), _mills(am)
            mu_p, mu_m = mp + sq * kp, mm - sq * km
            v_p, v_m = q * (1 - kp * (kp + ap)), q * (1 - km * (km + am))
            mean = wp * mu_p + wm * mu_m
            var = wp * v_p + wm * v_m + wp * wm * (mu_p - mu_m) ** 2
            return mean, var.clamp_min(0.0)
        vx = self.var / self.rho
        g = vx / (vx + q)
        if self.rho < 1:
            l0 = math.log1p(-self.rho) - 0.5 * r * r / q - 0.5 * torch.log(q)
            l1 = math.log(self.rho) - 0.5 * r * r / (vx + q) - 0.5 * torch.log(vx + q)
            pi = torch.sigmoid(l1 - l0)
        else:
            pi = torch.ones_like(r)
        m1 = g * r
        return pi * m1, pi * (g * q + m1 * m1) - (pi * m1) ** 2

    def mmse(self, q: Tensor, **quad) -> Tensor:
        """``E[Var(x | x + sqrt(q) z)]``, the scalar MMSE at noise variance ``q``."""
        q = _t(q)
        if self.kind == "gaussian":
            return self.var * q / (self.var + q)
        return expect(self, q, lambda r: self.posterior(r, q[..., None])[1], **quad)


# ---------------------------------------------------------------------------------------------
# quadrature
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quadrature:
    """Composite Gauss-Legendre on ``u in [0, U]``, ``r = c sinh(u)``: ``panels`` per segment of
    ``order`` nodes each; segments are split at the integrand's kinks."""

    panels: int = 48
    order: int = 16
    range_sd: float = 40.0  # integrate r up to range_sd * sqrt(var + q)


_GL_CACHE: dict[int, tuple[Tensor, Tensor]] = {}


def _gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    if n not in _GL_CACHE:
        x, w = np.polynomial.legendre.leggauss(n)
        _GL_CACHE[n] = (_t(x), _t(w))
    return _GL_CACHE[n]


def nodes(law: Law, q: Tensor, kinks: Tensor | None = None, quad: Quadrature = Quadrature()) -> tuple[Tensor, Tensor]:
    """Nodes ``r [..., n]`` (r >= 0) and weights ``[..., n]`` that integrate ``f(r) p(r)`` over the
    whole line for even integrands (the weights include the density of ``x + sqrt(q) z`` and the
    factor 2). ``q`` has shape ``[...]``; ``kinks [..., K]`` are points in ``r >= 0`` where the
    integrand has a kink (they become panel boundaries)."""
    q = _t(q)
    c = q.sqrt()
    R = quad.range_sd * torch.sqrt(law.spread**2 + q)
    U = torch.asinh(R / c)
    edges = [torch.zeros_like(U), U]
    if kinks is not None:
        k = torch.asinh(_t(kinks).clamp_min(0.0) / c[..., None])
        k = torch.minimum(k, U[..., None])
        edges = [edges[0][..., None], k, U[..., None]]
        edges = torch.sort(torch.cat(edges, -1), -1).values
    else:
        edges = torch.stack(edges, -1)
    x, w = _gauss_legendre(quad.order)
    t = torch.linspace(0, 1, quad.panels + 1, dtype=_DT)
    a, b = edges[..., :-1, None], edges[..., 1:, None]                    # [..., S, 1]
    pe = a + (b - a) * t                                                   # [..., S, panels+1]
    lo, hi = pe[..., :-1, None], pe[..., 1:, None]                         # [..., S, panels, 1]
    u = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x                              # [..., S, panels, order]
    wu = 0.5 * (hi - lo) * w
    shape = u.shape[:-3] + (-1,)
    u, wu = u.reshape(shape), wu.reshape(shape)
    r = c[..., None] * torch.sinh(u)
    jac = c[..., None] * torch.cosh(u)
    weight = 2.0 * wu * jac * torch.exp(law.log_smoothed_density(r, q[..., None]))
    return r, weight


def expect(law: Law, q: Tensor, f: Callable[[Tensor], Tensor], kinks: Tensor | None = None,
           quad: Quadrature = Quadrature()) -> Tensor:
    """``E[f(r)]`` over ``r = x + sqrt(q) z``, ``x ~ law``, for even ``f``; shape of ``q``."""
    r, w = nodes(law, q, kinks, quad)
    return (f(r) * w).sum(-1)


# ---------------------------------------------------------------------------------------------
# penalties: losses and regularisers with their proximal maps
# ---------------------------------------------------------------------------------------------

class Penalty:
    """A convex even function ``f`` with ``prox(v, t) = argmin_x (x - v)^2/(2t) + f(x)`` and its
    derivative in ``v``. ``kinks(t)`` are the points ``v >= 0`` where ``prox`` has a kink."""

    smooth: bool = True

    def value(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def prox(self, v: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def prox_deriv(self, v: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def kinks(self, t: Tensor) -> Tensor | None:
        return None

    def curvature_bound(self) -> float:
        """``sup f''`` (for the step size of gradient methods); ``inf`` if not smooth."""
        raise NotImplementedError


class Quadratic(Penalty):
    """``f(x) = weight * x^2 / 2``."""

    def __init__(self, weight: float):
        if not weight >= 0:
            raise ValueError(f"a quadratic penalty needs a non-negative weight, got {weight!r}")
        self.weight = float(weight)

    def value(self, x):
        return 0.5 * self.weight * x * x

    def grad(self, x):
        return self.weight * x

    def prox(self, v, t):
        return v / (1 + t * self.weight)

    def prox_deriv(self, v, t):
        return torch.ones_like(_t(v)) / (1 + t * self.weight)

    def curvature_bound(self):
        return self.weight

    def __repr__(self):
        return f"Quadratic({self.weight:g})"


class Absolute(Penalty):
    """``f(x) = |x| / scale`` (LASSO's penalty, least absolute deviations' loss)."""

    smooth = False

    def __init__(self, scale: float):
        if not scale > 0:
            raise ValueError(f"an absolute-value penalty needs a positive scale, got {scale!r}")
        self.scale = float(scale)

    def value(self, x):
        return x.abs() / self.scale

    def grad(self, x):
        return torch.sign(x) / self.scale

    def prox(self, v, t):
        return torch.sign(v) * (v.abs() - t / self.scale).clamp_min(0.0)

    def prox_deriv(self, v, t):
        return (v.abs() > t / self.scale).to(_DT)

    def kinks(self, t):
        return (_t(t) / self.scale)[..., None]

    def curvature_bound(self):
        return math.inf

    def __repr__(self):
        return f"Absolute(scale={self.scale:g})"


def map_penalty(law: Law) -> Penalty:
    """``-log P`` up to a constant: the MAP regulariser (signal law) or loss (noise law)."""
    if law.kind == "gaussian":
        return Quadratic(1.0 / law.var)
    if law.kind == "laplace":
        return Absolute(law.b)
    raise ValueError("MAP needs a log-concave law with a density; the sparse (Bernoulli-Gaussian) law has an atom at 0 "
                     "(its MAP estimate is L0-penalised and not a convex problem): use ridge, optimal or amp")


class SmoothedPenalty(Penalty):
    """The optimal penalty ``f = -M_q[log(P * N(0, q))]`` of a log-concave ``law`` at step ``q``.

    Built from the posterior-mean denoiser ``eta(r) = E[x | x + sqrt(q) z = r]``, which is its
    proximal map at step ``q`` (Advani & Ganguli eq. 15): along ``x = eta(r)``,

        f'(x) = (r - eta(r)) / q,      f(x) = -log p_q(r) - (r - eta(r))^2 / (2 q) + const,

    (the second from ``M_q[f] = -log p_q``), normalised to ``f(0) = 0``; ``f''(x) = (1 - eta')/(q eta')``.
    The proximal map at any other step ``t`` solves ``eta(r) + (t/q)(r - eta(r)) = v`` for ``r``
    (monotone in ``r``) by safeguarded Newton iteration to machine precision, then returns ``eta(r)``.
    As a signal regulariser (``law`` = signal law, ``q = q_d``) or as a loss on residuals
    (``law`` = noise law, ``q = q_s``).
    """

    def __init__(self, law: Law, q: float):
        if not law.log_concave:
            raise ValueError(f"the smoothed penalty of a {law.kind} law is not convex (the law is not log-concave)")
        if not (math.isfinite(q) and q > 0):
            raise ValueError(f"the smoothing step q must be positive and finite, got {q!r}")
        self.law, self.q = law, float(q)
        self._f0 = float(-law.log_smoothed_density(_t(0.0), _t(self.q)))

    def __repr__(self):
        return f"SmoothedPenalty({self.law.kind}, var={self.law.var:g}, q={self.q:.6g})"

    def _eta(self, r: Tensor) -> tuple[Tensor, Tensor]:
        m, v = self.law.posterior(r, _t(self.q))
        return m, v / self.q  # eta, eta'

    def _solve_r(self, v: Tensor, t: Tensor, iters: int = 60) -> Tensor:
        """``r`` with ``eta(r) + (t/q) (r - eta(r)) = v``."""
        v = _t(v)
        c = _t(t) / self.q
        g0 = self.law.var / (self.law.var + self.q)  # Gaussian-like initial guess: eta ~ g0 r
        r = v / (g0 + c * (1 - g0))
        for _ in range(iters):
            eta, d = self._eta(r)
            h = eta + c * (r - eta) - v
            step = h / (d + c * (1 - d))
            r = r - step
            if bool((step.abs() <= 1e-9 * (1 + r.abs())).all()):  # quadratic convergence: now ~1e-18
                return r
        raise StateEvolutionError(f"{self!r}: Newton iteration for the proximal map did not converge in {iters} steps")

    def prox(self, v, t):
        return self._eta(self._solve_r(v, t))[0]

    def prox_deriv(self, v, t):
        d = self._eta(self._solve_r(v, t))[1]
        c = _t(t) / self.q
        return d / (d + c * (1 - d))

    def value(self, x):
        r = self._solve_r(x, _t(0.0))
        eta = self._eta(r)[0]
        return -self.law.log_smoothed_density(r, _t(self.q)) - (r - eta) ** 2 / (2 * self.q) - self._f0

    def grad(self, x):
        r = self._solve_r(x, _t(0.0))
        return (r - self._eta(r)[0]) / self.q

    def curvature_bound(self) -> float:
        # f'' = (1 - eta')/(q eta') is largest where eta' is smallest: at r = 0 for these laws;
        # checked on a grid to be safe.
        r = torch.linspace(0, 20 * math.sqrt(self.law.var + self.q), 2001, dtype=_DT)
        d = self._eta(r)[1].clamp_min(1e-300)
        return float(((1 - d) / (self.q * d)).max())


# ---------------------------------------------------------------------------------------------
# the M-estimator state evolution
# ---------------------------------------------------------------------------------------------

@dataclass
class StateEvolution:
    """Solution per ``alpha``: ``mse = q_s`` (per component), ``q_d``, ``lam_s``, ``lam_r``, the
    number of iterations, and ``method`` ("damped" or "bracketed")."""

    alpha: Tensor
    mse: Tensor
    q_d: Tensor
    lam_s: Tensor
    lam_r: Tensor
    iterations: int
    method: str


def _check_alpha(alpha) -> Tensor:
    a = _t(alpha).reshape(-1) if _t(alpha).ndim == 0 else _t(alpha)
    if a.ndim != 1:
        raise ValueError(f"alpha must be a scalar or a 1-D array, got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all() or (a <= 0).any():
        raise ValueError(f"alpha = N/P must be positive and finite, got {a.tolist()}")
    return a


def _law(x, var: float = 1.0, rho: float = 0.1) -> Law:
    return x if isinstance(x, Law) else Law(x, var, rho)


def _signal_side(signal: Law, reg: Penalty, q_d: Tensor, lam_s: Tensor, quad: Quadrature) -> tuple[Tensor, Tensor]:
    """``(q_s, lam_r)`` from ``(q_d, lam_s)``."""
    kinks = reg.kinks(lam_s)
    r, w = nodes(signal, q_d, kinks, quad)
    qd, ls = q_d[..., None], lam_s[..., None]
    eta, pvar = signal.posterior(r, qd)
    p = reg.prox(r, ls)
    q_s = (((p - eta) ** 2 + pvar) * w).sum(-1)
    lam_r = lam_s * (reg.prox_deriv(r, ls) * w).sum(-1)
    return q_s, lam_r


def _noise_side(noise: Law, loss: Penalty, alpha: Tensor, q_s: Tensor, lam_r: Tensor, quad: Quadrature) -> tuple[Tensor, Tensor]:
    """``(q_d, lam_s)`` from ``(q_s, lam_r)``."""
    kinks = loss.kinks(lam_r)
    r, w = nodes(noise, q_s, kinks, quad)
    lr = lam_r[..., None]
    p = loss.prox(r, lr)
    resp = ((1 - loss.prox_deriv(r, lr)) * w).sum(-1)
    lam_s = lam_r / (alpha * resp)
    q_d = alpha * lam_s**2 * (((r - p) ** 2) * w).sum(-1) / lam_r**2
    return q_d, lam_s


def m_estimator_state_evolution(alpha, signal, noise, reg: Penalty, loss: Penalty, *, signal_var: float = 1.0,
                                noise_var: float = 1.0, rho: float = 0.1, damping: float = 0.8, tol: float = 1e-12,
                                max_iter: int = 5000, quad: Quadrature = Quadrature()) -> StateEvolution:
    """Solve the four M-estimation equations (module docstring) for each ``alpha`` (1-D tensor).

    Damped fixed-point iteration on ``(log q_d, log lam_s)`` until the relative change is below
    ``tol``; ``alpha`` values where it fails fall back to nested bracketing (Brent) on the same
    equations. Raises :class:`StateEvolutionError` where there is no finite solution (e.g. no
    regulariser and ``alpha <= 1``: the M-estimator is not unique).
    """
    alpha = _check_alpha(alpha)
    signal, noise = _law(signal, signal_var, rho), _law(noise, noise_var, rho)
    if not 0 < damping <= 1:
        raise ValueError(f"damping must lie in (0, 1], got {damping}")
    if isinstance(reg, Quadratic) and reg.weight == 0 and bool((alpha <= 1).any()):
        raise StateEvolutionError(f"no regulariser and alpha <= 1 ({alpha[alpha <= 1].tolist()}): the M-estimator is not unique")
    # start from the ridge-like scale: q_d ~ (noise + signal variance) / alpha
    q_d = (noise.var + signal.var) / alpha
    lam_s = q_d.clone()
    done = torch.zeros_like(alpha, dtype=torch.bool)
    it = 0
    with np.errstate(all="ignore"):
        while it < max_iter:
            it += 1
            q_s, lam_r = _signal_side(signal, reg, q_d, lam_s, quad)
            new_q_d, new_lam_s = _noise_side(noise, loss, alpha, q_s, lam_r, quad)
            bad = ~(torch.isfinite(new_q_d) & torch.isfinite(new_lam_s) & (new_q_d > 0) & (new_lam_s > 0))
            new_q_d = torch.where(bad, q_d, new_q_d)
            new_lam_s = torch.where(bad, lam_s, new_lam_s)
            nq = torch.exp((1 - damping) * q_d.log() + damping * new_q_d.log())
            nl = torch.exp((1 - damping) * lam_s.log() + damping * new_lam_s.log())
            change = torch.maximum((nq / q_d - 1).abs(), (nl / lam_s - 1).abs())
            q_d, lam_s = nq, nl
            done = (change < tol) & ~bad
            if bool(done.all()):
                break
    method = "damped"
    if not bool(done.all()):
        method = "bracketed"
        for i in torch.nonzero(~done).flatten().tolist():
            q_d[i], lam_s[i] = _bracketed(float(alpha[i]), signal, noise, reg, loss, quad)
    q_s, lam_r = _signal_side(signal, reg, q_d, lam_s, quad)
    _verify(alpha, signal, noise, reg, loss, q_d, lam_s, q_s, lam_r, quad)
    return StateEvolution(alpha, q_s, q_d, lam_s, lam_r, it, method)


def _verify(alpha, signal, noise, reg, loss, q_d, lam_s, q_s, lam_r, quad, tol: float = 1e-10) -> None:
    new_q_d, new_lam_s = _noise_side(noise, loss, alpha, q_s, lam_r, quad)
    res = torch.maximum((new_q_d / q_d - 1).abs(), (new_lam_s / lam_s - 1).abs())
    bad = ~(res < tol)
    if bool(bad.any()):
        raise StateEvolutionError(
            f"state evolution for {reg!r} / {loss!r} did not converge to {tol:g} at alpha = {alpha[bad].tolist()} "
            f"(relative residuals {res[bad].tolist()})")


def _bracket_root(f: Callable[[float], float], lo: float, hi: float, what: str, step: float = 0.5, reach: float = 14.0) -> float:
    """A root of ``f`` (a function of a log-variable) near ``[lo, hi]``: intervals of width ``step`` are
    searched outward from the middle, alternately left and right, up to ``reach`` away, skipping
    non-finite values (e.g. an estimator that returns all zeros); Brent's method then refines the
    first bracket found."""
    from scipy.optimize import brentq

    c = 0.5 * (lo + hi)
    cache: dict[float, float] = {}

    def val(x: float) -> float:
        if x not in cache:
            with np.errstate(all="ignore"):
                cache[x] = f(x)
        return cache[x]

    for k in range(1, int(reach / step) + 1):
        for a, b in ((c + (k - 1) * step, c + k * step), (c - k * step, c - (k - 1) * step)):
            fa, fb = val(a), val(b)
            if math.isfinite(fa) and math.isfinite(fb) and (fa == 0 or np.sign(fa) != np.sign(fb)):
                return a if fa == 0 else brentq(f, a, b, xtol=1e-15, rtol=1e-14, maxiter=500)
    raise StateEvolutionError(f"no solution for {what}: no sign change of the residual within exp(+-{reach:g}) of the start")


def _bracketed(alpha: float, signal, noise, reg, loss, quad) -> tuple[float, float]:
    a = _t([alpha])

    def lam_for(q_d: float) -> float:
        def g(log_lam: float) -> float:
            qd, ls = _t([q_d]), _t([math.exp(log_lam)])
            q_s, lam_r = _signal_side(signal, reg, qd, ls, quad)
            _, new_ls = _noise_side(noise, loss, a, q_s, lam_r, quad)
            return float(torch.log(new_ls) - torch.log(ls))
        return math.exp(_bracket_root(g, math.log(q_d) - 1, math.log(q_d) + 1, f"lam_s at alpha={alpha}, q_d={q_d:.4g}"))

    def h(log_qd: float) -> float:
        q_d = math.exp(log_qd)
        ls = lam_for(q_d)
        q_s, lam_r = _signal_side(signal, reg, _t([q_d]), _t([ls]), quad)
        new_qd, _ = _noise_side(noise, loss, a, q_s, lam_r, quad)
        return float(torch.log(new_qd)) - log_qd

    q0 = (noise.var + signal.var) / alpha
    log_qd = _bracket_root(h, math.log(q0) - 1, math.log(q0) + 1, f"q_d at alpha={alpha}")
    return math.exp(log_qd), lam_for(math.exp(log_qd))


# ---------------------------------------------------------------------------------------------
# the estimators of the paper
# ---------------------------------------------------------------------------------------------

def map_state_evolution(alpha, signal="laplace", noise="gaussian", *, signal_var=1.0, noise_var=1.0, **kw) -> StateEvolution:
    """MAP: ``rho = -log P_noise``, ``sigma = -log P_signal`` (LASSO for Laplace signal, Gaussian noise)."""
    s, n = _law(signal, signal_var), _law(noise, noise_var)
    return m_estimator_state_evolution(alpha, s, n, map_penalty(s), map_penalty(n), **kw)


def ridge_penalty(signal: Law, noise: Law) -> tuple[Quadratic, Quadratic]:
    """Best ridge: loss ``u^2 / (2 s_n^2)``, penalty ``s^2 / (2 s_s^2)``. A linear estimator's error
    depends only on second moments, so it equals the Gaussian-law case, where this ridge is the
    posterior mean (the MMSE among all estimators): no other quadratic penalty does better."""
    return Quadratic(1.0 / signal.var), Quadratic(1.0 / noise.var)


def ridge_state_evolution(alpha, signal="laplace", noise="gaussian", *, signal_var=1.0, noise_var=1.0, rho=0.1,
                          weight: float | None = None, **kw) -> StateEvolution:
    """Ridge regression ``|y - X s|^2 / (2 s_n^2) + weight |s|^2 / 2`` (``weight`` default ``1/s_s^2``, the best)."""
    s, n = _law(signal, signal_var, rho), _law(noise, noise_var, rho)
    reg, loss = ridge_penalty(s, n)
    if weight is not None:
        reg = Quadratic(weight)
    return m_estimator_state_evolution(alpha, s, n, reg, loss, **kw)


def ridge_mse_closed_form(alpha, signal_var: float = 1.0, noise_var: float = 1.0) -> Tensor:
    """Best-ridge (= Gaussian-prior MMSE) error: the positive root of ``q = s_s q_d / (s_s + q_d)``,
    ``q_d = (s_n + q) / alpha`` (variances ``s_s``, ``s_n``), i.e. of
    ``q^2 + (s_s (alpha - 1) + s_n) q - s_s s_n = 0`` (the Marchenko-Pastur Stieltjes transform)."""
    a = _check_alpha(alpha)
    if not (signal_var > 0 and noise_var > 0):
        raise ValueError(f"variances must be positive, got signal_var={signal_var}, noise_var={noise_var}")
    B = signal_var * (a - 1) + noise_var
    return (-B + torch.sqrt(B * B + 4 * signal_var * noise_var)) / 2


@dataclass
class BayesFixedPoint:
    """Replica / Bayes-AMP solution: ``mse = q_s`` (the MMSE), ``q_d``; ``amp_mse`` is the fixed
    point reached from the uninformative start (what AMP attains), equal to ``mse`` unless the
    replica potential has a better fixed point (a hard phase, non-log-concave priors only)."""

    alpha: Tensor
    mse: Tensor
    q_d: Tensor
    amp_mse: Tensor
    amp_q_d: Tensor


def _bayes_map(alpha: Tensor, signal: Law, noise: Law, q_s: Tensor, quad: Quadrature) -> Tensor:
    """``q_s -> q_d -> mmse_s(q_d)``."""
    q_d = q_s**2 / (alpha * (q_s - noise.mmse(q_s, quad=quad)))
    return q_d


def _bayes_iterate(alpha, signal, noise, q_s, damping, tol, max_iter, quad):
    for _ in range(max_iter):
        q_d = _bayes_map(alpha, signal, noise, q_s, quad)
        new = signal.mmse(q_d, quad=quad)
        nq = torch.exp((1 - damping) * q_s.log() + damping * new.log())
        change = (nq / q_s - 1).abs()
        q_s = nq
        if bool((change < tol).all()):
            break
    q_d = _bayes_map(alpha, signal, noise, q_s, quad)
    res = (signal.mmse(q_d, quad=quad) / q_s - 1).abs()
    bad = ~(res < 1e-10)
    for i in torch.nonzero(bad).flatten().tolist():  # bracketed fallback on log q_s
        a = alpha[i : i + 1]

        def f(lq: float, a=a) -> float:
            qs = _t([math.exp(lq)])
            return float(torch.log(signal.mmse(_bayes_map(a, signal, noise, qs, quad), quad=quad)) - lq)

        q_s[i] = math.exp(_bracket_root(f, math.log(float(q_s[i])) - 1, math.log(float(q_s[i])) + 1, f"the MMSE at alpha={float(a)}"))
    return q_s, _bayes_map(alpha, signal, noise, q_s, quad)


def mutual_information(law: Law, q: Tensor, quad: Quadrature = Quadrature()) -> Tensor:
    """``I(x; x + sqrt(q) z)`` in nats: ``h(r) - log(2 pi e q) / 2``."""
    q = _t(q)
    h = expect(law, q, lambda r: -law.log_smoothed_density(r, q[..., None]), quad=quad)
    return h - 0.5 * torch.log(2 * math.pi * math.e * q)


def replica_potential(E: Tensor, alpha: Tensor, signal: Law, noise_var: float, quad: Quadrature = Quadrature()) -> Tensor:
    """``phi(E)`` of the module docstring (Gaussian noise); stationary exactly at the fixed points."""
    E = _t(E)
    q_d = (noise_var + E) / alpha
    return mutual_information(signal, q_d, quad) + 0.5 * alpha * (torch.log1p(E / noise_var) - E / (noise_var + E))


def mmse_state_evolution(alpha, signal="laplace", noise="gaussian", *, signal_var=1.0, noise_var=1.0, rho=0.1,
                         damping: float = 0.7, tol: float = 1e-13, max_iter: int = 20000,
                         quad: Quadrature = Quadrature()) -> BayesFixedPoint:
    """The replica MMSE (and the Bayes-AMP fixed point) for each ``alpha``.

    Iterates from the uninformative start ``q_s = var_s`` (AMP's fixed point) and, for a
    non-log-concave prior, also from ``q_s -> 0``; where they differ the MMSE is the one with the
    lower replica potential (Gaussian noise only; other noise with several fixed points raises).
    """
    alpha = _check_alpha(alpha)
    s, n = _law(signal, signal_var, rho), _law(noise, noise_var, rho)
    q_amp, qd_amp = _bayes_iterate(alpha, s, n, torch.full_like(alpha, s.var), damping, tol, max_iter, quad)
    q_s, q_d = q_amp.clone(), qd_amp.clone()
    if not (s.log_concave and n.log_concave):
        q_lo, qd_lo = _bayes_iterate(alpha, s, n, torch.full_like(alpha, 1e-9 * s.var), damping, tol, max_iter, quad)
        differ = (q_lo / q_amp - 1).abs() > 1e-6
        if bool(differ.any()):
            if n.kind != "gaussian":
                raise StateEvolutionError("several replica fixed points and non-Gaussian noise: the potential is not implemented")
            better = differ & (replica_potential(q_lo, alpha, s, n.var, quad) < replica_potential(q_amp, alpha, s, n.var, quad))
            q_s, q_d = torch.where(better, q_lo, q_s), torch.where(better, qd_lo, q_d)
    return BayesFixedPoint(alpha, q_s, q_d, q_amp, qd_amp)


def optimal_penalties(alpha: float, signal="laplace", noise="gaussian", *, signal_var=1.0, noise_var=1.0,
                      quad: Quadrature = Quadrature()) -> tuple[Penalty, Penalty, BayesFixedPoint]:
    """``(sigma_opt, rho_opt, fixed point)`` of the optimal M-estimator at ``alpha`` (eq. 15).

    ``rho_opt`` for Gaussian noise is exactly the quadratic ``u^2 / (2 s_n^2)`` (the Moreau envelope
    of a Gaussian log-density stays Gaussian), returned as :class:`Quadratic`."""
    s, n = _law(signal, signal_var), _law(noise, noise_var)
    if not (s.log_concave and n.log_concave):
        raise ValueError("the optimal M-estimator of Advani & Ganguli is convex only for log-concave signal and noise; "
                         f"got signal {s.kind!r}, noise {n.kind!r}")
    fp = mmse_state_evolution(_t([float(alpha)]), s, n, quad=quad)
    q_s, q_d = float(fp.mse[0]), float(fp.q_d[0])
    reg = Quadratic(1.0 / s.var) if s.kind == "gaussian" else SmoothedPenalty(s, q_d)
    loss = Quadratic(1.0 / n.var) if n.kind == "gaussian" else SmoothedPenalty(n, q_s)
    return reg, loss, fp


def optimal_state_evolution(alpha, signal="laplace", noise="gaussian", *, signal_var=1.0, noise_var=1.0,
                            quad: Quadrature = Quadrature()) -> StateEvolution:
    """The optimal M-estimator's error: the replica MMSE fixed point, checked to satisfy the four
    M-estimation equations with ``sigma_opt``, ``rho_opt`` and ``lam_s = q_d``, ``lam_r = q_s``
    (raises :class:`StateEvolutionError` if not)."""
    alpha = _check_alpha(alpha)
    out = []
    for a in alpha.tolist():
        reg, loss, fp = optimal_penalties(a, signal, noise, signal_var=signal_var, noise_var=noise_var, quad=quad)
        s, n = _law(signal, signal_var), _law(noise, noise_var)
        at = _t([a])
        q_s, lam_r = _signal_side(s, reg, fp.q_d, fp.q_d, quad)
        _verify(at, s, n, reg, loss, fp.q_d, fp.q_d, q_s, lam_r, quad, tol=1e-9)
        out.append((float(q_s[0]), float(fp.q_d[0]), float(lam_r[0])))
    q_s, q_d, lam_r = (_t(v) for v in zip(*out))
    return StateEvolution(alpha, q_s, q_d, q_d.clone(), lam_r, 0, "replica")


# ---------------------------------------------------------------------------------------------
# Moreau envelope (numerical, for the figures and the tests)
# ---------------------------------------------------------------------------------------------

def moreau_envelope(f: Callable[[Tensor], Tensor], x: Tensor, lam: float, *, half_width: float | None = None,
                    n_grid: int = 4001, refine: int = 40) -> Tensor:
    """``M_lam[f](x) = min_y (x - y)^2 / (2 lam) + f(y)`` for each ``x`` (any shape), by a grid
    search over ``y in x + [-half_width, half_width]`` then golden-section refinement in the
    winning cell (``f`` convex in ``y`` after adding the quadratic, as for every use here)."""
    if not lam > 0:
        raise ValueError(f"the Moreau envelope needs lam > 0, got {lam}")
    x = _t(x)
    hw = half_width if half_width is not None else 10.0 * (1.0 + lam) * (1.0 + float(x.abs().max()))
    grid = torch.linspace(-hw, hw, n_grid, dtype=_DT)
    flat = x.reshape(-1, 1)
    y = flat + grid

    def obj(y):
        return (flat - y) ** 2 / (2 * lam) + f(y) if y.shape[-1] > 1 else ((flat - y) ** 2 / (2 * lam) + f(y))

    j = obj(y).argmin(-1, keepdim=True)
    h = grid[1] - grid[0]
    a, b = flat + grid[(j - 1).clamp_min(0)], flat + grid[(j + 1).clamp_max(n_grid - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(refine + int(math.log(float(h) / 1e-16) / -math.log(g))):
        c, d = b - g * (b - a), a + g * (b - a)
        left = obj(c) < obj(d)
        a, b = torch.where(left, a, c), torch.where(left, d, b)
    return obj(0.5 * (a + b)).reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# the registered analysis: theory against simulation for any linear-inference estimator
# ---------------------------------------------------------------------------------------------

@runtime_checkable
class LinearEstimator(Protocol):
    """An estimator of ``s0`` from ``(X [B, N, P], y [B, N])``: ``model(X, y) -> s_hat [B, P]``, with its
    configured ``alpha``, its asymptotic error ``theory_mse`` (state evolution) and ``estimator`` name."""

    estimator: str
    alpha: float
    theory_mse: float


@register_analysis("state-evolution", protocol=LinearEstimator, version="1", quick_params={"P": 100, "problems": 2})
def state_evolution_check(model, task, *, P: int = 500, problems: int = 8, seed: int = 0) -> AnalysisResult:
    """Simulated per-component MSE on ``problems`` fresh problems of size ``P`` against the state-evolution value.

    ``task`` must offer ``problems(batch_size, index, split, P) -> (X, y, s0)`` at the model's ``alpha``.
    Summary: ``theory_mse``, ``simulated_mse``, ``simulated_mse_se`` (standard error over problems),
    ``z`` (their difference in standard errors), ``P``, ``problems``.
    """
    if P < 2 or problems < 1:
        raise ValueError(f"need P >= 2 and problems >= 1, got P={P}, problems={problems}")
    X, y, s0 = task.problems(problems, index=seed, split="test", P=P)
    if abs(X.shape[1] / X.shape[2] - model.alpha) > 0.5 / X.shape[2] + 1e-12:
        raise ValueError(f"the task's N/P = {X.shape[1]}/{X.shape[2]} differs from the model's alpha = {model.alpha:g}")
    with torch.no_grad():
        err = ((model(X, y) - s0) ** 2).mean(-1).double()
    mean = float(err.mean())
    sem = float(err.std() / math.sqrt(problems)) if problems > 1 else float("inf")
    theory = float(model.theory_mse)
    return AnalysisResult(
        summary={"estimator": model.estimator, "alpha": float(model.alpha), "P": int(P), "problems": int(problems),
                 "theory_mse": theory, "simulated_mse": mean, "simulated_mse_se": sem,
                 "z": (mean - theory) / sem if sem > 0 else 0.0},
        arrays={"errors": err.numpy()},
    )
