"""Benchmark: the zoo's fixed-point finder against a first-order (Adam-only) baseline, same process.

Baseline: Golub & Sussillo's FixedPointFinder procedure (Golub & Sussillo, JOSS 2018), written
here in PyTorch: all seeds optimised jointly on mean_i 0.5 ||F(h_i) - h_i||^2 with Adam
(epsilon 0.01), their adaptive learning rate (initial 1.0; x0.95 when the loss rises above the
last 5 values, x1/0.95 after 5 monotone decreases, at most one change per 5 steps; floor 1e-3),
adaptive gradient-norm clipping (95th percentile of the last 128 norms), and their stopping
rule: mean q < tol_q = 1e-12 (their 0.5-sum convention), |dq| < 1e-20, or 5000 iterations.

Ours: :func:`zoo.analysis.fixed_points.find_fixed_points` with its defaults (a short per-point Adam
phase, then batched Levenberg-Marquardt), linearisation switched off so both sides time only the
search. It runs twice: with the model's closed-form Jacobians (``state_jacobian``, the default
for every recurrent entry of the zoo) and with autodiff Jacobians (``vmap(jacrev)`` of ``step``,
what a model without the closed form gets, including the finder's default budget of 6 Jacobian
evaluations per point in that case).

Both start from the same seeds (1,000 visited states of ``sentiment-imdb/gru`` on its test
split, seed 0) at zero input, on the same number of threads. Reported for each: wall time, the
fraction of seeds that reached q = (1/N)||F(h) - h||^2 < 1e-10 at some point of the run (for
the baseline's joint Adam a seed can bounce back out; ours only accepts decreasing steps), unique
points among the final states with q < 1e-10 (same outlier rule and greedy de-duplication at
1e-3 for all), and two ratios: total wall times, and the time each method needs to bring as many
seeds below 1e-10 as the baseline does in all its 5,000 iterations.

    .venv/bin/python benches/bench_fixed_points.py [--entry NAME] [--n-seeds 1000] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.analysis.fixed_points import _unique, find_fixed_points, visited_seeds  # noqa: E402

Q_TARGET = 1e-10


class _AdaptiveRate:
    """Golub & Sussillo's adaptive learning-rate schedule (defaults of their AdaptiveLearningRate)."""

    def __init__(self, initial=1.0, min_rate=1e-3, patience=5, decrease=0.95, increase=1 / 0.95):
        self.rate, self.min_rate, self.patience = initial, min_rate, patience
        self.decrease, self.increase = decrease, increase
        self.losses: list[float] = []
        self.last_change = 0

    def update(self, loss: float) -> None:
        self.losses.append(loss)
        n, step = self.patience, len(self.losses)
        if step < self.last_change + n + 1:
            return
        window = np.asarray(self.losses[-(n + 1):])
        if (window[-1] > window[:-1]).all():
            self.rate, self.last_change = max(self.rate * self.decrease, self.min_rate), step
        elif (np.diff(window) < 0).all():
            self.rate, self.last_change = self.rate * self.increase, step


class _AdaptiveClip:
    """Clip the gradient norm at the 95th percentile of the last 128 norms (initially 1e12)."""

    def __init__(self, window=128, percentile=95.0, init=1e12):
        self.norms: list[float] = []
        self.window, self.percentile, self.value = window, percentile, init

    def __call__(self, norm: float) -> float:
        self.norms = (self.norms + [norm])[-self.window:]
        clip = self.value
        self.value = float(np.percentile(self.norms, self.percentile))
        return clip


def golub_sussillo_adam(step, seeds: torch.Tensor, x: torch.Tensor, tol_q: float = 1e-12, tol_dq: float = 1e-20,
                        max_iters: int = 5000) -> dict:
    """The baseline (module docstring). Returns final states, q (1/N convention), iterations, and
    the wall time at which each fraction of seeds first reached q < 1e-10."""
    h = seeds.clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=1.0, eps=0.01)
    rate, clip = _AdaptiveRate(), _AdaptiveClip()
    started = time.perf_counter()
    reached_at = np.full(len(h), np.nan)  # first time each seed had q < target
    prev = np.inf
    it = 0
    for it in range(1, max_iters + 1):  # noqa: B007 (the count is returned)
        r = step(h, x) - h
        q_gs = 0.5 * r.pow(2).sum(-1)
        loss = q_gs.mean()
        (grad,) = torch.autograd.grad(loss, h)
        q_ours = r.detach().pow(2).mean(-1).numpy()
        newly = np.isnan(reached_at) & (q_ours < Q_TARGET)
        reached_at[newly] = time.perf_counter() - started
        value = float(loss.detach())
        if value < tol_q or abs(prev - value) < tol_dq or not np.isfinite(value):
            break
        prev = value
        norm = float(grad.norm())
        limit = clip(norm)
        if norm > limit:
            grad = grad * (limit / norm)
        for group in opt.param_groups:
            group["lr"] = rate.rate
        h.grad = grad
        opt.step()
        rate.update(value)
    wall = time.perf_counter() - started
    with torch.no_grad():
        q = (step(h, x) - h).pow(2).mean(-1).numpy()
    return {"states": h.detach().numpy().astype(np.float64), "q": q.astype(np.float64), "iterations": it,
            "wall_s": wall, "reached_at": reached_at}


def count_unique(states: np.ndarray, q: np.ndarray, seeds: np.ndarray, tol: float = 1e-3,
                 outlier_scale: float = 10.0) -> int:
    """Unique points with q < 1e-10: outliers (as in the finder) removed, greedy de-duplication."""
    centre = seeds.mean(0)
    radius = np.median(np.linalg.norm(seeds - centre, axis=1))
    ok = np.isfinite(q) & (q < Q_TARGET) & (np.linalg.norm(np.nan_to_num(states) - centre, axis=1) <= outlier_scale * radius)
    idx = np.flatnonzero(ok)
    return len(_unique(states, idx[np.argsort(q[idx])], tol))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", default="sentiment-imdb/gru")
    parser.add_argument("--n-seeds", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iters", type=int, default=5000, help="baseline iteration cap (G&S: 5000)")
    parser.add_argument("--quick", action="store_true", help="200 seeds, 500 baseline iterations (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_seeds, args.max_iters = 200, 500
    torch.set_num_threads(args.threads)
    import zoo

    try:
        model = zoo.load(args.entry)
        note = "trained checkpoint"
    except zoo.CheckpointError as err:
        print(f"! {err}\n! falling back to the UNTRAINED {args.entry} (numbers are not the headline)")
        model = zoo.load(args.entry, pretrained=False)
        note = "untrained"
    for p in model.parameters():
        p.requires_grad_(False)
    task = zoo.task(args.entry)
    seeds = visited_seeds(model, task, args.n_seeds, seed=0)
    x = torch.zeros(args.n_seeds, model.input_size)
    seeds_np = seeds.numpy().astype(np.float64)
    print(f"{args.entry} ({note}): N = {model.state_size}, {args.n_seeds} seeds, {args.threads} thread(s)")

    runs = {"ours": model, "ours (autodiff J)": model.step}  # a bare callable hides state_jacobian
    results = {}
    for label, dynamics in runs.items():
        find_fixed_points(dynamics, seeds[:4], x[:4], compute_jacobians=False)  # warm-up (torch.func set-up)
        t0 = time.perf_counter()
        fp = find_fixed_points(dynamics, seeds, x, compute_jacobians=False)
        wall = time.perf_counter() - t0
        results[label] = {"wall_s": wall, "reached_at": fp.seed_time_s,
                          "unique": count_unique(fp.final_states, fp.seed_q, seeds_np)}
        print(f"{label:18s} {wall:7.1f} s  reached q<1e-10: {np.mean(~np.isnan(fp.seed_time_s)):6.1%}  "
              f"unique: {results[label]['unique']:4d}  (adam {fp.params['adam_s']:.1f} s, LM {fp.params['lm_s']:.1f} s, "
              f"{fp.params['lm_jacobian_evaluations'] / args.n_seeds:.1f} Jacobians/seed)", flush=True)

    base = golub_sussillo_adam(model.step, seeds, x, max_iters=args.max_iters)
    base_unique = count_unique(base["states"], base["q"], seeds_np)
    base_reached = np.sort(base["reached_at"][~np.isnan(base["reached_at"])])
    print(f"{'baseline (Adam)':18s} {base['wall_s']:7.1f} s  reached q<1e-10: {len(base_reached) / args.n_seeds:6.1%}  "
          f"unique: {base_unique:4d}  ({base['iterations']} iterations)")
    for label, res in results.items():
        ours_reached = np.sort(res["reached_at"][~np.isnan(res["reached_at"])])
        k = len(base_reached)
        if k and len(ours_reached) >= k:
            same = f"{base_reached[-1] / ours_reached[k - 1]:.1f}x (to {k} seeds: {base_reached[-1]:.1f} s vs {ours_reached[k - 1]:.1f} s)"
        else:
            same = "n/a (fewer seeds reached than the baseline)"
        print(f"RATIO {label}: wall {base['wall_s'] / res['wall_s']:.1f}x; time to the baseline's converged count {same}; "
              f"unique {res['unique']} vs {base_unique}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
