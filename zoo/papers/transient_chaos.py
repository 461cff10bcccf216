"""Transient chaos in random deep networks (Poole et al., NeurIPS 2016; Schoenholz et al., ICLR 2017).

Report section "transient-chaos": the paper's main panels and headline numbers (PAPERS.md §4).

* ``maps.png``: the length map ``q^{l-1} -> q^l`` and the correlation map ``c^{l-1} -> c^l`` (at
  ``q*``) for tanh, ``sigma_b = 0.3``, ``sigma_w in {1.3, 2.5, 4}``, with their fixed points.
* ``circle_pcs.png``: the great circle (radius ``sqrt(N q*)`` placed as ``h^1``) projected on the
  top two principal components of the activity at several depths.
* ``length_curvature.png``: Euclidean length, normalised curvature ``N kappa^2`` and
  Grassmannian length against depth, simulation (width 1000) beside mean-field theory.
* ``phase_diagram.png``: ``xi_c`` over ``(sigma_w^2, sigma_b^2)`` with the ``chi_1 = 1`` boundary.
* ``expressivity.png``: the function a deep chaotic net computes on the circle, fitted by
  one-hidden-layer tanh networks of increasing width (random-feature least squares, an upper
  bound on the best shallow fit): the width needed grows exponentially with depth.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..report import Row, Section, register_section, verdict

SIGMA_B2 = 0.09  # sigma_b = 0.3
SIGMA_WS = (1.3, 2.5, 4.0)
COLORS = {1.3: "tab:blue", 2.5: "tab:orange", 4.0: "tab:red"}


def _settings(quick: bool) -> dict:
    if quick:
        return dict(width=200, n_angles=64, n_layers=12, grid=32, expr_width=200, expr_depths=(2, 4, 6),
                    expr_widths=(4, 16, 64, 256), expr_points=512)
    return dict(width=1000, n_angles=500, n_layers=40, grid=200, expr_width=1000, expr_depths=(2, 4, 6, 8, 10),
                expr_widths=(4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096), expr_points=8192)


def _simulate(cfg: dict) -> dict:
    import zoo
    from zoo.analysis import manifold_propagation as mp

    out = {}
    keep = sorted({1, 2, 5, 10, cfg["n_layers"] // 2, cfg["n_layers"]})
    for sw in SIGMA_WS:
        net = zoo.load("random-net/tanh", sigma_w2=sw**2, sigma_b2=SIGMA_B2, width=cfg["width"],
                       depth=cfg["n_layers"] + 1, seed=0)
        out[sw] = mp.propagate(net, n_angles=cfg["n_angles"], q0=mp.default_q0(net, 1), start_layer=1,
                               keep_layers=keep)
    return out


def _fig_maps(path: Path) -> None:
    import matplotlib.pyplot as plt

    from zoo.analysis import mean_field as mf

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    q = torch.linspace(0, 16, 161, dtype=torch.float64)
    c = torch.linspace(0, 1, 51, dtype=torch.float64)
    for sw in SIGMA_WS:
        fp = mf.fixed_point(sw**2, SIGMA_B2)
        ax1.plot(q, mf.length_map(q, sw**2, SIGMA_B2), color=COLORS[sw], label=f"$\\sigma_w$={sw}")
        ax1.plot(float(fp.q_star), float(fp.q_star), "o", color=COLORS[sw])
        ax2.plot(c, mf.correlation_map(c, fp.q_star, sw**2, SIGMA_B2), color=COLORS[sw], label=f"$\\sigma_w$={sw}")
        ax2.plot(float(fp.c_star), float(fp.c_star), "o", color=COLORS[sw])
    ax1.plot(q, q, "k--", lw=0.8)
    ax2.plot(c, c, "k--", lw=0.8)
    ax1.set(xlabel="$q^{l-1}$", ylabel="$q^l$", title="length map (tanh, $\\sigma_b$=0.3)")
    ax2.set(xlabel="$c^{l-1}$", ylabel="$c^l$", title="correlation map at $q^*$", xlim=(0, 1), ylim=(0, 1))
    ax1.legend(), ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fig_pcs(sims: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    layers = sorted(sims[SIGMA_WS[0]].kept)
    fig, axes = plt.subplots(len(SIGMA_WS), len(layers), figsize=(2.2 * len(layers), 2.2 * len(SIGMA_WS)))
    for i, sw in enumerate(SIGMA_WS):
        for j, layer in enumerate(layers):
            h = sims[sw].kept[layer]
            h = h - h.mean(0)
            vals, vecs = np.linalg.eigh(h @ h.T)  # the M x M Gram matrix: PC scores u s without an SVD of [M, N]
            xy = vecs[:, -2:][:, ::-1] * np.sqrt(vals[-2:][::-1].clip(0))
            ax = axes[i, j]
            ax.plot(np.r_[xy[:, 0], xy[:1, 0]], np.r_[xy[:, 1], xy[:1, 1]], color=COLORS[sw], lw=0.7)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_aspect("equal", adjustable="datalim")
            if i == 0:
                ax.set_title(f"layer {layer}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"$\\sigma_w$={sw}")
    fig.suptitle("great circle in the top 2 PCs of each layer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fig_lengths(sims: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("euclidean_length", "Euclidean length $L^E$"), ("kappa2", "normalised curvature $N\\kappa^2$"),
              ("grassmannian_length", "Grassmannian length $L^G$")]
    for ax, (key, title) in zip(axes, panels):
        for sw in SIGMA_WS:
            p = sims[sw]
            ax.semilogy(p.layers, getattr(p, key), color=COLORS[sw], label=f"$\\sigma_w$={sw}")
            ax.semilogy(p.layers, p.theory["theory_" + key], "--", color=COLORS[sw], lw=1)
        ax.set(xlabel="layer", title=title)
    axes[0].legend(title="solid: width-N net; dashed: theory", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fig_phase(n: int, path: Path):
    import matplotlib.pyplot as plt

    from zoo.analysis import mean_field as mf

    sw = torch.logspace(math.log10(0.8), math.log10(20.0), n, dtype=torch.float64)
    sb = torch.linspace(0.0, 0.5, n, dtype=torch.float64)
    pd = mf.phase_diagram(sw, sb)
    xi = pd.fixed.xi_c.numpy().T
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    im = ax.pcolormesh(sw.numpy(), sb.numpy(), np.log10(np.clip(xi, 1e-1, 1e4)), shading="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="$\\log_{10}\\, \\xi_c$ (layers)")
    ax.plot(pd.critical_sigma_w2.numpy(), sb.numpy(), "w-", lw=2, label="$\\chi_1 = 1$")
    for s in SIGMA_WS:
        ax.plot(s**2, SIGMA_B2, "o", color=COLORS[s], mec="w")
    ax.set_xscale("log")
    ax.set(xlabel="$\\sigma_w^2$", ylabel="$\\sigma_b^2$", title="tanh: ordered (left) | chaotic (right)",
           xlim=(0.8, 20), ylim=(0, 0.5))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pd


def _shallow_errors(theta: np.ndarray, y: np.ndarray, widths, seed: int = 0) -> np.ndarray:
    """Relative test error (1 - R^2) of one-hidden-layer tanh nets ``sum_j a_j tanh(s_j cos(theta - psi_j) + b_j)``
    fitted by ridge least squares on random features (even angles train, odd angles test).

    ``y [M, D]``: D targets (one per depth) fitted with the same features, one solve per width.
    Returns ``[len(widths), D]``."""
    rng = np.random.default_rng(seed)
    train, test = slice(0, None, 2), slice(1, None, 2)
    errors = []
    for K in widths:
        psi = rng.uniform(0, 2 * np.pi, K)
        s = 10 ** rng.uniform(0, 3, K)  # input weight norms from 1 to 1000: steps of all widths
        b = rng.uniform(-1, 1, K) * s
        phi = np.tanh(s * np.cos(theta[:, None] - psi) + b)
        X = np.concatenate([phi, np.ones((len(theta), 1))], 1)
        Xt, yt = X[train], y[train]
        coef = np.linalg.solve(Xt.T @ Xt + 1e-8 * len(yt) * np.eye(K + 1), Xt.T @ yt)
        resid = y[test] - X[test] @ coef
        errors.append(np.mean(resid**2, axis=0) / np.var(y[test], axis=0))
    return np.array(errors)


def _expressivity(cfg: dict, path: Path) -> dict:
    import matplotlib.pyplot as plt

    import zoo
    from zoo.analysis import manifold_propagation as mp

    depths = cfg["expr_depths"]
    net = zoo.load("random-net/tanh", sigma_w2=16.0, sigma_b2=SIGMA_B2, width=cfg["expr_width"],
                   depth=max(depths) + 1, seed=1).double()
    M = cfg["expr_points"]
    # the great circle as h^1 (as mp.propagate places it), then a plain forward pass: only the
    # activations are needed here, not the curve's derivatives
    theta_t = torch.arange(M, dtype=torch.float64) * (2 * math.pi / M)
    maps = net.layer_maps()
    h = mp.great_circle((net.width,), math.sqrt(net.width * mp.default_q0(net, 1)), seed=0)(theta_t)
    kept = {}
    with torch.no_grad():
        for layer in range(1, max(depths) + 1):
            if layer > 1:
                h = maps[layer - 1](h)
            if layer in depths:
                kept[layer] = h[:, 0].numpy()
    theta = theta_t.numpy()
    targets = np.stack([(kept[d] - kept[d].mean()) / kept[d].std() for d in depths], 1)  # unit 0 at each depth
    all_errors = _shallow_errors(theta, targets, np.array(cfg["expr_widths"]))
    errors, needed = {}, {}
    widths = np.array(cfg["expr_widths"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, d in enumerate(depths):
        y = targets[:, i]
        err = all_errors[:, i]
        errors[d] = err
        ok = np.nonzero(err < 0.1)[0]
        needed[d] = int(widths[ok[0]]) if len(ok) else None
        color = cmap(i / max(1, len(depths) - 1))
        ax1.loglog(widths, err, "o-", color=color, label=f"depth {d}")
        ax2.plot(theta, y + 3 * i, color=color, lw=0.6)
    ax1.axhline(0.1, color="k", ls=":", lw=0.8)
    ax1.set(xlabel="width of the one-hidden-layer net", ylabel="relative test error",
            title="shallow fits of a deep chaotic net ($\\sigma_w$=4)")
    ax1.legend(fontsize=8)
    ax2.set(xlabel="$\\theta$", title="target: unit 0 at depth d (offset)", yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"errors": errors, "needed": needed}


def _row(quantity: str, ours, paper, note: str = "", tol: float | None = None) -> Row:
    """A row with numbers as fixed-point strings (4 decimals), so 12.604 is not shown as 12.6; with a
    verdict against ``paper`` when a tolerance ``tol`` is given (stated in the note)."""
    judged = verdict(ours, float(paper), tol) if tol is not None else ""
    note = f"{note}; tolerance {tol:g}".lstrip("; ") if tol is not None else note
    return Row(quantity, f"{ours:.4f}" if isinstance(ours, float) else ours, str(paper), note, judged)


@register_section("transient-chaos", title="Transient chaos in random deep networks (Poole et al. 2016)")
def transient_chaos(out_dir: Path, quick: bool) -> Section:
    import matplotlib

    matplotlib.use("Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small matmuls: one thread is as fast and robust on a shared machine
    try:
        return _section(Path(out_dir), quick)
    finally:
        torch.set_num_threads(threads)


def _section(out_dir: Path, quick: bool) -> Section:
    from zoo.analysis import mean_field as mf

    cfg = _settings(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = {k: out_dir / f"transient_chaos_{k}.png" for k in ("maps", "circle_pcs", "length_curvature",
                                                                "phase_diagram", "expressivity")}
    _fig_maps(figs["maps"])
    sims = _simulate(cfg)
    _fig_pcs(sims, figs["circle_pcs"])
    _fig_lengths(sims, figs["length_curvature"])
    _fig_phase(cfg["grid"], figs["phase_diagram"])
    expr = _expressivity(cfg, figs["expressivity"])

    fp = {sw: mf.fixed_point(sw**2, SIGMA_B2) for sw in SIGMA_WS}
    crit = mf.critical_sigma_w2([0.05, 0.3]).tolist()
    n = cfg["n_layers"]
    window = (n // 4, n)  # after the curvature transient
    p4 = sims[4.0]
    kappa_settled = float(p4.kappa2[n // 2:].mean())
    rows = [
        _row("q*  (sigma_w=4)", float(fp[4.0].q_star), 12.604, "tanh, sigma_b=0.3; quadrature", 0.001),
        _row("chi_1 (sigma_w=4)", float(fp[4.0].chi_1), 2.367, tol=0.001),
        _row("chi_2 (sigma_w=4)", float(fp[4.0].chi_2), 1.857, tol=0.001),
        _row("q*  (sigma_w=2.5)", float(fp[2.5].q_star), 4.079, tol=0.001),
        _row("chi_1 (sigma_w=2.5)", float(fp[2.5].chi_1), 1.585, tol=0.001),
        _row("q*  (sigma_w=1.3)", float(fp[1.3].q_star), 0.607, tol=0.001),
        _row("chi_1 (sigma_w=1.3)", float(fp[1.3].chi_1), 0.940, "ordered", 0.001),
        _row("theory growth sqrt(chi_1) (sigma_w=4)", math.sqrt(float(fp[4.0].chi_1)), 1.5386, tol=0.0001),
        _row("Euclidean length growth / layer (sigma_w=4)", p4.growth("euclidean", window), 1.537,
            f"width {cfg['width']}, layers {window[0]}-{window[1]}; paper's simulation", 0.01),
        _row("Grassmannian length growth / layer (sigma_w=4)", p4.growth("grassmannian", window), 1.551,
            "paper's simulation", 0.02),
        _row("Euclidean length growth / layer (sigma_w=2.5)", sims[2.5].growth("euclidean", window), 1.259,
            "paper: sqrt(chi_1)", 0.01),
        _row("Euclidean length growth / layer (sigma_w=1.3)", sims[1.3].growth("euclidean", window),
            round(math.sqrt(0.940), 4), "ordered: decays; paper: sqrt(chi_1)", 0.01),
        _row("normalised kappa^2, settled (sigma_w=4)", kappa_settled, 1.72,
            f"mean over layers {n // 2}-{n}; theory 3 chi_2/(chi_1(chi_1-1))", 0.1),
        _row("critical sigma_w^2 (sigma_b^2=0.05)", crit[0], 1.761, tol=0.001),
        _row("critical sigma_w^2 (sigma_b^2=0.3)", crit[1], 2.505, tol=0.001),
    ]
    for d, w in expr["needed"].items():
        rows.append(Row(f"shallow width for 10% error, target at depth {d}", w if w is not None else f"> {cfg['expr_widths'][-1]}",
                        "grows exponentially", "random-feature least squares"))
    text = (f"Random tanh networks, width {cfg['width']}, {cfg['n_angles']} angles, circle of radius sqrt(N q*) "
            f"as h^1, {n} propagated layers, exact forward-mode derivatives (torch.func.jvp). "
            f"Phase diagram on a {cfg['grid']}x{cfg['grid']} grid." + (" Quick settings (smaller)." if quick else ""))
    return Section(title="Transient chaos in random deep networks (Poole et al. 2016)", figures=list(figs.values()),
                   rows=rows, text=text)
