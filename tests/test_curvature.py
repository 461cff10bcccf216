"""Curve propagation (analysis/manifold_propagation.py): exact geometry, analytic oracles, and
width-1000 random tanh networks against mean-field theory (Poole et al. 2016; PAPERS.md §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from zoo.analysis import get_analysis
from zoo.analysis import manifold_propagation as mp
from zoo.analysis import mean_field as mf

F64 = torch.float64


# --- exact geometry on analytic cases -------------------------------------------------------------
def test_circle_geometry_is_exact():
    D, q0, M = 50, 2.5, 64
    p = mp.propagate([lambda h: h], input_shape=(D,), n_angles=M, q0=q0, theory=False)
    R = math.sqrt(D * q0)
    assert p.q[0] == pytest.approx(q0, rel=1e-12)
    assert p.euclidean_length[0] == pytest.approx(2 * math.pi * R, rel=1e-12)
    assert p.kappa2[0] == pytest.approx(1 / q0, rel=1e-12)  # D kappa^2 with kappa = 1/R
    assert p.grassmannian_length[0] == pytest.approx(2 * math.pi, rel=1e-12)
    np.testing.assert_allclose(p.correlation[0], np.cos(p.lags), atol=1e-12)
    np.testing.assert_allclose(p.correlation[1], p.correlation[0], atol=1e-14)


def test_scaling_map_scales_length_and_curvature():
    p = mp.propagate([lambda h: 3.0 * h + 1.0], input_shape=(20,), n_angles=32, q0=1.0, theory=False)
    assert p.euclidean_length[1] / p.euclidean_length[0] == pytest.approx(3.0, rel=1e-12)
    assert p.kappa2[1] / p.kappa2[0] == pytest.approx(1 / 9, rel=1e-12)
    assert p.grassmannian_length[1] == pytest.approx(p.grassmannian_length[0], rel=1e-12)


def test_ellipse_curvature_matches_formula():
    A, B = 3.0, 1.0
    u = torch.zeros(2, 5, dtype=F64)
    u[0, 0], u[1, 1] = A, B
    curve = lambda th: torch.cos(th)[:, None] * u[0] + torch.sin(th)[:, None] * u[1]  # noqa: E731
    M = 200
    theta = torch.arange(M, dtype=F64) * 2 * math.pi / M
    p = mp.propagate([lambda h: h], input_shape=(5,), curve=curve, theta=theta, closed=True, theory=False)
    th = theta.numpy()
    kappa2 = (A * B) ** 2 / (A**2 * np.sin(th) ** 2 + B**2 * np.cos(th) ** 2) ** 3
    assert p.kappa2[0] == pytest.approx(5 * kappa2.mean(), rel=1e-12)
    # Grassmannian length of any convex closed plane curve is 2 pi (total turning); well sampled here
    assert p.grassmannian_length[0] == pytest.approx(2 * math.pi, rel=1e-6)


def test_jet_of_a_tanh_layer_matches_hand_derivatives():
    g = torch.Generator().manual_seed(1)
    W, b = torch.randn(30, 40, generator=g, dtype=F64), torch.randn(30, generator=g, dtype=F64)
    h, v, a = (torch.randn(7, 40, generator=g, dtype=F64) for _ in range(3))
    f = lambda x: torch.tanh(x) @ W.T + b  # noqa: E731
    h1, v1, a1 = mp.propagate_jet(f, h, v, a)
    t = torch.tanh(h)
    d1, d2 = 1 - t * t, -2 * t * (1 - t * t)
    torch.testing.assert_close(h1, t @ W.T + b, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(v1, (d1 * v) @ W.T, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(a1, (d2 * v * v + d1 * a) @ W.T, rtol=1e-13, atol=1e-13)


# --- width-1000 random tanh networks against theory -----------------------------------------------
SIGMA_W = (1.3, 2.5, 4.0)


@pytest.fixture(scope="module")
def simulations():
    """The paper's set-up (tanh, sigma_b = 0.3, width 1000, circle of radius sqrt(N q*) as h^1),
    20 propagated layers at 48 angles (the statistics concentrate over the 1000 units)."""
    out, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: one thread is fastest, and robust on a shared machine
    try:
        for sw in SIGMA_W:
            net = zoo.load("random-net/tanh", sigma_w2=sw**2, sigma_b2=0.09, width=1000, depth=21, seed=0)
            out[sw] = mp.propagate(net, n_angles=48, q0=mp.default_q0(net, 1), start_layer=1)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("sw", SIGMA_W)
def test_length_grows_by_sqrt_chi1(simulations, sw):
    p = simulations[sw]
    chi1 = float(mf.fixed_point(sw**2, 0.09).chi_1)
    growth = p.growth("euclidean", window=(2, len(p.layers) - 1))
    assert growth == pytest.approx(math.sqrt(chi1), rel=0.02)
    # q^l stays at q*: averaged over decorrelated points in chaos; in order all points converge
    # to one, so q^l is a single width-1000 sample (fluctuations ~ sqrt(2/N) = 4.5 %)
    np.testing.assert_allclose(p.q, p.theory["theory_q"], rtol=0.06 if chi1 > 1 else 0.12)
    assert p.q.mean() == pytest.approx(float(mf.fixed_point(sw**2, 0.09).q_star), rel=0.015 if chi1 > 1 else 0.03)


@pytest.mark.parametrize("sw", (2.5, 4.0))
def test_curvature_settles_at_mean_field_value_in_chaos(simulations, sw):
    p = simulations[sw]
    fp = mf.fixed_point(sw**2, 0.09)
    c1, c2 = float(fp.chi_1), float(fp.chi_2)
    target = 3 * c2 / (c1 * (c1 - 1))  # 1.72 at sigma_w = 4 (PAPERS.md)
    settled = p.kappa2[-12:].mean()
    assert settled == pytest.approx(target, rel=0.08)
    assert p.kappa2[0] == pytest.approx(1 / float(fp.q_star), rel=1e-10)  # the circle itself
    # Grassmannian length grows like the Euclidean one once the curvature has settled
    assert p.growth("grassmannian", window=(10, len(p.layers) - 1)) == pytest.approx(math.sqrt(c1), rel=0.03)
    # correlations between points decay to c* and follow the correlation map
    lag = np.searchsorted(p.lags, p.theory["theory_lags"])
    assert np.abs(p.correlation[:, lag] - p.theory["theory_correlation"]).max() < 0.08


def test_ordered_network_contracts_the_circle(simulations):
    """chi_1 < 1: the Euclidean length decays by sqrt(chi_1) per layer and the curve shrinks
    towards a point, so its normalised curvature grows as the recursion predicts (~chi_1^-l; at
    width 1000 it runs ~20 % above the infinite-width line after 24 layers) while the
    Grassmannian length (scale-free) saturates."""
    p = simulations[1.3]
    th = p.theory
    assert p.euclidean_length[-1] < 0.6 * p.euclidean_length[0]
    assert p.kappa2[-1] > 30 * p.kappa2[0]
    np.testing.assert_allclose(p.kappa2, th["theory_kappa2"], rtol=0.3)
    n = len(p.layers) - 1
    late, early = p.growth("grassmannian", window=(n // 2, n)), p.growth("grassmannian", window=(0, n // 2))
    assert late == pytest.approx(1.0, abs=0.03) and late < early
    assert p.correlation[-1, 1:].min() > p.correlation[0, 1:].min()  # points converge (c -> c* = 1)


# --- the registered analyses -----------------------------------------------------------------------
def test_curvature_analysis_runs_on_a_random_net():
    net = zoo.load("random-net/tanh", width=120, depth=6)
    res = get_analysis("curvature")(net, None, n_angles=32)
    s = res.summary
    assert s["n_layers"] == 6 and s["start_layer"] == 0
    assert s["theory_q_star"] == pytest.approx(12.604, abs=1e-3)
    assert res.arrays["kappa2"].shape == (7,) and res.arrays["theory_kappa2"].shape == (7,)
    assert res.arrays["q"][1] == pytest.approx(s["theory_q_star"], rel=0.1)  # q0 puts layer 1 at q*
    assert net.weights.dtype == torch.float32  # the caller's model is not cast


def test_mean_field_analysis_applies_to_random_nets_only():
    a = get_analysis("mean-field")
    net = zoo.load("random-net/tanh", width=10, depth=3)
    s = a(net, None).summary
    assert s["phase"] == "chaotic" and s["q_star"] == pytest.approx(12.604, abs=1e-3)
    assert 1.761 < s["critical_sigma_w2"] < 2.505  # sigma_b2 = 0.09 lies between PAPERS.md's 0.05 and 0.3

    class Plain(torch.nn.Module):
        input_shape = (3,)

        def layer_maps(self):
            return [lambda h: h]

    assert not a.applies_to(Plain()) and get_analysis("curvature").applies_to(Plain())
    with pytest.raises(TypeError, match="MeanFieldNet"):
        a(Plain(), None)


# --- bad inputs ------------------------------------------------------------------------------------
def test_bad_inputs():
    maps = [lambda h: h]
    with pytest.raises(ValueError, match="input_shape"):
        mp.propagate(maps)
    with pytest.raises(TypeError, match="LayeredMap"):
        mp.propagate(object())
    with pytest.raises(ValueError, match="start_layer"):
        mp.propagate(maps, input_shape=(4,), start_layer=3)
    with pytest.raises(ValueError, match="n_angles"):
        mp.propagate(maps, input_shape=(4,), n_angles=2)
    with pytest.raises(ValueError, match="q0"):
        mp.propagate(maps, input_shape=(4,), q0=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        mp.propagate(maps, input_shape=(4,), curve=lambda t: torch.stack([t, t], 1), theta=torch.linspace(0, 1, 8, dtype=F64))
    with pytest.raises(ValueError, match="uniformly"):
        mp.propagate(maps, input_shape=(2,), curve=lambda t: torch.stack([t, t * t], 1),
                      theta=torch.tensor([0.0, 0.1, 0.5, 0.6, 2.0]))
    with pytest.raises(ValueError, match="theta"):
        mp.propagate(maps, input_shape=(2,), curve=lambda t: torch.stack([t, t], 1))
    with pytest.raises(ValueError, match="non-finite"):
        mp.propagate([lambda h: h / 0.0 * 0.0], input_shape=(4,), n_angles=8)
