"""A unified model zoo for theoretical neuroscience.

    >>> import zoo
    >>> zoo.list_models("random-net/*")
    >>> net = zoo.load("random-net/tanh", sigma_w2=4.0, depth=20, seed=0)
    >>> zoo.card("random-net/tanh")["paper"]
"""

from .checkpoint import CheckpointError
from .registry import Entry, card, get_entry, list_models, load, register, task

__all__ = ["CheckpointError", "Entry", "card", "get_entry", "list_models", "load", "register", "task"]
