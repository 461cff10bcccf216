"""Closed-form Jacobians of the recurrent cells in the zoo (vanilla tanh/ReLU, GRU, UGRNN, LSTM),
and the GRU update that two model families share.

Every cell here is an elementwise function of a few affine "gate" pre-activations
``a_k = W_k x + U_k h + b_k``, so its Jacobians are sums of row-scaled weight matrices,

    dF/dh = diag(d) + sum_k diag(c_k) U_k          dF/dx = sum_k diag(c_k) W_k

with per-unit coefficients ``c_k [B, N]`` and diagonal ``d [B, N]`` from the forward pass. That
costs O(N^2) per point, against O(N^3) for ``N`` reverse-mode passes of autodiff
(``torch.func.vmap(jacrev)``), which is what makes second-order fixed-point search affordable.
The models call these from their ``state_jacobian`` / ``input_jacobian`` methods (optional parts
of :class:`~zoo.analysis.protocols.RecurrentDynamics`); the zoo-wide tests check each one against
autodiff.

Weights follow PyTorch's layout: gate blocks stacked along rows, ``W [k*H, I]``, ``U [k*H, H]``,
in PyTorch's gate order (GRU ``r, z, n``; LSTM ``i, f, g, o``; UGRNN ``c, g``).
Shapes: ``h [B, N]``, ``x [B, I]``; results ``[B, N, N]`` (state) or ``[B, N, I]`` (input).
"""

from __future__ import annotations

import torch


def _scaled_sum(coefficients: list[torch.Tensor], blocks: list[torch.Tensor],
                diagonal: torch.Tensor | None = None) -> torch.Tensor:
    """``diag(d) + sum_k diag(c_k) M_k``: ``c_k [B, H]``, ``M_k [H, M]`` -> ``[B, H, M]``."""
    out = coefficients[0][:, :, None] * blocks[0]
    for c, m in zip(coefficients[1:], blocks[1:]):
        out.addcmul_(c[:, :, None], m)
    if diagonal is not None:
        out.diagonal(dim1=1, dim2=2).add_(diagonal)
    return out


def tanh_jacobian(h_next: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``F = tanh(W x + U h + b)``: ``dF/d(h or x) = diag(1 - F^2) M`` with ``M = U`` or ``W``."""
    return _scaled_sum([1 - h_next.pow(2)], [matrix])


def relu_jacobian(pre: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``F = relu(pre)``: ``dF/d(h or x) = diag(pre > 0) M`` (the subgradient 0 at ``pre = 0``, as autograd)."""
    return _scaled_sum([(pre > 0).to(matrix.dtype)], [matrix])


def gru_update(h: torch.Tensor, gi: torch.Tensor, gh: torch.Tensor) -> torch.Tensor:
    """One GRU update in PyTorch's convention from ``gi = W x + b_ih``, ``gh = U h + b_hh`` (``[B, 3H]``)::

        r = s(i_r + h_r),  z = s(i_z + h_z),  n = tanh(i_n + r h_n),  h' = (1 - z) n + z h
    """
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def gru_jacobian(h: torch.Tensor, gi: torch.Tensor, gh: torch.Tensor, matrix: torch.Tensor,
                 wrt_state: bool) -> torch.Tensor:
    """Jacobian of :func:`gru_update` (``s`` the logistic function).

    ``matrix`` is ``U [3H, H]`` (``wrt_state``) or ``W [3H, I]``::

        dh'/dh = diag(z) + diag((h - n) z (1 - z)) U_z
                 + diag((1 - z)(1 - n^2) r) U_n + diag((1 - z)(1 - n^2) h_n r (1 - r)) U_r
    """
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    m_r, m_z, m_n = matrix.chunk(3, 0)
    dn = (1 - z) * (1 - n * n)
    coefficients = [(h - n) * z * (1 - z), dn * h_n * r * (1 - r)]
    blocks = [m_z, m_r]
    if wrt_state:  # n = tanh(i_n + r * (U_n h + b_hn)): U_n enters scaled by r
        return _scaled_sum(coefficients + [dn * r], blocks + [m_n], diagonal=z)
    return _scaled_sum(coefficients + [dn], blocks + [m_n])  # i_n = W_n x + b_in is not gated


def ugrnn_jacobian(h: torch.Tensor, pre: torch.Tensor, matrix: torch.Tensor, wrt_state: bool) -> torch.Tensor:
    """UGRNN ``h' = g h + (1 - g) tanh(c)`` with ``[c; g]`` pre-activations ``pre [B, 2H]``
    (``g = s(pre_g)``); ``matrix`` is ``U [2H, H]`` or ``W [2H, I]``::

        dh'/dh = diag(g) + diag((h - tanh c) g (1 - g)) U_g + diag((1 - g)(1 - tanh^2 c)) U_c
    """
    c, g = pre.chunk(2, -1)
    gate, cand = torch.sigmoid(g), torch.tanh(c)
    m_c, m_g = matrix.chunk(2, 0)
    coefficients = [(h - cand) * gate * (1 - gate), (1 - gate) * (1 - cand * cand)]
    return _scaled_sum(coefficients, [m_g, m_c], diagonal=gate if wrt_state else None)


def lstm_jacobian(c: torch.Tensor, pre: torch.Tensor, matrix: torch.Tensor, wrt_state: bool) -> torch.Tensor:
    """LSTM on the joined state ``[h, c]`` (``N = 2H``), pre-activations ``pre [B, 4H]`` in
    PyTorch's order ``i, f, g, o``; ``c' = s(f) c + s(i) tanh(g)``, ``h' = s(o) tanh(c')``.

    ``matrix`` is ``U [4H, H]`` (acting on ``h`` only) or ``W [4H, I]``. With ``dc'/da`` the
    Jacobian of ``c'`` through the gates and ``k = s(o)(1 - tanh^2 c')``::

        d[h'; c']/d[h; c] = [[diag(tanh c' s'(o)) U_o + diag(k) dc'/dh,  diag(k s(f))],
                             [dc'/dh,                                     diag(s(f))  ]]
    """
    i, f, g, o = pre.chunk(4, -1)
    si, sf, tg, so = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_next = sf * c + si * tg
    tc = torch.tanh(c_next)
    k = so * (1 - tc * tc)
    m_i, m_f, m_g, m_o = matrix.chunk(4, 0)
    dc = _scaled_sum([c * sf * (1 - sf), tg * si * (1 - si), si * (1 - tg * tg)], [m_f, m_i, m_g])  # [B, H, M]
    dh = k[:, :, None] * dc
    dh.addcmul_((tc * so * (1 - so))[:, :, None], m_o)
    if not wrt_state:
        return torch.cat([dh, dc], dim=1)  # [B, 2H, I]
    top = torch.cat([dh, torch.diag_embed(k * sf)], dim=2)
    bottom = torch.cat([dc, torch.diag_embed(sf)], dim=2)
    return torch.cat([top, bottom], dim=1)  # [B, 2H, 2H]
