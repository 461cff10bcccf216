"""Benchmark: one step of the piecewise-linear system (:class:`zoo.analysis.linearization.LinearisedSystem`)
against the straightforward batched version, same process, same inputs.

The step moves each of ``B`` states with the linearisation of its nearest fixed point:
``h* + J_h (h - h*) + J_x (x - x*)``. Baseline: gather each row's ``J_h`` and ``J_x`` into
``[B, N, N]`` and ``[B, N, I]`` stacks and apply them with ``torch.bmm`` (what the zoo did before).
Ours: one matrix product per fixed point in use, over the rows nearest to it. Sizes as in the zoo's
sentiment RNNs (N = 128, 256, 512 = an LSTM's joint state; I = 64; K = 200 linearised points; B = 64
sequences; ``U`` distinct nearest points per step). Prints ms per step and the ratio.

    .venv/bin/python benches/bench_linearised_step.py [--threads 1] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.analysis.linearization import LinearisedSystem  # noqa: E402


def gathered_step(system: LinearisedSystem, h: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The baseline: per-row gathered Jacobians and batched mat-vec products."""
    p = system.points[k]
    dh = torch.bmm(system.J_h.index_select(0, k), (h - p).unsqueeze(-1)).squeeze(-1)
    dx = torch.bmm(system.J_x.index_select(0, k), (x - system.x_star).unsqueeze(-1)).squeeze(-1)
    return p + dh + dx


def _system(n: int, i: int, k: int, g: torch.Generator) -> LinearisedSystem:
    system = LinearisedSystem.__new__(LinearisedSystem)  # the arrays only: no model needed to time a step
    system.points = torch.randn(k, n, generator=g)
    system.x_star = torch.zeros(i)
    system.J_h = torch.randn(k, n, n, generator=g) / n**0.5
    system.J_x = torch.randn(k, n, i, generator=g) / i**0.5
    return system


def _time(step, args: tuple, repeats: int) -> float:
    step(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        step(*args)
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"{'N':>5} {'U':>4} {'gathered ms':>12} {'grouped ms':>11} {'ratio':>6}")
    for n in (128, 256, 512):
        system = _system(n, 64, 200, g)
        for used in (10, 60):
            h, x = torch.randn(64, n, generator=g), torch.randn(64, 64, generator=g)
            k = torch.randint(0, used, (64,), generator=g)
            ours = system.step(h, x, k)
            assert torch.allclose(ours, gathered_step(system, h, x, k), atol=1e-4), "the two steps differ"
            base = _time(gathered_step, (system, h, x, k), args.repeats)
            fast = _time(system.step, (h, x, k), args.repeats)
            print(f"{n:>5} {used:>4} {base * 1e3:>12.2f} {fast * 1e3:>11.2f} {base / fast:>6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
