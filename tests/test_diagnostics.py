"""Tests for vitools.diagnostics: grad_samples (shape, seeding, RNG hygiene, chunking,
independence), summarize, compare, and exact_variance against closed forms, independent
quadrature (mpmath) and the sample variances of grad_samples."""
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools import diagnostics as dg
from vitools import problems as P

Z_MAX = 4.0


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps


def est(name, **options):
    return vt.estimators.get(name, **options)


# -- grad_samples -------------------------------------------------------------------------------
SHAPE_CASES = [
    (lambda: est("pathwise"), lambda: P.GaussianCos(), 1),
    (lambda: est("score_function", baseline="leave_one_out"), lambda: P.FactorisedBernoulli.random(5), 3),
    (lambda: est("measure_valued"), lambda: P.CategoricalCost(), 2),
    (lambda: est("score_function", control_variate="delta"), lambda: P.PoissonQuadratic(), 1),
]


@pytest.mark.parametrize("make_est,make_problem,k", SHAPE_CASES)
def test_grad_samples_shape(make_est, make_problem, k):
    problem = make_problem()
    theta = problem.init_params()
    g = dg.grad_samples(make_est(), problem, theta, n=123, k=k, seed=0)
    assert g.shape == (123, *theta.shape)
    assert g.dtype == theta.dtype and g.device == theta.device
    assert not g.requires_grad and theta.grad is None


@pytest.mark.parametrize("name,options", [("pathwise", {}), ("score_function", {"baseline": "moving_average"}),
                                          ("measure_valued", {}), ("score_function", {"control_variate": "delta"})])
def test_grad_samples_seeding(name, options):
    problem = P.GaussianExp(mu=0.3)
    theta = problem.init_params()
    torch.manual_seed(11)
    before = torch.get_rng_state()
    a = dg.grad_samples(est(name, **options), problem, theta, n=500, seed=1)
    assert torch.equal(torch.get_rng_state(), before)                 # global RNG untouched
    b = dg.grad_samples(est(name, **options), problem, theta, n=500, seed=1)
    c = dg.grad_samples(est(name, **options), problem, theta, n=500, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a != c).float().mean() > 0.9


def test_grad_samples_seed_none_uses_global_rng():
    problem, estimator = P.GaussianCos(), est("pathwise")
    torch.manual_seed(5)
    a = dg.grad_samples(estimator, problem, problem.init_params(), n=100, seed=None)
    b = dg.grad_samples(estimator, problem, problem.init_params(), n=100, seed=None)
    torch.manual_seed(5)
    assert not torch.equal(a, b)
    assert torch.equal(a, dg.grad_samples(estimator, problem, problem.init_params(), n=100, seed=None))


def _lag1_correlation(g):
    x = g.double() - g.double().mean(0)
    return (x[1:] * x[:-1]).mean(0) / x.var(0)


CHUNK_CASES = [("score_function", {}, P.BernoulliQuadratic(0.2, init=0.8), 1),
               ("score_function", {"baseline": "moving_average"}, P.GaussianCos(k=1.5, mu=0.7), 3),
               ("measure_valued", {}, P.PoissonQuadratic(k=5.0), 2),
               ("pathwise", {}, P.GaussianQuadratic(k=3.0), 1)]


@pytest.mark.parametrize("name,options,problem,k", CHUNK_CASES, ids=[c[0] + str(c[1]) for c in CHUNK_CASES])
def test_chunking_gives_the_same_distribution(monkeypatch, name, options, problem, k):
    theta, n = problem.init_params(), 30_000
    exact = problem.exact_grad(theta)
    whole = dg.summarize(dg.grad_samples(est(name, **options), problem, theta, n=n, k=k, seed=0), exact)
    monkeypatch.setattr(dg, "MAX_DRAWS_PER_CHUNK", 1_000)           # 30+ chunks
    g = dg.grad_samples(est(name, **options), problem, theta, n=n, k=k, seed=0)
    assert g.shape == (n, *theta.shape)
    chunked = dg.summarize(g, exact)
    assert chunked.bias_z.abs().max() < Z_MAX, chunked
    # same variance within sampling error (two independent runs)
    diff = (chunked.variance - whole.variance) / torch.sqrt(chunked.variance_std_error**2 + whole.variance_std_error**2)
    assert diff.abs().max() < Z_MAX, (chunked, whole)
    # rows stay independent across chunk boundaries too
    assert _lag1_correlation(g).abs().max() < Z_MAX / math.sqrt(n)


@pytest.mark.parametrize("name,options,problem,k", CHUNK_CASES, ids=[c[0] + str(c[1]) for c in CHUNK_CASES])
def test_rows_are_independent(name, options, problem, k):
    n = 40_000
    g = dg.grad_samples(est(name, **options), problem, problem.init_params(), n=n, k=k, seed=3)
    assert _lag1_correlation(g).abs().max() < Z_MAX / math.sqrt(n)
    x = g.double() - g.double().mean(0)                          # and far-apart rows too
    far = (x[n // 2:] * x[: n // 2]).mean(0) / x.var(0)
    assert far.abs().max() < Z_MAX / math.sqrt(n // 2)


def test_k_averages_k_samples():
    """With k samples the variance is the one-sample variance / k (independent terms)."""
    problem = P.GaussianCos(k=1.5, mu=0.7, sigma=0.6)
    theta = problem.init_params()
    v1 = dg.summarize(dg.grad_samples(est("pathwise"), problem, theta, n=40_000, k=1, seed=0))
    v8 = dg.summarize(dg.grad_samples(est("pathwise"), problem, theta, n=40_000, k=8, seed=1))
    z = (v1.variance / 8 - v8.variance) / torch.sqrt((v1.variance_std_error / 8) ** 2 + v8.variance_std_error**2)
    assert z.abs().max() < Z_MAX


# -- bad input to grad_samples ------------------------------------------------------------
def _gauss():
    return P.GaussianCos()


BAD_GRAD_SAMPLES = [
    (dict(n=0), r"n must be an integer >= 1, got 0"),
    (dict(n=-5), r"n must be an integer >= 1, got -5"),
    (dict(n=10.5), r"n must be an integer >= 1, got 10.5"),
    (dict(n=1e4), r"n must be an integer >= 1, got 10000.0"),
    (dict(k=0), r"k must be an integer >= 1, got 0"),
    (dict(k=2.0), r"k must be an integer >= 1, got 2.0"),
    (dict(estimator=est("score_function", baseline="leave_one_out"), k=1), r"k must be an integer >= 2, got 1"),
    (dict(seed=-1), r"seed must be a non-negative integer, got -1"),
    (dict(seed=0.5), r"seed must be a non-negative integer, got 0.5"),
    (dict(theta=[0.0, 1.0, 2.0]), r"theta must end in shape \(2,\) \(mu, sigma\), got shape \(3,\)"),
    (dict(theta=[[0.0], [1.0]]), r"theta must end in shape \(2,\).*got shape \(2, 1\)"),
    (dict(theta=[math.nan, 1.0]), r"theta must be finite, got nan"),
    (dict(theta=[0.0, math.inf]), r"theta must be finite, got inf"),
    (dict(theta=[0.0, -1.0]), r"sigma must be positive, got -1.0"),
]


@pytest.mark.parametrize("overrides,message", BAD_GRAD_SAMPLES, ids=[m for _, m in BAD_GRAD_SAMPLES])
def test_grad_samples_bad_input(overrides, message):
    args = dict(estimator=est("pathwise"), problem=_gauss(), theta=_gauss().init_params(), n=10, k=1, seed=0)
    args.update(overrides)
    if not isinstance(args["theta"], torch.Tensor):
        args["theta"] = vt.config.tensor(args["theta"])
    with pytest.raises(ValueError, match=message):
        dg.grad_samples(**args)


def test_grad_samples_refuses_inapplicable_estimator():
    problem = P.BernoulliQuadratic()
    with pytest.raises(ValueError, match=r"estimator 'pathwise' does not apply to BernoulliQuadratic.*rsample"):
        dg.grad_samples(est("pathwise"), problem, problem.init_params(), n=10)


# -- summarize / compare ----------------------------------------------------------------------
def test_summarize_statistics():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1000, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.1, -1.0, 3.0])
    exact = torch.tensor([0.0, -1.0, 2.0])
    s = dg.summarize(g, exact)
    g64 = g.double()
    assert torch.allclose(s.mean, g64.mean(0)) and torch.allclose(s.variance, g64.var(0))
    assert torch.allclose(s.std_error, (g64.var(0) / 1000).sqrt())
    assert torch.allclose(s.snr, g64.mean(0).abs() / g64.std(0))
    assert torch.allclose(s.bias_z, (g64.mean(0) - exact.double()) / s.std_error, rtol=1e-6)
    assert s.n == 1000 and s.bias_z[2] > 20 and abs(float(s.bias_z[1])) < Z_MAX
    fourth = ((g64 - g64.mean(0)) ** 4).mean(0)
    assert torch.allclose(s.variance_std_error, ((fourth - g64.var(0) ** 2) / 1000).sqrt(), rtol=1e-3)
    assert "bias z" in repr(s) and repr(s).count("\n") == 4
    no_exact = dg.summarize(g)
    assert no_exact.bias_z is None and "bias z" not in repr(no_exact)


def test_summarize_zero_variance():
    g = torch.full((100, 1), 0.025)
    assert abs(float(dg.summarize(g, torch.tensor([0.025])).bias_z)) < 1
    assert abs(float(dg.summarize(g, torch.tensor([0.0255])).bias_z)) > 100


@pytest.mark.parametrize("grads,exact,message", [
    (torch.zeros(1, 2), None, r"grads must have at least 2 estimates along dim 0, got shape \(1, 2\)"),
    (torch.zeros(()), None, r"grads must have at least 2 estimates along dim 0, got shape \(\)"),
    (torch.tensor([[0.0], [math.nan]]), None, r"grads must be finite, got nan"),
    (torch.zeros(5, 2), torch.zeros(3), r"exact must have shape \(2,\), got \(3,\)"),
])
def test_summarize_bad_input(grads, exact, message):
    with pytest.raises(ValueError, match=message):
        dg.summarize(grads, exact)


def test_compare_skips_inapplicable():
    problem = P.BernoulliQuadratic(0.2, init=0.8)
    theta = problem.init_params()
    results = dg.compare(vt.estimators.standard_set(), problem, theta, n=2_000, k=2, seed=0)
    assert "pathwise" not in results and len(results) == 5
    for label, s in results.items():
        assert isinstance(s, dg.GradientSummary) and s.n == 2_000
        assert s.bias_z.abs().max() < Z_MAX, label


# -- exact_variance -----------------------------------------------------------------------------
def _quadratic_closed_forms(mu, sigma, k):
    """One-sample variances [mu, sigma] on f(x) = (x - k)^2, x = mu + sigma * eps, by hand from
    Gaussian moments E eps^2,4,6,8 = 1, 3, 15, 105, Rayleigh Var W = (4 - pi) / 2, and the
    double-sided Maxwell M (E M^2 = 3, E M^4 = 15) times U(0, 1)."""
    a, s2 = mu - k, sigma**2
    return {
        "pathwise": [4 * s2, 4 * a**2 + 8 * s2],
        "score": [(a**4 + 18 * a**2 * s2 + 15 * s2**2) / s2 - 4 * a**2,
                  (2 * a**4 + 60 * a**2 * s2 + 78 * s2**2) / s2 - 4 * s2],
        "score_ideal_baseline": [8 * a**2 + 10 * s2, 40 * a**2 + 56 * s2],
        "measure_valued": [4 * a**2 * (4 - math.pi) / math.pi, 4 * a**2 + 4 * s2],
    }


@pytest.mark.parametrize("mu,sigma,k", [(1.0, 1.0, 3.0), (0.5, 2.0, -1.0), (-0.3, 0.4, 0.0)])
def test_exact_variance_closed_forms(mu, sigma, k):
    problem = P.GaussianQuadratic(k=k, mu=mu, sigma=sigma)
    theta = problem.init_params().detach()
    m, s = (float(v) for v in theta.double())        # the stored float32 values
    truth = _quadratic_closed_forms(m, s, problem.k)
    ideal = (m - problem.k) ** 2 + s**2
    estimators = {"pathwise": est("pathwise"), "score": est("score_function"),
                  "score_ideal_baseline": est("score_function", baseline=ideal),
                  "measure_valued": est("measure_valued")}
    for key, estimator in estimators.items():
        for kk in (1, 4):
            got = dg.exact_variance(estimator, problem, theta, k=kk)
            assert got.shape == theta.shape
            assert got.tolist() == pytest.approx([v / kk for v in truth[key]], rel=1e-6, abs=1e-9), (key, kk)
    delta = dg.exact_variance(est("score_function", control_variate="delta"), problem, theta)
    assert delta.abs().max() < 1e-8 * max(truth["score"])       # the Taylor expansion is exact


def test_exact_variance_pathwise_cos_closed_form():
    """grad_mu = -k sin(kx): Var = k^2 (1 - cos(2 k mu) e^{-2 k^2 s^2}) / 2 - k^2 sin^2(k mu) e^{-k^2 s^2}."""
    problem = P.GaussianCos(k=1.5, mu=0.7, sigma=0.6)
    theta = problem.init_params().detach()
    m, s = (float(v) for v in theta.double())
    k = problem.k
    truth = k**2 * (1 - math.cos(2 * k * m) * math.exp(-2 * k**2 * s**2)) / 2 \
        - k**2 * math.sin(k * m) ** 2 * math.exp(-(k**2) * s**2)
    assert float(dg.exact_variance(est("pathwise"), problem, theta)[0]) == pytest.approx(truth, rel=1e-6)


def _mp_var(g, density, lo, hi):
    first = mpmath.quad(lambda x: g(x) * density(x), [lo, 0, hi] if lo < 0 else [lo, hi])
    second = mpmath.quad(lambda x: g(x) ** 2 * density(x), [lo, 0, hi] if lo < 0 else [lo, hi])
    return float(second - first**2)


def test_exact_variance_against_mpmath_score_cos():
    mpmath.mp.dps = 15
    problem = P.GaussianCos(k=2.0, mu=0.4, sigma=0.9)
    theta = problem.init_params().detach()
    m, s = (mpmath.mpf(float(v)) for v in theta.double())
    k = problem.k
    f = lambda e: mpmath.cos(k * (m + s * e))                          # noqa: E731
    score_mu, score_sigma = (lambda e: f(e) * e / s), (lambda e: f(e) * (e**2 - 1) / s)
    truth = [_mp_var(g, mpmath.npdf, -mpmath.inf, mpmath.inf) for g in (score_mu, score_sigma)]
    got = dg.exact_variance(est("score_function"), problem, theta)
    assert got.tolist() == pytest.approx(truth, rel=1e-6)


def test_exact_variance_against_mpmath_measure_valued_exp():
    mpmath.mp.dps = 10
    problem = P.GaussianExp(k=1.0, mu=0.5, sigma=0.8)
    theta = problem.init_params().detach()
    m, s = (mpmath.mpf(float(v)) for v in theta.double())
    f = lambda x: mpmath.exp(-problem.k * x**2)                          # noqa: E731
    rayleigh = lambda w: w * mpmath.exp(-w**2 / 2)                        # noqa: E731
    g_mu = lambda w: (f(m + s * w) - f(m - s * w)) / (s * mpmath.sqrt(2 * mpmath.pi))   # noqa: E731
    var_mu = _mp_var(g_mu, rayleigh, 0, mpmath.inf)
    # scale: (f(m + s M) - f(m + s M U)) / s, M double-sided Maxwell, U ~ U(0, 1)
    maxwell = lambda x: mpmath.sqrt(2 / mpmath.pi) * x**2 * mpmath.exp(-x**2 / 2) / 2   # two-sided  # noqa: E731
    g_s = lambda x, u: (f(m + s * x) - f(m + s * x * u)) / s               # noqa: E731
    first = mpmath.quad(lambda x, u: g_s(x, u) * maxwell(x), [-10, 0, 10], [0, 1], maxdegree=5)
    second = mpmath.quad(lambda x, u: g_s(x, u) ** 2 * maxwell(x), [-10, 0, 10], [0, 1], maxdegree=5)
    got = dg.exact_variance(est("measure_valued"), problem, theta)
    assert got.tolist() == pytest.approx([var_mu, float(second - first**2)], rel=1e-5)


@pytest.mark.parametrize("estimator,problem", [
    (est("score_function", baseline="leave_one_out"), P.GaussianCos()),
    (est("score_function", baseline="moving_average"), P.GaussianCos()),
    (est("pathwise"), P.UniformLinear()),
    (est("score_function"), P.BernoulliQuadratic()),
    (est("measure_valued"), P.PoissonQuadratic()),
    (est("measure_valued"), P.CategoricalCost()),
])
def test_exact_variance_none_where_no_integral(estimator, problem):
    assert dg.exact_variance(estimator, problem, problem.init_params()) is None


def test_exact_variance_bad_k():
    problem = P.GaussianCos()
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got 0"):
        dg.exact_variance(est("pathwise"), problem, problem.init_params(), k=0)


VARIANCE_PROBLEMS = {
    "quad": lambda: P.GaussianQuadratic(k=3.0, mu=1.0, sigma=1.0),
    "exp": lambda: P.GaussianExp(k=1.0, mu=0.5, sigma=0.8),
    "cos": lambda: P.GaussianCos(k=1.5, mu=0.7, sigma=0.6),
}
VARIANCE_ESTIMATORS = {
    "score": lambda p: est("score_function"),
    "score_baseline": lambda p: est("score_function", baseline=float(p.exact_value(p.init_params().detach()))),
    "score_delta": lambda p: est("score_function", control_variate="delta"),
    "pathwise": lambda p: est("pathwise"),
    "measure_valued": lambda p: est("measure_valued"),
}
VARIANCE_CASES = [(e, p, k) for e in VARIANCE_ESTIMATORS for p in VARIANCE_PROBLEMS for k in (1, 4)
                  if not (e == "score_delta" and p == "quad")]      # zero variance: tested above


@pytest.mark.parametrize("e,p,k", VARIANCE_CASES, ids=[f"{e}-{p}-k{k}" for e, p, k in VARIANCE_CASES])
def test_sample_variance_matches_exact_variance(e, p, k):
    """The sample variance of grad_samples against quadrature, within its own standard error
    sqrt((m4 - s^4) / n) (heavy-tailed estimators get a wide band, as they should)."""
    problem = VARIANCE_PROBLEMS[p]()
    estimator = VARIANCE_ESTIMATORS[e](problem)
    theta = problem.init_params()
    n = 200_000 if (e, k) == ("score_delta", 1) else 50_000    # the delta CV's kurtosis is high
    s = dg.summarize(dg.grad_samples(estimator, problem, theta, n=n, k=k, seed=0))
    exact = dg.exact_variance(estimator, problem, theta, k=k).double()
    z = (s.variance - exact) / s.variance_std_error
    assert z.abs().max() < Z_MAX, (s.variance, exact, z)
    assert (s.variance_std_error < 0.1 * exact).all()                  # the test has power


def test_variance_check_has_power():
    """A pathwise gradient scaled by 1.1 has 21% more variance: the same check rejects it."""
    problem = VARIANCE_PROBLEMS["cos"]()
    theta = problem.init_params()
    g = 1.1 * dg.grad_samples(est("pathwise"), problem, theta, n=50_000, seed=0)
    s = dg.summarize(g)
    z = (s.variance - dg.exact_variance(est("pathwise"), problem, theta).double()) / s.variance_std_error
    assert z.abs().min() > 2.5 * Z_MAX


def test_two_sample_z_detects_a_shift_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(20_000, 3, generator=gen), torch.randn(20_000, 3, generator=gen)
    assert vt.diagnostics.two_sample_z(a, b).abs().max() < 4
    assert (vt.diagnostics.two_sample_z(a + 0.1, b).abs() > 4).all()
    same = torch.ones(10, 2)
    assert torch.equal(vt.diagnostics.two_sample_z(same, same), torch.zeros(2))
    with pytest.raises(ValueError, match="reference must have per-estimate shape"):
        vt.diagnostics.two_sample_z(a, b[:, :2])
    with pytest.raises(ValueError, match="grads must have at least 2"):
        vt.diagnostics.two_sample_z(a[:1], b)


def test_squared_bias_subtracts_the_noise_of_the_mean():
    torch.manual_seed(0)
    unbiased = vt.diagnostics.summarize(torch.randn(20_000, 3), exact=torch.zeros(3))
    assert abs(unbiased.squared_bias) < 5 * (2 * 3) ** 0.5 / 20_000          # about 0 within its noise
    shifted = vt.diagnostics.summarize(torch.randn(20_000, 3) + torch.tensor([0.3, 0.0, -0.4]), exact=torch.zeros(3))
    assert abs(shifted.squared_bias - 0.25) < 0.01
    with pytest.raises(ValueError, match="exact must be given"):
        _ = vt.diagnostics.summarize(torch.randn(10, 2)).squared_bias
