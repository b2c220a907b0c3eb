"""Tests for vitools.estimators.nvil: unbiasedness against enumeration for every combination
of NVIL's components, baselines that depend on x only, training, input checks."""
import itertools

import pytest
import torch

import vitools as vt
from vitools.estimators.amortized import flat, model_grad_samples
from vitools.models.sbn import SBN

from sbn_helpers import X, exact_grads, max_abs_z, tiny

N_DRAWS = 10_000


def primed(model, x=X, steps=5, **options):
    """An NVIL estimator with non-trivial state: random baseline net, running statistics."""
    est = vt.estimators.get("nvil", hidden=8, **options)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in est.parameters(model):
            p.normal_(0, 0.5)
    for _ in range(steps):
        est.loss(model, x.repeat(64, 1), k=1)
    return est


def exact_targets(model, est, x=X):
    """{name: exact expected gradient}: grad ELBO for theta, grad ELBO / scale for phi."""
    scale = est.scale(model, x.device).flatten()
    out = exact_grads(model, model.exact_elbo(x))
    for name in out:
        if name.startswith("model.encoders."):
            layer = int(name.split(".")[2])
            out[name] = out[name] / scale[layer if est.local_signals else 0]
    return out


COMBOS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("constant,input_,normalize,local", COMBOS)
def test_nvil_unbiased_for_every_combination(constant, input_, normalize, local):
    model = tiny()
    est = primed(model, constant_baseline=constant, input_baseline=input_, normalize=normalize,
                 local_signals=local)
    if normalize:
        assert (est.scale(model, "cpu") > 1).any()       # the normalization really rescales
    before = (est.running_mean, est.running_var)
    samples = model_grad_samples(est, model, X, n=N_DRAWS, k=1, seed=2)
    assert est.running_mean is before[0] and est.running_var is before[1]    # frozen state
    exact = exact_targets(model, est)
    assert max_abs_z(samples, exact) < 4
    if input_ and not local:     # the baseline net descends E[(l - c - b(x))^2]
        b, c = est.baseline(model, X)
        err = (model.exact_elbo(X) - c.flatten() - b.flatten()).detach()
        target = torch.autograd.grad((2 * err * est.baseline_net(X)[:, 0]).sum(), est.parameters(model))
        names = [f"aux.baseline_net.{n}" for n, _ in est.baseline_net.named_parameters()]
        assert max_abs_z(samples, dict(zip(names, target))) < 4


def test_the_test_detects_a_wrong_target():
    """Power: a normalized estimator compared with the unnormalized gradient fails widely."""
    model = tiny()
    est = primed(model, normalize=True)
    samples = model_grad_samples(est, model, X, n=N_DRAWS, k=1, seed=2)
    exact = exact_targets(model, vt.estimators.get("nvil", normalize=False))
    assert max_abs_z(samples, exact) > 10


def test_multiple_samples_and_nonlinear_model_unbiased():
    torch.manual_seed(0)
    model = SBN(5, (2, 2), nonlinear=True, hidden=3)
    est = primed(model, local_signals=True)
    samples = model_grad_samples(est, model, X, n=N_DRAWS // 2, k=3, seed=5)
    assert max_abs_z(samples, exact_targets(model, est)) < 4


def test_baselines_variance_reduction_on_inference_gradient():
    model = tiny()
    plain = vt.estimators.get("nvil", constant_baseline=False, input_baseline=False, normalize=False)
    with_c = primed(model, input_baseline=False, normalize=False, steps=50)
    var_plain = flat(model_grad_samples(plain, model, X, n=5000), "model.encoders").var(0).sum()
    var_c = flat(model_grad_samples(with_c, model, X, n=5000), "model.encoders").var(0).sum()
    assert var_c < 0.5 * var_plain


def test_baseline_depends_on_x_only():
    model, x = tiny(), torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 0, 0, 1]])
    est = primed(model)
    torch.manual_seed(0)
    b1, c1 = est.baseline(model, x)
    est.loss(model, x, 4, update=False)           # new latent draws, state frozen
    torch.manual_seed(123)
    b2, c2 = est.baseline(model, x)
    assert torch.equal(b1, b2) and torch.equal(c1, c2)
    assert b1[0, 0, 0] != b1[0, 0, 1]                # a genuine function of x
    assert est.baseline_net[0].in_features == model.x_dim


def test_running_statistics_follow_the_signal():
    model = tiny()
    est = vt.estimators.get("nvil", input_baseline=False, decay=0.5)
    for _ in range(20):
        est.loss(model, X.repeat(1000, 1), 1)
    elbo = model.exact_elbo(X).item()
    assert abs(est.running_mean.item() - elbo) < 0.2
    est.reset()
    assert est.running_mean is None


def test_loss_value_is_the_elbo_estimate():
    model = tiny()
    est = primed(model)
    torch.manual_seed(0)
    values = est.loss(model, X.repeat(20_000, 1), 1, update=False).detach()
    assert abs(values.mean().item() - model.exact_elbo(X).item()) < 4 * values.std().item() / 20_000**0.5


def test_training_raises_exact_elbo():
    torch.manual_seed(0)
    model = SBN(5, (3,))
    x = torch.tensor([[1.0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1]])
    est = vt.estimators.get("nvil", local_signals=True, hidden=8)
    opt = torch.optim.Adam([*model.parameters(), *est.parameters(model)], lr=0.03)
    start = model.exact_elbo(x).mean().item()
    for _ in range(100):
        opt.zero_grad()
        (-est.loss(model, x.repeat(8, 1), 1).mean()).backward()
        opt.step()
    assert model.exact_elbo(x).mean().item() > start + 0.5


def test_registered_with_honest_applies_to():
    assert "nvil" in vt.estimators.names()
    est = vt.estimators.get("nvil")
    assert est.applies_to(tiny())
    assert not est.applies_to(vt.problems.BernoulliQuadratic())
    with pytest.raises(ValueError, match="works on models"):
        est(vt.problems.BernoulliQuadratic(), torch.zeros(1), 1)
    assert "b(x)" in est.label and "local" in vt.estimators.get("nvil", local_signals=True).label


def test_rejects_bad_options_and_input():
    model = tiny()
    with pytest.raises(ValueError, match="normalize must be True or False"):
        vt.estimators.get("nvil", normalize=1)
    with pytest.raises(ValueError, match="decay must lie in"):
        vt.estimators.get("nvil", decay=1.5)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        vt.estimators.get("nvil", hidden=0)
    est = vt.estimators.get("nvil")
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        est.loss(model, X, 0)
    with pytest.raises(ValueError, match="x must contain only 0 and 1"):
        est.loss(model, X * 0.5, 1)
    with pytest.raises(ValueError, match="x must end in shape"):
        est.loss(model, torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match="x must be one example"):
        model_grad_samples(est, model, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        model_grad_samples(est, model, X, n=0)
    with pytest.raises(ValueError, match="prefix must match"):
        flat({"model.a": torch.zeros(2, 1)}, "aux")
