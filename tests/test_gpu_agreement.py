"""CPU/GPU agreement: every test here runs one computation on the CPU and on CUDA and compares.

Deterministic computations (closed forms, quadrature, enumeration, the Kalman filter) must agree
to a stated tolerance: 1e-10 relative in float64, 1e-4 in float32 (different kernels sum in
different orders). Random ones cannot agree draw for draw (the generators differ), so each
device's estimate is checked against the exact answer with |z| < 4.

Marked ``gpu``; collected everywhere, run where a CUDA device is present (``VITOOLS_DEVICE=cuda
pytest -m gpu``), skipped with "needs a CUDA device" elsewhere.
"""
from __future__ import annotations

import math

import pytest
import torch

import vitools as vt

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

F64, F32 = 1e-10, 1e-4


def _both(fn, *args):
    """``fn`` on the CPU and on CUDA (every tensor argument moved), the CUDA result brought back."""
    cpu = fn(*args)
    gpu = fn(*(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
    return cpu, (gpu.cpu() if isinstance(gpu, torch.Tensor) else gpu)


@pytest.mark.parametrize("name,fn,args", [
    ("von_mises_cdf", vt.implicit.von_mises_cdf,
     (torch.linspace(-3, 3, 41, dtype=torch.float64), torch.logspace(-2, 3, 41, dtype=torch.float64))),
    ("betainc", vt.implicit.betainc, (torch.linspace(0.01, 0.99, 30, dtype=torch.float64),
                                      torch.logspace(-1, 1, 30, dtype=torch.float64),
                                      torch.logspace(1, -1, 30, dtype=torch.float64))),
    ("beta_log_prob", vt.implicit.beta_log_prob, (torch.linspace(0.01, 0.99, 30, dtype=torch.float64),
                                                  torch.logspace(-1, 1, 30, dtype=torch.float64),
                                                  torch.logspace(1, -1, 30, dtype=torch.float64))),
    ("standard_gamma_grad", vt.implicit.standard_gamma_grad,
     (torch.logspace(-3, 2, 50, dtype=torch.float64), torch.logspace(-2, 2, 50, dtype=torch.float64))),
    ("bessel_ratio", vt.implicit.bessel_ratio, (torch.logspace(-3, 3, 50, dtype=torch.float64),)),
    ("gamma_icdf", vt.implicit.gamma_icdf, (torch.linspace(0.01, 0.99, 20, dtype=torch.float64),
                                            torch.logspace(-1, 1, 20, dtype=torch.float64))),
])
def test_implicit_functions_agree_in_float64(name, fn, args):
    cpu, gpu = _both(fn, *args)
    assert torch.allclose(gpu, cpu, rtol=F64, atol=1e-300), (name, (gpu - cpu).abs().max())


def test_sbn_exact_log_likelihood_agrees():
    torch.manual_seed(0)
    sbn = vt.models.SBN(10, latent=(4,)).double()
    x = (torch.rand(6, 10) < 0.5).double()
    cpu = sbn.exact_log_px(x)
    gpu = sbn.cuda().exact_log_px(x.cuda()).cpu()
    assert torch.allclose(gpu, cpu, rtol=F64)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, F64), (torch.float32, F32)])
def test_kalman_log_likelihood_agrees(dtype, tol):
    ssm = vt.models.LinearGaussianSSM.scalar(a=0.9, q=0.5, r=0.3, dtype=dtype)
    _, x = ssm.sample(4, 20, seed=0)
    cpu = ssm.log_likelihood(x)
    with _env_device("cuda"):
        ssm_gpu = vt.models.LinearGaussianSSM.scalar(a=0.9, q=0.5, r=0.3, dtype=dtype)
    gpu = ssm_gpu.log_likelihood(x.to(ssm_gpu.A.device)).cpu()
    assert torch.allclose(gpu, cpu, rtol=tol)


def test_vae_quadrature_bounds_agree():
    torch.manual_seed(0)
    vae = vt.models.GaussianVAE(input_dim=6, hidden=8, latent_dim=1).double()
    x = (torch.rand(3, 6) < 0.5).double()
    cpu = vt.models.exact_bounds(vae, x, points=201, nodes=20)
    gpu = vt.models.exact_bounds(vae.cuda(), x.cuda(), points=201, nodes=20)
    for field in ("log_px", "elbo", "kl"):
        a, b = getattr(cpu, field), getattr(gpu, field)
        assert torch.allclose(b.cpu(), a, rtol=1e-8, atol=1e-12), field


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_particle_filter_estimates_the_exact_likelihood_on_each_device(device):
    """exp(log Z) is unbiased for p(x): the mean of Z / p(x) over repeats is 1 within 4 standard errors."""
    ssm = vt.models.LinearGaussianSSM.scalar(a=0.9, q=0.5, r=0.3, dtype=torch.float64)
    _, x = ssm.sample(1, 10, seed=1)
    exact = ssm.log_likelihood(x)
    with _env_device(device):
        model = vt.models.LinearGaussianSSM.scalar(a=0.9, q=0.5, r=0.3, dtype=torch.float64)
        proposal = model.prior_proposal(10)
    xs = x.to(model.A.device).expand(400, -1, -1)
    ratio = (vt.smc.fivo(model.with_proposal(proposal), xs, 64, seed=0).log_z.cpu() - exact).exp()
    z = (ratio.mean() - 1) / (ratio.std() / math.sqrt(len(ratio)))
    assert abs(z) < 4, z


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_pathwise_gradient_is_unbiased_on_each_device(device):
    problem = vt.problems.GaussianQuadratic()
    theta = problem.init_params().double().to(device)
    samples = vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), problem, theta, n=4000, k=1, seed=0)
    exact = problem.exact_grad(theta)
    z = (samples.mean(0) - exact) / (samples.std(0) / math.sqrt(samples.shape[0]))
    assert (z.abs() < 4).all(), z


class _env_device:
    """``VITOOLS_DEVICE`` set to ``device`` while the block runs (models built inside land there)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import os
        self.old = os.environ.get("VITOOLS_DEVICE")
        os.environ["VITOOLS_DEVICE"] = self.device

    def __exit__(self, *exc):
        import os
        if self.old is None:
            os.environ.pop("VITOOLS_DEVICE", None)
        else:
            os.environ["VITOOLS_DEVICE"] = self.old
