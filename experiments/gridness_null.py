"""Gridness of trained grid networks against the isotropic-surrogate null (README, "Gridness
against a null").

For each network: ratemaps of every unit from fresh trajectories (``--positions`` positions,
trajectory seed ``--seed``) and how many different maps they are (:func:`zoo.analysis.gridness.map_dimension`),
score_60 and score_90 of the active (non-constant) units, and the same
scores of ``--surrogates`` isotropic surrogates of each (:func:`zoo.analysis.gridness.isotropic_surrogates`:
the map's values and radially averaged spectrum, no lattice). Prints, per score and as fractions of
the active units: the units above 0.3, the surrogates above 0.3, the surrogates' pooled 95th
percentile and the units above it (+- its binomial standard error; chance is 5%), and the mean
rank of a unit's score among its own surrogates' (+- its chance standard error; chance is 0.5;
:func:`zoo.analysis.gridness.null_rank`); the same again with every autocorrelogram's peak ellipse
made a circle (:func:`zoo.analysis.gridness.ellipse_corrected`, the units' and the surrogates').
Then the angular order of the active units' power on the k* ring of the network's place cells
(medians of m = 2 bands, 4 squares, 6 hexagons; :func:`zoo.analysis.spatial_spectra.angular_order`),
the units' beside their surrogates'.

    python experiments/gridness_null.py                       # the shipped ReLU and tanh networks
    python experiments/gridness_null.py path-integration/rnn-tanh=runs/path-integration__rnn-tanh/seed0/path-integration__rnn-tanh.h5

About 40 s per 512-unit network on one core.
"""

import argparse

import numpy as np

import zoo
import zoo.checkpoint
import zoo.registry
from zoo.analysis.gridness import (constant_maps, grid_geometry, grid_scores, isotropic_surrogates, map_dimension, null_rank,
                                  null_scores)
from zoo.analysis.pattern_formation import optimal_k
from zoo.analysis.spatial_spectra import median_angular_order, ring_angular_order
from zoo.tasks import get_task


def _task_of(name: str, path: str):
    """The path-integration task the network was trained on (its place cells give the initial state)."""
    if not path:
        return zoo.registry.task(name)
    data = zoo.checkpoint.load(path, check_manifest=False)[2]["data"]
    return get_task("path-integration", **{k: data[k] for k in get_task("path-integration").options if k in data})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("networks", nargs="*", default=["path-integration/rnn-relu", "path-integration/rnn-tanh"],
                   help="ENTRY or ENTRY=CHECKPOINT.h5 (a run's exported file)")
    p.add_argument("--positions", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=777, help="seed of the ratemaps' trajectories")
    p.add_argument("--surrogates", type=int, default=20)
    p.add_argument("--null-seed", type=int, default=1)
    args = p.parse_args()
    for spec in args.networks:
        name, _, path = spec.partition("=")
        model = zoo.load(name, checkpoint=path or None)
        task = _task_of(name, path)
        stack = model.spatial_maps(task, n_positions=args.positions, seed=args.seed)
        maps = stack.maps.double().numpy()
        active = ~constant_maps(maps)
        print(f"{spec}: {len(maps)} units, {active.sum()} active, carrying {map_dimension(maps):.1f} different maps "
              "(participation ratio)")
        for ellipse in (False, True):   # raw, then ellipse-corrected autocorrelograms (units and surrogates alike)
            real = grid_scores(maps[active], ellipse=ellipse)
            null = {k: v[active] for k, v in null_scores(maps, args.surrogates, args.null_seed, ellipse=ellipse).items()}
            for key in ("score_60", "score_90"):
                threshold = np.quantile(null[key], 0.95)
                above = (real[key] > threshold).mean()
                se = np.sqrt(above * (1 - above) / active.sum())
                rank, rank_se = null_rank(real[key], null[key])
                print(f"  {key}{' ellipse-corrected' if ellipse else ''}: active units > 0.3 {(real[key] > 0.3).mean():.1%}, "
                      f"> 0.8 {(real[key] > 0.8).mean():.1%}, their surrogates > 0.3 {(null[key] > 0.3).mean():.1%}; null 95th "
                      f"percentile {threshold:.3f}, units above it {above:.1%} +- {se:.1%}; mean rank among their own "
                      f"surrogates {rank:.3f} +- {rank_se:.3f}")
            passing = real["score_60"] > np.quantile(null["score_60"], 0.95)
            if ellipse and passing.any():   # the lattices that pass: their shortest and longest peak distances
                bin_size = (stack.extent[1] - stack.extent[0]) / maps.shape[-1]
                peaks = grid_geometry(real["sac"][passing], bin_size)["peaks"]
                dist = np.hypot(peaks[..., 0], peaks[..., 1]) * bin_size
                # how alike their stretch directions are: axial data, so the mean resultant of 2 theta
                stretch = real["major_axis"][passing]
                axial = np.exp(2j * np.radians(stretch[np.isfinite(stretch)]))   # those with an ellipse
                resultant = abs(axial.mean()) if len(axial) else np.nan
                direction = np.degrees(np.angle(axial.mean())) / 2 % 180 if len(axial) else np.nan
                shortest, longest = np.nanmedian(np.nanmin(dist, 1)), np.nanmedian(np.nanmax(dist, 1))
                print(f"  median axis ratio of the units' ellipses {np.nanmedian(real['axis_ratio']):.2f}; of the "
                      f"{passing.sum()} units above the corrected null: shortest peak distance {shortest:.3f} m, "
                      f"longest {longest:.3f} m (medians); stretch direction {direction:.0f} deg, axial resultant "
                      f"length {resultant:.2f} over {len(axial)} (0: no common direction; Rayleigh p ~ "
                      f"{np.exp(-len(axial) * resultant**2):.1g})")
        k_star = optimal_k(task.place_cells.sigma, task.place_cells.surround_scale)
        surrogates = isotropic_surrogates(maps[active], args.surrogates, args.null_seed).reshape(-1, *maps.shape[1:])
        units, iso = (median_angular_order(ring_angular_order(m, stack.extent, k_star)) for m in (maps[active], surrogates))
        print(f"  angular order on the k* = {k_star:.2f} rad/m ring, m = 2 / 4 / 6: units "
              f"{' / '.join(f'{v:.2f}' for v in units)}, surrogates {' / '.join(f'{v:.2f}' for v in iso)}")


if __name__ == "__main__":
    main()
