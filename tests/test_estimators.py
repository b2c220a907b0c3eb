"""Tests for vitools.estimators: the registry, applies_to, unbiasedness against exact
gradients (with a power check that wrong estimators fail at the same sample sizes), the
surrogate convention, training, and input checks.

Statistical tests use fixed seeds and |z| < 4 with the sample standard error; every case also
asserts that its standard error resolves 10% of the gradient's scale at z = 4, so that a
wrong estimator fails widely.
"""
import pytest
import torch

import vitools as vt
from vitools import problems as P
from vitools.diagnostics import grad_samples, summarize
from vitools.estimators import Estimate, Estimator, linear_surrogate, score_box
from vitools.estimators.pathwise import Pathwise
from vitools.estimators.score import RunningStats, ScoreFunction

N = 50_000          # estimates per unbiasedness test
Z_MAX = 4.0
RESOLUTION = 0.1    # 4 standard errors must be below 10% of max |exact gradient|

ESTIMATORS = {
    "score": lambda: vt.estimators.get("score_function"),
    "score_ma": lambda: vt.estimators.get("score_function", baseline="moving_average"),
    "score_loo": lambda: vt.estimators.get("score_function", baseline="leave_one_out"),
    "score_delta": lambda: vt.estimators.get("score_function", control_variate="delta"),
    "score_const": lambda: vt.estimators.get("score_function", baseline=0.3),     # any constant
    "pathwise": lambda: vt.estimators.get("pathwise"),
    "measure_valued": lambda: vt.estimators.get("measure_valued"),
}

PROBLEMS = {
    "gauss_quad": lambda: P.GaussianQuadratic(k=3.0, mu=1.0, sigma=1.0),
    "gauss_quad_wide": lambda: P.GaussianQuadratic(k=-1.0, mu=0.5, sigma=2.0),
    "gauss_exp": lambda: P.GaussianExp(k=1.0, mu=0.5, sigma=0.8),
    "gauss_cos": lambda: P.GaussianCos(k=1.5, mu=0.7, sigma=0.6),
    "bern_logit": lambda: P.BernoulliQuadratic(0.2, init=0.8),
    "bern_prob": lambda: P.BernoulliQuadratic(0.3, param="probability", init=0.3),
    "fact_bern": lambda: P.FactorisedBernoulli.random(5, seed=1, logits=torch.linspace(-1.0, 1.0, 5)),
    "fact_bern8": lambda: P.FactorisedBernoulli.random(8, seed=5, logits=torch.linspace(1.5, -1.5, 8)),
    "categorical": lambda: P.CategoricalCost(logits=[0.3, -0.2, 0.5, 0.0]),
    "poisson": lambda: P.PoissonQuadratic(k=5.0, rate=2.0),
    "uniform": lambda: P.UniformLinear(1.5),
}

# Which estimator applies to which problem (the acceptance matrix).
APPLIES = {
    "score": {"gauss_quad", "gauss_quad_wide", "gauss_exp", "gauss_cos", "bern_logit", "bern_prob",
              "fact_bern", "fact_bern8", "categorical", "poisson"},
    "score_delta": {"gauss_quad", "gauss_quad_wide", "gauss_exp", "gauss_cos", "bern_logit", "bern_prob",
                    "poisson"},
    "pathwise": {"gauss_quad", "gauss_quad_wide", "gauss_exp", "gauss_cos", "uniform"},
    "measure_valued": set(PROBLEMS),
}
APPLIES["score_ma"] = APPLIES["score_loo"] = APPLIES["score_const"] = APPLIES["score"]

UNBIASED_CASES = [
    (est, prob, k)
    for est in ESTIMATORS
    for prob in sorted(APPLIES[est])
    for k in ((4,) if est == "score_loo" else (1,))
] + [("score", "gauss_cos", 3), ("pathwise", "gauss_exp", 5), ("measure_valued", "poisson", 3),
     ("score_ma", "categorical", 2), ("score_delta", "gauss_exp", 3)]


def bias_check(estimator, problem, k=1, n=N, seed=0, force=False):
    """(summary, resolution): z-scores against the exact gradient, and 4 standard errors
    relative to the gradient's scale."""
    theta = problem.init_params()
    g = grad_samples(estimator, problem, theta, n=n, k=k, seed=seed, force=force)
    s = summarize(g, exact=problem.exact_grad(theta))
    resolution = float((Z_MAX * s.std_error).max() / s.exact.abs().max())
    return s, resolution


@pytest.mark.parametrize("est,prob,k", UNBIASED_CASES, ids=[f"{e}-{p}-k{k}" for e, p, k in UNBIASED_CASES])
def test_unbiased(est, prob, k):
    estimator, problem = ESTIMATORS[est](), PROBLEMS[prob]()
    assert estimator.unbiased
    s, resolution = bias_check(estimator, problem, k=k)
    assert s.bias_z.abs().max() < Z_MAX, s
    assert resolution < RESOLUTION, (resolution, s)


def test_each_unbiased_estimator_covers_three_problems():
    for est, probs in APPLIES.items():
        assert len({p for e, p, _ in UNBIASED_CASES if e == est}) >= 3, est
        assert len(probs) >= 3


# -- power: deliberately wrong estimators fail widely at the same sample size -----------
class ScaledPathwise(Pathwise):
    """Pathwise with its gradient (not its value) scaled by 1.1: a 10% error."""

    name = "scaled_pathwise_test"

    def estimate(self, target, k):
        s = super().estimate(target, k).surrogate
        return Estimate(s + 0.1 * (s - s.detach()))


class SelfBaseline(ScoreFunction):
    """The classic mistake: a baseline that includes the sample's own cost (mean of all k).
    Its gradient is (k - 1) / k times the true one."""

    name = "self_baseline_test"

    def _baseline(self, costs, stats):
        return costs.mean(0, keepdim=True).detach()


class HalfSelfBaseline(ScoreFunction):
    """Baseline b = f(z) / 2 that depends on the sample itself: the gradient is halved."""

    name = "half_self_baseline_test"

    def _baseline(self, costs, stats):
        return 0.5 * costs.detach()


POWER_CASES = [
    (ScaledPathwise, "gauss_cos", 1),
    (ScaledPathwise, "gauss_quad", 1),
    (ScaledPathwise, "gauss_exp", 1),
    (ScaledPathwise, "uniform", 1),
    (SelfBaseline, "gauss_exp", 4),
    (SelfBaseline, "bern_logit", 4),
    (SelfBaseline, "categorical", 4),
    (SelfBaseline, "fact_bern", 4),
    (HalfSelfBaseline, "gauss_cos", 1),
    (HalfSelfBaseline, "poisson", 1),
]


@pytest.mark.parametrize("cls,prob,k", POWER_CASES, ids=[f"{c.__name__}-{p}" for c, p, _ in POWER_CASES])
def test_wrong_estimators_fail_widely(cls, prob, k):
    s, _ = bias_check(cls(), PROBLEMS[prob](), k=k)
    assert s.bias_z.abs().max() > 2.5 * Z_MAX, s


def test_score_function_fails_on_uniform_and_says_so():
    estimator, problem = vt.estimators.get("score_function"), P.UniformLinear(1.0)
    assert not estimator.applies_to(problem)
    assert "support" in estimator.why_not(problem)
    theta = problem.init_params()
    with pytest.raises(ValueError, match=r"does not apply to UniformLinear.*force=True"):
        grad_samples(estimator, problem, theta, n=100)
    s, _ = bias_check(estimator, problem, force=True)
    assert float(s.exact) == pytest.approx(0.5)
    assert float(s.mean) == pytest.approx(-0.5, abs=0.02)      # E[x * (-1/theta)] = -1/2
    assert float(s.bias_z.abs()) > 100


# -- applies_to -----------------------------------------------------------------------------
MATRIX = [(e, p) for e in ESTIMATORS for p in PROBLEMS]


@pytest.mark.parametrize("est,prob", MATRIX, ids=[f"{e}-{p}" for e, p in MATRIX])
def test_applies_to_matrix(est, prob):
    estimator, problem = ESTIMATORS[est](), PROBLEMS[prob]()
    expected = prob in APPLIES[est]
    assert estimator.applies_to(problem) is expected
    reason = estimator.why_not(problem)
    assert (reason is None) is expected
    if not expected:
        assert isinstance(reason, str) and reason
        with pytest.raises(ValueError, match="does not apply"):
            grad_samples(estimator, problem, problem.init_params(), n=10, k=estimator.min_samples)


class GammaProblem(P.Problem):
    """A user-defined problem (the protocol, written in a test): Gamma(theta, 1), f(z) = z."""

    name = "gamma"

    def __init__(self):
        super().__init__([2.0])

    def distribution(self, theta):
        return torch.distributions.Gamma(theta[..., 0], torch.ones_like(theta[..., 0]))

    def cost(self, z):
        return z

    def exact_value(self, theta):
        return theta[..., 0]


class IndependentNormalProblem(P.Problem):
    name = "independent_normal"

    def __init__(self):
        super().__init__([0.5, -0.5])

    def distribution(self, theta):
        return torch.distributions.Independent(torch.distributions.Normal(theta, torch.ones_like(theta)), 1)

    def cost(self, z):
        return (z**2).sum(-1)

    def exact_value(self, theta):
        return (theta**2 + 1).sum(-1)


def test_applies_to_user_defined_problems():
    mv, pathwise = vt.estimators.get("measure_valued"), vt.estimators.get("pathwise")
    delta, score = vt.estimators.get("score_function", control_variate="delta"), vt.estimators.get("score_function")
    gamma, indep = GammaProblem(), IndependentNormalProblem()
    assert "Gamma" in mv.why_not(gamma) and mv.applies_to(indep)          # coordinate-wise weak derivatives
    assert pathwise.applies_to(gamma) and pathwise.applies_to(indep)       # Gamma has rsample
    assert "scalar latents" in delta.why_not(indep)
    assert score.applies_to(gamma) and score.applies_to(indep)
    for est in (score, pathwise):         # every applicable estimator works on a user's own problem
        s, _ = bias_check(est, gamma, n=20_000)
        assert abs(float(s.bias_z)) < Z_MAX, (est, s)
        s, _ = bias_check(est, indep, n=20_000)
        assert s.bias_z.abs().max() < Z_MAX, (est, s)


# -- the surrogate convention -----------------------------------------------------------------
VALUE_PROBLEMS = ("gauss_quad", "gauss_cos", "bern_prob", "fact_bern", "categorical", "poisson", "uniform")
VALUE_CASES = [(e, p) for e in ESTIMATORS for p in VALUE_PROBLEMS if p in APPLIES[e]]


@pytest.mark.parametrize("est,prob", VALUE_CASES, ids=[f"{e}-{p}" for e, p in VALUE_CASES])
def test_surrogate_value_is_unbiased(est, prob):
    estimator, problem = ESTIMATORS[est](), PROBLEMS[prob]()
    theta = problem.init_params().detach()
    k = estimator.min_samples
    with vt.config.seeded(0):
        estimator.warm_up(problem.at(theta), k)
        values = estimator(problem, theta.expand(N, *theta.shape), k).detach().double()
    assert values.shape == (N,)
    exact = float(problem.exact_value(theta))
    z = (values.mean() - exact) / (values.std() / values.numel() ** 0.5)
    assert abs(float(z)) < Z_MAX, (float(values.mean()), exact)


def test_surrogate_shapes_unbatched_and_batched():
    problem = P.GaussianCos()
    theta = problem.init_params()
    for estimator in vt.estimators.standard_set():
        k = estimator.min_samples + 1
        assert estimator(problem, theta, k).shape == ()
        assert estimator(problem, theta.detach().expand(3, 4, 2).clone(), k).shape == (3, 4)


def _train(estimator, problem, steps, lr, mask=None, k=8):
    with vt.config.seeded(0):
        theta = problem.init_params()
        opt = torch.optim.Adam([theta], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            estimator(problem, theta, k).mean().backward()
            if mask is not None:
                theta.grad.mul_(mask)
            opt.step()
    return theta.detach()


@pytest.mark.parametrize("est", sorted(e for e in ESTIMATORS if "bern_logit" in APPLIES[e]))
def test_training_bernoulli(est):
    problem = P.BernoulliQuadratic(target=0.45)     # E[(b - 0.45)^2] is smallest at p = 0
    theta = _train(ESTIMATORS[est](), problem, steps=100, lr=0.1)
    assert float(torch.sigmoid(theta[0])) < 0.1     # from p = 0.5


@pytest.mark.parametrize("est", sorted(e for e in ESTIMATORS if "gauss_quad" in APPLIES[e]))
def test_training_gaussian(est):
    problem = P.GaussianQuadratic(k=2.0, mu=-1.0, sigma=1.0)
    mask = vt.config.tensor([1.0, 0.0])             # train mu only (sigma -> 0 leaves the support)
    theta = _train(ESTIMATORS[est](), problem, steps=300, lr=0.05, mask=mask)
    assert float(theta[0]) == pytest.approx(2.0, abs=0.25)
    assert float(theta[1]) == 1.0


# -- stateful estimators ------------------------------------------------------------------------
@pytest.mark.parametrize("est", ["score_ma", "score_delta"])
def test_state_does_not_leak_between_problems(est):
    """grad_samples' warm-up starts from scratch: the same call gives the same numbers whatever ran
    before, and state shaped for one problem cannot bias another."""
    estimator = ESTIMATORS[est]()
    estimator.options["warmup_steps"] = 20           # keep the test fast; any value shows the leak
    assert estimator.warm_up_steps == 20
    bern = P.BernoulliQuadratic(0.45, init=0.8)
    theta = bern.init_params()
    first = grad_samples(estimator, bern, theta, n=2_000, seed=3)
    grad_samples(estimator, P.GaussianCos(), P.GaussianCos().init_params(), n=2_000, seed=4)
    assert torch.equal(first, grad_samples(estimator, bern, theta, n=2_000, seed=3))
    fresh = ESTIMATORS[est]()
    fresh.options["warmup_steps"] = 20
    assert torch.equal(first, grad_samples(fresh, bern, theta, n=2_000, seed=3))


def test_moving_average_tracks_the_mean_cost():
    estimator, problem = ESTIMATORS["score_ma"](), P.PoissonQuadratic()
    theta = problem.init_params()
    target = problem.at(theta.detach())
    with vt.config.seeded(0):
        estimator.warm_up(target, k=64)
    stats = estimator.state(target, RunningStats)
    assert int(stats.count) > 0                                      # warm-up settled the running mean
    assert float(stats.mean) == pytest.approx(float(problem.exact_value(theta.detach())), rel=0.15)
    estimator.eval()                                                 # frozen: eval passes change nothing
    before, count = float(stats.mean), int(stats.count)
    estimator(target, 64)
    assert float(stats.mean) == before and int(stats.count) == count
    estimator.reset()
    assert len(estimator.states) == 0
    assert int(estimator.state(target, RunningStats).count) == 0


def test_delta_coefficient_is_near_optimal():
    """For a quadratic cost the Taylor expansion is exact, so beta* = 1 and the estimate is exact."""
    estimator, problem = ESTIMATORS["score_delta"](), P.GaussianQuadratic(k=2.0)
    s, _ = bias_check(estimator, problem, n=5_000)
    (stats,) = estimator.states.values()                  # warmed up at theta by grad_samples
    coefficient = estimator._coefficient(stats)
    assert coefficient.shape == (2,)
    assert torch.allclose(coefficient.cpu().double(), torch.ones(2, dtype=torch.float64), atol=0.05)
    assert (s.variance.sqrt() < 0.05 * s.exact.abs()).all(), s


# -- building blocks --------------------------------------------------------------------------
def test_score_box_and_linear_surrogate():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    box = score_box(torch.log(x))
    assert torch.equal(box, torch.zeros(2))
    (grad,) = torch.autograd.grad((box * torch.tensor([3.0, 4.0])).sum(), x)
    assert torch.allclose(grad, torch.tensor([6.0, 2.0]))                  # signal / x
    params = [x * 2, (x**2).unsqueeze(-1).expand(2, 3)]
    out = linear_surrogate(torch.tensor([1.0, 1.0]), params, [torch.ones(2), torch.ones(2, 3)])
    assert torch.equal(out.detach(), torch.ones(2))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, 2 + 3 * 2 * x.detach())


def test_registry():
    assert {"score_function", "pathwise", "measure_valued"} <= set(vt.estimators.names())
    assert vt.estimators.names() == sorted(vt.estimators.names())
    est = vt.estimators.get("score_function", baseline="leave_one_out")
    assert isinstance(est, ScoreFunction) and est.min_samples == 2 and est.baseline == "leave_one_out"
    assert "leave_one_out" in repr(est)
    labels = [e.label for e in vt.estimators.standard_set()]
    assert len(set(labels)) == 6
    assert vt.estimators.get("pathwise") is not vt.estimators.get("pathwise")


def test_register_requires_a_name():
    class Nameless(Estimator):
        pass

    with pytest.raises(ValueError, match="Nameless must set a non-empty name"):
        vt.estimators.register(Nameless)


# -- bad input ----------------------------------------------------------------------------------
BAD_OPTIONS = [
    (dict(baseline="mean"), r"baseline must be one of \['none', 'moving_average', 'leave_one_out'\] or a number, got 'mean'"),
    (dict(control_variate="taylor"), r"control_variate must be one of \[None, 'delta'\], got 'taylor'"),
    (dict(control_variate="delta", baseline="leave_one_out"), r"baseline must be 'none' with control_variate='delta', got 'leave_one_out'"),
    (dict(decay=1.5), r"decay must lie in \[0, 1\], got 1.5"),
    (dict(warmup_steps=-1), r"warmup_steps must be an integer >= 0, got -1"),
    (dict(baseline=float("nan")), r"baseline must be finite, got nan"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=[m[:30] for _, m in BAD_OPTIONS])
def test_bad_score_options(options, message):
    with pytest.raises(ValueError, match=message):
        vt.estimators.get("score_function", **options)


def test_unknown_estimator_name():
    with pytest.raises(ValueError, match=r"name must be a registered estimator, got 'reinforce'; known: .*score_function"):
        vt.estimators.get("reinforce")


@pytest.mark.parametrize("est,k,minimum", [("score", 0, 1), ("pathwise", -2, 1), ("score_loo", 1, 2), ("measure_valued", 1.0, 1)])
def test_bad_k_in_call(est, k, minimum):
    problem = P.GaussianCos()
    with pytest.raises(ValueError, match=rf"k must be an integer >= {minimum}, got {k!r}"):
        ESTIMATORS[est]()(problem, problem.init_params(), k)


# -- GPU --------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("est", sorted(ESTIMATORS))
def test_unbiased_on_cuda(est, monkeypatch):
    monkeypatch.setenv(vt.config.ENV_DEVICE, "cuda")
    for prob in ("gauss_cos", "bern_logit", "uniform", "fact_bern"):
        if prob not in APPLIES[est]:
            continue
        estimator, problem = ESTIMATORS[est](), PROBLEMS[prob]()
        theta = problem.init_params()
        assert theta.device.type == "cuda"
        k = 4 if est == "score_loo" else 1
        g = grad_samples(estimator, problem, theta, n=N, k=k, seed=0)
        assert g.device.type == "cuda" and g.shape == (N, *theta.shape)
        s = summarize(g, exact=problem.exact_grad(theta))
        assert s.bias_z.abs().max() < Z_MAX, (est, prob, s)
