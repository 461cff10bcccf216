"""Report section "grid-cells": Sorscher, Mel, Ganguli & Ocko (NeurIPS 2019), grid cells from path
integration through the lens of pattern formation.

From the shipped ``path-integration/rnn-relu`` network (ratemaps of every hidden unit from fresh
trajectories) and from the theory code in :mod:`zoo.analysis.pattern_formation`, beside PAPERS.md:

* the ring radius k* of the DoG place-cell spectrum, analytic (9.81 rad/m) and from the task's
  512 place cells on a torus; the predicted grid spacing 4 pi / (sqrt 3 k*) = 0.739 m;
* the network's decoding error (cm, top-3 place cells), its fraction of units with
  score_60 > 0.3 and > 0.8, the spacing of its grid units, and the peak of its maps' spectrum;
* pattern formation: median score_60 of ReLU maps (paper's check: ~0.76, 94% > 0.3) and tanh
  maps (~0.10); the spacings of a Sanger-orthogonalised hierarchy of maps.

Figures: ratemaps of the best units, their autocorrelograms, the gridness histogram, the
place-cell spectrum with its ring, the learned maps' spectrum, pattern-formation maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..report import Row, Section, analysis_results, at_least, register_section, verdict

NAME = "path-integration/rnn-relu"
_FULL = {"pf_n": 55, "pf_maps": 32, "pf_steps": 1000, "cov_n": 55}
_QUICK = {"pf_n": 40, "pf_maps": 8, "pf_steps": 300, "cov_n": 40}


def _network(quick: bool) -> dict[str, Any]:
    """The shipped network's ratemaps, gridness, spacing and spectrum: the ``gridness`` and
    ``spectrum`` analyses' results, read through the bench's runner and cache."""
    import zoo
    from zoo.tasks.path_integration import silent_units

    grid = analysis_results("gridness", NAME, quick)
    spectrum = analysis_results("spectrum", NAME, quick)
    if NAME not in grid or NAME not in spectrum:
        from zoo.registry import missing_weights_message

        raise FileNotFoundError(missing_weights_message(NAME))
    g, sp = grid[NAME].arrays, spectrum[NAME]
    maps = g["maps"]
    k = sp.arrays["k"]
    return {"card": zoo.card(NAME), "maps": maps, "extent": tuple(g["extent"]),
            "active": ~silent_units(maps),
            "scores": {"score_60": g["score_60"], "sac": g["sac"]}, "spacing": g["spacing"],
            "k": k, "profile": sp.arrays["mean_profile"], "ring": float(sp.summary["ring_radius_rad_per_m"]),
            "dk": float(k[1] - k[0])}


def _figures(out: Path, net: dict | None, theory: dict, pf: dict) -> list[Path]:
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

    if net is not None:
        s60 = net["scores"]["score_60"]
        best = np.argsort(-s60)[:16]
        for kind in ("ratemaps", "autocorrelograms"):
            fig, axes = plt.subplots(2, 8, figsize=(14, 4))
            for ax, u in zip(axes.ravel(), best):
                img = net["maps"][u] if kind == "ratemaps" else net["scores"]["sac"][u]
                ax.imshow(img, origin="lower", cmap="jet" if kind == "ratemaps" else "viridis")
                ax.set_title(f"unit {u}: {s60[u]:.2f}", fontsize=8)
                ax.axis("off")
            fig.suptitle(f"{NAME}: {kind} of the 16 units with the highest score_60")
            save(fig, f"grid_best_{kind}.png")
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(s60[net["active"]], bins=40, color="0.4")
        for t, c in ((0.3, "tab:orange"), (0.8, "tab:red")):
            ax.axvline(t, color=c, ls="--", label=f"{t}: {(s60 > t).mean():.1%} of units")
        ax.set_xlabel("score_60")
        ax.set_ylabel("units")
        ax.legend(fontsize=8)
        ax.set_title("Gridness of the trained network's units")
        save(fig, "grid_score_histogram.png")
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(net["k"], net["profile"], "o-", label="learned ratemaps (mean)")
        ax.axvline(theory["k_star"], color="tab:red", ls="--", label=f"k* = {theory['k_star']:.2f} rad/m")
        ax.set_xlabel("|k| (rad/m)")
        ax.set_ylabel("radially averaged power")
        ax.legend(fontsize=8)
        ax.set_title("Spectrum of the learned maps")
        save(fig, "grid_learned_spectrum.png")
        probes = net["card"].get("probes")
        if probes and len(probes.get("step", [])) > 1:  # the emergence curve logged during training
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for key, label in (("grid_fraction_0.3", "score_60 > 0.3"), ("grid_fraction_0.8", "score_60 > 0.8"),
                               ("dead_fraction", "dead units")):
                if key in probes:
                    ax.plot(probes["step"], probes[key], marker=".", label=label)
            ax.set(xlabel="training step", ylabel="fraction of units", title=f"{NAME}: emergence during training")
            ax.legend(fontsize=8)
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


@register_section("grid-cells", title="Grid cells from path integration (Sorscher et al. 2019)",
                  needs=[("gridness", NAME), ("spectrum", NAME)])
def grid_cells(out_dir: Path, quick: bool) -> Section:
    from zoo.analysis.pattern_formation import covariance_spectrum, grid_spacing, optimal_k, pattern_formation
    from zoo.analysis.spatial_spectra import ring_radius
    from zoo.tasks.path_integration import PlaceCells

    settings = _QUICK if quick else _FULL
    cells = PlaceCells(periodic=True)
    k_star = optimal_k(cells.sigma, cells.surround_scale)
    spec = covariance_spectrum(cells, n=settings["cov_n"])
    k_emp = float(ring_radius(spec["k"], spec["profile"]))
    theory = {"k_star": k_star, "spectrum": spec}
    pf = pattern_formation(cells, n=settings["pf_n"], n_maps=settings["pf_maps"], steps=settings["pf_steps"])
    net = _network(quick)

    dk = spec["k"][1] - spec["k"][0]
    rows = [
        Row("ring radius k* of the DoG spectrum (rad/m), analytic", round(k_star, 3), 9.81, "tolerance 0.01",
            verdict(k_star, 9.81, 0.01)),
        Row("ring radius of the 512 place cells' covariance (rad/m)", round(k_emp, 2), 9.81,
            f"Fourier lattice spacing {dk:.2f} rad/m ({settings['cov_n']}^2 torus); tolerance one shell",
            verdict(k_emp, 9.81, dk)),
        Row("predicted grid spacing 4 pi / (sqrt 3 k*) (m)", round(grid_spacing(k_star), 3), 0.739, "tolerance 0.001",
            verdict(grid_spacing(k_star), 0.739, 0.001)),
        Row("pattern formation: median score_60, ReLU", round(pf["relu_median_score_60"], 3), "~0.76",
            f"{len(pf['relu_maps'])} maps, {settings['pf_n']}^2 grid, {settings['pf_steps']} steps; "
            f"{pf['relu_fraction_0.3']:.0%} > 0.3 (paper's check: 94%); target >= 0.6",
            at_least(pf["relu_median_score_60"], 0.6, 0.2)),
        Row("pattern formation: median score_60, tanh", round(pf["tanh_median_score_60"], 3), "~0.10",
            "no grids: target < 0.3", "match" if pf["tanh_median_score_60"] < 0.3 else "differs"),
        Row("Sanger hierarchy: spacings in learning order (m)",
            ", ".join("-" if not np.isfinite(s) else f"{s:.2f}" for s in pf["sanger_spacing"]),
            "increasing spacing", "several maps orthogonalised in learning order"),
    ]
    m = net["card"].get("metrics", {})
    s60 = net["scores"]["score_60"]
    grid_spacings = net["spacing"][(s60 > 0.3) & np.isfinite(net["spacing"])]
    cfg = net["card"].get("config", {})
    spacing = float(np.median(grid_spacings)) if len(grid_spacings) else None
    train = net["card"].get("training", {})
    rows += [
        Row("network: decoding error (cm, top-3 place cells)", f"{m.get('decoding_error_cm', float('nan')):.2f}"
            + (f" +- {m['decoding_error_cm_se']:.2f}" if "decoding_error_cm_se" in m else ""),
            "not stated in PAPERS.md", f"{cfg.get('hidden_size')} units, {train.get('steps')} steps, "
            f"{m.get('decoding_positions', 'a few thousand')} fresh positions; card metrics"),
        Row("network: fraction of dead units (constant over the box)", f"{float((~net['active']).mean()):.3f}",
            "", f"card (two draws): {m.get('dead_fraction', float('nan')):.3f}; issue 13's target < 0.05",
            "match" if (~net["active"]).mean() < 0.05 else "differs"),
        Row("network: fraction of units with score_60 > 0.3", round(float((s60 > 0.3).mean()), 3), "report honestly",
            f"card: {m.get('grid_fraction_0.3', float('nan')):.3f}; issue 13's target >= 0.3",
            at_least(float((s60 > 0.3).mean()), 0.3, 0.1)),
        Row("network: fraction of units with score_60 > 0.8", round(float((s60 > 0.8).mean()), 3), "report honestly",
            f"card: {m.get('grid_fraction_0.8', float('nan')):.3f}; issue 13's target >= 0.05",
            at_least(float((s60 > 0.8).mean()), 0.05, 0.02)),
        Row("network: median spacing of grid units (score_60 > 0.3) (m)",
            round(spacing, 3) if spacing is not None else "no grid units", 0.739,
            f"{len(grid_spacings)} units; bin {net['extent'][1] * 2 / net['maps'].shape[-1]:.2f} m; tolerance 10%",
            verdict(spacing, 0.739, 0.1, relative=True)),
        Row("network: peak of the learned maps' spectrum (rad/m)", round(net["ring"], 2), round(k_star, 2),
            f"lattice spacing {net['dk']:.2f} rad/m ({net['maps'].shape[-1]} bins); tolerance one shell",
            verdict(net["ring"], k_star, net["dk"])),
    ]
    text = "Network rows are views of the `gridness` and `spectrum` analyses (`zoo bench gridness spectrum`)."
    figures = _figures(out_dir / "grid-cells", net, theory, pf)
    return Section(title="Grid cells from path integration (Sorscher et al. 2019)", figures=figures, rows=rows, text=text)
