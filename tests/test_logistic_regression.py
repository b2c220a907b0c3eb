"""Bayesian logistic regression on the breast-cancer data: the registered estimators run on it
unchanged and are unbiased (the measure-valued one through its Independent Normal rule), the
closed-form entropy, the held-out predictive log-likelihood, checks."""
from __future__ import annotations

import functools
import math

import pytest
import torch

import vitools as vt
from vitools.models.logistic_regression import BayesianLogisticRegression

DATA = vt.data.load_breast_cancer(dtype=torch.float64, device="cpu")
SMALL = BayesianLogisticRegression(DATA.x_train[:40, :4], DATA.y_train[:40])        # D = 5
THETA = torch.cat([torch.tensor([0.3, -0.5, 0.2, 0.1, 0.4]), torch.full((5,), -0.7)]).double()


@functools.lru_cache(maxsize=2)
def _cached_reference(seed=11):
    g = vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), SMALL, THETA, n=200, k=10_000, seed=seed)
    return g.mean(0), g.std(0) / math.sqrt(len(g))


def _reference(problem, theta, seed=11):
    """The gradient of E_q[f] by pathwise with 2,000,000 draws, and its standard error."""
    if problem is SMALL and torch.equal(theta, THETA):
        return _cached_reference(seed)
    g = vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), problem, theta, n=200, k=10_000, seed=seed)
    return g.mean(0), g.std(0) / math.sqrt(len(g))


def _z(g, problem, theta):
    reference, se_ref = _reference(problem, theta)
    return (g.mean(0) - reference) / (g.var(0) / len(g) + se_ref**2).sqrt()


def _exact_grad(problem, theta):
    return _reference(problem, theta)[0]


@pytest.mark.parametrize("name, options", [("pathwise", {}), ("score_function", {}),
                                           ("score_function", {"baseline": "leave_one_out"}),
                                           ("measure_valued", {})])
def test_registered_estimators_run_unchanged_and_agree(name, options):
    est = vt.estimators.get(name, **options)
    assert est.applies_to(SMALL)
    g = vt.diagnostics.grad_samples(est, SMALL, THETA, n=20_000, k=4, seed=0)
    assert (_z(g, SMALL, THETA).abs() < 4).all(), name


def test_measure_valued_vector_rule_has_power():
    """Dropping the 1/sigma scale of the sigma weak derivative is caught by the same comparison."""
    est = vt.estimators.get("measure_valued")
    g = vt.diagnostics.grad_samples(est, SMALL, THETA, n=20_000, k=4, seed=1)
    reference = _exact_grad(SMALL, THETA)
    sigma = THETA[5:].exp()
    wrong = g.clone()
    wrong[:, 5:] = g[:, 5:] * sigma                        # d/dlog sigma -> missing a sigma factor
    se = g.std(0) / math.sqrt(len(g))
    assert (((wrong.mean(0) - reference) / se)[5:].abs() > 10).any()


def test_measure_valued_matches_a_closed_form_on_a_gaussian_quadratic():
    class Quadratic(vt.problems.Problem):
        def distribution(self, theta):
            return torch.distributions.Independent(torch.distributions.Normal(theta[..., :3], theta[..., 3:]), 1)

        def cost(self, z):
            return ((z - torch.tensor([1.0, -2.0, 0.5], dtype=z.dtype)) ** 2 * torch.tensor([1.0, 2.0, 3.0],
                                                                                              dtype=z.dtype)).sum(-1)

        def exact_value(self, theta):
            c, a = torch.tensor([1.0, -2.0, 0.5], dtype=theta.dtype), torch.tensor([1.0, 2.0, 3.0], dtype=theta.dtype)
            return (a * ((theta[..., :3] - c) ** 2 + theta[..., 3:] ** 2)).sum(-1)

    problem = Quadratic(torch.tensor([0.2, 0.1, -0.3, 0.8, 1.2, 0.5], dtype=torch.float64))
    theta = problem.init_params().detach()
    g = vt.diagnostics.grad_samples(vt.estimators.get("measure_valued"), problem, theta, n=20_000, k=2, seed=2)
    z = (g.mean(0) - problem.exact_grad(theta)) / (g.std(0) / math.sqrt(len(g)))
    assert (z.abs() < 4).all()


def test_entropy_negative_elbo_and_heldout_likelihood():
    problem = BayesianLogisticRegression(DATA.x_train, DATA.y_train)
    assert problem.dim == 31 and problem.init_params().shape == (62,)
    theta = problem.init_params()
    assert torch.allclose(problem.entropy(theta), problem.distribution(theta).entropy())
    loss = problem.negative_elbo(vt.estimators.get("pathwise"), theta, k=4)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(theta.grad).all()
    # at the prior mean every test label has probability 1/2 under a tight posterior
    ll = problem.heldout_log_likelihood(torch.cat([torch.zeros(31), torch.full((31,), -8.0)]).double(),
                                        DATA.x_test, DATA.y_test, samples=10)
    assert abs(ll + math.log(2)) < 1e-3


def test_checks():
    with pytest.raises(ValueError, match="y"):
        BayesianLogisticRegression(DATA.x_train[:5], torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="y"):
        BayesianLogisticRegression(DATA.x_train[:5], DATA.y_train[:4])
    with pytest.raises(ValueError, match="x"):
        BayesianLogisticRegression(DATA.x_train[0], DATA.y_train[:1])
    with pytest.raises(ValueError, match="prior_scale"):
        BayesianLogisticRegression(DATA.x_train[:5], DATA.y_train[:5], prior_scale=0.0)
    with pytest.raises(ValueError, match="samples"):
        SMALL.heldout_log_likelihood(THETA, DATA.x_test[:, :4], DATA.y_test, samples=0)
    with pytest.raises(ValueError, match="x"):
        SMALL.heldout_log_likelihood(THETA, DATA.x_test, DATA.y_test)


@pytest.mark.parametrize("base", ["pathwise", "score_function", "measure_valued"])
def test_delta_method_is_unbiased_and_reduces_variance(base):
    est = vt.estimators.get("delta_method", base=base)
    assert est.applies_to(SMALL)
    g = vt.diagnostics.grad_samples(est, SMALL, THETA, n=20_000, k=4, seed=3)
    assert (_z(g, SMALL, THETA).abs() < 4).all()
    plain = vt.diagnostics.grad_samples(vt.estimators.get(base), SMALL, THETA, n=20_000, k=4, seed=4)
    assert g.var(0).sum() < 0.5 * plain.var(0).sum()
    # power: forgetting the sigma term of E[h] biases the log-sigma gradients by many standard errors
    sigma2 = (2 * THETA[5:]).exp()
    hess = torch.func.hessian(SMALL.cost)(THETA[:5])
    wrong = g.clone()
    wrong[:, 5:] -= torch.diagonal(hess) * sigma2                   # d/dlog sigma of 1/2 H_dd sigma_d^2
    assert (_z(wrong, SMALL, THETA)[5:].abs() > 10).any()


def test_delta_method_on_scalar_gaussians_matches_closed_forms():
    problem = vt.problems.GaussianCos(k=1.0, mu=0.5, sigma=0.7)
    theta = problem.init_params().detach()
    for base in ("pathwise", "score_function", "measure_valued"):
        g = vt.diagnostics.grad_samples(vt.estimators.get("delta_method", base=base), problem, theta, n=20_000, k=2,
                                        seed=5)
        z = (g.mean(0) - problem.exact_grad(theta)) / (g.std(0) / math.sqrt(len(g)))
        assert (z.abs() < 4).all(), base
    assert "Gaussian latents" in vt.estimators.get("delta_method").why_not(vt.problems.BernoulliQuadratic())
