"""The Lightning harness: training writes only its run folder, export promotes it, resumes are exact."""

import pickle
import warnings

import pytest
import torch

import zoo
from toy_task import Interrupt, register_toy_entry
from zoo import checkpoint as ckpt
from zoo.training import train


def _weights(path):
    return ckpt.load(path)[3]


def _same(a, b):
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_train_writes_its_run_folder_and_export_promotes_it(tmp_path, ckpt_dir):
    name = register_toy_entry()
    path = train(name, max_epochs=3, runs_root=tmp_path / "runs", progress_bar=False)
    run = tmp_path / "runs" / "toy-regression__linear" / "seed0"
    assert path == run / "toy-regression__linear.h5" and (run / ckpt.MANIFEST).exists()
    assert list(ckpt_dir.iterdir()) == []  # the shipped set is untouched
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # one snapshot file
    card = ckpt.load(path)[2]
    assert card["metrics"]["mse"] < 0.5  # learned: the untrained map has mse ~ |A|^2 ~ 4
    assert card["training"]["steps"] == 3 * 8 and card["training"]["epochs"] == 3
    assert card["command"].startswith("zoo train toy-regression/linear --seed 0 --max-epochs 3")
    experiment = zoo.load(name, checkpoint=path)  # a run loads by path, verified by the run's manifest
    with pytest.raises(zoo.CheckpointError, match="ZOO_CHECKPOINT_DIR"):
        zoo.load(name)  # nothing shipped yet, and the message says how to fix it

    shipped = ckpt.export(path)
    assert shipped == ckpt_dir / "toy-regression__linear.h5"
    for field in zoo.registry.REQUIRED_CARD_FIELDS:
        assert field in zoo.card(name), field
    model = zoo.load(name)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), experiment.state_dict().values()))
    task = zoo.task(name)
    assert abs(task.evaluate(model)["mse"] - card["metrics"]["mse"]) < 1e-6

    before = shipped.read_bytes()
    other = train(name, max_epochs=1, seed=1, runs_root=tmp_path / "runs", progress_bar=False)
    with pytest.raises(FileExistsError, match="--replace"):
        ckpt.export(other)
    assert shipped.read_bytes() == before  # refused: nothing changed
    ckpt.export(other, replace=True)
    assert not _same(_weights(shipped), ckpt.load(path, check_manifest=True)[3])


def test_resume_is_exact_from_epoch_end_and_mid_epoch_snapshots(tmp_path):
    """A dropout model, snapshots every 5 steps (8 batches per epoch): interrupted at step 13
    (Ctrl-C), resumed from the step-10 snapshot; stopped by max_steps at 20 and continued; both
    give the bit-identical weights of an uninterrupted 4-epoch run."""
    name = register_toy_entry("toy-regression/dropout")
    common = dict(seed=3, progress_bar=False)
    recipe_every = zoo.get_entry(name).recipe
    recipe_every["checkpoint_every_n_steps"] = 5
    whole = _weights(train(name, max_epochs=4, runs_root=tmp_path / "a", **common))

    Interrupt.calls, Interrupt.at = 0, 14  # the 14th training forward: step 13 is done, step 10 was snapshotted
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        train(name, max_epochs=4, runs_root=tmp_path / "b", **common)
    Interrupt.at = 10**9
    snapshot = torch.load(tmp_path / "b/toy-regression__dropout/seed3/checkpoints/last.ckpt", weights_only=True)
    assert snapshot["global_step"] == 10 and snapshot["zoo_data_position"] == {"epoch": 1, "batches_done": 2}
    assert _same(whole, _weights(train(name, max_epochs=4, resume=True, runs_root=tmp_path / "b", **common)))

    train(name, max_steps=20, runs_root=tmp_path / "c", **common)  # stops mid-epoch 2
    resumed = train(name, max_epochs=4, resume=True, runs_root=tmp_path / "c", **common)
    assert _same(whole, _weights(resumed))
    assert sorted(p.name for p in (tmp_path / "c/toy-regression__dropout/seed3/checkpoints").iterdir()) == ["last.ckpt"]

    other = _weights(train(name, max_epochs=4, runs_root=tmp_path / "d", seed=4, progress_bar=False))
    assert not _same(whole, other)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_resume_never_unpickles_code(tmp_path, monkeypatch):
    name = register_toy_entry()
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "runs/toy-regression__linear/seed0/checkpoints/last.ckpt"
    last.parent.mkdir(parents=True)
    with open(last, "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # even when torch's default is overridden
    with pytest.raises(ValueError, match="cannot resume from .*last.ckpt"):
        train(name, max_epochs=1, resume=True, progress_bar=False)
    assert not (tmp_path / "PWNED").exists()


def test_bad_training_requests_fail_before_training(tmp_path):
    name = register_toy_entry()
    run = dict(runs_root=tmp_path, progress_bar=False)
    with pytest.raises(ValueError, match="seed"):
        train("random-net/tanh", max_steps=1, **run)
    with pytest.raises(FileNotFoundError, match="resume"):
        train(name, resume=True, **run)
    with pytest.raises(ValueError, match="max-steps must be a positive integer, got -5"):
        train(name, max_steps=-5, **run)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        train(name, lr=float("nan"), **run)
    with pytest.raises(TypeError, match=r"in_featurs \(did you mean in_features\?\)"):
        train(name, overrides={"in_featurs": 3}, **run)
    with pytest.raises(TypeError, match="in_features must be an integer .* got 'abc'"):
        train(name, overrides={"in_features": "abc"}, **run)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
        train(name, trainer_kwargs={"accelerator": "gpu"}, **run)
    assert not any(tmp_path.iterdir())  # nothing was started


def _train_recording(group_key, name, **train_kw):
    """Train ``name`` with an Adam that records ``param_groups[0][group_key]`` at every step."""
    from zoo import training

    seen = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0][group_key])
            return super().step(closure)

    original = training._OPTIMIZERS["adam"]
    training._OPTIMIZERS["adam"] = Spy
    try:
        return train(name, progress_bar=False, **train_kw), seen
    finally:
        training._OPTIMIZERS["adam"] = original


def test_lr_decay_follows_its_schedule_and_is_in_the_remake_command(tmp_path):
    """``lr_decay [rate, steps]``: lr * rate ** (step / steps) at every step (renn's sentiment schedule)."""
    name = register_toy_entry()
    path, seen = _train_recording("lr", name, max_steps=12, lr=0.05, lr_decay=[0.5, 4], runs_root=tmp_path)
    assert seen == pytest.approx([0.05 * 0.5 ** (k / 4) for k in range(12)], rel=1e-12)
    assert "--lr-decay 0.5 4" in ckpt.load(path)[2]["command"]
    for bad in ([0.0, 4], [1.5, 4], [0.5, 0], [0.5], 0.5, [True, 4], [0.5, True], ["0.5", 4], [0.5, 4.0]):
        with pytest.raises(ValueError, match="lr_decay must be"):
            train(name, max_steps=1, lr_decay=bad, runs_root=tmp_path / "bad", progress_bar=False)
    assert not (tmp_path / "bad").exists()


def test_adam_beta2_reaches_the_optimizer_and_the_remake_command(tmp_path):
    """``adam_beta2``: Adam's betas become (0.9, beta2); the card's command gives it; bad values fail early."""
    name = register_toy_entry()
    path, seen = _train_recording("betas", name, max_steps=3, adam_beta2=0.99, runs_root=tmp_path)
    assert seen == [(0.9, 0.99)] * 3
    card = ckpt.load(path)[2]
    assert "--adam-beta2 0.99" in card["command"] and card["training"]["adam_beta2"] == 0.99
    for bad in (0.0, 1.0, 1.5, -0.1, True, "0.99"):
        with pytest.raises(ValueError, match="adam-beta2 must lie in"):
            train(name, max_steps=1, adam_beta2=bad, runs_root=tmp_path / "bad", progress_bar=False)
    assert not (tmp_path / "bad").exists()


def test_bf16_mixed_precision_runs_autocast_and_is_in_the_remake_command(tmp_path):
    """``precision="bf16-mixed"`` (``zoo train --precision``) runs the forward passes under bfloat16
    autocast, and the card records it and gives it in its remake command."""
    name = register_toy_entry()
    autocast = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: autocast.append(torch.is_autocast_enabled("cpu")))
    try:
        path = train(name, max_steps=2, runs_root=tmp_path, progress_bar=False, trainer_kwargs={"precision": "bf16-mixed"})
    finally:
        hook.remove()
    assert True in autocast
    card = ckpt.load(path)[2]
    assert "--precision bf16-mixed" in card["command"] and card["training"]["trainer"]["precision"] == "bf16-mixed"


def test_bf16_on_a_cpu_without_bfloat16_instructions_warns(monkeypatch):
    """bf16 autocast on a CPU with no AVX512-BF16/AMX is emulated (17-38x slower than float32 on an
    AVX2 CPU): asking for it there warns, before any training; float32, or a CPU that has the
    instructions, does not."""
    from zoo import training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without bfloat16 instructions.*--precision 32"):
        training._check_trainer_kwargs({"precision": "bf16-mixed"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        training._check_trainer_kwargs({"precision": "32"})
        monkeypatch.setattr(training, "_cpu_has_native_bf16", lambda: True)
        training._check_trainer_kwargs({"precision": "bf16-mixed", "accelerator": "cpu"})


def test_task_options_reach_the_task_and_the_card(tmp_path):
    """``--task-set`` configures the task (here: flip-flop's epoch length), is validated before
    training, and is part of the card's remake command."""
    run = dict(runs_root=tmp_path, progress_bar=False, max_epochs=1, overrides={"hidden": 4})
    path = train("flip-flop/gru", task_options={"batches_per_epoch": 6}, **run)
    card = ckpt.load(path)[2]
    assert card["training"]["steps"] == 6
    assert "--task-set batches_per_epoch=6" in card["command"]
    with pytest.raises(TypeError, match="no option 'batches' .*takes .*batches_per_epoch"):
        train("flip-flop/gru", task_options={"batches": 6}, **run)
    with pytest.raises(TypeError, match="batches_per_epoch must be an integer"):
        train("flip-flop/gru", task_options={"batches_per_epoch": "six"}, **run)
    with pytest.raises(TypeError, match="--seed sets the seed"):
        train("flip-flop/gru", task_options={"seed": 3}, **run)


def test_keep_best_restores_the_lowest_validation_loss_and_stops_early():
    from types import SimpleNamespace

    from zoo.training import _KeepBest

    model = torch.nn.Linear(2, 1)
    module = SimpleNamespace(model=model)
    keep = _KeepBest(patience=2)
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={}, global_step=0, should_stop=False)
    for step, loss in enumerate([1.0, 0.5, 0.7, 0.8]):
        with torch.no_grad():
            model.weight.fill_(float(step))
        trainer.global_step, trainer.callback_metrics = step, {"val/loss": torch.tensor(loss)}
        keep.on_validation_end(trainer, module)
        assert trainer.should_stop == (step == 3)  # two validations without improvement
    assert keep.step == 1 and keep.value == 0.5 and float(keep.weights["weight"][0, 0]) == 1.0
    again = _KeepBest(patience=2)
    again.load_state_dict(keep.state_dict())  # travels in last.ckpt: a resume keeps the best weights
    assert again.step == 1 and torch.equal(again.weights["weight"], keep.weights["weight"])
