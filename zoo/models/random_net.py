"""Fully connected random deep networks at initialisation (Poole et al., NeurIPS 2016).

    h^1 = W^1 x + b^1,    h^l = W^l phi(h^{l-1}) + b^l   (l = 2..L),
    W^l_ij ~ N(0, sigma_w2 / N_{l-1}),   b^l_i ~ N(0, sigma_b2).

The seed is the checkpoint: every parameter is drawn from ``torch.Generator().manual_seed(seed)``
in a fixed order, so the same name, config and seed give bit-identical weights.
Provides the :class:`~zoo.analysis.protocols.LayeredMap` protocol (maps between pre-activations).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..registry import register

NONLINEARITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "erf": torch.erf,
    "hard-tanh": lambda h: h.clamp(-1.0, 1.0),
    "linear": lambda h: h,
}


class RandomNet(nn.Module):
    """A depth-``depth`` stack of ``width``-unit random layers; ``forward(x [B, input_size]) -> h^L [B, width]``."""

    def __init__(self, nonlinearity: str, width: int, depth: int, sigma_w2: float, sigma_b2: float,
                 seed: int, input_size: int | None = None):
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose from {', '.join(NONLINEARITIES)}")
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
        if sigma_w2 < 0 or sigma_b2 < 0:
            raise ValueError("sigma_w2 and sigma_b2 are variances and must be non-negative")
        self.nonlinearity, self.phi = nonlinearity, NONLINEARITIES[nonlinearity]
        self.width, self.depth, self.sigma_w2, self.sigma_b2 = width, depth, sigma_w2, sigma_b2
        self.input_size = input_size or width
        self.input_shape = (self.input_size,)
        g = torch.Generator().manual_seed(seed)
        first = torch.randn(width, self.input_size, generator=g) * math.sqrt(sigma_w2 / self.input_size)
        rest = torch.randn(depth - 1, width, width, generator=g) * math.sqrt(sigma_w2 / width)
        self.weight_in = nn.Parameter(first, requires_grad=False)
        self.weights = nn.Parameter(rest, requires_grad=False)
        self.biases = nn.Parameter(torch.randn(depth, width, generator=g) * math.sqrt(sigma_b2), requires_grad=False)

    def layer_maps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """``[f_1, ..., f_L]``, ``f_1(x) = W^1 x + b^1``, ``f_l(h) = W^l phi(h) + b^l``; on ``[B, width]``."""
        maps = [lambda x: x @ self.weight_in.T + self.biases[0]]
        for l in range(1, self.depth):
            maps.append(lambda h, l=l: self.phi(h) @ self.weights[l - 1].T + self.biases[l])
        return maps

    def forward(self, x: torch.Tensor, return_all: bool = False) -> torch.Tensor:
        """Pre-activations of the last layer ``[B, width]``, or of every layer ``[L, B, width]``."""
        if x.shape[-1] != self.input_size:
            raise ValueError(f"expected inputs [..., {self.input_size}], got {tuple(x.shape)}")
        layers = []
        h = x
        for f in self.layer_maps():
            h = f(h)
            layers.append(h)
        return torch.stack(layers) if return_all else h


def _register(nonlinearity: str, sigma_w2: float, sigma_b2: float, note: str) -> None:
    def builder(width: int = 1000, depth: int = 20, sigma_w2: float = sigma_w2, sigma_b2: float = sigma_b2,
                seed: int = 0, input_size: int | None = None) -> RandomNet:
        return RandomNet(nonlinearity, width, depth, sigma_w2, sigma_b2, seed, input_size)

    builder.__name__ = f"random_net_{nonlinearity.replace('-', '_')}"
    register(
        f"random-net/{nonlinearity}", task="random-net", weights="seed", paper="poole2016",
        description=f"Random fully connected {nonlinearity} network, W ~ N(0, sigma_w2/N), b ~ N(0, sigma_b2); {note}.",
    )(builder)


_register("tanh", 16.0, 0.09, "defaults sigma_w = 4, sigma_b = 0.3: the paper's chaotic case")
_register("erf", 16.0, 0.09, "erf has closed-form mean-field integrals; defaults as tanh")
_register("hard-tanh", 16.0, 0.09, "piecewise-linear tanh; defaults as tanh")
_register("relu", 2.0, 0.0, "defaults at the ReLU critical point sigma_w2 = 2, sigma_b2 = 0")
_register("linear", 1.0, 0.0, "a deep linear network, critical at sigma_w2 = 1")
