"""REBAR, RELAX, LAX, ARM, DisARM and the relaxations (Gumbel-Softmax, straight-through, gapped
straight-through, IGR) on sigmoid belief nets, ``est(sbn.on(x), k)``: unbiasedness for the exact
ELBO gradient by enumeration of a 2-layer (2 + 1 bits) SBN, before and after warming up the
control variates, power checks, the relaxations' bias measured, input checks."""
import pytest
import torch

import vitools as vt
import vitools.estimators.layers as L
from vitools import relaxations
from vitools.diagnostics import flat, grad_samples
from vitools.estimators import get

from sbn_helpers import X, exact_grads, tiny


def exact_grad(model, x=X):
    """The exact ELBO gradient, flattened in ``model.parameters()`` order: ``[P]``."""
    return torch.cat([g.flatten() for g in exact_grads(model, model.exact_elbo(x)).values()]).double()


def batch_means(est, model, batches=40, m=250, k=1, seed=3):
    """``[batches, P]``: each row the gradient of the mean surrogate over ``m`` copies of X
    (``m`` independent estimates averaged; the estimator's state frozen)."""
    params = list(model.parameters())
    rows = []
    was_training = est.training
    est.eval()
    with vt.config.seeded(seed):
        for _ in range(batches):
            loss = est(model.on(X.expand(m, X.shape[1])), k).surrogate.mean()
            grads = torch.autograd.grad(loss, params)
            rows.append(torch.cat([g.flatten() for g in grads]))
    est.train(was_training)
    return torch.stack(rows).double()


def state_values(est):
    return [p.detach().clone() for p in est.parameters()]


def max_abs_z(samples, exact):
    var = samples.var(0)
    still = var == 0                      # pixels that are 0 in X: encoder weights get exactly zero
    assert torch.allclose(samples.mean(0)[still], exact[still])
    z = (samples.mean(0) - exact)[~still] / (var[~still] / samples.shape[0]).sqrt()
    return z.abs().max().item()


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_antithetic_unbiased_by_enumeration(name):
    model = tiny()
    samples = grad_samples(get(name), model.on(X), n=20_000, k=1, seed=1)
    g = flat(samples, "model.").double()
    assert max_abs_z(g, exact_grad(model)) < 4


@pytest.mark.parametrize("name", ["rebar", "relax", "lax"])
def test_relax_family_unbiased_before_and_after_training(name):
    model = tiny()
    est = get(name, lr=0.05, **({} if name == "rebar" else {"hidden": 8}))
    exact = exact_grad(model)
    assert max_abs_z(batch_means(est, model), exact) < 4
    before = state_values(est)
    history = est.warm_up(model.on(X.expand(64, 5)), k=1, steps=15)
    assert len(history) == 15
    after = state_values(est)
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(after, before))       # really trained
    assert sum(history[-5:]) < sum(history[:5])                                  # second moment falls
    assert max_abs_z(batch_means(est, model, seed=4), exact) < 4


@pytest.mark.parametrize("name", ["rebar", "relax", "lax"])
def test_relax_family_per_sample_gradients_are_vectorized_unbiased_and_consistent(name):
    """grad_samples (torch.func.vmap) runs the warmed-up control variates: the estimates are
    unbiased, agree in variance with batch means, and leave the control parameters untouched."""
    model = tiny()
    est = get(name, lr=0.05, **({} if name == "rebar" else {"hidden": 8}))
    est.warm_up(model.on(X.expand(64, 5)), k=1, steps=15)
    frozen = state_values(est)
    samples = grad_samples(est, model.on(X), n=20_000, k=1, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(state_values(est), frozen))
    assert est.training                                     # its mode is restored
    g = flat(samples, "model.").double()
    exact = exact_grad(model)
    assert max_abs_z(g, exact) < 4
    per_estimate = g.var(0).sum()
    from_means = batch_means(est, model, batches=400, m=50, seed=5).var(0).sum() * 50
    assert 0.75 < from_means / per_estimate < 1.33                     # the same variance, two ways


def test_a_wrong_conditional_sample_is_caught(monkeypatch):
    """Power: a conditional sample z~ that is not reparameterised in the logits is biased."""
    model = tiny()
    est = get("rebar")
    right = relaxations.conditional_bits

    def detached(hard, logits, v):
        return right(hard, logits.detach(), v)
    monkeypatch.setattr(relaxations, "conditional_bits", detached)
    assert max_abs_z(batch_means(est, model), exact_grad(model)) > 4


def test_lax_wrong_score_is_caught(monkeypatch):
    """Power: LAX with the score taken in z instead of the logits (a sign error) is biased."""
    model = tiny()
    right = relaxations.logistic_score
    monkeypatch.setattr(relaxations, "logistic_score", lambda u: -right(u))
    assert max_abs_z(batch_means(get("lax"), model), exact_grad(model)) > 4


def test_antithetic_power_a_sign_error_is_caught(monkeypatch):
    """Power: ARM with the antithetic signal's sign flipped fails by a wide margin."""
    model = tiny()
    original_signal, original_propagate = L.signal, L.propagate
    partner = {"next": False}

    def propagate(*args, **kwargs):                      # builds a partner: its signal comes next
        partner["next"] = True
        return original_propagate(*args, **kwargs)

    def flipped(*args, **kwargs):
        out = original_signal(*args, **kwargs)
        if partner["next"]:
            partner["next"] = False
            return -out                                  # the partners' signals negated
        return out
    monkeypatch.setattr(L, "propagate", propagate)
    monkeypatch.setattr(L, "signal", flipped)
    samples = grad_samples(get("arm"), model.on(X), n=5_000, k=1, seed=1)
    g = flat(samples, "model.").double()
    assert max_abs_z(g, exact_grad(model)) > 4


RELAXATIONS = ["gumbel_softmax", "straight_through", "gapped_straight_through", "igr"]


@pytest.mark.parametrize("name", RELAXATIONS)
def test_relaxations_are_biased_and_the_bias_is_measured(name):
    """Each relaxation's mean gradient differs from the exact one (|z| > 4 at its default
    temperature) yet points the same way (cosine > 0.9): biased, and the bias is visible."""
    model = tiny()
    samples, exact = batch_means(get(name), model), exact_grad(model)
    assert max_abs_z(samples, exact) > 4
    mean = samples.mean(0)
    assert mean @ exact / (mean.norm() * exact.norm()) > 0.9


@pytest.mark.parametrize("name", ["straight_through", "gapped_straight_through"])
def test_straight_through_relaxed_pass_forwards_the_hard_elbo(name):
    """The straight-through passes carry the hard latents forward: their signal equals f(h)."""
    model = tiny()
    target = model.on(X.expand(50, 5))
    us, hs, logits = L.draw(target, 3)
    relax = get(name).relax
    f_rel = L.relaxed_signal(target, hs, us, 0, logits[0], relax(target.layers[0], logits[0], us[0]), relax)
    assert torch.allclose(f_rel, L.signal(target, hs, logits), atol=1e-5)


def test_concrete_pass_tends_to_the_hard_pass_as_temperature_falls():
    """Shared uniforms: at tau = 0.01 the Gumbel-Softmax pass is almost the hard one, while IGR's
    Gaussian noise gives other bits (its discretised distribution is Phi(l / sigma), not sigma(l))."""
    model = tiny()
    target = model.on(X.expand(2000, 5))
    us, hs, logits = L.draw(target, 1)
    layer = target.layers[0]
    soft = get("gumbel_softmax", temperature=0.01).relax(layer, logits[0], us[0])
    assert (soft - hs[0]).abs().mean() < 0.01
    igr = get("igr", temperature=0.01).relax(layer, logits[0], us[0])
    disagree = ((igr > 0.5).to(igr.dtype) != hs[0]).to(igr.dtype).mean()
    assert 0 < disagree < 0.05                       # sigma = 1.7: Phi(l / 1.7) is close to sigmoid(l)


@pytest.mark.parametrize("name", RELAXATIONS)
def test_relaxations_stay_finite_at_low_temperature(name):
    model = tiny()
    loss = get(name, temperature=0.01)(model.on(X.expand(200, 5)), k=2).surrogate.mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_gapped_logits_keep_the_sample_ahead_with_an_identity_gradient():
    logits = torch.randn(500, 6, requires_grad=True)
    hard = torch.nn.functional.one_hot(torch.randint(6, (500,)), 6).float()
    gapped = relaxations.gapped_logits(logits, hard, 1.5, categorical=True)
    chosen = (gapped * hard).sum(-1)
    others = gapped.masked_fill(hard > 0, -torch.inf).amax(-1)
    assert (chosen - others >= 1.5 - 1e-5).all()
    assert torch.equal(gapped.masked_fill(hard > 0, 0), logits.detach().masked_fill(hard > 0, 0))
    (jac,) = torch.autograd.grad((gapped * torch.arange(6.0)).sum(), logits)
    assert torch.equal(jac, torch.arange(6.0).expand(500, 6))
    bits = torch.tensor([-3.0, -0.2, 0.4, 2.0])
    gapped_bits = relaxations.gapped_logits(bits, torch.tensor([1.0, 0.0, 1.0, 0.0]), 1.0, categorical=False)
    assert gapped_bits.tolist() == [1.0, -1.0, 1.0, -1.0]


def test_one_layer_forward_changes_nothing_and_each_loss_reaches_its_own_parameters():
    """No optimizer in the forward pass: the control parameters stay put; the surrogate's gradient
    reaches every model parameter and no estimator parameter; the control loss's gradient reaches
    the estimator's parameters; a step of each on its own loss then runs."""
    model = tiny(latent=(3,))
    est = get("relax", hidden=8)
    target = model.on(X.expand(16, 5))
    est(target, 2)                                       # builds the state
    before = state_values(est)
    out = est(target, k=2)
    assert out.surrogate.shape == (16,) and torch.isfinite(out.surrogate).all()
    assert all(torch.equal(a, b) for a, b in zip(state_values(est), before))
    model_params, est_params = list(model.parameters()), list(est.parameters())
    assert {id(p) for p in est_params}.isdisjoint(id(p) for p in model_params) and len(est_params) >= 4
    to_model = torch.autograd.grad(out.surrogate.mean(), model_params + est_params, retain_graph=True,
                                   allow_unused=True)
    assert all(g is not None for g in to_model[:len(model_params)])
    assert all(g is None or not g.any() for g in to_model[len(model_params):])
    to_est = torch.autograd.grad(out.control_loss, est_params, allow_unused=True)
    assert any(g is not None and g.abs().max() > 0 for g in to_est)
    history = vt.train.fit(est, model, X.expand(16, 5), steps=2, batch_size=8, k=2, progress=False)
    assert len(history.control_loss) == 2 and all(torch.isfinite(torch.tensor(history.control_loss)))
    assert any(not torch.equal(a, b) for a, b in zip(state_values(est), before))


def test_why_not_accepts_sbns():
    model = tiny()
    for name in ("rebar", "relax", "lax", "arm", "disarm", *RELAXATIONS):
        assert get(name).applies_to(model)
        assert get(name).applies_to(model.on(X))
    vae = vt.models.GaussianVAE(5, 4, latent_dim=2)
    assert "discrete latents" in get("igr").why_not(vae)
    assert "discrete latents" in get("rebar").why_not(vae.on(torch.zeros(2, 5)))


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="x must"):
        model.on(torch.full((2, 5), 0.5))
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        get("arm")(model.on(X), k=0)
    with pytest.raises(ValueError, match="x must"):
        model.on(torch.ones(2, 4))
    with pytest.raises(ValueError, match="target must be a target"):
        get("arm")(vt.problems.BernoulliQuadratic(), 1)
    with pytest.raises(ValueError, match="k must be an integer for a target"):
        get("lax")(model.on(X), torch.ones(2))
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        get("rebar").warm_up(model.on(X), steps=-1)
    with pytest.raises(ValueError, match="lr must be positive"):
        get("relax").warm_up(model.on(X), steps=1, lr=0.0)
    with pytest.raises(ValueError, match="model must be a latent-variable model"):
        with pytest.warns(DeprecationWarning):
            get("arm").loss(vt.problems.BernoulliQuadratic(), X)
