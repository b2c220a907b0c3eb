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


# --- composition with torch.distributions, small concentrations in float32 and at 1e-3 ---

from torch.distributions import Independent  # noqa: E402


@pytest.mark.parametrize("make", [
    lambda: vt.implicit.Gamma(torch.ones(3), torch.full((3,), 2.0)),
    lambda: vt.implicit.Beta(torch.ones(3), torch.full((3,), 2.0)),
    lambda: vt.implicit.Beta(torch.ones(3), torch.full((3,), 2.0), method="cdf"),
    lambda: vt.implicit.Dirichlet(torch.ones(3, 4)),
    lambda: vt.implicit.VonMises(torch.zeros(3), torch.full((3,), 2.0)),
])
def test_expand_and_independent_keep_the_class_and_its_gradient(make):
    d = make()
    e = d.expand((2, 3))
    assert type(e) is type(d) and e.batch_shape == (2, 3) and e.event_shape == d.event_shape
    assert getattr(e, "method", None) == getattr(d, "method", None)
    assert e.rsample((5,)).shape == (5, 2, 3, *d.event_shape)
    ind = Independent(d, 1).expand((2,))
    assert type(ind.base_dist) is type(d) and ind.batch_shape == (2,) and ind.event_shape == (3, *d.event_shape)
    assert ind.rsample((4,)).shape == (4, 2, 3, *d.event_shape)
    params = [p.requires_grad_(True) for p in (torch.ones(3), torch.full((3,), 2.0))]
    with vt.config.seeded(0):
        x = type(d)(*params[: 1 if isinstance(d, vt.implicit.Dirichlet) else 2]).expand((2, 3)).rsample()
    assert torch.autograd.grad(x.sum(), params[0])[0].abs().sum() > 0       # the gradient flows through expand


def test_float32_small_concentrations_have_no_false_atoms():
    with vt.config.seeded(0):
        x = vt.implicit.Beta(torch.tensor(0.01), torch.tensor(0.01)).rsample((50_000,))
        rows = vt.implicit.Dirichlet(torch.full((3,), 0.01)).rsample((50_000,))
    assert x.dtype == torch.float32 and (x == 0.5).sum() == 0              # float32 Gammas used to give 17.8%
    assert (rows == 1 / 3).all(-1).sum() == 0 and torch.allclose(rows.sum(-1), torch.ones(50_000))
    # the mass below 1e-10 is the exact CDF's (a z-test on the count)
    p = beta.betainc(torch.tensor(1e-10, dtype=F64), torch.tensor(0.01, dtype=F64), torch.tensor(0.01, dtype=F64))
    z = ((x < 1e-10).double().mean() - p) / torch.sqrt(p * (1 - p) / x.numel())
    assert abs(z) < 4


@pytest.mark.parametrize("method", ["gamma", "cdf"])
def test_float32_gradient_at_the_clamp_is_the_float64_one(method):
    grads = {}
    for dtype in (torch.float32, torch.float64):
        a = torch.full((20_000,), 1.0, dtype=dtype, requires_grad=True)
        b = torch.full((20_000,), 0.0625, dtype=dtype)              # exact in float32: same draws
        with vt.config.seeded(3):                                   # the same float64 draws for both
            x = vt.implicit.Beta(a, b, method=method).rsample()
        grads[dtype] = (x.detach(), torch.autograd.grad(x.sum(), a)[0])
    x32, g32 = grads[torch.float32]
    g64 = grads[torch.float64][1]
    top = x32 == 1 - torch.finfo(torch.float32).eps / 2
    representable = g64.abs() > 1e-30
    assert (top & representable).sum() > 1000                       # many samples sit on the clamp
    assert torch.isfinite(g32).all() and (g32[top & representable] != 0).all()
    keep = top & representable
    assert torch.allclose(g32[keep].double(), g64[keep], rtol=1e-5, atol=0)


@pytest.mark.parametrize("method", ["gamma", "cdf"])
def test_beta_at_1e_3_is_unbiased_in_float32_and_float64(method):
    # torch's float32 Beta gives inf gradients here (pytorch issue 127387); ours stay finite and unbiased
    for dtype in (torch.float32, torch.float64):
        a = torch.full((100_000,), 1e-3, dtype=dtype, requires_grad=True)
        b = torch.full((100_000,), 1.0, dtype=dtype, requires_grad=True)
        with vt.config.seeded(1):
            x = vt.implicit.Beta(a, b, method=method).rsample()
        for g, exact in zip(torch.autograd.grad(x.sum(), [a, b]), (1.0 / 1.001**2, -1e-3 / 1.001**2)):
            assert torch.isfinite(g).all()
            assert abs((g.double().mean() - exact) / (g.double().std() / 100_000**0.5)) < 4


def test_dirichlet_at_1e_3_has_finite_rows_and_unbiased_gradient():
    # float64 Gammas underflow to 0 for about half the draws at 1e-3 (pytorch issue 76030)
    n = 100_000
    conc = torch.full((n, 3), 1e-3, dtype=F64, requires_grad=True)
    with vt.config.seeded(2):
        x = vt.implicit.Dirichlet(conc).rsample()
    assert torch.isfinite(x).all() and torch.allclose(x.sum(-1), torch.ones(n, dtype=F64))
    (g,) = torch.autograd.grad(x[:, 0].sum(), conc)                          # [n, 3] per-sample
    exact = torch.tensor([2e-3, -1e-3, -1e-3], dtype=F64) / 3e-3**2          # d E[x_0] / d conc
    z = (g.mean(0) - exact) / (g.std(0) / math.sqrt(n))
    assert torch.isfinite(g).all() and z.abs().max() < 4
