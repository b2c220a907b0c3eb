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
    # the measured variance is sum_l V_l / N_l with the level variances measured apart
    sizes = est.sample_sizes(target, 32)
    v_levels = vt.estimators.mlmc.level_variances(PROBLEM, near + [THETA], 20_000, seed=5)
    assert float(v_mlmc) == pytest.approx(sum(v / n for v, n in zip(v_levels, sizes)), rel=0.1)
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


def test_equal_cost_ratio_is_the_variance_of_the_optimal_allocation():
    from vitools.estimators.mlmc import equal_cost_ratio
    v, c, plain, plain_cost, budget = [2.0, 0.3, 0.05], [1.0, 3.0, 6.0], 1.5, 4.0, 1000.0
    # brute force over continuous allocations on the budget: N_2 fixed by the others
    best = math.inf
    for n0 in torch.linspace(1, budget, 400).tolist():
        for n1 in torch.linspace(1, budget / 3, 400).tolist():
            n2 = (budget - n0 - 3 * n1) / 6
            if n2 > 0:
                best = min(best, v[0] / n0 + v[1] / n1 + v[2] / n2)
    ratio = equal_cost_ratio(v, c, plain, plain_cost)
    assert ratio == pytest.approx(best / (plain / (budget / plain_cost)), rel=2e-3)
    assert ratio >= v[0] * c[0] / (plain * plain_cost)                    # never below the first level's share
    assert equal_cost_ratio([plain], [plain_cost], plain, plain_cost) == pytest.approx(1.0)
    for kwargs, match in ((dict(variances=[1.0], costs=[1.0, 2.0]), "costs"), (dict(variances=[-1.0], costs=[1.0]), "variances"),
                          (dict(variances=[1.0], costs=[0.0]), "costs"), (dict(variances=[1.0], costs=[1.0], plain_variance=0.0), "plain_variance"),
                          (dict(variances=[1.0], costs=[1.0], plain_cost=-1.0), "plain_cost")):
        with pytest.raises(ValueError, match=match):
            equal_cost_ratio(**{"plain_variance": 1.0, **kwargs})


def test_mlmc_gains_on_a_hierarchy_whose_variances_decay_faster_than_costs_grow():
    """The quadrature hierarchy: V_l ~ 16^-l, C_l ~ 2^l. The MLMC estimate is unbiased for the finest
    level's mean and its variance at equal cost is what equal_cost_ratio predicts, far below 1;
    on recycled parameters (equal costs, V_0 ~ V) the same formula is above 1."""
    from vitools.estimators.mlmc import equal_cost_ratio, multilevel_mean, quadrature_level_grad as grad
    top = 4
    torch.manual_seed(0)
    eps = torch.randn(100_000, dtype=torch.float64)
    v = [float(grad(eps, 0).var())] + [float((grad(eps, l) - grad(eps, l - 1)).var()) for l in range(1, top + 1)]
    c = [1] + [2 ** l + 2 ** (l - 1) for l in range(1, top + 1)]
    v_top = float(grad(eps, top).var())
    assert all(v[l + 1] < v[l] / 8 for l in range(1, top))                 # decays ~16x per level
    predicted = equal_cost_ratio(v, c, v_top, 2 ** top)
    assert predicted < 0.15
    scale = 16 * 400 / sum(math.sqrt(a * b) for a, b in zip(v, c))        # budget: 400 finest-level draws
    sizes = [max(1, math.ceil(scale * math.sqrt(a / b))) for a, b in zip(v, c)]
    cost = sum(n * b for n, b in zip(sizes, c))

    def difference(l, n):
        e = torch.randn(n, dtype=torch.float64)
        return grad(e, 0) if l == 0 else grad(e, l) - grad(e, l - 1)

    reps = 1000
    mlmc = torch.stack([multilevel_mean(difference, sizes) for _ in range(reps)])
    plain = grad(torch.randn(reps, cost // 2 ** top, dtype=torch.float64).flatten(), top).view(reps, -1).mean(1)
    exact = grad(torch.randn(400_000, dtype=torch.float64), top).mean()
    assert abs(float(mlmc.mean() - exact)) < 4 * float(mlmc.std()) / math.sqrt(reps) + 4 * 0.3 / math.sqrt(400_000)
    measured = float(mlmc.var() / plain.var()) * cost / (cost // 2 ** top * 2 ** top)
    assert measured == pytest.approx(predicted, rel=0.25)
    assert measured < 0.2                                                   # MLMC wins by more than 5x
    near = [THETA + 0.02 * (3 - i) for i in range(4)]
    v_rec = vt.estimators.mlmc.level_variances(PROBLEM, near, 4000, seed=0)
    v_now = vt.estimators.mlmc.level_variances(PROBLEM, [THETA], 4000, seed=9)[0]
    assert equal_cost_ratio(v_rec, [1, 2, 2, 2], v_now) > 1.05
    with pytest.raises(ValueError, match="sizes"):
        multilevel_mean(difference, [4, 0])
    with pytest.raises(ValueError, match="level"):
        grad(eps, -1)
