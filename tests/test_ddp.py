"""Lightning DDP on CPU (gloo, 2 processes) for each kind of task sampler: a dataset order
(EpochShuffle), length buckets (sentiment's BucketBatches) and generated batches (flip-flop).

Each rank trains on a disjoint shard, so an epoch takes half the steps; only rank 0 writes the
checkpoint; validation metrics are averaged over both ranks' shards; the result loads."""

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from zoo import checkpoint as ckpt
from zoo.tasks import base
from zoo.tasks.sentiment import BucketBatches

ROOT = Path(__file__).resolve().parent.parent


def _ddp(args, tmp_path, script=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "zoo"]
    out = subprocess.run(command + ["train", *args, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
                                    "--runs", str(tmp_path), "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wrote = [line for line in out.stdout.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 1, out.stdout  # rank 0 alone exports
    return Path(wrote[0].split(" ", 1)[1])


def test_ddp_dataset_sampler_shards_and_syncs_metrics(tmp_path):
    script = tmp_path / "train_toy.py"
    script.write_text(textwrap.dedent("""
        import sys
        from toy_task import register_toy_entry
        from zoo.cli import main
        register_toy_entry()
        sys.exit(main(sys.argv[1:]))
    """))
    path = _ddp(["toy-regression/linear", "--max-epochs", "2"], tmp_path, script)
    card = ckpt.load(path)[2]
    assert card["training"]["steps"] == 2 * 4 and card["training"]["world_size"] == 2  # 8 batches per epoch, halved
    sys.path.insert(0, str(ROOT / "tests"))
    from toy_task import register_toy_entry

    name = register_toy_entry()
    model = zoo.load(name, checkpoint=path)
    rows = list(csv.DictReader(open(path.parent / "logs/version_0/metrics.csv")))
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    full = zoo.task(name).evaluate(model, "val")["loss"]  # both ranks' halves of the val split
    assert val[-1] == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("name, overrides, steps", [
    ("flip-flop/gru", ["--set", "hidden=8"], 50),  # 100 generated batches per epoch
    ("sentiment-sst/bow", [], math.ceil(math.ceil(6920 / 32) / 2)),  # 217 length buckets of 32 of SST's 6,920 sentences
])
def test_ddp_generated_and_bucketed_tasks(tmp_path, name, overrides, steps):
    if name.startswith("sentiment"):
        try:
            _ = zoo.task(name).vocab
        except FileNotFoundError:
            pytest.skip("SST is not available here")
    path = _ddp([name, "--max-epochs", "1", *overrides], tmp_path)
    card = ckpt.load(path)[2]
    assert card["training"]["steps"] == steps and card["training"]["world_size"] == 2
    model = zoo.load(name, checkpoint=path)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads(json.dumps(card["metrics"]))


@pytest.mark.parametrize("world", [2, 3])
def test_every_sampler_gives_disjoint_reproducible_shards(monkeypatch, world):
    lengths = torch.randint(1, 50, (103,)).numpy()
    samplers = {"epoch-shuffle": lambda: base.EpochShuffle(103, seed=5),
                "offset": lambda: base.GeneratedBatches(lambda g, _: None, 103, seed=5).sampler,
                "buckets": lambda: BucketBatches(lengths, 8, seed=5, shuffle=True)}
    for kind, make in samplers.items():
        single = [tuple(x) if isinstance(x, list) else x for x in make()]
        shards = []
        for rank in range(world):
            monkeypatch.setattr(base, "rank_and_world", lambda rank=rank: (rank, world))
            sampler = make()
            shard = [tuple(x) if isinstance(x, list) else x for x in sampler]
            assert len(shard) == len(sampler) == -(-len(single) // world), kind
            again = make()
            assert [tuple(x) if isinstance(x, list) else x for x in again] == shard, kind  # same seed, same shard
            shards.append(shard)
        monkeypatch.setattr(base, "rank_and_world", lambda: (0, 1))
        union = [x for shard in shards for x in shard]
        assert set(union) == set(single), kind  # together the ranks cover the epoch ...
        assert len(union) - len(set(union)) == (-len(single)) % world, kind  # ... repeating only the padding
