"""Linearised dynamics around fixed points (Maheswaranathan et al. 2019, section 5).

Near a fixed point ``h*`` of ``F(., x*)`` the update is, to first order,

    F(h, x) ~= h* + J_h (h - h*) + J_x (x - x*),     J_h = dF/dh (h*, x*) [N, N],  J_x = dF/dx [N, I]

This module evaluates both Jacobians at any points, measures how well the linearisation around
the *nearest* fixed point predicts the next state on the states a network actually visits, and
runs the whole linearised system over input sequences (the "linearised classifier": at each
step, move with the linear map of the fixed point nearest to the current linearised state).

Relative errors (per visited transition ``h_t -> h_{t+1}``, prediction ``p``):

* ``update``: ``||p - h_{t+1}|| / ||h_{t+1} - h_t||`` (error relative to the true one-step change);
* ``deviation``: ``||p - h_{t+1}|| / ||h_{t+1} - h*||`` (relative to the distance from the
  fixed point being linearised about).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from .fixed_points import FixedPoints, _as_step, _dtype_of as _dtype, input_jacobians, state_jacobians


def jacobians_at(dynamics: Any, points: torch.Tensor | np.ndarray, inputs: torch.Tensor | np.ndarray,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J_h [K, N, N], J_x [K, N, I])`` of ``F`` at ``points [K, N]`` and ``inputs`` (``[I]`` or ``[K, I]``)."""
    h = torch.as_tensor(points)
    dtype = _dtype(dynamics, h.dtype if h.is_floating_point() else torch.get_default_dtype())
    h = h.to(dtype)
    x = torch.as_tensor(inputs).to(dtype)
    if h.ndim != 2:
        raise ValueError(f"points must be [K, N], got shape {tuple(h.shape)}")
    if x.ndim == 1:
        x = x.expand(len(h), -1)
    if x.ndim != 2 or len(x) != len(h):
        raise ValueError(f"inputs must be [I] or [K={len(h)}, I], got shape {tuple(x.shape)}")
    x = x.contiguous()
    return state_jacobians(dynamics, h, x), input_jacobians(dynamics, h, x)


class LinearisedSystem:
    """The piecewise-linear system made of every fixed point's linearisation.

    ``points [K, N]``, ``J_h [K, N, N]``, ``J_x [K, N, I]``, ``x_star [I]`` (the input the fixed
    points were found at). ``step(h [B, N], x [B, I])`` applies the map of the nearest point.
    """

    def __init__(self, dynamics: Any, fp: FixedPoints):
        if fp.n_unique == 0:
            raise ValueError("no fixed points to linearise around")
        dtype = _dtype(dynamics, torch.float64)
        self.points = torch.as_tensor(fp.points).to(dtype)
        self.x_star = torch.as_tensor(fp.input).to(dtype)
        stored = np.asarray(fp.jacobians)
        if stored.shape == (fp.n_unique, fp.state_size, fp.state_size) and np.isfinite(stored).all() and stored.any():
            x = self.x_star.expand(len(self.points), -1).contiguous()
            self.J_h = torch.as_tensor(stored).to(dtype)  # the finder's dF/dh at these points
            self.J_x = input_jacobians(dynamics, self.points, x)
        else:
            self.J_h, self.J_x = jacobians_at(dynamics, self.points, self.x_star)

    def nearest(self, h: torch.Tensor) -> torch.Tensor:
        """Index of the nearest fixed point for each row of ``h [B, N]`` -> ``[B]``."""
        return torch.cdist(h, self.points).argmin(-1)

    def step(self, h: torch.Tensor, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        """``h* + J_h (h - h*) + J_x (x - x*)`` with ``h*`` the nearest point (or ``points[k]``)."""
        k = self.nearest(h) if k is None else k
        dx = x - self.x_star
        out = torch.empty_like(h)
        # one matrix product per fixed point in use, over the rows nearest to it: a step touches a
        # few points, and gathering a [B, N, N] stack of Jacobians instead costs B N^2 memory traffic
        # (10-28x slower at N = 512, 0.8-2x at N = 128: benches/bench_linearised_step.py)
        used, which = torch.unique(k, return_inverse=True)
        order = torch.argsort(which, stable=True)
        start = 0
        for point, count in zip(used.tolist(), torch.bincount(which).tolist()):
            rows = order[start:start + count]
            start += count
            p = self.points[point]
            out[rows] = torch.addmm(p, h[rows] - p, self.J_h[point].T) + dx[rows] @ self.J_x[point].T
        return out


def one_step_error(dynamics: Any, fp: FixedPoints, inputs: torch.Tensor, lengths: torch.Tensor | None = None,
                   h0: torch.Tensor | None = None, chunk: int = 256,
                   system: LinearisedSystem | None = None) -> dict[str, Any]:
    """Relative error of the linearised one-step prediction on the visited transitions: relative to
    the true next state's norm (the paper's convention), to the true one-step change (update), and
    to the next state's distance from the fixed point used (deviation).

    ``inputs [B, T, I]`` (e.g. word embeddings), ``lengths [B]`` (default all ``T``), ``h0 [B, N]``
    (default ``dynamics.initial_state(B)`` or zeros). The true trajectory is run with
    ``dynamics.step``; each transition is predicted with the linearisation around the fixed
    point nearest to ``h_t``. Returns medians and means of both relative errors (module
    docstring) and the per-transition ``update`` errors.
    """
    step, _ = _as_step(dynamics)
    system = system or LinearisedSystem(dynamics, fp)
    b, t_max = inputs.shape[:2]
    lengths = torch.full((b,), t_max) if lengths is None else torch.as_tensor(lengths)
    h = _initial(dynamics, b, system.points) if h0 is None else h0
    before, after, xs = [], [], []
    with torch.no_grad():
        for t in range(t_max):
            nxt = step(h, inputs[:, t])
            valid = t < lengths
            before.append(h[valid]), after.append(nxt[valid]), xs.append(inputs[valid, t])
            h = torch.where(valid[:, None], nxt, h)
        h_t, h_next, x_t = torch.cat(before), torch.cat(after), torch.cat(xs)
        errs_update, errs_dev, errs_state = [], [], []
        for i in range(0, len(h_t), chunk):
            s = slice(i, i + chunk)
            k = system.nearest(h_t[s])
            pred = system.step(h_t[s], x_t[s], k)
            err = (pred - h_next[s]).norm(dim=-1)
            errs_update.append(err / (h_next[s] - h_t[s]).norm(dim=-1).clamp_min(1e-12))
            errs_dev.append(err / (h_next[s] - system.points[k]).norm(dim=-1).clamp_min(1e-12))
            errs_state.append(err / h_next[s].norm(dim=-1).clamp_min(1e-12))
    upd, dev, state = (torch.cat(e).numpy() for e in (errs_update, errs_dev, errs_state))
    return {"median_update_error": float(np.median(upd)), "mean_update_error": float(upd.mean()),
            "median_deviation_error": float(np.median(dev)), "mean_deviation_error": float(dev.mean()),
            "median_state_error": float(np.median(state)), "n_transitions": int(len(upd)),
            "update_errors": upd, "state_errors": state}


def _initial(dynamics: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
    if hasattr(dynamics, "initial_state"):
        return dynamics.initial_state(batch).to(like.dtype)
    return like.new_zeros(batch, like.shape[1])


def linearised_rollout(dynamics: Any, system: LinearisedSystem, inputs: torch.Tensor,
                       lengths: torch.Tensor | None = None, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Final states ``[B, N]`` of the linearised system run over ``inputs [B, T, I]``.

    At every step each sequence moves with the linear map of the fixed point nearest to its
    current (linearised) state; sequences stop at their ``lengths``.
    """
    b, t_max = inputs.shape[:2]
    lengths = torch.full((b,), t_max) if lengths is None else torch.as_tensor(lengths)
    h = _initial(dynamics, b, system.points) if h0 is None else h0
    with torch.no_grad():
        for t in range(t_max):
            valid = t < lengths
            if not bool(valid.any()):
                break
            h = torch.where(valid[:, None], system.step(h, inputs[:, t]), h)
    return h


def _classify(model: Any, states: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    w, b = model.readout_weights().detach().to(dtype), model.readout_bias().detach().to(dtype)
    logits = states.to(dtype) @ w.T + b
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(-1)


def linearised_classifier(model: Any, fp: FixedPoints, sequences: Iterable[Any], max_batches: int | None = None,
                          system: LinearisedSystem | None = None) -> dict[str, float]:
    """The linearised system's readout over whole sequences, beside the network's own.

    ``model`` needs ``step``, ``initial_state``, ``readout_weights() [C, N]`` and ``readout_bias() [C]``
    (one logit: class 1 iff > 0; else argmax); ``sequences`` yield ``(inputs [B, T, I], lengths [B] or
    None, labels [B] or None)``. Returns the fraction of sequences on which both read out the same
    class (``agreement``), and with labels each one's accuracy. ``system``: a prebuilt
    :class:`LinearisedSystem`.
    """
    system = system or LinearisedSystem(model, fp)
    step, _ = _as_step(model)
    correct_lin = correct_net = agree = total = labelled = 0
    with torch.no_grad():
        for i, (x, lengths, labels) in enumerate(sequences):
            if max_batches is not None and i >= max_batches:
                break
            x = x.to(system.points.dtype)
            lengths = torch.full((len(x),), x.shape[1]) if lengths is None else torch.as_tensor(lengths)
            lin = _classify(model, linearised_rollout(model, system, x, lengths), system.points.dtype)
            h = _initial(model, len(x), system.points)
            for t in range(x.shape[1]):
                h = torch.where((t < lengths)[:, None], step(h, x[:, t]), h)
            net = _classify(model, h, system.points.dtype)
            agree += int((lin == net).sum())
            total += len(x)
            if labels is not None:
                correct_lin += int((lin == labels).sum())
                correct_net += int((net == labels).sum())
                labelled += len(labels)
    if total == 0:
        raise ValueError("no sequences to classify")
    out = {"agreement": agree / total, "n_sequences": total}
    if labelled:
        out.update({"linearised_accuracy": correct_lin / labelled, "network_accuracy": correct_net / labelled})
    return out
