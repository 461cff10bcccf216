"""The path-integration task (trajectories, place cells, loss) and the grid-cell RNN entry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.analysis.protocols import RecurrentDynamics, SpatialMaps
from zoo.tasks import get_task
from zoo.tasks.path_integration import PathIntegration, PlaceCells
from zoo.models.grid_rnn import GridRNN


@pytest.fixture(scope="module")
def task():
    return PathIntegration(seed=3)


def _batch(task, seed=0, b=64):
    return task.make_batch(torch.Generator().manual_seed(seed), b)


# ----------------------------------------------------------------------------- trajectories


def test_same_seed_same_batches_and_fresh_batches_per_step():
    a = [b[0] for _, b in zip(range(2), get_task("path-integration", seed=5).dataloader("train", 16))]
    b = [b[0] for _, b in zip(range(2), get_task("path-integration", seed=5).dataloader("train", 16))]
    c = next(iter(get_task("path-integration", seed=6).dataloader("train", 16)))[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])          # a fresh batch every step
    assert not torch.equal(a[0], c)             # another seed, other trajectories
    val = next(iter(get_task("path-integration", seed=5).dataloader("val", 16)))[0]
    assert not torch.equal(val, a[0])           # splits draw from different streams


def test_batch_shapes_and_units(task):
    v, p0, y, pos = _batch(task)
    assert v.shape == (64, 20, 2) and p0.shape == (64, 512) and y.shape == (64, 20, 512) and pos.shape == (64, 20, 2)
    # the authors' wall rule turns and slows the agent within 3 cm of a wall, so a step can
    # overshoot by at most a few cm: nearly every position lies inside the 2.2 m box
    assert pos.abs().max() <= 1.1 + 0.05 and (pos.abs() <= 1.1).float().mean() > 0.99
    traj = task.trajectories(400, torch.Generator().manual_seed(1))
    # velocity integrates to the positions: x_{t+1} = x_t + v_t (m per step)
    np.testing.assert_allclose((pos[:, 1:] - pos[:, :-1]).numpy(), v[:, 1:].numpy(), atol=1e-5)
    speed = traj["speed"] / task.dt                               # m/s
    b = 0.13 * 2 * math.pi
    assert speed.median() == pytest.approx(b * math.sqrt(2 * math.log(2)), rel=0.1)  # Rayleigh median
    torus = PathIntegration(periodic=True).trajectories(400, torch.Generator().manual_seed(1))  # no wall turns
    turn = torch.diff(torus["heading"], dim=1)
    turn = torch.remainder(turn + math.pi, 2 * math.pi) - math.pi
    assert (turn / task.dt).std() == pytest.approx(11.52, rel=0.05)   # rad/s


def test_start_displacements_are_the_integrated_velocities(task):
    """The displacement of target t from the start is the sum of the velocities up to t (same draw)."""
    v, _, _, pos = _batch(task, seed=3)
    moved = task.start_displacements(64, torch.Generator().manual_seed(3))
    assert moved.shape == (64, 20, 2)
    np.testing.assert_allclose(moved.numpy(), v.double().cumsum(1).numpy(), atol=1e-5)
    np.testing.assert_allclose((moved[:, 1:] - moved[:, :-1]).numpy(), (pos[:, 1:] - pos[:, :-1]).numpy(), atol=1e-5)
    torus = PathIntegration(periodic=True, box_width=0.5, box_height=0.5)   # small: most paths wrap
    v = torus.make_batch(torch.Generator().manual_seed(3), 64)[0].double().cumsum(1)
    moved = torus.start_displacements(64, torch.Generator().manual_seed(3))
    assert moved.abs().max() <= 0.25 + 1e-9 and v.abs().max() > 0.25
    np.testing.assert_allclose(moved.numpy(), (torch.remainder(v + 0.25, 0.5) - 0.25).numpy(), atol=1e-5)


def test_walls_turn_and_slow_the_agent(task):
    pos = torch.tensor([[1.09, 0.0], [1.09, 0.0], [0.0, 0.0]], dtype=torch.float64)
    hd = torch.tensor([0.1, math.pi, 0.0], dtype=torch.float64)   # towards the east wall, away, centre
    near, turn = task._avoid_wall(pos, hd)
    assert near.tolist() == [True, False, False]
    assert turn[0] == pytest.approx(math.pi / 2 - 0.1)           # turned to run along the wall


def test_periodic_box_wraps_positions():
    t = PathIntegration(periodic=True, sequence_length=200)
    traj = t.trajectories(50, torch.Generator().manual_seed(0))
    assert traj["position"].abs().max() <= 1.1


# ----------------------------------------------------------------------------- place cells


def test_place_cells_are_a_distribution_peaked_at_the_position(task):
    pos = torch.rand(500, 2) * 2.2 - 1.1
    code = task.place_cells.activation(pos)
    assert torch.allclose(code.sum(-1), torch.ones(500), atol=1e-5)
    assert (code >= 0).all() and torch.allclose(code.min(-1).values, torch.zeros(500), atol=1e-7)
    err = (task.place_cells.decode(code) - pos).norm(dim=-1)
    assert err.mean() < 0.06                                       # top-3 decoding of the true code


def test_place_cell_formula_and_fixed_centres():
    cells = PlaceCells(n=16, sigma=0.2, surround_scale=2.0)
    assert torch.equal(cells.centres, PlaceCells(n=16, sigma=0.2).centres)
    x = torch.tensor([[0.3, -0.2]])
    d2 = ((x[:, None] - cells.centres) ** 2).sum(-1).double()
    dog = torch.softmax(-d2 / (2 * 0.04), -1) - torch.softmax(-d2 / (2 * 2.0 * 0.04), -1)  # s = VARIANCE ratio
    dog = dog - dog.min()
    np.testing.assert_allclose(cells.activation(x).double(), dog / dog.sum(), atol=1e-6)
    gauss = PlaceCells(n=16, sigma=0.2, dog=False).activation(x).double()
    np.testing.assert_allclose(gauss, torch.softmax(-d2 / 0.08, -1), atol=1e-6)


def test_place_cell_code_in_blocks_is_bit_for_bit_one_pass(task):
    """``activation`` works through cache-sized blocks of positions: the code of a batch that spans
    several blocks equals one pass over all of it exactly, and keeps the positions' leading shape."""
    cells = task.place_cells
    pos = torch.rand(3, 250, 2, generator=torch.Generator().manual_seed(4)) * 2.2 - 1.1
    norm2 = cells.sq_dist(pos)
    one_pass = torch.softmax(-norm2 / (2 * cells.sigma**2), -1) - torch.softmax(-norm2 / (2 * cells.surround_scale * cells.sigma**2), -1)
    one_pass = one_pass + one_pass.min(-1, keepdim=True).values.abs()
    assert torch.equal(cells.activation(pos), one_pass / one_pass.sum(-1, keepdim=True))
    assert cells.activation(pos[0, 0]).shape == (512,)


# ----------------------------------------------------------------------------- loss and model


def test_loss_is_the_authors_cross_entropy(task):
    model = GridRNN(32, 512, seed=1)
    batch = _batch(task, b=8)
    loss, metrics = task.loss(model, batch)
    logits = model(batch[0], batch[1])
    authors = -(batch[2] * torch.log(torch.softmax(logits, -1))).sum(-1).mean()
    assert loss.item() == pytest.approx(authors.item(), abs=1e-5)
    zero = GridRNN(32, 512)
    with torch.no_grad():
        zero.decoder.zero_()
    assert task.loss(zero, batch)[0].item() == pytest.approx(math.log(512), abs=1e-5)  # uniform output
    assert 0 < metrics["decoding_error_cm"] < 300


def test_loss_is_float32_under_bf16_autocast(task):
    """CPU autocast leaves log_softmax in bf16; the loss takes it in float32, so under bf16-mixed
    it equals the float32 cross-entropy of the same (bf16) logits, well inside the loss's reducible
    range (~0.1 nat); a bf16 log-softmax misses by ~3e-4 on a trained network."""
    model = GridRNN(64, 512, seed=4)
    with torch.no_grad():
        model.decoder.mul_(20)   # logits of order 1, as in a trained network
    batch = _batch(task, b=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = task.loss(model, batch)
        logits = model(batch[0], batch[1])
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    exact = -(batch[2] * torch.log_softmax(logits.float(), -1)).sum(-1).mean()
    assert loss.item() == pytest.approx(exact.item(), abs=1e-6)


def test_step_reproduces_forward_exactly(task):
    model = GridRNN(48, 512, seed=2, init="identity")
    v, p0 = _batch(task, b=5)[:2]
    states = model.hidden(v, p0)
    h = model.initial_state(p0)
    for t in range(v.shape[1]):
        h = model.step(h, v[:, t])
        assert torch.allclose(h, states[:, t], atol=1e-6)
    assert isinstance(model, RecurrentDynamics) and isinstance(model, SpatialMaps)
    assert model.visited_states(_batch(task, b=5)).shape == (100, 48)


def test_weight_decay_only_on_recurrent_weights():
    model = GridRNN(16, 512)
    groups = model.optimizer_param_groups(1e-4)
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert len(decayed) == 1 and decayed[0] is model.rnn.weight_hh_l0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # Adam's coupled decay of 2 * wd equals the authors' penalty wd * ||W_hh||^2
    assert groups[0]["weight_decay"] == pytest.approx(2e-4)


def test_same_seed_same_weights_and_no_biases():
    a, b = GridRNN(16, 512, seed=4), GridRNN(16, 512, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not any("bias" in k for k in a.state_dict())


def test_spatial_maps_cover_the_box(task):
    model = GridRNN(24, 512, seed=0)
    stack = model.spatial_maps(task=task, n_positions=8000, bins=10)
    assert stack.maps.shape == (24, 10, 10) and stack.extent == (-1.1, 1.1, -1.1, 1.1)
    assert torch.isfinite(stack.maps).all()


def test_evaluate_puts_gridness_in_metrics():
    t = PathIntegration(eval_batches=1, ratemap_positions=4000)
    metrics = t.evaluate(GridRNN(16, 512), "test", batch_size=16, decoding_positions=2000)
    for key in ("loss", "decoding_error_cm", "decoding_error_cm_se", "grid_fraction_0.3", "grid_fraction_0.8",
                "dead_fraction", "spectrum_peak_rad_per_m", "null_rank_60", "grid_fraction_above_null",
                "grid_fraction_ellipse_above_null", "map_dimension"):
        assert key in metrics and np.isfinite(metrics[key])
    assert metrics["decoding_positions"] >= 2000 and metrics["ratemap_draws"] == 2
    assert 0 < metrics["decoding_error_cm_se"] < metrics["decoding_error_cm"]


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs(task):
    model = GridRNN(8, 512)
    v, p0 = _batch(task, b=2)[:2]
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        model(v[..., :1], p0)
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full_like(v, float("nan")), p0)
    with pytest.raises(ValueError, match="init_code"):
        model(v, p0[:, :10])
    with pytest.raises(ValueError, match="batch sizes"):
        model(v, p0[:1])
    with pytest.raises(ValueError, match="activation"):
        GridRNN(8, 512, activation="sigmoid")
    with pytest.raises(ValueError, match="init"):
        GridRNN(8, 512, init="zeros")
    with pytest.raises(ValueError, match="split"):
        task.dataloader("holdout", 4)
    with pytest.raises(ValueError, match="positions"):
        task.place_cells.activation(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        task.place_cells.activation(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="model output"):
        task.loss(lambda v, p: torch.zeros(2, 20, 7), _batch(task, b=2))
    with pytest.raises(KeyError, match="path-integration"):
        get_task("path-integraton")


@pytest.mark.parametrize("name", ["path-integration/rnn-relu", "path-integration/rnn-tanh"])
def test_shipped_entry_card(name):
    import zoo

    entry = zoo.get_entry(name)
    assert entry.recipe["lr"] == 1e-4 and entry.recipe["weight_decay"] == 1e-4 and entry.recipe["batch_size"] == 200
    if not entry.path.exists():
        pytest.skip("checkpoint not trained yet")
    card = zoo.card(name)
    for key in ("decoding_error_cm", "decoding_error_cm_se", "grid_fraction_0.3", "grid_fraction_0.8",
                "dead_fraction", "median_grid_spacing_m", "spectrum_peak_rad_per_m"):
        assert key in card["metrics"], key
    assert card["metrics"]["decoding_positions"] >= 200_000 and card["metrics"]["ratemap_draws"] >= 2
    assert len(card["probes"]["step"]) >= 10  # the emergence curve, every 1,000 steps
    model = zoo.load(name)
    assert model.activation == name.rsplit("-", 1)[1]
    v, p0 = _batch(zoo.task(name), b=4)[:2]
    assert model(v, p0).shape == (4, 20, 512)


def test_tanh_twin_has_the_relu_networks_size_start_and_recipe():
    """Issue 13: the tanh network is the ReLU one with tanh units, trained the same way."""
    import zoo

    if not all(zoo.get_entry(n).path.exists() for n in ("path-integration/rnn-relu", "path-integration/rnn-tanh")):
        pytest.skip("checkpoints not trained yet")
    relu, tanh = zoo.card("path-integration/rnn-relu"), zoo.card("path-integration/rnn-tanh")
    assert {k: v for k, v in relu["config"].items() if k != "activation"} == tanh["config"]
    assert relu["config"]["activation"] == "relu"
    for key in ("batch_size", "lr", "weight_decay", "optimizer", "adam_beta2", "steps"):
        assert relu["training"].get(key) == tanh["training"].get(key), key  # adam_beta2: absent in older cards
    assert relu["data"] == tanh["data"] and relu["seed"] == tanh["seed"]


def test_glorot_start_has_spectral_radius_near_one():
    net = GridRNN(hidden_size=512, init="glorot", seed=0)
    radius = torch.linalg.eigvals(net.weight_hh.detach()).abs().max()
    assert 0.9 < radius < 1.1  # the uniform start of the authors' PyTorch code: about 0.58
    with pytest.raises(ValueError, match="glorot"):
        GridRNN(hidden_size=8, init="orthogonal")


def test_training_logs_the_gridness_probe(tmp_path):
    """`zoo train --probe-every N` logs the task's probe (gridness, dead units) from step 0."""
    import csv

    from zoo.training import train

    train("path-integration/rnn-relu", overrides={"hidden_size": 16}, max_steps=4, batch_size=8, probe_every=2,
          runs_root=tmp_path, progress_bar=False)
    log = next(tmp_path.glob("path-integration__rnn-relu/seed0/logs/*/metrics.csv"))
    rows = [r for r in csv.DictReader(log.open()) if r.get("probe/grid_fraction_0.3")]
    assert [int(r["step"]) for r in rows] == [0, 2]
    assert all(0 <= float(r["probe/dead_fraction"]) <= 1 for r in rows)
    from zoo.checkpoint import load

    card = load(next(tmp_path.glob("*/seed0/*.h5")))[2]
    assert card["probes"]["step"] == [0, 2] and len(card["probes"]["grid_fraction_0.3"]) == 2
    assert card["training"]["steps_per_s"] > 0


# what the shipped ReLU network misses of issue 13's targets (measured; README's grid-cell section)
KNOWN_GRID_SHORTFALLS = {"median_grid_spacing_m", "spectrum_peak_rad_per_m"}
# the shipped tanh twin does not (yet) path-integrate under the ReLU network's recipe (README)
KNOWN_TANH_PATH_INTEGRATES = False


@pytest.mark.slow
def test_shipped_grid_networks_on_fresh_ratemaps():
    """The cards' grid metrics hold on fresh trajectories (a task seed used neither in training nor in
    the cards), the ReLU network meets issue 13's targets except its documented shortfalls, and whether
    the tanh twin path-integrates (within 2x or 5 cm of the ReLU network) is as documented."""
    import zoo
    from zoo.papers.grid_cells import TARGETS, path_integrates, target_verdicts

    fresh = {}
    for name in ("path-integration/rnn-relu", "path-integration/rnn-tanh"):
        if not zoo.get_entry(name).path.exists():
            pytest.skip(f"{name} not trained yet")
        card = zoo.card(name)["metrics"]
        fresh[name] = m = zoo.task(name, seed=424242).evaluate(zoo.load(name), "test", max_batches=2)
        assert abs(m["decoding_error_cm"] - card["decoding_error_cm"]) < 4 * math.hypot(
            m["decoding_error_cm_se"], card["decoding_error_cm_se"]) + 0.2, name
        for key in ("grid_fraction_0.3", "grid_fraction_0.8", "dead_fraction"):
            assert m[key] == pytest.approx(card[key], abs=0.03), (name, key, m[key], card[key])
    relu = fresh["path-integration/rnn-relu"]
    # (the tanh maps are not periodic, so their spectrum's peak is noise: 24 and 40 rad/m on two draws)
    peak = zoo.card("path-integration/rnn-relu")["metrics"]["spectrum_peak_rad_per_m"]
    assert relu["spectrum_peak_rad_per_m"] == pytest.approx(peak, abs=2 * math.pi / 2.2)
    missed = {k for k, v in target_verdicts(relu).items() if v != "match"}
    assert missed == KNOWN_GRID_SHORTFALLS, f"misses {sorted(missed)} of {sorted(TARGETS)}"
    relu_cm, tanh_cm = relu["decoding_error_cm"], fresh["path-integration/rnn-tanh"]["decoding_error_cm"]
    assert path_integrates(relu_cm, tanh_cm) == KNOWN_TANH_PATH_INTEGRATES, (relu_cm, tanh_cm)


def test_gridness_analysis_ellipse_option(task):
    """`zoo analyze gridness NAME --param ellipse=true`: every score and the null corrected, the axis
    ratios added; the raw run is unchanged by the option's existence."""
    from zoo.analysis.gridness import gridness

    model = GridRNN(24, 512, seed=3)
    raw = gridness(model, task, n_positions=4000, n_surrogates=4)
    fixed = gridness(model, task, n_positions=4000, n_surrogates=4, ellipse=True)
    assert "median_axis_ratio" not in raw.summary and "axis_ratio" not in raw.arrays
    ratio = fixed.arrays["axis_ratio"]
    assert ratio.shape == (24,) and ((ratio[np.isfinite(ratio)] > 0) & (ratio[np.isfinite(ratio)] <= 1)).all()
    assert (np.isfinite(fixed.arrays["major_axis"]) == np.isfinite(ratio)).all()
    np.testing.assert_array_equal(fixed.arrays["maps"], raw.arrays["maps"])
    assert not np.array_equal(fixed.arrays["score_60"], raw.arrays["score_60"])


def test_halton_centre_layout_is_more_even_than_uniform():
    """centre_layout="halton": centres in the box, fixed by centre_seed, with a lower (centred L2)
    discrepancy than the authors' uniform draw; unknown layouts raise."""
    from scipy.stats import qmc

    uniform, halton = PlaceCells(centre_seed=0), PlaceCells(centre_seed=0, centre_layout="halton")
    assert halton.centres.shape == (512, 2) and (halton.centres.abs() <= 1.1).all()
    assert torch.equal(halton.centres, PlaceCells(centre_seed=0, centre_layout="halton").centres)
    assert not torch.equal(halton.centres, PlaceCells(centre_seed=1, centre_layout="halton").centres)
    unit = lambda cells: cells.centres.double().numpy() / 2.2 + 0.5
    assert qmc.discrepancy(unit(halton)) < 0.2 * qmc.discrepancy(unit(uniform))
    task = PathIntegration(centre_layout="halton")
    assert task.describe()["centre_layout"] == "halton" and torch.equal(task.place_cells.centres, halton.centres)
    with pytest.raises(ValueError, match="centre_layout"):
        PlaceCells(centre_layout="grid")


def test_numpy_centre_layout_is_the_authors_draw():
    """The authors' code: np.random.seed(0), then uniform x, then uniform y, in +-box/2."""
    np.random.seed(0)
    x, y = np.random.uniform(-1.1, 1.1, 512), np.random.uniform(-1.1, 1.1, 512)
    centres = PlaceCells(centre_layout="numpy").centres
    np.testing.assert_allclose(centres.numpy(), np.stack([x, y], 1), atol=1e-6)


def test_entry_task_takes_the_place_cell_layout_from_the_card(monkeypatch):
    """The grid entries train on the authors' centres; a network is evaluated on the layout its card
    records, and a card that predates the option on the task class's default ("uniform")."""
    import zoo.registry

    name = "path-integration/rnn-relu"
    assert zoo.registry.task(name, as_trained=False).options["centre_layout"] == "numpy"
    entry = zoo.registry.get_entry(name)
    if not (entry.weights == "file" and entry.path.exists()):
        pytest.skip("the shipped weights are not here")
    for entry_name in ("path-integration/rnn-relu", "path-integration/rnn-tanh"):
        assert zoo.registry.task(entry_name).options["centre_layout"] == "numpy"   # the shipped cards'
    for data, layout in (({"centre_layout": "halton", "centre_seed": 0}, "halton"), ({}, "uniform")):
        monkeypatch.setattr(zoo.registry, "card", lambda name, data=data: {"data": data})
        task = zoo.registry.task(name)
        assert task.options["centre_layout"] == layout
        assert torch.equal(task.place_cells.centres, PlaceCells(centre_layout=layout).centres)


def test_sequence_length_curriculum_counts_batches_across_epochs():
    """The first warmup_batches training batches are short; evaluation always uses the task's length."""
    t = PathIntegration(sequence_length=20, warmup_sequence_length=5, warmup_batches=4, batches_per_epoch=3,
                        eval_batches=2)
    train = t.dataloader("train", 8)
    lengths = []
    for epoch in range(2):
        train.sampler.set_epoch(epoch)
        lengths += [batch[0].shape[1] for batch in train]
    assert lengths == [5, 5, 5, 5, 20, 20]
    assert [b[2].shape[1] for b in t.dataloader("val", 8)] == [20, 20]
    # the same draw as an uncurriculated task of that length: only the length changes
    short = PathIntegration(sequence_length=5, batches_per_epoch=3).dataloader("train", 8)
    assert torch.equal(next(iter(short))[0], next(iter(t.dataloader("train", 8)))[0])
    assert t.describe()["warmup_batches"] == 4


@pytest.mark.parametrize("bad", [dict(warmup_batches=-1), dict(warmup_batches=10, warmup_sequence_length=0)])
def test_curriculum_rejects_bad_options(bad):
    with pytest.raises(ValueError, match="curriculum"):
        PathIntegration(**bad)
