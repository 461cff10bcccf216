"""Report sections: each paper's figures and headline numbers beside the paper's values.

    @register_section("transient-chaos", title="Transient chaos in random deep networks")
    def transient_chaos(out_dir: Path, quick: bool) -> Section: ...

``zoo figures`` runs the sections and writes ``REPORT.md`` with their PNG figures and one table
of headline numbers (quantity, this zoo, the paper). ``quick`` asks for a smaller, faster run
(used by the tests); the shipped defaults are for ``make demo``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoint import write_text_atomic


@dataclass
class Row:
    """One headline number: ``quantity``, ``ours`` and ``paper`` (strings or numbers), ``note``."""

    quantity: str
    ours: Any
    paper: Any
    note: str = ""


@dataclass
class Section:
    title: str
    figures: list[Path] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    text: str = ""


_SECTIONS: dict[str, tuple[str, Callable[[Path, bool], Section]]] = {}


def register_section(name: str, title: str) -> Callable:
    def decorator(func: Callable[[Path, bool], Section]) -> Callable[[Path, bool], Section]:
        if name in _SECTIONS and _SECTIONS[name][1] is not func:
            raise ValueError(f"report section {name!r} is already registered")
        _SECTIONS[name] = (title, func)
        return func

    return decorator


def list_sections() -> list[str]:
    importlib.import_module("zoo.papers")  # registers the built-in sections
    return sorted(_SECTIONS)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_sections(names: list[str] | None, out_dir: Path, quick: bool = False) -> list[tuple[str, Section | Exception]]:
    """Run sections (all by default), write their figures into ``out_dir`` and ``out_dir/REPORT.md``."""
    known = list_sections()
    names = names or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(known) or 'none yet'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, Section | Exception]] = []
    lines = ["# Model zoo report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `zoo figures`.", ""]
    for name in names:
        title, func = _SECTIONS[name]
        try:
            section = func(out_dir, quick)
        except Exception as err:  # a failing section is reported, not fatal
            results.append((name, err))
            lines += [f"## {title}", "", f"**failed**: `{type(err).__name__}: {err}`", ""]
            continue
        results.append((name, section))
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.rows:
            lines += ["| quantity | this zoo | paper | note |", "|---|---|---|---|"]
            lines += [f"| {r.quantity} | {_fmt(r.ours)} | {_fmt(r.paper)} | {r.note} |" for r in section.rows]
            lines.append("")
        lines += [f"![{p.stem}]({p.relative_to(out_dir) if p.is_relative_to(out_dir) else p})" for p in section.figures]
        lines.append("")
    write_text_atomic(out_dir / "REPORT.md", "\n".join(lines))
    return results
