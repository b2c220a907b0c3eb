r"""Beta and Dirichlet samples with implicit reparameterization gradients.

Figurnov, Mohamed & Mnih 2018 (arXiv:1805.08498), Section 3: two routes.

* Through Gammas: $x_i = g_i / \sum_j g_j$ with $g_i \sim \mathrm{Gamma}(\alpha_i, 1)$,
  each $g_i$ carrying its implicit gradient (:mod:`vitools.implicit.gamma`); autograd
  composes the rest. This gives Dirichlet, and Beta as its two-component case.
* Directly through the Beta CDF, the regularized incomplete beta function $I_x(a, b)$:
  $dx/da = -\partial_a I_x(a, b) / q(x \mid a, b)$. On the CPU the compiled kernel
  ``native/beta_grad.c`` (:mod:`vitools.implicit.native`) carries $\partial_a I$ and $\partial_b I$
  forward through the recurrences of the continued fraction's convergents (Boik & Robison-Cox
  1998, J. Statistical Software 3(1)), or through the power series for small $x$, with the
  prefactor $x^a (1-x)^b / (a B(a, b))$ cancelled against the density (relative error below
  1e-12 against mpmath for concentrations 1e-3 to 1e3). Elsewhere (CUDA, ``VITOOLS_NATIVE=off``)
  :func:`betainc` evaluates the continued fraction (Numerical Recipes' ``betacf``, modified
  Lentz) in torch, autograd gives $\partial_a I$ and $\partial_b I$ and
  :func:`vitools.implicit.core.from_cdf` does the rest: the same values, to about 1e-9 where one
  concentration is near 1e-3 and the other in the hundreds, and slower.

The two routes give different (both valid) couplings of $x$ to $(a, b)$, so their
per-sample gradients differ while their expected gradients agree.
"""
from __future__ import annotations

import ctypes

import torch
from torch import distributions as D

from .. import checks
from . import native
from .core import from_cdf, implicit_sample
from .gamma import rsample_log_standard_gamma

METHODS = ("gamma", "cdf")
MAX_ITERATIONS = 10_000
TOL = 1e-15


def _tiny_guard(t: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(t.dtype).tiny * 1e10
    return torch.where(t.detach().abs() < tiny, torch.full_like(t, tiny), t)


def _continued_fraction(x, a, b):
    qab, qap, qam = a + b, a + 1, a - 1
    c = torch.ones_like(x)
    d = 1 / _tiny_guard(1 - qab * x / qap)
    h = d
    for m in range(1, MAX_ITERATIONS + 1):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 / _tiny_guard(1 + even * d)
        c = _tiny_guard(1 + even / c)
        h = h * d * c
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 / _tiny_guard(1 + odd * d)
        c = _tiny_guard(1 + odd / c)
        step = d * c
        h = h * step
        if m % 4 == 0 and bool(((step.detach() - 1).abs() < TOL).all()):
            break
    return h


def betainc(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Regularized incomplete beta $I_x(a, b)$, differentiable in ``x``, ``a`` and ``b``.

    Shapes broadcast. The continued fraction converges fast for $x < (a+1)/(a+b+2)$; above
    that the symmetry $I_x(a, b) = 1 - I_{1-x}(b, a)$ is used.
    """
    checks.broadcast(x=x, a=a, b=b)
    x, a, b = torch.broadcast_tensors(checks.real("x", x), checks.real("a", a), checks.real("b", b))
    checks.positive("a", a)
    checks.positive("b", b)
    checks.probability("x", x)
    flip = (x > (a + 1) / (a + b + 2)).detach()
    xs = torch.where(flip, 1 - x, x)
    As, Bs = torch.where(flip, b, a), torch.where(flip, a, b)
    tiny = torch.finfo(x.dtype).tiny
    xs_safe = xs.clamp(tiny, 1 - torch.finfo(x.dtype).eps / 2)
    log_front = (As * torch.log(xs_safe) + Bs * torch.log1p(-xs_safe) - torch.log(As)
                 - (torch.lgamma(As) + torch.lgamma(Bs) - torch.lgamma(As + Bs)))
    value = torch.exp(log_front) * _continued_fraction(xs_safe, As, Bs)
    value = torch.where(xs.detach() <= 0, torch.zeros_like(value), value)
    return torch.where(flip, 1 - value, value)


def beta_log_prob(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log density of Beta(a, b) at ``x`` in (0, 1) (float64 in, float64 out)."""
    checks.broadcast(x=x, a=a, b=b)
    x, a, b = checks.real("x", x), checks.real("a", a), checks.real("b", b)
    checks.positive("a", a)
    checks.positive("b", b)
    checks.probability("x", x, open_interval=True)
    return ((a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x)
            - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)))


def _beta_cdf_grad(x, a, b):
    # x at the edge of the float format (0 or 1) is pinned there: its gradient is reported
    # at the nearest interior point, where it is already vanishingly small.
    eps = torch.finfo(torch.float64).eps
    xc = x.double().clamp(torch.finfo(torch.float64).tiny, 1 - eps / 2)
    kernel = _kernel() if native.usable(x, a, b) else None
    grads = _cdf_grad(xc, a, b) if kernel is None else _native_cdf_grad(kernel, xc, a, b)
    return [torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0).to(x.dtype) for g in grads]


_cdf_grad = from_cdf(betainc, beta_log_prob)


def _kernel():
    """``vitools_beta_grad`` of ``native/beta_grad.c`` (None where :func:`native.library` gives none)."""
    return native.function("beta_grad", "vitools_beta_grad", (ctypes.c_void_p,) * 5 + (ctypes.c_int64,))


def _native_cdf_grad(kernel, x, a, b):
    r"""$dx/da$, $dx/db$ in float64 from the compiled kernel: the same implicit gradient as
    :func:`_cdf_grad`, with $\partial_a I$, $\partial_b I$ carried through the continued fraction
    (or the power series) of ``native/beta_grad.c`` instead of autograd."""
    checks.finite("z", x)
    x, a, b = (t.detach().double().contiguous() for t in torch.broadcast_tensors(x, a, b))
    da, db = torch.empty_like(x), torch.empty_like(x)
    kernel(*(native.pointer(t) for t in (x, a, b, da, db)), x.numel())
    return da, db


def _clamp_through(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` clamped to [lo, hi] in value, with the unclamped sample's gradient (straight through:
    a sample rounded onto the edge of the float format keeps the gradient of where it really is)."""
    return x + (x.detach().clamp(lo, hi) - x.detach())


def rsample_dirichlet(concentration: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    """Dirichlet samples ``[*sample_shape, *concentration.shape]`` through Gamma implicit gradients.

    The Gammas are drawn and normalised in log space in float64 (``softmax`` of
    :func:`~vitools.implicit.gamma.rsample_log_standard_gamma`), whatever the dtype: no draw
    underflows, so no row collapses onto 1/K (float32 Gammas below the smallest normal number)
    or 0/0 (float64 Gammas at concentrations near 1e-3; torch issue 76030). Returned in the
    concentration's dtype, clamped into (0, 1] with the gradient passed straight through.
    """
    concentration = checks.real("concentration", concentration)
    checks.positive("concentration", concentration)
    x = torch.softmax(rsample_log_standard_gamma(concentration, sample_shape), -1).to(concentration.dtype)
    return _clamp_through(x, torch.finfo(x.dtype).tiny, 1.0)


def rsample_beta(a: torch.Tensor, b: torch.Tensor, sample_shape=torch.Size(), method: str = "gamma"):
    """Beta(a, b) samples ``[*sample_shape, *batch]``; ``method`` is ``"gamma"`` or ``"cdf"``.

    Both draw in float64 (log-space Gammas, :func:`rsample_dirichlet`) and differentiate there;
    the sample is then cast to the parameters' dtype and clamped to ``[tiny, 1 - eps/2]`` with
    the float64 gradient passed straight through (no zero gradient at the clamp).
    """
    checks.choice("method", method, METHODS)
    sample_shape = checks.sample_shape("sample_shape", sample_shape)
    checks.broadcast(a=a, b=b)
    a, b = checks.real("a", a), checks.real("b", b)
    checks.positive("a", a)
    checks.positive("b", b)
    a, b = torch.broadcast_tensors(torch.as_tensor(a), torch.as_tensor(b))
    dtype = torch.promote_types(a.dtype, b.dtype)            # float32 with float64: float64
    a, b = a.to(dtype), b.to(dtype)
    if method == "gamma":
        log_g = rsample_log_standard_gamma(torch.stack([a, b], -1), sample_shape)
        x = torch.sigmoid(log_g[..., 0] - log_g[..., 1])
    else:
        shape = torch.Size(sample_shape) + a.shape
        a64, b64 = a.double().expand(shape), b.double().expand(shape)
        with torch.no_grad():
            log_g = rsample_log_standard_gamma(torch.stack([a64, b64], -1).detach())
            x0 = torch.sigmoid(log_g[..., 0] - log_g[..., 1])
        x = implicit_sample(x0, _beta_cdf_grad, a64, b64)
    eps = torch.finfo(dtype).eps
    return _clamp_through(x.to(dtype), torch.finfo(dtype).tiny, 1 - eps / 2)


class Beta(D.Beta):
    r"""``torch.distributions.Beta`` whose ``rsample`` uses vitools' implicit gradients.

    ``method="gamma"`` (default) samples through two Gammas; ``method="cdf"`` differentiates
    the Beta CDF directly. The two couple the sample to $(a, b)$ differently, so their
    per-sample gradients differ (and differ from torch's own coupling) while the expected
    gradients agree: tests that pin torch's per-sample values do not apply.

    Example::

        >>> a = torch.tensor(2.0, requires_grad=True)
        >>> x = vt.implicit.Beta(a, 3.0, method="cdf").rsample((1000,))
        >>> x.mean().backward()        # ~ b / (a + b)^2 = 0.12
    """

    def __init__(self, concentration1, concentration0, method: str = "gamma", validate_args=None):
        checks.positive("concentration1", concentration1)
        checks.positive("concentration0", concentration0)
        self.method = checks.choice("method", method, METHODS)
        super().__init__(concentration1, concentration0, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance=_instance or self.__new__(type(self)))
        new.method = self.method
        return new

    def rsample(self, sample_shape=torch.Size()):
        return rsample_beta(self.concentration1, self.concentration0, sample_shape, self.method)

    def cdf(self, value):
        return betainc(value, self.concentration1, self.concentration0)


class Dirichlet(D.Dirichlet):
    """``torch.distributions.Dirichlet`` whose ``rsample`` goes through implicit Gamma gradients."""

    def __init__(self, concentration, validate_args=None):
        checks.positive("concentration", concentration)
        super().__init__(concentration, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance=_instance or self.__new__(type(self)))

    def rsample(self, sample_shape=torch.Size()):
        return rsample_dirichlet(self.concentration, sample_shape)
