"""von Mises: the CDF and dtheta/dkappa against mpmath quadrature in both tails, finite differences, A'(kappa)."""
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools.implicit import von_mises as vm
from vitools.implicit.accuracy import tail_path, von_mises_reference_grad
from vitools.implicit.core import invert_cdf

F64 = torch.float64


def _quadrature_cdf(x: float, kappa: float) -> float:
    with mpmath.workdps(60):                         # quad loses ~20 digits on the far-tail pieces
        k = mpmath.mpf(kappa)
        path = tail_path(mpmath.mpf(x), k) if x < 0 else [-mpmath.pi, 0, x]   # no cancellation in the left tail
        mass = mpmath.quad(lambda t: mpmath.exp(k * (mpmath.cos(t) - 1)), path)
        return float(mass / (2 * mpmath.pi * mpmath.besseli(0, k) * mpmath.exp(-k)))


@pytest.mark.parametrize("kappa", [1e-4, 0.5, 5.0, 10.4, 10.6, 30.0, 1e3])
def test_cdf_matches_numerical_integration(kappa):
    xs = torch.linspace(-3.1, 3.1, 9, dtype=F64) * min(1.0, 4 / math.sqrt(kappa))
    ours = vm.von_mises_cdf(xs, torch.tensor(kappa, dtype=F64))
    ref = torch.tensor([_quadrature_cdf(float(x), kappa) for x in xs], dtype=F64)
    assert ((ours - ref) / ref).abs().max() < 1e-13          # relative, so the left tail counts


KAPPAS = [1e-4, 1.0, 10.49, 10.51, 11.0, 300.0, 1e4]      # 10.5: Hill's old switch
LEVELS = [1e-8, 1e-6, 1e-4, 1e-3, 0.1, 0.4, 0.6, 0.9, 1 - 1e-3, 1 - 1e-4, 1 - 1e-6, 1 - 1e-8]


def _angles_at_levels(kappa):
    """Angles at the CDF LEVELS, and just either side of t* = arccos A (where the quadrature
    switches from the central to the tail integral), on both sides of zero."""
    u = torch.tensor(LEVELS, dtype=F64)
    theta = invert_cdf(lambda t: vm.von_mises_cdf(t, torch.tensor(kappa, dtype=F64)), u, -math.pi, math.pi,
                       iterations=80)
    t_star = math.acos(1 - vm.one_minus_bessel_ratio(torch.tensor(kappa, dtype=F64)).item())
    star = torch.tensor([t_star * (1 - 1e-9), t_star * (1 + 1e-9)], dtype=F64)
    return torch.cat([theta, star, -star])


@pytest.mark.parametrize("kappa", KAPPAS)
def test_gradient_matches_mpmath_to_1e_12_in_both_tails(kappa):
    theta = _angles_at_levels(kappa)
    k = torch.full_like(theta, kappa)
    ref = von_mises_reference_grad(theta, k)                       # -dF/dkappa / q by mpmath quadrature
    ours = vm.von_mises_sample_grad(theta, k)
    assert ((ours - ref) / ref).abs().max() < 1e-12
    # both tails really are in the grid: levels 1e-8 and 1 - 1e-8
    assert vm.von_mises_cdf(theta[0], k[0]) < 2e-8 and vm.von_mises_cdf(theta[11], k[0]) > 1 - 2e-8


@pytest.mark.parametrize("kappa", [1e-4, 10.51, 1e4])
def test_cdf_left_tail_relative_error_against_mpmath(kappa):
    theta = _angles_at_levels(kappa)[:6]                                   # levels 1e-8 .. 0.4
    ours = vm.von_mises_cdf(theta, torch.tensor(kappa, dtype=F64))
    ref = torch.tensor([_quadrature_cdf(float(t), kappa) for t in theta], dtype=F64)
    assert ((ours - ref) / ref).abs().max() < 1e-12


def test_one_minus_bessel_ratio_has_no_cancellation():
    kappas = [1e-4, 1.0, 49.9, 50.0, 1e3, 1e4, 1e6]
    ours = vm.one_minus_bessel_ratio(torch.tensor(kappas, dtype=F64))
    with mpmath.workdps(40):
        ref = torch.tensor([float(1 - mpmath.besseli(1, k) / mpmath.besseli(0, k)) for k in kappas], dtype=F64)
    assert ((ours - ref) / ref).abs().max() < 1e-14
    direct = 1 - vt.implicit.bessel_ratio(torch.tensor(1e4, dtype=F64))    # what the series avoids
    assert abs(direct.item() / ref[5].item() - 1) > 1e-13


def test_cdf_is_continuous_across_the_centre_tail_switch_and_counts_turns():
    for kappa in (0.3, 10.51, 1e3):
        k = torch.tensor(kappa, dtype=F64)
        t_star = math.acos(1 - vm.one_minus_bessel_ratio(k).item())
        xs = torch.tensor([-t_star * (1 + 1e-8), -t_star * (1 - 1e-8), t_star * (1 - 1e-8), t_star * (1 + 1e-8)],
                          dtype=F64)
        step = vm.von_mises_cdf(xs, k).diff()[[0, 2]]                         # across -t* and across t*
        expected = vm.von_mises_log_prob(xs[[0, 2]], k).exp() * xs.diff()[[0, 2]]   # density x step
        assert ((step - expected) / expected).abs().max() < 1e-6           # a jump of 1e-14 would fail
    xs = torch.linspace(-3.0, 3.0, 61, dtype=F64)
    k = torch.tensor(2.0, dtype=F64)
    assert torch.allclose(vm.von_mises_cdf(xs + 2 * math.pi, k), vm.von_mises_cdf(xs, k) + 1, atol=1e-12)
    # the CDF is differentiable: its x-derivative is the density
    x = torch.tensor([-2.0, -0.1, 0.4], dtype=F64, requires_grad=True)
    (dx,) = torch.autograd.grad(vm.von_mises_cdf(x, k).sum(), x)
    assert torch.allclose(dx, vm.von_mises_log_prob(x.detach(), k).exp(), rtol=1e-12)


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
