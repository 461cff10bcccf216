"""Mean-field theory of signal propagation in wide random networks.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (NeurIPS 2016); Schoenholz, Gilmer, Ganguli &
Sohl-Dickstein (ICLR 2017). For ``h^l = W^l phi(h^{l-1}) + b^l`` with ``W_ij ~ N(0, sigma_w2/N)``
and ``b_i ~ N(0, sigma_b2)``, in the limit of infinite width:

* length map (Poole eq. 3)       ``q^l = sigma_w2 * Int Dz phi(sqrt(q^{l-1}) z)^2 + sigma_b2``,
  with the stable fixed point ``q*``;
* correlation map (Poole eq. 5)  ``c^l = (sigma_w2 * Int Dz1 Dz2 phi(u1) phi(u2) + sigma_b2) / q*``,
  ``u1 = sqrt(q*) z1``, ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)``, with the fixed point ``c*``;
* ``chi_1 = sigma_w2 Int Dz phi'(sqrt(q*) z)^2`` (the slope of the correlation map at ``c = 1``:
  order for ``chi_1 < 1``, chaos for ``chi_1 > 1``), ``chi_2 = sigma_w2 Int Dz phi''(sqrt(q*) z)^2``;
* ``chi_c = sigma_w2 Int Dz1 Dz2 phi'(u1) phi'(u2)`` at ``c*`` and the depth scales
  ``xi_c = -1 / ln chi_c`` and ``xi_q = -1 / ln(dq^l / dq^{l-1} at q*)`` (Schoenholz eqs. 6, 9).

``Dz`` is the standard Gaussian measure. All quantities are vectorised torch (float64) over any
broadcastable shapes of ``q``, ``sigma_w2``, ``sigma_b2``.

Quadrature. One-dimensional Gaussian integrals use the trapezoid rule on a uniform grid
``z in [-half_width, half_width]`` (default 1001 nodes on [-10, 10], dz = 0.02). For an integrand
that is analytic in a strip (tanh, erf) and decays like a Gaussian, this rule converges
geometrically, ~exp(-pi^2 / (sqrt(q) dz)) for tanh, so it stays accurate to ~1e-12 for q up to
several hundred, where 50-100-node Gauss-Hermite is off by 5-25 % on chi_1 at q* = 12.6
(PAPERS.md §4). For nonlinearities with kinks (ReLU, hard tanh: ``Nonlinearity.breakpoints``)
the integrals use composite Gauss-Legendre split at the kinks instead (nested for the 2-D
ones), which is again accurate to ~1e-12. Two-dimensional integrals (the correlation map at
arbitrary ``c``) use the same rule on a ``n x n`` product grid; the fixed point ``c*`` over a
whole phase diagram uses Mehler's expansion
``Int Dz1 Dz2 phi(u1) phi(u2) = sum_k c^k a_k^2``, ``a_k = Int Dz phi(sqrt(q) z) He_k(z) / sqrt(k!)``,
which reduces every 2-D integral to one matrix product of 1-D ones.

Nonlinearities are given by name (``zoo.models.random_net.NONLINEARITIES``: tanh, erf, relu,
hard-tanh, linear; closed-form derivatives) or as a callable acting elementwise on tensors
(derivatives by forward-mode autograd, ``torch.func.jvp``). For piecewise-linear functions the
second derivative is taken almost everywhere (0), so ``chi_2`` omits the kinks' delta functions.

    >>> fp = fixed_point(16.0, 0.09, "tanh")           # sigma_w = 4, sigma_b = 0.3
    >>> round(float(fp.q_star), 3), round(float(fp.chi_1), 3), round(float(fp.chi_2), 3)
    (12.604, 2.367, 1.857)
    >>> round(float(critical_sigma_w2(0.05, "tanh")), 3)
    1.761
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Callable, Union

import numpy as np
import torch

from zoo.models.random_net import NONLINEARITIES

Tensor = torch.Tensor
PhiLike = Union[str, Callable[[Tensor], Tensor], "Nonlinearity"]
_DT = torch.float64
_CHUNK = 1 << 22  # elements per chunk of [points, nodes] work arrays (32 MB in float64)


# ---------------------------------------------------------------------------------------------
# nonlinearities and their derivatives
# ---------------------------------------------------------------------------------------------

def _tanh_jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
    t = torch.tanh(h)
    if order == 0:
        return (t,)
    d1 = 1.0 - t * t
    return (t, d1) if order == 1 else (t, d1, -2.0 * t * d1)


def _erf_jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
    y = torch.erf(h)
    if order == 0:
        return (y,)
    d1 = (2.0 / math.sqrt(math.pi)) * torch.exp(-h * h)
    return (y, d1) if order == 1 else (y, d1, -2.0 * h * d1)


def _relu_jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
    y = torch.relu(h)
    if order == 0:
        return (y,)
    d1 = (h > 0).to(h.dtype)
    return (y, d1) if order == 1 else (y, d1, torch.zeros_like(h))


def _hard_tanh_jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
    y = h.clamp(-1.0, 1.0)
    if order == 0:
        return (y,)
    d1 = (h.abs() < 1).to(h.dtype)
    return (y, d1) if order == 1 else (y, d1, torch.zeros_like(h))


def _linear_jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
    if order == 0:
        return (h,)
    d1 = torch.ones_like(h)
    return (h, d1) if order == 1 else (h, d1, torch.zeros_like(h))


_CLOSED_FORMS: dict[str, Callable[[Tensor, int], tuple[Tensor, ...]]] = {
    "tanh": _tanh_jet, "erf": _erf_jet, "relu": _relu_jet, "hard-tanh": _hard_tanh_jet, "linear": _linear_jet,
}


_BREAKPOINTS: dict[str, tuple[float, ...]] = {"relu": (0.0,), "hard-tanh": (-1.0, 1.0)}


def _autograd_jet(phi: Callable[[Tensor], Tensor]) -> Callable[[Tensor, int], tuple[Tensor, ...]]:
    """``(phi, phi', phi'')`` of an elementwise ``phi`` by nested forward-mode AD."""
    from torch.func import jvp

    def first(x: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(phi, (x,), (torch.ones_like(x),))

    def jet(h: Tensor, order: int) -> tuple[Tensor, ...]:
        if order == 0:
            return (phi(h),)
        if order == 1:
            return first(h)
        (y, d1), (_, d2) = jvp(first, (h,), (torch.ones_like(h),))
        return (y, d1, d2)

    return jet


@dataclass(frozen=True)
class Nonlinearity:
    """A pointwise nonlinearity with its derivatives: ``jet(h, order) -> (phi, phi', ...)`` up to ``order`` <= 2."""

    name: str
    jet: Callable[[Tensor, int], tuple[Tensor, ...]]
    breakpoints: tuple[float, ...] = ()  # where phi' jumps: 1-D integrals are split there


    def __call__(self, h: Tensor) -> Tensor:
        return self.jet(h, 0)[0]


def get_nonlinearity(phi: PhiLike) -> Nonlinearity:
    """Resolve a name in ``NONLINEARITIES`` or an elementwise callable to a :class:`Nonlinearity`.

    A callable is checked on a probe: it must keep the shape, act elementwise, be finite and
    support forward-mode autograd (``torch.func.jvp``); otherwise ``ValueError``.
    """
    if isinstance(phi, Nonlinearity):
        return phi
    if isinstance(phi, str):
        if phi in _CLOSED_FORMS:
            return Nonlinearity(phi, _CLOSED_FORMS[phi], _BREAKPOINTS.get(phi, ()))
        if phi in NONLINEARITIES:  # a name added to the zoo later: derivatives by autograd
            return Nonlinearity(phi, _autograd_jet(NONLINEARITIES[phi]))
        raise ValueError(f"unknown nonlinearity {phi!r}; choose from {', '.join(sorted(set(NONLINEARITIES) | set(_CLOSED_FORMS)))} "
                         "or pass an elementwise callable")
    if not callable(phi):
        raise TypeError(f"nonlinearity must be a name or a callable, got {type(phi).__name__}")
    probe = torch.linspace(-3.0, 3.0, 7, dtype=_DT)
    jet = _autograd_jet(phi)
    try:
        y, d1, d2 = jet(probe, 2)
        y_each = torch.cat([phi(probe[i:i + 1]).reshape(-1) for i in range(probe.numel())])
    except Exception as err:  # noqa: BLE001 - report any failure of the user's function
        raise ValueError(f"nonlinearity {getattr(phi, '__name__', phi)!r} failed on a probe tensor "
                         f"(it must be elementwise torch code that supports torch.func.jvp): {err}") from err
    if not (isinstance(y, Tensor) and y.shape == probe.shape):
        raise ValueError("a nonlinearity must return a tensor of its input's shape")
    if y_each.shape != y.shape or not torch.allclose(y_each, y, rtol=1e-12, atol=1e-12):
        raise ValueError("a nonlinearity must act elementwise (phi(x)[i] may depend only on x[i])")
    if not all(torch.isfinite(t).all() for t in (y, d1, d2)):
        raise ValueError("nonlinearity or its derivatives are not finite on [-3, 3]")
    return Nonlinearity(getattr(phi, "__name__", "custom"), jet)


# ---------------------------------------------------------------------------------------------
# quadrature
# ---------------------------------------------------------------------------------------------

def gaussian_grid(n_nodes: int = 1001, half_width: float = 10.0) -> tuple[Tensor, Tensor]:
    """Nodes ``z [n]`` and trapezoid weights ``w [n]`` with ``sum_j w_j f(z_j) ~ Int Dz f(z)``."""
    if n_nodes < 3 or n_nodes % 2 == 0:
        raise ValueError(f"n_nodes must be odd and >= 3 (a node at z = 0), got {n_nodes}")
    if not half_width > 0:
        raise ValueError(f"half_width must be positive, got {half_width}")
    z = torch.linspace(-half_width, half_width, n_nodes, dtype=_DT)
    w = torch.exp(-0.5 * z * z) * (z[1] - z[0]) / math.sqrt(2.0 * math.pi)
    return z, w


def _as_tensor(x, name: str, nonnegative: bool = False) -> Tensor:
    t = torch.as_tensor(x, dtype=_DT)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if nonnegative and (t < 0).any():
        raise ValueError(f"{name} is a variance and must be >= 0, got min {float(t.min())}")
    return t


@functools.lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor(x, dtype=_DT), torch.as_tensor(w, dtype=_DT)


def _split_nodes(scale: Tensor, breakpoints: tuple[float, ...], n_nodes: int, half_width: float,
                 offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Composite Gauss-Legendre nodes and Gaussian weights ``[p, n']`` on [-half_width, half_width]
    for integrands ``F(offset + scale z)``, with segment ends at the kinks ``z = (b - offset) / scale``
    (so the integrand is smooth inside each segment); ``scale``, ``offset``: ``[p]``."""
    n_seg = len(breakpoints) + 1
    x, wx = _legendre(-(-n_nodes // n_seg))
    b = torch.as_tensor(sorted(breakpoints), dtype=_DT)
    shifted = b - (0.0 if offset is None else offset[:, None])
    kinks = shifted / scale.clamp_min(1e-300)[:, None]
    edge = torch.full_like(scale[:, None], half_width)
    ends = torch.cat([-edge, kinks.clamp(-half_width, half_width), edge], 1)  # [p, n_seg + 1]
    mid, half = 0.5 * (ends[:, 1:] + ends[:, :-1]), 0.5 * (ends[:, 1:] - ends[:, :-1])  # [p, n_seg]
    z = (mid[..., None] + half[..., None] * x).reshape(len(scale), -1)
    w = (half[..., None] * wx).reshape(len(scale), -1) * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, w


def _gauss_moments(q: Tensor, phi: Nonlinearity, order: int, kinds: tuple[str, ...],
                   grid: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """``Int Dz F(sqrt(q) z)`` for each ``F`` named in ``kinds``; ``q`` flat ``[P]``.

    kinds: "pp" phi^2, "dd" phi'^2, "ss" phi''^2, "zpd" z phi phi', "pd2" phi phi''.
    On the uniform ``grid``, or, for a nonlinearity with kinks, on per-point composite
    Gauss-Legendre nodes split at the kinks (as many nodes as the grid).
    """
    z, w = grid
    out = {k: torch.empty_like(q) for k in kinds}
    step = max(1, _CHUNK // z.numel())
    for s in range(0, q.numel(), step):
        qc = q[s:s + step]
        if phi.breakpoints:
            zc, wc = _split_nodes(qc.sqrt(), phi.breakpoints, z.numel(), float(z[-1]))
        else:
            zc, wc = z, w
        h = qc.sqrt()[:, None] * zc
        jet = phi.jet(h, order)
        for k in kinds:
            if k == "pp":
                f = jet[0] * jet[0]
            elif k == "dd":
                f = jet[1] * jet[1]
            elif k == "ss":
                f = jet[2] * jet[2]
            elif k == "zpd":
                f = zc * jet[0] * jet[1]
            else:  # "pd2"
                f = jet[0] * jet[2]
            out[k][s:s + step] = f @ wc if wc.dim() == 1 else (f * wc).sum(1)
    return out


def _length_slope(q: Tensor, sigma_w2: Tensor, phi: Nonlinearity, grid) -> Tensor:
    """``d q^l / d q^{l-1} = sigma_w2 Int Dz z phi phi'(sqrt(q) z) / sqrt(q)`` (exact at kinks too);
    at ``q = 0`` the limit ``sigma_w2 (phi'(0)^2 + phi(0) phi''(0))``."""
    m = _gauss_moments(q.clamp_min(1e-300), phi, 1, ("zpd",), grid)["zpd"]
    return sigma_w2 * torch.where(q > 0, m / q.clamp_min(1e-300).sqrt(), _slope_at_zero(phi))


def _slope_at_zero(phi: Nonlinearity) -> Tensor:
    y0, d0, s0 = phi.jet(torch.zeros(1, dtype=_DT), 2)
    return (d0 * d0 + y0 * s0).squeeze()


# ---------------------------------------------------------------------------------------------
# maps
# ---------------------------------------------------------------------------------------------

def length_map(q, sigma_w2, sigma_b2, phi: PhiLike = "tanh", *, n_nodes: int = 1001,
               half_width: float = 10.0) -> Tensor:
    """One step of the length map, ``q' = sigma_w2 Int Dz phi(sqrt(q) z)^2 + sigma_b2`` (Poole eq. 3).

    ``q``, ``sigma_w2``, ``sigma_b2``: broadcastable, >= 0. Returns ``q'`` (float64, broadcast shape).
    """
    q, sw, sb = torch.broadcast_tensors(_as_tensor(q, "q", True), _as_tensor(sigma_w2, "sigma_w2", True),
                                        _as_tensor(sigma_b2, "sigma_b2", True))
    f = get_nonlinearity(phi)
    v = _gauss_moments(q.reshape(-1), f, 0, ("pp",), gaussian_grid(n_nodes, half_width))["pp"]
    return sw * v.reshape(q.shape) + sb


def correlation_map(c, q, sigma_w2, sigma_b2, phi: PhiLike = "tanh", *, n_nodes: int = 241,
                    half_width: float = 8.0) -> Tensor:
    """One step of the correlation map for two inputs of equal length ``q`` and correlation ``c``.

    ``c' = (sigma_w2 Int Dz1 Dz2 phi(u1) phi(u2) + sigma_b2) / q'``, ``u1 = sqrt(q) z1``,
    ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``, ``q'`` = :func:`length_map` of ``q`` (Poole eq. 5).
    At ``q = q*`` this is the map whose fixed point is ``c*``. Direct 2-D quadrature: trapezoid on an
    ``n_nodes x n_nodes`` grid, or, for a nonlinearity with kinks, nested composite Gauss-Legendre
    split at the kinks in ``z1`` and, for each ``z1``, in ``z2``. ``c`` in [-1, 1]; all arguments broadcast.
    """
    c = _as_tensor(c, "c")
    if (c.abs() > 1 + 1e-12).any():
        raise ValueError(f"correlations must lie in [-1, 1], got range [{float(c.min())}, {float(c.max())}]")
    c, q, sw, sb = torch.broadcast_tensors(c.clamp(-1, 1), _as_tensor(q, "q", True),
                                           _as_tensor(sigma_w2, "sigma_w2", True), _as_tensor(sigma_b2, "sigma_b2", True))
    f = get_nonlinearity(phi)
    z, w = gaussian_grid(n_nodes, half_width)
    cf, qf = c.reshape(-1), q.reshape(-1)
    cross = torch.empty_like(cf)
    step = max(1, _CHUNK // (z.numel() ** 2))
    for s in range(0, cf.numel(), step):
        if f.breakpoints:
            cc, sq = cf[s:s + step], qf[s:s + step].sqrt()
            z1, w1 = _split_nodes(sq, f.breakpoints, z.numel(), half_width)  # [p, n1]
            p, n1 = z1.shape
            offset = (sq * cc)[:, None] * z1  # u2 = offset + scale z2
            scale = (sq * (1 - cc * cc).clamp_min(0).sqrt())[:, None].expand(p, n1)
            z2, w2 = _split_nodes(scale.reshape(-1), f.breakpoints, z.numel(), half_width, offset.reshape(-1))
            u2 = offset.reshape(-1, 1) + scale.reshape(-1, 1) * z2
            inner = (f(u2) * w2).sum(1).reshape(p, n1)
            cross[s:s + step] = (f(sq[:, None] * z1) * inner * w1).sum(1)
            continue
        cc, sq = cf[s:s + step, None, None], qf[s:s + step, None, None].sqrt()
        u1 = sq[..., 0] * z  # [p, n]   (z1 along the last axis)
        u2 = sq * (cc * z[None, :, None] + (1 - cc * cc).clamp_min(0).sqrt() * z[None, None, :])  # [p, n1, n2]
        inner = f(u2) @ w  # Int Dz2 phi(u2): [p, n1]
        cross[s:s + step] = (f(u1) * inner) @ w
    q_next = sw * _gauss_moments(qf, f, 0, ("pp",), (z, w))["pp"].reshape(q.shape) + sb
    num = sw * cross.reshape(c.shape) + sb
    return torch.where(q_next > 0, num / q_next.clamp_min(1e-300), torch.ones_like(num))


def chi_1(q, sigma_w2, phi: PhiLike = "tanh", *, n_nodes: int = 1001, half_width: float = 10.0) -> Tensor:
    """``chi_1 = sigma_w2 Int Dz phi'(sqrt(q) z)^2`` at the given ``q`` (use ``q*``)."""
    q, sw = torch.broadcast_tensors(_as_tensor(q, "q", True), _as_tensor(sigma_w2, "sigma_w2", True))
    m = _gauss_moments(q.reshape(-1), get_nonlinearity(phi), 1, ("dd",), gaussian_grid(n_nodes, half_width))
    return sw * m["dd"].reshape(q.shape)


def chi_2(q, sigma_w2, phi: PhiLike = "tanh", *, n_nodes: int = 1001, half_width: float = 10.0) -> Tensor:
    """``chi_2 = sigma_w2 Int Dz phi''(sqrt(q) z)^2`` at the given ``q`` (use ``q*``)."""
    q, sw = torch.broadcast_tensors(_as_tensor(q, "q", True), _as_tensor(sigma_w2, "sigma_w2", True))
    m = _gauss_moments(q.reshape(-1), get_nonlinearity(phi), 2, ("ss",), gaussian_grid(n_nodes, half_width))
    return sw * m["ss"].reshape(q.shape)


# ---------------------------------------------------------------------------------------------
# fixed points
# ---------------------------------------------------------------------------------------------

def _solve_q_star(sw: Tensor, sb: Tensor, phi: Nonlinearity, grid, q_max: float = 1e8,
                  tol: float = 1e-14, max_iter: int = 200) -> Tensor:
    """Stable fixed point of the length map by safeguarded Newton (bisection fallback); flat ``[P]``.

    ``F(q) = sigma_w2 V(q) + sigma_b2 - q`` with ``F(sigma_b2) >= 0``; the bracket is widened until
    ``F(hi) < 0``. No finite fixed point below ``q_max`` (e.g. ReLU with sigma_w2 > 2) gives ``inf``.
    """

    def F(q: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s, b = (sw, sb) if idx is None else (sw[idx], sb[idx])
        m = _gauss_moments(q, phi, 1, ("pp", "zpd"), grid)
        slope = s * torch.where(q > 0, m["zpd"] / q.clamp_min(1e-300).sqrt(), at_zero)
        return s * m["pp"] + b - q, slope - 1.0

    at_zero = _slope_at_zero(phi)
    lo = sb.clone()
    f_lo, d_lo = F(lo)
    # q = sigma_b2 = 0 can be an unstable fixed point (tanh, sigma_b2 = 0, sigma_w2 > 1): step off it
    bump = (f_lo <= 0) & (d_lo > 0)
    lo = torch.where(bump, lo + 1e-12, lo)
    hi = torch.maximum(2.0 * lo, torch.ones_like(lo)) + sw
    f_hi, _ = F(hi)
    todo = f_hi >= 0
    while todo.any() and float(hi[todo].min()) < q_max:
        hi = torch.where(todo, hi * 4.0, hi)
        f_hi[todo], _ = F(hi[todo], todo.nonzero().squeeze(1))
        todo = f_hi >= 0
    q = torch.where(f_lo <= 0, lo, 0.5 * (lo + hi))
    done = (f_lo <= 0) & ~bump  # F(sigma_b2) = 0 and stable: q* = sigma_b2 (e.g. tanh, sigma_w2 <= 1, sigma_b2 = 0)
    done |= todo  # no fixed point
    for _ in range(max_iter):
        act = (~done).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        qa, la, ha = q[act], lo[act], hi[act]
        fa, da = F(qa, act)
        la = torch.where(fa > 0, qa, la)
        ha = torch.where(fa > 0, ha, qa)
        newton = qa - fa / torch.where(da != 0, da, torch.full_like(da, -1e-300))
        ok = (newton >= la) & (newton <= ha) & torch.isfinite(newton)
        qn = torch.where(ok, newton, 0.5 * (la + ha))
        conv = ((qn - qa).abs() <= tol * (1.0 + qa)) | ((ha - la) <= tol * (1.0 + qa))
        q[act], lo[act], hi[act] = qn, la, ha
        done[act] = conv
    return torch.where(todo, torch.full_like(q, math.inf), q)


def _polish_q_star(q: Tensor, sw: Tensor, sb: Tensor, phi: Nonlinearity, grid, steps: int = 2) -> Tensor:
    """Newton steps on the fine grid from a coarse-grid ``q*`` (steps larger than 1e-6 are refused)."""
    at_zero = _slope_at_zero(phi)
    ok = torch.isfinite(q) & (q > 0)
    idx = ok.nonzero().squeeze(1)
    qa, s, b = q[idx], sw[idx], sb[idx]
    for _ in range(steps):
        m = _gauss_moments(qa, phi, 1, ("pp", "zpd"), grid)
        d = s * torch.where(qa > 0, m["zpd"] / qa.clamp_min(1e-300).sqrt(), at_zero) - 1.0
        step = -(s * m["pp"] + b - qa) / d
        qa = torch.where(step.abs() < 1e-6 * (1.0 + qa), qa + step, qa)
    out = q.clone()
    out[idx] = qa
    return out


def _hermite_coefficients(q: Tensor, phi: Nonlinearity, n_terms: int, grid) -> Tensor:
    """``a_k = Int Dz phi(sqrt(q) z) He_k(z) / sqrt(k!)``, ``k < n_terms``; ``q [P] -> [P, K]``."""
    z, w = grid
    herm = torch.empty(n_terms, z.numel(), dtype=_DT)
    herm[0] = 1.0
    if n_terms > 1:
        herm[1] = z
    for k in range(1, n_terms - 1):  # normalised recurrence: h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1)
        herm[k + 1] = (z * herm[k] - math.sqrt(k) * herm[k - 1]) / math.sqrt(k + 1)
    basis = (herm * w).T  # [n, K]
    out = torch.empty(q.numel(), n_terms, dtype=_DT)
    step = max(1, _CHUNK // z.numel())
    for s in range(0, q.numel(), step):
        out[s:s + step] = phi(q[s:s + step].sqrt()[:, None] * z) @ basis
    return out


def _solve_c_star(coef2: Tensor, tail: Tensor, sw: Tensor, sb: Tensor, q: Tensor,
                  tol: float = 1e-14, max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """Root in [0, 1) of ``M(c) - c``, ``M(c) = (sigma_w2 (sum_k coef2_k c^k + tail c^K) + sigma_b2) / q``.

    ``M`` is convex and increasing on [0, 1] with ``M(0) >= 0``, ``M(1) = 1`` and ``M'(1) > 1``
    (chaos), so ``M(c) - c`` has one root in [0, 1) and Newton's method started at ``c = 0``
    climbs to it monotonically. Returns ``(c*, M'(c*) = chi_c)``; all ``[P]``.
    """
    K = coef2.shape[1]
    k = torch.arange(1, K + 1, dtype=_DT)
    coef = torch.cat([coef2, tail[:, None]], 1)  # the tail as the c^K term

    def M(c: Tensor, i: Tensor) -> tuple[Tensor, Tensor]:
        powers = torch.cat([torch.ones_like(c)[:, None], torch.cumprod(c[:, None].expand(-1, K), 1)], 1)  # c^0..c^K
        val = (coef[i] * powers).sum(1)
        der = (coef[i, 1:] * k * powers[:, :-1]).sum(1)
        return (sw[i] * val + sb[i]) / q[i], sw[i] * der / q[i]

    c = torch.zeros_like(q)
    active = torch.arange(q.numel())
    for _ in range(max_iter):
        ca = c[active]
        m, dm = M(ca, active)
        step = (m - ca) / (1.0 - dm)
        c[active] = (ca + step).clamp(0.0, 1.0)
        active = active[(m - ca).abs() > tol]
        if active.numel() == 0:
            break
    everything = torch.arange(q.numel())
    return c, M(c, everything)[1]


@dataclass
class FixedPoint:
    """Mean-field quantities at the fixed point, each a float64 tensor of the broadcast input shape.

    ``q_star``; ``chi_1``, ``chi_2``; ``slope_q`` (= dq^l/dq^{l-1} at q*); ``c_star`` (1 in the
    ordered phase); ``chi_c`` (slope of the correlation map at c*; = chi_1 in order); ``xi_q``,
    ``xi_c`` (depth scales, ``inf`` where the slope is 1); ``sigma_w2``, ``sigma_b2`` (broadcast).
    """

    sigma_w2: Tensor
    sigma_b2: Tensor
    q_star: Tensor
    chi_1: Tensor
    chi_2: Tensor
    slope_q: Tensor
    c_star: Tensor
    chi_c: Tensor
    xi_q: Tensor
    xi_c: Tensor

    @property
    def chaotic(self) -> Tensor:
        return self.chi_1 > 1.0

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _depth_scale(slope: Tensor) -> Tensor:
    """``-1 / ln slope`` for ``0 < slope < 1``; ``inf`` for ``slope >= 1`` (marginal); NaN stays NaN."""
    out = -1.0 / torch.log(slope.clamp_max(1.0))
    return torch.where(slope >= 1.0, torch.full_like(out, math.inf), out)


def fixed_point(sigma_w2, sigma_b2, phi: PhiLike = "tanh", *, n_nodes: int = 1001, half_width: float = 10.0,
                n_hermite: int = 256) -> FixedPoint:
    """All mean-field fixed-point quantities over broadcastable ``sigma_w2``, ``sigma_b2`` (variances).

    ``q*`` by safeguarded Newton on the length map; ``chi_1``, ``chi_2``, ``slope_q`` by 1-D
    quadrature at ``q*``; ``c*`` (chaotic points only) by bisection on the Mehler series of the
    correlation map truncated at ``n_hermite`` terms (the rest of ``Int Dz phi^2`` is put in one
    last term so that ``M(1) = 1`` exactly); ``chi_c`` is the slope of that map at ``c*``.
    In the chaotic phase ``xi_c`` is ``-1/ln chi_c`` at ``c* < 1``; ``xi_q = -1/ln slope_q``
    (``slope_q = chi_1 + sigma_w2 Int Dz phi phi''`` for smooth ``phi``). Where the length map has
    no finite fixed point (ReLU with ``sigma_w2 > 2``), ``q*`` is ``inf`` and the rest NaN.
    """
    sw, sb = torch.broadcast_tensors(_as_tensor(sigma_w2, "sigma_w2", True), _as_tensor(sigma_b2, "sigma_b2", True))
    if torch.isinf(sw).any() or torch.isinf(sb).any():
        raise ValueError("sigma_w2 and sigma_b2 must be finite")
    shape = sw.shape
    sw, sb = sw.reshape(-1).clone(), sb.reshape(-1).clone()
    f = get_nonlinearity(phi)
    grid = gaussian_grid(n_nodes, half_width)
    q = _solve_q_star(sw, sb, f, gaussian_grid(min(n_nodes, 201), half_width), tol=1e-11)
    q = _polish_q_star(q, sw, sb, f, grid)
    finite = torch.isfinite(q)
    # at q* = 0 take the limit q -> 0+ (so that e.g. ReLU's chi_1 is sigma_w2 / 2, not phi'(0)^2 = 0)
    qs = torch.where(finite, q, torch.zeros_like(q)).clamp_min(1e-300)
    m = _gauss_moments(qs, f, 2, ("pp", "dd", "ss"), grid)
    c1, c2 = sw * m["dd"], sw * m["ss"]
    slope = _length_slope(qs, sw, f, grid)
    c_star, chi_c = torch.ones_like(q), c1.clone()
    chaos = (c1 > 1.0) & finite & (q > 0)
    if chaos.any():
        idx = chaos.nonzero().squeeze(1)
        coef = _hermite_coefficients(qs[idx], f, n_hermite, grid)
        coef2 = coef * coef
        tail = (m["pp"][idx] - coef2.sum(1)).clamp_min(0.0)
        c_star[idx], chi_c[idx] = _solve_c_star(coef2, tail, sw[idx], sb[idx], qs[idx])
    nan = torch.full_like(q, math.nan)
    out = {
        "q_star": q, "chi_1": torch.where(finite, c1, nan), "chi_2": torch.where(finite, c2, nan),
        "slope_q": torch.where(finite, slope, nan), "c_star": torch.where(finite, c_star, nan),
        "chi_c": torch.where(finite, chi_c, nan),
    }
    out["xi_q"] = _depth_scale(out["slope_q"])
    out["xi_c"] = _depth_scale(out["chi_c"])
    return FixedPoint(sigma_w2=sw.reshape(shape), sigma_b2=sb.reshape(shape),
                      **{k: v.reshape(shape) for k, v in out.items()})


def critical_sigma_w2(sigma_b2, phi: PhiLike = "tanh", *, n_nodes: int = 1001, half_width: float = 10.0,
                      q_max: float = 1e6) -> Tensor:
    """The order-to-chaos boundary: ``sigma_w2`` with ``chi_1 = 1`` at each ``sigma_b2`` (vectorised).

    On the boundary ``sigma_w2 = 1 / D(q*)`` and ``sigma_b2 = q* - V(q*) / D(q*)`` with
    ``V = Int Dz phi^2`` and ``D = Int Dz phi'^2``; we solve the second equation for ``q*`` by
    bisection. NaN where no ``q* <= q_max`` gives that ``sigma_b2`` (ReLU or linear with
    ``sigma_b2 > 0``: always ordered).
    """
    sb = _as_tensor(sigma_b2, "sigma_b2", True)
    shape, sb = sb.shape, sb.reshape(-1)
    f = get_nonlinearity(phi)
    grid = gaussian_grid(n_nodes, half_width)

    coarse = gaussian_grid(min(n_nodes, 201), half_width)

    def s_of(q: Tensor, g=grid) -> tuple[Tensor, Tensor]:
        m = _gauss_moments(q, f, 1, ("pp", "dd"), g)
        return q - m["pp"] / m["dd"], m["dd"]

    lo, hi = torch.zeros_like(sb), torch.ones_like(sb)
    lo = torch.where(torch.isnan(s_of(lo)[0]), torch.full_like(lo, 1e-12), lo)  # phi'(0) undefined (ReLU): start just above 0
    s_hi, _ = s_of(hi)
    while ((s_hi < sb) & (hi < q_max)).any():
        grow = (s_hi < sb) & (hi < q_max)
        hi = torch.where(grow, hi * 4.0, hi)
        s_hi = torch.where(grow, s_of(hi)[0], s_hi)
    s_zero, lo_start, tol = s_of(lo)[0], lo.clone(), 1e-12
    feasible = (s_hi >= sb - tol) & (s_zero <= sb + tol)
    for _ in range(64):  # bisection on the coarse grid ...
        mid = 0.5 * (lo + hi)
        below = s_of(mid, coarse)[0] < sb
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    at_start = s_zero >= sb - tol
    q = torch.where(at_start, lo_start, 0.5 * (lo + hi))  # s(0) = sigma_b2: the boundary is at q* = 0
    for _ in range(3):  # ... then secant steps on the fine grid
        dq = 1e-6 * (1.0 + q)
        s0, s1 = s_of(q)[0], s_of(q + dq)[0]
        step = (sb - s0) * dq / (s1 - s0)
        ok = torch.isfinite(step) & (step.abs() < 1e-4 * (1.0 + q)) & ~at_start
        q = torch.where(ok, torch.maximum(q + step, lo_start), q)
    _, d = s_of(q)
    return torch.where(feasible, 1.0 / d, torch.full_like(d, math.nan)).reshape(shape)


@dataclass
class PhaseDiagram:
    """A :class:`FixedPoint` on the grid ``sigma_w2 [A] x sigma_b2 [B]`` (every field ``[A, B]``),
    plus the boundary ``critical_sigma_w2 [B]`` (``chi_1 = 1``) at each ``sigma_b2``."""

    sigma_w2: Tensor
    sigma_b2: Tensor
    fixed: FixedPoint
    critical_sigma_w2: Tensor


def phase_diagram(sigma_w2, sigma_b2, phi: PhiLike = "tanh", **quadrature) -> PhaseDiagram:
    """Vectorised phase diagram over the grid of 1-D arrays ``sigma_w2 [A]``, ``sigma_b2 [B]``."""
    sw, sb = _as_tensor(sigma_w2, "sigma_w2", True), _as_tensor(sigma_b2, "sigma_b2", True)
    if sw.dim() != 1 or sb.dim() != 1:
        raise ValueError(f"phase_diagram takes 1-D sigma_w2 and sigma_b2 axes, got shapes {tuple(sw.shape)}, {tuple(sb.shape)}")
    W, B = torch.meshgrid(sw, sb, indexing="ij")
    keep = {k: v for k, v in quadrature.items() if k in ("n_nodes", "half_width")}
    return PhaseDiagram(sw, sb, fixed_point(W, B, phi, **quadrature), critical_sigma_w2(sb, phi, **keep))
