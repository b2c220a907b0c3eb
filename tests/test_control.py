"""REBAR, RELAX, LAX, ARM and DisARM on toy problems: unbiased against exact gradients, also
after warm-up; power checks; what the control loss trains; user-written problems; one estimator
on targets of several shapes; input checks."""
import math

import pytest
import torch
from torch import distributions as D

import vitools as vt
import vitools.estimators.layers as L
from vitools.diagnostics import grad_samples, summarize
from vitools.estimators import get
from vitools.problems import enumerate_states

from sbn_helpers import discrete_problems as problems, tiny, X

N = 10_000
TRAIN = dict(train_steps=25, train_batch=64)
RELAX_FAMILY = ("rebar", "relax", "lax")

CASES = [(name, p) for name in RELAX_FAMILY for p in ("bernoulli", "bits", "categorical")]
CASES += [(name, p) for name in ("arm", "disarm") for p in ("bernoulli", "bits")]


def state_values(est):
    return [p.detach().clone() for p in est.parameters()]


@pytest.mark.parametrize("name,problem_name", CASES)
def test_unbiased_after_warm_up(name, problem_name):
    problem = problems()[problem_name]
    theta = problem.init_params()
    est = get(name, **TRAIN) if name in RELAX_FAMILY else get(name)
    g = grad_samples(est, problem, theta, n=N, k=1, seed=0)
    s = summarize(g, problem.exact_grad(theta))
    assert s.bias_z.abs().max() < 4, s
    if name in RELAX_FAMILY:                        # grad_samples warmed the control variate up
        controls = est.controls(problem.at(theta.detach()))
        fresh = get(name, **TRAIN).controls(problem.at(theta.detach()))
        moved = [(a - b).abs().max() for a, b in zip(controls.parameters(), fresh.parameters())]
        assert max(moved) > 1e-3


def test_a_wrong_conditional_sample_is_caught(monkeypatch):
    """Power check: REBAR whose z~ is not reparameterised in the logits (a classic mistake: the
    conditional sample treated as a constant) fails the same test by a wide margin."""
    problem = problems()["bernoulli"]
    theta = problem.init_params()
    right = L.conditional
    monkeypatch.setattr(L, "conditional", lambda layer, hard, logits, v: right(layer, hard, logits, v).detach())
    g = grad_samples(get("rebar", train_steps=0, baseline=False), problem, theta, n=N, seed=0)
    assert summarize(g, problem.exact_grad(theta)).bias_z.abs().max() > 8


def test_conditional_sample_agrees_with_b_and_has_the_right_marginal():
    torch.manual_seed(0)
    for problem in (problems()["bits"], problems()["categorical"]):
        target = L.ProblemLayers(problem.at(problem.init_params().detach()))
        layer = target.layers[0]
        us, hs, logits = L.draw(target, 50_000)
        z = logits[0] + L.noise(layer, us[0])
        v = vt.relaxations.uniform(z.shape, z)
        z_tilde = L.conditional(layer, hs[0], logits[0], v)
        assert torch.equal(L.hard_from(layer, z_tilde), hs[0])
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
    assert 0.01 < rebar.controls(problem.at(theta.detach())).temperature < 100


@pytest.mark.parametrize("name", RELAX_FAMILY)
def test_warm_up_lowers_the_control_loss(name):
    problem = problems()["bernoulli"]
    theta = problem.init_params().detach()
    est = get(name)
    with vt.config.seeded(0):
        losses = est.warm_up(problem.at(theta.expand(128, *theta.shape)), k=1, steps=40)
    assert len(losses) == 40
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), name


def test_train_steps_is_the_default_number_of_warm_up_steps():
    problem = problems()["bits"]
    theta = problem.init_params().detach()
    assert get("relax", train_steps=7).warm_up_steps == 7
    assert len(get("rebar", train_steps=5).warm_up(problem.at(theta.expand(8, 4)))) == 5
    assert get("lax", train_steps=0).warm_up(problem.at(theta)) == []


@pytest.mark.parametrize("name", RELAX_FAMILY)
def test_forward_changes_nothing_and_the_control_loss_reaches_only_the_estimator(name):
    """No optimizer inside the forward pass: the control parameters move only when someone steps
    the control loss, whose gradient reaches the estimator's parameters and not theta; the
    surrogate's gradient reaches theta and not the estimator's parameters."""
    problem = problems()["bits"]
    theta = problem.init_params().detach().expand(16, 4).clone().requires_grad_(True)
    est = get(name)
    est(problem.at(theta), 2)                                # builds the state
    before = state_values(est)
    out = est(problem.at(theta), 2)
    assert all(torch.equal(a, b) for a, b in zip(state_values(est), before))
    assert out.surrogate.shape == (16,) and out.control_loss.dim() == 0
    params = list(est.parameters())
    assert params == est.state_parameters(problem.at(theta))
    to_theta = torch.autograd.grad(out.control_loss, [theta], retain_graph=True, allow_unused=True)[0]
    assert to_theta is None or not to_theta.any()
    grads = torch.autograd.grad(out.control_loss, params, retain_graph=True, allow_unused=True)
    assert any(g is not None and g.abs().max() > 0 for g in grads)
    to_est = torch.autograd.grad(out.surrogate.sum(), [theta, *params], allow_unused=True)
    assert to_est[0].abs().max() > 0
    assert all(g is None or not g.any() for g in to_est[1:])
    est.eval()                                               # eval mode: no control loss
    assert est(problem.at(theta), 2).control_loss is None


def test_antithetic_estimators_are_exact_in_one_dimension_at_even_odds():
    # at p = 1/2 each pair is (f(1) - f(0)) * (u - 1/2) for ARM; DisARM's is (f(1) - f(0)) / 4 exactly
    problem = vt.problems.BernoulliQuadratic(0.45, init=0.0)
    theta = problem.init_params()
    g = grad_samples(get("disarm"), problem, theta, n=1000, seed=0)
    torch.testing.assert_close(g, problem.exact_grad(theta).expand_as(g))
    g_arm = grad_samples(get("arm"), problem, theta, n=1000, seed=0)
    assert g_arm.var() > 0


# ---------------------------------------------------------------------- problems a user writes
class UserBits:
    """Three independent bits, written as a reader would: logits theta, a differentiable cost that
    is not multilinear in the bits (so a relaxation sees a different function between vertices)."""

    cost_is_differentiable = True
    weights = torch.tensor([1.0, -2.0, 0.5])

    def init_params(self):
        return torch.tensor([0.3, -0.8, 1.1], requires_grad=True)

    def distribution(self, theta):
        return D.Independent(D.Bernoulli(logits=theta), 1)

    def cost(self, z):
        return (z @ self.weights.to(z.dtype) - 0.4) ** 2 + torch.sin(z).sum(-1)

    def exact_grad(self, theta):
        states = enumerate_states(3).to(theta.dtype)
        theta = theta.detach().requires_grad_(True)
        value = (self.distribution(theta).log_prob(states).exp() * self.cost(states)).sum()
        return torch.autograd.grad(value, theta)[0]


class UserClasses:
    """One four-class variable as OneHotCategorical(logits=theta) with a differentiable cost."""

    cost_is_differentiable = True
    values = torch.tensor([0.0, 1.0, 2.0, 3.0])

    def init_params(self):
        return torch.tensor([0.2, -0.5, 1.0, 0.1], requires_grad=True)

    def distribution(self, theta):
        return D.OneHotCategorical(logits=theta)

    def cost(self, z):
        return (z @ self.values.to(z.dtype) - 1.3) ** 2

    def exact_grad(self, theta):
        states = torch.eye(4, dtype=theta.dtype)
        theta = theta.detach().requires_grad_(True)
        value = (self.distribution(theta).log_prob(states).exp() * self.cost(states)).sum()
        return torch.autograd.grad(value, theta)[0]


@pytest.mark.parametrize("problem", [UserBits(), UserClasses()], ids=["bits", "onehot"])
def test_a_user_problem_with_a_differentiable_cost(problem):
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    for name in ("rebar", "relax", "gumbel_softmax", "straight_through", "igr"):
        est = get(name, **TRAIN) if name in RELAX_FAMILY else get(name)
        assert est.why_not(problem) is None, name
        surrogate = est(problem, theta, 3)                    # a user's class has no .at(theta)
        (g,) = torch.autograd.grad(surrogate.sum(), theta)
        assert g.shape == theta.shape and torch.isfinite(g).all(), name
        if name in RELAX_FAMILY:
            s = summarize(grad_samples(est, problem, theta, n=N, k=1, seed=0), exact)
            assert s.bias_z.abs().max() < 4, (name, s)


def test_one_estimator_keeps_a_state_per_kind_of_target():
    """One RELAX object on a 2-bit problem, a 4-bit problem and an SBN: three separate states,
    each of its target's shape, and the first is not disturbed by the others."""
    two = vt.problems.FactorisedBernoulli.random(2, seed=0)
    four = problems()["bits"]
    sbn = tiny()
    est = get("relax", hidden=8)
    targets = [two.at(two.init_params().detach()), four.at(four.init_params().detach()), sbn.on(X.expand(8, 5))]
    first = None
    for target in targets:
        out = est(target, 2)
        assert torch.isfinite(out.surrogate).all() and torch.isfinite(out.control_loss)
        est.warm_up(target, steps=3)
        if first is None:
            first = [p.detach().clone() for p in est.state_parameters(targets[0])]
    assert len(est.states) == 3
    assert all(torch.equal(a, b) for a, b in zip(est.state_parameters(targets[0]), first))
    widths = [est.controls(t).nets[0][0].in_features for t in targets]
    assert widths == [2, 4, 2 + 5]                      # layer bits (+ the SBN's context x)


# ---------------------------------------------------------------------- a categorical VAE
def cat_vae():
    model = vt.models.CategoricalVAE(input_dim=4, hidden=(8,), num_latents=2, num_classes=3, seed=0).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    return model, x


@pytest.mark.parametrize("name", RELAX_FAMILY)
def test_relax_family_unbiased_on_a_categorical_vae(name):
    model, x = cat_vae()
    names, params = zip(*model.named_parameters())
    exact = torch.autograd.grad(model.exact_bounds(x).elbo.sum(), params)
    est = get(name, hidden=8) if name != "rebar" else get(name)
    est.warm_up(model.on(x.expand(64, 4)), steps=15)
    samples = grad_samples(est, model.on(x), n=20_000, k=1, seed=0)
    worst = 0.0
    for n, g_exact in zip(names, exact):
        g = samples["model." + n].flatten(1)
        var = g.var(0)
        still = var == 0
        assert torch.allclose(g.mean(0)[still], g_exact.flatten()[still])
        z = (g.mean(0) - g_exact.flatten())[~still] / (var[~still] / g.shape[0]).sqrt()
        worst = max(worst, z.abs().max().item())
    assert worst < 4


def test_antithetic_estimators_say_bernoulli_only_on_a_categorical_vae():
    model, x = cat_vae()
    for name in ("arm", "disarm"):
        reason = get(name).why_not(model.on(x))
        assert reason is not None and "Bernoulli" in reason
        assert not get(name).applies_to(model)


# ---------------------------------------------------------------------- what each says, and checks
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
    assert "acts on targets" in get("rebar").why_not("a string")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        get("rebar", temperature=0.0)
    with pytest.raises(ValueError, match="eta must be finite"):
        get("relax", eta=float("nan"))
    with pytest.raises(ValueError, match="baseline must be True or False, got 'yes'"):
        get("rebar", baseline="yes")
    with pytest.raises(ValueError, match="train_steps must be an integer >= 0, got -1"):
        get("rebar", train_steps=-1)
    with pytest.raises(ValueError, match="train_batch must be an integer >= 2, got 1"):
        get("lax", train_batch=1)
    with pytest.raises(ValueError, match="lr must be > 0, got 0.0"):
        get("relax", lr=0.0)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1, got 0"):
        get("relax", hidden=0)
    with pytest.raises(ValueError, match="'hidden' is not an option of estimator 'rebar'"):
        get("rebar", hidden=8)
    problem = problems()["bits"]
    target = problem.at(problem.init_params().detach())
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        get("rebar").warm_up(target, steps=-1)
    with pytest.raises(ValueError, match="lr must be positive"):
        get("relax").warm_up(target, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        get("lax")(target, 0)
    with pytest.raises(ValueError, match="theta must be finite"):
        get("arm")(problem, torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="Bernoulli"):
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
    history = vt.train.fit_toy(get("disarm"), problem, steps=60, lr=0.1, record_every=20)
    assert history["steps"].tolist() == [0, 20, 40]
    assert history["theta"][-1, 0] < -1.0 and torch.isfinite(history["log10_variance"]).all()
    relax = vt.train.fit_toy(get("relax", train_steps=0), problem, steps=40, lr=0.1, record_every=20)
    assert relax["exact_value"][-1] < relax["exact_value"][0] and math.isfinite(relax["log10_variance"].sum())
    with pytest.raises(ValueError, match="steps must be an integer"):
        vt.train.fit_toy(get("arm"), problem, steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        vt.train.fit_toy(get("arm"), problem, lr=-1.0)


def test_a_wrong_conditional_sample_is_caught_on_a_categorical_vae(monkeypatch):
    """Power: the same z-test on the categorical VAE fails REBAR with truncated Gumbels that are
    not reparameterised in the logits."""
    model, x = cat_vae()
    names, params = zip(*model.named_parameters())
    exact = dict(zip(names, torch.autograd.grad(model.exact_bounds(x).elbo.sum(), params)))
    right = vt.relaxations.conditional_gumbels
    monkeypatch.setattr(vt.relaxations, "conditional_gumbels", lambda hard, logits, v: right(hard, logits.detach(), v))
    samples = grad_samples(get("rebar"), model.on(x), n=20_000, k=1, seed=0)
    z = [summarize(samples["model." + n].flatten(1), exact[n].flatten()).bias_z.abs().max() for n in names]
    assert max(z) > 8
