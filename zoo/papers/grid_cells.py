"""Report section "grid-cells": Sorscher, Mel, Ganguli & Ocko (NeurIPS 2019), grid cells from path
integration through the lens of pattern formation.

From the shipped ``path-integration/rnn-relu`` network and its tanh twin ``path-integration/rnn-tanh``
(ratemaps of every hidden unit from fresh trajectories; the cards' metrics) and from the theory code
in :mod:`zoo.analysis.pattern_formation`, beside PAPERS.md and issue 13's targets:

* the ring radius k* of the DoG place-cell spectrum, analytic (9.81 rad/m) and from the task's
  512 place cells on a torus; the predicted grid spacing 4 pi / (sqrt 3 k*) = 0.739 m, and the
  spacing a code forms while the network cannot yet path-integrate (place cells blurred by the
  displacement since the start);
* pattern formation: median score_60 of ReLU maps (paper's check: ~0.76, 94% > 0.3) and tanh
  maps (~0.10); the spacings of a Sanger-orthogonalised hierarchy of maps;
* each network's decoding error (cm, top-3 place cells, with its standard error), fractions of
  units with score_60 > 0.3 and > 0.8, dead units, the median spacing of its grid units and the
  peak of its maps' spectrum, each target beside its value with a verdict.

Figures: ratemaps and autocorrelograms of the best and of typical units of both networks, their
gridness histograms, their spectra against the DoG ring, the symmetry of each unit's power on the
k* ring (bands against hexagons), the emergence curves logged during training, the place-cell
spectrum with its ring, pattern-formation maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..report import Row, Section, analysis_results, at_least, at_most, register_section, verdict

NAME = "path-integration/rnn-relu"
TANH = "path-integration/rnn-tanh"
NETWORKS = (NAME, TANH)
_FULL = {"pf_n": 55, "pf_maps": 32, "pf_steps": 1000, "cov_n": 55, "blur_trajectories": 5000}
_QUICK = {"pf_n": 40, "pf_maps": 8, "pf_steps": 300, "cov_n": 40, "blur_trajectories": 1000}


def _network(name: str, quick: bool) -> dict[str, Any]:
    """A shipped network's card, ratemaps, gridness and spectrum: the ``gridness`` and
    ``spectrum`` analyses' results, read through the bench's runner and cache."""
    import zoo
    from zoo.analysis.gridness import grid_scores, isotropic_surrogates, null_rank, null_threshold
    from zoo.analysis.pattern_formation import optimal_k
    from zoo.analysis.spatial_spectra import ring_angular_order
    from zoo.registry import task as entry_task
    from zoo.tasks.path_integration import silent_units

    grid = analysis_results("gridness", name, quick)
    spectrum = analysis_results("spectrum", name, quick)
    if name not in grid or name not in spectrum:
        from zoo.registry import missing_weights_message

        raise FileNotFoundError(missing_weights_message(name))
    g, sp, summary = grid[name].arrays, spectrum[name].arrays, grid[name].summary
    cells = entry_task(name).place_cells                  # the place cells it was trained with
    k_star, active = optimal_k(cells.sigma, cells.surround_scale), ~silent_units(g["maps"])
    maps, extent = g["maps"][active].astype(np.float64), tuple(float(e) for e in g["extent"])
    surrogates = isotropic_surrogates(maps, 2, seed=0).reshape(-1, *maps.shape[1:])
    # ellipse-corrected gridness (sheared lattices), against surrogates corrected the same way
    corrected = grid_scores(g["maps"], ellipse=True)
    threshold, null = null_threshold(g["maps"], g["null_score_60"].shape[1], seed=0, ellipse=True)
    return {"card": zoo.card(name), "maps": g["maps"], "active": active, "score_60": g["score_60"],
            "sac": g["sac"], "null": g["null_score_60"], "null_p95": summary.get("null_score_60_p95"),
            "null_rank": (summary.get("null_rank_60", float("nan")), summary.get("null_rank_60_se", float("nan"))),
            "k_star": k_star,   # angular order on the k* ring of each active unit and of 2 surrogates of it, [U, 3]
            "order": ring_angular_order(maps, extent, k_star), "surrogate_order": ring_angular_order(surrogates, extent, k_star),
            "k": sp["k"], "profile": sp["mean_profile"],
            "ellipse": {"score_60": corrected["score_60"], "axis_ratio": corrected["axis_ratio"], "null_p95": threshold,
                        "null": null, "rank": null_rank(corrected["score_60"], null)}}


def _unit_panels(net: dict, units: np.ndarray, title: str, ellipse: bool = False):
    """Ratemaps (top row) and autocorrelograms (bottom row) of ``units``, titled with score_60; with
    ``ellipse`` a third row of the ellipse-corrected autocorrelograms, titled with their score_60."""
    import matplotlib.pyplot as plt

    from zoo.analysis.gridness import ellipse_corrected

    fig, axes = plt.subplots(3 if ellipse else 2, len(units), figsize=(1.75 * len(units), 5.6 if ellipse else 3.8),
                             squeeze=False)
    corrected = ellipse_corrected(net["sac"][units])["sac"] if ellipse and len(units) else None
    for c, u in enumerate(units):
        axes[0, c].imshow(net["maps"][u], origin="lower", cmap="jet")
        axes[0, c].set_title(f"unit {u}: {net['score_60'][u]:.2f}", fontsize=7)
        axes[1, c].imshow(net["sac"][u], origin="lower", cmap="viridis")
        if corrected is not None:
            axes[2, c].imshow(corrected[c], origin="lower", cmap="viridis")
            axes[2, c].set_title(f"corr. {net['ellipse']['score_60'][u]:.2f}, "
                                 f"axes {net['ellipse']['axis_ratio'][u]:.2f}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def _figures(out: Path, nets: dict[str, dict], theory: dict, pf: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(fig, name):
        path = out / name
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    for name, net in nets.items():
        tag = name.split("/")[1]
        s60, alive = net["score_60"], np.flatnonzero(net["active"])
        save(_unit_panels(net, np.argsort(-s60)[:8], f"{name}: the 8 units with the highest score_60"),
             f"grid_{tag}_best_units.png")
        # typical units: the active units at 8 evenly spaced quantiles of score_60
        order = alive[np.argsort(s60[alive])]
        typical = order[np.linspace(0, len(order) - 1, 8).round().astype(int)] if len(order) else order
        if len(typical):
            save(_unit_panels(net, typical, f"{name}: typical units (active units at evenly spaced score_60 quantiles)"),
                 f"grid_{tag}_typical_units.png")
        e = net["ellipse"]   # the units that pass the ellipse-corrected null, best first (sheared lattices)
        passing = alive[e["score_60"][alive] > e["null_p95"]]
        if len(passing):
            save(_unit_panels(net, passing[np.argsort(-e["score_60"][passing])][:8],
                              f"{name}: the best of the {len(passing)} units above the ellipse-corrected null "
                              "(rows: ratemap, SAC, SAC with its peaks' ellipse made a circle)", ellipse=True),
                 f"grid_{tag}_ellipse_units.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bins = np.linspace(-1.5, 2.0, 50)
    for (name, net), colour in zip(nets.items(), ("tab:blue", "tab:orange")):
        s60, tag = net["score_60"][net["active"]], name.split("/")[1]
        ax.hist(s60, bins=bins, histtype="step", lw=1.5, density=True, color=colour,
                label=f"{tag}: {(net['score_60'] > 0.3).mean():.0%} > 0.3, {(net['score_60'] > 0.8).mean():.0%} > 0.8")
        if net["null_p95"] is not None:
            ax.hist(net["null"][np.isfinite(net["null"])], bins=bins, histtype="step", lw=1, ls=":", density=True,
                    color=colour, label=f"{tag}: isotropic surrogates, 95th percentile {net['null_p95']:.2f}")
    for t in (0.3, 0.8):
        ax.axvline(t, color="0.5", ls="--", lw=0.8)
    ax.set(xlabel="score_60 (active units)", ylabel="density", title="Gridness of the trained networks' units")
    ax.legend(fontsize=7)
    save(fig, "grid_score_histogram.png")

    from zoo.analysis.pattern_formation import dog_spectrum

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, net in nets.items():
        ax.plot(net["k"], net["profile"] / np.nanmax(net["profile"]), "o-", ms=3, label=f"{name.split('/')[1]} maps")
    kk = np.linspace(0, max(net["k"].max() for net in nets.values()), 400)
    ax.plot(kk, dog_spectrum(kk) / dog_spectrum(kk).max(), "k-", lw=1, label="DoG place cells |p~(k)|^2")
    ax.axvline(theory["k_star"], color="tab:red", ls="--", label=f"k* = {theory['k_star']:.2f} rad/m")
    ax.set(xlabel="|k| (rad/m)", ylabel="radially averaged power (max 1)", title="Learned maps' spectrum and the DoG ring")
    ax.legend(fontsize=7)
    save(fig, "grid_learned_spectrum.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.5))   # each unit's symmetry on the k* ring: bands, squares or hexagons
    for (name, net), colour in zip(nets.items(), ("tab:blue", "tab:orange")):
        tag, units, iso = name.split("/")[1], net["order"], net["surrogate_order"]
        ax.scatter(iso[:, 0], iso[:, 2], s=5, color=colour, alpha=0.2, marker="x", label=f"{tag}: isotropic surrogates")
        ax.scatter(units[:, 0], units[:, 2], s=7, color=colour, alpha=0.7, label=f"{tag}: active units")
    ax.annotate("hexagons", (0.05, 0.9), fontsize=8)
    ax.annotate("bands (one plane wave)", (0.62, 0.97), fontsize=8)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="m = 2 order (bands)", ylabel="m = 6 order (hexagons)",
           title="Symmetry of each unit's power on the k* ring")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, "grid_angular_order.png")

    curves = {name: net["card"].get("probes") for name, net in nets.items()}
    if any(c and len(c.get("step", [])) > 1 for c in curves.values()):  # emergence curves logged during training
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        for name, c in curves.items():
            if not c or len(c.get("step", [])) < 2:
                continue
            tag = name.split("/")[1]
            for key, ls in (("grid_fraction_0.3", "-"), ("grid_fraction_0.8", ":"), ("grid_fraction_above_null", "-."),
                            ("grid_fraction_ellipse_above_null", (0, (1, 3))), ("dead_fraction", "--")):
                if key in c:
                    axes[0].plot(c["step"], c[key], linestyle=ls, marker=".", label=f"{tag}: {key}")
            for key, ls in (("median_score_60", "-"), ("angular_order_2", "--"), ("angular_order_6", ":")):
                if key in c:   # angular order on the k* ring: bands (m = 2) come before hexagons (m = 6)
                    axes[1].plot(c["step"], c[key], linestyle=ls, marker=".", label=f"{tag}: {key}")
        axes[0].set(xlabel="training step", ylabel="fraction of units", title="Emergence during training")
        axes[1].set(xlabel="training step", ylabel="median over units", title="Gridness and angular order during training")
        for ax in axes:
            ax.legend(fontsize=7)
        save(fig, "grid_emergence.png")

    spec = theory["spectrum"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    kx, ky = spec["kx"], spec["ky"]
    axes[0].imshow(spec["spectrum"], origin="lower", extent=(kx[0], kx[-1], ky[0], ky[-1]), cmap="magma")
    t = np.linspace(0, 2 * np.pi, 200)
    axes[0].plot(theory["k_star"] * np.cos(t), theory["k_star"] * np.sin(t), "c--", lw=1)
    axes[0].set_xlim(-25, 25)
    axes[0].set_ylim(-25, 25)
    axes[0].set_xlabel("k_x (rad/m)")
    axes[0].set_ylabel("k_y (rad/m)")
    axes[0].set_title("Place-cell covariance spectrum, ring k*")
    prof = spec["profile"] / np.nanmax(spec["profile"])
    axes[1].plot(spec["k"], prof, "o", label="512 DoG place cells (torus)")
    from zoo.analysis.pattern_formation import dog_spectrum

    kk = np.linspace(0, spec["k"].max(), 400)
    analytic = dog_spectrum(kk)
    axes[1].plot(kk, analytic / analytic.max(), "-", label="|p~(k)|^2, analytic")
    axes[1].axvline(theory["k_star"], color="tab:red", ls="--", label="k*")
    axes[1].set_xlim(0, 40)
    axes[1].set_xlabel("|k| (rad/m)")
    axes[1].legend(fontsize=8)
    save(fig, "grid_place_cell_spectrum.png")

    fig, axes = plt.subplots(3, 8, figsize=(14, 5.6))
    rows = (("relu", pf["relu_maps"], pf["relu_score_60"]), ("tanh", pf["tanh_maps"], pf["tanh_score_60"]),
            ("Sanger", pf["sanger_maps"], pf["sanger_score_60"]))
    for r, (label, maps, s60) in enumerate(rows):
        for c in range(8):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(maps):
                ax.imshow(maps[c], origin="lower", cmap="jet")
                extra = f", {pf['sanger_spacing'][c]:.2f} m" if label == "Sanger" else ""
                ax.set_title(f"{label} {s60[c]:.2f}{extra}", fontsize=7)
    fig.suptitle("Pattern formation: ReLU maps, tanh maps, Sanger hierarchy (score_60, spacing)")
    save(fig, "grid_pattern_formation.png")
    return paths


# Issue 13's targets for the shipped ReLU network, on fresh ratemaps (the card's metrics):
# (kind, value, tolerance, what). One lattice shell of the 20-bin maps of the 2.2 m box is 2 pi / 2.2 rad/m.
TARGETS: dict[str, tuple[str, float, float, str]] = {
    "grid_fraction_0.3": (">=", 0.3, 0.1, "fraction of units with score_60 > 0.3"),
    "grid_fraction_0.8": (">=", 0.05, 0.02, "fraction of units with score_60 > 0.8"),
    "dead_fraction": ("<=", 0.05, 0.05, "fraction of dead units (constant over the box)"),
    "median_grid_spacing_m": ("~", 0.739, 0.1 * 0.739, "median spacing of grid units (score_60 > 0.3) (m)"),
    "spectrum_peak_rad_per_m": ("~", 9.81, 2 * np.pi / 2.2, "peak of the learned maps' spectrum (rad/m)"),
}


def target_verdicts(metrics: dict[str, Any]) -> dict[str, str]:
    """``{metric: "match" | "near" | "differs"}`` of a card's metrics against :data:`TARGETS`."""
    out = {}
    for key, (kind, value, tol, _) in TARGETS.items():
        ours = float(metrics.get(key, float("nan")))
        out[key] = (at_least(ours, value, tol) if kind == ">=" else at_most(ours, value, tol) if kind == "<="
                    else verdict(ours, value, tol))
    return out


def path_integrates(relu_cm: float, tanh_cm: float) -> bool:
    """Whether the tanh twin path-integrates about as well as the ReLU network: its decoding error
    (cm) within 2x, or within 5 cm, of the ReLU network's (the paper's control needs both to)."""
    return tanh_cm <= max(2 * relu_cm, relu_cm + 5.0)


def _network_rows(nets: dict[str, dict]) -> list[Row]:
    """Issue 13's targets for the ReLU network beside its card's values (fresh ratemaps, averaged
    over the card's draws), with the tanh network's values beside them (paper: no grids)."""
    relu, tanh = nets[NAME], nets.get(TANH)
    m = relu["card"].get("metrics", {})
    t = tanh["card"].get("metrics", {}) if tanh else {}

    def size(net):
        cfg, train = net["card"].get("config", {}), net["card"].get("training", {})
        return f"{cfg.get('hidden_size')} units, {train.get('steps')} steps"

    nan = float("nan")
    rows = [Row("ReLU network: decoding error (cm, top-3 place cells)",
                f"{m.get('decoding_error_cm', nan):.2f} +- {m.get('decoding_error_cm_se', nan):.2f}",
                "not stated in PAPERS.md",
                f"{size(relu)}; {m.get('decoding_positions')} fresh positions, +- s.e. over batches; "
                f"tanh: {t.get('decoding_error_cm', nan):.2f} +- {t.get('decoding_error_cm_se', nan):.2f}")]
    verdicts = target_verdicts(m)
    for key, (kind, value, tol, what) in TARGETS.items():
        target = f"{kind} {value:g}" if kind != "~" else f"{value:g} +- {tol:.3g}"
        rows.append(Row(f"ReLU network: {what}", round(float(m.get(key, nan)), 3), f"{target} (issue 13)",
                        f"card metrics, mean of {m.get('ratemap_draws', 1)} fresh ratemap draws; "
                        f"tanh: {float(t.get(key, nan)):.3f}", verdicts[key]))
    for tag, net in (("ReLU", relu), ("tanh", tanh)):  # gridness beyond chance: above the surrogates' null
        if net is None or net["null_p95"] is None:
            continue
        active = net["active"]                          # the non-constant units, which pass the null at 5%
        above, null = float((net["score_60"][active] > net["null_p95"]).mean()), net["null"][active]
        chance = 0.05 + 3 * np.sqrt(0.05 * 0.95 / active.sum())   # 3 s.d. above the 5% a null unit passes
        grids = above > chance
        rows.append(Row(f"{tag} network: fraction of active units above the null (score_60 > {net['null_p95']:.2f})",
                        round(above, 3), f"> {chance:.3f} for grids (5% + 3 s.d.)" if tag == "ReLU" else "no grids",
                        f"null: 95th percentile of score_60 over {net['null'].shape[1]} isotropic surrogates of every "
                        f"non-constant unit (its values and radial spectrum, power spread evenly within each shell); "
                        f"{(null > 0.3).mean():.0%} of the surrogates score > 0.3",
                        "match" if grids == (tag == "ReLU") else "differs"))
        rank, se = net["null_rank"]   # a population shift, which single units can miss (gridness.null_rank)
        rows.append(Row(f"{tag} network: mean rank of a unit's score_60 among its own surrogates'",
                        f"{rank:.3f} +- {se:.3f}", "> 0.5 + 3 s.e. for grids" if tag == "ReLU" else "no grids",
                        f"over the {int(active.sum())} active units, {net['null'].shape[1]} surrogates each; 0.5 at "
                        "chance, +- its chance s.e.; below 0.5: the units are less hexagonal than random fields with "
                        "their spectra", "match" if (rank > 0.5 + 3 * se) == (tag == "ReLU") else "differs"))
        rows.append(_ellipse_row(tag, net))
    if tanh is not None:  # the paper's claim: tanh units path-integrate but form no grids
        relu_grids, tanh_grids = float(m.get("grid_fraction_0.3", nan)), float(t.get("grid_fraction_0.3", nan))
        relu_cm, tanh_cm = float(m.get("decoding_error_cm", nan)), float(t.get("decoding_error_cm", nan))
        rows.append(Row("tanh network: decoding error (cm); fraction of units with score_60 > 0.3",
                        f"{tanh_cm:.1f}; {tanh_grids:.3f}", "path-integrates; no grids",
                        f"{size(tanh)}, the ReLU network's recipe; ReLU: {relu_cm:.1f}; {relu_grids:.3f}. "
                        "Match needs a decoding error within 2x (or 5 cm) of the ReLU network's and fewer grid units",
                        "match" if path_integrates(relu_cm, tanh_cm) and tanh_grids < relu_grids else "differs"))
    return rows


def _ellipse_row(tag: str, net: dict) -> Row:
    """Gridness of the ellipse-corrected autocorrelograms (:func:`zoo.analysis.gridness.ellipse_corrected`)
    against the same correction of the surrogates: the fraction of active units above its 95th percentile."""
    e, active = net["ellipse"], net["active"]
    s60, ratio = e["score_60"][active], e["axis_ratio"][active]
    above = float((s60 > e["null_p95"]).mean())
    chance = 0.05 + 3 * np.sqrt(0.05 * 0.95 / active.sum())
    rank, se = e["rank"]
    return Row(f"{tag} network: ellipse-corrected score_60, fraction of active units above the corrected null "
               f"(> {e['null_p95']:.2f})", round(above, 3),
               f"> {chance:.3f} (5% + 3 s.d.)" if tag == "ReLU" else "no grids",
               f"the ellipse through each SAC's six central peaks stretched to a circle (Brandon et al. 2011), "
               f"surrogates alike; corrected score_60 > 0.3: {(s60 > 0.3).mean():.1%}, > 0.8: {(s60 > 0.8).mean():.1%}; "
               f"mean rank {rank:.3f} +- {se:.3f}; median axis ratio {np.nanmedian(ratio):.2f}. Any lattice is a "
               "linear image of a hexagonal one, so sheared hexagons and two-wave (rhombic or square) lattices both pass",
               "match" if (above > chance) == (tag == "ReLU") else "differs")


def _order_rows(nets: dict[str, dict]) -> list[Row]:
    """Which symmetry the units' power has on the k* ring of their own place cells
    (:func:`zoo.analysis.spatial_spectra.ring_angular_order`: m = 2 bands, 4 squares, 6 hexagons),
    medians over the active units, beside their isotropic surrogates'; the stage of pattern
    formation the network reached (the ReLU networks' m = 2 comes from bands and from sheared
    lattices, which have one wave-vector pair on the ring; README)."""
    from zoo.analysis.spatial_spectra import median_angular_order

    rows = []
    for name, net in nets.items():
        if not len(net["order"]):
            continue
        (m2, m4, m6), iso = median_angular_order(net["order"]), median_angular_order(net["surrogate_order"])
        hexagonal = m6 > max(m2, m4) and m6 > iso[2]
        relu = name == NAME
        rows.append(Row(f"{'ReLU' if relu else 'tanh'} network: angular order on the k* ring, m = 2 / 4 / 6",
                        f"{m2:.2f} / {m4:.2f} / {m6:.2f}", "m = 6 highest (hexagons)" if relu else "not hexagonal",
                        f"medians over the {len(net['order'])} active units of abs(sum P(k) e^(i m theta)) / sum P(k) "
                        f"within one shell of k* = {net['k_star']:.2f} rad/m: bands give m = 2 near 1, squares m = 4, "
                        f"hexagons m = 6 (m = 2 near 0); their isotropic surrogates {iso[0]:.2f} / {iso[1]:.2f} / {iso[2]:.2f}",
                        "match" if hexagonal == relu else "differs"))
    return rows


@register_section("grid-cells", title="Grid cells from path integration (Sorscher et al. 2019)",
                  needs=[(analysis, name) for name in NETWORKS for analysis in ("gridness", "spectrum")])
def grid_cells(out_dir: Path, quick: bool) -> Section:
    import torch

    from zoo.analysis.pattern_formation import (blurred_optimal_k, covariance_spectrum, grid_spacing, optimal_k,
                                                pattern_formation)
    from zoo.analysis.spatial_spectra import ring_radius
    from zoo.registry import task as entry_task
    from zoo.tasks.path_integration import PlaceCells

    settings = _QUICK if quick else _FULL
    cells = PlaceCells(periodic=True)
    k_star = optimal_k(cells.sigma, cells.surround_scale)
    spec = covariance_spectrum(cells, n=settings["cov_n"])
    k_emp = float(ring_radius(spec["k"], spec["profile"]))
    theory = {"k_star": k_star, "spectrum": spec}
    pf = pattern_formation(cells, n=settings["pf_n"], n_maps=settings["pf_maps"], steps=settings["pf_steps"])
    nets = {name: _network(name, quick) for name in NETWORKS}
    task = entry_task(NAME)     # the trained networks' task: its time step and sequence length
    moved = task.start_displacements(settings["blur_trajectories"], torch.Generator().manual_seed(0)).numpy()
    blurred_spacing = grid_spacing(blurred_optimal_k(moved, task.place_cells.sigma, task.place_cells.surround_scale))

    dk = spec["k"][1] - spec["k"][0]
    rows = [
        Row("ring radius k* of the DoG spectrum (rad/m), analytic", round(k_star, 3), 9.81, "tolerance 0.01",
            verdict(k_star, 9.81, 0.01)),
        Row("ring radius of the 512 place cells' covariance (rad/m)", round(k_emp, 2), 9.81,
            f"Fourier lattice spacing {dk:.2f} rad/m ({settings['cov_n']}^2 torus); tolerance one shell",
            verdict(k_emp, 9.81, dk)),
        Row("predicted grid spacing 4 pi / (sqrt 3 k*) (m)", round(grid_spacing(k_star), 3), 0.739, "tolerance 0.001",
            verdict(grid_spacing(k_star), 0.739, 0.001)),
        Row("grid spacing of a code that does not path-integrate (m)", round(blurred_spacing, 3), "not in the paper",
            f"peak of S(k) phi(k)^2: place cells blurred by the displacement from the start "
            f"({task.sequence_length} steps of {task.dt} s; README, 'Why the lattices form too large')"),
        Row("pattern formation: median score_60, ReLU", round(pf["relu_median_score_60"], 3), "~0.76",
            f"{len(pf['relu_maps'])} maps, {settings['pf_n']}^2 grid, {settings['pf_steps']} steps; "
            f"{pf['relu_fraction_0.3']:.0%} > 0.3 (paper's check: 94%); target >= 0.6",
            at_least(pf["relu_median_score_60"], 0.6, 0.2)),
        Row("pattern formation: median score_60, tanh", round(pf["tanh_median_score_60"], 3), "~0.10",
            "no grids: target < 0.3", "match" if pf["tanh_median_score_60"] < 0.3 else "differs"),
        Row("Sanger hierarchy: spacings in learning order (m)",
            ", ".join("-" if not np.isfinite(s) else f"{s:.2f}" for s in pf["sanger_spacing"]),
            "increasing spacing", "several maps orthogonalised in learning order"),
    ] + _network_rows(nets) + _order_rows(nets)
    text = ("Network rows give the cards' metrics (fresh ratemaps, `zoo eval`); the figures are views of the "
            "`gridness` and `spectrum` analyses (`zoo bench gridness spectrum`).")
    figures = _figures(out_dir / "grid-cells", nets, theory, pf)
    return Section(title="Grid cells from path integration (Sorscher et al. 2019)", figures=figures, rows=rows, text=text)
