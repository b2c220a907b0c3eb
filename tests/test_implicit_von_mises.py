"""von Mises: the CDF against quadrature, implicit gradients against finite differences and A'(kappa)."""
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools.implicit import von_mises as vm
from vitools.implicit.core import invert_cdf

F64 = torch.float64


def _quadrature_cdf(x: float, kappa: float) -> float:
    with mpmath.workdps(30):
        k = mpmath.mpf(kappa)
        mass = mpmath.quad(lambda t: mpmath.exp(k * (mpmath.cos(t) - 1)), [-mpmath.pi, 0, x])
        return float(mass / (2 * mpmath.pi * mpmath.besseli(0, k) * mpmath.exp(-k)))


@pytest.mark.parametrize("kappa", [1e-4, 0.5, 5.0, 10.4, 10.6, 30.0, 1e3])
def test_cdf_matches_numerical_integration(kappa):
    xs = torch.linspace(-3.1, 3.1, 9, dtype=F64) * min(1.0, 4 / math.sqrt(kappa))
    ours = vm.von_mises_cdf(xs, torch.tensor(kappa, dtype=F64))
    ref = torch.tensor([_quadrature_cdf(float(x), kappa) for x in xs], dtype=F64)
    assert (ours - ref).abs().max() < 1e-6


def test_cdf_is_continuous_across_the_switch_and_counts_turns():
    xs = torch.linspace(-3.0, 3.0, 61, dtype=F64)
    below = vm.von_mises_cdf(xs, torch.tensor(vm.SWITCH * (1 - 1e-12), dtype=F64))
    above = vm.von_mises_cdf(xs, torch.tensor(vm.SWITCH, dtype=F64))
    assert (below - above).abs().max() < 1e-6
    k = torch.tensor(2.0, dtype=F64)
    assert torch.allclose(vm.von_mises_cdf(xs + 2 * math.pi, k), vm.von_mises_cdf(xs, k) + 1, atol=1e-12)


@pytest.mark.parametrize("kappa", [1e-4, 0.3, 3.0, 10.4, 10.6, 100.0, 1e4])
def test_gradient_matches_finite_differences_of_inverted_cdf(kappa):
    u = torch.tensor([0.03, 0.2, 0.45, 0.6, 0.9, 0.99], dtype=F64)
    K = torch.full_like(u, kappa)

    def inverse(k):
        return invert_cdf(lambda t: vm.von_mises_cdf(t, k), u, -math.pi, math.pi, iterations=60)

    theta = inverse(K)
    h = 1e-5 * kappa
    fd = (inverse(K + h) - inverse(K - h)) / (2 * h)
    (ours,) = vm._theta_grad(theta, K)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, fd, rtol=1e-4, atol=1e-9 * fd.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kappa", [1e-4, 1e4])
def test_extreme_concentrations_are_finite(kappa, dtype):
    loc = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    k = torch.tensor(kappa, dtype=dtype, requires_grad=True)
    with vt.config.seeded(0):
        z = vt.implicit.VonMises(loc, k).rsample((2000,))
    torch.cos(z - 0.3).sum().backward()
    assert z.dtype == dtype and torch.isfinite(z).all() and (z.abs() <= math.pi).all()
    assert torch.isfinite(loc.grad) and torch.isfinite(k.grad)


def test_sampler_matches_the_distribution():
    # Kolmogorov-Smirnov distance between 40k samples and the CDF: 1.63/sqrt(n) is the 1% level.
    for kappa in (0.5, 4.0, 40.0):
        with vt.config.seeded(3):
            theta = vm.sample_centred(torch.full((40_000,), kappa, dtype=F64))
        theta, _ = torch.sort(theta)
        cdf = vm.von_mises_cdf(theta, torch.tensor(kappa, dtype=F64))
        n = theta.numel()
        ecdf = torch.arange(1, n + 1, dtype=F64) / n
        assert (cdf - ecdf).abs().max() < 1.63 / math.sqrt(n)


@pytest.mark.parametrize("kappa", [2.0, 20.0])
def test_pathwise_gradient_is_unbiased(kappa):
    problem = vt.implicit.VonMisesCos(c=0.5, mu=0.2, kappa=kappa)
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    a = vt.implicit.bessel_ratio(torch.tensor(kappa, dtype=F64))
    assert exact[1].item() == pytest.approx(((1 - a / kappa - a**2) * math.cos(0.2 - 0.5)).item(), rel=1e-3)  # float32
    summary = vt.diagnostics.summarize(
        vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), problem, theta, n=20_000, seed=0), exact)
    assert summary.bias_z.abs().max() < 4
    assert (exact.abs() / summary.std_error).min() > 30
    assert vt.estimators.get("score_function").applies_to(problem)


def test_composes_with_torch_distributions():
    d = vt.implicit.VonMises(torch.zeros(3), torch.tensor([0.5, 2.0, 8.0]))
    assert d.has_rsample and isinstance(d, torch.distributions.VonMises)
    z = torch.distributions.Independent(d, 1).rsample((4,))
    assert z.shape == (4, 3)
    assert torch.allclose(d.cdf(torch.zeros(3)), torch.full((3,), 0.5), atol=1e-6)


def test_von_mises_bad_input():
    with pytest.raises(ValueError, match="concentration must be positive, got 0.0"):
        vt.implicit.VonMises(torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="concentration must be finite, got nan"):
        vt.implicit.VonMises(torch.tensor(0.0), torch.tensor(math.nan))
    with pytest.raises(ValueError, match="loc must be finite, got inf"):
        vt.implicit.VonMises(torch.tensor(math.inf), torch.tensor(1.0))
    with pytest.raises(ValueError, match="loc must be finite, got nan"):
        vt.implicit.VonMises(torch.tensor(math.nan), torch.tensor(1.0))
    with pytest.raises(ValueError, match="kappa must be positive"):
        vm.von_mises_cdf(torch.tensor(0.0), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="x must be finite"):
        vm.von_mises_cdf(torch.tensor(math.nan), torch.tensor(1.0))
    with pytest.raises(ValueError, match="kappa must be positive"):
        vm.rsample_centred(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="kappa must be positive"):
        vm.rsample_centred(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="loc must be finite, got nan"):
        vt.implicit.VonMises(math.nan, 1.0)
    with pytest.raises(ValueError, match="kappa must be positive"):
        vt.implicit.VonMisesCos(kappa=0.0)
    with pytest.raises(ValueError, match="mu must be finite"):
        vt.implicit.VonMisesCos(mu=math.inf)
