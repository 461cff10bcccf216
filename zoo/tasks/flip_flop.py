"""The 3-bit flip-flop task (Sussillo & Barak 2013), the standard test bed for fixed-point finders.

Each of ``n_bits`` input channels carries sparse pulses of +1 or -1; the matching output must hold
the sign of that channel's most recent pulse until the next one. A network that solves it has
``2**n_bits`` stable fixed points (one per memory state, 8 for 3 bits) with saddles between them.

Trials: ``inputs [B, T, n_bits]``, ``targets [B, T, n_bits]`` in {-1, +1}. At ``t = 0`` every
channel gets a pulse (so the target is defined from the first step); afterwards each channel
pulses with probability ``p_pulse`` per step, sign +-1 with equal odds. Data are generated from
``torch.Generator`` seeded by ``(seed, split, batch index)``: deterministic given ``seed``.
Loss: mean squared error of ``model(inputs) [B, T, n_bits]`` against the targets; metric
``accuracy``: fraction of (trial, step, bit) whose output has the target's sign.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from .base import GeneratedBatches, Task

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


class FlipFlop(Task):
    name = "flip-flop"

    def __init__(self, seed: int = 0, n_bits: int = 3, n_time: int = 100, p_pulse: float = 0.05,
                 batches_per_epoch: int = 100, eval_batches: int = 4):
        super().__init__(seed)
        if n_bits < 1 or n_time < 1:
            raise ValueError(f"n_bits and n_time must be positive, got {n_bits}, {n_time}")
        if not 0.0 <= p_pulse <= 1.0:
            raise ValueError(f"p_pulse is a probability, got {p_pulse}")
        self.n_bits, self.n_time, self.p_pulse = int(n_bits), int(n_time), float(p_pulse)
        self.batches_per_epoch, self.eval_batches = int(batches_per_epoch), int(eval_batches)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "source": "generated (Sussillo & Barak 2013)", "n_bits": self.n_bits,
                "n_time": self.n_time, "p_pulse": self.p_pulse, "seed": self.seed}

    def model_kwargs(self) -> dict[str, Any]:
        return {"n_bits": self.n_bits}

    def make_trials(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``[batch_size, n_time, n_bits]``."""
        shape = (batch_size, self.n_time, self.n_bits)
        pulse = torch.rand(shape, generator=generator) < self.p_pulse
        pulse[:, 0] = True
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        inputs = pulse * sign
        # target = sign of the latest pulse: index of the last pulse so far, per channel
        steps = torch.arange(self.n_time).view(1, -1, 1).expand(shape)
        last = torch.where(pulse, steps, torch.zeros_like(steps)).cummax(dim=1).values
        targets = torch.gather(inputs, 1, last)
        return inputs, targets

    def dataloader(self, split: str, batch_size: int) -> DataLoader:
        if split not in _SPLIT_OFFSET:
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        n = self.batches_per_epoch if split == "train" else self.eval_batches
        seed = self.seed * 10 + _SPLIT_OFFSET[split] + (0 if split == "train" else 1_000_000)
        batches = GeneratedBatches(lambda g, _: self.make_trials(batch_size, g), n, seed)
        if split != "train":  # evaluation splits: the same batches every time
            return DataLoader(batches, batch_size=None, shuffle=False)
        return batches.loader()

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, targets = batch
        out = model(inputs)
        if out.shape != targets.shape:
            raise ValueError(f"model output {tuple(out.shape)} does not match targets {tuple(targets.shape)}")
        loss = (out - targets).pow(2).mean()
        accuracy = (torch.sign(out) == targets).float().mean()
        return loss, {"accuracy": accuracy.detach()}
