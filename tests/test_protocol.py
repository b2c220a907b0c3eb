"""Tests for the one estimator protocol (vitools.estimators.base, vitools.targets), across every
registered estimator and every kind of target.

* declared options: defaults work; an unknown or ill-typed option is a ValueError naming it;
  ``describe`` lists every option;
* the applicability matrix: ``why_not`` is total (never raises, None or a specific reason) and
  ``applies_to`` agrees with it; wherever an estimator says it applies, ``est(target, k)`` runs
  forward and backward with finite gradients;
* unbiasedness: wherever an unbiased estimator applies to a target with an exact answer (toy
  closed forms, enumeration of a tiny SBN and categorical VAE, quadrature of a tiny Gaussian
  VAE), the mean of ``grad_samples`` agrees with the exact gradient, |z| < 4 per parameter;
* the batch convention of ``grad_samples``; ``eval()`` mode changes no state; state follows the
  target's signature.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D
from torch import nn

import vitools as vt
from vitools import diagnostics as dg
from vitools.implicit.problems import GammaLog
from vitools.models.vae import expected_elbo
from vitools.models.vrnn import VRNN
from vitools.problems import enumerate_states
from vitools.targets import ProblemTarget, Target

NAMES = vt.estimators.names()
N_TOY = 20_000          # gradient estimates per toy check
N_MODEL = 20_000        # ... per model-target check
Z_MAX = 4.0


# ---------------------------------------------------------------------- targets of every kind
class UserBits:
    """A Problem written as a user would, in a notebook cell: three independent bits,
    f(b) = sum_i (b_i - t_i)^2, exact gradient in closed form."""

    t = (0.2, 0.7, 0.5)

    def __init__(self, dtype=torch.float32):
        self.dtype = dtype

    def __repr__(self):
        return f"UserBits({self.dtype})"

    def init_params(self):
        return torch.tensor([0.3, -0.5, 1.0], dtype=self.dtype, requires_grad=True)

    def distribution(self, theta):
        return D.Independent(D.Bernoulli(logits=theta), 1)

    def cost(self, z):
        return ((z - torch.tensor(self.t, dtype=z.dtype, device=z.device)) ** 2).sum(-1)

    def exact_value(self, theta):
        t = torch.tensor(self.t, dtype=theta.dtype)
        return (t**2 + torch.sigmoid(theta) * (1 - 2 * t)).sum(-1)

    def exact_grad(self, theta):
        p, t = torch.sigmoid(theta.detach()), torch.tensor(self.t, dtype=theta.dtype)
        return p * (1 - p) * (1 - 2 * t)


def _toy(problem):
    return problem.at(problem.init_params()) if hasattr(problem, "at") else ProblemTarget(problem, problem.init_params())


def _sbn():
    torch.manual_seed(0)
    model = vt.models.SBN(5, latent=(2, 1)).double()
    x = torch.bernoulli(torch.full((2, 5), 0.5), generator=torch.Generator().manual_seed(3)).double()
    return model, x


def _cat_vae():
    model = vt.models.CategoricalVAE(input_dim=4, hidden=(8,), num_latents=2, num_classes=3, seed=0).double()
    return model, torch.rand(2, 4, generator=torch.Generator().manual_seed(4)).double()


def _vae():
    model = vt.models.GaussianVAE(input_dim=4, hidden=(8,), latent_dim=2, seed=0).double()
    return model, torch.rand(2, 4, generator=torch.Generator().manual_seed(5)).double()


def _vrnn():
    torch.manual_seed(0)
    model = VRNN(hidden=8, latent=2, data_dim=3, data_mean=torch.full((3,), 0.3))
    x = torch.bernoulli(torch.full((2, 4, 3), 0.3), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(2, 4)
    x[1, 2:], mask[1, 2:] = 0, 0                     # the second sequence is two steps long
    return model, x, mask


def _model_target(build):
    def make():
        model, *data = build()
        return model.on(*data)
    return make


CATALOG = vt.problems.catalog()
KINDS = {f"toy: {label}": (lambda f=f: _toy(f())) for label, f in CATALOG.items()}
KINDS.update({
    "toy: Gamma, log x": lambda: _toy(GammaLog()),
    "user: Independent(Bernoulli)": lambda: _toy(UserBits()),
    "user: Independent(Bernoulli), float64": lambda: _toy(UserBits(torch.float64)),
    "sbn": _model_target(_sbn),
    "categorical_vae": _model_target(_cat_vae),
    "gaussian_vae": _model_target(_vae),
    "vrnn": _model_target(_vrnn),
    "not a target: int": lambda: 3,
    "not a target: str": lambda: "sbn",
    "not a target: nn.Linear": lambda: nn.Linear(2, 2),
})
MODELS = {"sbn": _sbn, "categorical_vae": _cat_vae, "gaussian_vae": _vae, "vrnn": _vrnn}

# A reason must say what is missing; the base class's generic one says nothing.
SPECIFIC = ("discrete", "continuous", "bernoulli", "categorical", "gamma", "sequence", "toy", "support",
            "differentiable", "rsample", "reparameter", "layered", "binary", "particle", "weak derivative",
            "latent", "relax")
GENERIC = "not implemented for"


def _k(est) -> int:
    return max(est.min_samples, 2)


def _leaves(target) -> dict[str, torch.Tensor]:
    if isinstance(target, ProblemTarget):
        return {"theta": target.theta}
    return {f"model.{n}": p for n, p in target.model().named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------- options
def _bad_values(spec) -> list:
    if spec.kind == "bool":
        return [1, "yes", None]
    if spec.kind == "choice":
        return ["nonsense", True] + ([] if spec.number else [1.5])
    bad = ["1", None, True]
    if spec.kind == "int":
        low = int(spec.minimum if spec.minimum is not None else 0)
        return bad + [low - 1, 2.5]
    if spec.kind == "probability":
        return bad + [-0.1, 1.5, float("nan")]
    if spec.minimum is not None:
        bad += [spec.minimum, spec.minimum - 1]
    if spec.maximum is not None:
        bad += [spec.maximum + 1]
    return bad + [float("nan")]


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_declared_options(name):
    cls = type(vt.estimators.get(name))
    est = vt.estimators.get(name)
    assert isinstance(est, nn.Module) and est.name == name
    assert set(est.options) == set(cls.OPTIONS)
    for option, spec in cls.OPTIONS.items():
        vt.estimators.get(name, **{option: spec.default})          # each default passes its own check


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_names_it_and_lists_the_known_ones(name):
    with pytest.raises(ValueError) as err:
        vt.estimators.get(name, typo=1)
    message = str(err.value)
    assert "typo" in message
    cls = type(vt.estimators.get(name))
    for option in cls.OPTIONS:
        assert option in message, (option, message)
    if not cls.OPTIONS:
        assert "none" in message, message


@pytest.mark.parametrize("name", NAMES)
def test_ill_typed_options_name_the_option(name):
    cls = type(vt.estimators.get(name))
    for option, spec in cls.OPTIONS.items():
        for value in _bad_values(spec):
            with pytest.raises(ValueError) as err:
                vt.estimators.get(name, **{option: value})
            assert option in str(err.value), (option, value, str(err.value))


@pytest.mark.parametrize("name", NAMES)
def test_describe_mentions_every_option(name):
    text = vt.estimators.describe(name)
    assert name in text
    for option in type(vt.estimators.get(name)).OPTIONS:
        assert option in text, (option, text)


def test_unknown_estimator_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="score_function"):
        vt.estimators.get("scor_function")


# ---------------------------------------------------------------------- the applicability matrix
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", NAMES)
def test_why_not_is_total_and_runs_where_it_says_so(name, kind):
    est, target = vt.estimators.get(name), KINDS[kind]()
    reason = est.why_not(target)                                   # must not raise
    assert reason is None or (isinstance(reason, str) and reason.strip()), repr(reason)
    assert est.applies_to(target) == (reason is None)
    if reason is not None:
        low = reason.lower()
        assert GENERIC not in low, f"{name} on {kind}: generic reason {reason!r}"
        if not isinstance(target, Target) and not hasattr(target, "init_params"):
            assert type(target).__name__ in reason, f"{name} on {kind}: {reason!r} does not say what it got"
        else:
            assert any(word in low for word in SPECIFIC), f"{name} on {kind}: unspecific reason {reason!r}"
        return
    assert isinstance(target, Target), f"{name} says it applies to {kind}"
    leaves = _leaves(target)
    est.train()
    out = est(target, _k(est))
    assert isinstance(out, vt.estimators.Estimate)
    assert torch.isfinite(out.surrogate.detach()).all(), f"{name} on {kind}: surrogate {out.surrogate}"
    grads = torch.autograd.grad(out.surrogate.sum(), list(leaves.values()), allow_unused=True)
    got = {n: g for n, g in zip(leaves, grads) if g is not None}
    assert got, f"{name} on {kind}: the surrogate reaches none of {sorted(leaves)}"
    for n, g in got.items():
        assert torch.isfinite(g).all(), f"{name} on {kind}: gradient of {n} is not finite: {g}"
    if out.control_loss is not None:
        params = [p for p in est.parameters() if p.requires_grad]
        assert torch.isfinite(out.control_loss.detach()), f"{name} on {kind}: control loss {out.control_loss}"
        for p, g in zip(params, torch.autograd.grad(out.control_loss, params, allow_unused=True)):
            assert g is None or torch.isfinite(g).all(), f"{name} on {kind}: control gradient not finite"


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("name", NAMES)
def test_why_not_reads_a_model_like_its_example_target(name, model):
    est, built = vt.estimators.get(name), MODELS[model]()[0]
    assert est.why_not(built) == est.why_not(built.example_target())


# ---------------------------------------------------------------------- unbiasedness
def _exact_model_grad(model, objective) -> dict[str, torch.Tensor]:
    """``{"model.<name>": gradient of objective().sum()}``, named as grad_samples names them."""
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(objective().sum(), list(params.values()), allow_unused=True)
    return {f"model.{n}": torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}


def _cat_vae_exact_bound(model, x, k):
    """E[log (1/k) sum_j w_j] for the categorical VAE by enumerating every k-tuple of codes: [N]."""
    index = enumerate_states(model.num_latents, model.num_classes)                 # [S, L]
    codes = nn.functional.one_hot(index, model.num_classes).to(x.dtype)            # [S, L, C]
    log_q = (codes[:, None] * model._encode(x)).sum((-2, -1))                      # [S, N]
    log_p = model._decode(codes[:, None]).log_prob(x) - model.num_latents * math.log(model.num_classes)
    tuples = enumerate_states(k, codes.shape[0])                                   # [T, k]
    bound = torch.logsumexp((log_p - log_q)[tuples], 1) - math.log(k)              # [T, N]
    return (log_q[tuples].sum(1).exp() * bound).sum(0)


MULTI_SAMPLE = ("vimco", "nvil_multisample")      # estimate the k-sample bound, not the ELBO
EXACT = {
    "sbn": (_sbn, lambda m, x, k: m.exact_bound(x, k) if k > 1 else m.exact_elbo(x)),
    "categorical_vae": (_cat_vae, lambda m, x, k: _cat_vae_exact_bound(m, x, k) if k > 1 else m.exact_bounds(x).elbo),
    "gaussian_vae": (_vae, lambda m, x, k: expected_elbo(m, x) if k == 1 else None),
}


def _unbiased_cases():
    cases = []
    for name in NAMES:
        est = vt.estimators.get(name)
        if not est.unbiased:
            continue
        for kind in KINDS:
            if not (kind.startswith(("toy", "user")) or kind in EXACT):
                continue
            target = KINDS[kind]()
            if est.applies_to(target) and (kind in EXACT or target.problem.exact_grad(target.theta) is not None):
                cases.append((name, kind))
    return cases


UNBIASED = _unbiased_cases()


def test_every_unbiased_estimator_is_checked_somewhere():
    checked = {name for name, _ in UNBIASED}
    unchecked = [n for n in NAMES if vt.estimators.get(n).unbiased and n not in checked]
    assert not unchecked, f"unbiased estimators with no exact check: {unchecked}"


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", UNBIASED)
def test_unbiased_where_it_applies(name, kind):
    est = vt.estimators.get(name)
    k = 2 if name in MULTI_SAMPLE else max(est.min_samples, 1)
    if kind in EXACT:
        build, objective = EXACT[kind]
        model, x = build()
        target = model.on(x)
        bound_k = k if name in MULTI_SAMPLE else 1      # k samples of the ELBO (rloo, ...) estimate the ELBO
        exact = _exact_model_grad(model, lambda: objective(model, x, bound_k))
        samples = dg.grad_samples(est, target, n=N_MODEL, k=k, seed=0)
        assert set(exact) <= set(samples), sorted(samples)
        pairs = {p: (samples[p], exact[p]) for p in exact}
    else:
        target = KINDS[kind]()
        theta = target.theta.detach()
        samples = dg.grad_samples(est, target.problem, theta, n=N_TOY, k=k, seed=0)
        assert samples.shape == (N_TOY, *theta.shape)
        pairs = {"theta": (samples, target.problem.exact_grad(theta))}
    for param, (g, truth) in pairs.items():
        assert torch.isfinite(g).all(), f"{name} on {kind}: non-finite estimates of {param}"
        summary = dg.summarize(g, exact=truth)
        worst = summary.bias_z.abs().max().item()
        assert worst < Z_MAX, (f"{name} on {kind} (k={k}): |z| = {worst:.1f} for {param}; "
                               f"mean {summary.mean.flatten()[:6].tolist()}, exact {truth.flatten()[:6].tolist()}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gumbel_softmax", "straight_through"])
def test_the_unbiasedness_check_catches_a_biased_estimator(name):
    """The same sample sizes resolve the bias of a biased estimator (the check can fail)."""
    est = vt.estimators.get(name)
    model, x = _sbn()
    exact = _exact_model_grad(model, lambda: model.exact_elbo(x))
    samples = dg.grad_samples(est, model.on(x), n=N_MODEL, k=1, seed=0)
    worst = max(dg.summarize(samples[p], exact=e).bias_z.abs().max().item() for p, e in exact.items())
    assert worst > 2 * Z_MAX, worst


# ---------------------------------------------------------------------- the batch convention
class FirstRowProblem:
    """Breaks the batch convention: indexes theta[0] instead of theta[..., 0] (three parameters,
    the last unused, so that theta[0] of a replicated [2, 3] theta is a row of 3, not a batch of 2)."""

    def __init__(self, family):
        self.family = family

    def init_params(self):
        return torch.tensor([0.5, 0.0, 0.2], requires_grad=True)

    def distribution(self, theta):
        if self.family == "bernoulli":
            return D.Bernoulli(logits=theta[0] - theta[1])
        return D.Normal(theta[0], theta[1].exp())

    def cost(self, z):
        return z**2

    def exact_value(self, theta):
        return None

    def exact_grad(self, theta):
        return None


@pytest.mark.parametrize("family,name", [("normal", "score_function"), ("normal", "pathwise"),
                                         ("bernoulli", "score_function"), ("bernoulli", "rebar")])
def test_grad_samples_refuses_a_problem_that_breaks_the_batch_convention(family, name):
    problem = FirstRowProblem(family)
    est = vt.estimators.get(name)
    assert est.applies_to(problem)
    with pytest.raises(ValueError, match=r"theta\[\.\.\., i\]"):
        dg.grad_samples(est, problem, problem.init_params(), n=10, k=1, seed=0)


# ---------------------------------------------------------------------- state
def _state_snapshot(est):
    return {key: value.detach().clone() for key, value in est.state_dict().items()}


EVAL_CASES = [(name, kind) for name in NAMES for kind in KINDS
              if not kind.startswith("not a target") and vt.estimators.get(name).applies_to(KINDS[kind]())]


@pytest.mark.parametrize("name,kind", EVAL_CASES)
def test_eval_calls_leave_the_state_unchanged(name, kind):
    est, target = vt.estimators.get(name), KINDS[kind]()
    k = _k(est)
    est.train()
    est(target, k)                                  # builds the state, moves running statistics
    est.eval()
    before = _state_snapshot(est)
    for _ in range(3):
        out = est(target, k)
        assert out.control_loss is None, f"{name} returned a control loss in eval mode"
        out.surrogate.sum().backward()
    after = _state_snapshot(est)
    assert set(after) == set(before), (sorted(before), sorted(after))
    for key in before:
        assert torch.equal(before[key], after[key]), f"{name} on {kind}: eval() changed {key}"


def test_one_relax_object_keeps_one_state_per_target_shape():
    est = vt.estimators.get("relax", train_steps=3)
    problems = {bits: vt.problems.FactorisedBernoulli.random(bits, seed=bits) for bits in (2, 4)}
    for bits in (2, 4, 2, 4):
        problem = problems[bits]
        theta = problem.init_params()
        est.train()
        est.warm_up(problem.at(theta.detach().expand(8, bits)), k=1, steps=3)
        out = est(problem.at(theta), 1)
        assert out.surrogate.shape == () and out.control_loss is not None
        (g,) = torch.autograd.grad(out.surrogate, theta)
        assert g.shape == (bits,) and torch.isfinite(g).all()
        est.eval()
        samples = dg.grad_samples(est, problem, theta, n=50, k=1, seed=0, warm_up=False)
        assert samples.shape == (50, bits)
    assert len(est.states) == 2, list(est.states)
    shapes = sorted(p.shape for p in est.parameters())
    assert shapes, "relax has no control parameters"
    est.reset()
    assert len(est.states) == 0
