"""Fixed points, linearisation and line-attractor geometry against analytic oracles.

Oracles: an affine map (fixed point ``(I - A)^{-1} b``, eigenvalues of ``A``); a 2-D map with
three analytic fixed points (two stable nodes and a saddle, known eigenvalues); an exact linear
line attractor (known line, pushes ``u . B e_w``); and the shipped 3-bit flip-flop GRU (8 stable
fixed points, one per stored word).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from zoo.analysis.fixed_points import (STATUS, FixedPoints, find_fixed_points, has_closed_form_jacobian,
                                     input_jacobians, state_jacobians)
from zoo.analysis.line_attractor import (cosine, eigenvector_alignment, fit_line, local_tangents,
                                     principal_components, ranked_words, readout_direction, word_pushes)
from zoo.analysis.linearization import LinearisedSystem, jacobians_at, linearised_rollout, one_step_error

torch.set_num_threads(1)
F64 = torch.float64


def _affine(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=F64) * 0.5 / math.sqrt(n)
    b = torch.randn(n, generator=g, dtype=F64)
    return a, b, (lambda h, x: h @ a.T + b + x)


def test_affine_map_fixed_point_and_spectrum():
    a, b, f = _affine()
    n = a.shape[0]
    seeds = torch.randn(40, n, dtype=F64, generator=torch.Generator().manual_seed(1)) * 3
    fp = find_fixed_points(f, seeds, torch.zeros(n, dtype=F64))
    h_star = torch.linalg.solve(torch.eye(n, dtype=F64) - a, b).numpy()
    assert fp.n_unique == 1
    assert np.abs(fp.points[0] - h_star).max() < 1e-8
    assert fp.q[0] < 1e-12 and fp.status_counts()["fixed"] == 1 and fp.status_counts()["duplicate"] == 39
    expected = np.sort(np.abs(np.linalg.eigvals(a.numpy())))[::-1]
    assert np.allclose(np.abs(fp.eigenvalues[0]), expected, atol=1e-10)
    assert np.allclose(fp.jacobians[0], a.numpy(), atol=1e-12)
    # left/right eigenvectors: L J R = diag(lambda), l_i . r_j = delta_ij
    L, R = fp.left_eigenvectors[0], fp.right_eigenvectors[0]
    assert np.allclose(L @ R, np.eye(n), atol=1e-8)
    assert np.allclose(L @ fp.jacobians[0] @ R, np.diag(fp.eigenvalues[0]), atol=1e-8)
    tau = fp.time_constants[0]
    assert np.allclose(tau, -1 / np.log(expected), rtol=1e-8)
    assert fp.stable[0]


def _bistable(dt=0.1):
    """x' = x + dt (x - x^3), y' = (1 - dt) y: fixed points (+-1, 0) stable, (0, 0) a saddle."""
    def f(h, x):
        return torch.stack([h[:, 0] + dt * (h[:, 0] - h[:, 0] ** 3), (1 - dt) * h[:, 1]], -1) + x
    return f


def test_2d_system_with_saddle():
    dt = 0.1
    seeds = torch.cartesian_prod(torch.linspace(-1.6, 1.6, 9, dtype=F64), torch.linspace(-1, 1, 5, dtype=F64))
    fp = find_fixed_points(_bistable(dt), seeds, torch.zeros(2, dtype=F64), tol_unique=1e-4)
    order = np.argsort(fp.points[:, 0])
    assert fp.n_unique == 3
    assert np.allclose(fp.points[order], [[-1, 0], [0, 0], [1, 0]], atol=1e-5)  # sqrt(N q_tol) / (1 - 0.9)
    assert (fp.q < 1e-12).all()
    # eigenvalues: stable nodes 1 - 2 dt, 1 - dt; saddle 1 + dt, 1 - dt
    eig = np.sort(np.real(fp.eigenvalues[order]), axis=1)
    assert np.allclose(eig, [[1 - 2 * dt, 1 - dt], [1 - dt, 1 + dt], [1 - 2 * dt, 1 - dt]], atol=1e-9)
    assert fp.stable[order].tolist() == [True, False, True]
    assert fp.time_constants[order[1], 0] < 0  # the saddle's unstable mode grows


def test_polish_across_several_linear_algebra_blocks():
    """N = 300 puts 46 points in a block: 120 seeds span three blocks, every one must converge
    (each seed's own q below q_tol, found by the polish rather than merged away)."""
    a, b, f = _affine(300)
    seeds = torch.randn(120, 300, dtype=F64, generator=torch.Generator().manual_seed(2))
    fp = find_fixed_points(f, seeds, torch.zeros(300, dtype=F64), adam_iters=0, merge_before_polish=False,
                           tol_unique=1e-12, compute_jacobians=False)
    h_star = torch.linalg.solve(torch.eye(300, dtype=F64) - a, b).numpy()
    assert (fp.seed_q < 1e-12).all()
    assert np.abs(fp.final_states - h_star).max() < 1e-6


def test_a_single_seed_is_not_an_outlier():
    """One seed (or identical seeds) has a zero seed radius: no outlier rule applies."""
    a, b, f = _affine(4)
    for seeds in (torch.randn(1, 4, dtype=F64), torch.ones(3, 4, dtype=F64)):
        fp = find_fixed_points(f, seeds, torch.zeros(4, dtype=F64))
        assert fp.status_counts()["outlier"] == 0 and fp.n_unique == 1 and fp.q[0] < 1e-12


def test_slow_point_is_reported_not_hidden():
    """x' = x + dt (x^2 + c), c > 0: no fixed point; a ghost (slow point) at x = 0 with q = (dt c)^2."""
    dt, c = 0.1, 0.01

    def f(h, x):
        return h + dt * (h ** 2 + c) + x

    fp = find_fixed_points(f, torch.linspace(-0.5, 0.5, 11, dtype=F64)[:, None], torch.zeros(1, dtype=F64))
    assert fp.status_counts()["fixed"] == 0
    assert fp.n_unique >= 1 and not fp.is_fixed.any()
    best = np.argmin(fp.q)
    assert abs(fp.points[best, 0]) < 1e-4
    assert fp.q[best] == pytest.approx((dt * c) ** 2, rel=1e-4)
    assert fp.grad_norm[best] < 1e-8


def test_nan_and_divergent_seeds_are_reported_per_point():
    a, b, f = _affine(4)
    seeds = torch.randn(6, 4, dtype=F64)
    seeds[1, 2] = float("nan")
    seeds[3, 0] = float("inf")
    fp = find_fixed_points(f, seeds, torch.zeros(4, dtype=F64))
    assert [STATUS[s] for s in fp.seed_status[[1, 3]]] == ["nan-seed", "nan-seed"]
    assert fp.n_unique == 1 and fp.q[0] < 1e-12

    # sqrt: fixed point at 1; a negative seed turns NaN at once -> "diverged", no crash
    seeds = torch.tensor([[-1.0], [0.5], [4.0]], dtype=F64)
    fp = find_fixed_points(lambda h, x: torch.sqrt(h) + x, seeds, torch.zeros(1, dtype=F64))
    names = [STATUS[s] for s in fp.seed_status]
    assert names[0] == "diverged" and sorted(names[1:]) == ["duplicate", "fixed"]
    # |r| = |sqrt(h) - h| ~ |h - 1| / 2 < sqrt(q_tol = 1e-12) once converged
    assert np.isnan(fp.seed_q[0]) and fp.points.ravel() == pytest.approx([1.0], abs=2e-6)

    # h - 1/h: q = 1/h^2 -> 0 only as |h| -> inf; the polish runs off -> "outlier", nothing kept
    fp = find_fixed_points(lambda h, x: h - 1 / h + x, seeds, torch.zeros(1, dtype=F64))
    assert [STATUS[s] for s in fp.seed_status] == ["outlier"] * 3 and fp.n_unique == 0


def test_hdf5_round_trip(tmp_path):
    fp = find_fixed_points(_bistable(), torch.tensor([[0.9, 0.1], [-1.2, 0.3], [0.05, 0.0]], dtype=F64),
                           torch.zeros(2, dtype=F64))
    path = fp.save(tmp_path / "fp.h5")
    back = FixedPoints.load(path)
    for name in ("points", "q", "eigenvalues", "right_eigenvectors", "left_eigenvectors", "jacobians",
                 "seed_status", "final_states"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fp, name))
    assert back.params["convention"].startswith("q = (1/N)")
    assert [p.name for p in tmp_path.iterdir()] == ["fp.h5"]  # no temporary left behind
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="unreadable"):
        FixedPoints.load(tmp_path / "bad.h5")


def test_bad_inputs_raise_clear_errors():
    _, _, f = _affine(3)
    x0 = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match=r"seeds must be \[S, N\]"):
        find_fixed_points(f, torch.zeros(3, dtype=F64), x0)
    with pytest.raises(ValueError, match="inputs must be"):
        find_fixed_points(f, torch.zeros(2, 3, dtype=F64), torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        find_fixed_points(f, torch.zeros(2, 3, dtype=F64), torch.full((3,), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        find_fixed_points(f, torch.zeros(2, 3, dtype=F64), x0, patience=0)
    with pytest.raises(ValueError, match="q_tol"):
        find_fixed_points(f, torch.zeros(2, 3, dtype=F64), x0, q_tol=-1.0)
    with pytest.raises(ValueError, match="give `inputs`"):
        find_fixed_points(f, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="shaped like h"):
        find_fixed_points(lambda h, x: h[:, :2], torch.zeros(2, 3, dtype=F64), x0)
    with pytest.raises(TypeError, match="RecurrentDynamics"):
        find_fixed_points(42, torch.zeros(2, 3), x0)


# ----------------------------------------------------------------------------- line attractor


def _line_attractor(n=6, e=4, seed=0):
    """h' = A h + B x with A = u u^T + 0.5 (I - u u^T): every point of span(u) is fixed at x = 0."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, generator=g, dtype=F64)
    u = u / u.norm()
    a = torch.outer(u, u) + 0.5 * (torch.eye(n, dtype=F64) - torch.outer(u, u))
    bmat = torch.randn(n, e, generator=g, dtype=F64)
    return u, a, bmat, (lambda h, x: h @ a.T + x @ bmat.T)


def test_a_line_attractor_is_one_connected_set_whatever_the_tolerance():
    """The count that describes the network (one line) is the same over a decade of tolerances, and
    the de-duplication tolerance scales with the seeds (stated in the result)."""
    u, a, bmat, f = _line_attractor()
    n, e = bmat.shape
    g = torch.Generator().manual_seed(4)
    t = torch.rand(1000, generator=g, dtype=F64) * 4 - 2
    seeds = t[:, None] * u + 0.3 * torch.randn(1000, n, generator=g, dtype=F64)
    found = {tol: find_fixed_points(f, seeds, torch.zeros(e, dtype=F64), tol_unique=tol, compute_jacobians=False)
             for tol in (1e-3, 3e-3, 1e-2)}
    for tol, fp in found.items():
        assert fp.params["tol_unique_abs"] == pytest.approx(tol * fp.params["state_scale"])
        assert 0.5 < fp.params["state_scale"] < 2  # median distance of the seeds from their centroid
    # the unique count samples a continuum (and depends on the tolerance); the connected-set count
    # is the network's: one line
    assert {fp.connected_sets().n_sets for fp in found.values()} == {1}
    fp = found[1e-3]
    proj = fp.points @ u.numpy()
    for link in (0.3, 0.6, 1.0):
        sets = fp.connected_sets(link)
        assert sets.n_sets == 1 and sets.sizes[0] == fp.n_unique
        assert sets.extents[0] == pytest.approx(proj.max() - proj.min(), rel=1e-6)
        assert sets.pc1_fractions[0] == pytest.approx(1.0, abs=1e-9)
        assert sets.summary()["largest_set_size"] == fp.n_unique
    # an absolute tolerance is still available
    absolute = find_fixed_points(f, seeds, torch.zeros(e, dtype=F64), tol_unique=1e-3, tol_relative=False,
                                 compute_jacobians=False)
    assert absolute.params["tol_unique_abs"] == 1e-3


class _SaturatingGRU(torch.nn.Module):
    """``h' = z h + (1 - z) tanh(h / 2)`` with ``z = sigmoid(40 (|h| - 2))``: a unique fixed point at 0
    inside ``(-1, 1)``, and, outside the box a GRU can reach, states that saturated gates hold still."""

    state_size, input_size = 2, 1

    def step(self, h, x):
        z = torch.sigmoid(40 * (h.abs() - 2))
        return z * h + (1 - z) * torch.tanh(h / 2 + x)

    def state_bounds(self):
        return -torch.ones(2), torch.ones(2)


def test_points_outside_the_reachable_box_are_flagged_not_counted():
    model = _SaturatingGRU()
    seeds = torch.tensor([[0.3, -0.2], [0.1, 0.5], [3.0, 3.0], [-3.5, 3.2]], dtype=F64)
    fp = find_fixed_points(model, seeds, q_keep=1e-8)
    status = [STATUS[s] for s in fp.seed_status]
    assert status[2] == status[3] == "unreachable"
    assert fp.seed_q[2] < 1e-20  # they are zeros of q, held still by saturated gates
    assert fp.n_unique == 1 and np.abs(fp.points[0]).max() < 1e-6 and fp.params["bounded"]
    # without the model's bounds they would count; explicit bounds work for a plain callable too
    plain = lambda h, x: model.step(h, x)  # noqa: E731  (a callable that declares no bounds)
    unbounded = find_fixed_points(plain, seeds, torch.zeros(1, dtype=F64), q_keep=1e-8)
    assert unbounded.n_unique == 3
    boxed = find_fixed_points(plain, seeds, torch.zeros(1, dtype=F64), q_keep=1e-8, state_bounds=(-1.0, 1.0))
    assert boxed.n_unique == 1
    with pytest.raises(ValueError, match="state_bounds"):
        find_fixed_points(plain, seeds, torch.zeros(1, dtype=F64), state_bounds=(1.0, -1.0))


def test_line_attractor_geometry_and_pushes():
    u, a, bmat, f = _line_attractor()
    n, e = bmat.shape
    g = torch.Generator().manual_seed(3)
    seeds = torch.linspace(-2, 2, 30, dtype=F64)[:, None] * u + 0.3 * torch.randn(30, n, generator=g, dtype=F64)
    fp = find_fixed_points(f, seeds, torch.zeros(e, dtype=F64), tol_unique=1e-3)
    assert fp.n_unique >= 20 and (fp.q < 1e-12).all()
    perp = fp.points - np.outer(fp.points @ u.numpy(), u.numpy())
    assert np.abs(perp).max() < 1e-5  # on the line, to within sqrt(N q_tol) / (1 - 0.5)
    assert np.allclose(np.abs(fp.eigenvalues[:, 0]), 1.0) and np.allclose(np.abs(fp.eigenvalues[:, 1]), 0.5)
    readout = readout_direction(torch.stack([-u, u]))  # two logits: w1 - w0 = 2u
    line = fit_line(fp.points, readout)
    assert cosine(line.direction, readout) == pytest.approx(1.0, abs=1e-9)
    assert line.fraction_variance == pytest.approx(1.0, abs=1e-9)
    proj = fp.points @ u.numpy()
    assert line.length == pytest.approx(proj.max() - proj.min(), rel=1e-9)
    assert line.arc_length == pytest.approx(line.length, rel=1e-6)
    align = eigenvector_alignment(fp, local_tangents(fp.points, line.direction))
    assert align.min() > 1 - 1e-9
    j_h, j_x = jacobians_at(f, fp.points, fp.input)
    assert torch.allclose(j_x[0], bmat) and torch.allclose(j_h[0], a)
    words = torch.randn(7, e, generator=g, dtype=F64)
    push = word_pushes(fp, j_x, words, readout)
    assert np.allclose(push, (words @ bmat.T @ u).numpy(), atol=1e-9)
    top, bottom = ranked_words(push, [f"w{i}" for i in range(7)], n=2, skip=())
    assert top[0][1] == push.max() and bottom[0][1] == push.min()


def test_linearisation_is_exact_for_a_linear_system():
    u, a, bmat, f = _line_attractor()
    seeds = torch.linspace(-1, 1, 9, dtype=F64)[:, None] * u
    fp = find_fixed_points(f, seeds, torch.zeros(bmat.shape[1], dtype=F64))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 12, bmat.shape[1], generator=g, dtype=F64) * 0.1
    err = one_step_error(f, fp, x, h0=torch.zeros(5, a.shape[0], dtype=F64))
    assert err["median_update_error"] < 1e-9 and err["n_transitions"] == 60
    system = LinearisedSystem(f, fp)
    h = torch.zeros(5, a.shape[0], dtype=F64)
    lin = linearised_rollout(f, system, x, torch.tensor([12, 3, 0, 7, 12]), h0=h)
    true = h.clone()
    for t in range(12):
        true = torch.where((t < torch.tensor([12, 3, 0, 7, 12]))[:, None], f(true, x[:, t]), true)
    assert torch.allclose(lin, true, atol=1e-10)


def test_pca_and_readout_bad_inputs():
    states = torch.randn(200, 3) * torch.tensor([10.0, 1.0, 0.1])
    pca = principal_components(states)
    assert pca.explained_variance_ratio[0] > 0.95 and pca.explained_variance_ratio.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        principal_components(torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\[C, N\]"):
        readout_direction(torch.ones(3))
    with pytest.raises(ValueError, match="zero"):
        cosine(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="pushes for a vocabulary"):
        ranked_words(np.zeros(3), ["a", "b"])


# ----------------------------------------------------------------------------- trained flip-flop


@pytest.fixture(scope="module")
def flip_flop():
    import zoo

    return zoo.load("flip-flop/gru"), zoo.task("flip-flop/gru")


def test_flip_flop_step_matches_forward(flip_flop):
    model, task = flip_flop
    inputs, targets = task.example_batch(4)
    states = model.states(inputs)
    h = model.initial_state(4)
    for t in range(inputs.shape[1]):
        h = model.step(h, inputs[:, t])
    assert torch.equal(h, states[:, -1])
    assert task.evaluate(model, "test", batch_size=64, max_batches=1)["accuracy"] > 0.999


def test_flip_flop_has_eight_stable_fixed_points(flip_flop):
    from zoo.analysis import get_analysis
    from zoo.analysis.fixed_points import visited_seeds

    model, task = flip_flop
    seeds = visited_seeds(model, task, 256, noise=0.05, batch_size=16, max_batches=2)
    every = visited_seeds(model, task, 10**6, batch_size=4, max_batches=1)  # fewer states than asked for
    visited = model.visited_states(next(iter(task.dataloader("test", 4))))
    assert len(every) == len(visited)  # every visited state once: none drawn twice to make up the number
    fp = find_fixed_points(model, seeds, tol_unique=1e-2)
    stable = fp.stable & fp.is_fixed
    assert stable.sum() == 8
    assert (fp.q[stable] < 1e-10).all()
    # one stable point per 3-bit word: the readout's signs enumerate all 8 corners
    out = fp.points[stable] @ model.readout_weights().numpy().T + model.readout_bias().numpy()
    words = {tuple(np.sign(o).astype(int)) for o in out}
    assert len(words) == 8
    # the unstable ones are saddles with exactly one mode outside the unit circle... or more
    assert (np.abs(fp.eigenvalues[~stable, 0]) > 1).all()
    for link in (0.05, 0.15, 0.5):  # eight distinct stable points, at any linking distance over a decade
        assert fp.subset(stable).connected_sets(link).n_distinct_fixed == 8
    low, high = model.state_bounds()
    assert (fp.points >= low.numpy() - 1e-5).all() and (fp.points <= high.numpy() + 1e-5).all()
    # the registered analysis runs on it
    result = get_analysis("fixed-points")(model, task, n_seeds=64, noise=0.05)
    assert result.summary["n_unique"] >= 8 and result.summary["convention"].startswith("q = (1/N)")


def test_flip_flop_task_targets_hold_last_pulse():
    from zoo.tasks import get_task

    task = get_task("flip-flop", seed=0, n_time=30)
    inputs, targets = task.make_trials(8, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (8, 30, 3)
    # brute force: target = sign of the latest nonzero input
    for b, t, k in [(0, 29, 0), (3, 10, 2), (7, 0, 1)]:
        nz = inputs[b, : t + 1, k].nonzero()
        assert targets[b, t, k] == inputs[b, nz[-1, 0], k]
    with pytest.raises(ValueError, match="unknown split"):
        task.dataloader("holdout", 4)
    with pytest.raises(ValueError, match="probability"):
        get_task("flip-flop", p_pulse=2.0)


def test_jacobian_fallback_matches_vmap():
    """A step that vmap cannot trace (``.item()`` inside) goes through the autograd fallback."""
    a, b, f = _affine(5)

    def opaque(h, x):
        scale = float(torch.ones(1).item())
        return scale * (h @ a.T) + b + x

    h = torch.randn(3, 5, dtype=F64)
    jac = state_jacobians(opaque, h, torch.zeros(3, 5, dtype=F64))
    assert torch.allclose(jac, a.expand(3, 5, 5))


@pytest.mark.parametrize("name", zoo.list_models())
def test_closed_form_jacobians_match_autodiff(name):
    """A model's ``state_jacobian`` / ``input_jacobian`` equal autodiff of its ``step`` (float64,
    its shipped or seeded weights, random states including saturated and ReLU-off units)."""
    model = zoo.load(name)  # a shipped config carries what a fresh one would take from the task's data
    if not has_closed_form_jacobian(model):
        pytest.skip("no closed-form Jacobian")
    model = model.double()
    g = torch.Generator().manual_seed(0)
    h = 2.0 * torch.randn(6, model.state_size, generator=g, dtype=F64)
    x = torch.randn(6, model.input_size, generator=g, dtype=F64)
    step = model.step  # a plain callable: forces torch.func's autodiff path
    expect_h, expect_x = state_jacobians(step, h, x), input_jacobians(step, h, x)
    got_h, got_x = model.state_jacobian(h, x), model.input_jacobian(h, x)
    assert got_h.shape == (6, model.state_size, model.state_size) and got_x.shape == expect_x.shape
    torch.testing.assert_close(got_h, expect_h, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_x, expect_x, rtol=0, atol=1e-12)
    assert torch.equal(state_jacobians(model, h, x), got_h.detach())  # the finder asks the model


def test_closed_form_jacobian_of_a_tanh_grid_rnn():
    """The grid RNN's tanh variant (no shipped entry) against autodiff."""
    from zoo.models.grid_rnn import GridRNN

    model = GridRNN(hidden_size=12, n_place_cells=5, activation="tanh").double()
    h, x = torch.randn(4, 12, dtype=F64), torch.randn(4, 2, dtype=F64)
    torch.testing.assert_close(model.state_jacobian(h, x), state_jacobians(model.step, h, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(model.input_jacobian(h, x), input_jacobians(model.step, h, x), rtol=0, atol=1e-12)


def test_first_order_only_mode_reports_q_and_gradient():
    """lm_iters=0 (used for very large networks): Adam only, q and |grad q| still reported per seed."""
    a, b, f = _affine(4)
    fp = find_fixed_points(f, torch.randn(5, 4, dtype=F64), torch.zeros(4, dtype=F64), lm_iters=0,
                           adam_iters=20, compute_jacobians=False)
    finite = np.isfinite(fp.seed_q)
    assert finite.all() and np.isfinite(fp.seed_grad_norm).all()
    h = torch.as_tensor(fp.final_states)
    q = (f(h, torch.zeros(5, 4, dtype=F64)) - h).pow(2).mean(-1).numpy()
    np.testing.assert_allclose(fp.seed_q, q, rtol=1e-10)
    assert fp.params["lm_jacobian_evaluations"] == 0


def test_linearise_on_demand():
    from zoo.analysis.fixed_points import linearise

    a, b, f = _affine(5)
    fp = find_fixed_points(f, torch.randn(4, 5, dtype=F64), torch.zeros(5, dtype=F64), compute_jacobians=False)
    assert not fp.linearised and fp.jacobians.shape == (1, 0, 0)
    with pytest.raises(ValueError, match="no spectra"):
        _ = fp.stable
    full = linearise(f, fp)
    assert full.linearised and np.allclose(full.jacobians[0], a.numpy())
    assert np.allclose(np.sort(np.abs(full.eigenvalues[0])), np.sort(np.abs(np.linalg.eigvals(a.numpy()))))


def test_decompose_survives_a_defective_jacobian():
    """A Jordan block has one eigenvector: its eigenbasis is singular, left vectors fall back to pinv."""
    from zoo.analysis.fixed_points import decompose

    jordan = np.array([[[0.9, 1.0], [0.0, 0.9]], [[0.5, 0.0], [0.0, 0.2]]])
    vals, right, left = decompose(jordan)
    np.testing.assert_allclose(vals[0], [0.9, 0.9], atol=1e-6)
    np.testing.assert_allclose(np.abs(vals[1]), [0.5, 0.2])
    assert np.isfinite(left).all()
    np.testing.assert_allclose(left[1] @ right[1], np.eye(2), atol=1e-12)


def test_decompose_is_right_on_two_threads():
    """Regression: torch 2.13's batched CPU LU returns invalid pivots for N >= 256 on several
    threads; the left eigenvectors must still satisfy L R = I there."""
    from zoo.analysis.fixed_points import decompose

    jac = np.random.default_rng(0).standard_normal((4, 256, 256)) / 16
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vals, right, left = decompose(jac)
    finally:
        torch.set_num_threads(threads)
    for k in range(len(jac)):
        np.testing.assert_allclose(left[k] @ right[k], np.eye(256), atol=1e-9)
        np.testing.assert_allclose(left[k] @ jac[k] @ right[k], np.diag(vals[k]), atol=1e-9)
