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

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from .registry import AnalysisResult, get_analysis


def result_key(fingerprint: str, analysis: str, version: str, params: dict[str, Any]) -> str:
    doc = json.dumps({"fp": fingerprint, "analysis": analysis, "version": version, "params": params},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def _read_cached(path: Path, key: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f[key].attrs["summary"]) if key in f else None
    except OSError:
        return None  # an unreadable cache is recomputed, never trusted


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock`` (created if needed), released on exit, even on a crash."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _store(path: Path, key: str, entry: str, params: dict[str, Any], result: AnalysisResult) -> None:
    from zoo.checkpoint import atomic_path

    with _locked(path.with_name(f".{path.name}.lock")), atomic_path(path) as tmp:
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


def run_analysis_on(name: str, analysis: str, params: dict[str, Any] | None = None) -> AnalysisResult:
    """Load entry ``name`` (pretrained) and run ``analysis`` on it with ``params``."""
    import zoo

    model = zoo.load(name)
    return get_analysis(analysis)(model, zoo.task(name), **(params or {}))


def bench(analyses: list[str], pattern: str = "*", params: dict[str, Any] | None = None,
          out_dir: Path | str = "results", progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run each analysis on every matching entry that offers its protocol; return rows per analysis.

    ``params`` go to the analyses that take them (an unknown parameter is an error).
    A row is ``{"entry", "status" ("ok" | "cached" | "failed: ..." | "no checkpoint"), **summary}``.
    """
    import zoo
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params or {}
    specs = [get_analysis(a) for a in analyses]
    unused = set(params) - {k for spec in specs for k in spec.defaults}
    if unused:
        raise TypeError(f"no analysis among {', '.join(analyses)} takes {', '.join(sorted(unused))}")
    tables: dict[str, list[dict[str, Any]]] = {}
    for analysis in specs:
        analysis_name = analysis.name
        own_params = {k: v for k, v in params.items() if k in analysis.defaults}  # each takes its own
        run_params = {**analysis.defaults, **own_params}
        cache = out_dir / f"{analysis_name}.h5"
        rows = []
        for name in tqdm(zoo.list_models(pattern), desc=analysis_name, disable=not progress):
            entry = zoo.get_entry(name)
            if entry.weights == "file" and not entry.path.exists():
                rows.append({"entry": name, "status": "no checkpoint"})
                continue
            try:
                model = zoo.load(name)
            except Exception as err:
                rows.append({"entry": name, "status": f"failed to load: {err}"})
                continue
            if not analysis.applies_to(model):
                continue
            key = result_key(model.zoo_fingerprint, analysis.name, analysis.version, run_params)
            cached = _read_cached(cache, key)
            if cached is None:
                with _locked(out_dir / ".locks" / f"{key}.lock"):  # one bench computes, the others wait
                    cached = _read_cached(cache, key)
                    if cached is None:
                        try:
                            result = analysis(model, zoo.task(name), **own_params)
                        except Exception as err:  # recorded per entry, the bench goes on
                            rows.append({"entry": name, "status": f"failed: {type(err).__name__}: {err}"})
                            continue
                        _store(cache, key, name, run_params, result)
                        rows.append({"entry": name, "status": "ok", **result.summary})
                        continue
            rows.append({"entry": name, "status": "cached", **cached})
        tables[analysis_name] = rows
        _write_summaries(out_dir / analysis_name, rows)
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
