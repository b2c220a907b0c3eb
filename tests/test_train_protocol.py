"""vt.train.fit with an estimator: the one training loop of the estimator protocol.

Each step updates every model parameter once, on the negated surrogate, and every estimator
parameter once, on the control loss, which never reaches the model; estimators in eval() mode
change no state, and train() passes change only running statistics; and fit trains toys, SBNs,
Gaussian and categorical VAEs and sequence models through the same call.
"""
import copy

import pytest
import torch

import vitools as vt
from vitools.models.sbn import SBN
from vitools.models.vrnn import VRNN

from sbn_helpers import tiny

CPU = torch.device("cpu")


def sbn_data(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 5), 0.4), generator=gen)


def stateful(name):
    return {"nvil": lambda: vt.estimators.get("nvil", hidden=8),
            "relax": lambda: vt.estimators.get("relax", hidden=8),
            "score_ma": lambda: vt.estimators.get("score_function", baseline="moving_average")}[name]()


# ---------------------------------------------------------------------- each parameter once per step
@pytest.fixture
def optimizer_steps(monkeypatch):
    """Every optimizer step during the test: ``[(optimizer, {id(p) of the parameters it moved})]``."""
    calls = []
    for cls in (torch.optim.Adam, torch.optim.SGD):
        original = cls.step

        def step(self, *args, _original=original, **kwargs):
            moved = {id(p) for group in self.param_groups for p in group["params"] if p.grad is not None}
            calls.append((self, moved))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "step", step)
    return calls


@pytest.mark.parametrize("name", ["nvil", "relax"])
def test_fit_steps_every_model_and_estimator_parameter_once_per_step(name, optimizer_steps):
    model, x, est = tiny(), sbn_data(), stateful(name)
    versions = {id(p): p._version for p in model.parameters()}
    history = vt.train.fit(est, model, x, steps=3, batch_size=8, lr=1e-2, progress=False, device=CPU)
    model_ids = {id(p) for p in model.parameters()}
    est_ids = {id(p) for p in est.parameters()}
    assert est_ids and not (model_ids & est_ids)
    assert len(history.loss) == len(history.control_loss) == 3
    assert all(torch.isfinite(torch.tensor(history.control_loss)))
    optimizers = {id(opt) for opt, _ in optimizer_steps}
    assert len(optimizers) == 2 and len(optimizer_steps) == 6          # one model, one control step each
    counts = {i: sum(i in moved for _, moved in optimizer_steps) for i in model_ids | est_ids}
    assert all(c == 3 for c in counts.values()), counts
    for opt, moved in optimizer_steps:                                 # no optimizer mixes the two
        assert moved <= model_ids or moved <= est_ids
    assert all(p._version > versions[id(p)] for p in model.parameters())


@pytest.mark.parametrize("name", ["nvil", "relax"])
def test_one_fit_step_is_sgd_on_the_surrogate_and_adam_on_the_control_loss(name):
    """A manual step with the same random numbers: the model moves by SGD on -surrogate alone (the
    control loss, which for RELAX depends on the model, adds nothing), the estimator by one Adam
    step on the control loss."""
    model, x, est = tiny(), sbn_data(8), stateful(name)
    model2, est2 = copy.deepcopy(model), copy.deepcopy(est)
    lr, control_lr = 0.1, 0.01
    vt.train.fit(est, model, x, steps=1, batch_size=8, lr=lr, optimizer="sgd", control_lr=control_lr,
                 seed=0, progress=False, device=CPU)

    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))     # fit's shuffling
    est2.train()
    with vt.config.seeded(0):
        out = est2(model2.on(x[order]), 1)
    loss = -out.surrogate.sum() / 8
    params = list(model2.parameters())
    model_grads = torch.autograd.grad(loss, params, retain_graph=True)
    control_params = [p for p in est2.parameters() if p.requires_grad]
    leak = torch.autograd.grad(out.control_loss, params, allow_unused=True, retain_graph=True)
    control_grads = torch.autograd.grad(out.control_loss, control_params, allow_unused=True)
    for p, g in zip(control_params, control_grads):
        p.grad = None if g is None else g.detach()
    torch.optim.Adam(control_params, lr=control_lr).step()
    with torch.no_grad():
        for p, g in zip(params, model_grads):
            p -= lr * g
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters()):
        assert torch.allclose(p, p2, atol=1e-6), n
    for (n, p), p2 in zip(est.named_parameters(), est2.parameters()):
        assert torch.allclose(p, p2, atol=1e-6), n
    assert any(g is not None and g.abs().sum() > 0 for g in control_grads)     # the estimator did move
    if name == "relax":           # the control loss does depend on the model: fit must not step it
        assert any(g is not None and g.abs().sum() > 0 for g in leak)


# ---------------------------------------------------------------------- eval and train passes
def targets_for(name):
    if name == "score_ma":
        problem = vt.problems.BernoulliQuadratic(0.45, init=0.8)
        return [problem.at(problem.init_params()), tiny().on(sbn_data())]
    return [tiny().on(sbn_data())]


@pytest.mark.parametrize("name", ["score_ma", "nvil", "relax"])
def test_eval_passes_change_no_state_and_train_passes_only_running_statistics(name):
    est = stateful(name)
    for target in targets_for(name):
        est.train()
        est(target, 2)                                                     # builds the state
        before = copy.deepcopy(est.state_dict())
        est.eval()
        for _ in range(3):
            out = est(target, 2)
            assert out.control_loss is None
            out.surrogate.sum().backward()
        after = est.state_dict()
        assert after.keys() == before.keys()
        assert all(torch.equal(before[key], after[key]) for key in before), name
        est.train()
        params_before = {n: p.detach().clone() for n, p in est.named_parameters()}
        for _ in range(3):
            out = est(target, 2)
            out.surrogate.sum().backward()
            if out.control_loss is not None:
                out.control_loss.backward()                                # gradients, but no step
        assert all(torch.equal(p, params_before[n]) for n, p in est.named_parameters())
        buffers = {n for n, _ in est.named_buffers()}
        changed = {key for key, value in est.state_dict().items() if not torch.equal(value, before[key])}
        assert changed <= buffers, changed - buffers
        if name in ("score_ma", "nvil"):                                   # running statistics move
            assert changed
        else:
            assert not buffers and not changed


# ---------------------------------------------------------------------- every model family
def test_fit_rebar_on_a_toy_descends_the_exact_cost():
    problem = vt.problems.FactorisedBernoulli.random(4, seed=1, logits=[0.5, -1.0, 0.3, 1.2])
    theta = problem.init_params()
    start = float(problem.exact_value(theta.detach()))
    best = float(problem.costs.min())
    history = vt.train.fit(vt.estimators.get("rebar"), problem, steps=300, lr=0.05, k=1, theta=theta,
                           progress=False)
    end = float(problem.exact_value(theta.detach()))
    assert len(history.control_loss) == 300
    assert end < start - 0.5 * (start - best), (start, end, best)


@pytest.mark.parametrize("name", ["iwae", "dreg"])
def test_fit_gaussian_vae_improves_its_bound(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((64, 8), 0.3), generator=gen)
    x[:32, :4] = 1.0
    vae = vt.models.GaussianVAE(input_dim=8, hidden=16, latent_dim=2, seed=0, device=CPU)

    def bound():
        with torch.no_grad(), vt.config.seeded(1):
            return float(vae.iwae_bound(x, k=5).mean())
    before = bound()
    history = vt.train.fit(vt.estimators.get(name), vae, x, steps=150, batch_size=32, lr=1e-2, k=5,
                           progress=False, device=CPU)
    assert history.control_loss and all(v != v for v in history.control_loss)     # no control loss: NaN
    assert bound() > before + 0.5, (before, bound())


def test_fit_vrnn_with_fivo_improves_its_bound():
    torch.manual_seed(0)
    model = VRNN(hidden=8, latent=2, data_dim=4, data_mean=torch.full((4,), 0.3))
    gen = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((16, 5, 4), 0.3), generator=gen)
    x[:, ::2, 0] = 1.0
    mask = torch.ones(16, 5)

    def bound():
        with torch.no_grad():
            return float(vt.smc.fivo(model, x, 4, mask, seed=2).log_z.mean())
    before = bound()
    vt.train.fit(vt.estimators.get("fivo"), model, (x, mask), steps=60, batch_size=8, lr=2e-2, k=4,
                 progress=False, device=CPU)
    assert bound() > before + 0.5, (before, bound())


def test_fit_categorical_vae_with_gumbel_softmax_improves_its_bound():
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((64, 6), 0.3), generator=gen)
    x[:32, :3] = 1.0
    vae = vt.models.CategoricalVAE(input_dim=6, hidden=8, num_latents=2, num_classes=3, seed=0, device=CPU)

    def bound():
        with torch.no_grad():
            return float(vae.exact_bounds(x).elbo.mean())
    before = bound()
    vt.train.fit(vt.estimators.get("gumbel_softmax"), vae, x, steps=150, batch_size=32, lr=1e-2, k=1,
                 progress=False, device=CPU)
    assert bound() > before + 0.3, (before, bound())
