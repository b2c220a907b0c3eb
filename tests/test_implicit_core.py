"""Tests for vitools.implicit.core: the autograd Function, CDF-based gradients, inversion."""
import pytest
import torch

from vitools.implicit import core


def _exponential_grad(z, rate):
    # z = -log(1 - u) / rate: dz/drate = -z / rate (exact, for checking the plumbing).
    return (-z / rate,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_implicit_sample_passes_value_and_reduces_gradient(dtype):
    rate = torch.tensor([0.5, 2.0], dtype=dtype, requires_grad=True)
    z0 = torch.tensor([[1.0, 3.0], [2.0, 0.5], [0.1, 4.0]], dtype=dtype)
    z = core.implicit_sample(z0, _exponential_grad, rate.expand(3, 2))
    assert torch.equal(z, z0) and z.dtype == dtype
    z.sum().backward()
    assert torch.allclose(rate.grad, -(z0 / rate.detach()).sum(0))


def test_from_cdf_matches_closed_form_for_exponential():
    # F(z | rate) = 1 - exp(-rate z), q = rate exp(-rate z): dz/drate = -z / rate.
    grad_fn = core.from_cdf(lambda z, r: 1 - torch.exp(-r * z), lambda z, r: torch.log(r) - r * z)
    rate = torch.tensor(1.7, requires_grad=True)
    z0 = torch.tensor([0.2, 1.0, 3.0])
    z = core.implicit_sample(z0, grad_fn, rate.expand(3))
    (z * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    expected = (-z0 / 1.7 * torch.tensor([1.0, 2.0, 3.0])).sum()
    assert torch.allclose(rate.grad, expected, rtol=1e-6)


def test_invert_cdf_recovers_exponential_quantiles():
    u = torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64)
    t = core.invert_cdf(lambda t: 1 - torch.exp(-t), u, 0.0, 50.0)
    assert torch.allclose(t, -torch.log1p(-u), rtol=1e-12)


def test_core_bad_input():
    with pytest.raises(ValueError, match="z must be a floating-point tensor"):
        core.implicit_sample(torch.tensor([1, 2]), _exponential_grad, torch.ones(2))
    with pytest.raises(ValueError, match="params must broadcast"):
        core.implicit_sample(torch.ones(3), _exponential_grad, torch.ones(4, 3))
    rate = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="grad_fn must return a sequence of 1 tensor"):
        core.implicit_sample(torch.ones(3), lambda z, r: -z / r, rate).sum().backward()
    with pytest.raises(ValueError, match="cdf must be callable"):
        core.from_cdf(3.0, lambda z: z)
    with pytest.raises(ValueError, match="log_prob must be callable"):
        core.from_cdf(lambda z: z, None)
    with pytest.raises(ValueError, match="u must lie in"):
        core.invert_cdf(lambda t: t, torch.tensor([1.5]), 0.0, 1.0)
    with pytest.raises(ValueError, match="iterations must be"):
        core.invert_cdf(lambda t: t, torch.tensor([0.5]), 0.0, 1.0, iterations=0)
    with pytest.raises(ValueError, match="lo must be below hi"):
        core.invert_cdf(lambda t: t, torch.tensor([0.5]), 1.0, 0.0)
    with pytest.raises(ValueError, match="cdf must be callable"):
        core.invert_cdf(None, torch.tensor([0.5]), 0.0, 1.0)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rsample_and_backward_on_gpu(dtype):
    import vitools as vt

    for make, params in [(vt.implicit.Gamma, [0.3, 2.0]), (lambda a, b: vt.implicit.Beta(a, b, method="cdf"), [0.5, 3.0]),
                         (lambda a, b: vt.implicit.Beta(a, b, method="gamma"), [0.5, 3.0]),
                         (vt.implicit.VonMises, [0.5, 4.0])]:
        leaves = [torch.tensor(p, dtype=dtype, device="cuda", requires_grad=True) for p in params]
        z = make(*leaves).rsample((256,))
        grads = torch.autograd.grad(torch.sin(z).sum(), leaves)
        assert z.is_cuda and z.dtype == dtype
        assert all(g.is_cuda and torch.isfinite(g) for g in grads)


@pytest.mark.gpu
@CUDA
def test_gamma_gradient_on_gpu_equals_cpu():
    import vitools as vt

    alpha = torch.logspace(-2, 3, 64, dtype=torch.float64)
    z = torch._standard_gamma(alpha)
    cpu = vt.implicit.standard_gamma_grad(z, alpha)
    gpu = vt.implicit.standard_gamma_grad(z.cuda(), alpha.cuda())
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-12)
