"""The protocols through which analyses see models. Analyses never import a task or a model class.

* :class:`RecurrentDynamics`: a discrete-time system ``h_{t+1} = F(h_t, x_t)`` on flat states.
* :class:`LayeredMap`: a feed-forward chain of maps from one layer's activity to the next.
* :class:`SpatialMaps`: a stack of 2-D maps with their physical extent.
* :class:`ReadoutDynamics`: recurrent dynamics with a linear readout of the state (the line-attractor
  analysis), and the sequences it reads.
* :class:`StimulusResponse`: neurons driven by a stimulus movie (held-out response prediction).

Every recurrent model is also a layered map: :func:`unrolled_in_time` gives the maps
``f_t(h) = F(h, x*)`` at a fixed input, so the manifold and mean-field analyses run on RNNs too.

A model provides a protocol by having the attributes below (checked with ``isinstance`` on
these ``runtime_checkable`` protocols, so no inheritance is needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class RecurrentDynamics(Protocol):
    """``step(h [B, N], x [B, I]) -> h_next [B, N]``, reproducing the model's forward pass exactly.

    An LSTM's state is ``[h, c]`` joined (N = 2 * hidden). ``visited_states(batch)`` runs the
    model on a task batch and returns the states it visited, ``[M, N]`` (padding excluded).

    Optional: ``state_jacobian(h, x) -> [B, N, N]`` and ``input_jacobian(h, x) -> [B, N, I]``,
    the Jacobians of ``step`` in closed form. Analyses use them when present (O(N^2) per point
    for the zoo's cells, against O(N^3) for autodiff) and fall back to ``torch.func`` otherwise.
    ``state_bounds() -> (low [N], high [N])``: the box that holds every state the model can reach
    from its initial state (``inf`` where a coordinate is unbounded), e.g. ``(-1, 1)`` for a GRU's
    units; the fixed-point finder marks points outside it ``unreachable`` instead of counting them.
    """

    state_size: int
    input_size: int

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    def visited_states(self, batch: Any) -> torch.Tensor: ...


@runtime_checkable
class ReadoutDynamics(RecurrentDynamics, Protocol):
    """:class:`RecurrentDynamics` whose output is linear in the state, ``z = W h + b``:
    ``readout_weights() -> W [K, N]``, ``readout_bias() -> b [K]``, ``initial_state(B) -> [B, N]``, and
    ``input_sequences(batch) -> (inputs [B, T, I], lengths [B] or None, labels [B] or None)``: what
    the network reads on a task batch (labels: the class of each whole sequence, where there is one).

    Optional: ``input_vocabulary() -> (names [V], vectors [V, I])``, the discrete inputs the network
    reads (words' embeddings, the flip-flop's pulses), whose push along the line is reported.
    """

    def readout_weights(self) -> torch.Tensor: ...

    def readout_bias(self) -> torch.Tensor: ...

    def initial_state(self, batch_size: int) -> torch.Tensor: ...

    def input_sequences(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]: ...


@runtime_checkable
class LayeredMap(Protocol):
    """``layer_maps()`` returns maps ``f_l`` with ``h^l = f_l(h^{l-1})``, ``h^0`` the input.

    Each map takes and returns tensors with the batch first (``[B, ...]``); analyses flatten
    the trailing dimensions. ``input_shape`` is the shape of one input, without the batch.
    """

    input_shape: tuple[int, ...]

    def layer_maps(self) -> Sequence[Callable[[torch.Tensor], torch.Tensor]]: ...


@runtime_checkable
class StimulusResponse(Protocol):
    """A model of ``n_cells`` neurons driven by a stimulus movie: ``input_shape = (lags, H, W)`` (frames
    of history, pixels) and ``forward_blocks(stimulus [B, lags - 1 + T, H, W], history=None) -> rates
    [B, n_cells, T]`` (expected spike counts per bin for each of the last ``T`` frames). A model with
    spike history takes the past counts as ``history``; without them it runs its stimulus pathway."""

    n_cells: int
    input_shape: tuple[int, ...]

    def forward_blocks(self, stimulus: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass
class MapStack:
    """A stack of 2-D maps: ``maps [U, H, W]`` over ``extent = (xmin, xmax, ymin, ymax)`` in ``units``."""

    maps: torch.Tensor
    extent: tuple[float, float, float, float]
    units: str = "m"


@runtime_checkable
class SpatialMaps(Protocol):
    """``spatial_maps(**options) -> MapStack`` (ratemaps of units, receptive fields, filters)."""

    def spatial_maps(self, **options: Any) -> MapStack: ...


class UnrolledInTime(torch.nn.Module):
    """A :class:`RecurrentDynamics` model seen as a :class:`LayeredMap`: ``n_steps`` layers
    ``f_t(h) = step(h, x*)`` at the constant input ``x*`` (zero: the network between inputs), so
    the length, curvature and correlation maps of Poole et al. describe how the trained dynamics
    stretch or contract a manifold of states per step: ordered, critical or chaotic."""

    def __init__(self, dynamics: Any, n_steps: int = 20, x: torch.Tensor | None = None):
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        self.dynamics, self.n_steps, self.x = dynamics, int(n_steps), x  # a submodule: casting casts it
        self.input_shape = (int(dynamics.state_size),)
        self.zoo_name = getattr(dynamics, "zoo_name", type(dynamics).__name__)

    def layer_maps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        def f(h: torch.Tensor) -> torch.Tensor:
            x = self.x if self.x is not None else h.new_zeros(h.shape[0], self.dynamics.input_size)
            return self.dynamics.step(h, x.to(h.dtype).expand(h.shape[0], -1))

        return [f] * self.n_steps


def as_layered_map(model: Any, n_steps: int = 20) -> Any:
    """``model`` itself if it is a :class:`LayeredMap`, else its unrolling in time if it is a
    :class:`RecurrentDynamics`, else ``None``."""
    if isinstance(model, LayeredMap):
        return model
    if isinstance(model, RecurrentDynamics):
        return UnrolledInTime(model, n_steps)
    return None


def provides(model: Any, protocol: type) -> bool:
    """Whether ``model`` offers ``protocol`` (attributes present, nothing called). A recurrent model
    offers :class:`LayeredMap` through :func:`as_layered_map`."""
    if protocol is LayeredMap:
        return isinstance(model, (LayeredMap, RecurrentDynamics))
    return isinstance(model, protocol)
