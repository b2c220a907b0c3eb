"""Black-box VI (Rao-Blackwellized score function per mean-field factor with its control variate)
on the switching chain: unbiased against enumeration, power checks, variance reduction, checks."""
from __future__ import annotations

import math

import pytest
import torch

import vitools as vt
from vitools.estimators.bbvi import BBVI
from vitools.models.switching_chain import SwitchingChain

PROBLEM = SwitchingChain.example(dim=6, seed=1)
THETA = torch.linspace(-1.0, 1.2, 6, dtype=torch.float64)


def _z(g, exact):
    return (g.mean(0) - exact) / (g.std(0) / math.sqrt(len(g)))


def test_local_cost_is_the_markov_blanket():
    """f_i(z) - f_i(z with bit i flipped) equals the whole cost's change: the other terms cancel."""
    z = torch.bernoulli(torch.full((50, 6), 0.5, dtype=torch.float64))
    for i in range(6):
        flipped = z.clone()
        flipped[:, i] = 1 - flipped[:, i]
        change = PROBLEM.cost(z) - PROBLEM.cost(flipped)
        local = PROBLEM.local_cost(z)[:, i] - PROBLEM.local_cost(flipped)[:, i]
        assert torch.allclose(change, local)
    states = vt.problems.enumerate_states(6).double()
    assert abs(float(torch.logsumexp(PROBLEM.log_joint(states), 0)) - PROBLEM.log_evidence()) < 1e-12


@pytest.mark.parametrize("options", [{}, {"control_variate": "none"}, {"control_variate": "running"},
                                     {"rao_blackwellize": False}])
def test_unbiased_against_enumeration(options):
    est = BBVI(**options)
    if options.get("control_variate") == "running":
        est.train()
        for _ in range(20):
            est(PROBLEM.at(THETA.expand(64, 6)), 4)
    g = vt.diagnostics.grad_samples(est, PROBLEM, THETA, n=40_000, k=4, seed=0)
    assert (_z(g, PROBLEM.exact_grad(THETA)).abs() < 4).all()


def test_score_entropy_estimates_the_negative_elbo_gradient():
    est = BBVI(score_entropy=True)
    g = vt.diagnostics.grad_samples(est, PROBLEM, THETA, n=40_000, k=4, seed=1)
    leaf = THETA.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(PROBLEM.exact_value(leaf) - PROBLEM.entropy(leaf), leaf)
    assert (_z(g, exact).abs() < 4).all()
    assert (_z(g, PROBLEM.exact_grad(THETA)).abs() > 10).any()       # power: forgetting the entropy


def test_a_wrong_blanket_is_caught():
    """Power check: a blanket that drops log p(z_{i+1} | z_i) is biased by many standard errors."""
    class Wrong(SwitchingChain):
        def local_cost(self, z):
            emission, transition, first = self._terms(z)
            blanket = emission.clone()
            blanket[..., 1:] += transition
            blanket[..., 0] += first
            return -blanket

    wrong = Wrong(PROBLEM.x)
    g = vt.diagnostics.grad_samples(BBVI(), wrong, THETA, n=40_000, k=4, seed=2)
    assert (_z(g, wrong.exact_grad(THETA)).abs() > 10).any()


def test_rao_blackwellization_and_the_control_variate_reduce_variance():
    def var(**options):
        return vt.diagnostics.grad_samples(BBVI(**options), PROBLEM, THETA, n=20_000, k=4, seed=3).var(0).sum()

    plain = var(rao_blackwellize=False, control_variate="none")
    rb = var(control_variate="none")
    rb_cv = var()
    assert rb < 0.5 * plain and rb_cv < 0.7 * rb


def test_applicability_and_options():
    est = BBVI()
    assert est.applies_to(PROBLEM)
    table = vt.problems.FactorisedBernoulli(torch.arange(8.0))       # no local_cost: whole-cost blankets
    assert est.applies_to(table)
    theta = torch.tensor([0.3, -0.2, 0.5])
    g = vt.diagnostics.grad_samples(est, table, theta, n=20_000, k=4, seed=5)
    assert (_z(g, table.exact_grad(theta)).abs() < 4).all()
    assert "mean-field" in est.why_not(vt.problems.GaussianQuadratic())
    assert est.min_samples == 2 and BBVI(control_variate="none").min_samples == 1
    with pytest.raises(ValueError, match="control_variate"):
        BBVI(control_variate="delta")
    with pytest.raises(ValueError, match="k"):
        est(PROBLEM, THETA, 1)


def test_switching_chain_checks():
    with pytest.raises(ValueError, match="stay"):
        SwitchingChain([0.0, 1.0], stay=1.0)
    with pytest.raises(ValueError, match="noise"):
        SwitchingChain([0.0, 1.0], noise=0.0)
    with pytest.raises(ValueError, match="x"):
        SwitchingChain([0.0])
    with pytest.raises(ValueError, match="theta"):
        PROBLEM.distribution(torch.zeros(5))
    with pytest.raises(ValueError, match="x"):
        SwitchingChain(torch.zeros(13)).log_evidence()
    assert SwitchingChain(torch.zeros(13)).exact_value(torch.zeros(13)) is None
