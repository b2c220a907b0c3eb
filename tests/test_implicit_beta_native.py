"""The compiled Beta-CDF sample-gradient (native/beta_grad.c) against mpmath and the torch path."""
import itertools
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools.implicit import beta, native
from vitools.implicit.core import invert_cdf

F64 = torch.float64
VALUES = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0)
LEVELS = (1e-6, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6)


@pytest.fixture
def native_on(monkeypatch):
    monkeypatch.setenv("VITOOLS_NATIVE", "on")


def _kernel_grad(x, a, b):
    return beta._native_cdf_grad(beta._kernel(), *torch.broadcast_tensors(x, a, b))


def _reference(x: float, a: float, b: float) -> tuple[float, float]:
    """dx/da, dx/db = -dI_x(a, b)/d(a, b) / q(x), by mpmath at 40 digits at the float64 point x (above
    the mean through 1 - I_x(a, b) = I_{1-x}(b, a), where I_x itself rounds to 1 at 40 digits)."""
    with mpmath.workdps(40):
        X, A, B = mpmath.mpf(x), mpmath.mpf(a), mpmath.mpf(b)
        density = X ** (A - 1) * (1 - X) ** (B - 1) / mpmath.beta(A, B)
        if x < a / (a + b):
            cdf, sign = (lambda s, t: mpmath.betainc(s, t, 0, X, regularized=True)), -1
        else:
            cdf, sign = (lambda s, t: mpmath.betainc(t, s, 0, 1 - X, regularized=True)), 1
        da = mpmath.diff(lambda t: cdf(t, B), A)
        db = mpmath.diff(lambda t: cdf(A, t), B)
        return float(sign * da / density), float(sign * db / density)


def _points(a: float, b: float) -> list[float]:
    """x at the CDF levels (where float64 holds it inside (0, 1) above 1e-300), and on both sides of
    the symmetry switch (a+1)/(a+b+2) and of the power series' edges (x = 1/4, b x = 2, likewise 1-x)."""
    u = torch.tensor(LEVELS, dtype=F64)
    t = invert_cdf(lambda t: beta.betainc(torch.sigmoid(t), torch.full_like(u, a), torch.full_like(u, b)),
                   u, -740.0, 37.0, iterations=64)
    xs = [v for v in torch.sigmoid(t).tolist() if 1e-300 < v < 1]
    for edge in ((a + 1) / (a + b + 2), 0.25, 2 / b, 0.75, 1 - 2 / a):
        xs += [edge * (1 - 1e-9), edge * (1 + 1e-9)]
    return sorted({v for v in xs if 1e-300 < v < 1 - 2e-16})


@pytest.mark.parametrize("a,b", list(itertools.product(VALUES, VALUES)))
def test_native_gradient_matches_mpmath(native_on, a, b):
    xs = _points(a, b)
    x = torch.tensor(xs, dtype=F64)
    da, db = _kernel_grad(x, torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64))
    for i, xi in enumerate(xs):
        ra, rb = _reference(xi, a, b)
        assert ra > 0 > rb
        assert abs(da[i].item() - ra) <= 1e-12 * abs(ra), (a, b, xi, da[i].item(), ra)
        assert abs(db[i].item() - rb) <= 1e-12 * abs(rb), (a, b, xi, db[i].item(), rb)


def _draws(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    a = 10 ** (torch.rand(n, generator=g, dtype=F64) * (math.log10(hi) - math.log10(lo)) + math.log10(lo))
    b = a[torch.randperm(n, generator=g)]
    with vt.config.seeded(seed):
        x = torch.distributions.Beta(a, b).sample().clamp(1e-300, 1 - 2.0 ** -53)
    return x, a, b


@pytest.mark.parametrize("lo,hi,rtol", [(0.1, 10.0, 1e-12), (10.0, 1e3, 1e-11), (1e-3, 1e3, 3e-9)])
def test_native_and_torch_paths_agree(monkeypatch, lo, hi, rtol):
    # the torch path (autograd through the continued fraction) loses up to ~1e-9 where one concentration
    # is ~1e-3 and the other in the hundreds; where the two differ most, the kernel is the one matching mpmath
    x, a, b = _draws(3000, lo, hi, seed=0)
    monkeypatch.setenv("VITOOLS_NATIVE", "on")
    ours = beta._beta_cdf_grad(x, a, b)
    monkeypatch.setenv("VITOOLS_NATIVE", "off")
    theirs = beta._beta_cdf_grad(x, a, b)
    for k, (g_ours, g_theirs, sign) in enumerate(zip(ours, theirs, (1, -1))):
        assert (sign * g_ours > 0).all()
        assert torch.allclose(g_ours, g_theirs, rtol=rtol, atol=0)
        for j in ((g_ours - g_theirs) / g_ours).abs().argsort(descending=True)[:2].tolist():
            ref = _reference(x[j].item(), a[j].item(), b[j].item())[k]
            assert abs(g_ours[j].item() - ref) <= 1e-12 * abs(ref)


def test_cdf_route_uses_the_kernel_unless_off(monkeypatch):
    x, a, b = _draws(100, 0.1, 10.0, seed=1)
    calls = []
    monkeypatch.setattr(beta, "_cdf_grad", lambda *args: calls.append("torch") or [torch.zeros_like(x)] * 2)
    monkeypatch.setenv("VITOOLS_NATIVE", "on")
    assert native.library("beta_grad") is not None
    assert (beta._beta_cdf_grad(x, a, b)[0] > 0).all() and calls == []
    monkeypatch.setenv("VITOOLS_NATIVE", "off")
    assert (beta._beta_cdf_grad(x, a, b)[0] == 0).all() and calls == ["torch"]


def test_float32_inputs_round_the_float64_gradient(native_on):
    x, a, b = (t.float() for t in _draws(5000, 1e-2, 1e3, seed=2))
    keep = (x > 0) & (x < 1)
    x, a, b = x[keep], a[keep], b[keep]
    g32 = beta._beta_cdf_grad(x, a, b)
    g64 = beta._beta_cdf_grad(x.double(), a.double(), b.double())
    for lo, hi in zip(g32, g64):
        assert lo.dtype == torch.float32 and torch.isfinite(lo).all()
        assert torch.equal(lo, hi.float())                           # computed in float64, rounded once
        representable = hi.abs() > torch.finfo(torch.float32).tiny
        rel = ((lo.double() - hi) / hi)[representable].abs()
        assert rel.max() <= 2.0 ** -24


def test_native_edges_are_finite_and_bad_input_is_refused(native_on):
    tiny, top = torch.finfo(F64).tiny, 1 - torch.finfo(F64).eps / 2
    x = torch.tensor([0.0, tiny, 0.5, top, 1.0], dtype=F64)
    for a, b in [(1e-3, 1e-3), (1e3, 1e-3), (1e-3, 1e3), (1e4, 1e4)]:
        for g in beta._beta_cdf_grad(x, torch.full_like(x, a), torch.full_like(x, b)):
            assert torch.isfinite(g).all(), (a, b)
    empty = torch.empty(0, dtype=F64)
    assert [g.shape for g in beta._beta_cdf_grad(empty, empty, empty)] == [(0,), (0,)]
    one = torch.ones(2, dtype=F64)
    for mode in ("on", "off"):
        with pytest.MonkeyPatch.context() as m:
            m.setenv("VITOOLS_NATIVE", mode)
            with pytest.raises(ValueError, match="z must be finite"):
                beta._beta_cdf_grad(torch.tensor([0.5, math.nan], dtype=F64), one, one)
