"""The analysis registry: each analysis declares the protocol it needs and a version.

    @register_analysis("curvature", protocol=LayeredMap, version="1")
    def curvature(model, task, *, n_angles=500) -> AnalysisResult: ...

An analysis receives the model (already in eval mode) and its task, plus keyword parameters
with defaults, and returns an :class:`AnalysisResult`: a flat ``summary`` of scalars (one row
of a bench table) and optional ``arrays`` saved to HDF5. Built-in analyses live in the modules
of this package (all imported on first use of the registry); a user's own analysis registers
itself the same way from anywhere.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..validation import check_value
from .protocols import provides



@dataclass
class AnalysisResult:
    """``summary``: ``{name: float | int | str}`` (JSON-able scalars); ``arrays``: ``{name: ndarray}``."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    name: str
    protocol: type | None
    version: str
    func: Callable[..., AnalysisResult]
    description: str
    quick_params: dict[str, Any] = field(default_factory=dict)  # fast settings for registry-wide tests
    cost: float = 1.0  # rough relative cost per entry: parallel runs start the costliest analyses first

    @property
    def defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.func)
        return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}

    def applies_to(self, model: Any) -> bool:
        return self.protocol is None or provides(model, self.protocol)

    def __call__(self, model, task, **params: Any) -> AnalysisResult:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"analysis {self.name!r} takes {', '.join(self.defaults) or 'no parameters'}; got {', '.join(sorted(unknown))}")
        for key, value in params.items():
            check_value(f"analysis {self.name!r}: {key}", value, self.defaults[key])
        if not self.applies_to(model):
            raise TypeError(f"analysis {self.name!r} needs a model with the {self.protocol.__name__} protocol; "
                            f"{getattr(model, 'zoo_name', type(model).__name__)} does not provide it")
        return self.func(model, task, **params)


_ANALYSES: dict[str, Analysis] = {}


def register_analysis(name: str, protocol: type | None, version: str = "1",
                      quick_params: dict[str, Any] | None = None, cost: float = 1.0) -> Callable:
    """Decorator registering ``func(model, task, **params) -> AnalysisResult`` as ``name``.

    ``version`` is part of every cached result's key: bump it when the analysis's output changes.
    ``quick_params`` are keyword parameters that make a fast run, used by the tests that run
    every analysis on every compatible entry. ``cost``: a rough relative cost per entry, used only
    to start the costliest work first when entries run in parallel (``--jobs``).
    """

    def decorator(func: Callable[..., AnalysisResult]) -> Callable[..., AnalysisResult]:
        if name in _ANALYSES and _ANALYSES[name].func is not func:
            raise ValueError(f"analysis {name!r} is already registered")
        doc = (inspect.getdoc(func) or "").split("\n\n")[0]
        _ANALYSES[name] = Analysis(name, protocol, str(version), func, doc, dict(quick_params or {}), float(cost))
        return func

    return decorator


def _ensure_loaded() -> None:
    from zoo import analysis

    for module in pkgutil.iter_modules(analysis.__path__):
        importlib.import_module(f"zoo.analysis.{module.name}")


def list_analyses() -> list[str]:
    _ensure_loaded()
    return sorted(_ANALYSES)


def get_analysis(name: str) -> Analysis:
    _ensure_loaded()
    if name not in _ANALYSES:
        close = difflib.get_close_matches(name, list(_ANALYSES), n=3, cutoff=0.4)
        known = ", ".join(close or sorted(_ANALYSES)) or "none registered yet"
        raise KeyError(f"unknown analysis {name!r}; {'closest' if close else 'known'}: {known}")
    return _ANALYSES[name]
