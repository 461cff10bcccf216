"""Report sections: each paper's figures and headline numbers beside the paper's values.

    @register_section("line-attractors", title="...", needs=[("line-attractor", "sentiment-*/*")])
    def line_attractors(out_dir: Path, quick: bool) -> Section:
        results = analysis_results("line-attractor", "sentiment-*/*", quick)   # a view: no computing
        ...

A section is a view over the shared analysis layer: it declares the (analysis, entries) it
``needs``, obtains their results through the bench's runner and content-keyed cache
(:func:`zoo.analysis.bench.result_for`, at the analysis's default parameters, or its
``quick_params`` when ``quick``), and only tabulates and draws. ``zoo bench`` followed by
``zoo figures`` therefore computes each (analysis, entry, parameters) once, and the numbers in
``results/*.md`` and in the report are the same numbers. ``zoo figures`` writes ``REPORT.md`` with
the sections' PNG figures and one table of headline numbers (quantity, this zoo, the paper, a
verdict), with a count of the verdicts at the top.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoint import write_text_atomic


VERDICTS = ("match", "near", "differs")


@dataclass
class Row:
    """One headline number: ``quantity``, ``ours`` and ``paper`` (strings or numbers), ``note``, and a
    ``verdict``: "match" (within the stated tolerance of the paper's value), "near" (within twice
    it), "differs", or "" for a number the paper does not give (see :func:`verdict`)."""

    quantity: str
    ours: Any
    paper: Any
    note: str = ""
    verdict: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in ("", *VERDICTS):
            raise ValueError(f"verdict must be one of {VERDICTS} or '', got {self.verdict!r}")


def verdict(ours: float | None, target: float, tol: float, relative: bool = False) -> str:
    """``"match"`` if ``|ours - target| <= tol`` (``tol * |target|`` if ``relative``), ``"near"`` within
    twice that, else ``"differs"`` (also for a missing or non-finite value)."""
    if ours is None or not isinstance(ours, (int, float)) or ours != ours or abs(ours) == float("inf"):
        return "differs"
    bound = tol * abs(target) if relative else tol
    gap = abs(float(ours) - target)
    return "match" if gap <= bound else "near" if gap <= 2 * bound else "differs"


def at_least(ours: float | None, bound: float, slack: float) -> str:
    """A one-sided target: ``"match"`` if ``ours >= bound``, ``"near"`` if ``>= bound - slack``."""
    if ours is None or not isinstance(ours, (int, float)) or ours != ours:
        return "differs"
    return "match" if ours >= bound else "near" if ours >= bound - slack else "differs"


def at_most(ours: float | None, bound: float, slack: float) -> str:
    """A one-sided target: ``"match"`` if ``ours <= bound``, ``"near"`` if ``<= bound + slack``."""
    if ours is None or not isinstance(ours, (int, float)) or ours != ours:
        return "differs"
    return "match" if ours <= bound else "near" if ours <= bound + slack else "differs"


@dataclass
class Section:
    title: str
    figures: list[Path] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    text: str = ""


_SECTIONS: dict[str, tuple[str, Callable[[Path, bool], Section]]] = {}
_NEEDS: dict[str, list[tuple[str, str]]] = {}
_RESULTS_DIR = Path("results")


def register_section(name: str, title: str, needs: list[tuple[str, str]] | None = None) -> Callable:
    """Register ``func(out_dir, quick) -> Section`` as section ``name``. ``needs``: the
    ``(analysis, entry wildcard)`` pairs whose results it shows (``zoo figures`` computes them first,
    in parallel with ``--jobs``)."""
    def decorator(func: Callable[[Path, bool], Section]) -> Callable[[Path, bool], Section]:
        if name in _SECTIONS and _SECTIONS[name][1] is not func:
            raise ValueError(f"report section {name!r} is already registered")
        _SECTIONS[name] = (title, func)
        _NEEDS[name] = list(needs or [])
        return func

    return decorator


def needed_analyses(names: list[str] | None = None) -> dict[str, list[str]]:
    """``{analysis: [entry wildcards]}``: what the report's sections (all by default) declare they need."""
    known = list_sections()
    needs: dict[str, list[str]] = {}
    for analysis, pattern in (need for n in (names or known) for need in _NEEDS[n]):
        needs.setdefault(analysis, [])
        if pattern not in needs[analysis]:
            needs[analysis].append(pattern)
    return dict(sorted(needs.items()))


def analysis_results(analysis: str, pattern: str, quick: bool = False) -> dict[str, Any]:
    """``{entry: AnalysisResult}`` of ``analysis`` on every entry matching ``pattern`` that offers its
    protocol (and has weights), from the shared runner and cache in the report's results folder, at
    the analysis's default parameters (``quick``: its ``quick_params``). Entries that fail raise."""
    from zoo.analysis import get_analysis
    from zoo.analysis.bench import compatible_entries, result_for

    params = get_analysis(analysis).quick_params if quick else {}
    names, _ = compatible_entries(analysis, pattern)
    return {name: result_for(name, analysis, params, _RESULTS_DIR)[0] for name in names}


def list_sections() -> list[str]:
    importlib.import_module("zoo.papers")  # registers the built-in sections
    return sorted(_SECTIONS)


def _run_section(func: Callable[[Path, bool], Section], out_dir: Path, quick: bool,
                 results_dir: Path) -> Section | Exception:
    """A section (or the exception it raised), reading analyses from ``results_dir``; also the entry
    point of a worker process (``func`` travels by reference: its module is imported there)."""
    global _RESULTS_DIR
    _RESULTS_DIR = Path(results_dir)
    try:
        return func(out_dir, quick)
    except Exception as err:  # reported in the section's place
        try:  # it must travel back from a worker process: rebuild it as the parent process would
            rebuild, args = err.__reduce__()[:2]
            rebuild(*args)
            return err
        except Exception:
            return RuntimeError(f"{type(err).__name__}: {err}")


def _run_in_pool(work: list[tuple[str, str, dict[str, Any]]], names: list[str], out_dir: Path, quick: bool,
                 jobs: int) -> dict[str, Section | Exception]:
    """The analyses and the sections in one pool of ``jobs`` processes: first the sections that need no
    analysis (they compute their own figures, e.g. simulations), then the analyses, costliest first,
    then the sections that are views (by then their results are cached, or being computed: a
    worker asking for a result in progress waits for it on the cache's lock)."""
    from concurrent.futures import as_completed

    from tqdm.auto import tqdm

    from zoo.analysis.bench import _row, costliest_first, worker_pool

    own = [n for n in names if not _NEEDS[n]]
    views = [n for n in names if _NEEDS[n]]
    done: dict[str, Section | Exception] = {}
    with worker_pool(jobs) as pool, tqdm(total=len(work) + len(names), desc="report", disable=quick) as bar:
        def section(name: str):
            return pool.submit(_run_section, _SECTIONS[name][1], out_dir, quick, _RESULTS_DIR)

        futures = {section(n): n for n in own}
        futures.update({pool.submit(_row, *work[i], _RESULTS_DIR): i for i in costliest_first(work)})
        futures.update({section(n): n for n in views})
        for future in as_completed(futures):
            key = futures[future]
            try:
                value = future.result()  # a bench row (failures recorded in it) or a section
            except Exception as err:  # e.g. a section whose result cannot be sent back from the worker
                value = err
            if isinstance(key, str):
                done[key] = value
            bar.update()
    return done


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_sections(names: list[str] | None, out_dir: Path, quick: bool = False, results_dir: Path | str = "results",
                 jobs: int = 1) -> list[tuple[str, Section | Exception]]:
    """Run sections (all by default), write their figures into ``out_dir`` and ``out_dir/REPORT.md``.

    The analyses the sections need are first obtained through ``zoo bench``'s runner and cache in
    ``results_dir`` (``jobs`` processes); a result already there is read, not recomputed."""
    global _RESULTS_DIR
    from zoo.analysis import get_analysis
    from zoo.analysis.bench import compatible_entries, run_pairs

    known = list_sections()
    names = names or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(known) or 'none yet'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _RESULTS_DIR = Path(results_dir)
    work = []
    for analysis, pattern in dict.fromkeys(need for n in names for need in _NEEDS[n]):
        params = get_analysis(analysis).quick_params if quick else {}
        work += [(entry, analysis, params) for entry in compatible_entries(analysis, pattern)[0]]
    _RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if jobs > 1:  # failures of analyses resurface in their sections
        done = _run_in_pool(work, names, out_dir, quick, jobs)
    else:
        run_pairs(work, _RESULTS_DIR, jobs=1, progress=not quick)
        done = {name: _run_section(_SECTIONS[name][1], out_dir, quick, _RESULTS_DIR) for name in names}
    results: list[tuple[str, Section | Exception]] = []
    body: list[str] = []
    for name in names:
        title = _SECTIONS[name][0]
        section = done[name]
        if isinstance(section, Exception):  # a failing section is reported, not fatal
            results.append((name, section))
            body += [f"## {title}", "", f"**failed**: `{type(section).__name__}: {section}`", ""]
            continue
        results.append((name, section))
        body += [f"## {section.title}", ""]
        if section.text:
            body += [section.text, ""]
        if section.rows:
            body += ["| quantity | this zoo | paper | verdict | note |", "|---|---|---|---|---|"]
            body += [f"| {r.quantity} | {_fmt(r.ours)} | {_fmt(r.paper)} | {r.verdict} | {r.note} |" for r in section.rows]
            body.append("")
        body += [f"![{p.stem}]({p.relative_to(out_dir) if p.is_relative_to(out_dir) else p})" for p in section.figures]
        body.append("")
    rows = [r for _, s in results if isinstance(s, Section) for r in s.rows]
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    judged = sum(counts.values())
    head = ["# Model zoo report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `zoo figures`"
            f"{' (QUICK: small settings)' if quick else ''}; analysis results from `{_RESULTS_DIR}/`.", "",
            f"**{counts['match']} of {judged} headline numbers with a paper value match it** "
            f"({counts['near']} near, {counts['differs']} differ; {len(rows) - judged} rows without a paper value "
            "to compare).", ""]
    write_text_atomic(out_dir / "REPORT.md", "\n".join(head + body))
    return results
