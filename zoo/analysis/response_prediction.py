"""How well a stimulus-response model predicts held-out neural responses (McIntosh et al., NeurIPS 2016).

For any model that maps a stimulus movie to firing rates (:class:`StimulusResponse`: the retina's
CNN, LN and GLM models), on fresh held-out stimuli with repeated trials that the model's task
provides (``task.heldout_set(kind, seed, frames, repeats)``; a simulated retina makes them, a user's
recording can too):

* per-cell Pearson correlation of the predicted rate with the trial-averaged rate, the fraction of
  explainable variance, and the reliability ceiling (correlation between split halves of the
  repeats), on each stimulus ensemble asked for: the model's own, and the others (generalisation);
* the cells' receptive fields: the spike-triggered average of the model's own rates to binary
  white noise (:func:`receptive_fields`);
* where the task knows the true circuit (``task.true_subunits()``) and the model exposes its
  first-layer filters, how well each filter matches the true subunits (:func:`filter_recovery`).

    >>> result = get_analysis("response-prediction")(zoo.load("retina-natural/cnn"), zoo.task("retina-natural/cnn"))
    >>> result.summary["natural_correlation"], result.summary["natural_ceiling"]
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .protocols import StimulusResponse
from .registry import AnalysisResult, register_analysis


@torch.no_grad()
def receptive_fields(model: Any, n_frames: int = 2000, seed: int = 0, batch: int = 100,
                     checker: int = 2) -> torch.Tensor:
    """Spike-triggered average of the model's own rates to binary white noise (+-1, ``checker``-px squares):
    ``sta [cells, lags, F, F]`` (lag 0 = the current frame), ``sum_t r(t) x(t - lag) / sum_t r(t)``.
    A model with spike history is run with zero history (its stimulus pathway)."""
    lags, size = model.input_shape[0], model.input_shape[1]
    g = torch.Generator().manual_seed(seed)
    n = math.ceil(size / checker)
    stim = (torch.randint(0, 2, (n_frames + lags - 1, n, n), generator=g).float() * 2 - 1)
    stim = stim.repeat_interleave(checker, 1).repeat_interleave(checker, 2)[:, :size, :size]
    was = model.training
    model.eval()
    sta = torch.zeros(model.n_cells, lags, size, size, dtype=torch.float64)
    total = torch.zeros(model.n_cells, dtype=torch.float64)
    for a in range(0, n_frames, batch):  # one block per batch: each frame's work is shared by its windows
        b = min(n_frames, a + batch)
        x = stim[a:b + lags - 1].unfold(0, lags, 1).permute(0, 3, 1, 2)  # [n, lags, F, F]
        r = model.forward_blocks(stim[None, a:b + lags - 1])[0].T.double()  # [n, cells]
        sta += torch.einsum("nc,nlhw->clhw", r, x.double())
        total += r.sum(0)
    model.train(was)
    return (sta / total[:, None, None, None].clamp_min(1e-12)).flip(1).float()


def spatial_rf(sta: torch.Tensor) -> torch.Tensor:
    """The spatial map ``[cells, F, F]`` of an STA ``[cells, lags, F, F]`` at its lag of largest variance."""
    peak = sta.flatten(2).var(-1).argmax(1)
    return sta[torch.arange(len(sta)), peak]


def filter_recovery(spatial: torch.Tensor, temporal: torch.Tensor, true_spatial: torch.Tensor,
                    true_temporal: torch.Tensor) -> dict[str, np.ndarray]:
    """Best match of each learned filter with the true subunits.

    ``spatial [C, k, k]`` and ``temporal [C, L]`` (lag 0 first): the rank-1 parts of the first-layer
    filters; ``true_spatial [m, m]`` (m >= k, odd) the true subunit's spatial filter, cropped to
    ``k x k`` about its centre; ``true_temporal [S, L']`` the true temporal filters (e.g. ON, OFF).
    Spatial: normalised cross-correlation, the best over shifts of the true subunit within the filter;
    temporal: |Pearson r| over the first ``L'`` lags, the best over the true filters (``match``).
    Returns ``{"spatial": [C], "temporal": [C], "match": [C]}``."""
    k = spatial.shape[-1]
    c0 = true_spatial.shape[-1] // 2
    true = true_spatial[c0 - k // 2:c0 + k // 2 + 1, c0 - k // 2:c0 + k // 2 + 1].float()
    pad = F.pad(spatial.float()[:, None], (k // 2,) * 4)  # [C, 1, 2k-1, 2k-1]
    num = F.conv2d(pad, true[None, None])[:, 0]  # [C, k, k]: every shift at once
    energy = F.conv2d(pad**2, torch.ones(1, 1, k, k))[:, 0].clamp_min(1e-12).sqrt()
    best_space = (num.abs() / (energy * true.norm())).flatten(1).max(1).values
    n = true_temporal.shape[1]
    t = temporal[:, :n].float()
    tt = true_temporal.float()
    corr = F.cosine_similarity((t - t.mean(1, keepdim=True))[:, None], (tt - tt.mean(1, keepdim=True))[None], dim=-1)
    best_time, which = corr.abs().max(1)
    return {"spatial": best_space.numpy(), "temporal": best_time.numpy(), "match": which.numpy()}


def mean_sem(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of ``x [n]`` (0 for a single value)."""
    return float(np.mean(x)), float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


@register_analysis("response-prediction", protocol=StimulusResponse, version="2",
                   quick_params={"frames": 300, "repeats": 8, "rf_frames": 300, "n_sim": 5}, cost=2)
def response_prediction(model, task, *, stimuli: str = "all", seed: int = 7_777, frames: int = 1500,
                        repeats: int = 20, rf_frames: int = 2000, n_sim: int = 20, trace_bins: int = 500) -> AnalysisResult:
    """Held-out prediction on each of ``stimuli`` (comma-separated kinds; "all": every kind the task can
    make, ``task.heldout_kinds()``), receptive fields and, where the truth is known, filter recovery
    (see the module docstring).

    ``seed``: of the held-out stimuli and spikes (no training run used it); ``frames`` bins x
    ``repeats`` trials per stimulus; ``rf_frames``: white-noise frames for the STA (seed 1);
    ``n_sim``: simulated trials for a model with spike history (run open loop, from the stimulus
    alone). Summary per kind ``K``: ``K_correlation`` (+ ``_sem`` over cells), ``K_fev``,
    ``K_ceiling`` (+ ``_sem``), ``K_ratio`` (mean r / mean ceiling; the ceiling correlates two
    halves of the repeats, the prediction the mean of all, so a ratio can exceed 1). Arrays: ``K_per_cell``,
    ``K_ceiling_per_cell``, ``K_pred`` and ``K_target`` (smoothed rates of the first ``trace_bins``
    bins, Hz), ``rf [cells, F, F]``, and ``filters_spatial``, ``filter_recovery_spatial`` /
    ``_temporal`` when the truth is known.
    """
    if not callable(getattr(task, "heldout_set", None)):
        raise TypeError(f"response-prediction needs a task with held-out repeats (heldout_set); "
                        f"{getattr(task, 'name', type(task).__name__)} has none")
    started = time.perf_counter()
    summary: dict[str, Any] = {"seed": seed, "frames": frames, "repeats": repeats}
    arrays: dict[str, np.ndarray] = {}
    kinds = task.heldout_kinds() if stimuli == "all" else [k.strip() for k in stimuli.split(",") if k.strip()]
    for kind in kinds:
        held = task.heldout_set(kind, seed=seed, frames=frames, repeats=repeats)
        prediction = held.test_prediction(model, n_sim)  # computed once: scored, then kept as traces
        metrics = held.evaluate(model, n_sim=n_sim, train_fit=False, prediction=prediction)
        cells = sorted(k for k in metrics if k.startswith("test_correlation_cell"))
        per_cell = np.array([metrics[k] for k in cells])
        ceiling = np.array([metrics[k.replace("test_", "ceiling_")] for k in cells])
        (r, r_sem), (c, c_sem) = mean_sem(per_cell), mean_sem(ceiling)
        summary.update({f"{kind}_correlation": r, f"{kind}_correlation_sem": r_sem,
                        f"{kind}_fev": metrics["explained_variance_fraction"], f"{kind}_ceiling": c,
                        f"{kind}_ceiling_sem": c_sem, f"{kind}_ratio": r / c if c > 0 else float("nan")})
        pred, target = held.traces(prediction[0])
        arrays.update({f"{kind}_per_cell": per_cell, f"{kind}_ceiling_per_cell": ceiling,
                       f"{kind}_pred": pred[:, :trace_bins].numpy(), f"{kind}_target": target[:, :trace_bins].numpy()})
        summary[f"{kind}_trace_start_bin"] = int(held.test_span().start)
    arrays["rf"] = spatial_rf(receptive_fields(model, n_frames=rf_frames, seed=1)).numpy()
    truth = task.true_subunits() if callable(getattr(task, "true_subunits", None)) else None
    if truth is not None and callable(getattr(model, "first_layer_filters", None)):
        spatial, temporal = model.first_layer_filters()
        rec = filter_recovery(spatial, temporal, *truth)
        arrays.update(filters_spatial=spatial.numpy(), filters_temporal=temporal.numpy(),
                      filter_recovery_spatial=rec["spatial"], filter_recovery_temporal=rec["temporal"])
        summary.update(filter_recovery_spatial=float(rec["spatial"].mean()),
                       filter_recovery_temporal=float(rec["temporal"].mean()))
    summary["time_s"] = time.perf_counter() - started
    return AnalysisResult(summary=summary, arrays=arrays)
