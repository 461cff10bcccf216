"""Grid spacing a path-integration network forms before it can path-integrate (docs/grid-cells.md).

Until a network path-integrates, its state carries the code of the start position while the loss
asks for the place cells where the agent is now. It is then fitting place cells blurred by the
displacement since the start, whose spectrum ``S(k) phi(k)^2`` peaks below k*
(:func:`zoo.analysis.pattern_formation.blurred_optimal_k`). This script draws the task's own
trajectories for the shipped task and for the variants trained in the README (time step, sequence
length) and prints the two bounds of the spacing: k* (perfect path integration) and the blurred
peak (none), as hexagonal grid spacings. It first checks that k* is where the optimal code sits in
the task's walled box too (top eigenvectors of the covariance of the authors' 512 place cells).

    python experiments/grid_spacing_blur.py [--trajectories 20000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from zoo.analysis.pattern_formation import blurred_optimal_k, grid_positions, grid_spacing, optimal_k
from zoo.tasks.path_integration import PathIntegration

VARIANTS = [  # (dt in s, sequence length): the shipped task, then the README's runs
    (0.02, 20), (0.01, 20), (0.005, 20), (0.02, 10), (0.02, 5), (0.01, 40),
]


def walled_box_ring(task: PathIntegration, n: int = 66, modes: int = 20, pad: int = 8) -> float:
    """Wave number (rad/m) of the place-cell covariance's top ``modes`` eigenvectors in the task's own
    walled box (no torus), eigenvalue-weighted: where the optimal code sits for these 512 centres.
    Each eigenvector's wave number is the peak of its ``pad``-fold zero-padded power spectrum."""
    box = task.box_width
    code = task.place_cells.activation(torch.from_numpy(grid_positions(n, box)).float()).double().numpy()
    code -= code.mean(0)                                    # [n*n, Np], centred over positions
    values, vectors = np.linalg.eigh(code @ code.T)
    values, vectors = values[::-1][:modes], vectors[:, ::-1][:, :modes].T.reshape(modes, n, n)
    power = np.abs(np.fft.fft2(vectors, s=(pad * n, pad * n))) ** 2
    f = 2 * np.pi * np.fft.fftfreq(pad * n, d=box / n)
    k = np.hypot(*np.meshgrid(f, f, indexing="ij")).ravel()[power.reshape(modes, -1).argmax(1)]
    return float((values * k).sum() / values.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=20_000, help="trajectories per variant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trajectory draw")
    args = parser.parse_args()
    print(f"perfect path integration (k* = {optimal_k():.2f} rad/m): spacing {grid_spacing(optimal_k()):.3f} m")
    k_box = walled_box_ring(PathIntegration(seed=args.seed, centre_layout="numpy"))
    print(f"the walled box's own optimum (top 20 eigenvectors of the authors' 512 cells): {k_box:.2f} rad/m, "
          f"spacing {grid_spacing(k_box):.3f} m")
    print("dt (s)  steps  rms displacement (m)  blurred peak (rad/m)  spacing without path integration (m)")
    for dt, steps in VARIANTS:
        task = PathIntegration(seed=args.seed, dt=dt, sequence_length=steps, centre_layout="numpy")
        displacement = task.start_displacements(args.trajectories, torch.Generator().manual_seed(args.seed)).numpy()
        k = blurred_optimal_k(displacement, task.place_cells.sigma, task.place_cells.surround_scale)
        rms = float((displacement**2).sum(-1).mean() ** 0.5)
        print(f"{dt:6.3f}  {steps:5d}  {rms:20.3f}  {k:20.2f}  {grid_spacing(k):35.3f}")


if __name__ == "__main__":
    main()
