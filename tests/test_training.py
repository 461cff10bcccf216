"""The Lightning harness: training exports a verified checkpoint, and resuming is exact."""

import pytest

import zoo
from zoo import checkpoint as ckpt
from zoo.training import train
from toy_task import register_toy_entry


def _weights(path):
    return ckpt.load(path)[3]


def test_train_exports_checkpoint_with_card(tmp_path, ckpt_dir):
    name = register_toy_entry()
    path = train(name, max_epochs=3, runs_root=tmp_path / "runs", progress_bar=False)
    assert path == ckpt_dir / "toy-regression__linear.h5"
    card = zoo.card(name)
    for field in zoo.registry.REQUIRED_CARD_FIELDS:
        assert field in card, field
    assert card["metrics"]["mse"] < 0.5  # learned: the untrained map has mse ~ |A|^2 ~ 4
    assert card["training"]["steps"] == 3 * 8 and card["training"]["epochs"] == 3
    assert card["command"].startswith("zoo train toy-regression/linear --seed 0 --max-epochs 3")
    assert {"torch", "lightning", "python"} <= set(card["versions"])
    assert (tmp_path / "runs" / "toy-regression__linear" / "seed0" / "logs").is_dir()
    model = zoo.load(name)  # loads through the manifest
    task = zoo.task(name)
    assert abs(task.evaluate(model)["mse"] - card["metrics"]["mse"]) < 1e-6


def test_resume_matches_uninterrupted_run(tmp_path):
    name = register_toy_entry()
    whole = train(name, max_epochs=2, seed=3, runs_root=tmp_path / "a", out=tmp_path / "out_a", progress_bar=False)
    train(name, max_epochs=1, seed=3, runs_root=tmp_path / "b", out=tmp_path / "out_b", progress_bar=False)
    resumed = train(name, max_epochs=2, seed=3, resume=True, runs_root=tmp_path / "b", out=tmp_path / "out_b",
                    progress_bar=False)
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    other = _weights(train(name, max_epochs=2, seed=4, runs_root=tmp_path / "c", out=tmp_path / "out_c",
                           progress_bar=False))
    assert any(other[k].tobytes() != a[k].tobytes() for k in a)


def test_bad_training_requests(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        train("random-net/tanh", max_steps=1)
    name = register_toy_entry()
    with pytest.raises(FileNotFoundError, match="resume"):
        train(name, resume=True, runs_root=tmp_path, out=tmp_path)
