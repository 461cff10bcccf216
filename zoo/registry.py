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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint as ckpt
from .validation import check_value

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
    # a "seed" entry's measured metrics for its card: a dict, or a callable returning one (read lazily)
    metrics: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    training: str = ""  # a "seed" entry's card "training" text (default: the random-network sentence)

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
    metrics: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    training: str = "",
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
            notes=notes, metrics=metrics, training=training,
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
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a shell wildcard string such as 'sentiment-*/g*', got {pattern!r}")
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


def task(name: str, as_trained: bool = True, **task_overrides: Any):
    """The task object of entry ``name`` (``zoo.task("random-net/tanh")``).

    ``as_trained``: the task as the shipped model saw it: the options its task class lists in
    ``card_options`` (e.g. the retina's stimulus normalisation) are taken from the checkpoint's card
    (``card["data"]``), so the model is evaluated on the inputs it was trained on without recomputing
    them from the training data; an option missing from an older card takes the task class's
    default, which the model was trained with. Training starts from ``as_trained=False``."""
    from zoo.tasks import get_task, task_class

    entry = get_entry(name)
    options = dict(entry.task_kwargs)
    cls = task_class(entry.task)
    recorded = getattr(cls, "card_options", ())
    if as_trained and recorded and entry.weights == "file" and entry.path.exists():
        data = card(name).get("data") or {}
        options.update({k: data[k] for k in recorded if k in data})
        # a card without one of them predates the option: its model saw the task class's default
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        options.update({k: defaults[k] for k in recorded if k not in data and k in defaults})
    return get_task(entry.task, **{**options, **task_overrides})


def validate_overrides(entry: Entry, overrides: dict[str, Any]) -> None:
    """Builder keywords: known names, and values as :func:`zoo.validation.check_value` allows.
    Raises ``TypeError``/``ValueError`` naming the key and what is allowed, before anything is built."""
    sig = inspect.signature(entry.builder)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in overrides if k not in sig.parameters and not takes_any]
    if unknown:
        close = {k: difflib.get_close_matches(k, list(sig.parameters), n=1) for k in unknown}
        hints = ", ".join(f"{k}" + (f" (did you mean {c[0]}?)" if c else "") for k, c in close.items())
        raise TypeError(f"{entry.name}: unknown argument(s) {hints}; the builder takes {', '.join(sig.parameters)}")
    defaults = entry.defaults
    for key, value in overrides.items():
        check_value(f"{entry.name}: {key}", value, defaults.get(key))


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _meta_shapes(entry: Entry, config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes of ``builder(**config)`` built on the ``meta`` device (no memory), or None
    when the builder cannot build there (it then is checked after building, by the loader)."""
    try:
        with torch.device("meta"):
            return _shapes(entry.builder(**config))
    except Exception:
        return None


def _check_size(name: str, shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Refuse a model that would not fit in this machine's memory, before allocating it."""
    if shapes is None:
        return
    numel = sum(math.prod(s) for s in shapes.values())
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if 4 * numel > memory:
        raise ValueError(f"{name}: this config has {numel:,} parameters ({4 * numel / 2**30:.1f} GiB in float32), "
                         f"more than this machine's {memory / 2**30:.0f} GiB of memory")


def load(name: str, pretrained: bool = True, checkpoint: str | os.PathLike | None = None, **overrides: Any) -> torch.nn.Module:
    """Build entry ``name`` and return it in eval mode, with its trained or seeded weights.

    ``overrides`` are builder keywords, as in timm: ``zoo.load("random-net/tanh", depth=20, seed=1)``.
    For a pretrained ``"file"`` entry the config comes from the checkpoint; an override that
    changes a parameter's shape raises ``ValueError`` rather than loading mismatched weights.
    ``checkpoint`` loads another verified file of the same entry instead of the shipped one (a
    run's ``runs/<entry>/seed<k>/<entry>.h5``, checked against the manifest beside it).
    The returned module carries ``zoo_name``, ``zoo_config`` and ``zoo_fingerprint``.
    """
    entry = get_entry(name)
    validate_overrides(entry, overrides)
    if checkpoint is not None and entry.weights != "file":
        raise ValueError(f"{name} is a '{entry.weights}' entry: its seed is its checkpoint, there is no file to load")
    if entry.weights == "file" and pretrained:
        path = Path(checkpoint) if checkpoint is not None else entry.path
        if not path.exists():
            raise ckpt.CheckpointError(path, missing_weights_message(name))
        stored_name, config, _, arrays = ckpt.load(path)
        if stored_name != name:
            raise ckpt.CheckpointError(path, f"holds entry {stored_name!r}, expected {name!r}")
        stored = {k: tuple(a.shape) for k, a in arrays.items()}
        wanted = _meta_shapes(entry, {**config, **overrides})
        if wanted is not None and wanted != stored:
            if overrides and _meta_shapes(entry, config) == stored:
                changed = sorted(k for k in stored if wanted.get(k) != stored[k])
                raise ValueError(f"{name}: overriding {', '.join(sorted(overrides))} changes the shape of "
                                 f"{', '.join(changed[:3])}; use pretrained=False for a differently sized model")
            bad = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ckpt.CheckpointError(path, f"its config does not match its tensors ({', '.join(bad[:3])}: stored "
                                             f"{[stored.get(k) for k in bad[:3]]}, config builds {[wanted.get(k) for k in bad[:3]]})")
        _check_size(name, wanted)
        model = entry.builder(**{**config, **overrides})
        ckpt.state_dict_into(model, arrays, path)
        config = {**config, **overrides}
        fingerprint = ckpt.read_manifest(path.parent)[path.name]["sha256"]
    else:
        config = {**entry.defaults, **overrides}
        if entry.weights == "file":
            config = {**config, **model_kwargs_from_task(entry, config)}
        _check_size(name, _meta_shapes(entry, config))
        model = entry.builder(**config)
        fingerprint = config_fingerprint(name, config)
    model.eval()
    model.zoo_name = name
    model.zoo_config = config
    model.zoo_fingerprint = fingerprint
    return model


def missing_weights_message(name: str) -> str:
    """What to do when an entry's shipped file is absent (a trimmed install, an empty ``$ZOO_CHECKPOINT_DIR``)."""
    folder = ckpt.checkpoint_dir()
    where = "$ZOO_CHECKPOINT_DIR" if os.environ.get("ZOO_CHECKPOINT_DIR") else "the installed package"
    return (f"no weights for {name} in {folder} ({where}); point ZOO_CHECKPOINT_DIR at a folder that has them "
            f"(a clone's zoo/checkpoints), or train and export them: `zoo train {name} --export`")


def model_kwargs_from_task(entry: Entry, config: dict[str, Any], the_task: Any = None) -> dict[str, Any]:
    """Builder arguments that only the data can give (a vocabulary, the number of cells), from
    ``the_task`` (default: the entry's task with its default options)."""
    params = inspect.signature(entry.builder).parameters
    wanted = [k for k in params if config.get(k) is None]
    if not wanted:
        return {}
    the_task = the_task if the_task is not None else task(entry.name)
    return {k: v for k, v in the_task.model_kwargs().items() if k in wanted}


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
            return {**base, "status": missing_weights_message(name), "metrics": {}, "config": entry.defaults,
                    "data": None, "training": entry.recipe, "seed": None, "command": f"zoo train {name}"}
        _, config, stored, _ = ckpt.load(entry.path)
        return {**base, **stored, "config": config}
    defaults = entry.defaults
    t = task(name)
    return {
        **base,
        "data": t.describe(),
        "metrics": dict((entry.metrics() if callable(entry.metrics) else entry.metrics) or {}),
        "training": entry.training or "untrained random network: every parameter is drawn from torch.Generator(seed)",
        "config": defaults,
        "seed": defaults.get("seed"),
        "command": f"zoo.load({name!r}, seed={defaults.get('seed')})",
    }
