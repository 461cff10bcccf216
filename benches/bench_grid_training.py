"""Training-step throughput of the grid-cell RNN: the zoo's step against the authors' formulation.

Both take one Adam step on the same batch (200 trajectories x 20 steps, 512 place cells).

* zoo: ``task.loss`` (one forward pass, ``log_softmax`` cross-entropy) and weight decay on
  ``W_hh`` through the optimizer's parameter groups (``GridRNN.optimizer_param_groups``);
* authors (Sorscher et al.'s ``compute_loss``): the network is run twice, once for the logits
  used in decoding and once for ``softmax``, the loss is ``-(y * log(softmax(z))).sum(-1).mean()``
  plus ``weight_decay * ||W_hh||^2``; time-first ``nn.RNN`` as in their code.

The zoo's step is also timed under bfloat16 autocast, as ``zoo train --precision bf16-mixed`` runs
it (float32 weights and Adam; matrix products in bfloat16, which CPUs with AMX run several times
faster and CPUs without bfloat16 instructions, AVX2 only, emulate many times slower). Batch
generation is excluded (the same pre-made batches feed all three). Prints steps per second at
each size and the ratios zoo / authors and bf16-mixed / float32.

Batch generation is timed on its own: a training batch's place-cell code (200 x 20 positions x 512
cells), ``PlaceCells.activation`` (blocks of rows) against one pass over the whole batch, the same
operations (bit for bit the same code), and the whole ``make_batch``.

    .venv/bin/python benches/bench_grid_training.py [--sizes 1024 4096] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.tasks.path_integration import PathIntegration  # noqa: E402
from zoo.models.grid_rnn import GridRNN  # noqa: E402


class AuthorsRNN(nn.Module):
    """The authors' model class: encoder, time-first ``nn.RNN`` (ReLU, no bias), decoder."""

    def __init__(self, n_cells: int, hidden: int, weight_decay: float):
        super().__init__()
        self.encoder = nn.Linear(n_cells, hidden, bias=False)
        self.RNN = nn.RNN(input_size=2, hidden_size=hidden, nonlinearity="relu", bias=False)
        self.decoder = nn.Linear(hidden, n_cells, bias=False)
        self.softmax = nn.Softmax(dim=-1)
        self.weight_decay = weight_decay

    def predict(self, v, p0):
        g, _ = self.RNN(v, self.encoder(p0)[None])
        return self.decoder(g)

    def compute_loss(self, v, p0, y, pos, centres):
        preds = self.predict(v, p0)
        yhat = self.softmax(self.predict(v, p0))
        loss = -(y * torch.log(yhat)).sum(-1).mean()
        loss = loss + self.weight_decay * (self.RNN.weight_hh_l0**2).sum()
        pred_pos = centres[torch.topk(preds, k=3).indices].mean(-2)
        err = torch.sqrt(((pos - pred_pos) ** 2).sum(-1)).mean()
        return loss, err


def _time(step, batches, warmup: int = 1) -> float:
    for b in batches[:warmup]:
        step(b)
    start = time.perf_counter()
    for b in batches[warmup:]:
        step(b)
    return (len(batches) - warmup) / (time.perf_counter() - start)


def bench(hidden: int, steps: int, task: PathIntegration) -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(0)
    batches = [task.make_batch(g, 200) for _ in range(steps + 1)]

    ours = GridRNN(hidden, task.place_cells.n)
    opt = torch.optim.Adam(ours.optimizer_param_groups(1e-4), lr=1e-4)

    def zoo_step(batch, bf16=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = task.loss(ours, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    theirs = AuthorsRNN(task.place_cells.n, hidden, 1e-4)
    opt2 = torch.optim.Adam(theirs.parameters(), lr=1e-4)
    centres = task.place_cells.centres

    def authors_step(batch):
        v, p0, y, pos = batch
        loss, _ = theirs.compute_loss(v.transpose(0, 1), p0, y.transpose(0, 1), pos.transpose(0, 1), centres)
        opt2.zero_grad(set_to_none=True)
        loss.backward()
        opt2.step()

    return _time(zoo_step, batches), _time(authors_step, batches), _time(partial(zoo_step, bf16=True), batches)


def bench_batch(task: PathIntegration, repeats: int = 10) -> tuple[float, float, float]:
    """Milliseconds per training batch's place-cell code: blocked, one pass; and per ``make_batch``."""
    cells = task.place_cells
    pos = task.make_batch(torch.Generator().manual_seed(1), 200)[3]

    def one_pass():
        norm2 = cells.sq_dist(pos)
        out = torch.softmax(-norm2 / (2 * cells.sigma**2), dim=-1)
        out = out - torch.softmax(-norm2 / (2 * cells.surround_scale * cells.sigma**2), dim=-1)
        out = out + out.min(-1, keepdim=True).values.abs()
        return out / out.sum(-1, keepdim=True)

    if not torch.equal(one_pass(), cells.activation(pos)):
        raise AssertionError("blocked place-cell code differs from one pass")
    g = torch.Generator().manual_seed(2)
    calls = (lambda _: cells.activation(pos), lambda _: one_pass(), lambda _: task.make_batch(g, 200))
    return tuple(1e3 / _time(call, [None] * (repeats + 1)) for call in calls)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per size (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = PathIntegration()
    print(f"grid RNN training step, batch 200 x 20, {task.place_cells.n} place cells, {args.threads} thread(s)")
    blocked, one_pass, batch = bench_batch(task)
    print(f"place-cell code of a batch: {blocked:.1f} ms in blocks against {one_pass:.1f} ms in one pass "
          f"({one_pass / blocked:.2f}x); the whole batch {batch:.1f} ms")
    print(f"{'units':>6} {'zoo steps/s':>12} {'authors steps/s':>16} {'ratio':>6} {'zoo bf16-mixed':>15} {'bf16/fp32':>10}")
    for hidden in args.sizes:
        ours, theirs, ours_bf16 = bench(hidden, args.steps, task)
        print(f"{hidden:>6} {ours:>12.3f} {theirs:>16.3f} {ours / theirs:>6.2f}x {ours_bf16:>15.3f} {ours_bf16 / ours:>9.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
