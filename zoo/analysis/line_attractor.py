"""Line-attractor geometry of a recurrent network (Maheswaranathan et al., NeurIPS 2019).

The paper's picture of a sentiment RNN: visited states lie in a low-dimensional subspace (top
2-3 principal components explain ~90% of the variance); the fixed points form an approximately
one-dimensional manifold aligned with the readout; at each fixed point the linearisation has one
eigenvalue near 1 whose right eigenvector ``r_1`` is tangent to the manifold; and each word ``w``
moves the state along the line by its *push*

    push(w) = l_1 . (J_x e_w)                                   (left eigenvector l_1, l_1 . r_1 = 1)

with ``e_w`` the word's embedding and ``J_x = dF/dx`` at the fixed point. Signs here are fixed
so that ``r_1`` points towards the positive readout (a positive push moves the state towards
the positive class); ``r_1`` is unit-norm, so a push is a displacement along ``r_1``.

    >>> pca = principal_components(states); pca.explained_variance_ratio[:3].sum()
    >>> line = fit_line(fp.points, readout_direction(model.readout_weights()))
    >>> line.length, abs(cosine(line.direction, readout))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .fixed_points import FixedPoints, _dtype_of, find_fixed_points, linearise
from .fixed_points import _to_numpy as _np
from .protocols import ReadoutDynamics
from .registry import AnalysisResult, register_analysis


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between vectors ``a`` and ``b`` (real parts)."""
    a, b = np.real(_np(a)).ravel(), np.real(_np(b)).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        raise ValueError("cosine of a zero vector is undefined")
    return float(a @ b / denom)


@dataclass
class PCA:
    """``mean [N]``, ``components [D, N]`` (rows, by variance), ``explained_variance_ratio [D]``."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    def project(self, x: np.ndarray, k: int = 2) -> np.ndarray:
        """Coordinates of ``x [M, N]`` on the top ``k`` components, ``[M, k]``."""
        return (_np(x) - self.mean) @ self.components[:k].T


def principal_components(states) -> PCA:
    """PCA of ``states [M, N]`` (M >= 2) via the eigendecomposition of their covariance."""
    x = _np(states).astype(np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"states must be [M >= 2, N], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("states contain NaN or inf")
    mean = x.mean(0)
    centred = torch.from_numpy(x - mean)
    cov = centred.T @ centred / (len(x) - 1)  # torch BLAS: respects torch.set_num_threads
    vals, vecs = torch.linalg.eigh(cov)
    vals, vecs = vals.numpy()[::-1].clip(0, None), vecs.numpy()[:, ::-1]
    total = vals.sum()
    return PCA(mean, vecs.T, vals / total if total > 0 else np.zeros_like(vals))


def readout_direction(weights) -> np.ndarray:
    """Unit vector of the readout: ``w`` for one logit, ``w_1 - w_0`` for two, else the top
    right singular vector of ``W [C, N]``."""
    w = _np(weights).astype(np.float64)
    if w.ndim != 2:
        raise ValueError(f"readout weights must be [C, N], got shape {w.shape}")
    d = w[0] if len(w) == 1 else (w[1] - w[0] if len(w) == 2 else np.linalg.svd(w)[2][0])
    norm = np.linalg.norm(d)
    if norm == 0:
        raise ValueError("the readout is zero")
    return d / norm


@dataclass
class LineFit:
    """One-dimensional fit of a point cloud (the fixed-point manifold).

    ``centre [N]``, ``direction [N]`` (unit; the cloud's first principal axis, oriented towards the
    readout if one was given), ``coords [K]`` (position of each point along it),
    ``length`` (extent of ``coords``), ``arc_length`` (length of the piecewise-linear principal
    curve from the extreme point at one end, through the means of the occupied ones of ``n_bins``
    bins along the axis, to the other end), ``fraction_variance`` (variance on the axis / total:
    1 for a straight line), ``curve [<= n_bins + 2, N]``.
    """

    centre: np.ndarray
    direction: np.ndarray
    coords: np.ndarray
    length: float
    arc_length: float
    fraction_variance: float
    curve: np.ndarray


def fit_line(points, readout: np.ndarray | None = None, n_bins: int = 20) -> LineFit:
    """Fit a line (and a binned principal curve) to ``points [K, N]`` (K >= 2)."""
    p = _np(points).astype(np.float64)
    if p.ndim != 2 or len(p) < 2:
        raise ValueError(f"need points [K >= 2, N] to fit a line, got shape {p.shape}")
    pca = principal_components(p)
    u = pca.components[0]
    if readout is not None and u @ readout < 0:
        u = -u
    coords = (p - pca.mean) @ u
    lo, hi = coords.min(), coords.max()
    # principal curve: the two extreme points and, between them, the mean point of each occupied
    # bin along the axis, joined in order (so a straight line's arc length is its length)
    bins = np.clip(((coords - lo) / max(hi - lo, 1e-12) * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    sums = np.zeros((n_bins, p.shape[1]))
    np.add.at(sums, bins, p)
    curve = np.concatenate([p[[coords.argmin()]], sums[counts > 0] / counts[counts > 0, None], p[[coords.argmax()]]])
    arc = float(np.linalg.norm(np.diff(curve, axis=0), axis=1).sum())
    return LineFit(pca.mean, u, coords, float(hi - lo), arc, float(pca.explained_variance_ratio[0]), curve)


def local_tangents(points, direction: np.ndarray | None = None, k: int = 8) -> np.ndarray:
    """Unit tangent at each of ``points [K, N]``: the top principal axis of its ``k`` nearest
    neighbours (itself included), oriented along ``direction`` if given. ``[K, N]``."""
    p = torch.as_tensor(_np(points), dtype=torch.float64)
    if p.ndim != 2 or len(p) < 2:
        raise ValueError(f"need points [K >= 2, N], got shape {tuple(p.shape)}")
    k = int(min(max(k, 2), len(p)))
    nbrs = torch.cdist(p, p).topk(k, largest=False).indices  # [K, k]
    local = p[nbrs] - p[nbrs].mean(1, keepdim=True)  # [K, k, N]
    tangent = torch.linalg.svd(local, full_matrices=False).Vh[:, 0].numpy()  # [K, N]
    if direction is not None:
        tangent = tangent * np.where(tangent @ direction < 0, -1.0, 1.0)[:, None]
    return tangent


def eigenvector_alignment(fp: FixedPoints, tangents: np.ndarray) -> np.ndarray:
    """``|cos|`` between each point's top right eigenvector (real part) and its tangent, ``[K]``."""
    r1 = np.real(fp.right_eigenvectors[:, :, 0])
    r1 = r1 / np.linalg.norm(r1, axis=1, keepdims=True).clip(1e-300)
    t = tangents / np.linalg.norm(tangents, axis=1, keepdims=True).clip(1e-300)
    return np.abs((r1 * t).sum(1))


def word_pushes(fp: FixedPoints, input_jacobians, embeddings, readout: np.ndarray) -> np.ndarray:
    """Push of every word along the line, averaged over fixed points: ``[V]``.

    ``input_jacobians [K, N, E]`` (``dF/dx`` at each fixed point), ``embeddings [V, E]``,
    ``readout [N]`` (unit readout direction, fixes the sign). Per point ``k``:
    ``push_k(w) = s_k Re(l_1k . J_x,k e_w)`` with ``s_k = sign(Re(r_1k) . readout)``.
    """
    jx = _np(input_jacobians).astype(np.float64)
    emb = _np(embeddings).astype(np.float64)
    if jx.ndim != 3 or jx.shape[0] != fp.n_unique or jx.shape[1] != fp.state_size:
        raise ValueError(f"input_jacobians must be [K={fp.n_unique}, N={fp.state_size}, E], got {jx.shape}")
    if emb.ndim != 2 or emb.shape[1] != jx.shape[2]:
        raise ValueError(f"embeddings must be [V, E={jx.shape[2]}], got {emb.shape}")
    l1 = fp.left_eigenvectors[:, 0, :]  # [K, N]
    sign = np.where(np.real(fp.right_eigenvectors[:, :, 0]) @ readout < 0, -1.0, 1.0)  # [K]
    along = np.real(np.einsum("kn,kne->ke", l1, jx)) * sign[:, None]  # [K, E]
    return (emb @ along.T).mean(1)


def ranked_words(pushes: np.ndarray, vocab: list[str], n: int = 20, skip: tuple[str, ...] = ("<pad>", "<unk>"),
                 ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """``(most positive, most negative)`` ``n`` words by push, as ``(word, push)`` pairs."""
    pushes = _np(pushes)
    if len(pushes) != len(vocab):
        raise ValueError(f"{len(pushes)} pushes for a vocabulary of {len(vocab)} words")
    order = np.argsort(pushes)
    keep = np.array([vocab[i] not in skip for i in order])
    order = order[keep]
    top = [(vocab[i], float(pushes[i])) for i in order[::-1][:n]]
    bottom = [(vocab[i], float(pushes[i])) for i in order[:n]]
    return top, bottom


# ---------------------------------------------------------------------------------------------
# the analysis: the paper's whole picture on any recurrent network with a linear readout
# ---------------------------------------------------------------------------------------------

_QUICK = {"n_seeds": 32, "n_state_sequences": 8, "n_error_sequences": 4, "n_class_sequences": 16, "max_linearised": 20}


def _slow_subspace(points: np.ndarray, readout: np.ndarray, k: int) -> dict[str, Any]:
    """How many dimensions the slow points span, and how much of the readout lies in their top ``k``
    principal axes: ``slow_dims_90`` (PCs for 90% of their variance), ``slow_var_pc1..3``, and
    ``readout_in_slow_pcs``: the fraction of the readout's class contrasts (``w_c - mean_c w``, or
    ``w`` for one logit) in the span of the top ``k`` axes (1 for a readout inside it)."""
    pca = principal_components(points)
    cum = np.cumsum(pca.explained_variance_ratio)
    contrasts = readout if len(readout) == 1 else readout - readout.mean(0)
    inside = contrasts @ pca.components[:k].T
    out = {"slow_dims_90": int(np.searchsorted(cum, 0.9) + 1),
           "readout_in_slow_pcs": float((inside**2).sum() / max((contrasts**2).sum(), 1e-300))}
    out.update({f"slow_var_pc{i + 1}": float(cum[i]) for i in range(min(3, len(cum)))})
    return out


def _spread_batches(task: Any, split: str, n_sequences: int, batch_size: int) -> list[Any]:
    """Batches holding about ``n_sequences`` sequences, spread evenly over ``split`` (a length-sorted
    evaluation order would otherwise give only the shortest sequences)."""
    loader = task.dataloader(split, batch_size)
    n_batches = len(loader)
    if n_batches == 0:
        raise ValueError(f"task {getattr(task, 'name', task)!r} gave no {split} batches")
    want = min(n_batches, max(1, -(-n_sequences // batch_size)))
    pick = set(np.linspace(0, n_batches - 1, want + 2)[1:-1].round().astype(int).tolist())  # interior quantiles
    return [batch for i, batch in enumerate(loader) if i in pick]


def _sequences(model: Any, batches: list[Any], limit: int):
    """``(inputs, lengths, labels)`` of at most ``limit`` sequences, via ``model.input_sequences``."""
    got = 0
    for batch in batches:
        x, lengths, labels = model.input_sequences(batch)
        take = min(len(x), limit - got)
        if take <= 0:
            return
        lengths = None if lengths is None else lengths[:take]
        width = int(lengths.max()) if lengths is not None and take else x.shape[1]
        yield x[:take, :width], lengths, None if labels is None else labels[:take]
        got += take


VERSION = "4"  # 3: r1_line_alignment (the paper's test, with its chance level) and n_slow_modes;
               # 4: tau_i from the median |lambda_i| (was the median of per-point tau_i); all settings recorded


@register_analysis("line-attractor", protocol=ReadoutDynamics, version=VERSION, quick_params=_QUICK, cost=20)
def line_attractor(model, task, *, n_seeds: int = 1000, n_state_sequences: int = 128, n_error_sequences: int = 32,
                   n_class_sequences: int = 512, q_fixed: float = 1e-8, max_linearised: int = 200,
                   adam_iters: int = 200, lm_iters: int = 40, q_tol: float = 1e-9, lm_damping: float = 1e-3,
                   tol_unique: float = 1e-3, seed: int = 0, split: str = "test", batch_size: int = 64) -> AnalysisResult:
    """Maheswaranathan et al. (2019)'s picture of a recurrent network with a linear readout.

    From the states visited on ``n_state_sequences`` sequences of ``split`` (spread over the split):
    variance in the top 1-3 principal components; slow and fixed points at zero input from
    ``n_seeds`` of those states (q = (1/N)||F(h, 0) - h||^2, kept when ``q < q_fixed``; points outside
    the model's ``state_bounds()`` are not counted; ``tol_unique`` is relative to the seeds' scale;
    the slow points' connected sets, with the largest one's size, extent and first-PC fraction,
    give a count that does not depend on that tolerance; the finder's
    settings are this analysis's parameters: by default the paper's mode, damped local steps that
    stop at ``q < q_tol = 1e-9``, which maps a line attractor rather than sliding onto its few exact
    zeros); the line through them (fraction of their variance on its axis, |cos| with the readout);
    at each point (at most ``max_linearised``) the top three |lambda| and time constants
    ``-1/ln|lambda|`` (steps), the top right eigenvector's |cos| with the local tangent, and the
    number of stable points; each input's push along the line (``input_vocabulary``); the one-step
    error of the linearisation around the nearest point on ``n_error_sequences`` sequences
    (``||h_lin - h_{t+1}|| / ||h_{t+1}||``, the paper's convention; ``one_step_update_error`` divides by
    the true one-step change instead); and
    the linearised system's readout over ``n_class_sequences`` whole sequences beside the network's
    (accuracy where sequences have labels, agreement always). For any number of classes ``C``: how
    many principal axes the slow points span (``slow_dims_90``) and the fraction of the readout's
    class contrasts inside their top ``C - 1`` axes (``readout_in_slow_pcs``; Aitken et al. 2020).
    """
    from .linearization import LinearisedSystem, linearised_classifier, one_step_error

    started = time.perf_counter()
    settings = dict(n_seeds=n_seeds, n_state_sequences=n_state_sequences, n_error_sequences=n_error_sequences,
                    n_class_sequences=n_class_sequences, q_fixed=q_fixed, max_linearised=max_linearised,
                    adam_iters=adam_iters, lm_iters=lm_iters, q_tol=q_tol, lm_damping=lm_damping,
                    tol_unique=tol_unique, seed=seed, split=split, batch_size=batch_size)
    tensors = list(model.parameters()) if hasattr(model, "parameters") else []
    trainable = [w.requires_grad for w in tensors]
    for w in tensors:  # no graphs through the weights while finding points; restored on the way out
        w.requires_grad_(False)
    try:
        with torch.no_grad():
            states = torch.cat([model.visited_states(b) for b in
                                _spread_batches(task, split, n_state_sequences, batch_size)]).double()
        pca = principal_components(states)
        g = torch.Generator().manual_seed(seed)
        seeds = states[torch.randperm(len(states), generator=g)[:n_seeds]]
        fp = find_fixed_points(model, seeds.to(_dtype_of(model, torch.float32)), compute_jacobians=False, adam_iters=adam_iters,
                               lm_iters=lm_iters, q_tol=q_tol, lm_damping=lm_damping, tol_unique=tol_unique)
        slow = fp.q < q_fixed
        summary: dict[str, Any] = {
            "settings": json.dumps(settings), "convention": "q = (1/N)||F(h, 0) - h||^2",
            "n_visited_states": len(states), "n_seeds": len(seeds),
            "var_pc1": float(pca.explained_variance_ratio[0]), "var_pc2": float(pca.explained_variance_ratio[:2].sum()),
            "var_pc3": float(pca.explained_variance_ratio[:3].sum()),
            "n_unique": fp.n_unique, "n_slow_points": int(slow.sum()),
            "seeds_unreachable": fp.status_counts()["unreachable"],
            "state_scale": fp.params["state_scale"], "tol_unique_abs": fp.params["tol_unique_abs"],
        }
        if slow.any():  # the count that does not depend on a tolerance: connected sets of slow points
            sets = fp.subset(slow).connected_sets()
            summary.update({"n_slow_sets": sets.n_sets, "n_distinct_fixed": sets.n_distinct_fixed,
                            "largest_slow_set": int(sets.sizes[0]), "largest_slow_set_extent": float(sets.extents[0]),
                            "largest_slow_set_pc1": float(sets.pc1_fractions[0]), "link_abs": sets.link})
        weights = model.readout_weights().detach().double().cpu().numpy()
        summary["n_classes"] = max(2, len(weights))
        if slow.sum() >= 3:  # the attractor's dimension (Aitken et al. 2020: N - 1 for N unordered classes)
            summary.update(_slow_subspace(fp.points[slow], weights, summary["n_classes"] - 1))
        use = fp.subset(slow) if slow.sum() >= 3 else fp
        summary["geometry_from"] = f"points with q < {q_fixed:g}" if slow.sum() >= 3 else "all unique points (few have q < q_fixed)"
        if use.n_unique > max_linearised:  # spectra cost O(N^3) per point: a random subset
            keep = np.sort(np.random.default_rng(seed).choice(use.n_unique, max_linearised, replace=False))
            use = use.subset(keep)
            summary["geometry_from"] += f" (random {max_linearised})"
        use = linearise(model, use)
        readout = readout_direction(weights)
        arrays: dict[str, np.ndarray] = {
            "states_pc": pca.project(states[torch.randperm(len(states), generator=g)[:4000]]),
            "points_pc": pca.project(fp.points), "points_slow": slow,
            "readout_pc": pca.components[:2] @ readout, "eigenvalues": use.eigenvalues,
        }
        if use.n_unique:
            mod = np.median(np.abs(use.eigenvalues[:, :3]), axis=0)
            summary.update({f"abs_lambda{i + 1}": float(m) for i, m in enumerate(mod)})
            # tau_i = -1/ln(median |lambda_i|) (tokens; negative: a growing mode), so tau and |lambda| agree
            with np.errstate(divide="ignore"):
                summary.update({f"tau{i + 1}": float(-1.0 / np.log(m)) if m != 1 else float("inf") for i, m in enumerate(mod)})
            summary["n_stable"] = int(use.stable.sum())
            # modes slower than 100 tokens at each point (paper: one near 1, the next few ~100 tokens)
            summary["n_slow_modes"] = float(np.median((np.abs(use.eigenvalues) > np.exp(-1 / 100)).sum(1)))
        if use.n_unique >= 2:
            line = fit_line(use.points, readout)
            summary.update({"pc1_fraction": line.fraction_variance, "cos_line_readout": abs(cosine(line.direction, readout)),
                            "line_length": line.length, "line_arc_length": line.arc_length})
            summary["tangent_alignment"] = float(eigenvector_alignment(use, local_tangents(use.points, line.direction)).mean())
            # the paper's quantitative test: r1 against the manifold's main direction, beside the mean
            # abs(cos) of two random unit vectors in N dimensions, sqrt(2 / (pi N)) for large N
            summary["r1_line_alignment"] = float(eigenvector_alignment(use, np.broadcast_to(line.direction, use.points.shape)).mean())
            summary["r1_chance"] = float(np.sqrt(2 / (np.pi * use.state_size)))
        if use.n_unique:
            system = LinearisedSystem(model, use)
            if hasattr(model, "input_vocabulary"):
                names, vectors = model.input_vocabulary()
                push = word_pushes(use, system.J_x, vectors.detach(), readout)
                top, bottom = ranked_words(push, list(names), n=min(10, len(names) // 2))
                summary.update({"top_positive": ", ".join(w for w, _ in top), "top_negative": ", ".join(w for w, _ in bottom)})
                arrays["pushes"] = push
            error_batches = _spread_batches(task, split, n_error_sequences, min(batch_size, 16))
            errs = [one_step_error(model, use, x.to(system.points.dtype), lengths, system=system)
                    for x, lengths, _ in _sequences(model, error_batches, n_error_sequences)]
            weights = np.array([e["n_transitions"] for e in errs], float)
            summary["one_step_error"] = float(np.median(np.concatenate([e["state_errors"] for e in errs])))
            summary["one_step_update_error"] = float(np.median(np.concatenate([e["update_errors"] for e in errs])))
            summary["one_step_deviation_error"] = float(np.average([e["median_deviation_error"] for e in errs], weights=weights))
            class_batches = _spread_batches(task, split, n_class_sequences, batch_size)
            summary.update(linearised_classifier(model, use, _sequences(model, class_batches, n_class_sequences), system=system))
        summary["time_s"] = time.perf_counter() - started
        return AnalysisResult(summary=summary, arrays=arrays)
    finally:
        for w, flag in zip(tensors, trainable):
            w.requires_grad_(flag)


CARD_KEYS = ("n_slow_points", "pc1_fraction", "abs_lambda1", "tangent_alignment", "cos_line_readout", "one_step_error",
             "linearised_accuracy", "network_accuracy", "n_seeds", "n_slow_sets", "largest_slow_set",
             "largest_slow_set_extent", "state_scale", "tau1", "abs_lambda2", "n_slow_modes", "r1_line_alignment",
             "r1_chance", "var_pc3", "seeds_unreachable")


def card_metrics(model, task, **params) -> dict[str, Any]:
    """The line-attractor numbers a sentiment model's card carries (``metrics.line_attractor``):
    :func:`line_attractor` at its defaults (or ``params``), the keys of ``CARD_KEYS`` that it
    reports, and the settings that produced them (``settings``, with the analysis's version)."""
    result = line_attractor(model, task, **params)
    out = {k: result.summary[k] for k in CARD_KEYS if k in result.summary}
    out["settings"] = {**json.loads(result.summary["settings"]), "analysis": "line-attractor", "version": VERSION}
    return out
