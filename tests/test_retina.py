"""The simulated retina, the lab-layout loader, and the retina models' fitting code (issue 12)."""

import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.models.retina import RetinaCNN, RetinaLN, receptive_fields, spatial_rf
from zoo.tasks import get_task
from zoo.tasks.retina import (RetinaCircuit, RetinaDataError, RetinaFile, generate_dataset, make_stimulus,
                              pearson, split_half_ceiling, white_noise)


@pytest.fixture(scope="module")
def circuit():
    return RetinaCircuit()


def _flash(circuit, contrast):
    """Rates [cells, 300] to a full-field step of ``contrast`` from bin 100 to 200."""
    s = torch.zeros(300, 50, 50)
    s[100:200] = contrast
    return circuit.rates(s)


def test_on_cells_respond_to_increments_off_cells_to_decrements(circuit):
    on = torch.tensor([t == "ON" for t in circuit.cell_types])
    up, down = _flash(circuit, 0.35), _flash(circuit, -0.35)
    base = up[:, 90]
    assert torch.allclose(base, down[:, 90])
    up_resp, down_resp = up[:, 105:130].mean(1), down[:, 105:130].mean(1)
    assert (up_resp[on] > 5 * base[on]).all() and (down_resp[~on] > 5 * base[~on]).all()
    assert (up_resp[~on] <= base[~on] + 0.5).all() and (down_resp[on] <= base[on] + 0.5).all()


def test_contrast_adaptation_lowers_gain_after_a_step(circuit):
    g = torch.Generator().manual_seed(1)
    s = torch.cat([white_noise(300, g, contrast=0.05), white_noise(300, g, contrast=0.35)])
    gain = circuit.gain(circuit.bipolar_drive(s)).mean((0, 1, 2))  # [T]
    low, early, late = gain[200:300].mean(), gain[300:310].mean(), gain[450:600].mean()
    assert late < 0.6 * early and late < 0.6 * low  # slow (tau 0.5 s) drop of gain at high contrast
    rates = circuit.rates(s)
    # the ganglion cells' response is larger right after the step than once adapted
    assert (rates[:, 300:350].std(1) > rates[:, 500:600].std(1)).float().mean() >= 0.75
    no_adapt = RetinaCircuit(adapt_gain=0.0)
    assert torch.allclose(no_adapt.gain(no_adapt.bipolar_drive(s)), torch.ones(1))


def test_circuit_is_chunk_invariant_deterministic_and_spikes_refractory(circuit):
    g = torch.Generator().manual_seed(3)
    s = make_stimulus("natural", 400, g)
    assert torch.allclose(circuit.rates(s, chunk=64), circuit.rates(s, chunk=10_000), atol=1e-4)
    a = circuit.spikes(circuit.rates(s), 3, torch.Generator().manual_seed(0))
    b = circuit.spikes(circuit.rates(s), 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # 2 ms dead time at 1 ms steps: at most 5 spikes in a 10 ms bin, even at a saturating rate
    burst = circuit.spikes(torch.full((2, 500), 1000.0), 1, torch.Generator().manual_seed(0))
    assert burst.max() <= 5 and burst.float().mean() < 5
    with pytest.raises(ValueError, match="stimulus must be"):
        circuit.rates(torch.zeros(10, 20, 20))
    with pytest.raises(ValueError, match="NaN"):
        circuit.rates(torch.full((10, 50, 50), float("nan")))


def test_generation_is_deterministic_given_a_seed(tmp_path, circuit):
    paths = [generate_dataset(tmp_path / f"{i}.h5", "whitenoise", seed, 200, 120, 4, circuit, progress=False)
             for i, seed in enumerate((5, 5, 6))]
    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b, h5py.File(paths[2]) as c:
        for key in ("train/stimulus", "train/response/binned", "test/repeats/cell03"):
            assert np.array_equal(a[key][()], b[key][()])
        assert not np.array_equal(a["train/stimulus"][()], c["train/stimulus"][()])
        assert a["test/repeats/cell01"].shape == (4, 120)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind


# ----------------------------------------------------------------------------- the lab's layout


def _write_lab_file(path, stim_train, counts_train, stim_test, repeats):
    """A file in the lab's layout: stimulus [T,H,W], response/{binned,firing_rate_10ms} [cells,T], repeats."""
    with h5py.File(path, "w") as f:
        for split, stim, counts in (("train", stim_train, counts_train), ("test", stim_test, repeats[0])):
            f[f"{split}/stimulus"] = stim
            f[f"{split}/response/binned"] = counts
            f[f"{split}/response/firing_rate_10ms"] = counts / 0.01
            f[f"{split}/time"] = np.arange(stim.shape[0]) * 0.01
        for c in range(repeats.shape[1]):
            f[f"test/repeats/cell{c + 1:02d}"] = repeats[:, c]
    return path


def _ln_cells(size=16, lags=8, n_train=12_000, n_test=1_500, trials=10, seed=0):
    """Two purely linear-nonlinear cells (an ON and an OFF one) on binary white noise."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(size, dtype=torch.float32)
    space = [torch.exp(-((ax[:, None] - r) ** 2 + (ax[None] - c) ** 2) / (2 * 1.5**2)) for r, c in ((6, 7), (10, 9))]
    t = torch.arange(lags, dtype=torch.float32)
    temporal = torch.exp(-t / 2) - 0.5 * torch.exp(-t / 4)  # lag 0 = current frame
    k = torch.stack([sign * s[None] * temporal.flip(0)[:, None, None] for sign, s in zip((1.0, -1.0), space)])

    def respond(stim, n_trials):
        windows = stim.unfold(0, lags, 1).permute(0, 3, 1, 2)  # [T - lags + 1, lags, H, W]
        drive = torch.einsum("nlhw,clhw->cn", windows, k) * 0.6 - 0.5
        rate = F.pad(F.softplus(drive), (lags - 1, 0))  # spikes per bin
        return rate, torch.poisson(rate.expand(n_trials, -1, -1).contiguous(), generator=g)

    train = (torch.randint(0, 2, (n_train, size, size), generator=g).float() * 2 - 1)
    test = (torch.randint(0, 2, (n_test, size, size), generator=g).float() * 2 - 1)
    _, y_train = respond(train, 1)
    rate_test, reps = respond(test, trials)
    return train, y_train[0], test, reps, rate_test


def test_loader_reads_a_lab_file_in_windows(tmp_path):
    train, y, test, reps, _ = _ln_cells(n_train=600, n_test=200, trials=4)
    path = _write_lab_file(tmp_path / "rec.h5", train.numpy(), y.numpy(), test.numpy(), reps.numpy())
    data = RetinaFile(path)
    assert data.info["train"].frames == 600 and data.info["train"].cells == 2 and data.info["test"].height == 16
    assert torch.equal(data.stimulus("train", 100, 140), train[100:140])
    assert torch.equal(data.counts("train", 5, 9), y[:, 5:9])
    assert torch.equal(data.repeats("test"), reps)
    task = get_task("retina-whitenoise", data_file=str(path), lags=8, block=10, hist=5)
    stim, counts, history = next(iter(task.dataloader("train", 3)))
    assert stim.shape == (3, 17, 16, 16) and counts.shape == (3, 2, 10) and history.shape == (3, 2, 15)
    mean, sd = task.stimulus_stats
    assert abs(mean - float(train.mean())) < 1e-6 and abs(sd - float(train.std(unbiased=False))) < 1e-4
    assert task.describe()["source"].startswith("recording")


@pytest.mark.parametrize("breakage,message", [
    ("missing", "missing dataset 'train/response/binned'"),
    ("length", "'train/response/binned' has 599 bins"),
    ("rank", "'test/stimulus' must have 3 dimensions"),
    ("repeats", "'test/repeats/cell02' has shape"),
])
def test_loader_refuses_a_broken_file_naming_it(tmp_path, breakage, message):
    train, y, test, reps, _ = _ln_cells(n_train=600, n_test=200, trials=4)
    path = _write_lab_file(tmp_path / "bad.h5", train.numpy(), y.numpy(), test.numpy(), reps.numpy())
    with h5py.File(path, "a") as f:
        if breakage == "missing":
            del f["train/response/binned"]
        elif breakage == "length":
            del f["train/response/binned"]
            f["train/response/binned"] = y.numpy()[:, :599]
        elif breakage == "rank":
            del f["test/stimulus"]
            f["test/stimulus"] = test.numpy().reshape(200, -1)
        else:
            del f["test/repeats/cell02"]
            f["test/repeats/cell02"] = reps.numpy()[:3, 1]
    before = path.read_bytes()
    with pytest.raises(RetinaDataError, match="bad.h5") as err:
        RetinaFile(path)
    assert message in str(err.value)
    assert path.read_bytes() == before  # the loader never writes
    with pytest.raises(RetinaDataError, match="does not exist"):
        RetinaFile(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(RetinaDataError, match="unreadable"):
        RetinaFile(tmp_path / "junk.h5")


def test_ln_model_fits_a_purely_ln_cell_almost_perfectly(tmp_path):
    torch.manual_seed(0)
    train, y, test, reps, rate_test = _ln_cells()
    path = _write_lab_file(tmp_path / "ln.h5", train.numpy(), y.numpy(), test.numpy(), reps.numpy())
    task = get_task("retina-whitenoise", data_file=str(path), lags=8, block=25, hist=5, seed=0)
    centres = task.rf_centres()
    assert np.allclose(centres, [[6, 7], [10, 9]], atol=1)
    model = RetinaLN(n_cells=2, lags=8, frame_size=16, centres=centres, cutout=9, l2=1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for epoch in range(9):
        if epoch == 6:  # anneal: Adam's noise floor, not the model, limits the fit otherwise
            opt.param_groups[0]["lr"] = 2e-3
        loader = task.dataloader("train", 16)
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            loss, _ = task.loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred = task.predict(model.eval(), "test") * 0.01
    truth = rate_test[:, task.test_span()]
    r = pearson(pred, truth)
    assert (r > 0.96).all(), r
    metrics = task.evaluate(model)
    # the fit reaches the cells' own reliability: its correlation with the trial mean is at the ceiling's level
    assert metrics["test_correlation"] > metrics["ceiling_correlation"] - 0.02
    assert math.isfinite(metrics["explained_variance_fraction"]) and metrics["explained_variance_fraction"] > 0.8


def test_block_paths_equal_window_forward_and_layer_maps():
    g = torch.Generator().manual_seed(0)
    stim = torch.randn(2, 40 + 5 - 1, 50, 50, generator=g)
    windows = stim.unfold(1, 40, 1).permute(0, 1, 4, 2, 3).reshape(10, 40, 50, 50)
    cnn = RetinaCNN(n_cells=3).eval()
    blocks = cnn.forward_blocks(stim)  # [2, 3, 5]
    assert torch.allclose(blocks, cnn(windows).reshape(2, 5, 3).permute(0, 2, 1), atol=1e-5)
    h = windows
    for f in cnn.layer_maps():
        h = f(h)
    assert torch.equal(h, cnn(windows)) and cnn.input_shape == (40, 50, 50)
    glm = RetinaLN(n_cells=3, centres=[[25, 25], [0, 49], [10, 30]], hist=4).eval()
    with torch.no_grad():
        glm.history_filter.normal_()
        glm.temporal.normal_()
    history = torch.poisson(torch.ones(2, 3, 5 + 4))
    per_window = history.unfold(2, 4, 1)[:, :, :5].permute(0, 2, 1, 3).reshape(10, 3, 4)
    expected = glm(windows, per_window).reshape(2, 5, 3).permute(0, 2, 1)
    assert torch.allclose(glm.forward_blocks(stim, history), expected, atol=1e-5)
    with pytest.raises(ValueError, match="stimulus windows"):
        cnn(torch.zeros(2, 40, 30, 30))
    with pytest.raises(ValueError, match="centres"):
        RetinaLN(n_cells=2, centres=[[1, 2]])


def test_receptive_fields_of_an_ln_model_recover_its_filter():
    model = RetinaLN(n_cells=1, lags=4, frame_size=20, centres=[[8, 11]], cutout=5, rank=None).eval()
    with torch.no_grad():
        model.full_filters.zero_()
        model.full_filters[0, -1, 2, 2] = 1.0  # the current frame's pixel (8, 11)
    sta = receptive_fields(model, n_frames=3000, checker=1)
    rf = spatial_rf(sta)[0]
    assert sta.shape == (1, 4, 20, 20) and divmod(int(rf.abs().argmax()), 20) == (8, 11) and rf[8, 11] > 0


def test_split_half_ceiling_of_identical_and_independent_trials():
    g = torch.Generator().manual_seed(0)
    same = torch.poisson(torch.full((1, 2, 500), 0.5), generator=g).expand(10, 2, 500)
    assert torch.allclose(split_half_ceiling(same), torch.ones(2, dtype=torch.float64))
    noise = torch.poisson(torch.full((40, 2, 2000), 0.5), generator=g)
    assert split_half_ceiling(noise).abs().max() < 0.1
    with pytest.raises(ValueError, match="at least 2"):
        split_half_ceiling(same[:1])


def test_task_options_and_bad_input():
    with pytest.raises(ValueError, match="train_fraction"):
        get_task("retina-natural", train_fraction=0)
    with pytest.raises(ValueError, match="unknown stimulus kind"):
        make_stimulus("pink", 10, torch.Generator())
    task = get_task("retina-whitenoise", seed=1)
    batch = task.example_batch(2)  # straight from the circuit: no data file is generated
    assert batch[0].shape == (2, 40 + 25 - 1, 50, 50) and batch[1].shape == (2, 8, 25)
    with pytest.raises(ValueError, match="does not match"):
        task.loss(lambda x: torch.ones(x.shape[0], 3), batch)


def test_glm_open_loop_simulation():
    glm = RetinaLN(n_cells=2, centres=[[25, 25], [20, 20]], hist=3).eval()
    drive = 0.5 * torch.randn(2, 200, generator=torch.Generator().manual_seed(0))  # softplus(drive) < 2
    with torch.no_grad():
        free = glm.simulate(drive, 4, torch.Generator().manual_seed(1))  # zero history filter: the LN model
        assert torch.allclose(free, F.softplus(drive).clamp_max(2.0).expand(4, -1, -1))
        glm.history_filter.fill_(-3.0)  # strong self-inhibition lowers the rate
        assert glm.simulate(drive, 4, torch.Generator().manual_seed(1)).mean() < 0.8 * free.mean()
        glm.history_filter.fill_(5.0)  # runaway self-excitation is capped at max_rate (2 spikes per bin)
        assert glm.simulate(drive, 4, torch.Generator().manual_seed(1)).max() <= 2.0


def test_zoo_task_takes_the_trained_normalisation_from_the_card():
    task = zoo.task("retina-natural/ln")
    data = zoo.card("retina-natural/ln")["data"]
    assert task.stimulus_stats == (data["stimulus_mean"], data["stimulus_sd"])
    assert task._data is None  # known without reading (or generating) the training data
    fresh = zoo.task("retina-natural/ln", as_trained=False)
    assert fresh._stats is None  # a training run computes its own


def test_filter_recovery_finds_the_true_subunit_in_a_shifted_copy():
    from zoo.analysis.response_prediction import filter_recovery

    task = zoo.task("retina-natural/cnn")
    dog, temporal = task.true_subunits()
    c = dog.shape[-1] // 2
    own = dog[c - 7:c + 8, c - 7:c + 8]
    shifted = torch.roll(dog, (2, -1), (0, 1))[c - 7:c + 8, c - 7:c + 8]
    noise = torch.randn(15, 15, generator=torch.Generator().manual_seed(0))
    spatial = torch.stack([own, shifted, noise])
    times = torch.stack([temporal[0], -temporal[1], torch.ones(temporal.shape[1])])
    rec = filter_recovery(spatial, times, dog, temporal)
    assert rec["spatial"][0] == pytest.approx(1.0, abs=1e-5) and rec["spatial"][1] > 0.95 and rec["spatial"][2] < 0.6
    assert rec["temporal"][:2] == pytest.approx([1.0, 1.0], abs=1e-5) and list(rec["match"][:2]) == [0, 1]


def test_response_prediction_on_fresh_held_out_repeats():
    from zoo.analysis import get_analysis

    spec = get_analysis("response-prediction")
    ln = zoo.load("retina-natural/ln")
    result = spec(ln, zoo.task("retina-natural/ln"), **spec.quick_params)
    s, a = result.summary, result.arrays
    assert 0.4 < s["natural_correlation"] < s["natural_ceiling"] <= 1 and 0 < s["whitenoise_correlation"] < 1
    assert a["natural_per_cell"].shape == (8,) and a["rf"].shape == (8, 50, 50)
    assert a["natural_pred"].shape == a["natural_target"].shape == (8, 300 - 40 + 1 - 11)
    assert "filter_recovery_spatial" not in s  # an LN model has no first-layer filters
    assert not spec.applies_to(zoo.load("random-net/tanh"))
    with pytest.raises(TypeError, match="held-out repeats"):
        spec(ln, zoo.task("random-net/tanh"), **spec.quick_params)
