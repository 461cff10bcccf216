"""Registry behaviour: names, wildcards, suggestions, overrides, seeds, cards."""

from pathlib import Path

import pytest
import torch

import zoo
from zoo.checkpoint import CheckpointError
from toy_task import register_toy_entry


def test_list_models_wildcards():
    names = zoo.list_models()
    assert names == sorted(names) and "random-net/tanh" in names
    assert zoo.list_models("random-net/*") == [n for n in names if n.startswith("random-net/")]
    assert zoo.list_models("random-net/t?nh") == ["random-net/tanh"]
    assert zoo.list_models("no-such-task/*") == []


def test_unknown_name_lists_closest():
    with pytest.raises(KeyError, match="closest: random-net/tanh"):
        zoo.load("random-net/tanhh")
    with pytest.raises(KeyError, match="random-net/relu"):
        zoo.card("random-net/rlu")
    with pytest.raises(TypeError, match="strings"):
        zoo.load(42)


def test_register_twice_and_bad_names():
    @zoo.register("unit-test/one", task="random-net", weights="seed")
    def one(seed: int = 0):
        return torch.nn.Linear(2, 2)

    try:
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("unit-test/one", task="random-net", weights="seed")(one)
    finally:
        zoo.registry.unregister("unit-test/one")
    for bad in ["no-slash", "a/b/c", "/model", "task/"]:
        with pytest.raises(ValueError, match="TASK/MODEL"):
            zoo.register(bad, task="random-net")
    with pytest.raises(ValueError, match="weights"):
        zoo.register("a/b", task="random-net", weights="pickle")


def test_seed_is_the_checkpoint():
    a = zoo.load("random-net/tanh", width=64, depth=3, seed=7)
    b = zoo.load("random-net/tanh", width=64, depth=3, seed=7)
    c = zoo.load("random-net/tanh", width=64, depth=3, seed=8)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
        assert not torch.equal(value, c.state_dict()[key])
    assert a.zoo_fingerprint == b.zoo_fingerprint != c.zoo_fingerprint
    assert not a.training  # eval mode


def test_overrides_like_timm():
    net = zoo.load("random-net/tanh", sigma_w2=4.0, depth=5, width=50, seed=0)
    assert net.depth == 5 and net.sigma_w2 == 4.0 and net.zoo_config["width"] == 50
    # weight statistics follow the override: Var(W_ij) = sigma_w2 / N
    assert abs(net.weights.var().item() * 50 / 4.0 - 1) < 0.05
    with pytest.raises(TypeError, match="unknown argument"):
        zoo.load("random-net/tanh", hidden_size=3)


def test_pretrained_file_entry(ckpt_dir):
    name = register_toy_entry()
    with pytest.raises(CheckpointError, match="zoo train"):
        zoo.load(name)
    model = zoo.load(name, pretrained=False)
    from zoo import checkpoint as ckpt

    ckpt.save(ckpt_dir / ckpt.file_name(name), name=name, state_dict=model.state_dict(),
              config={"in_features": 4, "out_features": 2}, card={"metrics": {"mse": 0.1}})
    loaded = zoo.load(name)
    assert torch.equal(loaded.weight, model.weight)
    assert zoo.card(name)["metrics"] == {"mse": 0.1}
    assert loaded.zoo_fingerprint == ckpt.sha256_file(ckpt_dir / ckpt.file_name(name))
    with pytest.raises(ValueError, match="changes the shape"):
        zoo.load(name, out_features=3)
    assert zoo.load(name, pretrained=False, out_features=3).weight.shape == (3, 4)


def test_card_of_entry_without_weights(ckpt_dir):
    name = register_toy_entry()
    card = zoo.card(name)
    assert "zoo train" in card["status"]


def test_task_lookup():
    from zoo import tasks

    assert zoo.task("random-net/tanh").name == "random-net"
    with pytest.raises(KeyError, match="unknown task"):
        tasks.get_task("random_net")


@pytest.mark.parametrize("overrides, error, match", [
    ({"depth": 2.5}, TypeError, "depth must be an integer .*got 2.5"),
    ({"sigma_w2": float("nan")}, ValueError, "sigma_w2 must be finite"),
    ({"sigma_w2": "big"}, TypeError, "sigma_w2 must be a number"),
    ({"width": 0}, ValueError, "width is a count or size and must be a positive integer, got 0"),
    ({"widht": 10}, TypeError, r"widht \(did you mean width\?\)"),
    ({"width": 10**6}, ValueError, "more than this machine's"),  # refused on the meta device, nothing allocated
])
def test_bad_overrides_fail_before_building(overrides, error, match):
    with pytest.raises(error, match=match):
        zoo.load("random-net/tanh", **overrides)


def test_list_models_needs_a_pattern_string():
    with pytest.raises(TypeError, match="shell wildcard"):
        zoo.list_models(None)


def test_tampered_config_is_refused_before_allocation(ckpt_dir):
    """A config that does not build the stored tensors (here a 10^6-wide embedding, 29 GB) is caught on
    the meta device, even when the attacker also rewrote the manifest."""
    from zoo import checkpoint as ckpt

    name = "sentiment-sst/bow"
    shipped = Path(zoo.__file__).parent / "checkpoints" / ckpt.file_name(name)
    stored, config, card, arrays = ckpt.load(shipped)
    ckpt.save(ckpt_dir / shipped.name, name=stored, config={**config, "embed_size": 10**6}, card=card,
              state_dict={k: torch.from_numpy(v.astype("float32")) for k, v in arrays.items()})
    with pytest.raises(zoo.CheckpointError, match="config does not match its tensors"):
        zoo.load(name)
