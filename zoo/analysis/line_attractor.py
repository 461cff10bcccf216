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

from dataclasses import dataclass

import numpy as np
import torch

from .fixed_points import FixedPoints


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


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
