"""The protocols through which analyses see models. Analyses never import a task or a model class.

* :class:`RecurrentDynamics`: a discrete-time system ``h_{t+1} = F(h_t, x_t)`` on flat states.
* :class:`LayeredMap`: a feed-forward chain of maps from one layer's activity to the next.
* :class:`SpatialMaps`: a stack of 2-D maps with their physical extent.

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
    """

    state_size: int
    input_size: int

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    def visited_states(self, batch: Any) -> torch.Tensor: ...


@runtime_checkable
class LayeredMap(Protocol):
    """``layer_maps()`` returns maps ``f_l`` with ``h^l = f_l(h^{l-1})``, ``h^0`` the input.

    Each map takes and returns tensors with the batch first (``[B, ...]``); analyses flatten
    the trailing dimensions. ``input_shape`` is the shape of one input, without the batch.
    """

    input_shape: tuple[int, ...]

    def layer_maps(self) -> Sequence[Callable[[torch.Tensor], torch.Tensor]]: ...


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


def provides(model: Any, protocol: type) -> bool:
    """Whether ``model`` offers ``protocol`` (attributes present, nothing called)."""
    return isinstance(model, protocol)
