r"""von Mises samples with implicit reparameterization gradients in location and concentration.

Figurnov, Mohamed & Mnih 2018 (arXiv:1805.08498), Section 3 and Appendix: torch has no
``VonMises.rsample`` because the distribution has no tractable inverse CDF. Implicit
reparameterization needs only the CDF's derivative in the concentration $\kappa$:
$d\theta/d\kappa = -\partial_\kappa F(\theta \mid \kappa) / q(\theta \mid \kappa)$ for the
centred angle $\theta = z - \mu$, and $dz/d\mu = 1$.

* Sampler: the Best & Fisher (1979) wrapped-Cauchy rejection sampler, vectorized over all
  samples (the loop runs over rejection rounds, not samples), in float64.
* Gradient and CDF: one quadrature for every $\kappa$, with no cancellation anywhere. With
  $q(t) \propto e^{\kappa\cos t}$ and $\partial_\kappa q = q\,(\cos t - A)$, $A = I_1/I_0$, the
  symmetry of $q$ gives, for $x = |\theta|$,

  $$\frac{d\theta}{d\kappa} = -\mathrm{sign}(\theta)\int_0^x e^{\kappa(\cos t - \cos x)}(\cos t - A)\,dt
  = \mathrm{sign}(\theta)\int_x^\pi e^{-\kappa(\cos x - \cos t)}(\cos t - A)\,dt,$$

  the density cancelling against the integrand. The integrand $\cos t - A$ changes sign once,
  at $t^* = \arccos A$: the first form is used for $x \le t^*$ and the second beyond, so each
  integrand has one sign and the sum loses nothing in the far tails. The CDF is the same
  integral without $\cos t - A$: $F = \tfrac12 \pm q(x)\int_0^x$ near the centre and
  $q(x)\int_x^\pi$ (left tail) or $1 - q(x)\int_x^\pi$ (right tail). Each integral is a fixed
  ``NODES``-point Gauss-Legendre rule in $t$ (an entire integrand); the tail interval stops where
  the exponent reaches ``CUT`` ($e^{-40} < 10^{-17}$), which keeps the rule accurate for
  $\kappa$ up to $10^4$ and beyond. Differences are written as products of sines
  ($\cos t - \cos x = -2\sin\frac{t+x}2\sin\frac{t-x}2$, $\cos t - A = (1 - A) - 2\sin^2\frac t2$,
  $1 - A$ from its asymptotic series for $\kappa \ge 50$ and $\pi - x$ with $\pi$'s low-order
  bits), so the only rounding is that of the exponent, about $10^{-14}$ relative.

This replaces Hill's (1977, ACM TOMS Algorithm 518) series / normal approximation pair,
which is exact below its switch at $\kappa = 10.5$ and off by up to $10^{-3}$ in the far tails
above it (TensorFlow Probability uses the same switch). Over the real line the CDF counts
whole turns, $F(\theta + 2\pi) = F(\theta) + 1$.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from torch import distributions as D

from .. import checks
from .core import implicit_sample

NODES = 32            # Gauss-Legendre nodes per integral (measured: 24 already reach rounding)
CUT = 40.0            # the tail integral stops where its exponent reaches -CUT
ASYMPTOTIC_KAPPA = 50.0   # 1 - A(kappa) from its asymptotic series from here on
_PI_LO = 1.2246467991473532e-16   # pi - float(pi)
_V, _W = (tuple(float(t) for t in arr) for arr in np.polynomial.legendre.leggauss(NODES))


def _asymptotic_coefficients(terms: int = 20) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""$\sqrt{2\pi\kappa}\,I_\nu(\kappa)e^{-\kappa} \sim \sum_k (-1)^k a_k(\nu)\kappa^{-k}$ (DLMF 10.40.1):
    the coefficients of $P_0$ and of $P_0 - P_1$, exact then rounded, so that
    $1 - A = (P_0 - P_1)/P_0$ has no cancellation."""
    p0, diff = [], []
    a0 = a1 = Fraction(1)
    for k in range(terms):
        if k:
            a0 *= Fraction(-(2 * k - 1) ** 2, 8 * k)
            a1 *= Fraction(4 - (2 * k - 1) ** 2, 8 * k)
        p0.append(float((-1) ** k * a0))
        diff.append(float((-1) ** k * (a0 - a1)))
    return tuple(p0), tuple(diff)


_P0, _P0_MINUS_P1 = _asymptotic_coefficients()


def one_minus_bessel_ratio(kappa: torch.Tensor) -> torch.Tensor:
    r"""$1 - I_1(\kappa)/I_0(\kappa)$ to about $10^{-15}$ relative for every $\kappa > 0$ (float64):
    directly below ``ASYMPTOTIC_KAPPA`` (the subtraction loses at most $2\kappa$ ulps), from 20
    terms of the asymptotic series above (error below $10^{-16}$ there)."""
    direct = 1 - torch.special.i1e(kappa) / torch.special.i0e(kappa)
    u = 1 / kappa.clamp_min(ASYMPTOTIC_KAPPA)
    p, d = torch.full_like(u, _P0[-1]), torch.full_like(u, _P0_MINUS_P1[-1])
    for cp, cd in zip(_P0[-2::-1], _P0_MINUS_P1[-2::-1]):
        p = p * u + cp
        d = d * u + cd
    return torch.where(kappa >= ASYMPTOTIC_KAPPA, d / p, direct)


def _integrals(x: torch.Tensor, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""For $x \in [0, \pi]$ and $\kappa$ (float64, broadcast): ``(J0, J1, centre)`` with
    $J_m = \int e^{\pm\kappa(\cos t - \cos x)}(\cos t - A)^m dt$ over $[0, x]$ where ``centre``
    ($x \le t^*$) and over $[x, b]$ beyond, $b$ the cut-off point of the module docstring."""
    oma = one_minus_bessel_ratio(kappa)
    centre = x <= 2 * torch.asin(torch.sqrt(oma / 2)).detach()       # x <= t* = arccos A
    reach = torch.sqrt(torch.sin(x / 2) ** 2 + CUT / (2 * kappa))     # sin(b/2)
    inside = reach.detach() < 1
    b_minus_x = 2 * torch.asin(torch.where(inside, reach, torch.full_like(reach, 0.5))) - x
    span = torch.where(centre, x, torch.where(inside, b_minus_x, (math.pi - x) + _PI_LO))
    half = span / 2
    sign = torch.where(centre, -1.0, 1.0).to(x.dtype)                 # t = x - d or t = x + d
    j0, j1 = torch.zeros_like(half), torch.zeros_like(half)
    for v, w in zip(_V, _W):
        d = half * (1 + v)                                           # d = |t - x| in [0, span]
        t = x + sign * d
        e = torch.exp(-sign * 2 * kappa * torch.sin((t + x) / 2) * torch.sin(d / 2)) * w
        j0 = j0 + e
        j1 = j1 + e * (oma - 2 * torch.sin(t / 2) ** 2)
    return j0 * half, j1 * half, centre


def _wrap(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    turns = torch.round(x.detach() / (2 * math.pi))
    return x - 2 * math.pi * turns, turns                              # theta in [-pi, pi]


def von_mises_cdf(x: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    r"""CDF of the centred von Mises($0, \kappa$) at ``x`` (any real), differentiable in both.

    Shapes broadcast; computed in float64 (relative error about $10^{-14}$ in the left tail,
    $10^{-16}$ absolute elsewhere), returned in the promoted dtype of the inputs.
    """
    checks.broadcast(x=x, kappa=kappa)
    x, kappa = torch.broadcast_tensors(torch.as_tensor(x), torch.as_tensor(kappa))
    checks.positive("kappa", kappa)
    checks.finite("x", x)
    dtype = torch.promote_types(x.dtype, kappa.dtype) if x.is_floating_point() else kappa.dtype
    theta, turns = _wrap(x.double())
    k = kappa.double()
    a = theta.abs()
    j0, _, centre = _integrals(a, k)
    mass = j0 * von_mises_log_prob(a, k).exp()          # q(x) * integral: central or tail mass
    cdf = torch.where(centre, 0.5 + torch.sign(theta) * mass, torch.where(theta < 0, mass, 1 - mass))
    return (cdf.clamp(0, 1) + turns).to(dtype)


def von_mises_log_prob(x: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log density of the centred von Mises(0, kappa) (stable for large kappa via i0e); ``kappa >= 0``."""
    checks.broadcast(x=x, kappa=kappa)
    checks.finite("x", x)
    if not (checks.finite("kappa", kappa) >= 0).all():
        raise ValueError(f"kappa must be non-negative, got {torch.as_tensor(kappa).min().item()!r}")
    return -2 * kappa * torch.sin(x / 2) ** 2 - torch.log(2 * math.pi * torch.special.i0e(kappa))


def von_mises_sample_grad(theta: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    r"""$d\theta/d\kappa$ at centred samples ``theta`` in $[-\pi, \pi]$, ``kappa`` broadcast;
    the quadrature of the module docstring in float64 (relative error about $10^{-14}$ at every
    CDF level), returned in ``theta``'s dtype."""
    th = theta.detach().double()
    j0, j1, centre = _integrals(th.abs(), kappa.detach().double().expand(th.shape))
    return (torch.where(centre, -j1, j1) * torch.sign(th)).to(theta.dtype)


def _theta_grad(theta, kappa):
    return [von_mises_sample_grad(theta, kappa)]


def _proposal_r(kappa: torch.Tensor) -> torch.Tensor:
    # Best & Fisher's wrapped-Cauchy parameter, rearranged to avoid cancellation at small kappa.
    root = torch.sqrt(1 + 4 * kappa**2)
    tau = 1 + root
    rho = tau * (4 * kappa**2 / (root + 1)) / (tau + torch.sqrt(2 * tau)) / (2 * kappa)
    return (1 + rho**2) / (2 * rho)


def sample_centred(kappa: torch.Tensor) -> torch.Tensor:
    """Best-Fisher rejection samples of von Mises(0, ``kappa``), one per element, in (-pi, pi].

    Above ``kappa = 1e10`` the proposal's parameter rounds to 1 in float64 and the sampler would
    never accept; there theta ~ N(0, 1/kappa), exact to O(1/kappa). Below 1e-150 the density is
    uniform to float64 precision (kappa is clamped there so that kappa**2 does not underflow).
    """
    kappa = checks.positive("kappa", kappa)
    k = kappa.detach().double()
    big = k > 1e10
    normal = torch.randn_like(k) / torch.sqrt(k)
    k = k.clamp(1e-150, 1e10)
    r = _proposal_r(k)
    out = torch.where(big, normal, torch.empty_like(k))
    todo = ~big
    while todo.any():
        u1, u2, u3 = torch.rand((3, *k.shape), dtype=k.dtype, device=k.device)
        zc = torch.cos(math.pi * u1)
        f = (1 + r * zc) / (r + zc)
        c = k * (r - f)
        accept = (c * (2 - c) > u2) | (torch.log(c / u2) + 1 - c >= 0)
        theta = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1, 1))
        take = todo & accept
        out = torch.where(take, theta, out)
        todo = todo & ~accept
    return out.to(kappa.dtype)


def rsample_centred(kappa: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    """Centred von Mises samples ``[*sample_shape, *kappa.shape]`` differentiable in ``kappa``."""
    kappa = checks.real("kappa", kappa)
    checks.positive("kappa", kappa)
    k = kappa.expand(checks.sample_shape("sample_shape", sample_shape) + kappa.shape)
    return implicit_sample(sample_centred(k), _theta_grad, k)


class VonMises(D.VonMises):
    r"""``torch.distributions.VonMises`` with ``rsample`` (implicit reparameterization).

    Samples are ``loc + theta`` wrapped to $[-\pi, \pi)$ like torch's ``sample``; the
    gradient in ``loc`` is 1 and in ``concentration`` the implicit one.

    Example::

        >>> kappa = torch.tensor(2.0, requires_grad=True)
        >>> z = vt.implicit.VonMises(torch.tensor(0.0), kappa).rsample((1000,))
        >>> torch.cos(z).mean().backward()
    """

    has_rsample = True

    def __init__(self, loc, concentration, validate_args=None):
        checks.finite("loc", loc)
        checks.positive("concentration", concentration)
        super().__init__(loc, concentration, validate_args=validate_args)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        theta = rsample_centred(self.concentration.expand(shape))
        z = self.loc.expand(shape) + theta
        return z - (2 * math.pi * torch.floor((z.detach() + math.pi) / (2 * math.pi)))

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        return self.rsample(sample_shape).detach()

    def cdf(self, value):
        """CDF over the real line of ``value - loc`` (whole turns counted)."""
        return von_mises_cdf(value - self.loc, self.concentration)
