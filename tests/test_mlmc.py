"""MLMC reparameterized gradients over recycled past parameters: unbiased at the current
parameters whatever the history, coupled differences of small variance, the sample-size
allocation, equal-cost comparison with plain Monte Carlo, checks."""
from __future__ import annotations

import math

import pytest
import torch

import vitools as vt
from vitools.estimators.mlmc import MLMC

PROBLEM = vt.problems.GaussianCos(k=1.5, mu=0.4, sigma=0.8)
THETA = torch.tensor([0.4, 0.8], dtype=torch.float64)
PAST = [THETA + torch.tensor([0.3 - 0.1 * i, 0.1 - 0.03 * i], dtype=torch.float64) for i in range(3)]


def _with_history(est, past=PAST, k=4):
    est.train()
    for lam in past:
        est(PROBLEM.at(lam.clone().requires_grad_(True)), k)
    return est.eval()


def test_unbiased_at_the_current_parameters_whatever_the_history():
    est = _with_history(MLMC(levels=3))
    assert len(est._history(PROBLEM.at(THETA)).past) == 3
    g = vt.diagnostics.grad_samples(est, PROBLEM, THETA, n=40_000, k=4, seed=0)
    exact = PROBLEM.exact_grad(THETA)
    se = g.std(0) / math.sqrt(len(g))
    assert (((g.mean(0) - exact) / se).abs() < 4).all()
    # power: the gradient at the oldest recycled parameters is far away in these units
    wrong = PROBLEM.exact_grad(PAST[0])
    assert (((g.mean(0) - wrong) / se).abs() > 20).any()


def test_dropping_the_top_level_is_caught():
    """A variant that stops one level short estimates the gradient at lambda_{t-1}: biased."""
    est = _with_history(MLMC(levels=3), PAST + [THETA + 0.2])      # history ends at theta + 0.2
    hist = est._history(PROBLEM.at(THETA))
    g = vt.diagnostics.grad_samples(est, PROBLEM, THETA + 0.2, n=20_000, k=4, seed=1)
    se = g.std(0) / math.sqrt(len(g))
    assert (((g.mean(0) - PROBLEM.exact_grad(THETA + 0.2)) / se).abs() < 4).all()
    assert (((g.mean(0) - PROBLEM.exact_grad(THETA)) / se).abs() > 20).any()
    assert torch.allclose(hist.past[-1], THETA + 0.2)


def test_coupled_differences_have_small_variance_and_sizes_follow_them():
    near = [THETA + 0.01 * (3 - i) for i in range(3)]
    est = _with_history(MLMC(levels=3), near, k=64)
    hist = est._history(PROBLEM.at(THETA))
    assert (hist.variance[1:3] < 1e-2 * hist.variance[0]).all()       # steps of 0.01: V_l ~ 1e-4 V_0
    sizes = est.sample_sizes(PROBLEM.at(THETA), 64)
    # levels 1, 2 have statistics (the top level, new this call, has none yet: N_0 draws)
    assert sizes[0] == 64 and all(1 <= n <= 4 for n in sizes[1:3]) and sizes[3] == 64
    assert est.cost(PROBLEM.at(THETA), 64) == 64 + 2 * sum(sizes[1:])
    fixed = _with_history(MLMC(levels=3, adapt=False), near, k=64)
    assert fixed.sample_sizes(PROBLEM.at(THETA), 64) == [64, 64, 64, 64]


def test_at_equal_cost_plain_monte_carlo_has_no_more_variance():
    """Every level costs a gradient per draw, so MLMC's variance sum_l V_l / N_l is above plain Monte
    Carlo's at the current parameters, both with the same N_0 draws and at equal cost."""
    near = [THETA + 0.02 * (3 - i) for i in range(3)]
    est = _with_history(MLMC(levels=3), near, k=32)
    target = PROBLEM.at(THETA)
    cost = est.cost(target, 32)
    g_mlmc = vt.diagnostics.grad_samples(est, PROBLEM, THETA, n=20_000, k=32, seed=2)
    pathwise = vt.estimators.get("pathwise")
    g_same_n0 = vt.diagnostics.grad_samples(pathwise, PROBLEM, THETA, n=20_000, k=32, seed=3)
    g_equal_cost = vt.diagnostics.grad_samples(pathwise, PROBLEM, THETA, n=20_000, k=cost, seed=4)
    v_mlmc, v_n0, v_cost = (g.var(0).sum() for g in (g_mlmc, g_same_n0, g_equal_cost))
    assert cost > 32
    assert v_mlmc > 1.02 * v_cost
    assert v_mlmc > 1.02 * v_n0 and float(v_mlmc / v_n0) < 1.5


def test_no_history_is_plain_monte_carlo_and_eval_changes_nothing():
    est = MLMC().eval()
    theta = THETA.clone().requires_grad_(True)
    out = est(PROBLEM.at(theta), 8)
    assert out.control_loss is None and len(est._history(PROBLEM.at(THETA)).past) == 0
    est.train()
    for _ in range(5):
        est(PROBLEM.at(theta), 8)
    assert len(est._history(PROBLEM.at(THETA)).past) == 3          # keeps the last `levels`


def test_applicability_and_options():
    est = MLMC()
    assert est.applies_to(PROBLEM)
    assert not est.applies_to(vt.problems.BernoulliQuadratic())
    with pytest.raises(ValueError, match="levels"):
        MLMC(levels=0)
    with pytest.raises(ValueError, match="adapt"):
        MLMC(adapt="yes")
