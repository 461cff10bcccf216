"""Every registered entry, present and future: loads, runs forward on a batch from its task, has a card."""

import math

import pytest
import torch

import zoo
from zoo.registry import REQUIRED_CARD_FIELDS

ENTRIES = zoo.list_models()


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_loads_runs_and_has_card(name):
    entry = zoo.get_entry(name)
    if entry.weights == "file":
        assert entry.path.exists(), f"{name} is registered but ships no checkpoint; run `zoo train {name}`"
    model = zoo.load(name)
    assert not model.training
    task = zoo.task(name)
    with torch.no_grad():
        out = task.forward(model, task.example_batch(4, model))
    assert out.shape[0] == 4 and torch.isfinite(out).all()

    card = zoo.card(name)
    missing = [f for f in REQUIRED_CARD_FIELDS if f not in card]
    assert not missing, f"card of {name} lacks {missing}"
    assert card["name"] == name and card["task"] == entry.task and card["paper"]
    if entry.weights == "file":
        assert card["command"].startswith(f"zoo train {name}")
        assert card["metrics"] and _finite_numbers(card["metrics"]), card["metrics"]
        assert card["training"]["wall_time_s"] > 0 and card["training"]["steps"] > 0


def _finite_numbers(metrics: dict) -> bool:
    """Every metric is a finite number, or a group of them (``line_attractor: {...}``) whose
    ``settings`` say how they were computed."""
    return all(_finite_numbers(v) if isinstance(v, dict) else isinstance(v, (int, float)) and math.isfinite(v)
               for k, v in metrics.items() if k != "settings")


@pytest.mark.parametrize("name", ENTRIES)
def test_same_seed_same_weights(name):
    entry = zoo.get_entry(name)
    if entry.weights != "seed":
        pytest.skip("weights come from a shipped file")
    small = {"width": 32, "depth": 3} if "width" in entry.defaults else {}
    a, b = zoo.load(name, seed=5, **small), zoo.load(name, seed=5, **small)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
