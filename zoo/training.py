"""Train any registered (task, model) pair with Lightning and export it as a zoo checkpoint.

One generic :class:`ZooModule` calls ``task.loss(model, batch)``; :func:`train` wires the task's
loaders into a ``LightningDataModule``, passes Trainer options through (devices, nodes,
strategy, precision: the same entry trains on a laptop or on a GPU cluster with DDP), keeps a
resumable ``last.ckpt`` and CSV logs under ``runs/``, evaluates the test split, and writes the
HDF5 checkpoint with its card (:mod:`zoo.checkpoint`).

Lightning's ``.ckpt`` files exist only to resume a run; zoo models never load from them.
"""

from __future__ import annotations

import platform
import shlex
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from . import checkpoint as ckpt
from .registry import get_entry, model_kwargs_from_task, task as make_task

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
}
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class ZooModule(L.LightningModule):
    """The one LightningModule: ``loss, metrics = task.loss(model, batch)``, logged per step."""

    def __init__(self, model: torch.nn.Module, task, recipe: dict[str, Any]):
        super().__init__()
        self.model, self.task, self.recipe = model, task, recipe

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
        self.log("val/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=n)

    def configure_optimizers(self):
        name = self.recipe["optimizer"]
        if name not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(_OPTIMIZERS)}")
        wd = self.recipe["weight_decay"]
        if hasattr(self.model, "optimizer_param_groups"):
            groups = self.model.optimizer_param_groups(wd)
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "weight_decay": wd}]
        return _OPTIMIZERS[name](groups, lr=self.recipe["lr"])


class TaskDataModule(L.LightningDataModule):
    """Wraps ``task.dataloader(split, batch_size)`` for Lightning."""

    def __init__(self, task, batch_size: int):
        super().__init__()
        self.task, self.batch_size = task, batch_size

    def train_dataloader(self):
        return self.task.dataloader("train", self.batch_size)

    def val_dataloader(self):
        return self.task.dataloader("val", self.batch_size)


def run_dir(name: str, seed: int, root: Path | str = "runs") -> Path:
    """Where a run keeps its logs and resumable ``.ckpt``: ``runs/<task>__<model>/seed<k>``."""
    return Path(root) / ckpt.file_name(name).removesuffix(".h5") / f"seed{seed}"


def _remake_command(name: str, seed: int, recipe_args: dict[str, Any], overrides: dict[str, Any]) -> str:
    parts = ["zoo", "train", name, "--seed", str(seed)]
    for key, value in recipe_args.items():
        if value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    for key, value in overrides.items():
        parts += ["--set", f"{key}={value}"]
    return shlex.join(parts)


def _versions() -> dict[str, str]:
    import h5py

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
            "numpy": np.__version__, "h5py": h5py.__version__}


def train(
    name: str,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    max_steps: int | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    resume: bool = False,
    out: Path | str | None = None,
    runs_root: Path | str = "runs",
    trainer_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = True,
) -> Path:
    """Train entry ``name`` and write its HDF5 checkpoint; return the checkpoint's path.

    ``overrides`` are builder keywords (``--set key=value``); ``max_steps`` .. ``lr`` override the
    entry's recipe; ``trainer_kwargs`` go to ``lightning.Trainer`` (devices, num_nodes, strategy,
    precision, accelerator). With ``resume`` the run continues from ``runs/.../last.ckpt``.
    ``out`` is the checkpoint folder (default: the zoo's ``checkpoints/``); its manifest is updated.
    """
    entry = get_entry(name)
    overrides = dict(overrides or {})
    given = {"max_steps": max_steps, "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr}
    recipe = {**RECIPE_DEFAULTS, **entry.recipe, **{k: v for k, v in given.items() if v is not None}}
    if recipe["max_steps"] in (None, -1) and recipe["max_epochs"] is None:
        raise ValueError(f"{name}: give --max-steps or --max-epochs (the entry's recipe sets neither)")
    if entry.weights != "file":
        raise ValueError(f"{name} is a '{entry.weights}' entry: its weights come from its seed, there is nothing to train")

    L.seed_everything(seed, workers=True)
    the_task = make_task(name, seed=seed)
    if not the_task.trainable:
        raise ValueError(f"task {the_task.name} is not trainable")
    config = {**entry.defaults, **overrides}
    config.update(model_kwargs_from_task(entry, config))
    model = entry.builder(**config)

    directory = run_dir(name, seed, runs_root)
    last = directory / "checkpoints" / "last.ckpt"
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: no {last} to resume from")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    trainer = L.Trainer(
        max_steps=recipe["max_steps"] if recipe["max_steps"] is not None else -1,
        max_epochs=recipe["max_epochs"],
        gradient_clip_val=recipe["gradient_clip_val"],
        limit_val_batches=recipe["limit_val_batches"],
        val_check_interval=recipe["val_check_interval"],
        logger=CSVLogger(directory, name="logs"),
        # monitor=None + save_top_k=1 keeps the newest checkpoint; save_last mirrors it as last.ckpt,
        # refreshed every `checkpoint_every_n_steps` and at every epoch end.
        callbacks=[ModelCheckpoint(dirpath=directory / "checkpoints", save_last=True, save_top_k=1,
                                   every_n_train_steps=recipe["checkpoint_every_n_steps"]),
                   ModelCheckpoint(dirpath=directory / "checkpoints", save_last=True, save_top_k=1,
                                   filename="epoch{epoch}", save_on_train_epoch_end=True)],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        **(trainer_kwargs or {}),
    )
    module = ZooModule(model, the_task, recipe)
    started = time.time()
    trainer.fit(module, datamodule=TaskDataModule(the_task, recipe["batch_size"]),
                ckpt_path=str(last) if resume else None)
    wall = time.time() - started
    if trainer.interrupted:
        raise KeyboardInterrupt(f"training of {name} was interrupted; continue it with `zoo train {name} --resume`"
                                f" (from {last}); no zoo checkpoint was written")
    if not trainer.is_global_zero:
        return entry.path
    model = module.model.cpu().eval()
    if recipe["storage_dtype"] == "float16":  # evaluate exactly the weights that will be stored
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    metrics = the_task.evaluate(model, "test", batch_size=recipe["eval_batch_size"])

    folder = Path(out) if out else ckpt.checkpoint_dir()
    recipe_args = {k: recipe[k] for k in ("max_steps", "max_epochs", "batch_size", "lr") if recipe[k] not in (None, -1)}
    card = {
        "name": name,
        "task": entry.task,
        "paper": entry.paper,
        "description": entry.description,
        "notes": entry.notes,
        "data": the_task.describe(),
        "metrics": metrics,
        "training": {**recipe, "steps": trainer.global_step, "epochs": trainer.current_epoch,
                     "wall_time_s": round(wall, 1), "resumed": resume,
                     "trainer": {k: str(v) for k, v in (trainer_kwargs or {}).items()}},
        "seed": seed,
        "command": _remake_command(name, seed, recipe_args, overrides),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return ckpt.save(folder / ckpt.file_name(name), name=name, state_dict=model.state_dict(), config=config,
                     card=card, storage_dtype=recipe["storage_dtype"])
