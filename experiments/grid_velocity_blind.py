"""A grid network that cannot path-integrate: the shipped recipe with the velocity input multiplied by 0.

Its state only carries the start position's place-cell code, so the theory says it fits place cells
blurred by the displacement since the start (``zoo.analysis.pattern_formation.blurred_optimal_k``:
a ring at 6.56 rad/m, fields 1.11 m apart, for the authors' task). This trains one such network with
the shipped network's recipe (512 ReLU units, the authors' start and place-cell centres, Adam lr 1e-3
decaying smoothly to 1e-4 over 24,000 steps, weight decay 1e-4 on W_hh, batch 200, bfloat16 products)
and prints the training probes (``PathIntegration.probe``: 50,000 positions, seed 999) every 1,000
steps. docs/grid-cells.md, "Why the lattices form too large". About 4 steps/s on one core.

    python experiments/grid_velocity_blind.py [--steps 10000] [--seed 1]
"""

from __future__ import annotations

import argparse

import torch

from zoo.models.grid_rnn import GridRNN
from zoo.tasks.path_integration import PathIntegration


class VelocityBlindRNN(GridRNN):
    """:class:`GridRNN` whose velocity input is zero: ``g_t = relu(W_hh g_{t-1})`` from ``g_0 = W_enc p(x_0)``."""

    def hidden(self, velocity: torch.Tensor, init_code: torch.Tensor) -> torch.Tensor:
        return super().hidden(torch.zeros_like(velocity), init_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1, help="seed of the training trajectories (weights: seed 0)")
    args = parser.parse_args()
    task = PathIntegration(seed=0, centre_layout="numpy")
    model = VelocityBlindRNN(512, task.place_cells.n, "relu", seed=0, init="pytorch")
    optimizer = torch.optim.Adam(model.optimizer_param_groups(1e-4), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 ** (step / 24_000))
    stream = torch.Generator().manual_seed(args.seed)
    keys = ["grid_fraction_0.3", "grid_fraction_above_null", "null_rank_60", "dead_fraction", "map_dimension",
            "median_grid_spacing_m", "spectrum_peak_rad_per_m"]
    print("step  loss    " + "  ".join(keys))
    loss = torch.tensor(float("nan"))
    for step in range(args.steps + 1):
        if step % 1000 == 0:
            model.eval()
            probe = task.probe(model)
            print(f"{step:5d} {float(loss):.4f}  " + "  ".join(f"{probe[k]:.3f}" for k in keys), flush=True)
            model.train()
        if step == args.steps:
            break
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = task.loss(model, task.make_batch(stream, 200))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        loss = loss.detach()


if __name__ == "__main__":
    main()
