"""High-dimensional linear inference (Advani & Ganguli, NeurIPS 2016 / PRX 2016; PAPERS.md §5).

Each problem is ``y = X s0 + eps`` with ``X`` of size ``N x P``, i.i.d. ``N(0, 1/P)`` entries,
``N = round(alpha P)``; ``s0_i`` i.i.d. from the signal prior (``laplace``, ``gaussian`` or
``sparse`` Bernoulli-Gaussian with non-zero fraction ``rho``) of variance ``signal_var``;
``eps_mu`` i.i.d. from the noise law (``gaussian`` or ``laplace``) of variance ``noise_var``.
The data is generated, as in the paper (there is nothing to record). A batch is ``B``
independent problems, ``(X [B, N, P], y [B, N], s0 [B, P])`` in float64, so estimators solve
them all at once; the metric is the per-component squared error ``|s_hat - s0|^2 / P``
averaged over the batch (``mse``). Batch ``i`` of split ``k`` comes from
``torch.Generator().manual_seed(...)`` of ``(seed, split, i)``: deterministic given ``seed``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from zoo.analysis.state_evolution import Law

from .base import GeneratedBatches, Task

PRIORS = ("laplace", "gaussian", "sparse")
NOISES = ("gaussian", "laplace")
_SPLITS = {"train": 0, "val": 1, "test": 2}


class LinearInference(Task):
    name = "linear-inference"
    trainable = False

    def __init__(self, seed: int = 0, prior: str = "laplace", noise: str = "gaussian", alpha: float = 1.0, P: int = 500,
                 signal_var: float = 1.0, noise_var: float = 1.0, rho: float = 0.1, batches_per_epoch: int = 4):
        super().__init__(seed)
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose from {', '.join(PRIORS)}")
        if noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}; choose from {', '.join(NOISES)}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha = N/P must be positive and finite, got {alpha!r}")
        if not (isinstance(P, int) and P >= 1):
            raise ValueError(f"P must be a positive integer, got {P!r}")
        self.signal = Law(prior, signal_var, rho)  # validates the variance and rho
        self.noise_law = Law(noise, noise_var, rho)
        self.prior, self.noise, self.alpha, self.P = prior, noise, float(alpha), P
        self.N = max(1, round(self.alpha * P))
        self.signal_var, self.noise_var, self.rho = float(signal_var), float(noise_var), float(rho)
        self.batches_per_epoch = int(batches_per_epoch)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "source": "generated (as in the paper)", "seed": self.seed,
                "problem": "y = X s0 + eps, X_ij ~ N(0, 1/P)", "prior": self.prior, "noise": self.noise,
                "alpha": self.alpha, "P": self.P, "N": self.N, "signal_var": self.signal_var,
                "noise_var": self.noise_var, **({"rho": self.rho} if self.prior == "sparse" else {})}

    def sample(self, batch_size: int, generator: torch.Generator, P: int | None = None) -> tuple[torch.Tensor, ...]:
        """``batch_size`` independent problems ``(X [B, N, P], y [B, N], s0 [B, P])`` from ``generator``."""
        P = P or self.P
        N = max(1, round(self.alpha * P))
        s0 = self.signal.sample((batch_size, P), generator)
        X = torch.randn(batch_size, N, P, generator=generator, dtype=torch.float64) / math.sqrt(P)
        eps = self.noise_law.sample((batch_size, N), generator)
        y = torch.einsum("bnp,bp->bn", X, s0) + eps
        return X, y, s0

    def problems(self, batch_size: int, index: int = 0, split: str = "test", P: int | None = None) -> tuple[torch.Tensor, ...]:
        """Batch ``index`` of ``split``: the same numbers for the same ``(seed, split, index)``."""
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(_SPLITS)}")
        g = torch.Generator().manual_seed((self.seed * 3 + _SPLITS[split]) * 1_000_003 + index)
        return self.sample(batch_size, g, P)

    def dataloader(self, split: str, batch_size: int):
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(_SPLITS)}")
        seed = self.seed * 3 + _SPLITS[split]
        return GeneratedBatches(lambda g, _: self.sample(batch_size, g), self.batches_per_epoch, seed).loader()

    def example_batch(self, batch_size: int = 4, model: torch.nn.Module | None = None):
        return self.problems(batch_size, 0, "val")

    def forward(self, model: torch.nn.Module, batch) -> torch.Tensor:
        X, y = batch[0], batch[1]
        return model(X, y)

    @staticmethod
    def mse(s_hat: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        """Per-component squared error of each problem, ``[B]``."""
        if s_hat.shape != s0.shape:
            raise ValueError(f"estimate {tuple(s_hat.shape)} and signal {tuple(s0.shape)} differ in shape")
        return ((s_hat - s0) ** 2).mean(-1)

    def loss(self, model, batch):
        with torch.no_grad():
            err = self.mse(self.forward(model, batch), batch[2]).mean()
        return err, {"mse": err}
