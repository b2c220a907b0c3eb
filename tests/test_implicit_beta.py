"""Beta (through Gammas and through its CDF) and Dirichlet implicit gradients."""
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools.implicit import beta
from vitools.implicit.core import invert_cdf
from vitools.implicit.gamma import gamma_icdf

F64 = torch.float64


def _beta_inverse(a, b, u):
    """x = I^{-1}(u; a, b), bisection on logit x."""
    t = invert_cdf(lambda t: beta.betainc(torch.sigmoid(t), a, b), u, -740.0, 37.0, iterations=64)
    return torch.sigmoid(t)


@pytest.mark.parametrize("a,b,x", [(2.0, 3.0, 0.3), (0.5, 0.5, 0.9), (100.0, 50.0, 0.66),
                                   (1e-3, 1e-3, 1e-5), (1e3, 1e3, 0.49), (0.1, 5.0, 0.01)])
def test_betainc_matches_mpmath(a, b, x):
    ours = beta.betainc(torch.tensor(x, dtype=F64), torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64))
    assert ours.item() == pytest.approx(float(mpmath.betainc(a, b, 0, x, regularized=True)), rel=1e-10)


@pytest.mark.parametrize("a,b", [(1e-3, 1.0), (0.3, 2.0), (2.0, 3.0), (50.0, 0.5), (1e4, 5.0)])
def test_cdf_route_matches_finite_differences_of_inverted_beta_cdf(a, b):
    u = torch.tensor([0.55, 0.7, 0.9] if a < 0.01 else [0.05, 0.3, 0.6, 0.95], dtype=F64)
    A, B = torch.full_like(u, a), torch.full_like(u, b)
    x = _beta_inverse(A, B, u)
    h = 1e-4 * a
    fd_a = x * (torch.log(_beta_inverse(A + h, B, u)) - torch.log(_beta_inverse(A - h, B, u))) / (2 * h)
    k = 1e-4 * b
    fd_b = x * (torch.log(_beta_inverse(A, B + k, u)) - torch.log(_beta_inverse(A, B - k, u))) / (2 * k)
    ga, gb = beta._beta_cdf_grad(x, A, B)
    assert torch.isfinite(ga).all() and torch.isfinite(gb).all()
    assert torch.allclose(ga, fd_a, rtol=1e-4) and torch.allclose(gb, fd_b, rtol=1e-4)


@pytest.mark.parametrize("conc", [[1e-3, 1.0], [0.5, 2.0, 7.0], [1e4, 3.0, 30.0]])
def test_gamma_route_matches_finite_differences_of_inverted_gamma_cdfs(conc):
    conc = torch.tensor(conc, dtype=F64)
    u = torch.tensor([[0.7, 0.3, 0.5][: len(conc)], [0.95, 0.6, 0.2][: len(conc)]], dtype=F64)

    def first_component(c):                    # x_0 from the same uniforms, exact inverses
        g = gamma_icdf(u, c.expand_as(u))
        return g[:, 0] / g.sum(-1)             # [2]

    c = conc.clone().requires_grad_(True)
    g = vt.implicit.implicit_sample(gamma_icdf(u, conc.expand_as(u)),
                                    lambda z, a: (vt.implicit.standard_gamma_grad(z, a),), c.expand_as(u))
    x0 = g[:, 0] / g.sum(-1)
    for row in range(2):
        (ours,) = torch.autograd.grad(x0[row], c, retain_graph=True)       # [K]
        for i in range(len(conc)):
            step = torch.zeros_like(conc)
            step[i] = 1e-5 * conc[i]
            fd = (first_component(conc + step)[row] - first_component(conc - step)[row]) / (2 * step[i])
            assert torch.isfinite(ours[i])
            assert ours[i].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("method", ["gamma", "cdf"])
@pytest.mark.parametrize("a,b", [(2.0, 3.0), (0.4, 0.8)])
def test_pathwise_gradient_of_mean_is_unbiased(method, a, b):
    problem = vt.implicit.BetaMean(a=a, b=b, method=method)
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    assert torch.allclose(exact, torch.tensor([b, -a]) / (a + b) ** 2)
    g = vt.diagnostics.grad_samples(vt.estimators.get("pathwise"), problem, theta, n=20_000, seed=0)
    summary = vt.diagnostics.summarize(g, exact)
    assert summary.bias_z.abs().max() < 4
    assert (exact.abs() / summary.std_error).min() > 50        # a zero gradient would fail widely
    assert vt.estimators.get("score_function").applies_to(problem)


def test_dirichlet_gradient_of_mean_is_unbiased():
    conc = torch.tensor([0.5, 2.0, 4.0], requires_grad=True)
    with vt.config.seeded(0):
        x = vt.implicit.Dirichlet(conc.expand(20_000, 3)).rsample()       # [n, 3]
    (jac_rows,) = torch.autograd.grad(x[:, 0].sum(), conc)                 # sum of n estimates
    total = conc.detach().sum()
    exact = torch.tensor([total - 0.5, -0.5, -0.5]) / total**2              # d E[x_0] / d conc
    with vt.config.seeded(1):
        c2 = conc.detach().expand(20_000, 3).clone().requires_grad_(True)
        x2 = vt.implicit.Dirichlet(c2).rsample()
        (g,) = torch.autograd.grad(x2[:, 0].sum(), c2)                     # [n, 3] per-sample
    z = (g.double().mean(0) - exact.double()) / (g.double().std(0) / math.sqrt(g.shape[0]))
    assert z.abs().max() < 4
    assert torch.allclose(jac_rows / 20_000, exact, atol=0.02)


def test_beta_extremes_are_finite():
    for a, b in [(1e-3, 1e-3), (1e4, 1e4), (1e-3, 1e4)]:
        for method in ("gamma", "cdf"):
            p = torch.tensor([a, b], dtype=F64, requires_grad=True)
            with vt.config.seeded(0):
                x = vt.implicit.Beta(p[0], p[1], method=method).rsample((500,))
            (grad,) = torch.autograd.grad((x * (1 - x)).sum(), p)
            assert torch.isfinite(x).all() and torch.isfinite(grad).all(), (a, b, method)


def test_beta_bad_input():
    with pytest.raises(ValueError, match="concentration1 must be positive, got 0.0"):
        vt.implicit.Beta(torch.tensor(0.0), 1.0)
    with pytest.raises(ValueError, match="concentration0 must be finite, got nan"):
        vt.implicit.Beta(1.0, torch.tensor(math.nan))
    with pytest.raises(ValueError, match="method must be one of"):
        vt.implicit.Beta(1.0, 1.0, method="inverse")
    with pytest.raises(ValueError, match="method must be one of"):
        beta.rsample_beta(torch.tensor(1.0), torch.tensor(1.0), method="x")
    with pytest.raises(ValueError, match="a must be positive"):
        beta.rsample_beta(torch.tensor(-1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="b must be positive"):
        beta.betainc(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="x must lie in"):
        beta.betainc(torch.tensor(1.5), torch.tensor(1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="concentration must be positive"):
        vt.implicit.Dirichlet(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="method must be one of"):
        vt.implicit.BetaMean(method="x")
