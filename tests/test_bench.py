"""`zoo bench`: runs on every compatible entry, records failures per entry, caches by sha256 key."""

import json
import re

import h5py
import pytest
import torch

from zoo.analysis import AnalysisResult, LayeredMap, get_analysis, list_analyses, register_analysis, registry
from zoo.analysis.bench import bench
from zoo.cli import main

CALLS = []


def _depth_analysis(model, task, *, scale=1.0):
    """Counts layers; fails on purpose for relu nets."""
    CALLS.append(model.zoo_name)
    if model.zoo_name == "random-net/relu":
        raise RuntimeError("deliberate failure")
    return AnalysisResult({"layers": len(model.layer_maps()) * scale}, {"x": torch.arange(3).numpy()})


@pytest.fixture(autouse=True)
def depth_analysis():
    """Registered only while these tests run, so the zoo-wide tests never see it."""
    register_analysis("unit-test-depth", protocol=LayeredMap, version="1")(_depth_analysis)
    yield
    registry._ANALYSES.pop("unit-test-depth")


def test_bench_runs_caches_and_records_failures(tmp_path):
    CALLS.clear()
    rows = bench(["unit-test-depth"], pattern="random-net/*", out_dir=tmp_path, progress=False)["unit-test-depth"]
    by_entry = {r["entry"]: r for r in rows}
    assert by_entry["random-net/tanh"]["seconds"] >= 0
    row = {k: v for k, v in by_entry["random-net/tanh"].items() if k != "seconds"}
    assert row == {"entry": "random-net/tanh", "status": "ok", "layers": 20.0}
    assert by_entry["random-net/relu"]["status"].startswith("failed: RuntimeError: deliberate failure")
    assert len(CALLS) == 5
    # second run: results reused, the failure retried
    rows = bench(["unit-test-depth"], pattern="random-net/*", out_dir=tmp_path, progress=False)["unit-test-depth"]
    assert sorted(CALLS[5:]) == ["random-net/relu"]
    assert {r["status"] for r in rows} == {"cached", "failed: RuntimeError: deliberate failure"}
    assert re.search(r"\| random-net/tanh \| cached \| [0-9.]+ \| 20 \|", (tmp_path / "unit-test-depth.md").read_text())
    assert (tmp_path / "unit-test-depth.csv").read_text().startswith("entry,status")
    # new parameters: a new key, recomputed
    bench(["unit-test-depth"], pattern="random-net/tanh", params={"scale": 2.0}, out_dir=tmp_path, progress=False)
    assert CALLS[-1] == "random-net/tanh"
    with h5py.File(tmp_path / "unit-test-depth.h5") as f:
        assert len(f) == 5  # four entries at scale 1, one at scale 2
        summaries = sorted(json.loads(g.attrs["summary"])["layers"] for g in f.values())
        assert summaries[-1] == 40.0


def test_bench_cli_json(tmp_path, capsys):
    assert main(["bench", "unit-test-depth", "--pattern", "random-net/t*", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unit-test-depth"][0]["layers"] == 20.0
    assert main(["analyze", "unit-test-depth", "random-net/erf", "--param", "scale=0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == {"layers": 10.0}


def test_analysis_parameter_and_protocol_errors():
    analysis = get_analysis("unit-test-depth")
    with pytest.raises(TypeError, match="takes scale"):
        analysis(None, None, depth=3)
    with pytest.raises(TypeError, match="LayeredMap"):
        analysis(torch.nn.Linear(2, 2), None)
    with pytest.raises(KeyError, match="unknown analysis"):
        get_analysis("unit-test-dept")
    assert "unit-test-depth" in list_analyses()


def test_params_go_to_the_analyses_that_take_them(tmp_path):
    with pytest.raises(TypeError, match="no analysis among unit-test-depth takes depth"):
        bench(["unit-test-depth"], pattern="random-net/tanh", params={"depth": 3}, out_dir=tmp_path, progress=False)


def test_markdown_table_escapes_pipes_in_cells():
    from zoo.analysis.bench import markdown_table

    table = markdown_table([{"entry": "a", "convention": "q = ||F(h) - h||^2", "x": 0.5}])
    header, rule, row = table.splitlines()
    assert row == "| a | q = \\|\\|F(h) - h\\|\\|^2 | 0.5 |"
    assert row.replace("\\|", "").count("|") == header.count("|") == 4


def test_concurrent_benches_compute_each_result_once(tmp_path):
    """Two bench processes on one cache: every (entry, analysis, params) is computed once, and the
    cache ends with every result (neither process's copy-modify-rename loses the other's)."""
    import subprocess
    import sys
    import textwrap

    import h5py

    script = tmp_path / "bench_once.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from zoo.analysis import AnalysisResult, LayeredMap, register_analysis
        from zoo.analysis.bench import bench

        @register_analysis("slow-count", protocol=LayeredMap)
        def slow_count(model, task, *, n: int = 1):
            with open({str(tmp_path / 'calls.txt')!r}, "a") as f:
                f.write(model.zoo_name + "\\n")
            time.sleep(0.5)
            return AnalysisResult({{"depth": model.depth}})

        rows = bench(["slow-count"], pattern="random-net/*", out_dir={str(tmp_path / 'out')!r}, progress=False)
        print(sorted(r["status"] for r in rows["slow-count"]))
    """))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    calls = (tmp_path / "calls.txt").read_text().split()
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 5  # five random-net entries, each once
    with h5py.File(tmp_path / "out" / "slow-count.h5") as f:
        assert len(f) == 5
    statuses = [eval(o.strip().splitlines()[-1]) for o in outs]
    assert sorted(s for st in statuses for s in st).count("ok") == 5
