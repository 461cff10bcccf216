"""Checking a keyword value against its default before anything is built, allocated or trained.

One convention for builder overrides (``zoo.load(name, **overrides)``, ``zoo train --set``) and
analysis parameters (``zoo analyze --param``): a value must have its default's kind, numbers must
be finite, and an integer whose default is positive (a count or a size) must be positive.

    >>> check_value("depth", 20, default=10)
    >>> check_value("depth", 2.5, default=10)
    Traceback (most recent call last):
    TypeError: depth must be an integer (default 10), got 2.5
"""

from __future__ import annotations

import math
from typing import Any


def check_value(what: str, value: Any, default: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``what`` and what is allowed, or return None."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if default is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise TypeError(f"{what} must be {kind} (default {default!r}), got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool) and default > 0 and value < 1:
        raise ValueError(f"{what} is a count or size and must be a positive integer, got {value!r}")
