"""The registry of (task, model) entries, named ``TASK/MODEL``, after timm's decorator registry.

An entry is a plain builder function ``builder(**config) -> nn.Module`` registered with::

    @zoo.register("random-net/tanh", task="random-net", weights="seed", paper="poole2016")
    def random_net_tanh(width=1000, depth=20, sigma_w2=4.0, sigma_b2=0.09, seed=0): ...

``weights`` says where an entry's parameters come from:

* ``"file"``: trained weights shipped in ``checkpoints/`` (HDF5 + manifest, see
  :mod:`zoo.checkpoint`); ``zoo train NAME`` remakes them.
* ``"seed"``: random networks: the seed *is* the checkpoint. The builder draws every
  parameter from a ``torch.Generator`` seeded with ``seed``, so the same name and seed always
  give bit-identical weights.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import checkpoint as ckpt

REQUIRED_CARD_FIELDS = ("name", "task", "paper", "description", "data", "metrics", "training", "config", "seed", "command")


@dataclass(frozen=True)
class Entry:
    """One registered (task, model) pair."""

    name: str
    builder: Callable[..., torch.nn.Module]
    task: str
    weights: str  # "file" or "seed"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)  # training defaults for `zoo train`
    paper: str = ""
    description: str = ""
    notes: str = ""  # caveats for the card (e.g. "smaller than the paper's network because ...")

    @property
    def defaults(self) -> dict[str, Any]:
        """The builder's keyword defaults: the entry's config before any override."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}

    @property
    def path(self):
        return ckpt.checkpoint_dir() / ckpt.file_name(self.name)


_ENTRIES: dict[str, Entry] = {}


def register(
    name: str,
    *,
    task: str,
    weights: str = "file",
    task_kwargs: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    paper: str = "",
    description: str = "",
    notes: str = "",
) -> Callable:
    """Decorator that registers ``builder`` under ``name`` (``TASK/MODEL``). Twice is an error."""
    if name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(f"entry names are TASK/MODEL, got {name!r}")
    if weights not in ("file", "seed"):
        raise ValueError(f"weights must be 'file' or 'seed', got {weights!r}")

    def decorator(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _ENTRIES:
            raise ValueError(f"entry {name!r} is already registered (by {_ENTRIES[name].builder.__module__})")
        doc = inspect.getdoc(builder) or ""
        _ENTRIES[name] = Entry(
            name=name, builder=builder, task=task, weights=weights, task_kwargs=dict(task_kwargs or {}),
            recipe=dict(recipe or {}), paper=paper, description=description or doc.split("\n\n")[0],
            notes=notes,
        )
        return builder

    return decorator


def unregister(name: str) -> None:
    """Remove an entry (for tests and interactive work)."""
    _ENTRIES.pop(name, None)


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers the built-in entries)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted entry names matching a shell wildcard, e.g. ``list_models("sentiment-*/g*")``."""
    _ensure_loaded()
    return sorted(n for n in _ENTRIES if fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> Entry:
    """The :class:`Entry` for ``name``; an unknown name raises ``KeyError`` listing close names."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"model names are strings like 'random-net/tanh', got {type(name).__name__}")
    if name not in _ENTRIES:
        close = difflib.get_close_matches(name, list(_ENTRIES), n=5, cutoff=0.4)
        task = name.split("/")[0]
        close += [n for n in sorted(_ENTRIES) if n.startswith(task + "/") and n not in close][:5]
        hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(sorted(_ENTRIES))}"
        raise KeyError(f"unknown model {name!r}{hint}")
    return _ENTRIES[name]


def task(name: str, **task_overrides: Any):
    """The task object of entry ``name`` (``zoo.task("random-net/tanh")``)."""
    from zoo.tasks import get_task

    entry = get_entry(name)
    return get_task(entry.task, **{**entry.task_kwargs, **task_overrides})


def _check_overrides(entry: Entry, overrides: dict[str, Any]) -> None:
    sig = inspect.signature(entry.builder)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in overrides if k not in sig.parameters and not takes_any]
    if unknown:
        raise TypeError(f"{entry.name}: unknown argument(s) {', '.join(unknown)}; the builder takes {', '.join(sig.parameters)}")


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load(name: str, pretrained: bool = True, **overrides: Any) -> torch.nn.Module:
    """Build entry ``name`` and return it in eval mode, with its trained or seeded weights.

    ``overrides`` are builder keywords, as in timm: ``zoo.load("random-net/tanh", depth=20, seed=1)``.
    For a pretrained ``"file"`` entry the config comes from the checkpoint; an override that
    changes a parameter's shape raises ``ValueError`` rather than loading mismatched weights.
    The returned module carries ``zoo_name``, ``zoo_config`` and ``zoo_fingerprint``.
    """
    entry = get_entry(name)
    _check_overrides(entry, overrides)
    if entry.weights == "file" and pretrained:
        path = entry.path
        if not path.exists():
            raise ckpt.CheckpointError(path, f"no shipped weights for {name}; make them with `zoo train {name}`")
        stored_name, config, _, arrays = ckpt.load(path)
        if stored_name != name:
            raise ckpt.CheckpointError(path, f"holds entry {stored_name!r}, expected {name!r}")
        model = entry.builder(**{**config, **overrides})
        if overrides:
            stored = entry.builder(**config)
            changed = {k for k, s in _shapes(stored).items() if _shapes(model).get(k) != s}
            if changed:
                raise ValueError(
                    f"{name}: overriding {', '.join(sorted(overrides))} changes the shape of "
                    f"{', '.join(sorted(changed)[:3])}; use pretrained=False for a differently sized model"
                )
        ckpt.state_dict_into(model, arrays, path)
        config = {**config, **overrides}
        fingerprint = ckpt.read_manifest(path.parent)[path.name]["sha256"]
    else:
        config = {**entry.defaults, **overrides}
        if entry.weights == "file":
            config = {**config, **model_kwargs_from_task(entry, config)}
        model = entry.builder(**config)
        fingerprint = config_fingerprint(name, config)
    model.eval()
    model.zoo_name = name
    model.zoo_config = config
    model.zoo_fingerprint = fingerprint
    return model


def model_kwargs_from_task(entry: Entry, config: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments that only the data can give (a vocabulary, the number of cells)."""
    params = inspect.signature(entry.builder).parameters
    wanted = [k for k in params if config.get(k) is None]
    if not wanted:
        return {}
    return {k: v for k, v in task(entry.name).model_kwargs().items() if k in wanted}


def config_fingerprint(name: str, config: dict[str, Any]) -> str:
    """sha256 of the entry name and its canonical JSON config: a seeded entry's checkpoint id."""
    doc = json.dumps({"name": name, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def card(name: str) -> dict[str, Any]:
    """The model card as a plain dict: how the entry was made and how well it does.

    A ``"file"`` entry's card is read from its verified checkpoint; a ``"seed"`` entry's card is
    made from its builder defaults (its seed is its checkpoint).
    """
    entry = get_entry(name)
    base = {
        "name": name,
        "task": entry.task,
        "paper": entry.paper,
        "description": entry.description,
        "weights": entry.weights,
        "notes": entry.notes,
    }
    if entry.weights == "file":
        if not entry.path.exists():
            return {**base, "status": f"not trained yet: run `zoo train {name}`", "metrics": {}, "config": entry.defaults,
                    "data": None, "training": entry.recipe, "seed": None, "command": f"zoo train {name}"}
        _, config, stored, _ = ckpt.load(entry.path)
        return {**base, **stored, "config": config}
    defaults = entry.defaults
    t = task(name)
    return {
        **base,
        "data": t.describe(),
        "metrics": {},
        "training": "untrained random network: every parameter is drawn from torch.Generator(seed)",
        "config": defaults,
        "seed": defaults.get("seed"),
        "command": f"zoo.load({name!r}, seed={defaults.get('seed')})",
    }
