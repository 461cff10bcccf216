"""Run analyses across the zoo: every entry whose model offers the analysis's protocol.

Results are cached in ``<out>/<analysis>.h5``, one group per key
``sha256(checkpoint fingerprint | analysis name | version | parameters)``, so a result is reused
only for the same weights, the same analysis code version and the same parameters. Failures are
recorded per entry and never stop the run. A CSV and a Markdown table summarise each analysis.

Several benches may share one cache folder: a result being computed holds an exclusive lock on
``<out>/.locks/<key>.lock`` (a second bench waits for it, then reads the cached result instead of
computing it again), and each write to ``<analysis>.h5`` (copy, add, rename) holds the file's own
lock, so no bench loses another's result.
"""

from __future__ import annotations

import csv
import fnmatch
from concurrent.futures import as_completed
import hashlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .registry import AnalysisResult, get_analysis


def result_key(fingerprint: str, analysis: str, version: str, params: dict[str, Any]) -> str:
    doc = json.dumps({"fp": fingerprint, "analysis": analysis, "version": version, "params": params},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def _read_cached(path: Path, key: str) -> AnalysisResult | None:
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                return None
            group = f[key]
            return AnalysisResult(json.loads(group.attrs["summary"]), {k: group[k][()] for k in group})
    except (OSError, KeyError, ValueError):
        return None  # an unreadable cache is recomputed, never trusted


def _store(path: Path, key: str, entry: str, params: dict[str, Any], result: AnalysisResult) -> None:
    from zoo.checkpoint import atomic_path, file_lock

    with file_lock(path.with_name(f".{path.name}.lock")), atomic_path(path) as tmp:
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            if key in f:
                del f[key]
            group = f.create_group(key)
            group.attrs["entry"] = entry
            group.attrs["params"] = json.dumps(params, default=str)
            group.attrs["summary"] = json.dumps(result.summary, default=float)
            for name, array in result.arrays.items():
                group.create_dataset(name, data=np.asarray(array), compression="gzip")


def run_analysis_on(name: str, analysis: str, params: dict[str, Any] | None = None,
                    out_dir: Path | str | None = None, checkpoint: Path | str | None = None) -> AnalysisResult:
    """Run ``analysis`` on entry ``name`` (pretrained; ``checkpoint``: a training run's verified file
    instead of the shipped one) with ``params``; through the cache in ``out_dir`` if given."""
    import zoo

    model = zoo.load(name, checkpoint=checkpoint)
    if out_dir is not None:
        return result_for(name, analysis, params, out_dir, model=model)[0]
    return get_analysis(analysis)(model, zoo.task(name), **(params or {}))


def result_for(name: str, analysis: str, params: dict[str, Any] | None = None, out_dir: Path | str = "results",
               model: Any = None) -> tuple[AnalysisResult, str]:
    """``(result, "cached" | "ok")``: the result of ``analysis`` on entry ``name`` with ``params`` (over
    the analysis's defaults), read from ``<out_dir>/<analysis>.h5`` if that exact computation (same
    weights, analysis version and parameters) is there, else computed once and stored. The one
    runner behind ``zoo bench``, ``zoo analyze`` and the report's sections."""
    import zoo

    spec = get_analysis(analysis)
    params = dict(params or {})
    model = model if model is not None else zoo.load(name)
    if not spec.applies_to(model):
        raise TypeError(f"analysis {spec.name!r} needs the {spec.protocol.__name__} protocol, which {name} does not provide")
    run_params = {**spec.defaults, **params}
    key = result_key(model.zoo_fingerprint, spec.name, spec.version, run_params)
    cache = Path(out_dir) / f"{spec.name}.h5"
    cached = _read_cached(cache, key)
    if cached is not None:
        return cached, "cached"
    from zoo.checkpoint import file_lock

    with file_lock(Path(out_dir) / ".locks" / f"{key}.lock"):  # one process computes, the others wait and read
        cached = _read_cached(cache, key)
        if cached is not None:
            return cached, "cached"
        result = spec(model, zoo.task(name), **params)
        _store(cache, key, name, run_params, result)
        return result, "ok"


def _row(name: str, analysis: str, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """One bench row (``seconds``: wall time of this call, loading and cache included); failures are
    recorded, never raised."""
    start = time.perf_counter()
    try:
        result, status = result_for(name, analysis, params, out_dir)
    except Exception as err:  # recorded per entry, the bench goes on
        return {"entry": name, "status": f"failed: {type(err).__name__}: {' '.join(str(err).split())}",
                "seconds": round(time.perf_counter() - start, 2)}
    return {"entry": name, "status": status, "seconds": round(time.perf_counter() - start, 2), **result.summary}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # --jobs N: N processes of one thread each


def compatible_entries(analysis: str, pattern: str = "*") -> tuple[list[str], list[dict[str, Any]]]:
    """Entries matching ``pattern`` that offer ``analysis``'s protocol, and rows for those that could
    not be checked (no checkpoint, failed to load)."""
    import zoo

    spec = get_analysis(analysis)
    names, problems = [], []
    for name in zoo.list_models(pattern):
        entry = zoo.get_entry(name)
        if entry.weights == "file" and not entry.path.exists():
            problems.append({"entry": name, "status": "no checkpoint"})
            continue
        try:
            model = zoo.load(name)
        except Exception as err:
            problems.append({"entry": name, "status": f"failed to load: {err}"})
            continue
        if spec.applies_to(model):
            names.append(name)
    return names, problems


def worker_pool(jobs: int):
    """A pool of ``jobs`` fresh processes (spawned) of one thread each, for :func:`run_pairs` and the report."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)


def costliest_first(work: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """Indices of ``work`` in the order to start it: the analyses with the largest ``cost`` first
    (a long job started last would leave the other processes idle at the end)."""
    return sorted(range(len(work)), key=lambda i: -get_analysis(work[i][1]).cost)


def run_pairs(work: list[tuple[str, str, dict[str, Any]]], out_dir: Path | str, jobs: int = 1,
              progress: bool = True) -> list[dict[str, Any]]:
    """A bench row for each ``(entry, analysis, params)`` in ``work``, in order, through the cache in
    ``out_dir``; ``jobs > 1``: in that many processes of one thread each, costliest analyses first."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    bar = tqdm(total=len(work), desc="analyses", disable=not progress)
    rows: list[dict[str, Any]] = [{} for _ in work]
    if jobs == 1 or len(work) < 2:
        for i, (name, analysis, own) in enumerate(work):
            bar.set_postfix_str(f"{analysis} {name}")
            rows[i] = _row(name, analysis, own, out_dir)
            bar.update()
    else:
        with worker_pool(min(jobs, len(work))) as pool:
            futures = {pool.submit(_row, *work[i], out_dir): i for i in costliest_first(work)}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update()
    bar.close()
    return rows


def bench(analyses: list[str] | dict[str, list[str]], pattern: str = "*", params: dict[str, Any] | None = None,
          out_dir: Path | str = "results", progress: bool = True, jobs: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Run each analysis on every matching entry that offers its protocol; return rows per analysis.

    ``analyses``: names, or ``{name: [entry wildcards]}`` to run each on the entries matching one of
    its own wildcards (and ``pattern``), as ``zoo bench --report`` does with the report's needs.
    ``params`` go to the analyses that take them (an unknown parameter is an error). ``jobs > 1``
    runs (analysis, entry) pairs in that many processes of one thread each (results are shared
    through the cache's locks). A row is ``{"entry", "status" ("ok" | "cached" | "failed: ..." |
    "no checkpoint" | "failed to load: ..."), **summary}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params or {}
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    wildcards = analyses if isinstance(analyses, dict) else {a: ["*"] for a in analyses}
    specs = [get_analysis(a) for a in wildcards]
    unused = set(params) - {k for spec in specs for k in spec.defaults}
    if unused:
        raise TypeError(f"no analysis among {', '.join(wildcards)} takes {', '.join(sorted(unused))}")
    work: list[tuple[str, str, dict[str, Any]]] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        names, problems = compatible_entries(spec.name, pattern)
        names = [n for n in names if any(fnmatch.fnmatchcase(n, w) for w in wildcards[spec.name])]
        tables[spec.name] = [p for p in problems if any(fnmatch.fnmatchcase(p["entry"], w) for w in wildcards[spec.name])]
        own = {k: v for k, v in params.items() if k in spec.defaults}  # each analysis takes its own
        work += [(name, spec.name, own) for name in names]
    rows = run_pairs(work, out_dir, jobs=jobs, progress=progress)
    for (_, analysis, _), row in zip(work, rows):
        tables[analysis].append(row)
    for analysis, table in tables.items():
        table.sort(key=lambda r: r["entry"])
        _write_summaries(out_dir / analysis, table)
    return tables


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table with one column per key; ``|`` inside a cell (e.g. a norm) is escaped."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    columns = _columns(rows)
    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(format_value(r.get(c))) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _write_summaries(stem: Path, rows: list[dict[str, Any]]) -> None:
    from zoo.checkpoint import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows) or ["entry"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(stem.with_suffix(".csv"), buffer.getvalue())
    write_text_atomic(stem.with_suffix(".md"), markdown_table(rows))
