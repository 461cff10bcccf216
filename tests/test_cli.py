"""The `zoo` command: every subcommand has --help, --json prints one JSON document, errors are clear."""

import json
import subprocess
import sys

import pytest

from zoo.cli import main

SUBCOMMANDS = ["list", "info", "train", "eval", "analyze", "bench", "figures"]


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


def test_errors_are_clear(capsys):
    assert main(["info", "random-net/tanhh"]) == 2
    assert "closest: random-net/tanh" in capsys.readouterr().err
    assert main(["analyze", "no-such-analysis", "random-net/tanh"]) == 2
    assert "unknown analysis" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="untrained"):
        main(["eval", "random-net/tanh"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["train", "random-net/tanh", "--set", "oops"])
