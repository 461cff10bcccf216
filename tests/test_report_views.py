"""Report sections are views over the bench's runner: computed once, the same numbers everywhere."""

import dataclasses
import functools

import pytest

import zoo
from zoo import report
from zoo.analysis import get_analysis, registry
from zoo.analysis.bench import bench, result_for
from zoo.analysis.protocols import LayeredMap, UnrolledInTime, provides


@pytest.fixture
def counted(monkeypatch):
    """Count every call of every registered analysis."""
    calls = []
    for name in registry.list_analyses():
        spec = registry._ANALYSES[name]

        @functools.wraps(spec.func)  # keeps the signature: the analysis's parameters are read from it
        def wrapped(model, task, _func=spec.func, _name=name, **params):
            calls.append((_name, model.zoo_name))
            return _func(model, task, **params)

        monkeypatch.setitem(registry._ANALYSES, name, dataclasses.replace(spec, func=wrapped))
    return calls


def test_figures_after_bench_recomputes_nothing_and_shows_the_same_numbers(tmp_path, counted, monkeypatch):
    """A section declaring what it needs (here: curvature of the random tanh and hard-tanh nets)
    reads the bench's results: no analysis runs again, and it shows the bench's own numbers."""
    def view(out_dir, quick):
        found = report.analysis_results("curvature", "random-net/*tanh", quick)
        return report.Section("view", rows=[report.Row(n, r.summary["euclidean_growth"], r.summary["theory_growth"], "",
                                                       report.verdict(r.summary["euclidean_growth"],
                                                                      r.summary["theory_growth"], 0.02, relative=True))
                                            for n, r in found.items()])

    monkeypatch.setitem(report._SECTIONS, "test-view", ("view", view))
    monkeypatch.setitem(report._NEEDS, "test-view", [("curvature", "random-net/*tanh")])
    quick = get_analysis("curvature").quick_params
    tables = bench(["curvature"], pattern="random-net/*tanh", params=quick, out_dir=tmp_path / "results",
                   progress=False)
    assert len(counted) == 2 and all(r["status"] == "ok" for r in tables["curvature"])
    results = report.run_sections(["test-view"], tmp_path / "report", quick=True, results_dir=tmp_path / "results")
    assert len(counted) == 2  # the report read both results from the bench's cache
    shown = {row.quantity: row.ours for row in dict(results)["test-view"].rows}
    assert shown == {r["entry"]: r["euclidean_growth"] for r in tables["curvature"]}  # the bench's numbers
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "**2 of 2 headline numbers with a paper value match it**" in text and "| verdict |" in text
    report.run_sections(["test-view"], tmp_path / "report2", quick=True, results_dir=tmp_path / "fresh")
    assert len(counted) == 4  # an empty cache computes them (once more)


def test_line_attractor_by_name_on_the_flip_flop_finds_its_eight_stable_points(tmp_path):
    result, status = result_for("flip-flop/gru", "line-attractor", {"q_tol": 1e-12, "lm_damping": 1e-6},
                                out_dir=tmp_path)
    s = result.summary
    assert status == "ok" and s["n_stable"] == 8  # 2^3 memories
    assert s["abs_lambda1"] < 1 and "bit" in s["top_positive"]
    again, status = result_for("flip-flop/gru", "line-attractor", {"q_tol": 1e-12, "lm_damping": 1e-6}, out_dir=tmp_path)
    assert status == "cached" and again.summary == s


def test_recurrent_models_are_layered_maps_through_time():
    net = zoo.load("flip-flop/gru")
    assert provides(net, LayeredMap)
    unrolled = UnrolledInTime(net, n_steps=3)
    import torch

    h = torch.randn(4, net.state_size)
    out = h
    for f in unrolled.layer_maps():
        out = f(out)
    want = h
    for _ in range(3):
        want = net.step(want, torch.zeros(4, net.input_size))
    assert torch.equal(out, want)
    with pytest.raises(ValueError, match="n_steps"):
        UnrolledInTime(net, n_steps=0)


@pytest.mark.parametrize("ours, target, tol, relative, want", [
    (1.537, 1.5386, 0.002, False, "match"), (1.54, 1.5386, 0.001, False, "near"), (1.6, 1.5386, 0.01, False, "differs"),
    (0.593, 0.597, 0.01, True, "match"), (0.59, 0.597, 0.01, True, "near"),
    (float("nan"), 1.0, 0.1, False, "differs"), (None, 1.0, 0.1, False, "differs"),
])
def test_verdicts(ours, target, tol, relative, want):
    assert report.verdict(ours, target, tol, relative=relative) == want


def test_one_sided_verdicts_and_bad_verdicts():
    assert report.at_least(0.95, 0.9, 0.1) == "match" and report.at_least(0.85, 0.9, 0.1) == "near"
    assert report.at_most(0.25, 0.2, 0.1) == "near" and report.at_most(0.5, 0.2, 0.1) == "differs"
    with pytest.raises(ValueError, match="verdict"):
        report.Row("x", 1, 1, verdict="close")


def _tanh_growth_view(out_dir, quick):
    """A view section (module level, so a worker process can import it)."""
    found = report.analysis_results("curvature", "random-net/*tanh", quick)
    return report.Section("view", rows=[report.Row(n, r.summary["euclidean_growth"], "") for n, r in found.items()])


def _own_section(out_dir, quick):
    """A section that needs no analysis (it computes for itself)."""
    return report.Section("own", rows=[report.Row("two", 2, "")])


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _failing_section(out_dir, quick):
    raise _Unpicklable("one", "two")  # cannot be unpickled: its constructor takes two arguments


def _missing_weights_section(out_dir, quick):
    raise zoo.CheckpointError("nowhere.h5", "no weights")


def test_figures_in_a_pool_runs_sections_and_analyses_together(tmp_path, monkeypatch):
    """--jobs 2: the self-computing section, the analyses and the view share one pool of processes
    and give what one process gives."""
    monkeypatch.setitem(report._SECTIONS, "test-view", ("view", _tanh_growth_view))
    monkeypatch.setitem(report._NEEDS, "test-view", [("curvature", "random-net/*tanh")])
    monkeypatch.setitem(report._SECTIONS, "test-own", ("own", _own_section))
    monkeypatch.setitem(report._NEEDS, "test-own", [])
    pooled = dict(report.run_sections(["test-own", "test-view"], tmp_path / "a", quick=True,
                                      results_dir=tmp_path / "pooled", jobs=2))
    alone = dict(report.run_sections(["test-own", "test-view"], tmp_path / "b", quick=True,
                                     results_dir=tmp_path / "alone", jobs=1))
    assert pooled["test-own"].rows == alone["test-own"].rows == [report.Row("two", 2, "")]
    assert len(pooled["test-view"].rows) == 2  # one thread per worker: the same numbers up to BLAS summation order
    assert [r.quantity for r in pooled["test-view"].rows] == [r.quantity for r in alone["test-view"].rows]
    assert [r.ours for r in pooled["test-view"].rows] == pytest.approx([r.ours for r in alone["test-view"].rows], rel=1e-9)
    assert (tmp_path / "pooled" / "curvature.h5").exists()
    # failing sections, even with exceptions that cannot travel between processes, fail alone
    for name, func in (("test-fail", _failing_section), ("test-missing", _missing_weights_section)):
        monkeypatch.setitem(report._SECTIONS, name, (name, func))
        monkeypatch.setitem(report._NEEDS, name, [])
    done = dict(report.run_sections(["test-fail", "test-missing", "test-own"], tmp_path / "c", quick=True,
                                    results_dir=tmp_path / "pooled", jobs=2))
    assert "_Unpicklable: one and two" in str(done["test-fail"])
    assert isinstance(done["test-missing"], zoo.CheckpointError) and done["test-own"].rows == [report.Row("two", 2, "")]


def test_needed_analyses_and_costliest_first():
    from zoo.analysis.bench import costliest_first

    needs = report.needed_analyses()
    assert needs["line-attractor"] == ["sentiment-*/*"] and "retina-*/cnn" in needs["curvature"]
    work = [("a", "curvature", {}), ("b", "line-attractor", {}), ("c", "response-prediction", {})]
    assert costliest_first(work) == [1, 0, 2]
