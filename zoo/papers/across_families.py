"""Report section "across-families": one analysis, every family (the point of a shared analysis layer).

A view over the ``curvature`` analysis (Poole et al. 2016's length and curvature propagation) run by
``zoo bench`` on every entry that is a layered map: the random networks layer by layer, and every
recurrent network of the zoo unrolled in time at zero input (its layers are time steps,
:class:`zoo.analysis.protocols.UnrolledInTime`). The length of a circle of states grows by a factor
per layer or step: above 1 the map stretches (chaotic), below 1 it contracts (ordered), 1 is critical.
For the random networks the mean-field theory predicts the factor, sqrt(chi_1); the trained RNNs are
placed on the same axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..report import Row, Section, analysis_results, register_section, verdict


def _family(name: str) -> str:
    task = name.split("/")[0]
    if task.startswith("sentiment"):
        return "sentiment RNN"
    if task.startswith("retina"):
        return "retina CNN"
    return {"random-net": "random net", "flip-flop": "flip-flop RNN", "path-integration": "grid RNN"}.get(task, task)


# one wildcard per family (the retina's data-efficiency variants, retina-natural/cnn-<pct>pct, are left out)
FAMILIES = ("random-net/*", "sentiment-*/*", "flip-flop/*", "path-integration/*", "retina-*/cnn")


@register_section("across-families", title="One analysis across the zoo: are trained networks ordered, critical or chaotic?",
                  needs=[("curvature", family) for family in FAMILIES])
def across_families(out_dir: Path, quick: bool) -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = {name: result for family in FAMILIES for name, result in analysis_results("curvature", family, quick).items()}
    rows, names, growth, colours = [], [], [], []
    palette = {"random net": "tab:red", "sentiment RNN": "tab:blue", "flip-flop RNN": "tab:green", "grid RNN": "tab:purple",
               "retina CNN": "tab:orange"}
    for name, result in found.items():
        s = result.summary
        g = s.get("euclidean_growth")
        if g is None:
            continue
        family = _family(name)
        unit = "step" if s.get("layers", "").startswith("time steps") else "layer"
        theory = s.get("theory_growth")
        phase = "chaotic" if g > 1.01 else "ordered" if g < 0.99 else "near critical"
        rows.append(Row(f"{name} ({family}): length growth per {unit}", round(g, 4),
                        f"sqrt(chi_1) = {theory:.4f}" if theory is not None else "",
                        f"{phase}; Grassmannian growth {s.get('grassmannian_growth', float('nan')):.4f}",
                        verdict(g, theory, 0.02, relative=True) if theory is not None else ""))
        names.append(name), growth.append(g), colours.append(palette.get(family, "tab:gray"))
    if not rows:
        raise ValueError("no curvature results: run `zoo bench curvature`")
    order = np.argsort(growth)
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(names) + 1.2))
    ax.barh(np.arange(len(names)), np.log([growth[i] for i in order]), color=[colours[i] for i in order])
    ax.set_yticks(np.arange(len(names)), [names[i] for i in order], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.05)  # the CNNs' huge per-layer contraction and the RNNs' few % side by side
    ax.set_xlabel("log growth of a circle's length per layer (nets, CNNs) or per step (RNNs, zero input)\n"
                  "(symmetric log axis, linear within +-0.05)", fontsize=8)
    ax.set_xticks([-1, -0.1, 0, 0.1, 1], ["-1", "-0.1", "0", "0.1", "1"])
    ax.set_title("Ordered (< 0) and chaotic (> 0) maps across the zoo", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
    ax.legend(handles, list(palette), fontsize=7, loc="lower right")
    path = Path(out_dir) / "across_families_growth.png"
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    rnn = [g for n, g in zip(names, growth) if _family(n) != "random net"]
    text = ("`curvature` on every layered map of the zoo: random networks layer by layer (mean-field theory "
            "beside the measurement), and each trained RNN unrolled in time at zero input from a circle at the "
            "scale of its own visited states. "
            + (f"The trained RNNs' growth per step spans {min(rnn):.3f} to {max(rnn):.3f}: "
               f"{sum(g < 0.99 for g in rnn)} contract (ordered), {sum(g > 1.01 for g in rnn)} stretch, "
               f"{sum(0.99 <= g <= 1.01 for g in rnn)} are within 1% of critical. " if rnn else "")
            + "A line attractor contracts every direction but one, so its circle collapses onto the line: the "
            "length shrinks slowly while the curvature of the collapsed curve grows.")
    return Section(title="One analysis across the zoo: are trained networks ordered, critical or chaotic?",
                   figures=[path], rows=rows, text=text)
