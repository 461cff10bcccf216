"""The task interface every task module implements, and the samplers that make training resumable
and distributed.

Every sampler here draws its order from ``(seed, epoch)`` alone, so a run resumed from any
snapshot sees exactly the batches an uninterrupted run would have seen (:meth:`start_at`), and
under ``torch.distributed`` (Lightning's DDP) each rank takes a disjoint shard of the epoch
(:func:`shard`), so the same code trains on one process or many.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

T = TypeVar("T")
_FORCE_SINGLE_PROCESS = False


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running ``torch.distributed`` job, ``(0, 1)`` outside one."""
    if _FORCE_SINGLE_PROCESS or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Samplers see the whole data inside this block, even in a DDP job (rank 0's final evaluation)."""
    global _FORCE_SINGLE_PROCESS
    before, _FORCE_SINGLE_PROCESS = _FORCE_SINGLE_PROCESS, True
    try:
        yield
    finally:
        _FORCE_SINGLE_PROCESS = before


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: ``items[rank::world]`` after padding by wrap-around to a
    multiple of ``world``, so every rank gets ``ceil(len / world)`` items (as torch's
    ``DistributedSampler`` does) and DDP's collective calls stay in step."""
    items = list(items)
    if world == 1 or not items:
        return items
    padded = items + items[: (-len(items)) % world]
    return padded[rank::world]


def sharded_len(n: int) -> int:
    _, world = rank_and_world()
    return -(-n // world)


class ResumableOrder:
    """Mixin: ``set_epoch`` (called by Lightning at each epoch start) and ``start_at`` (a resume)."""

    epoch: int = 0
    _skip: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start_at(self, epoch: int, done: int) -> None:
        """The next iteration is epoch ``epoch`` without its first ``done`` items (already trained on)."""
        self.epoch, self._skip = int(epoch), int(done)

    def _this_rank(self, order: Sequence[T]) -> Iterator[T]:
        mine = shard(order, *rank_and_world())
        skip, self._skip = self._skip, 0  # a resume skips once
        return iter(mine[skip:])


class Task:
    """A task: data (read or generated), the loss and the metrics. Deterministic given ``seed``.

    Subclasses set ``name`` and implement :meth:`dataloader` and :meth:`loss`; the rest has
    defaults. Tasks never import Lightning: :func:`zoo.training.train` wraps the loaders.
    """

    name: str = ""
    trainable: bool = True

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    # -- data ------------------------------------------------------------------------------
    def dataloader(self, split: str, batch_size: int) -> DataLoader:
        """A loader over ``split`` ("train", "val" or "test"). The train loader's sampler
        must have ``set_epoch`` (see :class:`EpochShuffle`) so a resumed run sees the same data."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the data is and where it came from, for the model card."""
        return {"task": self.name, "seed": self.seed}

    def model_kwargs(self) -> dict[str, Any]:
        """Builder arguments only the data can give (a vocabulary, a number of cells)."""
        return {}

    def example_batch(self, batch_size: int = 4, model: torch.nn.Module | None = None) -> Any:
        """A small batch from the validation split, for smoke tests and shape checks."""
        return next(iter(self.dataloader("val", batch_size)))

    # -- model on data ---------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The model's output on a batch (the first element of the batch is the input)."""
        return model(batch[0])

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(scalar loss, {metric name: scalar})`` on one batch."""
        raise NotImplementedError

    def batch_size_of(self, batch: Any) -> int:
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "test", batch_size: int = 256,
                 max_batches: int | None = None) -> dict[str, float]:
        """Metrics averaged over ``split`` (each batch weighted by its size), including ``loss``."""
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(self.dataloader(split, batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            loss, metrics = self.loss(model, batch)
            n = self.batch_size_of(batch)
            for key, value in {"loss": loss, **metrics}.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
        model.train(was_training)
        return {k: v / max(count, 1) for k, v in totals.items()}


class EpochShuffle(ResumableOrder, Sampler[int]):
    """A sampler of ``range(n)`` whose order depends only on ``(seed, epoch)``; sharded under DDP.

    Lightning calls ``set_epoch`` at the start of each epoch; the training harness calls
    ``start_at`` on a resume, so a resumed run draws exactly the batches an uninterrupted run
    would have drawn, from an end-of-epoch or a mid-epoch snapshot alike.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return self._this_rank(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return self._this_rank(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return sharded_len(self.n)


class GeneratedBatches(Dataset):
    """Batches generated on the fly, batch ``i`` of epoch ``e`` from ``Generator(seed, e, i)``.

    For tasks whose data is sampled afresh every step (trajectories, stimuli). Use via
    :meth:`loader`; ``make_batch(generator, index)`` returns one whole batch, where ``index`` is
    the batch's number in the whole stream (``epoch * batches_per_epoch + i``: the training step
    on one device), for tasks whose batches follow a schedule (a curriculum).
    """

    def __init__(self, make_batch, batches_per_epoch: int, seed: int):
        self.make_batch, self.n, self.seed = make_batch, batches_per_epoch, seed
        self.sampler = _OffsetSampler(batches_per_epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self.make_batch(g, index)

    def loader(self) -> DataLoader:
        return DataLoader(self, batch_size=None, sampler=self.sampler)


class _OffsetSampler(ResumableOrder, Sampler[int]):
    """Yields ``epoch * n + i``: a fresh, reproducible stream of batch indices per epoch (sharded under DDP)."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return self._this_rank(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return sharded_len(self.n)
