"""The ``zoo`` command (also ``python -m zoo``). Every subcommand has ``--help``.

    zoo list [PATTERN] [--json]          entries, their task and whether weights are shipped
    zoo info NAME [--json]               the model card
    zoo train NAME [options]             train with Lightning into runs/<entry>/seed<k>/
    zoo export RUN [--replace]           promote a finished run into the shipped checkpoints
    zoo eval NAME [--json]               recompute the test metrics and compare with the card
    zoo eval NAME --checkpoint RUN.h5 --write-card   ... of a run, and store them in its card
    zoo analyze ANALYSIS NAME [--json]   run one analysis on one entry
    zoo bench [ANALYSIS ...] [--json]    run analyses across every compatible entry
    zoo figures [SECTION ...]            the papers' figures and headline numbers (REPORT.md)

Exit status: 0 success; 1 the command ran but some part failed (a report section, a bench
entry); 2 an error (bad arguments or input, a refused checkpoint), printed as one line
`zoo COMMAND: error: ...`; 130 interrupted (Ctrl-C). ZOO_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence


def _value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class UsageError(ValueError):
    """A bad command line: printed as one line, exit status 2."""


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, else a message saying ``what`` is expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _value(text)
    return out


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Aligned plain-text table of ``rows`` (dicts) with a header line."""
    from zoo.analysis.bench import format_value

    if not rows:
        return "(nothing)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _emit(args, document: Any, human: str) -> None:
    print(json.dumps(document, indent=2, default=str) if getattr(args, "json", False) else human)


# ----------------------------------------------------------------------------- subcommands


def cmd_list(args) -> int:
    import zoo

    rows = []
    for name in zoo.list_models(args.pattern):
        entry = zoo.get_entry(name)
        shipped = entry.weights == "seed" or entry.path.exists()
        rows.append({"name": name, "task": entry.task, "weights": entry.weights,
                     "available": "yes" if shipped else "no weights: see `zoo info`", "paper": entry.paper})
    _emit(args, rows, _table(rows))
    return 0


def cmd_info(args) -> int:
    import zoo

    card = zoo.card(args.name)
    human = "\n".join(f"{k:12s} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}"
                      for k, v in card.items() if k != "config" or len(json.dumps(v, default=str)) < 400)
    _emit(args, card, human)
    return 0


def _lr_decay(values: list[str] | None) -> list | None:
    """``--lr-decay RATE STEPS`` as the recipe's ``[rate, steps]``."""
    if values is None:
        return None
    try:
        return [float(values[0]), int(values[1])]
    except ValueError:
        raise UsageError(f"--lr-decay takes a rate and a whole number of steps, got {' '.join(values)}") from None


def cmd_train(args) -> int:
    from . import checkpoint as ckpt
    from .training import train

    trainer_kwargs = {k: v for k, v in {
        "accelerator": args.accelerator, "devices": _value(args.devices) if args.devices else None,
        "num_nodes": args.num_nodes, "strategy": args.strategy, "precision": args.precision,
    }.items() if v is not None}
    if args.replace and not args.export:
        raise UsageError("--replace only applies with --export")
    if not args.verbose:  # Lightning's info lines (devices, "Detected KeyboardInterrupt", ...) only on request
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    path = train(args.name, seed=args.seed, overrides=_pairs(args.set, "--set"),
                 task_options=_pairs(args.task_set, "--task-set"), max_steps=args.max_steps,
                 max_epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                 probe_every=args.probe_every, lr_decay=_lr_decay(args.lr_decay), adam_beta2=args.adam_beta2,
                 resume=args.resume,
                 runs_root=args.runs, trainer_kwargs=trainer_kwargs, progress_bar=not args.no_progress)
    if path is None:  # a DDP rank other than 0: rank 0 reports
        return 0
    print(f"wrote {path}")
    if args.export:
        print(f"exported {ckpt.export(path, replace=args.replace)}")
    else:
        print(f"to ship it: zoo export {path.parent}")
    return 0


def cmd_export(args) -> int:
    from . import checkpoint as ckpt

    source = Path(args.run)
    if source.is_dir():
        files = sorted(source.glob("*.h5"))
        if len(files) != 1:
            raise UsageError(f"{source} holds {len(files)} .h5 checkpoints; name the file to export")
        source = files[0]
    print(f"exported {ckpt.export(source, args.to, replace=args.replace)}")
    return 0


def cmd_eval(args) -> int:
    import zoo

    from . import checkpoint as ckpt
    from .tasks.base import Task

    if args.write_card and not args.checkpoint:
        raise UsageError("--write-card needs --checkpoint RUN.h5 (shipped cards change only through `zoo export`)")
    if args.write_card:
        ckpt.refuse_shipped(args.checkpoint)  # before minutes of evaluation, not after
    model = zoo.load(args.name, checkpoint=args.checkpoint)
    task = zoo.task(args.name)
    if type(task).loss is Task.loss or type(task).dataloader is Task.dataloader:
        raise UsageError(f"{args.name} has no test metrics: its task ({task.name}) defines no test data or loss")
    card = ckpt.load(args.checkpoint)[2] if args.checkpoint else zoo.card(args.name)
    measured = task.evaluate(model, "test", batch_size=card.get("training", {}).get("eval_batch_size", 256))
    stored = card.get("metrics", {})
    flat = _flat(stored)
    rows = [{"metric": k, "measured": v, "card": flat.get(k),
             "difference": (v - flat[k]) if isinstance(flat.get(k), (int, float)) else None}
            for k, v in _flat(measured).items()]
    if args.write_card:
        ckpt.replace_card(args.checkpoint, {**card, "metrics": measured})
    _emit(args, {"name": args.name, "measured": measured, "card": stored}, _table(rows))
    return 0


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics (``line_attractor: {...}``) as ``line_attractor.key`` rows; settings skipped."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            if k != "settings":
                out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def cmd_analyze(args) -> int:
    from zoo.analysis.bench import run_analysis_on

    result = run_analysis_on(args.name, args.analysis, _pairs(args.param, "--param"), checkpoint=args.checkpoint)
    document = {"name": args.name, "analysis": args.analysis, "summary": result.summary,
                **({"checkpoint": args.checkpoint} if args.checkpoint else {})}
    _emit(args, document, _table([{"quantity": k, "value": v} for k, v in result.summary.items()]))
    return 0


def cmd_bench(args) -> int:
    from zoo.analysis import list_analyses
    from zoo.analysis.bench import bench

    if args.report and args.analyses:
        raise UsageError("give analysis names or --report, not both")
    if args.report:
        from .report import needed_analyses

        names = needed_analyses()
    else:
        names = args.analyses or list_analyses()
    if not names:
        raise UsageError("no analyses are registered yet")
    tables = bench(names, pattern=args.pattern, params=_pairs(args.param, "--param"), out_dir=args.out,
                   progress=not args.json, jobs=args.jobs)
    human = "\n\n".join(f"== {name} ({Path(args.out) / name}.h5, .csv, .md)\n{_table(rows)}" for name, rows in tables.items())
    _emit(args, tables, human)
    return 0


def cmd_figures(args) -> int:
    from .report import run_sections

    results = run_sections(args.sections or None, Path(args.out), quick=args.quick, results_dir=args.results,
                           jobs=args.jobs)
    failed = 0
    for name, section in results:
        if isinstance(section, Exception):
            failed += 1
            print(f"{name:20s} FAILED: {type(section).__name__}: {section}")
        else:
            print(f"{name:20s} {len(section.figures)} figures, {len(section.rows)} headline numbers")
    print(f"report: {Path(args.out) / 'REPORT.md'}")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="A unified model zoo for theoretical neuroscience.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list entries matching a shell wildcard")
    p.add_argument("pattern", nargs="?", default="*", help="e.g. 'sentiment-*/g*' (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show an entry's model card")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train an entry with Lightning into runs/<entry>/seed<k>/",
                       description="Train with Lightning. The finished HDF5 checkpoint and its card go to "
                                   "RUNS/<entry>/seed<k>/ (with a manifest); the shipped weights are never touched "
                                   "unless --export is given, and a shipped entry is replaced only with --replace.")
    p.add_argument("name")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder override, e.g. --set hidden_size=4096")
    p.add_argument("--task-set", action="append", metavar="KEY=VALUE",
                   help="task option, e.g. --task-set data_file=rec.h5 or --task-set train_fraction=0.1")
    p.add_argument("--max-steps", type=_positive_int)
    p.add_argument("--probe-every", type=_positive_int, metavar="STEPS",
                   help="log the task's probe metrics (e.g. gridness) every STEPS steps, in the run's metrics.csv")
    p.add_argument("--max-epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--lr", type=_positive_float)
    p.add_argument("--lr-decay", nargs=2, metavar=("RATE", "STEPS"),
                   help="decay the learning rate smoothly to RATE x every STEPS steps (renn's sentiment recipe: 0.2 1000)")
    p.add_argument("--adam-beta2", type=_positive_float, metavar="BETA2",
                   help="Adam's second-moment decay (default torch's 0.999; 0.99 adapts faster to a growing gradient)")
    p.add_argument("--weight-decay", type=float, metavar="L2", help="Adam's L2 penalty (the model may restrict it "
                   "to some weights, e.g. the grid RNN's to W_hh)")
    p.add_argument("--resume", action="store_true", help="continue from RUNS/<entry>/seed<k>/checkpoints/last.ckpt")
    p.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    p.add_argument("--export", action="store_true", help="after training, copy the checkpoint into the shipped set")
    p.add_argument("--replace", action="store_true", help="with --export: replace an existing shipped checkpoint")
    p.add_argument("--verbose", action="store_true", help="show Lightning's info messages")
    p.add_argument("--accelerator", help="Lightning accelerator: cpu, gpu, auto")
    p.add_argument("--devices", help="Lightning devices: 1, 4, 'auto', [0,1]")
    p.add_argument("--num-nodes", type=_positive_int)
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--precision", help="Lightning precision, e.g. 32, bf16-mixed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="promote a finished run into the shipped checkpoints (and the manifest)")
    p.add_argument("run", help="a run folder runs/<entry>/seed<k> or its .h5 file")
    p.add_argument("--replace", action="store_true", help="replace the entry's existing shipped checkpoint")
    p.add_argument("--to", help="target folder (default: the shipped set, $ZOO_CHECKPOINT_DIR or zoo/checkpoints)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="recompute an entry's test metrics and compare with its card")
    p.add_argument("name")
    p.add_argument("--checkpoint", metavar="PATH", help="a training run's checkpoint instead of the shipped one")
    p.add_argument("--write-card", action="store_true",
                   help="with --checkpoint: store the recomputed metrics in that run checkpoint's card")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("analyze", help="run one analysis on one entry")
    p.add_argument("analysis", help="e.g. curvature, fixed-points, gridness (see `zoo bench --help`)")
    p.add_argument("name")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="analysis parameter")
    p.add_argument("--checkpoint", metavar="PATH", help="a training run's checkpoint (runs/<entry>/seed<k>/<entry>.h5) "
                   "instead of the shipped weights")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="run analyses on every entry that offers their protocol")
    p.add_argument("analyses", nargs="*", help="analysis names (default: all registered)")
    p.add_argument("--pattern", default="*", help="only entries matching this wildcard")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="analysis parameter")
    p.add_argument("--out", default="results", help="folder for <analysis>.h5/.csv/.md (default: results)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="processes of one thread each (default: 1)")
    p.add_argument("--report", action="store_true", help="the analyses the report (`zoo figures`) shows, on every "
                                                         "compatible entry")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("figures", help="reproduce the papers' figures and headline numbers")
    p.add_argument("sections", nargs="*", help="report sections (default: all)")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--quick", action="store_true", help="smaller, faster runs (seconds)")
    p.add_argument("--results", default="results",
                   help="the analysis cache shared with `zoo bench --out` (default: results)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="processes for the analyses (default: 1)")
    p.set_defaults(func=cmd_figures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse errors: usage line, then `zoo COMMAND: error: ...`, exit 2
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        detail = str(err) if str(err) else "interrupted"
        print(f"zoo {args.command}: {detail}", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as err:  # every other failure is one line; ZOO_DEBUG=1 shows where it came from
        if os.environ.get("ZOO_DEBUG"):
            traceback.print_exc()
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        known = isinstance(err, (UsageError, KeyError, TypeError, ValueError, FileNotFoundError, FileExistsError,
                                 RuntimeError))
        prefix = "" if known else f"{type(err).__name__}: "
        line = " ".join(f"{prefix}{message}".split()) or type(err).__name__  # one line, whatever the message held
        print(f"zoo {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
