"""Report section "retina": McIntosh, Maheswaranathan, Nayebi, Ganguli & Baccus (NeurIPS 2016), CNN
models of the retina, on the zoo's simulated retina (PAPERS.md section 3).

A view over the ``response-prediction`` analysis (:mod:`zoo.analysis.response_prediction`), which
``zoo bench`` runs on every retina entry: held-out repeats simulated afresh (a seed no training run
used; natural scenes from photographs no model saw), each model with its own training normalisation.

* per-cell Pearson correlation with the trial-averaged rate (10 ms Gaussian), mean +- s.e.m. over
  cells, fraction of explainable variance, and the split-half reliability ceiling;
* generalisation: natural-scene models tested on white noise and the reverse;
* data efficiency: the CNN and the LN model trained on 5-100% of the data (``retina-natural/
  {cnn,ln}-<pct>pct``), held-out r and the train/test gap (from the cards);
* what the CNN learned: its first-layer filters against the true bipolar subunits (best spatial
  and temporal correlation per filter) and the cells' receptive fields (STA to white noise) of
  the true circuit beside the models'.

Figures: stimulus frames, predicted vs recorded rates, the comparison bars with the ceiling,
receptive fields, CNN filters beside the true subunits, data-efficiency curves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.response_prediction import mean_sem
from ..report import Row, Section, analysis_results, register_section

KINDS = ("natural", "whitenoise")
MODELS = ("cnn", "glm", "ln")
PATTERN = "retina-*/*"


def _data_efficiency(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per model kind (cnn, ln): one point per training fraction, sorted, with the held-out r and the
    train/test gap from the cards (per-bin r and Poisson NLL on the model's own training blocks)."""
    import zoo

    curves: dict[str, list[dict[str, Any]]] = {}
    for kind in ("cnn", "ln"):
        points = []
        for name in sorted(results):
            task, model = name.split("/")
            if task != "retina-natural" or model.split("-")[0] != kind:
                continue
            fraction = zoo.get_entry(name).task_kwargs.get("train_fraction", 1.0)
            metrics = zoo.card(name).get("metrics", {})
            r, sem = mean_sem(results[name].arrays["natural_per_cell"])
            points.append({"entry": name, "fraction": fraction, "r": r, "sem": sem,
                           "train_bin_r": metrics.get("train_bin_correlation"),
                           "test_bin_r": metrics.get("test_bin_correlation"),
                           "train_nll": metrics.get("train_poisson_nll"), "test_nll": metrics.get("poisson_nll")})
        curves[kind] = sorted(points, key=lambda p: p["fraction"])
    return curves


@register_section("retina", title="CNN models of the retina (McIntosh et al. 2016), on a simulated retina",
                  needs=[("response-prediction", PATTERN)])
def retina(out_dir: Path, quick: bool) -> Section:
    import zoo
    from zoo.analysis.response_prediction import filter_recovery
    from zoo.analysis.response_prediction import spatial_rf
    from zoo.models.retina import RetinaCNN
    from zoo.tasks.retina import make_stimulus

    found = analysis_results("response-prediction", PATTERN, quick)
    results = {n: found[n] for n in (f"retina-{k}/{m}" for k in KINDS for m in MODELS) if n in found}
    if not results:
        from zoo.registry import missing_weights_message

        raise FileNotFoundError(missing_weights_message("retina-natural/cnn") + " (and the other retina entries)")
    first = next(iter(results.values()))
    settings = {k: first.summary[k] for k in ("seed", "frames", "repeats")}
    ceilings = {kind: first.arrays[f"{kind}_ceiling_per_cell"] for kind in KINDS}
    task = zoo.task("retina-natural/cnn")
    circuit = task.circuit

    rows: list[Row] = []
    for kind in KINDS:
        ceil_m, ceil_s = mean_sem(ceilings[kind])
        rows.append(Row(f"{kind}: reliability ceiling (split-half r)", f"{ceil_m:.3f} +- {ceil_s:.3f}",
                        "salamander: ~0.7-0.9 (data-dependent)", f"{settings['repeats']} repeats, {settings['frames']} bins"))
        for m in MODELS:
            n = f"retina-{kind}/{m}"
            if n not in results:
                rows.append(Row(f"{kind}: {m.upper()} test r", "not shipped", "", f"run `zoo train {n}`"))
                continue
            s = results[n].summary
            note = "mean +- s.e.m. over cells" + ("; open loop (own simulated spikes)" if m == "glm" else "")
            rows.append(Row(f"{kind}: {m.upper()} test r (FEV)", f"{s[f'{kind}_correlation']:.3f} +- "
                            f"{s[f'{kind}_correlation_sem']:.3f} ({s[f'{kind}_fev']:.2f})",
                            "CNN > GLM ~ LN; CNN near ceiling" if m == "cnn" else "below CNN", note))
        cnn, ln, glm = (results.get(f"retina-{kind}/{m}") for m in MODELS)
        if cnn and ln and glm:
            per_cell = {m: r.arrays[f"{kind}_per_cell"] for m, r in (("cnn", cnn), ("ln", ln), ("glm", glm))}
            dm, ds = mean_sem(per_cell["cnn"] - np.maximum(per_cell["ln"], per_cell["glm"]))
            # match: CNN above both baselines by more than 2 s.e.m.; near: a tie within 2 s.e.m.
            judged = "match" if dm > 2 * ds and dm > 0 else ("near" if abs(dm) <= 2 * ds else "differs")
            rows.append(Row(f"{kind}: CNN minus best baseline (per cell)", f"{dm:+.3f} +- {ds:.3f}",
                            "CNN clearly better", "match: > 2 s.e.m. above; near: within 2 s.e.m. (a tie)", judged))
            rows.append(Row(f"{kind}: CNN r / ceiling", f"{cnn.summary[f'{kind}_ratio']:.2f}", "close to 1", ""))
    nat, wn = results.get("retina-natural/cnn"), results.get("retina-whitenoise/cnn")
    if nat and wn:
        a = nat.summary["whitenoise_correlation"] / wn.summary["whitenoise_correlation"]
        b = wn.summary["natural_correlation"] / nat.summary["natural_correlation"]
        rows.append(Row("generalisation: natural-CNN on white noise / white-noise CNN",
                        f"{nat.summary['whitenoise_correlation']:.3f} / {wn.summary['whitenoise_correlation']:.3f} ({a:.2f})",
                        "natural -> white noise generalises", ""))
        rows.append(Row("generalisation: white-noise CNN on natural / natural CNN",
                        f"{wn.summary['natural_correlation']:.3f} / {nat.summary['natural_correlation']:.3f} ({b:.2f})",
                        "worse than the reverse", "ratio below the reverse's", "match" if a > b else "differs"))
    truth = task.true_subunits()
    chance = filter_recovery(*RetinaCNN(n_cells=circuit.n_cells, seed=0).first_layer_filters(), *truth)  # untrained
    for n, r in results.items():
        if "filter_recovery_spatial" in r.summary:
            rows.append(Row(f"{n}: first-layer filters vs true subunits (best r, space / time)",
                            f"{r.summary['filter_recovery_spatial']:.2f} / {r.summary['filter_recovery_temporal']:.2f}",
                            "internal units resemble interneurons",
                            f"{len(r.arrays['filter_recovery_spatial'])} filters, mean of best matches; untrained start "
                            f"{chance['spatial'].mean():.2f} / {chance['temporal'].mean():.2f}"))
    curves = _data_efficiency(found)
    rows += _efficiency_rows(curves)
    text = (f"A view over `zoo bench response-prediction` (results/response-prediction.h5) on every retina entry. "
            f"Held-out data: simulated afresh (seed {settings['seed']}, which no training run used), "
            f"{settings['frames']} bins x {settings['repeats']} repeats per stimulus; natural scenes from the two "
            "held-out photographs; each model with its own training normalisation (from its card). "
            "Data efficiency: `retina-natural/{cnn,ln}-<pct>pct` are the same recipe and steps on the first 5, 10, 25 "
            "and 50% of the training blocks (one seed each); the train/test gap is the per-bin Pearson r of the "
            "prediction with single-trial spike counts on the model's own training blocks minus the same on the "
            "held-out repeats (from the cards).")
    figures = _figures(out_dir, results, ceilings, circuit, make_stimulus, spatial_rf, truth, curves)
    return Section(title="CNN models of the retina (McIntosh et al. 2016), on a simulated retina",
                   figures=figures, rows=rows, text=text)


def _efficiency_rows(curves: dict[str, list[dict[str, Any]]]) -> list[Row]:
    """Held-out r and the train/test gap per training fraction; the paper's claims as verdicts."""
    rows = []
    for kind, points in curves.items():
        for p in points:
            gap = (p["train_bin_r"] - p["test_bin_r"]) if p["train_bin_r"] is not None else None
            rows.append(Row(f"data efficiency: {kind.upper()} at {p['fraction']:.0%} of the data, test r (train - test "
                            "per-bin r)", f"{p['r']:.3f} +- {p['sem']:.3f}" + (f" ({gap:+.3f})" if gap is not None else ""),
                            "CNN above LN at every size", p["entry"]))
    cnn = {p["fraction"]: p for p in curves.get("cnn", [])}
    ln = {p["fraction"]: p for p in curves.get("ln", [])}
    both = sorted(set(cnn) & set(ln))
    if len(both) >= 2:
        above = sum(cnn[f]["r"] > ln[f]["r"] for f in both)
        rows.append(Row("data efficiency: fractions where the CNN beats the LN model", f"{above} of {len(both)}",
                        "CNN better at all sizes", "held-out r", "match" if above == len(both) else "differs"))
        gaps = [(f, cnn[f], ln[f]) for f in both if cnn[f]["train_bin_r"] is not None and ln[f]["train_bin_r"] is not None]
        small = [g for g in gaps if g[0] <= 0.1]
        if small:
            def below(c, l_):
                return (c["train_bin_r"] - c["test_bin_r"]) < (l_["train_bin_r"] - l_["test_bin_r"])

            smaller = sum(below(c, l_) for _, c, l_ in small)
            rows.append(Row("data efficiency: small-data fractions (<= 10%) where the CNN's train/test gap is below the LN's",
                            f"{smaller} of {len(small)}", "CNNs overfit less than LN models on small data",
                            "gap in per-bin r; at every fraction: " + ", ".join(f"{f:.0%} {'below' if below(c, l_) else 'above'}"
                                                                               for f, c, l_ in gaps),
                            "match" if smaller == len(small) else "differs"))
    return rows


def _figures(out: Path, results, ceilings, circuit, make_stimulus, spatial_rf, truth, curves) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    # stimulus frames
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.3))
    for row, kind in enumerate(KINDS):
        frames = make_stimulus(kind, 300, torch.Generator().manual_seed(0), split="test")
        for col, t in enumerate((0, 5, 50, 150, 250)):
            axes[row, col].imshow(frames[t], cmap="gray", vmin=-1, vmax=1)
            axes[row, col].set_title(f"{kind} t={t * 10} ms", fontsize=8)
            axes[row, col].axis("off")
    fig.suptitle("stimuli (50 x 50 px of 50 um, 10 ms frames; contrast)")
    paths.append(_save(fig, out / "retina_stimuli.png"))

    # predicted vs recorded rates
    fig, axes = plt.subplots(2, 2, figsize=(12, 5.5), sharex=True)
    colors = {"cnn": "tab:red", "glm": "tab:green", "ln": "tab:blue"}
    for row, kind in enumerate(KINDS):
        first = next(iter(results.values()))
        target, t = first.arrays[f"{kind}_target"], _seconds(first, kind, "target")
        for col, cell in enumerate((0, circuit.n_cells // 2)):
            ax = axes[row, col]
            ax.plot(t, target[cell], color="k", lw=1.2, label="recorded (trial mean)")
            for m in MODELS:
                n = f"retina-{kind}/{m}"
                if n in results:
                    ax.plot(_seconds(results[n], kind, "pred"), results[n].arrays[f"{kind}_pred"][cell], color=colors[m],
                            lw=0.9, label=f"{m.upper()} r={results[n].arrays[f'{kind}_per_cell'][cell]:.2f}")
            ax.set_xlim(t[0], t[0] + min(5.0, t[-1] - t[0]))
            ax.set_title(f"{kind}, cell {cell + 1} ({circuit.cell_types[cell]})", fontsize=9)
            ax.set_ylabel("rate (Hz)")
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (s)")
    paths.append(_save(fig, out / "retina_rates.png"))

    # comparison bars with the ceiling, and generalisation
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, test_kind in zip(axes, KINDS):
        labels, means, sems = [], [], []
        for train_kind in KINDS:
            for m in MODELS:
                n = f"retina-{train_kind}/{m}"
                if n in results:
                    mm, ms = mean_sem(results[n].arrays[f"{test_kind}_per_cell"])
                    labels.append(f"{m.upper()}\n({'nat' if train_kind == 'natural' else 'wn'})")
                    means.append(mm)
                    sems.append(ms)
        x = np.arange(len(labels))
        ax.bar(x, means, yerr=sems, color=["tab:red" if "CNN" in lab else "tab:green" if "GLM" in lab else "tab:blue"
                                          for lab in labels], alpha=0.8, capsize=3)
        c, cs = mean_sem(ceilings[test_kind])
        ax.axhline(c, color="k", ls="--", label=f"ceiling {c:.2f}")
        ax.axhspan(c - cs, c + cs, color="k", alpha=0.1)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(f"tested on {test_kind} (trained on nat / wn)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("correlation with trial-averaged rate")
    paths.append(_save(fig, out / "retina_comparison.png"))

    # receptive fields: truth vs models
    true_rf = spatial_rf(circuit.receptive_fields(2000, seed=1)).numpy()
    cols = [("true circuit", true_rf)] + [(n.replace("retina-", ""), results[n].arrays["rf"]) for n in sorted(results)]
    cells = (0, circuit.n_cells // 2)
    fig, axes = plt.subplots(len(cells), len(cols), figsize=(1.9 * len(cols), 2.1 * len(cells)), squeeze=False)
    for i, cell in enumerate(cells):
        r, c = (int(v) for v in circuit.centres[cell].round())
        for j, (label, rfs) in enumerate(cols):
            rf = rfs[cell][max(0, r - 10):r + 11, max(0, c - 10):c + 11]
            lim = np.abs(rf).max() + 1e-12
            axes[i, j].imshow(rf, cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[i, j].set_title(f"{label}\ncell {cell + 1} {circuit.cell_types[cell]}", fontsize=7)
            axes[i, j].axis("off")
    fig.suptitle("spatial receptive fields (white-noise STA at the peak lag; 1 mm square)")
    paths.append(_save(fig, out / "retina_receptive_fields.png"))

    # CNN filters beside the true subunits
    recovery = {n: r.arrays for n, r in sorted(results.items()) if "filters_spatial" in r.arrays}
    if recovery:
        fig, axes = plt.subplots(len(recovery), 10, figsize=(16, 1.9 * len(recovery)), squeeze=False)
        k = next(iter(recovery.values()))["filters_spatial"].shape[-1]
        c0 = truth[0].shape[-1] // 2
        dog = truth[0][c0 - k // 2:c0 + k // 2 + 1, c0 - k // 2:c0 + k // 2 + 1].numpy()
        for i, (n, rec) in enumerate(recovery.items()):
            axes[i, 0].imshow(dog, cmap="RdBu_r", vmin=-np.abs(dog).max(), vmax=np.abs(dog).max())
            axes[i, 0].set_title("true subunit (DoG)", fontsize=7)
            axes[i, 0].axis("off")
            for j, f in enumerate(rec["filters_spatial"][:8]):
                lim = np.abs(f).max() + 1e-12
                axes[i, j + 1].imshow(f, cmap="RdBu_r", vmin=-lim, vmax=lim)
                axes[i, j + 1].set_title(f"{n.split('/')[0][7:]} f{j + 1}: r={rec['filter_recovery_spatial'][j]:.2f}",
                                         fontsize=7)
                axes[i, j + 1].axis("off")
            ax = axes[i, 9]
            lags = np.arange(circuit.k_on.shape[0]) * 10
            k_on, k_off = circuit.k_on.numpy(), circuit.k_off.numpy()
            ax.plot(lags, k_on / np.abs(k_on).max(), "k-", lw=2, label="true ON")
            ax.plot(lags, k_off / np.abs(k_off).max(), "k--", lw=2, label="true OFF")
            for tf in rec["filters_temporal"]:
                tf = tf[: len(lags)]
                ax.plot(lags, tf / (np.abs(tf).max() + 1e-12), lw=0.7, alpha=0.7)
            ax.set_xlabel("lag (ms)", fontsize=7)
            ax.legend(fontsize=6)
        paths.append(_save(fig, out / "retina_cnn_filters.png"))

    # data efficiency: held-out r and the train/test gap against the fraction of training data
    if any(len(points) > 1 for points in curves.values()):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for kind, points in curves.items():
            if not points:
                continue
            f = np.array([p["fraction"] for p in points]) * 100
            ax1.errorbar(f, [p["r"] for p in points], yerr=[p["sem"] for p in points], marker="o", capsize=3,
                         color=colors[kind], label=kind.upper())
            gaps = [(x, p["train_bin_r"] - p["test_bin_r"]) for x, p in zip(f, points) if p["train_bin_r"] is not None]
            if gaps:
                ax2.plot(*zip(*gaps), marker="o", color=colors[kind], label=kind.upper())
        c, _ = mean_sem(ceilings["natural"])
        ax1.axhline(c, color="k", ls="--", label=f"ceiling {c:.2f}")
        for ax in (ax1, ax2):
            ax.set_xscale("log"), ax.set_xlabel("training data (% of 54k bins)"), ax.legend(fontsize=8)
            ax.set_xticks([5, 10, 25, 50, 100]), ax.set_xticklabels(["5", "10", "25", "50", "100"])
        ax1.set_ylabel("held-out r (trial-averaged rate)"), ax1.set_title("natural scenes: test correlation")
        ax2.set_ylabel("train - test per-bin r"), ax2.set_title("overfitting: train/test gap")
        ax2.axhline(0, color="0.5", lw=0.8)
        paths.append(_save(fig, out / "retina_data_efficiency.png"))
    return paths


def _seconds(result: Any, kind: str, trace: str) -> np.ndarray:
    """Times (s) of a stored trace: each model's starts at its own first bin (its block size sets the span)."""
    return (np.arange(result.arrays[f"{kind}_{trace}"].shape[1]) + result.summary[f"{kind}_trace_start_bin"]) * 0.01


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
