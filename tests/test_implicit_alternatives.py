"""The alternatives: finite differences with common random numbers, approximate inverse CDF, RSVI."""
import math

import pytest
import torch

import vitools as vt
from vitools.implicit import alternatives as alt

F64 = torch.float64


def _inverse_sampler(u):
    """An exactly smooth sampler (inverse CDF of Gamma(alpha, 1) at fixed u), for checking FD."""
    def sampler(alpha):
        return vt.implicit.gamma_icdf(u, alpha.expand_as(u))
    return sampler


def test_finite_differences_agree_with_implicit_for_smooth_sampler():
    u = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    alpha = torch.tensor(2.5, dtype=F64)
    fd = alt.finite_difference_grad(_inverse_sampler(u), alpha, h=1e-5)
    z = _inverse_sampler(u)(alpha)
    assert torch.allclose(fd, vt.implicit.standard_gamma_grad(z, alpha), rtol=1e-6)


def test_finite_differences_of_rejection_sampler_are_biased_or_wild():
    # torch's Gamma sampler is Marsaglia-Tsang rejection. With common random numbers and a
    # tiny step, differences follow the transform at the accepted proposal (RSVI's g_rep),
    # which is biased for d/dalpha E[log z] = trigamma(alpha); with a larger step,
    # accept/reject decisions flip and give enormous values.
    alpha = torch.full((20_000,), 2.0, dtype=F64)
    with vt.config.seeded(0):
        z = torch._standard_gamma(alpha)
    exact = torch.special.polygamma(1, torch.tensor(2.0, dtype=F64))
    small = alt.finite_difference_grad(lambda a: torch._standard_gamma(a), alpha, h=1e-6, seed=0) / z
    z_score = (small.mean() - exact) / (small.std() / math.sqrt(small.numel()))
    assert z_score > 5 and 0.01 < small.mean() / exact - 1 < 0.05        # measured: +2.7 %
    large = alt.finite_difference_grad(lambda a: torch._standard_gamma(a), alpha, h=1e-3, seed=0) / z
    assert large.abs().max() > 1000 * exact


def test_approximate_inverse_is_biased_by_its_approximation():
    u = torch.tensor([0.2, 0.5, 0.8], dtype=F64)
    for alpha, lo, hi in ((0.5, 0.1, 1.0), (4.0, 1e-5, 1e-2), (200.0, 1e-7, 1e-4)):
        a = torch.tensor(alpha, dtype=F64)
        z = _inverse_sampler(u)(a)
        exact = vt.implicit.standard_gamma_grad(z, a)
        rel = ((alt.approx_inverse_gamma_grad(z, a) - exact) / exact).abs().max()
        assert lo < rel < hi                      # close for large alpha, poor for small


@pytest.mark.parametrize("boost", [0, 1, 3])
def test_rsvi_with_correction_is_unbiased(boost):
    problem = vt.implicit.GammaLog(alpha=0.6 if boost else 1.5, rate=1.0)
    theta = problem.init_params()
    est = vt.estimators.get("rsvi", boost=boost)
    g = vt.diagnostics.grad_samples(est, problem, theta, n=40_000, seed=0)
    summary = vt.diagnostics.summarize(g, problem.exact_grad(theta))
    assert summary.bias_z.abs().max() < 4


def test_rsvi_without_correction_is_biased_and_the_bias_is_measured():
    problem = vt.implicit.GammaLog(alpha=1.5, rate=1.0)
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    g = vt.diagnostics.grad_samples(vt.estimators.get("rsvi", boost=0, correction=False), problem, theta,
                                    n=40_000, seed=0)
    summary = vt.diagnostics.summarize(g, exact)
    bias = (summary.mean[0] - exact[0].double()).item()
    assert summary.bias_z[0] > 10                 # g_rep alone over-estimates trigamma(1.5)
    assert 0.01 < bias / exact[0].item() < 0.2    # by a few per cent of 0.935


def test_rsvi_applies_only_to_gamma():
    assert vt.estimators.get("rsvi").applies_to(vt.implicit.GammaLog())
    assert not vt.estimators.get("rsvi").applies_to(vt.implicit.VonMisesCos())
    assert "rsvi" in vt.estimators.names()


def test_alternatives_bad_input():
    with pytest.raises(ValueError, match="h must be positive"):
        alt.finite_difference_grad(lambda a: a, torch.tensor(1.0), h=0.0)
    with pytest.raises(ValueError, match="sampler must be callable"):
        alt.finite_difference_grad(None, torch.tensor(1.0))
    with pytest.raises(ValueError, match="theta must be finite"):
        alt.finite_difference_grad(lambda a: a, torch.tensor(math.nan))
    with pytest.raises(ValueError, match="alpha must be positive"):
        alt.approx_inverse_gamma_grad(torch.ones(2), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="boost must be an integer"):
        alt.rsvi_gamma(torch.tensor(1.0), boost=-1)
    with pytest.raises(ValueError, match="alpha must be positive"):
        alt.rsvi_gamma(torch.tensor(0.0))
    with pytest.raises(ValueError, match="alpha \\+ boost must exceed 1/3"):
        alt.rsvi_gamma(torch.tensor(0.2), boost=0)
    with pytest.raises(ValueError, match="boost must be an integer"):
        vt.estimators.get("rsvi", boost=1.5)
    with pytest.raises(ValueError, match="correction must be True or False"):
        vt.estimators.get("rsvi", correction="yes")


def test_approximate_inverse_in_float32_is_computed_in_float32(monkeypatch):
    """Regression: it worked in float64 and cast, hiding the float32 approximation's own error."""
    seen = []
    lgamma = torch.lgamma

    def spy(a):
        seen.append(a.dtype)
        return lgamma(a)
    monkeypatch.setattr(torch, "lgamma", spy)
    z = torch.tensor([1e-30, 0.3, 5.0])
    g = alt.approx_inverse_gamma_grad(z, torch.tensor([0.01, 0.5, 4.0], dtype=F64))
    assert g.dtype == torch.float32 and torch.isfinite(g).all() and set(seen) == {torch.float32}
    # the same samples in float64 agree only to float32's accuracy of the formula, not to rounding
    g64 = alt.approx_inverse_gamma_grad(z.double(), torch.tensor([0.01, 0.5, 4.0], dtype=F64))
    assert torch.allclose(g.double(), g64, rtol=1e-3)


def test_rsvi_gradient_is_finite_when_a_uniform_is_zero(monkeypatch):
    """Regression: torch.rand can return exactly 0 (about once in 2^24 float32 draws), and
    log(0) / alpha in the shape augmentation made the whole gradient NaN (a Gamma VAE trained
    by RSVI diverged after a few thousand updates)."""
    rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **kw: torch.zeros_like(rand(*a, **kw)))
    alpha = torch.tensor([0.5, 2.0], requires_grad=True)
    z, log_pi = alt.rsvi_gamma(alpha, (3,), boost=2)
    (g,) = torch.autograd.grad((z + log_pi).sum(), alpha)
    assert torch.isfinite(g).all() and torch.isfinite(z).all()
