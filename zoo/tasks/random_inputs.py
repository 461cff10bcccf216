"""The "task" of the random-network family: Gaussian probe inputs, nothing to learn.

Random deep networks (Poole et al. 2016) are studied at initialisation. This task supplies
inputs ``x ~ N(0, q0 I)`` of the model's input size, so every entry can run forward on a batch
from its task; the manifold (great circle) inputs of the curvature analysis are made by the
analysis itself.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Task


class RandomInputs(Task):
    name = "random-net"
    trainable = False

    def __init__(self, seed: int = 0, q0: float = 1.0):
        super().__init__(seed)
        self.q0 = float(q0)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "source": "generated", "inputs": f"x ~ N(0, {self.q0} I)", "seed": self.seed}

    def example_batch(self, batch_size: int = 4, model: torch.nn.Module | None = None) -> tuple[torch.Tensor]:
        if model is None:
            raise ValueError("random-net inputs need the model (for its input_size)")
        g = torch.Generator().manual_seed(self.seed)
        return (torch.randn(batch_size, model.input_size, generator=g) * self.q0**0.5,)

    def loss(self, model, batch):
        raise NotImplementedError("random networks are studied at initialisation; there is nothing to train")
