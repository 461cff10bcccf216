"""Every analysis on every compatible entry, and every report section (quick mode)."""

import json
import math

import numpy as np
import pytest

import zoo
from zoo.analysis import get_analysis, list_analyses
from zoo.report import list_sections, run_sections


def _loadable():
    names = []
    for name in zoo.list_models():
        entry = zoo.get_entry(name)
        if entry.weights == "seed" or entry.path.exists():
            names.append(name)
    return names


def _pairs():
    models = {name: zoo.load(name) for name in _loadable()}
    return [(a, n) for a in list_analyses() for n, m in models.items() if get_analysis(a).applies_to(m)]


@pytest.mark.parametrize("analysis,name", _pairs())
def test_analysis_runs_on_compatible_entry(analysis, name):
    spec = get_analysis(analysis)
    result = spec(zoo.load(name), zoo.task(name), **spec.quick_params)
    assert result.summary, f"{analysis} on {name} returned an empty summary"
    json.dumps(result.summary)  # scalars only: one row of a bench table
    nans = [k for k, v in result.summary.items() if isinstance(v, float) and math.isnan(v)]
    assert not nans, f"{analysis} on {name}: NaN in {nans}"
    for array in result.arrays.values():
        assert isinstance(np.asarray(array), np.ndarray)


@pytest.mark.parametrize("section", list_sections())
def test_report_section_quick(section, tmp_path):
    [(name, result)] = run_sections([section], tmp_path, quick=True)
    assert not isinstance(result, Exception), f"section {section} failed: {result!r}"
    assert result.figures and all(p.exists() and p.suffix == ".png" for p in result.figures)
    assert result.rows, f"section {section} reports no headline numbers"
    assert (tmp_path / "REPORT.md").read_text().count("|") > 4
