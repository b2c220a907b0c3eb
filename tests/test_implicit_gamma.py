"""Gamma implicit gradients: against mpmath, finite differences of the inverted CDF, closed forms."""
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools.implicit import gamma
from vitools.implicit.core import invert_cdf

ALPHAS = [1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1000.0]


def mp_reference(alpha: float, z: float) -> float:
    """-dP(alpha, z)/dalpha / q(z | alpha) at 40 digits."""
    with mpmath.workdps(40):
        a, x = mpmath.mpf(alpha), mpmath.mpf(z)
        dP = mpmath.diff(lambda s: mpmath.gammainc(s, 0, x, regularized=True), a)
        q = mpmath.exp((a - 1) * mpmath.log(x) - x - mpmath.loggamma(a))
        return float(-dP / q)


def _relative_errors(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    alpha = torch.tensor(ALPHAS, dtype=torch.float64).repeat_interleave(3)
    z = torch._standard_gamma(alpha, generator=gen).to(dtype)
    ref = torch.tensor([mp_reference(a, float(x)) for a, x in zip(alpha.tolist(), z.double().tolist())],
                       dtype=torch.float64)
    ours = gamma.standard_gamma_grad(z, alpha.to(dtype)).double()
    builtin = torch._standard_gamma_grad(alpha, z.double())
    return ((ours - ref) / ref).abs(), ((builtin - ref) / ref).abs()


def test_float64_matches_mpmath_to_1e_10_and_beats_torch():
    ours, builtin = _relative_errors(torch.float64)
    assert ours.max() < 1e-10
    assert builtin.max() > 1e-6 > ours.max()       # torch's fixed approximations are far coarser


def test_float32_matches_mpmath_to_1e_6():
    ours, _ = _relative_errors(torch.float32, seed=1)
    assert ours.max() < 1e-6


def _inverse(alpha, u):
    """z = P^{-1}(alpha, u) with torch's own gammainc, bisection on log z (float64)."""
    return torch.exp(invert_cdf(lambda t: torch.special.gammainc(alpha, torch.exp(t)), u, -740.0, 12.0))


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.7, 1.0, 5.0, 300.0, 1e4])
def test_gradient_matches_finite_differences_of_inverted_cdf(alpha):
    u = torch.tensor([0.6, 0.75, 0.9, 0.99] if alpha < 0.01 else [0.02, 0.3, 0.5, 0.7, 0.98],
                     dtype=torch.float64)
    a = torch.full_like(u, alpha)
    h = 1e-4 * alpha
    z = _inverse(a, u)
    # differences of log z (smooth even where z ~ u^(1/alpha) spans hundreds of decades)
    fd = z * (torch.log(_inverse(a + h, u)) - torch.log(_inverse(a - h, u))) / (2 * h)
    ours = gamma.standard_gamma_grad(z, a)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, fd, rtol=2e-5, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [1e-3, 1e4])
def test_extreme_shapes_give_finite_gradients(alpha, dtype):
    a = torch.tensor(alpha, dtype=dtype, requires_grad=True)
    rate = torch.tensor(2.0, dtype=dtype, requires_grad=True)
    with vt.config.seeded(0):
        z = vt.implicit.Gamma(a, rate).rsample((2000,))
    (torch.log(z).sum() + z.sum()).backward()
    assert z.dtype == dtype and torch.isfinite(z).all()
    assert torch.isfinite(a.grad) and torch.isfinite(rate.grad)


def test_pathwise_unbiased_for_trigamma_and_rate():
    problem = vt.implicit.GammaLog(alpha=0.7, rate=2.0)
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    assert torch.allclose(exact, torch.tensor([float(mpmath.psi(1, 0.7)), -0.5]), rtol=1e-5)
    summary = vt.diagnostics.summarize(
        vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), problem, theta, n=40_000, seed=0), exact)
    assert summary.bias_z.abs().max() < 4
    # a wrong gradient (torch.log(z) with z detached, i.e. zero) would be off by > 100 sigma
    assert (exact.abs() / summary.std_error).min() > 100


def test_score_function_also_applies_and_agrees():
    problem = vt.implicit.GammaLog(alpha=3.0, rate=1.0)
    theta = problem.init_params()
    est = vt.estimators.get("score_function", baseline="leave_one_out")
    assert est.applies_to(problem) and vt.estimators.get("pathwise").applies_to(problem)
    summary = vt.diagnostics.summarize(vt.diagnostics.grad_samples(est, problem, theta, n=20_000, k=4, seed=1),
                                       problem.exact_grad(theta))
    assert summary.bias_z.abs().max() < 4


def test_gamma_bad_input():
    with pytest.raises(ValueError, match="concentration must be positive, got 0.0"):
        vt.implicit.Gamma(torch.tensor(0.0), 1.0)
    with pytest.raises(ValueError, match="concentration must be finite, got nan"):
        vt.implicit.Gamma(torch.tensor(math.nan), 1.0)
    with pytest.raises(ValueError, match="rate must be positive, got -1.0"):
        vt.implicit.Gamma(1.0, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="alpha must be positive"):
        gamma.rsample_standard_gamma(torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="alpha must be positive"):
        vt.implicit.GammaLog(alpha=-1.0)
    with pytest.raises(ValueError, match="rate must be positive"):
        vt.implicit.GammaLog(rate=0.0)
