"""Tasks: one module per task. A task owns its data, targets, loss and metrics.

``get_task("random-net", seed=0)`` returns a task object; ``list_tasks()`` names them all.
Every task is deterministic given its ``seed``. See :class:`zoo.tasks.base.Task` for the interface.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from .base import Task

# task name -> "module:Class"; modules are imported on first use, so `import tasks` stays light.
_TASKS: dict[str, str] = {
    "random-net": "zoo.tasks.random_inputs:RandomInputs",
    "sentiment-imdb": "zoo.tasks.sentiment:ImdbSentiment",
    "sentiment-sst": "zoo.tasks.sentiment:SstSentiment",
    "path-integration": "zoo.tasks.path_integration:PathIntegration",
    "flip-flop": "zoo.tasks.flip_flop:FlipFlop",
    "linear-inference": "zoo.tasks.linear_inference:LinearInference",
    "retina-natural": "zoo.tasks.retina:NaturalScenes",
    "retina-whitenoise": "zoo.tasks.retina:WhiteNoise",
}


def register_task(name: str, target: str) -> None:
    """Register task ``name`` as ``"package.module:ClassName"`` (imported lazily). Twice is an error."""
    if name in _TASKS and _TASKS[name] != target:
        raise ValueError(f"task {name!r} is already registered as {_TASKS[name]}")
    _TASKS[name] = target


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def task_class(name: str) -> type[Task]:
    """The class of task ``name`` (its module is imported now)."""
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=3, cutoff=0.4)
        raise KeyError(f"unknown task {name!r}; closest: {', '.join(close) or ', '.join(sorted(_TASKS))}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **kwargs: Any) -> Task:
    """Instantiate task ``name`` with ``kwargs`` (``seed`` and the task's own options)."""
    return task_class(name)(**kwargs)


__all__ = ["Task", "get_task", "list_tasks", "register_task", "task_class"]
