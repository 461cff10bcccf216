"""The zoo as a library: a built wheel carries the shipped weights, installs one top-level package
(`zoo`, with `zoo.tasks` and `zoo.analysis`), and loads an entry from anywhere; torch.hub loads any
entry by name from a clone."""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed: {build.stderr[-1500:]}")
    return next(out.glob("neurozoo-*.whl"))


def test_wheel_holds_one_package_and_the_weights(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"zoo"}  # no generic top-level `tasks` or `analysis`
    shipped = {p.name for p in (ROOT / "zoo" / "checkpoints").iterdir() if p.suffix in (".h5", ".json")}
    assert {f"zoo/checkpoints/{n}" for n in shipped} <= set(names)


def test_wheel_installed_in_a_fresh_venv_loads_an_entry_elsewhere(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    with zipfile.ZipFile(wheel) as z:  # what `pip install --no-deps` does for a pure-Python wheel
        z.extractall(site)
    # the dependencies (torch, h5py, ...) come from this environment, appended after the wheel's own files;
    # this environment's editable `zoo` is not visible there (.pth files are not processed in a .pth path)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent("""
        import zoo, zoo.tasks, zoo.analysis
        print(zoo.__file__)
        net = zoo.load("flip-flop/gru")
        print(zoo.card("flip-flop/gru")["metrics"]["accuracy"] > 0.9, sum(p.numel() for p in net.parameters()))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_CHECKPOINT_DIR", "PYTHONPATH")}
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=elsewhere, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    location, check = out.stdout.strip().splitlines()
    assert location.startswith(str(site)) and check.startswith("True ")


def test_torch_hub_loads_any_entry_by_name():
    net = torch.hub.load(str(ROOT), "flip-flop/gru", source="local", trust_repo=True)
    reference = zoo.load("flip-flop/gru")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))
    rand = torch.hub.load(str(ROOT), "random-net/tanh", source="local", depth=3, width=8, seed=1)
    assert rand.depth == 3 and torch.equal(rand.weights, zoo.load("random-net/tanh", depth=3, width=8, seed=1).weights)
    hubconf = torch.hub._import_module("hubconf", str(ROOT / "hubconf.py"))  # what torch.hub.load imports
    assert "sentiment-sst/gru" in dir(hubconf) and "dependencies" in dir(hubconf)
    with pytest.raises(RuntimeError, match="Cannot find callable flip-flop/gruu"):  # torch.hub checks dir(hubconf)
        torch.hub.load(str(ROOT), "flip-flop/gruu", source="local")
