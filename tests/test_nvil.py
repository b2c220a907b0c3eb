"""Tests for vitools.estimators.nvil: unbiasedness against enumeration for every combination
of NVIL's components, baselines that depend on x only, training, input checks."""
import copy
import itertools

import pytest
import torch

import vitools as vt
from vitools.diagnostics import flat, grad_samples, model_grad_samples
from vitools.models.sbn import SBN

from sbn_helpers import X, exact_grads, max_abs_z, tiny

N_DRAWS = 10_000


def primed(model, x=X, steps=5, **options):
    """An NVIL estimator with non-trivial state: random baseline net, running statistics."""
    est = vt.estimators.get("nvil", hidden=8, **options)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in est.baselines(model.on(x)).parameters():
            p.normal_(0, 0.5)
    est.train()
    for _ in range(steps):                      # train-mode passes fold the running statistics
        est(model.on(x.repeat(64, 1)), k=1)
    return est


def scale_of(est, target):
    """$\\max(1, \\hat\\sigma)$ per group: what normalization divides the inference gradient by."""
    state = est.baselines(target)
    if not est.options["normalize"] or state.count == 0:
        return torch.ones(est.groups(target))
    return state.running_var.sqrt().clamp_min(1.0)


def baseline_of(est, target):
    """``(b(x) [G, 1, N], c [G, 1, 1])`` as the estimator subtracts them from the signal."""
    state = est.baselines(target)
    n, groups = target.context.shape[0], est.groups(target)
    b = state.net(target.context).T[:, None, :] if state.net is not None else torch.zeros(groups, 1, n)
    c = torch.zeros(groups, 1, 1)
    if est.options["constant_baseline"] and state.count > 0:
        c = c + state.running_mean[:, None, None]
    return b, c


def state_key(est, target):
    """The name under which ``est.states`` holds the baselines built for ``target``."""
    state = est.baselines(target)
    return next(key for key, module in est.states.items() if module is state)


def exact_targets(model, est, x=X):
    """{name: exact expected gradient}: grad ELBO for theta, grad ELBO / scale for phi."""
    scale = scale_of(est, model.on(x)).flatten()
    out = exact_grads(model, model.exact_elbo(x))
    for name in out:
        if name.startswith("model.encoders."):
            layer = int(name.split(".")[2])
            out[name] = out[name] / scale[layer if est.options["local_signals"] else 0]
    return out


COMBOS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("constant,input_,normalize,local", COMBOS)
def test_nvil_unbiased_for_every_combination(constant, input_, normalize, local):
    model = tiny()
    est = primed(model, constant_baseline=constant, input_baseline=input_, normalize=normalize,
                 local_signals=local)
    target = model.on(X)
    if normalize:
        assert (scale_of(est, target) > 1).any()         # the normalization really rescales
    before = copy.deepcopy(est.state_dict())
    samples = grad_samples(est, target, n=N_DRAWS, k=1, seed=2)
    after = est.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)        # frozen state
    exact = exact_targets(model, est)
    assert max_abs_z(samples, exact) < 4
    key = state_key(est, target)
    names = [f"estimator.states.{key}.{n}" for n, _ in est.baselines(target).named_parameters()]
    assert sorted(n for n in samples if n.startswith("estimator.")) == sorted(names)
    for name in names:                                  # the surrogate never reaches the baseline
        assert torch.equal(samples[name], torch.zeros_like(samples[name])), name
    if input_ and not local:     # the control loss's gradient descends E[(l - c - b(x))^2]
        check_control_loss_gradient(model, est, constant)


def check_control_loss_gradient(model, est, constant, batches=400, size=25):
    """``batches`` independent control-loss gradients (each a mean over ``size`` draws at X, the
    state restored before each, so every one sees the same c) against
    $-2\\,(\\mathrm{ELBO}(x) - c - b(x))\\,\\nabla b(x)$."""
    target = model.on(X)
    state = est.baselines(target)
    b, c = baseline_of(est, target)
    err = (model.exact_elbo(X) - c.flatten() - b.flatten()).detach()
    params = list(state.net.parameters())
    exact = torch.autograd.grad((-2 * err * state.net(X)[:, 0]).sum(), params)
    snapshot = copy.deepcopy(est.state_dict())
    est.train()
    rows = []
    with vt.config.seeded(7):
        for _ in range(batches):
            est.load_state_dict(snapshot)
            out = est(model.on(X.repeat(size, 1)), 1)
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(out.control_loss, params)]))
    est.load_state_dict(snapshot)
    s = vt.diagnostics.summarize(torch.stack(rows), torch.cat([g.flatten() for g in exact]))
    assert s.bias_z.abs().max() < 4, s
    if constant:     # power: the same gradients against a target that ignores c fail widely
        wrong = torch.autograd.grad((-2 * (err + c.flatten()) * state.net(X)[:, 0]).sum(), params)
        z = vt.diagnostics.summarize(torch.stack(rows), torch.cat([g.flatten() for g in wrong])).bias_z
        assert z.abs().max() > 10


def test_the_test_detects_a_wrong_target():
    """Power: a normalized estimator compared with the unnormalized gradient fails widely."""
    model = tiny()
    est = primed(model, normalize=True)
    samples = grad_samples(est, model.on(X), n=N_DRAWS, k=1, seed=2)
    exact = exact_targets(model, vt.estimators.get("nvil", normalize=False))
    assert max_abs_z(samples, exact) > 10


def test_multiple_samples_and_nonlinear_model_unbiased():
    torch.manual_seed(0)
    model = SBN(5, (2, 2), nonlinear=True, hidden=3)
    est = primed(model, local_signals=True)
    samples = grad_samples(est, model.on(X), n=N_DRAWS // 2, k=3, seed=5)
    assert max_abs_z(samples, exact_targets(model, est)) < 4


def test_baselines_variance_reduction_on_inference_gradient():
    model = tiny()
    plain = vt.estimators.get("nvil", constant_baseline=False, input_baseline=False, normalize=False)
    with_c = primed(model, input_baseline=False, normalize=False, steps=50)
    var_plain = flat(grad_samples(plain, model.on(X), n=5000), "model.encoders").var(0).sum()
    var_c = flat(grad_samples(with_c, model.on(X), n=5000), "model.encoders").var(0).sum()
    assert var_c < 0.5 * var_plain


def test_warm_up_fits_the_baseline_with_the_model_fixed():
    model = tiny()
    est = vt.estimators.get("nvil", hidden=8, constant_baseline=False, normalize=False)   # b(x) alone
    model_before = copy.deepcopy(model.state_dict())
    est.eval()
    history = est.warm_up(model.on(X.repeat(64, 1)), steps=150, lr=0.03)
    assert len(history) == 150
    assert sum(history[-10:]) < 0.5 * sum(history[:10])       # the control loss descends
    assert all(torch.equal(v, model.state_dict()[n]) for n, v in model_before.items())
    assert not est.training                                   # the mode is restored
    var_plain = flat(grad_samples(vt.estimators.get("nvil", constant_baseline=False, input_baseline=False,
                                                    normalize=False), model.on(X), n=5000),
                     "model.encoders").var(0).sum()
    var_warm = flat(grad_samples(est, model.on(X), n=5000), "model.encoders").var(0).sum()
    assert var_warm < 0.5 * var_plain


def test_baseline_depends_on_x_only():
    model, x = tiny(), torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 0, 0, 1]])
    est = primed(model)
    torch.manual_seed(0)
    b1, c1 = baseline_of(est, model.on(x))
    est.eval()
    est(model.on(x), 4)                            # new latent draws, state frozen
    torch.manual_seed(123)
    b2, c2 = baseline_of(est, model.on(x))
    assert torch.equal(b1, b2) and torch.equal(c1, c2)
    assert b1[0, 0, 0] != b1[0, 0, 1]                # a genuine function of x
    assert est.baselines(model.on(x)).net[0].in_features == model.x_dim


def test_running_statistics_follow_the_signal():
    model = tiny()
    est = vt.estimators.get("nvil", input_baseline=False, decay=0.5)
    for _ in range(20):
        est(model.on(X.repeat(1000, 1)), 1)
    elbo = model.exact_elbo(X).item()
    state = est.baselines(model.on(X))
    assert abs(state.running_mean.item() - elbo) < 0.2
    assert int(state.count) == 20
    est.reset()
    assert len(est.states) == 0
    assert int(est.baselines(model.on(X)).count) == 0


def test_surrogate_value_is_the_elbo_estimate():
    model = tiny()
    est = primed(model).eval()
    torch.manual_seed(0)
    values = est(model.on(X.repeat(20_000, 1)), 1).surrogate.detach()
    assert abs(values.mean().item() - model.exact_elbo(X).item()) < 4 * values.std().item() / 20_000**0.5


def test_deprecated_loss_is_the_surrogate():
    model = tiny()
    est = primed(model)
    with pytest.warns(DeprecationWarning, match="est.loss"):
        with vt.config.seeded(0):
            old = est.loss(model, X.repeat(4, 1), 2, update=False)
    assert est.training                              # the mode is restored
    est.eval()
    with vt.config.seeded(0):
        new = est(model.on(X.repeat(4, 1)), 2).surrogate
    assert torch.equal(old, new)


def test_training_raises_exact_elbo():
    torch.manual_seed(0)
    model = SBN(5, (3,))
    x = torch.tensor([[1.0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1]])
    est = vt.estimators.get("nvil", local_signals=True, hidden=8)
    start = model.exact_elbo(x).mean().item()
    history = vt.train.fit(est, model, x.repeat(8, 1), steps=100, batch_size=32, lr=0.03, control_lr=0.03,
                           progress=False)
    assert len(history.control_loss) == 100
    assert model.exact_elbo(x).mean().item() > start + 0.5


def test_registered_with_honest_applies_to():
    assert "nvil" in vt.estimators.names()
    est = vt.estimators.get("nvil")
    assert est.applies_to(tiny())
    assert not est.applies_to(vt.problems.BernoulliQuadratic())
    assert "discrete latent-variable model" in est.why_not(vt.problems.BernoulliQuadratic())
    with pytest.raises(ValueError, match="does not apply to .*discrete latent-variable model"):
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
    with pytest.raises(ValueError, match="option 'baseline' is not an option of estimator 'nvil'"):
        vt.estimators.get("nvil", baseline="moving_average")
    est = vt.estimators.get("nvil")
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        est(model.on(X), 0)
    with pytest.raises(ValueError, match="x must contain only 0 and 1"):
        model.on(X * 0.5)
    with pytest.raises(ValueError, match="x must end in shape"):
        model.on(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="x must be one example"):
        model_grad_samples(est, model, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        grad_samples(est, model.on(X), n=0)
    with pytest.raises(ValueError, match="theta must be None for a target"):
        grad_samples(est, model.on(X), torch.zeros(1), n=10)
    with pytest.raises(ValueError, match="prefix must match"):
        flat({"model.a": torch.zeros(2, 1)}, "aux")
