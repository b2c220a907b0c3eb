"""Tests for vitools.estimators.relaxed_sbn (REBAR, RELAX, LAX, ARM, DisARM, and the relaxations
Gumbel-Softmax, straight-through, gapped straight-through and IGR on sigmoid belief nets):
unbiasedness for the exact ELBO gradient by enumeration of a 2-layer (2 + 1 bits) SBN, before and
after training the control variates, power checks, the relaxations' bias measured, input checks."""
import pytest
import torch

import vitools as vt
from vitools.estimators import get, relaxed, relaxed_sbn
from vitools.estimators.amortized import flat, model_grad_samples

from sbn_helpers import X, exact_grads, tiny


def exact_grad(model, x=X):
    """The exact ELBO gradient, flattened in ``model.parameters()`` order: ``[P]``."""
    return torch.cat([g.flatten() for g in exact_grads(model, model.exact_elbo(x)).values()]).double()


def batch_means(est, model, batches=40, m=250, k=1, seed=3):
    """``[batches, P]``: each row the gradient of the mean surrogate over ``m`` copies of X
    (``m`` independent estimates averaged; the estimator's state frozen)."""
    params = list(model.parameters())
    rows = []
    with vt.config.seeded(seed):
        for _ in range(batches):
            loss = est.loss(model, X.expand(m, X.shape[1]), k, update=False).mean()
            grads = torch.autograd.grad(loss, params)
            rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows).double()


def max_abs_z(samples, exact):
    var = samples.var(0)
    still = var == 0                      # pixels that are 0 in X: encoder weights get exactly zero
    assert torch.allclose(samples.mean(0)[still], exact[still])
    z = (samples.mean(0) - exact)[~still] / (var[~still] / samples.shape[0]).sqrt()
    return z.abs().max().item()


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_antithetic_unbiased_by_enumeration(name):
    model = tiny()
    samples = model_grad_samples(get(name), model, X, n=20_000, k=1, seed=1)
    g = flat(samples, "model.").double()
    assert max_abs_z(g, exact_grad(model)) < 4


@pytest.mark.parametrize("name", ["rebar", "relax", "lax"])
def test_relax_family_unbiased_before_and_after_training(name):
    model = tiny()
    est = get(name, hidden=8, lr=0.05)
    exact = exact_grad(model)
    assert max_abs_z(batch_means(est, model), exact) < 4
    before = [p.detach().clone() for p in est.parameters(model)]
    history = est.fit_control_variate(model, X.expand(64, 5), k=1, steps=15, batch_size=64)
    after = est.parameters(model)
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(after, before))       # really trained
    assert sum(history[-5:]) < sum(history[:5])                                  # second moment falls
    assert max_abs_z(batch_means(est, model, seed=4), exact) < 4


@pytest.mark.parametrize("name", ["rebar", "relax", "lax"])
def test_relax_family_per_sample_gradients_are_vectorized_unbiased_and_consistent(name):
    """model_grad_samples (torch.func.vmap) runs the trained control variates: the estimates are
    unbiased, agree in variance with batch means, and leave the control parameters untouched."""
    model = tiny()
    est = get(name, hidden=8, lr=0.05)
    est.fit_control_variate(model, X.expand(64, 5), k=1, steps=15, batch_size=64)
    frozen = [p.detach().clone() for p in est.parameters(model)]
    samples = model_grad_samples(est, model, X, n=20_000, k=1, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(est.parameters(model), frozen))
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
    right = relaxed_sbn.conditional_bits

    def detached(hard, logits, v):
        return right(hard, logits.detach(), v)
    monkeypatch.setattr(relaxed_sbn, "conditional_bits", detached)
    assert max_abs_z(batch_means(est, model), exact_grad(model)) > 4


def test_lax_wrong_score_is_caught(monkeypatch):
    """Power: LAX with the score taken in z instead of the logits (a sign error) is biased."""
    model = tiny()
    right = relaxed_sbn.logistic_score
    monkeypatch.setattr(relaxed_sbn, "logistic_score", lambda u: -right(u))
    assert max_abs_z(batch_means(get("lax"), model), exact_grad(model)) > 4


def test_antithetic_power_a_sign_error_is_caught(monkeypatch):
    """Power: ARM with the antithetic signal's sign flipped fails by a wide margin."""
    model = tiny()
    original = relaxed_sbn.signal
    calls = {"n": 0}

    def flipped(model_, x, hs):
        calls["n"] += 1
        out = original(model_, x, hs)
        return -out if calls["n"] > 1 else out           # the partners' signals negated
    monkeypatch.setattr(relaxed_sbn, "signal", flipped)
    samples = model_grad_samples(get("arm"), model, X, n=5_000, k=1, seed=1)
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
    x = X.expand(50, 5)
    us, hs, logits = relaxed_sbn.draw(model, x, 3)
    relax = get(name).bit_relaxation()
    f_rel = relaxed_sbn.relaxed_signal(model, x, hs, us, 0, logits[0], relax(logits[0], us[0]), relax)
    assert torch.allclose(f_rel, relaxed_sbn.signal(model, x, hs), atol=1e-5)


def test_concrete_pass_tends_to_the_hard_pass_as_temperature_falls():
    """Shared uniforms: at tau = 0.01 the Gumbel-Softmax pass is almost the hard one, while IGR's
    Gaussian noise gives other bits (its discretised distribution is Phi(l / sigma), not sigma(l))."""
    model = tiny()
    x = X.expand(2000, 5)
    us, hs, logits = relaxed_sbn.draw(model, x, 1)
    soft = get("gumbel_softmax", temperature=0.01).bit_relaxation()(logits[0], us[0])
    assert (soft - hs[0]).abs().mean() < 0.01
    igr = get("igr", temperature=0.01).bit_relaxation()(logits[0], us[0])
    disagree = ((igr > 0.5).to(igr.dtype) != hs[0]).to(igr.dtype).mean()
    assert 0 < disagree < 0.05                       # sigma = 1.7: Phi(l / 1.7) is close to sigmoid(l)


@pytest.mark.parametrize("name", RELAXATIONS)
def test_relaxations_stay_finite_at_low_temperature(name):
    model = tiny()
    loss = get(name, temperature=0.01).loss(model, X.expand(200, 5), k=2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_gapped_logits_keep_the_sample_ahead_with_an_identity_gradient():
    logits = torch.randn(500, 6, requires_grad=True)
    hard = torch.nn.functional.one_hot(torch.randint(6, (500,)), 6).float()
    gapped = relaxed.gapped_logits(logits, hard, 1.5, categorical=True)
    chosen = (gapped * hard).sum(-1)
    others = gapped.masked_fill(hard > 0, -torch.inf).amax(-1)
    assert (chosen - others >= 1.5 - 1e-5).all()
    assert torch.equal(gapped.masked_fill(hard > 0, 0), logits.detach().masked_fill(hard > 0, 0))
    (jac,) = torch.autograd.grad((gapped * torch.arange(6.0)).sum(), logits)
    assert torch.equal(jac, torch.arange(6.0).expand(500, 6))
    bits = torch.tensor([-3.0, -0.2, 0.4, 2.0])
    gapped_bits = relaxed.gapped_logits(bits, torch.tensor([1.0, 0.0, 1.0, 0.0]), 1.0, categorical=False)
    assert gapped_bits.tolist() == [1.0, -1.0, 1.0, -1.0]


def test_one_layer_and_training_step_runs():
    model = tiny(latent=(3,))
    est = get("relax", hidden=8)
    x = X.expand(16, 5)
    params = [*model.parameters(), *est.parameters(model)]
    before = est.eta.detach().clone()
    loss = est.loss(model, x, k=2)                       # update=True: one control-variate step
    assert loss.shape == (16,) and torch.isfinite(loss).all()
    assert not torch.equal(before, est.eta.detach())
    (-loss.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert len(params) > len(list(model.parameters()))


def test_why_not_accepts_sbns():
    model = tiny()
    for name in ("rebar", "relax", "lax", "arm", "disarm", *RELAXATIONS):
        assert get(name).applies_to(model)
    vae = vt.models.GaussianVAE(5, 4, latent_dim=2)
    assert "only sigmoid belief nets" in get("igr").why_not(vae)


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="x must"):
        get("rebar").loss(model, torch.full((2, 5), 0.5))
    with pytest.raises(ValueError, match="k must be"):
        get("arm").loss(model, X, k=0)
    with pytest.raises(ValueError, match="x must"):
        get("disarm").loss(model, torch.ones(2, 4))
    with pytest.raises(ValueError, match="model must be a sigmoid belief net"):
        get("arm").loss(vt.problems.BernoulliQuadratic(), X)
    with pytest.raises(ValueError, match="k must be"):
        get("lax").loss(model, X, k=0)
    with pytest.raises(ValueError, match="steps must be"):
        get("rebar").fit_control_variate(model, X, steps=-1)
    with pytest.raises(ValueError, match="batch_size must be"):
        get("relax").fit_control_variate(model, X, batch_size=0)
