"""Mean-field theory (analysis/mean_field.py) against closed forms, scipy quadrature and PAPERS.md §4."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from zoo.analysis import mean_field as mf

F64 = torch.float64


# --- erf: closed forms (Williams 1997) as oracles ------------------------------------------------
def _erf_Q(q, sw, sb):
    return sw * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q)) + sb


def _erf_oracle(sw, sb):
    q = optimize.brentq(lambda x: _erf_Q(x, sw, sb) - x, 1e-12, 1e3, xtol=1e-15)
    chi1 = sw * (4 / math.pi) / math.sqrt(1 + 4 * q)
    chi2 = sw * (16 / math.pi) * q / (1 + 4 * q) ** 1.5
    slope = sw * (4 / math.pi) / ((1 + 2 * q) * math.sqrt(1 + 4 * q))
    if chi1 > 1:
        C = lambda c: (sw * (2 / math.pi) * math.asin(2 * q * c / (1 + 2 * q)) + sb) / q  # noqa: E731
        c = optimize.brentq(lambda x: C(x) - x, 0.0, 1 - 1e-9, xtol=1e-15) if sb > 0 else 0.0
    else:
        c = 1.0
    chic = sw * (4 / math.pi) / math.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)
    return dict(q_star=q, chi_1=chi1, chi_2=chi2, slope_q=slope, c_star=c, chi_c=chic)


ERF_POINTS = [(0.5, 0.1), (1.5, 0.05), (3.0, 0.2), (9.0, 0.5), (2.0, 0.0)]


def test_erf_fixed_points_match_closed_forms():
    sw = torch.tensor([p[0] for p in ERF_POINTS], dtype=F64)
    sb = torch.tensor([p[1] for p in ERF_POINTS], dtype=F64)
    fp = mf.fixed_point(sw, sb, "erf")
    for i, (a, b) in enumerate(ERF_POINTS):
        oracle = _erf_oracle(a, b)
        for key, value in oracle.items():
            got = float(getattr(fp, key)[i])
            assert got == pytest.approx(value, rel=1e-9, abs=1e-11), (key, a, b)
        assert float(fp.xi_c[i]) == pytest.approx(-1 / math.log(oracle["chi_c"]), rel=1e-8)


def test_erf_correlation_map_matches_closed_form():
    q, sw, sb = 1.3, 3.0, 0.2
    c = torch.tensor([-0.9, -0.5, 0.0, 0.3, 0.9, 0.999, 1.0], dtype=F64)
    got = mf.correlation_map(c, q, sw, sb, "erf")
    q1 = _erf_Q(q, sw, sb)
    want = [(sw * (2 / math.pi) * math.asin(2 * q * x / (1 + 2 * q)) + sb) / q1 for x in c.tolist()]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_erf_critical_line_matches_closed_form():
    sb = np.array([0.0, 0.1, 0.5, 1.0])
    got = mf.critical_sigma_w2(sb, "erf").numpy()
    want = []
    for b in sb:  # on the boundary sigma_w2 = (pi/4) sqrt(1 + 4q), q = Q(q)
        g = lambda q, b=b: q - _erf_Q(q, math.pi / 4 * math.sqrt(1 + 4 * q), 0.0) - b  # noqa: E731
        q = optimize.brentq(g, 0.0, 100.0, xtol=1e-15) if b > 0 else 0.0
        want.append(math.pi / 4 * math.sqrt(1 + 4 * q))
    np.testing.assert_allclose(got, want, rtol=1e-9)


# --- piecewise-linear closed forms --------------------------------------------------------------
def test_relu_and_linear_closed_forms():
    fp = mf.fixed_point(torch.tensor([0.5, 1.5, 1.99], dtype=F64), 0.1, "relu")
    sw = np.array([0.5, 1.5, 1.99])
    np.testing.assert_allclose(fp.q_star.numpy(), 0.1 / (1 - sw / 2), rtol=1e-10)
    np.testing.assert_allclose(fp.chi_1.numpy(), sw / 2, rtol=1e-10)
    assert torch.all(fp.c_star == 1) and torch.all(fp.chi_2 == 0)
    above = mf.fixed_point(2.5, 0.1, "relu")  # no finite fixed point: the length map diverges
    assert math.isinf(float(above.q_star)) and math.isnan(float(above.chi_1))
    lin = mf.fixed_point(0.5, 0.3, "linear")
    assert float(lin.q_star) == pytest.approx(0.6, rel=1e-12) and float(lin.chi_1) == pytest.approx(0.5, rel=1e-12)
    assert float(mf.critical_sigma_w2(0.0, "relu")) == pytest.approx(2.0, rel=1e-10)
    assert math.isnan(float(mf.critical_sigma_w2(0.1, "relu")))  # ReLU with bias: always ordered


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    q, sw, sb = 2.0, 1.7, 0.1
    c = torch.tensor([-1.0, -0.6, 0.0, 0.3, 0.9, 1.0], dtype=F64)
    theta = torch.arccos(c)
    k = q * (torch.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)  # Cho & Saul arc-cosine kernel, n = 1
    want = (sw * k + sb) / (sw * q / 2 + sb)
    np.testing.assert_allclose(mf.correlation_map(c, q, sw, sb, "relu").numpy(), want.numpy(), atol=1e-12)


@pytest.mark.parametrize("q", [0.05, 0.7, 4.0, 60.0])
def test_hard_tanh_closed_forms(q):
    a = 1 / math.sqrt(q)
    V = q * ((2 * stats.norm.cdf(a) - 1) - 2 * a * stats.norm.pdf(a)) + 2 * stats.norm.sf(a)
    assert float(mf.length_map(q, 2.0, 0.1, "hard-tanh")) == pytest.approx(2 * V + 0.1, rel=1e-12)
    assert float(mf.chi_1(q, 2.0, "hard-tanh")) == pytest.approx(2 * (2 * stats.norm.cdf(a) - 1), rel=1e-12)


# --- tanh: PAPERS.md §4 regression values -------------------------------------------------------
def test_tanh_paper_values():
    fp = mf.fixed_point(torch.tensor([16.0, 6.25, 1.69], dtype=F64), 0.09, "tanh")
    q, c1, c2 = fp.q_star.numpy(), fp.chi_1.numpy(), fp.chi_2.numpy()
    np.testing.assert_allclose(q, [12.604, 4.079, 0.607], atol=6e-4)
    np.testing.assert_allclose(c1, [2.367, 1.585, 0.940], atol=6e-4)
    assert c2[0] == pytest.approx(1.857, abs=6e-4)
    assert math.sqrt(c1[0]) == pytest.approx(1.5386, abs=6e-5)
    assert math.sqrt(c1[1]) == pytest.approx(1.259, abs=6e-4)
    assert 3 * c2[0] / (c1[0] * (c1[0] - 1)) == pytest.approx(1.72, abs=6e-3)
    assert fp.chaotic.tolist() == [True, True, False]
    np.testing.assert_allclose(mf.critical_sigma_w2([0.05, 0.3], "tanh").numpy(), [1.761, 2.505], atol=6e-4)


def test_tanh_matches_adaptive_quadrature_at_large_q():
    """The uniform-grid rule against scipy's adaptive quad where Gauss-Hermite fails (PAPERS.md)."""
    q, sw = 12.604, 16.0
    pdf = stats.norm.pdf
    ref1 = sw * integrate.quad(lambda z: pdf(z) * (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2, -12, 12,
                               epsabs=1e-14, epsrel=1e-13, limit=400, points=[0.0])[0]
    assert float(mf.chi_1(q, sw, "tanh")) == pytest.approx(ref1, rel=1e-10)
    z, w = np.polynomial.hermite_e.hermegauss(50)
    gh = sw * np.sum(w * (1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2) / math.sqrt(2 * math.pi)
    assert abs(gh / ref1 - 1) > 0.01  # why the module does not use low-order Gauss-Hermite
    for big in (200.0, 400.0):
        ref = integrate.quad(lambda z, big=big: pdf(z) * math.tanh(math.sqrt(big) * z) ** 2, -12, 12, epsabs=1e-14,
                             limit=400, points=[0.0])[0]
        assert float(mf.length_map(big, 1.0, 0.0, "tanh")) == pytest.approx(ref, rel=1e-9)


def test_mehler_c_star_is_a_fixed_point_of_the_direct_correlation_map():
    fp = mf.fixed_point(torch.tensor([16.0, 6.25, 3.0], dtype=F64), torch.tensor([0.09, 0.09, 0.3], dtype=F64), "tanh")
    again = mf.correlation_map(fp.c_star, fp.q_star, fp.sigma_w2, fp.sigma_b2, "tanh")
    np.testing.assert_allclose(again.numpy(), fp.c_star.numpy(), atol=1e-9)
    # chi_c is the slope of the correlation map at c*
    eps = 1e-5
    slope = (mf.correlation_map(fp.c_star + eps, fp.q_star, fp.sigma_w2, fp.sigma_b2, "tanh")
             - mf.correlation_map(fp.c_star - eps, fp.q_star, fp.sigma_w2, fp.sigma_b2, "tanh")) / (2 * eps)
    np.testing.assert_allclose(slope.numpy(), fp.chi_c.numpy(), rtol=1e-6)


def test_user_callable_matches_named_tanh():
    named = mf.fixed_point(torch.tensor([16.0, 1.69], dtype=F64), 0.09, "tanh")
    custom = mf.fixed_point(torch.tensor([16.0, 1.69], dtype=F64), 0.09, lambda h: torch.tanh(h))
    for key in ("q_star", "chi_1", "chi_2", "c_star", "chi_c", "slope_q"):
        np.testing.assert_allclose(getattr(custom, key).numpy(), getattr(named, key).numpy(), rtol=1e-12)


def test_tanh_without_bias_has_the_classical_transition():
    fp = mf.fixed_point(torch.tensor([0.5, 1.5, 4.0], dtype=F64), 0.0, "tanh")
    assert fp.q_star[0] == 0 and fp.q_star[1] > 0.2 and fp.c_star[2] == pytest.approx(0.0, abs=1e-12)
    assert float(mf.critical_sigma_w2(0.0, "tanh")) == pytest.approx(1.0, abs=1e-9)


def test_phase_diagram_is_consistent_with_its_boundary():
    sw, sb = torch.linspace(0.5, 4.0, 36, dtype=F64), torch.linspace(0.0, 0.5, 11, dtype=F64)
    pd = mf.phase_diagram(sw, sb, "tanh")
    assert pd.fixed.q_star.shape == (36, 11) and pd.critical_sigma_w2.shape == (11,)
    chaotic = pd.fixed.chi_1 > 1
    boundary = sw[:, None] > pd.critical_sigma_w2[None, :]
    margin = (sw[:, None] - pd.critical_sigma_w2[None, :]).abs() > 1e-6
    assert torch.equal(chaotic[margin], boundary[margin])
    assert torch.all(pd.fixed.c_star[~chaotic] == 1) and torch.all(pd.fixed.c_star[chaotic] < 1)
    assert torch.all(pd.fixed.xi_c > 0)
    # xi_c peaks next to the boundary
    j = 5
    i_peak = int(torch.argmax(pd.fixed.xi_c[:, j]))
    assert abs(float(sw[i_peak] - pd.critical_sigma_w2[j])) < 0.2


# --- bad inputs -----------------------------------------------------------------------------------
def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown nonlinearity 'tanhh'.*tanh"):
        mf.fixed_point(1.0, 0.1, "tanhh")
    with pytest.raises(ValueError, match="NaN"):
        mf.fixed_point(float("nan"), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        mf.length_map(1.0, -1.0, 0.1)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        mf.correlation_map(1.5, 1.0, 2.0, 0.1)
    with pytest.raises(ValueError, match="odd"):
        mf.length_map(1.0, 1.0, 0.0, n_nodes=1000)
    with pytest.raises(ValueError, match="elementwise"):
        mf.fixed_point(2.0, 0.1, lambda h: h.flip(0))
    with pytest.raises(ValueError, match="shape"):
        mf.fixed_point(2.0, 0.1, lambda h: h.sum())
    with pytest.raises(TypeError):
        mf.get_nonlinearity(3)
    with pytest.raises(ValueError, match="1-D"):
        mf.phase_diagram(torch.ones(2, 2), torch.ones(3))
