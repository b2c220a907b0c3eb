"""Regressions of the estimator protocol: each test failed before its fix."""
import pytest
import torch

import vitools as vt
from vitools.models.ssm import LearnableProposal, LinearGaussianSSM

X = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["nvil", "relax", "rebar"])
def test_state_follows_the_targets_dtype(name):
    """One estimator on a float32 model, then on a float64 copy: separate states, no dtype error."""
    torch.manual_seed(0)
    single = vt.models.SBN(5, latent=(2, 1))
    double = vt.models.SBN(5, latent=(2, 1)).double()
    est = vt.estimators.get(name)
    est(single.on(X), 1)
    out = est(double.on(X.double()), 1)
    assert out.surrogate.dtype == torch.float64
    assert len(est.states) == 2


def test_state_follows_a_toy_problems_dtype():
    problem = vt.problems.FactorisedBernoulli.random(3, seed=0)
    est = vt.estimators.get("relax")
    est(problem.at(problem.init_params().float()), 1)
    assert est(problem.at(problem.init_params().double()), 1).surrogate.dtype == torch.float64


@pytest.mark.parametrize("thing", [vt.problems.GaussianQuadratic, vt.models.SBN, 3, "x"])
def test_why_not_answers_for_classes_and_other_objects(thing):
    for name in ("score_function", "nvil", "rebar", "pathwise"):
        reason = vt.estimators.get(name).why_not(thing)
        assert isinstance(reason, str) and reason


def test_why_not_answers_when_a_problems_init_params_fails():
    class Broken(vt.problems.GaussianQuadratic):
        def init_params(self):
            raise RuntimeError("no parameters today")
    assert "no parameters today" in vt.estimators.get("pathwise").why_not(Broken())


def test_delta_method_refuses_class_indices():
    class SmoothCategorical(vt.problems.CategoricalCost):
        cost_is_differentiable = True
    reason = vt.estimators.get("score_function", control_variate="delta").why_not(SmoothCategorical())
    assert reason is not None and "mean" in reason
    assert vt.estimators.get("score_function", control_variate="delta").why_not(vt.problems.PoissonQuadratic()) is None


def test_warm_up_on_a_model_says_what_to_pass():
    sbn = vt.models.SBN(5, latent=(2,))
    with pytest.raises(ValueError, match=r"model.on\(x\)"):
        vt.estimators.get("nvil").warm_up(sbn)


def test_grad_samples_and_fit_act_on_a_state_space_models_target():
    ssm = LinearGaussianSSM.scalar()
    learn = LearnableProposal(4, init_scale=2.0)
    model = ssm.with_proposal(learn)
    x = torch.randn(1, 4, 1)
    est = vt.estimators.get("fivo")
    grads = vt.diagnostics.grad_samples(est, model.on(x), n=16, k=3, seed=0)
    names = {name for name in grads if name.startswith("model.")}
    assert names == {f"model.source.{n}" for n, _ in learn.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values())
    before = [p.detach().clone() for p in learn.parameters()]
    vt.train.fit(est, model, x.expand(8, -1, -1), steps=2, batch_size=8, k=2, progress=False)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, learn.parameters()))


def test_fit_follows_the_targets_sense():
    """A toy cost is descended and a bound ascended: one step of SGD moves each the right way."""
    problem = vt.problems.BernoulliQuadratic(target=0.1, init=0.0)
    theta = problem.init_params()
    vt.train.fit(vt.estimators.get("arm"), problem, steps=1, lr=0.5, optimizer="sgd", theta=theta, progress=False)
    assert problem.exact_value(theta.detach()) < problem.exact_value(problem.init_params().detach())
