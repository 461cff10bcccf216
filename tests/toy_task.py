"""A tiny trainable task and models for testing the training harness (not part of the zoo)."""

import torch
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo import tasks
from zoo.tasks.base import EpochShuffle, Task


class ToyRegression(Task):
    """y = A x + 0.1 noise, x ~ N(0, I_4), y in R^2; 256 train, 64 val, 64 test samples."""

    name = "toy-regression"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        g = torch.Generator().manual_seed(1234)  # the data are fixed; `seed` orders the batches
        self.A = torch.randn(2, 4, generator=g)
        x = torch.randn(384, 4, generator=g)
        self.data = {"train": x[:256], "val": x[256:320], "test": x[320:]}
        self.noise = {k: 0.1 * torch.randn(len(v), 2, generator=g) for k, v in self.data.items()}

    def dataloader(self, split, batch_size):
        x = self.data[split]
        ds = TensorDataset(x, x @ self.A.T + self.noise[split])
        return DataLoader(ds, batch_size=batch_size, sampler=EpochShuffle(len(ds), self.seed, shuffle=split == "train"))

    def loss(self, model, batch):
        x, y = batch
        mse = torch.mean((model(x) - y) ** 2)
        return mse, {"mse": mse.detach()}


tasks.register_task("toy-regression", "toy_task:ToyRegression")


class Interrupt(torch.nn.Module):
    """Raises KeyboardInterrupt (as Ctrl-C would) on its ``at``-th training forward pass."""

    calls = 0
    at = 10**9

    def forward(self, x):
        if self.training:
            Interrupt.calls += 1
            if Interrupt.calls == Interrupt.at:
                raise KeyboardInterrupt
        return x


def register_toy_entry(name="toy-regression/linear"):
    if name in zoo.list_models():
        return name
    recipe = {"batch_size": 32, "lr": 0.05, "max_epochs": 2}
    if name == "toy-regression/linear":
        @zoo.register(name, task="toy-regression", recipe=recipe, paper="none", description="Linear map for harness tests.")
        def toy_linear(in_features: int = 4, out_features: int = 2):
            return torch.nn.Linear(in_features, out_features)
    elif name == "toy-regression/dropout":
        @zoo.register(name, task="toy-regression", recipe={**recipe, "lr": 0.01}, paper="none",
                      description="MLP with dropout: its random state must survive a resume.")
        def toy_dropout(hidden: int = 16, p: float = 0.3):
            return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Dropout(p), Interrupt(),
                                       torch.nn.Linear(hidden, 2))
    else:
        raise KeyError(name)
    return name
