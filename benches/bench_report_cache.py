"""`make demo`'s analysis stage with and without the shared cache, measured in one run.

Before report sections were views, `zoo bench` computed every analysis and `zoo figures` computed
the ones it shows a second time with its own code and cache. This bench times both flows on the
same machine, in one process, at the analyses' quick sizes (``--full``: their defaults, minutes):

* shared: `zoo bench --report` into a results folder, then `zoo figures` reading that folder;
* unshared: the same bench, then `zoo figures` with an empty results folder (what a second,
  separate computation costs).

Prints both totals and their ratio, and the number of analysis runs each flow made.

    python benches/bench_report_cache.py [--full] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from zoo import report  # noqa: E402
from zoo.analysis import get_analysis, registry  # noqa: E402
from zoo.analysis.bench import bench  # noqa: E402


def _count_calls() -> list[str]:
    calls: list[str] = []
    for name in registry.list_analyses():
        spec = registry._ANALYSES[name]

        @functools.wraps(spec.func)
        def wrapped(model, task, _func=spec.func, _name=name, **params):
            calls.append(_name)
            return _func(model, task, **params)

        registry._ANALYSES[name] = dataclasses.replace(spec, func=wrapped)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the analyses' default sizes (minutes)")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = not args.full
    sections = [n for n in report.list_sections() if report._NEEDS[n]]
    analyses = report.needed_analyses(sections)
    calls = _count_calls() if args.jobs == 1 else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timings = {}
        for flow in ("shared", "unshared"):
            started = time.perf_counter()
            for analysis, wildcards in analyses.items():  # the entries the report shows, as `zoo bench --report`
                params = get_analysis(analysis).quick_params if quick else {}
                bench({analysis: wildcards}, params=params, out_dir=tmp / flow / "results", progress=False, jobs=args.jobs)
            bench_s = time.perf_counter() - started
            before = len(calls)
            figures_results = tmp / flow / ("results" if flow == "shared" else "empty")
            report.run_sections(sections, tmp / flow / "report", quick=quick, results_dir=figures_results, jobs=args.jobs)
            timings[flow] = (bench_s, time.perf_counter() - started - bench_s, len(calls) - before)
    print(f"sections {', '.join(sections)}; analyses {', '.join(analyses)}; "
          f"{'default' if args.full else 'quick'} sizes; jobs {args.jobs}")
    for flow, (b, f, n) in timings.items():
        runs = f", figures ran {n} analyses" if args.jobs == 1 else ""
        print(f"{flow:9s} bench {b:6.1f} s + figures {f:6.1f} s = {b + f:6.1f} s{runs}")
    shared, unshared = (sum(timings[k][:2]) for k in ("shared", "unshared"))
    print(f"ratio unshared / shared: {unshared / shared:.2f}x")


if __name__ == "__main__":
    main()
