"""Propagation of a one-dimensional input manifold (a curve) through any :class:`LayeredMap`.

Poole et al., NeurIPS 2016, section 4. A curve ``h^0(theta)`` (by default the great circle
``sqrt(D q0) (u0 cos theta + u1 sin theta)`` in a random plane, sampled at ``M`` angles) is pushed
through the maps ``f_l`` together with its exact velocity ``v = dh/dtheta`` and acceleration
``a = d^2h/dtheta^2``. Per layer, with ``D`` the number of units of the layer:

* squared length per unit ``q^l = <|h|^2> / D``, metric ``g^l = <|v|^2> / D``;
* curvature ``kappa^2 = ((v.v)(a.a) - (v.a)^2) / (v.v)^3`` (computed as ``|a_perp|^2 / |v|^4``),
  reported normalised per unit, ``D kappa^2`` (the curvature of ``h / sqrt(D)``), averaged over
  the points;
* Euclidean length ``L_E = Int |v| dtheta`` and Grassmannian length ``L_G = Int kappa |v| dtheta``;
* the correlation ``c(theta, theta') = h.h' / (|h||h'|)`` between points as a function of their
  angular separation (averaged around a closed curve).

Derivatives are exact: one nested forward-mode ``torch.func.jvp`` per layer of the Taylor path
``t -> f(h + t v + t^2 a / 2)`` gives ``f(h)``, ``J v`` and ``J a + H[v, v]`` at once, for any
map built from torch operations (dense, convolutional, recurrent), not finite differences.

Mean-field predictions (for models with a mean-field description, e.g. ``random-net/*``):
``q^l = sigma_w2 Int Dz phi(sqrt(q^{l-1}) z)^2 + sigma_b2``, ``g^l = chi_1 g^{l-1}``,
``(kappa^l)^2 = 3 chi_2 / chi_1^2 + (kappa^{l-1})^2 / chi_1`` (chi's at ``q^{l-1}``), the
correlation map for ``c^l``; in chaos the normalised ``kappa^2`` settles at
``3 chi_2 / (chi_1 (chi_1 - 1))`` and both lengths grow by ``sqrt(chi_1)`` per layer.

    >>> import zoo
    >>> net = zoo.load("random-net/tanh", width=200, depth=8)
    >>> p = propagate(net, n_angles=64, q0=1.0)
    >>> p.kappa2.shape, p.euclidean_length.shape
    ((9,), (9,))
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch.func import jvp

from . import mean_field as mf
from .protocols import LayeredMap, as_layered_map
from .registry import AnalysisResult, register_analysis

Tensor = torch.Tensor


@runtime_checkable
class MeanFieldNet(Protocol):
    """A layered random network with a mean-field description (``random-net/*``):
    ``h^1 = W^1 x + b^1``, ``h^l = W^l phi(h^{l-1}) + b^l``, ``W ~ N(0, sigma_w2 / fan_in)``."""

    nonlinearity: str
    sigma_w2: float
    sigma_b2: float
    depth: int

    def layer_maps(self) -> Sequence[Callable[[Tensor], Tensor]]: ...


# ---------------------------------------------------------------------------------------------
# curves and their jets
# ---------------------------------------------------------------------------------------------

def great_circle(shape: Sequence[int], radius: float, *, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> Callable[[Tensor], Tensor]:
    """``theta [M] -> x [M, *shape]``: ``radius (u0 cos theta + u1 sin theta)`` with ``u0, u1``
    orthonormal in a random plane of ``R^prod(shape)`` (from ``torch.Generator(seed)``)."""
    dim = int(np.prod(shape))
    if dim < 2:
        raise ValueError(f"a circle needs at least 2 input dimensions, got shape {tuple(shape)}")
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be positive and finite, got {radius}")
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=torch.float64))
    u0, u1 = (radius * basis.T.to(dtype)).reshape(2, *shape)

    def curve(theta: Tensor) -> Tensor:
        c, s = torch.cos(theta), torch.sin(theta)
        bshape = (-1,) + (1,) * len(shape)
        return c.reshape(bshape) * u0 + s.reshape(bshape) * u1

    return curve


def curve_jet(curve: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, dx/dtheta, d^2x/dtheta^2)`` at each angle, by nested ``jvp`` along ``theta [M]``.

    ``curve`` maps ``theta [M]`` to points ``[M, ...]``, each point depending on its own angle only.
    """

    def first(t: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(curve, (t,), (torch.ones_like(t),))

    (x, v), (_, a) = jvp(first, (theta,), (torch.ones_like(theta),))
    return x, v, a


def propagate_jet(f: Callable[[Tensor], Tensor], h: Tensor, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Push a curve's jet through one map: ``(f(h), J v, J a + H[v, v])``, exactly.

    Nested ``jvp`` of the Taylor path ``t -> f(h + t v + t^2 a / 2)`` at ``t = 0`` (its first and
    second ``t``-derivatives are the new velocity and acceleration by the chain rule).
    """
    t0 = torch.zeros((), dtype=h.dtype, device=h.device)
    one = torch.ones((), dtype=h.dtype, device=h.device)

    def path(t: Tensor) -> Tensor:
        return f(h + t * v + (0.5 * t * t) * a)

    def first(t: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(path, (t,), (one,))

    (h_new, v_new), (_, a_new) = jvp(first, (t0,), (one,))
    return h_new, v_new, a_new


# ---------------------------------------------------------------------------------------------
# geometry of one layer
# ---------------------------------------------------------------------------------------------

def curve_geometry(h: Tensor, v: Tensor, a: Tensor, dtheta: float, closed: bool) -> dict[str, Any]:
    """Statistics of one layer's sampled curve: points ``h``, velocities ``v``, accelerations ``a``,
    all ``[M, D]``, at parameter spacing ``dtheta``. Returns ``q``, ``g``, ``kappa2`` (mean of
    ``D kappa^2``), ``kappa2_median``, ``euclidean_length``, ``grassmannian_length`` (floats) and
    ``correlation`` (``[M//2 + 1]`` by lag around a closed curve, else ``[M]`` with the first point)."""
    D = h.shape[1]
    hh, vv = (h * h).sum(1), (v * v).sum(1)
    a_perp = a - ((a * v).sum(1) / vv)[:, None] * v
    kappa2 = (a_perp * a_perp).sum(1) / (vv * vv)  # [M]
    speed = vv.sqrt()
    if closed:
        le, lg = dtheta * speed.sum(), dtheta * (kappa2.sqrt() * speed).sum()
    else:
        le = torch.trapezoid(speed, dx=dtheta)
        lg = torch.trapezoid(kappa2.sqrt() * speed, dx=dtheta)
    unit = h / hh.sqrt()[:, None]
    M = h.shape[0]
    if closed:  # circular autocorrelation around the curve, averaged over starting points
        F = torch.fft.fft(unit, dim=0)
        power = (F * F.conj()).real.sum(1)
        corr = torch.fft.ifft(power).real[: M // 2 + 1] / M
    else:  # correlation with the first point
        corr = unit @ unit[0]
    return {
        "q": float(hh.mean()) / D, "g": float(vv.mean()) / D,
        "kappa2": float((D * kappa2).mean()), "kappa2_median": float((D * kappa2).median()),
        "euclidean_length": float(le), "grassmannian_length": float(lg),
        "correlation": corr.detach().cpu().numpy(),
    }


# ---------------------------------------------------------------------------------------------
# propagation
# ---------------------------------------------------------------------------------------------

@dataclass
class Propagation:
    """Per-layer geometry of a propagated curve; index 0 is the curve where it enters.

    ``layers [L+1]`` (model layer numbers, ``start_layer .. start_layer + L``), ``q``, ``g``,
    ``kappa2`` (mean of ``D kappa^2``), ``kappa2_median``, ``euclidean_length``,
    ``grassmannian_length`` (all ``[L+1]``), ``correlation [L+1, K]`` at angular separations
    ``lags [K]`` (radians), ``theta [M]``, ``units [L+1]`` (``D`` per layer), ``kept``
    (layer -> activations ``[M, D]`` for the layers asked for), ``theory`` (mean-field arrays of
    the same names prefixed ``theory_``, when the model has a mean-field description).
    """

    layers: np.ndarray
    theta: np.ndarray
    units: np.ndarray
    q: np.ndarray
    g: np.ndarray
    kappa2: np.ndarray
    kappa2_median: np.ndarray
    euclidean_length: np.ndarray
    grassmannian_length: np.ndarray
    correlation: np.ndarray
    lags: np.ndarray
    closed: bool
    kept: dict[int, np.ndarray] = field(default_factory=dict)
    theory: dict[str, np.ndarray] = field(default_factory=dict)

    def growth(self, kind: str = "euclidean", window: tuple[int, int] | None = None) -> float:
        """Geometric-mean growth factor per layer of ``kind`` ("euclidean" or "grassmannian") length,
        over ``window = (i0, i1)`` indices into ``layers`` (default: the last half)."""
        values = {"euclidean": self.euclidean_length, "grassmannian": self.grassmannian_length}
        if kind not in values:
            raise ValueError(f"kind must be 'euclidean' or 'grassmannian', got {kind!r}")
        n = len(self.layers) - 1
        i0, i1 = window or (n - n // 2, n)
        if not 0 <= i0 < i1 <= n:
            raise ValueError(f"window {(i0, i1)} must satisfy 0 <= i0 < i1 <= {n}")
        y = values[kind]
        return float(np.exp((np.log(y[i1]) - np.log(y[i0])) / (i1 - i0)))


def _resolve_maps(model: Any, input_shape: Sequence[int] | None) -> tuple[list[Callable], tuple[int, ...]]:
    if hasattr(model, "layer_maps"):
        maps, shape = list(model.layer_maps()), tuple(input_shape or model.input_shape)
    elif isinstance(model, Sequence) and all(callable(f) for f in model):
        if input_shape is None:
            raise ValueError("pass input_shape when propagating through a plain list of maps")
        maps, shape = list(model), tuple(input_shape)
    else:
        raise TypeError(f"expected a LayeredMap (with layer_maps() and input_shape) or a list of maps, "
                        f"got {type(model).__name__}")
    if not maps:
        raise ValueError("the model has no layer maps")
    return maps, shape


def _cast_model(model: Any, dtype: torch.dtype) -> Any:
    """A copy of an ``nn.Module`` in ``dtype`` (the caller's model is left untouched)."""
    if isinstance(model, torch.nn.Module):
        params = list(model.parameters()) + list(model.buffers())
        if any(p.is_floating_point() and p.dtype != dtype for p in params):
            return copy.deepcopy(model).to(dtype)
    return model


def propagate(model: Any, *, curve: Callable[[Tensor], Tensor] | None = None, theta: Tensor | None = None,
              n_angles: int = 500, q0: float = 1.0, start_layer: int = 0, n_layers: int | None = None,
              keep_layers: Sequence[int] = (), closed: bool | None = None, seed: int = 0,
              dtype: torch.dtype = torch.float64, input_shape: Sequence[int] | None = None,
              theory: bool = True) -> Propagation:
    """Propagate a curve through ``model``'s layer maps and measure its geometry at every layer.

    model: a ``LayeredMap`` (or a list of maps with ``input_shape``). The curve enters as the
        input of map ``start_layer`` (0: the model's input; 1 for a random net: the curve *is*
        ``h^1``, the paper's set-up) and passes through ``n_layers`` maps (default: all the rest).
    curve: ``theta [M] -> points [M, *shape]`` (default: a great circle of radius ``sqrt(D q0)``
        at ``theta = 2 pi k / n_angles``). ``closed`` (default: True for the circle, False for a
        user curve) says whether ``theta`` spans one period uniformly.
    keep_layers: layer numbers whose activations ``[M, D]`` are returned in ``kept``.
    dtype: computation dtype; a module in another dtype is copied and cast (float64 default).
    theory: add mean-field predictions when the model is a :class:`MeanFieldNet`.
    """
    maps, shape = _resolve_maps(model, input_shape)
    if not 0 <= start_layer < len(maps):
        raise ValueError(f"start_layer must be in [0, {len(maps) - 1}], got {start_layer}")
    stop = len(maps) if n_layers is None else start_layer + n_layers
    if not start_layer < stop <= len(maps):
        raise ValueError(f"n_layers must be in [1, {len(maps) - start_layer}], got {n_layers}")
    mf_spec = mean_field_layers(model) if theory else None
    model_c = _cast_model(model, dtype)
    maps, _ = _resolve_maps(model_c, shape)
    if start_layer > 0:  # the shape of the activity entering map `start_layer`
        with torch.no_grad():
            probe = torch.zeros(1, *shape, dtype=dtype)
            for f in maps[:start_layer]:
                probe = f(probe)
        shape = tuple(probe.shape[1:])
    dim = int(np.prod(shape))
    if curve is None:
        if n_angles < 4:
            raise ValueError(f"n_angles must be >= 4, got {n_angles}")
        if not (q0 > 0 and math.isfinite(q0)):
            raise ValueError(f"q0 (squared radius per unit) must be positive and finite, got {q0}")
        curve = great_circle(shape, math.sqrt(dim * q0), seed=seed, dtype=dtype)
        theta = torch.arange(n_angles, dtype=dtype) * (2 * math.pi / n_angles)
        closed = True if closed is None else closed
    else:
        if theta is None:
            raise ValueError("a user curve needs its parameter values theta [M]")
        closed = False if closed is None else closed
    theta = torch.as_tensor(theta, dtype=dtype)
    if theta.dim() != 1 or theta.numel() < 4 or not torch.isfinite(theta).all():
        raise ValueError(f"theta must be a finite 1-D tensor of >= 4 values, got shape {tuple(theta.shape)}")
    steps = theta.diff()
    dtheta = float(steps.mean())
    tol = 1e-9 if dtype == torch.float64 else 100 * torch.finfo(dtype).eps * float(theta.abs().max())
    if not (steps > 0).all() or float((steps - dtheta).abs().max()) > tol * max(1.0, abs(dtheta)):
        raise ValueError("theta must be increasing and uniformly spaced")
    h, v, a = curve_jet(curve, theta)
    if tuple(h.shape) != (theta.numel(), *shape):
        raise ValueError(f"the curve must return points of shape [M, {', '.join(map(str, shape))}] "
                         f"(the input of map {start_layer}), got {tuple(h.shape)}")
    rows, kept, units = [], {}, []
    keep = set(int(k) for k in keep_layers)
    with torch.no_grad():
        for i in range(start_layer, stop + 1):
            if i > start_layer:
                h, v, a = propagate_jet(maps[i - 1], h, v, a)
            flat = [t.reshape(t.shape[0], -1) for t in (h, v, a)]
            if not all(torch.isfinite(t).all() for t in flat):
                raise ValueError(f"non-finite activations or derivatives at layer {i}")
            rows.append(curve_geometry(*flat, dtheta, closed))
            units.append(flat[0].shape[1])
            if i in keep:
                kept[i] = flat[0].cpu().numpy().copy()
    M = theta.numel()
    lags = (np.arange(M // 2 + 1) if closed else np.arange(M)) * dtheta
    out = Propagation(
        layers=np.arange(start_layer, stop + 1), theta=theta.cpu().numpy(), units=np.array(units),
        correlation=np.stack([r.pop("correlation") for r in rows]), lags=lags, closed=closed, kept=kept,
        **{k: np.array([r[k] for r in rows]) for k in rows[0]},
    )
    if mf_spec is not None:
        out.theory = _theory(out, mf_spec[start_layer:stop])
    return out


# ---------------------------------------------------------------------------------------------
# mean-field predictions beside the measurements
# ---------------------------------------------------------------------------------------------

def mean_field_layers(model: Any) -> list[tuple[str, float, float]] | None:
    """Per map ``(nonlinearity applied to its input, sigma_w2, sigma_b2)`` for a :class:`MeanFieldNet`
    (the first map of a random net is affine: "linear"), or ``None`` for other models."""
    if hasattr(model, "mean_field_layers"):
        return list(model.mean_field_layers())
    if not isinstance(model, MeanFieldNet):
        return None
    sw, sb = float(model.sigma_w2), float(model.sigma_b2)
    return [("linear", sw, sb)] + [(model.nonlinearity, sw, sb)] * (int(model.depth) - 1)


def _theory(p: Propagation, spec: list[tuple[str, float, float]], n_lags: int = 33) -> dict[str, np.ndarray]:
    """Iterate the mean-field maps from the measured geometry of the entering curve."""
    stride = max(1, (len(p.lags) - 1) // (n_lags - 1))
    lag_idx = np.arange(0, len(p.lags), stride)
    q, g, k2 = float(p.q[0]), float(p.g[0]), float(p.kappa2[0])
    c = torch.as_tensor(p.correlation[0, lag_idx], dtype=torch.float64).clamp(-1, 1)
    qs, gs, k2s, cs = [q], [g], [k2], [c.numpy()]
    for phi, sw, sb in spec:
        m = mf._gauss_moments(torch.tensor([q], dtype=torch.float64), mf.get_nonlinearity(phi), 2,
                              ("dd", "ss"), mf.gaussian_grid())
        chi1, chi2 = sw * float(m["dd"][0]), sw * float(m["ss"][0])
        c = mf.correlation_map(c, q, sw, sb, phi)
        q = float(mf.length_map(q, sw, sb, phi))
        g, k2 = chi1 * g, 3.0 * chi2 / chi1**2 + k2 / chi1
        qs.append(q), gs.append(g), k2s.append(k2), cs.append(c.numpy())
    D = p.units.astype(float)
    g_arr, k2_arr = np.array(gs), np.array(k2s)
    length = 2 * np.pi * np.sqrt(D * g_arr) if p.closed else np.full_like(g_arr, np.nan)
    return {
        "theory_q": np.array(qs), "theory_g": g_arr, "theory_kappa2": k2_arr,
        "theory_euclidean_length": length, "theory_grassmannian_length": length * np.sqrt(k2_arr / D),
        "theory_correlation": np.stack(cs), "theory_lags": p.lags[lag_idx],
    }


def default_q0(model: Any, start_layer: int = 0) -> float:
    """The circle's squared radius per unit: for a random net, the one that puts layer
    ``start_layer + 1`` at ``q*`` (the paper's choice); 1.0 for other models."""
    spec = mean_field_layers(model)
    if spec is None:
        return 1.0
    phi, sw, sb = spec[min(start_layer + 1, len(spec) - 1)]
    q_star = float(mf.fixed_point(sw, sb, phi).q_star)
    if not math.isfinite(q_star) or q_star <= 0:  # no finite or a zero fixed point (e.g. ReLU at sigma_b2 = 0)
        return 1.0
    if start_layer == 0:
        _, sw0, sb0 = spec[0]
        return max(q_star - sb0, 1e-6) / sw0 if sw0 > 0 else 1.0
    return q_star


def _visited_q(model: Any, task: Any, n_states: int = 2000) -> float:
    """Mean squared state per unit, ``mean |h|^2 / N``, over states a recurrent model visits on ``task``."""
    from .fixed_points import visited_seeds

    states = visited_seeds(model, task, n_states).double()
    return float((states * states).sum(1).mean() / states.shape[1])


# ---------------------------------------------------------------------------------------------
# analyses
# ---------------------------------------------------------------------------------------------

_FLOAT32_ABOVE = 10_000  # input dimensions above which curvature computes in float32 by default


@register_analysis("curvature", protocol=LayeredMap, version="3", quick_params={"n_angles": 32, "n_steps": 5}, cost=3)
def curvature(model, task, *, n_angles: int = 500, q0: float | None = None, start_layer: int = 0,
              seed: int = 0, float64: bool | None = None, n_steps: int = 20) -> AnalysisResult:
    """Length, curvature, Grassmannian length and correlation of a great circle across layers.

    Poole et al. 2016: a circle of radius ``sqrt(D q0)`` (``q0`` default: the random net's ``q*``
    reached at layer 1, else 1.0) enters map ``start_layer`` and is propagated with exact
    forward-mode derivatives; mean-field predictions are added for random nets.

    A recurrent model is unrolled for ``n_steps`` steps at zero input (:class:`UnrolledInTime`):
    its layers are time steps, and ``q0`` defaults to the mean squared state per unit that it
    visits on ``task``, so the circle lies at the scale of its own states. Growth per step
    above 1 stretches (chaotic), below 1 contracts (ordered).

    ``float64`` (default: for inputs of at most 10,000 dimensions; float32 above, e.g. the retina
    CNN's 40 x 50 x 50 movie, where float64 convolutions cost 2-3x and the two agree to about 1e-6
    relative on ``retina-natural/cnn``). The precision used is in the summary.
    """
    recurrent = not isinstance(model, LayeredMap)
    net = as_layered_map(model, n_steps)
    if float64 is None:
        float64 = int(np.prod(net.input_shape)) <= _FLOAT32_ABOVE
    if q0 is None:
        q0 = _visited_q(model, task) if recurrent else default_q0(model, start_layer)
    p = propagate(net, n_angles=n_angles, q0=float(q0), start_layer=start_layer, seed=seed,
                  dtype=torch.float64 if float64 else torch.float32)
    n = len(p.layers) - 1
    settled = p.kappa2[n - n // 2:] if n >= 2 else p.kappa2[-1:]
    summary: dict[str, Any] = {
        "layers": "time steps at zero input" if recurrent else "layers",
        "n_layers": n, "n_angles": n_angles, "q0": q0, "start_layer": start_layer,
        "precision": "float64" if float64 else "float32",
        "q_last": float(p.q[-1]), "kappa2_first": float(p.kappa2[0]), "kappa2_last": float(p.kappa2[-1]),
        "kappa2_settled": float(settled.mean()),
        "euclidean_length_last": float(p.euclidean_length[-1]),
        "grassmannian_length_last": float(p.grassmannian_length[-1]),
        "correlation_adjacent_last": float(p.correlation[-1, 1]),
    }
    if n >= 2:
        summary["euclidean_growth"] = p.growth("euclidean")
        summary["grassmannian_growth"] = p.growth("grassmannian")
    arrays = {k: np.asarray(getattr(p, k)) for k in ("layers", "units", "q", "g", "kappa2", "kappa2_median",
                                                       "euclidean_length", "grassmannian_length", "correlation", "lags")}
    if p.theory:
        arrays.update(p.theory)
        spec = mean_field_layers(model)[-1]
        fp = mf.fixed_point(spec[1], spec[2], spec[0])
        c1, c2 = float(fp.chi_1), float(fp.chi_2)
        summary.update({
            "theory_q_star": float(fp.q_star), "theory_chi_1": c1, "theory_chi_2": c2,
            "theory_growth": math.sqrt(c1),
            "theory_kappa2_fixed_point": 3 * c2 / (c1 * (c1 - 1)) if c1 > 1 + 1e-9 else math.inf,
            "theory_kappa2_last": float(p.theory["theory_kappa2"][-1]),
        })
    return AnalysisResult(summary=summary, arrays=arrays)


@register_analysis("mean-field", protocol=MeanFieldNet, version="1")
def mean_field(model, task, *, q0: float = 1.0, n_layers: int | None = None) -> AnalysisResult:
    """Mean-field numbers of a random net: q*, c*, chi_1, chi_2, chi_c, depth scales, the critical
    sigma_w2 at its sigma_b2, and the length-map trajectory from ``q0``."""
    phi, sw, sb = model.nonlinearity, float(model.sigma_w2), float(model.sigma_b2)
    fp = mf.fixed_point(sw, sb, phi)
    summary: dict[str, Any] = {k: float(v) for k, v in fp.as_dict().items()}
    c1 = summary["chi_1"]
    summary["phase"] = "critical" if abs(c1 - 1) < 1e-9 else ("chaotic" if c1 > 1 else "ordered")
    summary["critical_sigma_w2"] = float(mf.critical_sigma_w2(sb, phi))
    q, traj = float(q0), [float(q0)]
    for _ in range(int(n_layers or model.depth)):
        q = float(mf.length_map(q, sw, sb, phi))
        traj.append(q)
    return AnalysisResult(summary=summary, arrays={"q_trajectory": np.array(traj)})
