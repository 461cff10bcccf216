"""Fixed points and slow points of recurrent dynamics ``h_{t+1} = F(h_t, x)`` at a constant input.

Following Sussillo & Barak (2013) and Golub & Sussillo (2018), a fixed point ``h*`` of the map
``F(., x)`` minimises the *speed*

    q(h) = (1/N) ||F(h, x) - h||^2          (N = state size; mean squared one-step change)

which is zero exactly at fixed points. **Convention**: we divide by ``N`` as Maheswaranathan et
al. (2019) do (their threshold ``q < 1e-8``); Golub & Sussillo's FixedPointFinder uses
``0.5 * ||F(h) - h||^2``, which is ``N / 2`` times larger. Local minima of ``q`` with
``q > 0`` are *slow points* (ghosts, near-bifurcations); they are reported with their ``q`` and
``||grad q||``, never hidden.

The finder (:func:`find_fixed_points`) starts from many initial states at once (``seeds [S, N]``):

1. **Adam phase**: a few dozen first-order steps on ``sum_i q(h_i)`` move each seed towards a
   nearby zero or minimum of ``q`` (points that reach ``q < adam_q`` leave early).
2. **Levenberg-Marquardt polish**: on the residual ``r(h) = F(h, x) - h`` with per-point
   Jacobians ``J_r = dF/dh - I`` (the model's closed-form ``state_jacobian`` when it has one,
   else ``torch.func.vmap(jacrev)``), each point takes ``(J_r^T J_r + mu_i I) d = -J_r^T r``
   with its own damping ``mu_i`` (shrunk on success, grown on failure), so true fixed points
   converge quadratically to ``q < q_tol`` while a point near a line attractor (``J_r`` nearly
   singular along the line) stays well posed. A point that stops making progress (neither
   ``q`` nor ``||grad q||`` halves in ``patience`` accepted steps) is a slow point.
3. **Bookkeeping**: per seed a status (:data:`STATUS`): ``fixed`` (q < ``q_fixed``, default
   1e-10), ``slow``, ``diverged`` (went non-finite or ran off), ``nan-seed`` (non-finite seed),
   ``outlier`` (farther than ``outlier_scale`` seed radii from the seeds' centroid),
   ``unreachable`` (outside the box of states the model can reach, when it declares one with
   ``state_bounds()``: a GRU held still outside ``(-1, 1)^N`` by saturated gates is no fixed point
   of the network it came from); then greedy de-duplication within ``tol_unique`` times the
   seeds' median radius (lowest q first), so the tolerance scales with the visited states.
   :meth:`FixedPoints.connected_sets` then groups the points into connected sets (single linkage
   at a linking distance, 0.3 of the seeds' scale by default, stated in the result): distinct fixed
   points, and slow sets with their extent and dimension. Unlike a count of de-duplicated points
   along a slow manifold, these barely move with the de-duplication tolerance (a line attractor
   is one set); points closer than the linking distance are one set, however distinct.
4. **Linearisation** at each unique point: ``J = dF/dh``, eigenvalues sorted by ``|lambda|``
   descending, right eigenvectors (columns of ``R``) and left eigenvectors (rows of
   ``L = R^{-1}``, so ``L J R = diag(lambda)`` and ``l_i . r_j = delta_ij``), stability
   (``max |lambda| < 1``) and time constants ``tau = -1 / ln|lambda|`` in steps (``inf`` at
   ``|lambda| = 1``, negative for growing modes).

    >>> fp = find_fixed_points(model, seeds)          # model provides RecurrentDynamics
    >>> fp.points.shape, fp.q.max(), fp.eigenvalues[:, 0]
    >>> fp.save("fp.h5"); FixedPoints.load("fp.h5")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from .protocols import RecurrentDynamics
from .registry import AnalysisResult, register_analysis

#: per-seed status codes (``FixedPoints.seed_status`` holds indices into this tuple)
STATUS = ("fixed", "slow", "diverged", "nan-seed", "outlier", "duplicate", "unreachable")
_FIXED, _SLOW, _DIVERGED, _NAN_SEED, _OUTLIER, _DUPLICATE, _UNREACHABLE = range(len(STATUS))
CONVENTION = "q = (1/N) ||F(h, x) - h||^2"
_FORMAT = "zoo-fixed-points/1"

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ============================================================================ the result object


@dataclass
class FixedPoints:
    """Unique fixed (and slow) points of ``F(., x)`` and their linearisations.

    Per unique point (``K`` of them, sorted by ``q`` ascending):
    ``points [K, N]``, ``q [K]``, ``grad_norm [K]`` (``||grad q||``), ``seed_index [K]`` (the seed
    it came from), ``jacobians [K, N, N]`` (``dF/dh``), ``eigenvalues [K, N]`` complex, sorted by
    modulus descending, ``right_eigenvectors [K, N, N]`` (column ``i`` belongs to eigenvalue
    ``i``), ``left_eigenvectors [K, N, N]`` (row ``i``; ``L = R^{-1}``).
    Per seed (``S``): ``seed_q``, ``seed_grad_norm``, ``seed_status`` (index into :data:`STATUS`),
    ``final_states [S, N]`` (where each seed ended; NaN for non-finite seeds), ``seed_time_s``
    (seconds from the start of the search until the seed's own q first fell below ``q_fixed``;
    NaN if it never did).
    ``input [I]``: the constant input. ``params``: the finder's settings and timings.
    Without linearisation (``compute_jacobians=False``) the Jacobian and spectral arrays have a
    zero-sized trailing shape (``[K, 0, 0]``, ``[K, 0]``); :func:`linearise` fills them.
    """

    points: np.ndarray
    q: np.ndarray
    grad_norm: np.ndarray
    seed_index: np.ndarray
    jacobians: np.ndarray
    eigenvalues: np.ndarray
    right_eigenvectors: np.ndarray
    left_eigenvectors: np.ndarray
    input: np.ndarray
    seed_q: np.ndarray
    seed_grad_norm: np.ndarray
    seed_status: np.ndarray
    final_states: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    seed_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    # -- derived quantities ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.points)

    @property
    def n_unique(self) -> int:
        return len(self.points)

    @property
    def state_size(self) -> int:
        return self.points.shape[1]

    @property
    def is_fixed(self) -> np.ndarray:
        """``q < q_fixed`` per unique point (the rest are slow points)."""
        return self.q < self.params.get("q_fixed", 1e-10)

    @property
    def linearised(self) -> bool:
        """Whether Jacobians and spectra are present (see :func:`linearise`)."""
        return self.eigenvalues.ndim == 2 and self.eigenvalues.shape[1] == self.points.shape[1] > 0

    @property
    def stable(self) -> np.ndarray:
        """``max |lambda| < 1`` per point (asymptotically stable for the discrete-time map)."""
        if not self.linearised:
            raise ValueError("no spectra: find_fixed_points(..., compute_jacobians=True) or linearise(model, fp)")
        return np.abs(self.eigenvalues[:, 0]) < 1.0

    @property
    def time_constants(self) -> np.ndarray:
        """``tau = -1 / ln|lambda|`` in steps, ``[K, N]`` (inf where ``|lambda| = 1``)."""
        with np.errstate(divide="ignore"):
            return -1.0 / np.log(np.abs(self.eigenvalues))

    def status_counts(self) -> dict[str, int]:
        """Number of seeds in each status, e.g. ``{"fixed": 812, "slow": 150, ...}``."""
        counts = np.bincount(self.seed_status, minlength=len(STATUS))
        return {name: int(c) for name, c in zip(STATUS, counts)}

    def connected_sets(self, link: float = 0.3) -> "ConnectedSets":
        """The points grouped into connected sets by single linkage: two points are linked when
        closer than ``link`` times the seeds' scale (``params["state_scale"]``, their median distance
        from their centroid). A line attractor sampled by many seeds is one set, whatever the
        de-duplication tolerance; isolated fixed points are sets of their own."""
        scale = float(self.params.get("state_scale", 0.0)) or 1.0
        return connected_sets(self.points, self.is_fixed, link * scale)

    def subset(self, mask: np.ndarray) -> "FixedPoints":
        """The unique points selected by a boolean or index array ``mask`` (per-seed data kept)."""
        per_point = {"points", "q", "grad_norm", "seed_index", "jacobians", "eigenvalues",
                     "right_eigenvectors", "left_eigenvectors"}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in per_point:
            values[name] = values[name][mask]
        return FixedPoints(**values)

    # -- HDF5 -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write every array and the parameters to HDF5 atomically (temporary file + rename)."""
        from zoo.checkpoint import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = _FORMAT
                f.attrs["convention"] = CONVENTION
                f.attrs["status_names"] = json.dumps(STATUS)
                f.attrs["params"] = json.dumps(self.params, default=float)
                for item in fields(self):
                    if item.name != "params":
                        f.create_dataset(item.name, data=getattr(self, item.name))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FixedPoints":
        """Read a file written by :meth:`save`; a foreign or incomplete file raises ``ValueError``."""
        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != _FORMAT:
                    raise ValueError(f"{path}: not a fixed-points file (format {f.attrs.get('format')!r})")
                names = [item.name for item in fields(cls) if item.name != "params"]
                missing = [n for n in names if n not in f and n != "seed_time_s"]
                if missing:
                    raise ValueError(f"{path}: missing datasets {', '.join(missing)}")
                values = {n: f[n][()] for n in names if n in f}
                values["params"] = json.loads(f.attrs["params"])
        except OSError as err:
            raise ValueError(f"{path}: unreadable HDF5 file ({err})") from None
        return cls(**values)


@dataclass
class ConnectedSets:
    """Connected sets of points (single linkage at distance ``link``), largest first.

    ``labels [K]`` (set of each point), and per set ``sizes [C]``, ``n_fixed [C]`` (points with
    ``q < q_fixed``), ``extents [C]`` (largest distance between two of its points, in state units)
    and ``pc1_fractions [C]`` (variance on the set's first principal axis: 1 for a straight line;
    1 for a single point by convention). ``n_distinct_fixed``: connected sets among the fixed
    points alone (distinct fixed points, however many seeds found each).
    """

    labels: np.ndarray
    sizes: np.ndarray
    n_fixed: np.ndarray
    extents: np.ndarray
    pc1_fractions: np.ndarray
    n_distinct_fixed: int
    link: float

    @property
    def n_sets(self) -> int:
        return len(self.sizes)

    def summary(self) -> dict[str, Any]:
        """Counts and the largest set's size, extent and dimension, for a results table."""
        out: dict[str, Any] = {"n_sets": self.n_sets, "n_distinct_fixed": self.n_distinct_fixed, "link_abs": self.link}
        if self.n_sets:
            out.update(largest_set_size=int(self.sizes[0]), largest_set_extent=float(self.extents[0]),
                       largest_set_pc1=float(self.pc1_fractions[0]))
        return out


def _single_linkage(points: np.ndarray, link: float) -> np.ndarray:
    """Labels ``[K]`` of the connected components of the graph linking points closer than ``link``."""
    from scipy.sparse.csgraph import connected_components

    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    p = torch.as_tensor(points, dtype=torch.float64)
    adjacency = (torch.cdist(p, p) < link).numpy()
    return connected_components(adjacency, directed=False)[1].astype(np.int64)


def connected_sets(points: np.ndarray, fixed: np.ndarray, link: float) -> ConnectedSets:
    """:class:`ConnectedSets` of ``points [K, N]`` (``fixed [K]``: which have ``q < q_fixed``)
    linked below the distance ``link``, largest set first."""
    points = np.asarray(points, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=bool)
    raw = _single_linkage(points, link)
    sizes = np.bincount(raw)
    order = np.argsort(-sizes, kind="stable")
    labels = np.argsort(order)[raw] if len(raw) else raw  # relabel: 0 is the largest set
    extents, pc1 = np.zeros(len(order)), np.ones(len(order))
    for c in range(len(order)):  # one small SVD per set (sets are few; points are not looped over)
        members = torch.as_tensor(points[labels == c])
        if len(members) > 1:
            extents[c] = float(torch.cdist(members, members).max())
            sv = torch.linalg.svdvals(members - members.mean(0))
            pc1[c] = float(sv[0] ** 2 / (sv**2).sum()) if sv.sum() > 0 else 1.0
    return ConnectedSets(labels, sizes[order], np.bincount(labels, weights=fixed, minlength=len(order)).astype(np.int64),
                         extents, pc1, int(len(np.unique(_single_linkage(points[fixed], link)))), float(link))


# ============================================================================ helpers


def _as_step(dynamics: Any) -> tuple[StepFn, int | None]:
    """``(step, input_size)`` from a RecurrentDynamics model or a plain callable ``F(h, x)``."""
    if isinstance(dynamics, RecurrentDynamics) or hasattr(dynamics, "step"):
        return dynamics.step, getattr(dynamics, "input_size", None)
    if callable(dynamics):
        return dynamics, None
    raise TypeError(f"expected a RecurrentDynamics model or a callable F(h, x), got {type(dynamics).__name__}")


def _dtype_of(dynamics: Any, default: torch.dtype) -> torch.dtype:
    """The floating dtype of a model's parameters (also for a bound method such as ``model.step``)."""
    dynamics = getattr(dynamics, "__self__", dynamics)
    if isinstance(dynamics, torch.nn.Module):
        for p in dynamics.parameters():
            if p.is_floating_point():
                return p.dtype
    return default


def _residual(step: StepFn, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = step(h, x)
    if not isinstance(out, torch.Tensor) or out.shape != h.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"step(h, x) must return a tensor shaped like h {tuple(h.shape)}, got {shape}")
    return out - h


def _speed(step: StepFn, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``q(h) = (1/N)||F(h, x) - h||^2`` per row, ``[B]``."""
    with torch.no_grad():
        return _residual(step, h, x).pow(2).mean(-1)


def _residual_and_grad(step: StepFn, h: torch.Tensor, x: torch.Tensor,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(r = F(h, x) - h [B, N], q [B], ||grad q|| [B])``, the gradient by one backward pass."""
    h = h.detach().requires_grad_(True)
    with torch.enable_grad():
        r = _residual(step, h, x)
        q = r.pow(2).mean(-1)
        (g,) = torch.autograd.grad(q.sum(), h)
    return r.detach(), q.detach(), g.norm(dim=-1)


def state_jacobians(dynamics: Any, h: torch.Tensor, x: torch.Tensor, max_rows: int = 1 << 13) -> torch.Tensor:
    """``dF/dh`` at each row: ``h [B, N]``, ``x [B, I]`` -> ``[B, N, N]`` (``J[b, i, j] = dF_i/dh_j``).

    ``dynamics``: a model or a plain callable ``F(h, x)``. A model that offers the closed form
    ``state_jacobian(h, x)`` (optional in :class:`RecurrentDynamics`; O(N^2) per point) is asked
    for it; otherwise ``torch.func.vmap(jacrev)`` of ``step`` (O(N^3) per point), and a step that
    ``vmap`` cannot trace falls back to plain autograd on ``N`` replicas of each row. Work is
    chunked so at most ``max_rows`` replicated rows (``chunk * N``) are live at once.
    """
    return _jacobians(dynamics, h, x, wrt=0, max_rows=max_rows)


def input_jacobians(dynamics: Any, h: torch.Tensor, x: torch.Tensor, max_rows: int = 1 << 13) -> torch.Tensor:
    """``dF/dx`` at each row: ``h [B, N]``, ``x [B, I]`` -> ``[B, N, I]`` (``input_jacobian`` if offered)."""
    return _jacobians(dynamics, h, x, wrt=1, max_rows=max_rows)


def has_closed_form_jacobian(dynamics: Any) -> bool:
    """Whether ``dynamics`` offers ``state_jacobian(h, x)`` (then second-order search is cheap)."""
    return callable(getattr(dynamics, "state_jacobian", None))


def _jacobians(dynamics: Any, h: torch.Tensor, x: torch.Tensor, wrt: int, max_rows: int) -> torch.Tensor:
    n = h.shape[1]
    closed_form = getattr(dynamics, ("state_jacobian", "input_jacobian")[wrt], None)
    step, _ = _as_step(dynamics)
    chunk = max(1, max_rows // max(n, 1))
    if callable(closed_form):  # O(N^2) memory per point, like the result: no chunking needed
        with torch.no_grad():
            return closed_form(h, x)
    parts = [_jacobian_chunk(step, h[i:i + chunk], x[i:i + chunk], wrt) for i in range(0, len(h), chunk)]
    if not parts:
        return h.new_zeros((0, n, (h if wrt == 0 else x).shape[1]))
    return torch.cat(parts)


def _jacobian_chunk(step: StepFn, h: torch.Tensor, x: torch.Tensor, wrt: int) -> torch.Tensor:
    def single(hh: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return step(hh[None], xx[None])[0]

    try:
        with torch.enable_grad():
            return torch.func.vmap(torch.func.jacrev(single, argnums=wrt))(h, x).detach()
    except (RuntimeError, NotImplementedError, TypeError):
        pass
    # Fallback: replicate each row once per output unit; row (b, i) of the gradient of
    # sum(F * e_i) is dF_i/d(arg) at point b.
    b, n = h.shape
    arg = (h if wrt == 0 else x).detach()
    rep = arg.repeat_interleave(n, dim=0).requires_grad_(True)
    other = (x if wrt == 0 else h).detach().repeat_interleave(n, dim=0)
    with torch.enable_grad():
        out = step(rep, other) if wrt == 0 else step(other, rep)
        basis = torch.eye(n, dtype=out.dtype).repeat(b, 1)
        (grad,) = torch.autograd.grad((out * basis).sum(), rep)
    return grad.reshape(b, n, arg.shape[1])


def _adam_phase(step: StepFn, h: torch.Tensor, x: torch.Tensor, iters: int, lr: float,
                q_stop: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point Adam on ``q`` for at most ``iters`` steps; returns ``(h, diverged [S])``.

    Points leave once ``q < q_stop``; a point whose state or gradient turns non-finite is frozen
    at its last finite value and flagged.
    """
    h = h.clone()
    diverged = torch.zeros(len(h), dtype=torch.bool)
    active = torch.arange(len(h))
    m = torch.zeros_like(h)
    v = torch.zeros_like(h)
    t = torch.zeros(len(h), 1, dtype=h.dtype)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for _ in tqdm(range(iters), desc="fixed points: Adam", leave=False, disable=None):  # shown on a terminal
        if len(active) == 0:
            break
        ha = h[active].requires_grad_(True)
        with torch.enable_grad():
            q = _residual(step, ha, x[active]).pow(2).mean(-1)
            (g,) = torch.autograd.grad(q.sum(), ha)
        q = q.detach()
        bad = ~(torch.isfinite(q) & torch.isfinite(g).all(-1))
        done = (q < q_stop) | bad
        diverged[active[bad]] = True
        keep = ~done
        active, g = active[keep], g[keep]
        if len(active) == 0:
            break
        t[active] += 1
        m[active] = beta1 * m[active] + (1 - beta1) * g
        v[active] = beta2 * v[active] + (1 - beta2) * g * g
        m_hat = m[active] / (1 - beta1 ** t[active])
        v_hat = v[active] / (1 - beta2 ** t[active])
        h[active] = h[active] - lr * m_hat / (v_hat.sqrt() + eps)
    return h.detach(), diverged


def _lm_polish(dynamics: Any, h: torch.Tensor, x: torch.Tensor, iters: int, q_tol: float,
               max_rows: int, *, patience: int = 3, progress: float = 0.5, chord: float = 0.1,
               mu_init: float = 1e-6, mu_down: float = 10.0, mu_up: float = 4.0, mu_max: float = 1e6,
               max_jacobians: int | None = None, absorb_tol: float | None = None,
               clock: tuple[float, float, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Batched Levenberg-Marquardt on ``r(h) = F(h, x) - h`` with per-point damping.

    Each point solves ``(J_r^T J_r + mu I) d = -J_r^T r`` (``J_r = dF/dh - I``) by Cholesky and
    takes the step if it lowers ``q``. Damping is relative to ``s = max diag(J_r^T J_r)``: it
    starts at ``mu_init s``, is divided by ``mu_down`` after a success and multiplied by
    ``mu_up`` after a failure (a failed Cholesky counts as one). The Jacobian is kept while steps
    cut ``q`` by at least the factor ``chord`` (chord steps: one forward pass instead of a
    Jacobian) and refreshed otherwise, at most ``max_jacobians`` times per point (default
    unlimited).

    A point stops when ``q < q_tol`` (converged); when neither ``q`` nor ``||grad q||`` has
    fallen by the factor ``progress`` in ``patience`` accepted steps, or the damping passes
    ``mu_max s`` (a *slow point*: a minimum of ``q > 0``, or a zero beyond the local quadratic
    model, e.g. far along a line attractor's neutral direction); within ``absorb_tol`` of a
    converged point (a duplicate of it); or after ``iters`` iterations. The linear algebra runs
    in blocks of 16 MB: the per-point matrices stay allocated, and temporaries stay small.

    Returns ``(h, q [S], grad_norm [S], n_jacobians, absorbed [S])``: per-point Jacobian
    evaluations in all, and which points stopped as duplicates. ``clock = (start, q_fixed,
    reached [S])``: writes into ``reached`` the time since ``start`` at which each point's q
    first fell below ``q_fixed``.
    """
    step, _ = _as_step(dynamics)
    n = h.shape[1]
    h = h.clone()
    budget = iters + 1 if max_jacobians is None else max_jacobians
    block = max(1, (1 << 22) // (n * n))  # points per linear-algebra block (16 MB of float32)
    r, q, grad = _residual_and_grad(step, h, x)  # grad: ||grad q||, kept exact at each point's h
    absorbed = torch.zeros(len(h), dtype=torch.bool)
    jac = h.new_empty(len(h), n, n)  # per point: J_r, and J_r^T J_r (allocated once, filled by block)
    jtj = torch.empty_like(jac)

    def refresh(rows: torch.Tensor) -> None:
        for i in range(0, len(rows), block):
            sub = rows[i:i + block]
            jr = state_jacobians(dynamics, h[sub], x[sub], max_rows)
            jr.diagonal(dim1=1, dim2=2).sub_(1.0)
            jac[sub], jtj[sub] = jr, jr.transpose(1, 2) @ jr

    def lm_step(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d [W, N], ok [W])``: the damped step for each row, and whether its Cholesky worked."""
        d, ok = h.new_zeros(len(rows), n), torch.ones(len(rows), dtype=torch.bool)
        for i in range(0, len(rows), block):
            sub = rows[i:i + block]
            a = jtj[sub]
            a.diagonal(dim1=1, dim2=2).add_(mu[sub, None])
            chol, info = torch.linalg.cholesky_ex(a)  # J^T J + mu I: positive definite unless rounding
            rhs = -(r[sub].unsqueeze(1) @ jac[sub]).transpose(1, 2)  # -J_r^T r, [b, N, 1]
            # two triangular solves: much faster than batched cholesky_solve on CPU
            y = torch.linalg.solve_triangular(chol, rhs, upper=False)
            d[i:i + block] = torch.linalg.solve_triangular(chol.transpose(1, 2), y, upper=True)[..., 0]
            ok[i:i + block] = info == 0
        d[~ok] = 0.0
        return d, ok

    def record_reached(rows: torch.Tensor) -> None:
        if clock is not None:
            start, q_fixed, reached = clock
            newly = rows[(q[rows] < q_fixed) & torch.isnan(reached[rows])]
            reached[newly] = time.perf_counter() - start

    record_reached(torch.arange(len(h)))
    rows = (torch.isfinite(q) & (q >= q_tol)).nonzero().flatten()  # the points still being polished
    refresh(rows)
    scale = torch.ones_like(q)  # damping is relative to the largest diagonal entry of J_r^T J_r
    scale[rows] = jtj[rows].diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-12)
    mu = mu_init * scale
    n_eval = torch.zeros(len(h), dtype=torch.long)
    n_eval[rows] = 1
    fresh = torch.ones(len(h), dtype=torch.bool)  # the Jacobian was evaluated at the current h
    q_ref, g_ref = q.clone(), grad.clone()  # for the stall rule
    since = torch.zeros(len(h), dtype=torch.long)

    for _ in tqdm(range(iters), desc="fixed points: LM polish", leave=False, disable=None):
        if len(rows) == 0:
            break
        d, ok = lm_step(rows)
        h_new = h[rows] + d
        r_new, q_new, g_new = _residual_and_grad(step, h_new, x[rows])
        q_old = q[rows]
        accept = ok & torch.isfinite(q_new) & (q_new < q_old)
        acc = rows[accept]
        h[acc], r[acc], q[acc], grad[acc] = h_new[accept], r_new[accept], q_new[accept], g_new[accept]
        record_reached(acc)
        mu[rows] = torch.where(accept, mu[rows] / mu_down, mu[rows] * mu_up).clamp_min(1e-15 * scale[rows])
        # refresh the Jacobian after a poor accepted step (not once converged), and after a failed
        # step taken with a stale one (a failed step with a fresh Jacobian only raises the damping)
        poor = accept & (q_new >= q_tol) & (q_new > chord * q_old)
        todo = rows[(poor | (~accept & ~fresh[rows])) & (n_eval[rows] < budget)]
        fresh[acc] = False
        refresh(todo)
        n_eval[todo] += 1
        fresh[todo] = True
        # the stall rule: ``patience`` accepted steps in which neither q nor its gradient fell by
        # the factor ``progress`` (a rejected step only says the step was too long: the damping
        # grows and it retries); the gradient keeps a point homing in on a slow point's minimum
        q_better, g_better = q[rows] < progress * q_ref[rows], grad[rows] < progress * g_ref[rows]
        q_ref[rows] = torch.where(q_better, q[rows], q_ref[rows])
        g_ref[rows] = torch.where(g_better, grad[rows], g_ref[rows])
        since[rows] = torch.where(q_better | g_better, 0, since[rows] + accept.long())
        done = q[rows] < q_tol
        keep = ~done & (since[rows] < patience) & (mu[rows] < mu_max * scale[rows])
        converged = q < q_tol  # q only falls, so a converged point stays converged
        if absorb_tol is not None and bool(converged.any()):  # creeping towards a converged point
            near = torch.cdist(h[rows], h[converged]).amin(-1) < absorb_tol
            absorbed[rows[keep & near]] = True
            keep &= ~near
        rows = rows[keep]
    return h, q, grad, int(n_eval.sum()), absorbed


def _unique(points: np.ndarray, order: np.ndarray, tol: float) -> np.ndarray:
    """Greedy de-duplication: walk ``order`` (lowest q first), keep a point unless a kept point
    lies within Euclidean distance ``tol``. Returns kept indices. Greedy selection is
    sequential by nature; each step is one vector comparison against the precomputed distances."""
    if len(order) == 0:
        return order
    p = torch.as_tensor(points[order], dtype=torch.float64)
    close = (torch.cdist(p, p) <= tol).numpy()
    removed = np.zeros(len(order), bool)
    kept = []
    for i in range(len(order)):
        if not removed[i]:
            kept.append(i)
            removed |= close[i]
    return order[np.asarray(kept, dtype=int)]


def _bounds(dynamics: Any, bounds: tuple[Any, Any] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low [N], high [N])`` float64 from ``bounds``, else the model's ``state_bounds()``, else
    unbounded."""
    if bounds is None:
        declared = getattr(getattr(dynamics, "__self__", dynamics), "state_bounds", None)
        bounds = declared() if callable(declared) else (-np.inf, np.inf)
    low, high = (np.broadcast_to(np.asarray(_to_numpy(b), dtype=np.float64), (n,)).copy() for b in bounds)
    if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
        raise ValueError("state_bounds must be (low, high) with low <= high and no NaN")
    return low, high


def _to_numpy(x: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a NumPy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def decompose(jacobians: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition of ``[K, N, N]`` Jacobians (float64): ``(eigenvalues [K, N],
    right [K, N, N] columns, left [K, N, N] rows = R^{-1})``, sorted by ``|lambda|`` descending."""
    if len(jacobians) == 0:
        k, n = jacobians.shape[:2] if jacobians.ndim == 3 else (0, 0)
        return (np.zeros((0, n), complex), np.zeros((0, n, n), complex), np.zeros((0, n, n), complex))
    vals, right = torch.linalg.eig(torch.as_tensor(jacobians, dtype=torch.float64))
    order = torch.argsort(-vals.abs(), dim=-1, stable=True)
    vals = torch.take_along_dim(vals, order, -1)
    right = torch.take_along_dim(right, order[:, None, :], -1)
    vals, right = vals.numpy(), right.numpy()
    # L = R^{-1}. NumPy's LAPACK, not torch's: torch 2.13's batched LU on CPU returns invalid
    # pivots for N >= 256 when it runs on more than one thread. A defective Jacobian (e.g.
    # saturated units with repeated eigenvalues) has a singular eigenbasis; its left vectors come
    # from the pseudo-inverse.
    try:
        left = np.linalg.inv(right)
    except np.linalg.LinAlgError:
        left = np.linalg.pinv(right)
    return vals.astype(np.complex128), right.astype(np.complex128), left.astype(np.complex128)


# ============================================================================ the finder


def find_fixed_points(
    dynamics: Any,
    seeds: torch.Tensor | np.ndarray,
    inputs: torch.Tensor | np.ndarray | None = None,
    *,
    adam_iters: int = 50,
    adam_lr: float = 1e-2,
    adam_q: float = 1e-7,
    lm_iters: int = 40,
    lm_damping: float = 1e-6,
    patience: int = 3,
    max_jacobians: int | None = None,
    q_tol: float = 1e-12,
    q_fixed: float = 1e-10,
    q_keep: float | None = None,
    tol_unique: float = 1e-3,
    tol_relative: bool = True,
    outlier_scale: float = 10.0,
    state_bounds: tuple[Any, Any] | None = None,
    compute_jacobians: bool = True,
    merge_before_polish: bool = True,
    max_rows: int = 1 << 13,
) -> FixedPoints:
    """Find the fixed points of ``h = F(h, x)`` from ``seeds [S, N]`` at constant input ``x``.

    ``dynamics``: a :class:`~zoo.analysis.protocols.RecurrentDynamics` model (its ``step``) or a
    callable ``F(h [B, N], x [B, I]) -> [B, N]``. ``inputs``: ``[I]`` (one input for all seeds) or
    ``[S, I]``; default zeros of ``dynamics.input_size``. ``q_tol``: the polish's target;
    ``q_fixed``: a point with ``q < q_fixed`` counts as a fixed point, else a slow point;
    ``q_keep``: drop unique points with ``q >= q_keep`` from the result (default keep all
    finite points; their seeds stay in the per-seed arrays). ``tol_unique``: de-duplication
    distance, in units of the seeds' median distance from their centroid (``params["state_scale"]``;
    ``tol_relative=False``: an absolute distance); the distance used is ``params["tol_unique_abs"]``.
    ``outlier_scale``: points farther than this many median seed radii from the
    seeds' centroid are outliers. ``state_bounds``: ``(low [N], high [N])``, the box the model's
    states can reach (default: ``dynamics.state_bounds()`` where the model declares it; infinite
    entries for unbounded coordinates); a point outside it (by more than 1e-5) is ``unreachable``.
    Non-finite seeds and diverging points get a per-seed status.
    ``merge_before_polish``: after the Adam phase, seeds within ``tol_unique`` of a lower-q seed
    skip the (costly) polish and are marked ``duplicate`` with their Adam-phase q.
    ``max_jacobians``: Jacobian evaluations allowed per point in the polish (after that it takes
    chord steps with its last one); default unlimited with closed-form Jacobians, 6 with
    autodiff ones (each costs ``N`` backward passes). ``lm_damping``: the polish's initial damping,
    relative to the largest diagonal entry of ``J_r^T J_r`` (small: near-Gauss-Newton steps that
    converge fast but may travel far along near-neutral directions; larger: shorter, more local
    steps). ``patience``: accepted polish steps without progress before a point is declared slow.
    ``max_rows``: autodiff Jacobians are built ``max_rows // N`` points at a time. During the
    polish a point that comes within ``tol_unique`` of an already converged point stops there as
    its duplicate.
    """
    step, input_size = _as_step(dynamics)
    started = time.perf_counter()
    if max_jacobians is None:  # closed-form Jacobians are cheap; autodiff ones cost N backward passes
        max_jacobians = lm_iters + 1 if has_closed_form_jacobian(dynamics) else 6
    for name, value, least in (("adam_iters", adam_iters, 0), ("lm_iters", lm_iters, 0),
                               ("max_jacobians", max_jacobians, 1), ("patience", patience, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    for name, value in (("adam_lr", adam_lr), ("lm_damping", lm_damping), ("q_tol", q_tol), ("q_fixed", q_fixed),
                        ("tol_unique", tol_unique), ("outlier_scale", outlier_scale)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    seeds = torch.as_tensor(seeds)
    dtype = _dtype_of(dynamics, seeds.dtype if seeds.is_floating_point() else torch.get_default_dtype())
    seeds = seeds.to(dtype)
    if seeds.ndim != 2 or seeds.shape[0] == 0:
        raise ValueError(f"seeds must be [S, N] with S >= 1, got shape {tuple(seeds.shape)}")
    n_seeds, n = seeds.shape
    state_size = getattr(dynamics, "state_size", None)
    if state_size is not None and n != state_size:
        raise ValueError(f"seeds have {n} columns but the model's state_size is {state_size}")
    low, high = _bounds(dynamics, state_bounds, n)
    if inputs is None:
        if input_size is None:
            raise ValueError("give `inputs` ([I] or [S, I]) when dynamics is a plain callable")
        inputs = torch.zeros(input_size, dtype=dtype)
    x = torch.as_tensor(inputs).to(dtype)
    if x.ndim == 1:
        x = x.expand(n_seeds, -1)
    if x.ndim != 2 or x.shape[0] != n_seeds:
        raise ValueError(f"inputs must be [I] or [S={n_seeds}, I], got shape {tuple(x.shape)}")
    if input_size is not None and x.shape[1] != input_size:
        raise ValueError(f"inputs have {x.shape[1]} columns but the model's input_size is {input_size}")
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or inf")
    x = x.contiguous()

    status = np.full(n_seeds, _SLOW, dtype=np.int64)
    finite_seed = torch.isfinite(seeds).all(-1)
    # the seeds' scale: their median distance from their centroid (a single seed, or identical
    # ones, have none: then tolerances are absolute)
    seeds_np = seeds[finite_seed].numpy().astype(np.float64)
    centre = seeds_np.mean(0) if len(seeds_np) else np.zeros(n)
    radius = float(np.median(np.linalg.norm(seeds_np - centre, axis=1))) if len(seeds_np) else 0.0
    tol_abs = tol_unique * radius if tol_relative and radius > 0 else tol_unique
    status[~finite_seed.numpy()] = _NAN_SEED
    good = finite_seed.nonzero().flatten()
    final = torch.full_like(seeds, float("nan"))
    seed_q = torch.full((n_seeds,), float("nan"), dtype=dtype)
    seed_grad = torch.full((n_seeds,), float("nan"), dtype=dtype)
    seed_time = torch.full((n_seeds,), float("nan"), dtype=torch.float64)
    timings = {}

    if len(good):
        t0 = time.perf_counter()
        h, diverged = _adam_phase(step, seeds[good], x[good], int(adam_iters), adam_lr, adam_q)
        timings["adam_s"] = time.perf_counter() - t0
        ok = ~diverged & torch.isfinite(h).all(-1)
        status[good[~ok].numpy()] = _DIVERGED
        polish, h_ok = good[ok], h[ok]
        if merge_before_polish and len(polish) > 1:
            # seeds that Adam brought within tol_unique of a better one would polish to the same
            # point: keep the representative only (the others are "duplicate", with their Adam q)
            q_adam = _speed(step, h_ok, x[polish])
            order = np.argsort(np.nan_to_num(q_adam.numpy(), nan=np.inf), kind="stable")
            reps = np.sort(_unique(h_ok.numpy(), order, tol_abs))
            dup = np.setdiff1d(np.arange(len(polish)), reps)
            status[polish[dup].numpy()] = _DUPLICATE
            final[polish[dup]], seed_q[polish[dup]] = h_ok[dup], q_adam[dup]
            polish, h_ok = polish[reps], h_ok[reps]
        t0 = time.perf_counter()
        chunk = max(1, (1 << 26) // (n * n))  # bounds the two [chunk, N, N] stacks (J_r, J_r^T J_r: 512 MB of float32)
        timings["lm_jacobian_evaluations"] = 0
        if lm_iters == 0 and len(polish):  # first-order only: report q and |grad q| where Adam stopped
            final[polish], seed_q[polish], seed_grad[polish] = h_ok, *_residual_and_grad(step, h_ok, x[polish])[1:]
            chunk = len(polish)  # nothing left for the loop below
            polish = polish[:0]
        for start in range(0, len(polish), chunk):
            sl = slice(start, start + chunk)
            reached = torch.full((len(h_ok[sl]),), float("nan"), dtype=torch.float64)
            h_p, q_p, g_p, n_jac, absorbed = _lm_polish(dynamics, h_ok[sl], x[polish[sl]], int(lm_iters), q_tol,
                                                        max_rows, absorb_tol=tol_abs, patience=int(patience),
                                                        mu_init=lm_damping,
                                                        max_jacobians=max_jacobians,
                                                        clock=(started, q_fixed, reached))
            seed_time[polish[sl]] = reached
            timings["lm_jacobian_evaluations"] += n_jac
            final[polish[sl]], seed_q[polish[sl]], seed_grad[polish[sl]] = h_p, q_p, g_p
            status[polish[sl][absorbed].numpy()] = _DUPLICATE
        timings["lm_s"] = time.perf_counter() - t0
        final[good[~ok]] = h[~ok]
        bad = ~torch.isfinite(seed_q) & finite_seed
        bad[good[~ok]] = True
        status[bad.numpy()] = _DIVERGED

    final_np, q_np = final.numpy().astype(np.float64), seed_q.numpy().astype(np.float64)
    live = status == _SLOW
    status[live & (q_np < q_fixed)] = _FIXED
    # Outliers: far from the cloud of seeds (in units of the seeds' median radius; a single seed,
    # or identical ones, make no cloud and no outliers).
    if len(seeds_np) and radius > 0:
        far = np.linalg.norm(np.nan_to_num(final_np) - centre, axis=1) > outlier_scale * radius
        status[live & far] = _OUTLIER
    slack = 1e-5  # float rounding at a saturated bound (tanh(x) == 1.0 in float32)
    outside = ((final_np < low - slack) | (final_np > high + slack)).any(1)
    status[np.isin(status, (_FIXED, _SLOW)) & outside] = _UNREACHABLE
    candidates = np.flatnonzero(np.isin(status, (_FIXED, _SLOW)))
    if q_keep is not None:
        candidates = candidates[q_np[candidates] < q_keep]
    candidates = candidates[np.argsort(q_np[candidates], kind="stable")]
    kept = _unique(final_np, candidates, tol_abs)
    status[np.setdiff1d(candidates, kept)] = _DUPLICATE

    jac = np.zeros((len(kept), 0, 0))  # filled by linearise() below
    vals, right, left = np.zeros((len(kept), 0), complex), np.zeros((len(kept), 0, 0), complex), np.zeros((len(kept), 0, 0), complex)
    timings["total_s"] = time.perf_counter() - started
    params = dict(adam_iters=adam_iters, adam_lr=adam_lr, adam_q=adam_q, lm_iters=lm_iters,
                  lm_damping=lm_damping, max_jacobians=max_jacobians, patience=patience, q_tol=q_tol,
                  q_fixed=q_fixed, q_keep=q_keep, tol_unique=tol_unique, tol_relative=tol_relative,
                  tol_unique_abs=tol_abs, state_scale=radius, bounded=bool(np.isfinite(low).any() or np.isfinite(high).any()),
                  outlier_scale=outlier_scale,
                  convention=CONVENTION, **timings)
    result = FixedPoints(
        points=final_np[kept], q=q_np[kept], grad_norm=seed_grad.numpy().astype(np.float64)[kept],
        seed_index=kept.astype(np.int64), jacobians=jac, eigenvalues=vals, right_eigenvectors=right,
        left_eigenvectors=left, input=x[0].numpy().astype(np.float64), seed_q=q_np,
        seed_grad_norm=seed_grad.numpy().astype(np.float64), seed_status=status, final_states=final_np,
        params=params, seed_time_s=seed_time.numpy(),
    )
    if compute_jacobians and len(kept):
        t0 = time.perf_counter()
        result = linearise(dynamics, result, max_rows)
        result.params["decompose_s"] = time.perf_counter() - t0
        result.params["total_s"] = time.perf_counter() - started
    return result


def linearise(dynamics: Any, fp: FixedPoints, max_rows: int = 1 << 13) -> FixedPoints:
    """``fp`` with ``jacobians``, eigenvalues and left/right eigenvectors computed at its points
    (at its constant input). Use it on a :meth:`FixedPoints.subset` when only some points are
    needed: the eigendecomposition costs O(N^3) per point."""
    dtype = _dtype_of(dynamics, torch.float64)  # plain callables get the stored float64 points
    h = torch.as_tensor(fp.points).to(dtype)
    x = torch.as_tensor(fp.input).to(dtype).expand(len(h), -1).contiguous()
    jac = state_jacobians(dynamics, h, x, max_rows).numpy().astype(np.float64)
    vals, right, left = decompose(jac)
    values = {f.name: getattr(fp, f.name) for f in fields(fp)}
    values.update(jacobians=jac, eigenvalues=vals, right_eigenvectors=right, left_eigenvectors=left,
                  params=dict(fp.params))
    return FixedPoints(**values)


# ============================================================================ seeds from task data


def visited_seeds(model: Any, task: Any, n_seeds: int, *, noise: float = 0.0, split: str = "test",
                  batch_size: int = 64, max_batches: int = 20, seed: int = 0) -> torch.Tensor:
    """``[min(n_seeds, M), N]`` distinct states drawn uniformly from the ``M`` the model visits on
    ``task``'s ``split`` (all of them when fewer than ``n_seeds``), plus isotropic Gaussian noise of
    standard deviation ``noise``."""
    states = []
    total = 0
    with torch.no_grad():
        for i, batch in enumerate(task.dataloader(split, batch_size)):
            if i >= max_batches or total >= 20 * n_seeds:
                break
            s = model.visited_states(batch).detach()
            states.append(s)
            total += len(s)
    if not states:
        raise ValueError(f"task {getattr(task, 'name', task)!r} gave no {split} batches")
    states = torch.cat(states)
    g = torch.Generator().manual_seed(seed)
    out = states[torch.randperm(len(states), generator=g)[:n_seeds]]
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=g, dtype=out.dtype)
    return out


@register_analysis("fixed-points", protocol=RecurrentDynamics, version="3", quick_params={"n_seeds": 32}, cost=10)
def fixed_points_analysis(model, task, *, n_seeds: int = 1000, noise: float = 0.0, q_keep: float = 1e-8,
                          q_tol: float = 1e-12, lm_damping: float = 1e-6, tol_unique: float = 1e-3, seed: int = 0,
                          split: str = "test") -> AnalysisResult:
    """Fixed points at zero input from visited states: counts, q, and the spectra's top modes.

    Points with ``q < q_keep = 1e-8`` are kept (Maheswaranathan et al. 2019). By default the
    polish converges to exact zeros (``q < q_tol = 1e-12``), which on a discrete attractor (the
    flip-flop's 8 words) gives each point once. On an approximate line attractor the exact zeros
    are few; ``q_tol=1e-9, lm_damping=1e-3`` (damped, local steps; what the ``line-attractors``
    report uses) stops points where they reach the slow valley and maps the line instead.
    For state sizes above 1024 (e.g. a
    4096-unit path-integration RNN) the second-order polish and the spectra are skipped and at
    most 256 seeds are used (Adam phase only). Summary: seeds per status, unique points with
    ``q < q_keep``, the median over points of the top three ``|lambda|`` and the top mode's time
    constant (steps), the fraction of stable points; ``tol_unique`` is relative to the seeds' scale
    (the absolute distance is in the summary), and the points' connected sets (``n_sets``,
    ``n_distinct_fixed``, the largest set's size, extent and first-PC fraction) give counts that do
    not depend on it.
    """
    big = model.state_size > 1024
    if big:  # an N x N Jacobian per point (and its O(N^3) solve) is out of reach: Adam only, no spectra
        n_seeds = min(n_seeds, 256)
    seeds = visited_seeds(model, task, n_seeds, noise=noise, split=split, seed=seed)
    n_seeds = len(seeds)  # the seeds actually used (fewer when the task visits fewer states)
    fp = find_fixed_points(model, seeds, q_keep=None if big else q_keep, tol_unique=tol_unique, q_tol=q_tol,
                           lm_damping=lm_damping,
                           lm_iters=0 if big else 40, compute_jacobians=not big)
    summary: dict[str, Any] = {"convention": CONVENTION, "n_seeds": n_seeds, "n_unique": fp.n_unique,
                               "method": "adam only (N > 1024)" if big else "adam + levenberg-marquardt",
                               "n_unique_fixed": int(fp.is_fixed.sum())}
    summary.update({f"seeds_{k}": v for k, v in fp.status_counts().items()})
    summary.update(state_scale=fp.params["state_scale"], tol_unique_abs=fp.params["tol_unique_abs"])
    if fp.n_unique:
        summary.update(fp.connected_sets().summary())
    if fp.n_unique and not big:
        mod = np.abs(fp.eigenvalues[:, :3])
        summary.update({
            "median_q": float(np.median(fp.q)), "max_q": float(fp.q.max()),
            "median_abs_lambda1": float(np.median(mod[:, 0])),
            "median_abs_lambda2": float(np.median(mod[:, 1])) if mod.shape[1] > 1 else float("nan"),
            "median_abs_lambda3": float(np.median(mod[:, 2])) if mod.shape[1] > 2 else float("nan"),
            "median_tau1_steps": float(np.median(fp.time_constants[:, 0])),
            "fraction_stable": float(fp.stable.mean()), "n_stable": int(fp.stable.sum()),
        })
    summary["time_s"] = float(fp.params.get("total_s", float("nan")))
    arrays = {"points": fp.points, "q": fp.q, "grad_norm": fp.grad_norm, "eigenvalues": fp.eigenvalues,
              "seed_status": fp.seed_status, "seed_q": fp.seed_q}
    return AnalysisResult(summary=summary, arrays=arrays)
