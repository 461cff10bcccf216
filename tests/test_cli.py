"""The `zoo` command: every subcommand has --help, --json prints one JSON document, errors are clear."""

import json
import re
import subprocess
import sys

import pytest

from zoo.cli import main

SUBCOMMANDS = ["list", "info", "train", "export", "eval", "analyze", "bench", "figures"]


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([sub, "--help"])
    assert exit_.value.code == 0
    assert "usage: zoo " + sub in capsys.readouterr().out


def test_python_dash_m_zoo():
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "random-net/*", "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert [r["name"] for r in json.loads(out)][-1] == "random-net/tanh"


def test_list_and_info_json(capsys):
    assert main(["list", "random-net/*"]) == 0
    human = capsys.readouterr().out.splitlines()
    assert human[0].split()[:3] == ["name", "task", "weights"] and len(human) == 2 + 5
    assert main(["info", "random-net/relu", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["config"]["sigma_w2"] == 2.0


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zoo {command}: error: "), err
    return err[0]


def test_errors_are_clear(capsys):
    assert main(["info", "random-net/tanhh"]) == 2
    assert "closest: random-net/tanh" in _one_error_line(capsys, "info")
    assert main(["analyze", "no-such-analysis", "random-net/tanh"]) == 2
    assert "unknown analysis" in _one_error_line(capsys, "analyze")
    assert main(["eval", "random-net/tanh"]) == 2
    assert "no test metrics" in _one_error_line(capsys, "eval")
    assert main(["train", "random-net/tanh", "--set", "oops"]) == 2
    assert "KEY=VALUE" in _one_error_line(capsys, "train")
    assert main(["eval", "flip-flop/gru", "--write-card"]) == 2  # shipped cards change only by export
    assert "needs --checkpoint" in _one_error_line(capsys, "eval")
    assert main(["train", "flip-flop/gru", "--lr-decay", "0.5", "x"]) == 2
    assert "--lr-decay takes a rate" in _one_error_line(capsys, "train")


@pytest.mark.parametrize("argv, match", [
    (["analyze", "fixed-points", "flip-flop/gru", "--param", "n_seeds=abc"], "n_seeds must be an integer .*got 'abc'"),
    (["analyze", "fixed-points", "flip-flop/gru", "--param", "n_seeds=0"], "n_seeds is a count or size and must be a positive"),
    (["analyze", "curvature", "random-net/tanh", "--param", "n_angels=3"], "takes n_angles"),
    (["analyze", "curvature", "random-net/tanh", "--checkpoint", "x.h5"], "its seed is its checkpoint"),
    (["analyze", "curvature", "flip-flop/gru", "--checkpoint", "nowhere/x.h5"], "nowhere/x.h5"),
    (["train", "flip-flop/gru", "--set", "hidden=abc"], "hidden must be an integer .*got 'abc'"),
    (["train", "flip-flop/gru", "--set", "hiden=8"], r"hiden \(did you mean hidden\?\)"),
    (["train", "flip-flop/gru", "--export", "--replace", "--accelerator", "gpu"], "no CUDA GPU|nothing"),
    (["train", "flip-flop/gru", "--replace"], "--replace only applies with --export"),
    (["export", "no/such/run"], "does not exist"),
])
def test_bad_values_are_one_line_before_any_work(capsys, tmp_path, argv, match):
    if "gpu" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    assert main(argv + (["--runs", str(tmp_path)] if argv[0] == "train" else [])) == 2
    assert re.search(match, _one_error_line(capsys, argv[0]))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flag", ["--max-steps", "--batch-size", "--max-epochs", "--lr"])
def test_bad_numbers_are_argparse_errors(capsys, flag):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "flip-flop/gru", flag, "-5"])
    assert exit_.value.code == 2
    assert f"argument {flag}: expected a positive" in capsys.readouterr().err


def test_ctrl_c_is_one_line_with_the_resume_hint(capsys, tmp_path, monkeypatch):
    from toy_task import Interrupt, register_toy_entry

    name = register_toy_entry("toy-regression/dropout")
    Interrupt.calls, Interrupt.at = 0, 12
    try:
        assert main(["train", name, "--runs", str(tmp_path), "--no-progress"]) == 130
    finally:
        Interrupt.at = 10**9
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zoo train: interrupted; continue by running the same `zoo train {name}` command with "
                   f"`--resume` (from {tmp_path}/toy-regression__dropout/seed0/checkpoints/last.ckpt)"]
    import zoo.analysis.bench as bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_analysis_on", interrupted)
    assert main(["analyze", "curvature", "random-net/tanh"]) == 130
    assert capsys.readouterr().err.strip() == "zoo analyze: interrupted"


def test_export_command(capsys, tmp_path, ckpt_dir):
    from toy_task import register_toy_entry

    name = register_toy_entry()
    assert main(["train", name, "--runs", str(tmp_path), "--max-epochs", "1", "--no-progress"]) == 0
    run = tmp_path / "toy-regression__linear" / "seed0"
    assert f"zoo export {run}" in capsys.readouterr().out and not list(ckpt_dir.iterdir())
    assert main(["export", str(run)]) == 0
    assert (ckpt_dir / "toy-regression__linear.h5").exists()
    assert main(["export", str(run)]) == 2
    assert "--replace" in _one_error_line(capsys, "export")
    assert main(["export", str(run), "--replace"]) == 0


def test_eval_writes_a_run_cards_metrics_and_refuses_shipped_files(tmp_path, capsys):
    """``zoo eval NAME --checkpoint RUN.h5 --write-card``: the run's card gets the recomputed metrics,
    its weights stay byte for byte; a shipped file is refused before anything is evaluated."""
    from zoo import checkpoint as ckpt
    from zoo.training import train

    path = train("flip-flop/gru", max_epochs=1, overrides={"hidden": 4}, task_options={"batches_per_epoch": 6},
                 runs_root=tmp_path, progress_bar=False)
    name, _, card, before = ckpt.load(path)
    card = {**card, "metrics": {"stale": 1.0}}
    ckpt.replace_card(path, card)
    assert main(["eval", name, "--checkpoint", str(path), "--write-card", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["measured"]
    _, _, after_card, after = ckpt.load(path)  # verified against the run's updated manifest
    assert after_card["metrics"] == measured and "stale" not in measured
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)
    assert main(["eval", name, "--checkpoint", str(ckpt.checkpoint_dir() / ckpt.file_name(name)), "--write-card"]) == 2
    assert "shipped checkpoint" in _one_error_line(capsys, "eval")
