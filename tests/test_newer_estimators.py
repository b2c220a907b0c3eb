"""Tests for the discrete estimators since REBAR (vitools.estimators.rloo, stein, unordered,
gumbel_rao, reinmax, aimle) and the k-subset problem (vitools.problems_subset).

* unbiased ones (rloo, double_cv, rodeo, unordered_set) agree with exact gradients on toys, an
  enumerable sigmoid belief net and tiny categorical VAEs (|z| < 4), and a wrong variant of each
  (baseline including the sample itself, a missing correction, a wrong Stein operator, normalised
  weights) fails by a wide margin at the same sample size;
* biased ones (gumbel_rao, reinmax, aimle) are flagged, and their bias and MSE against the exact
  gradient are measured: Gumbel-Rao has straight-through's mean and less variance; ReinMax at
  tau = 1 is exact in expectation on independent bits where straight-through is not; AIMLE's
  two-sided perturbation is less biased than I-MLE's one-sided one on the k-subset problem;
* the unordered set estimator is exact when the set is the whole domain; sampling without
  replacement matches its exact set probabilities; AIMLE's beta adapts only in train mode;
* bad options and inputs raise ValueErrors naming them.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import vitools as vt
from vitools import diagnostics as dg
from vitools.estimators import rloo as rloo_module
from vitools.estimators import stein as stein_module
from vitools.estimators import unordered as unordered_module
from vitools.problems_subset import KSubset, SubsetSum, log_set_prob

from test_protocol import _exact_model_grad, _sbn

N = 20_000
Z_MAX = 4.0
UNBIASED = ("rloo", "double_cv", "rodeo", "unordered_set")
BIASED = ("gumbel_rao", "reinmax", "aimle")


def _cat_vae(latents=2, classes=3):
    model = vt.models.CategoricalVAE(input_dim=4, hidden=(8,), num_latents=latents, num_classes=classes,
                                     seed=0).double()
    return model, torch.rand(2, 4, generator=torch.Generator().manual_seed(4)).double()


def _worst_z(samples, exact) -> float:
    if isinstance(samples, dict):
        return max(dg.summarize(samples[p], exact=e).bias_z.abs().max().item() for p, e in exact.items())
    return dg.summarize(samples, exact=exact).bias_z.abs().max().item()


THETA_CAT = torch.tensor([0.8, -0.5, 0.3, -1.2])        # away from the uniform point
THETA_BITS = torch.tensor([1.5, -1.0, 2.0, -2.0])


def _toy_z(est, problem, k, n=N, theta=None):
    theta = problem.init_params().detach() if theta is None else theta
    return _worst_z(dg.grad_samples(est, problem, theta, n=n, k=k, seed=0), problem.exact_grad(theta))


def _model_z(est, build, k, n=N):
    model, x = build()
    exact = _exact_model_grad(model, lambda: (model.exact_elbo(x) if hasattr(model, "exact_elbo")
                                              else model.exact_bounds(x).elbo))
    return _worst_z(dg.grad_samples(est, model.on(x), n=n, k=k, seed=0), exact)


def test_flags_and_registration():
    for name in UNBIASED:
        assert vt.estimators.get(name).unbiased, name
    for name in BIASED:
        assert not vt.estimators.get(name).unbiased, name
    assert set(UNBIASED + BIASED) <= set(vt.estimators.names())


# ---------------------------------------------------------------------- unbiased, with power checks
@pytest.mark.slow
@pytest.mark.parametrize("name,k", [("rloo", 2), ("rloo", 5), ("double_cv", 3), ("rodeo", 3)])
def test_unbiased_on_an_sbn_with_more_samples(name, k):
    assert _model_z(vt.estimators.get(name), _sbn, k) < Z_MAX


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rloo", "double_cv", "unordered_set"])
def test_unbiased_on_a_one_latent_categorical_vae(name):
    assert _model_z(vt.estimators.get(name), lambda: _cat_vae(latents=1, classes=4), k=3) < Z_MAX


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_unordered_set_unbiased_on_the_categorical_toy(k):
    problem = vt.problems.CategoricalCost()
    assert _toy_z(vt.estimators.get("unordered_set"), problem, k) < Z_MAX
    assert _toy_z(vt.estimators.get("unordered_set"), problem, k, theta=THETA_CAT) < Z_MAX


def test_unordered_set_is_exact_when_the_set_is_the_domain():
    problem = vt.problems.CategoricalCost()
    theta = torch.tensor([0.3, -1.0, 0.5, 0.0])
    g = dg.grad_samples(vt.estimators.get("unordered_set"), problem, theta, n=200, k=4, seed=0)
    assert torch.allclose(g, problem.exact_grad(theta).expand_as(g), atol=1e-5)


@pytest.mark.slow
def test_power_rloo_with_its_own_sample_in_the_baseline_fails(monkeypatch):
    monkeypatch.setattr(rloo_module, "loo_mean", lambda x: x.mean(0, keepdim=True).expand_as(x))
    assert _model_z(vt.estimators.get("rloo"), _sbn, k=2) > 2 * Z_MAX


@pytest.mark.slow
def test_power_double_cv_without_its_correction_fails(monkeypatch):
    monkeypatch.setattr(rloo_module, "covariance_times", lambda layer, mean, g: torch.zeros_like(g))
    assert _model_z(vt.estimators.get("double_cv"), _sbn, k=3) > 2 * Z_MAX


def _rodeo_with_a_nonzero_stein_function(problem):
    """RODEO whose network is fixed at a non-zero function (the output layer set by hand), so
    that both Stein controls are large: the check does not rest on what warm_up learned."""
    est = vt.estimators.get("rodeo")
    theta = problem.init_params().detach()
    est.eval()
    est(problem.at(theta), 3)
    with torch.no_grad():
        for net in est.nets(problem.at(theta)).nets:
            net[2].weight.fill_(0.5)
            net[2].bias.fill_(0.3)
    return est, theta


@pytest.mark.slow
@pytest.mark.parametrize("wrong", [False, True])
def test_rodeo_is_unbiased_for_any_stein_function_and_a_wrong_operator_fails(monkeypatch, wrong):
    problem = vt.problems.FactorisedBernoulli.random(4, seed=0)
    est, _ = _rodeo_with_a_nonzero_stein_function(problem)
    theta = THETA_BITS
    if wrong:                                   # the operator of the wrong q: flips weighted 1/2
        real = stein_module.gibbs_stein_terms
        monkeypatch.setattr(stein_module, "gibbs_stein_terms",
                            lambda net, f, df, h, mu: real(net, f, df, h, torch.full_like(mu, 0.5)))
    g = dg.grad_samples(est, problem, theta, n=N, k=3, seed=0, warm_up=False)
    z = _worst_z(g, problem.exact_grad(theta))
    assert (z > 2 * Z_MAX) if wrong else (z < Z_MAX), z


@pytest.mark.slow
def test_power_unordered_set_with_normalised_weights_fails(monkeypatch):
    real = unordered_module._weights

    def normalised(p, f):
        _, baselines = real(p, f)
        return (p / p.sum(-1, keepdim=True)).movedim(-1, 0), baselines
    monkeypatch.setattr(unordered_module, "_weights", normalised)
    assert _toy_z(vt.estimators.get("unordered_set"), vt.problems.CategoricalCost(), k=2, theta=THETA_CAT) > 2 * Z_MAX


@pytest.mark.slow
def test_rodeo_lowers_rloo_variance_on_the_toy():
    problem = vt.problems.FactorisedBernoulli.random(4, seed=0)
    theta = problem.init_params().detach()
    var = {name: dg.grad_samples(vt.estimators.get(name), problem, theta, n=N, k=3, seed=0).var(0).sum().item()
           for name in ("rloo", "rodeo")}
    assert var["rodeo"] < 0.8 * var["rloo"], var


# ---------------------------------------------------------------------- biased: bias and MSE measured
def _bias_mse(est, build, k=1, n=N, prefix="model."):
    """(squared bias, MSE, samples [n, P]) of the model gradient (parameters under ``prefix``)
    against enumeration."""
    model, x = build()
    exact = _exact_model_grad(model, lambda: model.exact_bounds(x).elbo)
    samples = {p: g for p, g in dg.grad_samples(est, model.on(x), n=n, k=k, seed=0).items()
               if p in exact and p.startswith(prefix)}
    g = dg.flat(samples, prefix)
    truth = torch.cat([exact[p].flatten() for p in samples])
    return ((g.mean(0) - truth) ** 2).sum().item(), ((g - truth) ** 2).sum(-1).mean().item(), g


@pytest.mark.slow
@pytest.mark.parametrize("name", BIASED)
def test_biased_estimators_have_a_resolvable_bias_on_the_categorical_vae(name):
    assert _model_z(vt.estimators.get(name), _cat_vae, k=1) > 2 * Z_MAX
    bias2, mse, g = _bias_mse(vt.estimators.get(name), _cat_vae)
    assert math.isfinite(mse) and 0 < bias2 < mse


@pytest.mark.slow
def test_gumbel_rao_has_straight_through_mean_and_less_variance():
    est_st = vt.estimators.get("straight_through", temperature=0.5)
    est_gr = vt.estimators.get("gumbel_rao", temperature=0.5, samples=20)
    _, mse_st, g_st = _bias_mse(est_st, _cat_vae, prefix="model.encoder")     # the decoder's is pathwise
    _, mse_gr, g_gr = _bias_mse(est_gr, _cat_vae, prefix="model.encoder")
    assert dg.two_sample_z(g_gr, g_st).abs().max().item() < Z_MAX       # the same expected gradient
    assert g_gr.var(0).sum() < 0.8 * g_st.var(0).sum()                    # Rao-Blackwell
    assert mse_gr < mse_st


@pytest.mark.slow
def test_reinmax_is_exact_in_expectation_on_independent_bits_where_straight_through_is_not():
    problem = vt.problems.FactorisedBernoulli.random(4, seed=0)
    assert _toy_z(vt.estimators.get("reinmax", temperature=1.0), problem, k=1) < Z_MAX
    assert _toy_z(vt.estimators.get("straight_through", temperature=1.0), problem, k=1) > 2 * Z_MAX


@pytest.mark.slow
def test_aimle_two_sided_is_less_biased_than_imle_on_the_subset_problem():
    problem = SubsetSum(n=6, k=2)
    theta = problem.init_params().detach()
    exact = problem.exact_grad(theta)
    bias2 = {}
    for label, options in {"aimle": {}, "imle": dict(adaptive=False, symmetric=False)}.items():
        g = dg.grad_samples(vt.estimators.get("aimle", **options), problem, theta, n=N, k=1, seed=0)
        bias2[label] = ((g.mean(0) - exact) ** 2).sum().item()
        if label == "imle":
            assert _worst_z(g, exact) > 2 * Z_MAX
    assert bias2["aimle"] < 0.25 * bias2["imle"], bias2


def test_aimle_adapts_beta_in_train_mode_only():
    problem = SubsetSum(n=6, k=2)
    theta = problem.init_params()
    est = vt.estimators.get("aimle", step=0.1)
    est.eval()
    est(problem.at(theta), 4).surrogate.sum().backward()
    state = est.adaptation(problem.at(theta))
    assert state.beta.item() == 1.0 and state.nonzero.item() < 0
    est.train()
    est(problem.at(theta), 4).surrogate.sum().backward()
    assert state.nonzero.item() >= 0 and state.beta.item() != 1.0


def test_imle_is_its_non_adaptive_setting():
    assert vt.estimators.get("aimle", adaptive=False, symmetric=False).label == "I-MLE"
    assert vt.estimators.get("aimle").label == "AIMLE"


# ---------------------------------------------------------------------- sampling without replacement
def test_set_probabilities_sum_to_one_and_match_gumbel_top_k():
    logits = torch.tensor([0.5, -0.3, 1.2, 0.0, -1.0], dtype=torch.float64)
    dist = KSubset(logits, 2)
    support = dist.enumerate_support()
    probs = dist.log_prob(support).exp()
    assert torch.allclose(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.manual_seed(0)
    draws = dist.sample((40_000,))
    freq = (draws[:, None, :] == support[None]).all(-1).double().mean(0)
    se = (probs * (1 - probs) / 40_000).sqrt()
    assert ((freq - probs).abs() / se).max() < Z_MAX
    # the same probabilities by the brute-force sequential process
    p = torch.softmax(logits, -1)
    for row, prob in zip(support, probs):
        a, b = row.nonzero().flatten().tolist()
        brute = p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])
        assert torch.isclose(prob, brute)


def test_log_set_prob_of_a_reduced_domain():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    mass = 1 - p[0]
    total = sum(log_set_prob(p[list(s)], mass).exp() for s in itertools.combinations(range(1, 4), 2))
    assert torch.isclose(total, torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("probs,mass,name", [
    ([0.2, math.nan], 1.0, "probs"), ([-0.2, 0.3], 1.0, "probs"), ([0.0, 0.3], 1.0, "probs"),
    ([0.2, 0.3], math.nan, "mass"), ([0.2, 0.3], 0.0, "mass"), ([0.2, 0.3], 1e300, "mass"),
    ([0.2, 0.3], 0.4, "mass"), ([1, 0], 1.0, "probs")])
def test_log_set_prob_refuses_bad_input_by_name(probs, mass, name):
    dtype = torch.int64 if isinstance(probs[0], int) else torch.float64
    with pytest.raises(ValueError, match=name):
        log_set_prob(torch.tensor(probs, dtype=dtype), mass)


# ---------------------------------------------------------------------- applicability, bad input
def test_where_unordered_set_and_rodeo_apply():
    est = vt.estimators.get("unordered_set")
    assert est.applies_to(vt.problems.CategoricalCost())
    assert est.applies_to(_cat_vae(latents=1)[0].on(_cat_vae(latents=1)[1]))
    assert "beam search" in est.why_not(_cat_vae(latents=2)[0].example_target())
    assert "Bernoulli" in est.why_not(vt.problems.FactorisedBernoulli.random(3, seed=0))
    assert "stack" in est.why_not(_sbn()[0].example_target())
    rodeo = vt.estimators.get("rodeo")
    assert "categorical" in rodeo.why_not(_cat_vae()[0].example_target())
    assert rodeo.applies_to(_sbn()[0].example_target())
    aimle = vt.estimators.get("aimle")
    assert aimle.applies_to(SubsetSum()) and not vt.estimators.get("rloo").applies_to(SubsetSum())


def test_bad_inputs_raise_value_errors_naming_them():
    problem = vt.problems.CategoricalCost()
    with pytest.raises(ValueError, match="k must be at most the number of classes"):
        vt.estimators.get("unordered_set")(problem.at(problem.init_params()), 5)
    for name in ("rloo", "double_cv", "rodeo", "unordered_set"):
        with pytest.raises(ValueError, match="k"):
            vt.estimators.get(name)(problem.at(problem.init_params()), 1)
    with pytest.raises(ValueError, match="k must be < n"):
        KSubset(torch.zeros(3), 3)
    with pytest.raises(ValueError, match="k must be < n"):
        SubsetSum(n=3, k=3)
    with pytest.raises(ValueError, match="weights"):
        SubsetSum(n=4, k=2, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="samples"):
        vt.estimators.get("gumbel_rao", samples=0)
    with pytest.raises(ValueError, match="temperature"):
        vt.estimators.get("reinmax", temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        vt.estimators.get("aimle", beta=-1.0)
