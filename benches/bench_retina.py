"""Retina benchmarks (issue 12): ratios measured in one run, one thread.

1. The simulated retina's throughput (frames/s): the vectorised circuit (FFT filters over all time,
   every subunit and cell at once) against a frame-by-frame Python loop computing the same circuit
   with ring buffers (checked equal).
2. CNN training throughput (frames/s, forward + backward + Adam): the zoo's block path (first layer
   by FFT, each frame transformed once for the 40 windows that share it) against a straightforward
   implementation with the first layer as an explicit loop over the 40 history frames, and against
   PyTorch's direct ``conv2d`` on each window.

    OMP_NUM_THREADS=1 .venv/bin/python benches/bench_retina.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from zoo.models.retina import RetinaCNN
from zoo.tasks.retina import RetinaCircuit, make_stimulus


def framewise_rates(c: RetinaCircuit, stimulus: torch.Tensor) -> torch.Tensor:
    """The circuit one frame at a time (the baseline): ``[cells, T]`` Hz, equal to ``c.rates``."""
    p, T = c.p, stimulus.shape[0]
    G = c.grid
    k_on, k_off, k_ad, k_am = c.k_on, c.k_off, c.k_adapt, c.k_amacrine
    sp_hist = torch.zeros(len(k_on), G, G)
    u2_hist = torch.zeros(len(k_ad), 2, G, G)
    am_hist = torch.zeros(len(k_am), G, G)
    ra = c.amacrine_space.shape[-1] // 2
    out = torch.empty(c.n_cells, T)
    for t in range(T):
        frame = F.pad(stimulus[t][None, None], (c.radius,) * 4)
        sp = F.conv2d(frame, c.dog[None, None], stride=p.subunit_spacing)[0, 0, :G, :G]
        sp_hist = torch.cat([sp[None], sp_hist[:-1]])
        u = torch.stack([(k_on[:, None, None] * sp_hist).sum(0), (k_off[:, None, None] * sp_hist).sum(0)])
        u2_hist = torch.cat([(u * u)[None], u2_hist[:-1]])
        contrast = (k_ad[:, None, None, None] * u2_hist).sum(0).clamp_min(0).sqrt()
        b = torch.relu(u / (1 + p.adapt_gain * contrast) - p.bipolar_threshold)
        pooled = F.conv2d(F.pad(b.sum(0)[None, None], (ra,) * 4, mode="replicate"), c.amacrine_space[None, None])[0, 0]
        am_hist = torch.cat([pooled[None], am_hist[:-1]])
        a = (k_am[:, None, None] * am_hist).sum(0)
        b = torch.relu(b - p.amacrine_weight * a).reshape(2, -1)
        x = torch.cat([c.pool[c.type_idx == 0] @ b[1], c.pool[c.type_idx == 1] @ b[0]])
        drive = c.scale * F.softplus(c.slope * (x - c.threshold))
        out[:, t] = p.max_rate * torch.tanh(drive / p.max_rate)
    return out


class LoopCNN(RetinaCNN):
    """The same network with the first layer as an explicit loop over history frames (the naive baseline)."""

    def layer_maps(self):
        maps = super().layer_maps()

        def first(x):
            h = self.conv1.bias[None, :, None, None]
            for j in range(self.lags):
                h = h + F.conv2d(x[:, j:j + 1], self.conv1.weight[:, j:j + 1])
            return self._noisy(h)

        return [first, *maps[1:]]


def _train_rate(step, n_frames: int, min_time: float) -> float:
    step()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time or done == 0:
        step()
        done += n_frames
    return done / (time.perf_counter() - start)


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    circuit = RetinaCircuit()
    n = 200 if quick else 600
    stim = make_stimulus("natural", n, g)
    start = time.perf_counter()
    slow = framewise_rates(circuit, stim)
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    fast = circuit.rates(stim)
    t_vec = time.perf_counter() - start
    err = float((slow - fast).abs().max())
    assert err < 1e-2 * float(fast.abs().max()), f"frame-by-frame and vectorised circuits differ by {err}"
    big = make_stimulus("natural", 10 * n, g)
    start = time.perf_counter()
    circuit.rates(big)
    t_big = time.perf_counter() - start
    print(f"simulated retina, {n} natural frames (50 x 50, 8 cells): frame-by-frame {n / t_loop:,.0f} frames/s, "
          f"vectorised {n / t_vec:,.0f} frames/s -> ratio {t_loop / t_vec:.1f}x (max |diff| {err:.2e} Hz); "
          f"vectorised on {10 * n} frames: {10 * n / t_big:,.0f} frames/s ({t_loop / n * 10 * n / t_big:.1f}x)")

    block, blocks = 25, (1 if quick else 2)
    x = torch.randn(blocks, block + 39, 50, 50, generator=g)
    y = torch.poisson(torch.full((blocks, 8, block), 0.3), generator=g)
    windows = x.unfold(1, 40, 1).permute(0, 1, 4, 2, 3).reshape(-1, 40, 50, 50).contiguous()
    rates = {}
    for label, make, run in (
        ("block path (first layer by FFT)", RetinaCNN, lambda m: m.forward_blocks(x)),
        ("direct conv2d on each window", RetinaCNN, lambda m: m(windows).reshape(blocks, block, 8).permute(0, 2, 1)),
        ("naive loop over history frames", LoopCNN, lambda m: m(windows).reshape(blocks, block, 8).permute(0, 2, 1)),
    ):
        model = make(n_cells=8, seed=0).train()
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, opt=opt, run=run):
            rate = run(model)
            loss = (rate - y * torch.log(rate + 1e-6)).mean() + model.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()

        rates[label] = _train_rate(step, blocks * block, 2.0 if quick else 6.0)
    base = rates["naive loop over history frames"]
    for label, r in rates.items():
        print(f"CNN training ({blocks * block} frames per step): {label}: {r:,.0f} frames/s -> {r / base:.1f}x the naive loop")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
