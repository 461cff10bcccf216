"""Train any registered (task, model) pair with Lightning into its run folder.

One generic :class:`ZooModule` calls ``task.loss(model, batch)``; :func:`train` wires the task's
loaders into a ``LightningDataModule``, passes Trainer options through (devices, nodes,
strategy, precision: the same entry trains on a laptop or on a GPU cluster with DDP), keeps one
resumable ``last.ckpt`` and CSV logs in ``runs/<entry>/seed<k>/``, evaluates the test split on
rank 0, and writes the finished HDF5 checkpoint with its card into that run folder (with a
manifest of its own). Training never touches the shipped set: :func:`zoo.checkpoint.export`
(``zoo export RUN``, or ``zoo train --export``) promotes a run, and refuses to replace a shipped
entry unless asked.

Exact resume, from any snapshot: the model and optimiser come from ``last.ckpt`` (loaded with
``torch.load(weights_only=True)``, never by unpickling arbitrary objects); the data order comes
from ``(seed, epoch)`` and the number of batches already trained in the epoch
(:class:`zoo.tasks.base.ResumableOrder`); the random state that dropout and noise injection
draw on is reseeded from ``(seed, step, rank)`` before every step.

Lightning's ``.ckpt`` files exist only to resume a run; zoo models never load from them.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import platform
import shlex
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from . import checkpoint as ckpt
from .registry import get_entry, model_kwargs_from_task, task as make_task, validate_overrides
from .tasks.base import single_process

RECIPE_DEFAULTS: dict[str, Any] = {
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "max_steps": -1,
    "max_epochs": None,
    "gradient_clip_val": None,
    "storage_dtype": "float32",
    "limit_val_batches": 1.0,
    "val_check_interval": None,
    "eval_batch_size": 256,
    "checkpoint_every_n_steps": 500,  # how often runs/.../last.ckpt is refreshed during an epoch
    "probe_every_n_steps": None,  # how often the task's probe(model) metrics are logged (tasks that have one)
    "keep_best": False,  # export the weights of the lowest validation loss, not the last ones
    "early_stop_patience": None,  # with keep_best: stop after this many validations without improvement
    "lr_decay": None,  # [rate, steps]: lr * rate ** (step / steps), smooth exponential decay per step
    "adam_beta2": None,  # Adam's second-moment decay (None: torch's 0.999); smaller adapts faster to a growing gradient
}
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class ZooModule(L.LightningModule):
    """The one LightningModule: ``loss, metrics = task.loss(model, batch)``, logged per step."""

    def __init__(self, model: torch.nn.Module, task, recipe: dict[str, Any]):
        super().__init__()
        self.model, self.task, self.recipe = model, task, recipe
        self.started, self.wall_before = time.time(), 0.0  # training seconds of earlier (resumed) segments

    @property
    def wall_s(self) -> float:
        """Seconds spent training this run, over every resumed segment."""
        return self.wall_before + time.time() - self.started

    def on_train_batch_start(self, batch, batch_idx):
        # dropout and noise injection draw from here: a function of (seed, step, rank), so exact on resume
        torch.manual_seed(_step_seed(self.recipe["seed"], self.global_step, self.global_rank))
        # a snapshot taken after this batch resumes after it (callbacks' batch-end hooks run before ours)
        self.data_position = (self.current_epoch, batch_idx + 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        epoch, done = getattr(self, "data_position", (self.current_epoch, 0))
        checkpoint["zoo_data_position"] = {"epoch": int(epoch), "batches_done": int(done)}
        checkpoint["zoo_wall_s"] = self.wall_s

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        position = checkpoint.get("zoo_data_position") or {}
        self.resume_position = (int(position.get("epoch", 0)), int(position.get("batches_done", 0)))
        self.wall_before, self.started = float(checkpoint.get("zoo_wall_s", 0.0)), time.time()

    def training_step(self, batch, batch_idx):
        loss, metrics = self.task.loss(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}; lower --lr or clip gradients")
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, prog_bar=False)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, metrics = self.task.loss(self.model, batch)
        n = self.task.batch_size_of(batch)
        # epoch-level metrics are averaged over every rank's shard under DDP
        self.log("val/loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        name = self.recipe["optimizer"]
        if name not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(_OPTIMIZERS)}")
        wd = self.recipe["weight_decay"]
        if hasattr(self.model, "optimizer_param_groups"):
            groups = self.model.optimizer_param_groups(wd)
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "weight_decay": wd}]
        beta2 = self.recipe["adam_beta2"]
        optimizer = _OPTIMIZERS[name](groups, lr=self.recipe["lr"], **({} if beta2 is None else {"betas": (0.9, beta2)}))
        if self.recipe["lr_decay"] is None:
            return optimizer
        rate, steps = self.recipe["lr_decay"]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: rate ** (step / steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class TaskDataModule(L.LightningDataModule):
    """Wraps ``task.dataloader(split, batch_size)`` for Lightning."""

    def __init__(self, task, batch_size: int):
        super().__init__()
        self.task, self.batch_size = task, batch_size

    def train_dataloader(self):
        loader = self.task.dataloader("train", self.batch_size)
        position = getattr(self.trainer.lightning_module, "resume_position", None)
        if position is not None:  # a resumed run: continue the interrupted epoch's own order
            _start_at(loader, *position)
        return loader

    def val_dataloader(self):
        return self.task.dataloader("val", self.batch_size)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7_919 + int(rank)) % (2**63 - 1)


def _start_at(loader, epoch: int, done: int) -> None:
    """Make ``loader``'s next epoch ``epoch`` minus its first ``done`` batches (a resume)."""
    n = len(loader)
    if done >= n:  # the snapshot was taken at the end of an epoch
        epoch, done = epoch + 1, 0
    for sampler, unit in ((loader.batch_sampler, 1), (loader.sampler, loader.batch_size or 1)):
        if hasattr(sampler, "start_at"):
            sampler.start_at(epoch, done * unit)
            return
    if done:
        logging.getLogger(__name__).warning("the train loader's sampler has no start_at(); the resumed epoch restarts "
                                            "its data stream (use zoo.tasks.base.EpochShuffle for exact resumes)")


class _Snapshot(Callback):
    """One resumable ``last.ckpt``, refreshed every ``every`` steps and at each epoch end, written
    atomically (a temporary file renamed over it), so a kill mid-write keeps the previous one."""

    def __init__(self, path: Path, every: int | None):
        self.path, self.every = Path(path), every

    def _save(self, trainer) -> None:
        tmp = self.path.with_name(".last.ckpt.tmp")
        trainer.save_checkpoint(tmp)  # every rank calls it, rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("zoo-snapshot")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer)


class _Probe(Callback):
    """The task's ``probe(model) -> {name: value}`` (e.g. the grid cells' gridness) every ``every``
    steps, from step 0, logged as ``probe/<name>`` in the run's metrics.csv: how a property emerges
    during training. Rank 0 probes; the probe draws from its own generators, not the training's."""

    def __init__(self, task: Any, every: int):
        self.task, self.every = task, every
        self.history: dict[int, dict[str, float]] = {}  # step -> metrics; kept in last.ckpt across resumes

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step % self.every or not trainer.is_global_zero:
            return
        was = pl_module.model.training
        pl_module.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.task.probe(pl_module.model).items()}
        pl_module.model.train(was)
        self.history[int(trainer.global_step)] = metrics
        trainer.logger.log_metrics({f"probe/{k}": v for k, v in metrics.items()}, step=trainer.global_step)

    def curve(self) -> dict[str, list[float]]:
        """``{"step": [...], name: [...]}`` for the card: how the probed property emerged."""
        steps = sorted(self.history)
        names = sorted({k for v in self.history.values() for k in v})
        return {"step": steps, **{n: [self.history[s].get(n, float("nan")) for s in steps] for n in names}} if steps else {}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = dict(state["history"])


class _KeepBest(Callback):
    """Keeps (in memory and in ``last.ckpt``, so a resume keeps it too) the weights of the lowest
    ``val/loss``; with ``patience``, stops training after that many validations without improvement
    (early stopping). The exported model is then the best one, and the card says at which step."""

    def __init__(self, patience: int | None = None):
        self.patience, self.value, self.step, self.weights, self.waited = patience, math.inf, -1, None, 0

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics["val/loss"])
        if value < self.value:
            self.value, self.step, self.waited = value, trainer.global_step, 0
            self.weights = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        else:
            self.waited += 1
            if self.patience is not None and self.waited >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "step": self.step, "waited": self.waited, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.step, self.waited, self.weights = state["value"], state["step"], state["waited"], state["weights"]


def _probes(task: Any, recipe: dict[str, Any]) -> list[Callback]:
    every = recipe.get("probe_every_n_steps")
    return [_Probe(task, every)] if every not in (None, -1) and callable(getattr(task, "probe", None)) else []


class _WeightsOnlyCheckpointIO(TorchCheckpointIO):
    """Resumes load ``.ckpt`` files with ``torch.load(weights_only=True)`` whatever torch's default,
    so a planted ``.ckpt`` cannot run code."""

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot resume from {path}: not a plain Lightning checkpoint ({first})") from None


def run_dir(name: str, seed: int, root: Path | str = "runs") -> Path:
    """Where a run keeps its logs and resumable ``.ckpt``: ``runs/<task>__<model>/seed<k>``."""
    return Path(root) / ckpt.file_name(name).removesuffix(".h5") / f"seed{seed}"


def _remake_command(name: str, seed: int, recipe_args: dict[str, Any], overrides: dict[str, Any],
                    task_options: dict[str, Any] | None = None) -> str:
    parts = ["zoo", "train", name, "--seed", str(seed)]
    for key, value in recipe_args.items():
        if value is not None:  # a list (--lr-decay RATE STEPS) gives its values one by one
            parts += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, (list, tuple)) else [value])]
    for key, value in overrides.items():
        parts += ["--set", f"{key}={value}"]
    for key, value in (task_options or {}).items():
        parts += ["--task-set", f"{key}={value}"]
    return shlex.join(parts)


def _check_task_options(name: str, task_name: str, options: dict[str, Any]) -> None:
    """Task options must be keywords of the task's constructor, of their defaults' kinds."""
    import inspect

    from .tasks import task_class
    from .validation import check_value

    params = inspect.signature(task_class(task_name)).parameters
    for key, value in options.items():
        if key not in params or key == "seed":
            allowed = ", ".join(k for k in params if k != "seed") or "none"
            raise TypeError(f"{name}: task {task_name!r} has no option {key!r} (--seed sets the seed); it takes {allowed}")
        default = params[key].default
        check_value(f"{name}: task option {key}", value, None if default is inspect.Parameter.empty else default)


def _versions() -> dict[str, str]:
    import h5py

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
            "numpy": np.__version__, "h5py": h5py.__version__}


def _check_recipe(name: str, recipe: dict[str, Any]) -> None:
    """Types and ranges of the recipe, before anything is built or allocated."""
    def positive_int(key, allow_unset=False):
        value = recipe[key]
        if allow_unset and value in (None, -1):
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key.replace('_', '-')} must be a positive integer, got {value!r}")

    positive_int("max_steps", allow_unset=True)
    positive_int("batch_size")
    positive_int("probe_every_n_steps", allow_unset=True)
    positive_int("early_stop_patience", allow_unset=True)
    if recipe["max_epochs"] is not None:
        positive_int("max_epochs")
    lr = recipe["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name}: lr must be a positive finite number, got {lr!r}")
    wd = recipe["weight_decay"]
    if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
        raise ValueError(f"{name}: weight-decay must be a finite number >= 0, got {wd!r}")
    decay = recipe["lr_decay"]
    if decay is not None and not (isinstance(decay, (list, tuple)) and len(decay) == 2
                                  and not any(isinstance(x, bool) for x in decay)
                                  and isinstance(decay[0], (int, float)) and 0 < decay[0] <= 1
                                  and isinstance(decay[1], int) and decay[1] > 0):
        raise ValueError(f"{name}: lr_decay must be [rate in (0, 1], steps > 0], got {decay!r}")
    beta2 = recipe["adam_beta2"]
    if beta2 is not None and (isinstance(beta2, bool) or not isinstance(beta2, (int, float)) or not 0 < beta2 < 1):
        raise ValueError(f"{name}: adam-beta2 must lie in (0, 1), got {beta2!r}")
    if beta2 is not None and recipe["optimizer"] not in ("adam", "adamw"):
        raise ValueError(f"{name}: adam-beta2 applies to adam and adamw, not {recipe['optimizer']!r}")
    if recipe["max_steps"] in (None, -1) and recipe["max_epochs"] is None:
        raise ValueError(f"{name}: give --max-steps or --max-epochs (the entry's recipe sets neither)")


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX, as oneDNN sees it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no native path either
        return False


def _check_trainer_kwargs(trainer_kwargs: dict[str, Any]) -> None:
    accelerator = str(trainer_kwargs.get("accelerator", "")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--accelerator {accelerator}: no CUDA GPU is visible here; use --accelerator cpu (or auto)")
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("--accelerator mps: no Apple GPU is visible here; use --accelerator cpu (or auto)")
    precision = str(trainer_kwargs.get("precision", ""))
    on_cpu = accelerator == "cpu" or (accelerator in ("", "auto") and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not _cpu_has_native_bf16():
        warnings.warn(f"--precision {precision} on a CPU without bfloat16 instructions ({torch.backends.cpu.get_cpu_capability()}: "
                      "no AVX512-BF16 or AMX): the products are emulated, measured 17-38x slower than "
                      "--precision 32 on an AVX2 CPU", stacklevel=3)
    for key in ("num_nodes",):
        value = trainer_kwargs.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")


def train(
    name: str,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    max_steps: int | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    probe_every: int | None = None,
    lr_decay: list | None = None,
    adam_beta2: float | None = None,
    resume: bool = False,
    runs_root: Path | str = "runs",
    trainer_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = True,
) -> Path | None:
    """Train entry ``name`` into ``runs_root/<entry>/seed<k>/``; return the finished HDF5 checkpoint.

    ``overrides`` are builder keywords (``--set key=value``); ``task_options`` are the task's own
    (``--task-set key=value``: a recording to read, a fraction of the data); ``max_steps`` .. ``weight_decay``, ``lr_decay``, ``adam_beta2`` and
    ``probe_every`` (steps between the task's ``probe`` metrics, e.g. gridness) override the entry's
    recipe; ``trainer_kwargs`` go to ``lightning.Trainer`` (devices, num_nodes, strategy,
    precision, accelerator). With ``resume`` the run continues from its ``last.ckpt``. The HDF5
    file (with a manifest in the run folder) is written by rank 0 only; other ranks return ``None``.
    Nothing is written to the shipped set: see :func:`zoo.checkpoint.export`.
    """
    entry = get_entry(name)
    overrides = dict(overrides or {})
    trainer_kwargs = dict(trainer_kwargs or {})
    if entry.weights != "file":
        raise ValueError(f"{name} is a '{entry.weights}' entry: its weights come from its seed, there is nothing to train")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    given = {"max_steps": max_steps, "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr,
             "weight_decay": weight_decay, "probe_every_n_steps": probe_every, "lr_decay": lr_decay,
             "adam_beta2": adam_beta2}
    recipe = {**RECIPE_DEFAULTS, **entry.recipe, **{k: v for k, v in given.items() if v is not None}, "seed": seed}
    _check_recipe(name, recipe)
    validate_overrides(entry, overrides)
    task_options = dict(task_options or {})
    _check_task_options(name, entry.task, task_options)
    _check_trainer_kwargs(trainer_kwargs)
    directory = run_dir(name, seed, runs_root)
    last = directory / "checkpoints" / "last.ckpt"
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: no {last} to resume from")

    L.seed_everything(seed, workers=True, verbose=False)
    the_task = make_task(name, as_trained=False, seed=seed, **task_options)
    if not the_task.trainable:
        raise ValueError(f"task {the_task.name} is not trainable")
    config = {**entry.defaults, **overrides}
    config.update(model_kwargs_from_task(entry, config, the_task))  # from the data actually trained on
    model = entry.builder(**config)

    from lightning.pytorch.loggers import CSVLogger

    best = [_KeepBest(recipe["early_stop_patience"])] if recipe["keep_best"] else []
    probes = _probes(the_task, recipe)

    trainer = L.Trainer(
        max_steps=recipe["max_steps"] if recipe["max_steps"] is not None else -1,
        max_epochs=recipe["max_epochs"],
        gradient_clip_val=recipe["gradient_clip_val"],
        limit_val_batches=recipe["limit_val_batches"],
        val_check_interval=recipe["val_check_interval"],
        # an integer interval counts training steps across epochs (so also a short last epoch is validated)
        **({"check_val_every_n_epoch": None} if isinstance(recipe["val_check_interval"], int) else {}),
        logger=CSVLogger(directory, name="logs"),
        callbacks=[_Snapshot(last, recipe["checkpoint_every_n_steps"])] + probes + best,
        enable_checkpointing=False,  # _Snapshot is the one checkpoint writer
        use_distributed_sampler=False,  # the tasks' samplers shard themselves, reproducibly
        plugins=[_WeightsOnlyCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        **trainer_kwargs,
    )
    last.parent.mkdir(parents=True, exist_ok=True)
    module = ZooModule(model, the_task, recipe)
    try:
        trainer.fit(module, datamodule=TaskDataModule(the_task, recipe["batch_size"]),
                    ckpt_path=str(last) if resume else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1) after its own teardown
            raise KeyboardInterrupt(_interrupted_message(name, last)) from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt(_interrupted_message(name, last))
    if not trainer.is_global_zero:
        return None
    model = module.model.cpu().eval()
    if best and best[0].weights is not None:  # the lowest validation loss, not the last step
        model.load_state_dict(best[0].weights)
    if recipe["storage_dtype"] == "float16":  # evaluate exactly the weights that will be stored
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    with single_process():  # rank 0 evaluates the whole test split, not its DDP shard
        metrics = the_task.evaluate(model, "test", batch_size=recipe["eval_batch_size"])

    recipe_args = {k: recipe[k] for k in ("max_steps", "max_epochs", "batch_size", "lr") if recipe[k] not in (None, -1)}
    if weight_decay is not None:  # given on the command line: the remake command gives it too
        recipe_args["weight_decay"] = weight_decay
    if lr_decay is not None:
        recipe_args["lr_decay"] = lr_decay
    if adam_beta2 is not None:
        recipe_args["adam_beta2"] = adam_beta2
    if "precision" in trainer_kwargs:  # changes the arithmetic, so the result: the remake command gives it
        recipe_args["precision"] = trainer_kwargs["precision"]
    card = {
        "name": name,
        "task": entry.task,
        "paper": entry.paper,
        "description": entry.description,
        "notes": entry.notes,
        "data": the_task.describe(),
        "metrics": metrics,
        "training": {**recipe, "steps": trainer.global_step, "epochs": trainer.current_epoch,
                     "wall_time_s": round(module.wall_s, 1), "steps_per_s": round(trainer.global_step / max(module.wall_s, 1e-9), 3),
                     "resumed": resume,
                     **({"best_step": best[0].step, "best_val_loss": best[0].value} if best and best[0].weights is not None else {}),
                     "world_size": trainer.world_size,
                     "trainer": {k: str(v) for k, v in trainer_kwargs.items()}},
        "seed": seed,
        "command": _remake_command(name, seed, recipe_args, overrides, task_options),
        **({"probes": probes[0].curve()} if probes and probes[0].history else {}),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return ckpt.save(directory / ckpt.file_name(name), name=name, state_dict=model.state_dict(), config=config,
                     card=card, storage_dtype=recipe["storage_dtype"])


def _interrupted_message(name: str, last: Path) -> str:
    # the run's own flags (--runs, --max-steps, --set ...) are not repeated here: the same command resumes
    if last.exists():
        return f"interrupted; continue by running the same `zoo train {name}` command with `--resume` (from {last})"
    return f"interrupted before the first snapshot; nothing to resume, run the same `zoo train {name}` command again"
