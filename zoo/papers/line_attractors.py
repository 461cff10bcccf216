"""Report section "line-attractors": Maheswaranathan et al. (NeurIPS 2019) across the sentiment zoo.

For every shipped recurrent sentiment entry (IMDB and SST; vanilla, GRU, LSTM, UGRNN) this runs
the shared analyses on the trained network and tabulates, beside the paper's findings:

* variance of the visited states explained by the top 1, 2, 3 principal components (paper: the
  top 2-3 explain ~90%);
* unique fixed points with q < 1e-8 at zero input (q = (1/N)||F(h, 0) - h||^2; paper: ~500).
  The polish stops a point once q < 1e-9 and takes short, damped steps (paper mode): on an
  approximate line attractor q is tiny all along the line, and polishing further, or with
  near-Gauss-Newton steps, slides points along it onto the few exact zeros, where they merge
  (on the IMDB GRU the tangent alignment below drops from 0.98 to 0.77 that way);
* the top eigenvalue's modulus and time constant tau = -1/ln|lambda| in tokens, and the next
  two (paper: one eigenvalue near 1, tau ~ 1000 tokens; next few ~100 tokens);
* |cos| between the fixed-point line and the readout (paper: aligned);
* mean |cos| of each point's top right eigenvector with the local tangent (paper: tangent);
* one-step linearisation error around the nearest fixed point (paper: ~10%);
* the linearised system's accuracy over whole reviews beside the network's;
* the 20 most positive and most negative words by push along the line.

Figures: visited states and fixed points in the top-2 PC plane with the readout direction;
eigenvalue spectra with the unit circle; histograms of word pushes. Per-entry results are
cached in ``<out_dir>/line-attractors/`` keyed by the checkpoint's sha256 and the settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..report import Row, Section, register_section

_FULL = {"n_seeds": 1000, "state_reviews": 128, "error_reviews": 32, "class_reviews": 512, "q_fixed": 1e-8,
         "max_linearised": 200, "finder": {"adam_iters": 200, "lm_iters": 40, "q_tol": 1e-9, "lm_damping": 1e-3}}
_QUICK = {"n_seeds": 32, "state_reviews": 8, "error_reviews": 4, "class_reviews": 16, "q_fixed": 1e-8,
          "max_linearised": 20, "finder": {"q_tol": 1e-9, "lm_damping": 1e-3}}
_PAPER = {
    "pc3": "~90% (top 2-3 PCs)", "n_fixed": "~500", "lambda1": "~1 (tau ~1000 tokens)",
    "lambda23": "tau ~100 tokens", "cos_readout": "aligned", "tangent": "tangent (|cos| ~1)",
    "error": "~10%", "lin_acc": "close to the network's",
}
VERSION = "2"


def shipped_entries() -> list[str]:
    """Recurrent sentiment entries whose checkpoint is present (bag-of-words excluded)."""
    import zoo

    return [n for n in zoo.list_models("sentiment-*/*")
            if not n.endswith("/bow") and zoo.get_entry(n).path.exists()]


def _batches(task, split: str, n_reviews: int, batch_size: int = 64):
    got = 0
    for batch in task.dataloader(split, batch_size):
        if got >= n_reviews:
            return
        take = min(len(batch[0]), n_reviews - got)
        ids, lengths, labels = batch[0][:take], batch[1][:take], batch[2][:take]
        width = int(lengths.max()) if take else 0
        yield ids[:, :width], lengths, labels
        got += take


def analyse_entry(name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the whole reproduction on one entry: ``(numbers, arrays for the figures)``."""
    import zoo
    from zoo.analysis.fixed_points import find_fixed_points, linearise
    from zoo.analysis.line_attractor import (cosine, eigenvector_alignment, fit_line, local_tangents,
                                         principal_components, ranked_words, readout_direction, word_pushes)
    from zoo.analysis.linearization import LinearisedSystem, linearised_classifier, one_step_error

    model, task = zoo.load(name), zoo.task(name)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        states = torch.cat([model.visited_states(b) for b in _batches(task, "test", settings["state_reviews"])])
    pca = principal_components(states)
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(states), generator=g)[: settings["n_seeds"]]
    fp = find_fixed_points(model, states[pick], compute_jacobians=False, **settings["finder"])
    good = fp.q < settings["q_fixed"]
    numbers: dict[str, Any] = {
        "entry": name, "test_accuracy": zoo.card(name).get("metrics", {}).get("accuracy", float("nan")),
        "var_pc1": float(pca.explained_variance_ratio[0]), "var_pc2": float(pca.explained_variance_ratio[:2].sum()),
        "var_pc3": float(pca.explained_variance_ratio[:3].sum()), "n_seeds": settings["n_seeds"],
        "n_fixed": int(good.sum()), "n_unique": fp.n_unique, "seed_status": fp.status_counts(),
        "finder_s": float(fp.params["total_s"]),
    }
    use = fp.subset(good) if good.sum() >= 3 else fp
    numbers["geometry_from"] = "fixed points (q < 1e-8)" if good.sum() >= 3 else "all unique points incl. slow points"
    if use.n_unique > settings["max_linearised"]:  # spectra cost O(N^3) per point: a random subset
        keep = np.sort(np.random.default_rng(0).choice(use.n_unique, settings["max_linearised"], replace=False))
        use = use.subset(keep)
        numbers["geometry_from"] += f" (random {settings['max_linearised']})"
    use = linearise(model, use)
    readout = readout_direction(model.readout_weights())
    arrays: dict[str, np.ndarray] = {
        "states_pc": pca.project(states[torch.randperm(len(states), generator=g)[:4000]]),
        "points_pc": pca.project(fp.points), "points_fixed": good,
        "readout_pc": pca.components[:2] @ readout, "eigenvalues": use.eigenvalues,
    }
    if use.n_unique:
        mod = np.abs(use.eigenvalues[:, :3])
        tau = use.time_constants[:, :3]
        numbers.update({f"lambda{i + 1}": float(np.median(mod[:, i])) for i in range(3)})
        numbers.update({f"tau{i + 1}": float(np.median(tau[:, i])) for i in range(3)})
    if use.n_unique >= 2:
        line = fit_line(use.points, readout)
        numbers.update({"cos_line_readout": abs(cosine(line.direction, readout)), "line_length": line.length,
                        "line_arc_length": line.arc_length, "line_fraction_variance": line.fraction_variance})
        numbers["tangent_alignment"] = float(eigenvector_alignment(use, local_tangents(use.points, line.direction)).mean())
    if use.n_unique:
        system = LinearisedSystem(model, use)
        emb = model.embed(torch.arange(len(model.vocab)))
        push = word_pushes(use, system.J_x, emb, readout)
        top, bottom = ranked_words(push, list(model.vocab), n=20)
        numbers.update({"top_positive": top, "top_negative": bottom})
        arrays["pushes"] = push
        errs = [one_step_error(model, use, model.embed(ids), lengths, system=system)
                for ids, lengths, _ in _batches(task, "test", settings["error_reviews"], batch_size=16)]
        weights = np.array([e["n_transitions"] for e in errs], float)
        numbers["one_step_update_error"] = float(np.median(np.concatenate([e["update_errors"] for e in errs])))
        numbers["one_step_deviation_error"] = float(np.average([e["median_deviation_error"] for e in errs], weights=weights))
        numbers.update(linearised_classifier(model, use, _batches(task, "test", settings["class_reviews"]), system=system))
    return numbers, arrays


def _cached(name: str, settings: dict[str, Any], folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import zoo
    from zoo.checkpoint import atomic_path, read_manifest

    entry = zoo.get_entry(name)
    sha = read_manifest(entry.path.parent).get(entry.path.name, {}).get("sha256", "none")
    key = hashlib.sha256(json.dumps([sha, settings, VERSION], sort_keys=True).encode()).hexdigest()[:16]
    stem = folder / f"{entry.path.stem}__{key}"
    if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
        with np.load(stem.with_suffix(".npz")) as data:
            return json.loads(stem.with_suffix(".json").read_text()), dict(data)
    numbers, arrays = analyse_entry(name, settings)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(stem.with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    with atomic_path(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(numbers, indent=1, default=float))
    return numbers, arrays


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _tau(t: Any) -> str:
    if t is None or not np.isfinite(t):
        return "inf"
    return f"{t:.0f}" if t > 0 else f"{t:.0f} (grows)"


def _table(results: list[dict[str, Any]]) -> str:
    head = ("| entry | net acc. (card) | var. PC1/2/3 | fixed pts (q<1e-8) / seeds | abs(lambda1) (tau) | "
            "abs(lambda2), abs(lambda3) (tau) | cos(line, readout) | abs(cos(r1, tangent)) | 1-step err (update / deviation) | "
            "linearised acc. / network acc. |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        lines.append(
            f"| {r['entry']} | {_fmt(r.get('test_accuracy'))} | "
            f"{_fmt(r['var_pc1'], '.2f')} / {_fmt(r['var_pc2'], '.2f')} / {_fmt(r['var_pc3'], '.2f')} | "
            f"{r['n_fixed']} / {r['n_seeds']} | {_fmt(r.get('lambda1'), '.4f')} ({_tau(r.get('tau1'))}) | "
            f"{_fmt(r.get('lambda2'))} ({_tau(r.get('tau2'))}), {_fmt(r.get('lambda3'))} ({_tau(r.get('tau3'))}) | "
            f"{_fmt(r.get('cos_line_readout'))} | {_fmt(r.get('tangent_alignment'))} | "
            f"{_fmt(r.get('one_step_update_error'), '.1%')} / {_fmt(r.get('one_step_deviation_error'), '.1%')} | "
            f"{_fmt(r.get('linearised_accuracy'))} / {_fmt(r.get('network_accuracy'))} |")
    words = []
    for r in results:
        if "top_positive" in r:
            words += [f"**{r['entry']}** (+): " + ", ".join(w for w, _ in r["top_positive"]),
                      f"**{r['entry']}** (-): " + ", ".join(w for w, _ in r["top_negative"]), ""]
    return "\n".join(lines + ["", "Top 20 words by push along the line (positive, then negative):", ""] + words)


def _figures(results: list[dict[str, Any]], arrays: list[dict[str, np.ndarray]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    paths = []

    def grid(title: str):
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
        fig.suptitle(title, fontsize=9 if cols > 1 else 7)
        for ax in axes.flat[n:]:
            ax.axis("off")
        return fig, axes.flat

    fig, axes = grid("Visited states (grey), fixed points (red; slow points orange),\ntop-2 PC plane")
    for ax, r, a in zip(axes, results, arrays):
        ax.scatter(*a["states_pc"].T, s=1, c="0.75", rasterized=True)
        fixed = a["points_fixed"].astype(bool)
        ax.scatter(*a["points_pc"][~fixed].T, s=8, c="orange", marker="x")
        ax.scatter(*a["points_pc"][fixed].T, s=8, c="red")
        span = np.abs(a["states_pc"]).max()
        d = a["readout_pc"] / max(np.linalg.norm(a["readout_pc"]), 1e-12) * 0.6 * span
        ax.annotate("", xy=d, xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "blue", "lw": 2})
        ax.set_title(f"{r['entry']}\n(blue: readout)", fontsize=8)
        ax.set_xlabel("PC1"), ax.set_ylabel("PC2")
    paths.append(out_dir / "line_attractors_states.png")
    fig.tight_layout(), fig.savefig(paths[-1], dpi=110), plt.close(fig)

    fig, axes = grid("Jacobian eigenvalues at every fixed point\n(unit circle in black)")
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, r, a in zip(axes, results, arrays):
        ev = a["eigenvalues"].ravel()
        ax.plot(np.cos(theta), np.sin(theta), "k-", lw=0.8)
        ax.scatter(ev.real, ev.imag, s=2, alpha=0.3)
        ax.set_aspect("equal"), ax.set_title(r["entry"], fontsize=8)
        ax.set_xlim(-1.1, 1.1), ax.set_ylim(-1.1, 1.1)
    paths.append(out_dir / "line_attractors_spectra.png")
    fig.tight_layout(), fig.savefig(paths[-1], dpi=110), plt.close(fig)

    fig, axes = grid("Word pushes along the line attractor\n(whole vocabulary)")
    for ax, r, a in zip(axes, results, arrays):
        if "pushes" in a:
            ax.hist(a["pushes"], bins=80, log=True)
        ax.set_title(r["entry"], fontsize=8), ax.set_xlabel("push (towards positive)")
    paths.append(out_dir / "line_attractors_pushes.png")
    fig.tight_layout(), fig.savefig(paths[-1], dpi=110), plt.close(fig)
    return paths


@register_section("line-attractors", title="Sentiment RNNs and line attractors (Maheswaranathan et al. 2019)")
def line_attractors(out_dir: Path, quick: bool) -> Section:
    """The reproduction table and figures (see the module docstring)."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    names = shipped_entries()
    if not names:
        from zoo.registry import missing_weights_message

        raise FileNotFoundError(missing_weights_message("sentiment-imdb/gru") + " (and the other sentiment entries)")
    settings = _QUICK if quick else _FULL
    if quick:  # one entry, preferring SST's short sentences
        names = sorted(names, key=lambda n: (not n.startswith("sentiment-sst/"), n))[:1]
    results, arrays = [], []
    for name in names:
        numbers, data = _cached(name, settings, Path(out_dir) / "line-attractors")
        results.append(numbers), arrays.append(data)
    rows = []
    for r in results:
        e = r["entry"]
        rows += [
            Row(f"{e}: variance in top 3 PCs", round(r["var_pc3"], 3), _PAPER["pc3"]),
            Row(f"{e}: unique fixed points (q < 1e-8)", f"{r['n_fixed']} of {r['n_seeds']} seeds", _PAPER["n_fixed"]),
            Row(f"{e}: abs(lambda1), tau1 (tokens)", f"{_fmt(r.get('lambda1'), '.4f')}, {_tau(r.get('tau1'))}", _PAPER["lambda1"]),
            Row(f"{e}: tau2, tau3 (tokens)", f"{_tau(r.get('tau2'))}, {_tau(r.get('tau3'))}", _PAPER["lambda23"]),
            Row(f"{e}: abs(cos(line, readout))", _fmt(r.get("cos_line_readout")), _PAPER["cos_readout"]),
            Row(f"{e}: mean abs(cos(r1, tangent))", _fmt(r.get("tangent_alignment")), _PAPER["tangent"]),
            Row(f"{e}: one-step linearisation error", _fmt(r.get("one_step_update_error"), ".1%"), _PAPER["error"],
                "relative to the true one-step change"),
            Row(f"{e}: linearised vs network accuracy",
                f"{_fmt(r.get('linearised_accuracy'))} vs {_fmt(r.get('network_accuracy'))}", _PAPER["lin_acc"],
                f"{r.get('n_sequences', 0)} test reviews"),
        ]
    text = (f"Settings: {json.dumps(settings)}; q = (1/N)||F(h, 0) - h||^2. "
            f"{'QUICK run: first entry only, few seeds.' if quick else ''}\n\n"
            "Definitions: eigenvalue columns are medians over the linearised points (fixed points with "
            "q < 1e-8, or all unique points incl. slow points where fewer than 3 exist), tau = -1/ln|lambda| "
            "in tokens (negative: a slightly growing mode, |lambda| > 1). One-step error: median over visited "
            "transitions of ||linearised - true next state|| / ||true one-step change|| (update) and / "
            "||true next state - nearest fixed point|| (deviation). The linearised classifier runs the "
            "piecewise-linear system (nearest fixed point's linearisation at every token) over whole test "
            "reviews from h0 = 0.\n\n" + _table(results))
    return Section(title="Sentiment RNNs and line attractors (Maheswaranathan et al. 2019)",
                   figures=_figures(results, arrays, Path(out_dir)), rows=rows, text=text)
