"""Replay the grid RNN's first training steps and show why the tanh network's loss spikes (README,
"Why the tanh network's loss spikes").

Trains ``GridRNN(512 units, the authors' start)`` on the path-integration task with Adam written out
(coupled L2 on W_hh as in :meth:`GridRNN.optimizer_param_groups`), one fresh batch of 200 per step,
and prints every 50 steps, and at every step whose loss exceeds log(Np) + 1e-4: the loss, and the
W_hh spectral radius and mean and max |g| (50 trajectories) that produced it, and the largest
per-tensor RMS of grad^2 / v after the step (how far the gradient has outgrown Adam's second moment)
and the spectral norm of the step's change of W_hh.
Stops at the first loss above 6.5 (a spike).

    python experiments/grid_tanh_spike.py                       # tanh, lr 1e-3, beta2 0.999: spikes
    python experiments/grid_tanh_spike.py --beta2 0.99          # a blip, then it learns
    python experiments/grid_tanh_spike.py --clip-update         # StableAdamW's update clipping: still spikes

About 3 steps/s on one core.
"""

import argparse
import math

import torch

from zoo.models.grid_rnn import GridRNN
from zoo.tasks import get_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activation", default="tanh", choices=["tanh", "relu"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--clip-update", action="store_true", help="divide each tensor's step by max(1, RMS(grad^2 / v))")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = GridRNN(512, 512, args.activation, seed=args.seed, init="pytorch")
    task = get_task("path-integration")
    chance = math.log(task.place_cells.n)
    groups = model.optimizer_param_groups(1e-4)
    beta1, eps = 0.9, 1e-8
    moments = {}
    data = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        batch = task.make_batch(data, 200)
        loss, _ = task.loss(model, batch)
        report = step % 50 == 0 or loss.item() > chance + 1e-4
        if report:  # the state that produced this loss, before this step's update
            with torch.no_grad():
                g = model.hidden(batch[0][:50], batch[1][:50])
                radius = torch.linalg.eigvals(model.weight_hh).abs().max().item()
                w_before = model.weight_hh.detach().clone()
        model.zero_grad()
        loss.backward()
        worst = 0.0
        with torch.no_grad():
            for group in groups:
                for w in group["params"]:
                    grad = w.grad + group["weight_decay"] * w
                    m, v = moments.setdefault(w, (torch.zeros_like(w), torch.zeros_like(w)))
                    m.mul_(beta1).add_(grad, alpha=1 - beta1)
                    v.mul_(args.beta2).addcmul_(grad, grad, value=1 - args.beta2)
                    m_hat, v_hat = m / (1 - beta1**step), v / (1 - args.beta2**step)
                    rms = (grad**2 / v_hat.clamp_min(eps**2)).mean().sqrt().item()
                    worst = max(worst, rms)
                    scale = 1.0 / max(1.0, rms) if args.clip_update else 1.0
                    w.sub_(args.lr * scale * m_hat / (v_hat.sqrt() + eps))
        if report:
            step_norm = torch.linalg.matrix_norm(model.weight_hh.detach() - w_before, 2).item()
            print(f"step {step:5d}  loss {loss.item():.5f}  radius {radius:.3f}  mean|g| {g.abs().mean():.5f}  "
                  f"max|g| {g.abs().max():.3f}  max RMS(grad^2/v) {worst:.2f}  ||dW_hh||_2 {step_norm:.3f}", flush=True)
        if loss.item() > 6.5:
            print(f"spike at step {step}")
            break


if __name__ == "__main__":
    main()
