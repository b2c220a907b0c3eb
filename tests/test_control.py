"""REBAR, RELAX, LAX, ARM and DisARM: unbiased against exact gradients, also after training."""
import pytest
import torch

import vitools as vt
import vitools.estimators.control as control
from vitools.diagnostics import grad_samples, summarize
from vitools.estimators import get
from vitools.estimators.relaxed import Latent

from sbn_helpers import discrete_problems as problems

N = 10_000
TRAIN = dict(train_steps=25, train_batch=64)

CASES = [(name, p) for name in ("rebar", "relax", "lax") for p in ("bernoulli", "bits", "categorical")]
CASES += [(name, p) for name in ("arm", "disarm") for p in ("bernoulli", "bits")]


@pytest.mark.parametrize("name,problem_name", CASES)
def test_unbiased_after_training(name, problem_name):
    problem = problems()[problem_name]
    theta = problem.init_params()
    est = get(name, **TRAIN) if name in ("rebar", "relax", "lax") else get(name)
    g = grad_samples(est, problem, theta, n=N, k=1, seed=0)
    s = summarize(g, problem.exact_grad(theta))
    assert s.bias_z.abs().max() < 4, s
    if name in ("rebar", "relax", "lax"):
        moved = [p for p in est.parameters() if p.grad is not None]
        assert moved and est.optimizer is not None          # prepare trained the control variate


def test_a_wrong_conditional_sample_is_caught(monkeypatch):
    """Power check: REBAR whose z~ is not reparameterised in theta (a classic mistake: the
    conditional sample treated as a constant) fails the same test by a wide margin."""
    problem = problems()["bernoulli"]
    theta = problem.init_params()
    right = control.conditional_noisy_logits
    monkeypatch.setattr(control, "conditional_noisy_logits",
                        lambda latent, hard, logits: right(latent, hard, logits).detach())
    g = grad_samples(get("rebar", train_steps=0, baseline=False), problem, theta, n=N, seed=0)
    assert summarize(g, problem.exact_grad(theta)).bias_z.abs().max() > 8


def test_conditional_sample_agrees_with_b_and_has_the_right_marginal():
    torch.manual_seed(0)
    for problem in (problems()["bits"], problems()["categorical"]):
        latent = Latent(problem, problem.init_params().detach())
        z = latent.noisy_logits(50_000)
        hard = latent.hard_from(z)
        z_tilde = control.conditional_noisy_logits(latent, hard, latent.logits)
        assert torch.equal(latent.hard_from(z_tilde), hard)
        # mixed over b, z~ has the law of z: compare means and quartiles per coordinate
        se = z.std(0) / 50_000**0.5
        assert ((z_tilde.mean(0) - z.mean(0)).abs() / se).max() < 5
        for q in (0.25, 0.5, 0.75):
            assert (z_tilde.quantile(q, 0) - z.quantile(q, 0)).abs().max() < 0.05


def test_rebar_beats_reinforce_with_a_moving_average_baseline():
    problem = problems()["bernoulli"]
    theta = problem.init_params()
    rebar = get("rebar", train_steps=60, train_batch=64)
    v_rebar = float(grad_samples(rebar, problem, theta, n=N, seed=0).var())
    v_ma = float(grad_samples(get("score_function", baseline="moving_average"), problem, theta, n=N, seed=0).var())
    assert v_rebar < 0.2 * v_ma
    assert 0.01 < rebar.temperature < 100


def test_training_lowers_the_second_moment():
    for name in ("rebar", "relax", "lax"):
        problem = problems()["bernoulli"]
        theta = problem.init_params()
        est = get(name)
        with vt.config.seeded(0):
            losses = [est.step_control_variate(problem, theta, k=1, batch=128) for _ in range(40)]
        assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), name


def test_antithetic_estimators_are_exact_in_one_dimension_at_even_odds():
    # at p = 1/2 each pair is (f(1) - f(0)) * (u - 1/2) for ARM; DisARM's is (f(1) - f(0)) / 4 exactly
    problem = vt.problems.BernoulliQuadratic(0.45, init=0.0)
    theta = problem.init_params()
    g = grad_samples(get("disarm"), problem, theta, n=1000, seed=0)
    torch.testing.assert_close(g, problem.exact_grad(theta).expand_as(g))
    g_arm = grad_samples(get("arm"), problem, theta, n=1000, seed=0)
    assert g_arm.var() > 0


def test_why_not_is_honest():
    cat, poisson = problems()["categorical"], vt.problems.PoissonQuadratic()
    assert "Bernoulli (binary) latents only" in get("arm").why_not(cat)
    assert "Bernoulli or categorical" in get("disarm").why_not(poisson)
    assert "Bernoulli or categorical" in get("rebar").why_not(poisson)

    class TableOnly(vt.problems.BernoulliQuadratic):
        cost_is_differentiable = False
    assert "relaxed_cost" in get("rebar").why_not(TableOnly())
    assert get("lax").applies_to(TableOnly())           # LAX needs no relaxation of f
    model = vt.models.sbn.SBN(x_dim=4, latent=(2,))
    for name in ("rebar", "relax", "lax", "arm", "disarm", "gumbel_softmax"):
        assert get(name).applies_to(model)               # the SBN side: tests/test_control_sbn.py
    assert get("arm").applies_to(TableOnly())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature must be positive"):
        get("rebar", temperature=0.0)
    with pytest.raises(ValueError, match="eta must be finite"):
        get("relax", eta=float("nan"))
    with pytest.raises(ValueError, match="baseline must be True or False"):
        get("rebar", baseline="yes")
    with pytest.raises(ValueError, match="train_steps must be an integer"):
        get("rebar", train_steps=-1)
    with pytest.raises(ValueError, match="train_batch must be an integer"):
        get("lax", train_batch=1)
    with pytest.raises(ValueError, match="lr must be positive"):
        get("relax", lr=0.0)
    with pytest.raises(ValueError, match="hidden must be an integer"):
        get("relax", hidden=0)
    problem = problems()["bits"]
    with pytest.raises(ValueError, match="batch must be an integer"):
        get("rebar").step_control_variate(problem, problem.init_params(), batch=1)
    with pytest.raises(ValueError, match="must be finite"):
        get("arm")(problem, torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="Bernoulli latents"):
        get("disarm")(problems()["categorical"], problems()["categorical"].init_params())


def test_rebar_explorer_headless():
    from vitools.widgets.relaxed import RebarExplorer
    explorer = RebarExplorer(n=500, grid=3)
    explorer.controls["eta"].value = 0.0
    curve = explorer.data["curve"]
    assert curve.max() / curve.min() < 1.0001          # eta = 0: the temperature no longer matters
    explorer.controls["eta"].value = 1.0
    explorer.controls["log10_temperature"].value = -2.0
    assert explorer.data["variance"] > 3 * explorer.data["reinforce_variance"]
    with pytest.raises(ValueError, match="grid must be an integer"):
        RebarExplorer(grid=1)


def test_fit_toy_records_and_descends():
    problem = vt.problems.BernoulliQuadratic(0.45)
    history = control.fit_toy(get("disarm"), problem, steps=60, lr=0.1, record_every=20)
    assert history["steps"].tolist() == [0, 20, 40]
    assert history["theta"][-1, 0] < -1.0 and torch.isfinite(history["log10_variance"]).all()
    with pytest.raises(ValueError, match="steps must be an integer"):
        control.fit_toy(get("arm"), problem, steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        control.fit_toy(get("arm"), problem, lr=-1.0)
