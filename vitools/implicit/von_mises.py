r"""von Mises samples with implicit reparameterization gradients in location and concentration.

Figurnov, Mohamed & Mnih 2018 (arXiv:1805.08498), Section 3 and Appendix: torch has no
``VonMises.rsample`` because the distribution has no tractable inverse CDF. Implicit
reparameterization needs only the CDF's derivative in the concentration $\kappa$:
$d\theta/d\kappa = -\partial_\kappa F(\theta \mid \kappa) / q(\theta \mid \kappa)$ for the
centred angle $\theta = z - \mu$, and $dz/d\mu = 1$.

* Sampler: the Best & Fisher (1979) wrapped-Cauchy rejection sampler, vectorized over all
  samples (the loop runs over rejection rounds, not samples), in float64.
* CDF: Hill (1977, Algorithm 518) — for $\kappa < 10.5$ the Fourier series
  $F(\theta) = \tfrac12 + \tfrac{\theta}{2\pi} + \tfrac1\pi\sum_{n\ge1}
  \frac{I_n(\kappa)}{I_0(\kappa)}\frac{\sin n\theta}{n}$ with the Bessel ratios
  $\rho_n = I_n/I_{n-1} = 1/(2n/\kappa + \rho_{n+1})$ from a backward recurrence; for
  $\kappa \ge 10.5$ Hill's corrected normal approximation in $\sin(\theta/2)$. Both are plain torch code, so autograd
  carries $\partial_\kappa F$ exactly through the truncated series (and the approximation).
  Over the real line the CDF counts whole turns, $F(\theta + 2\pi) = F(\theta) + 1$.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks
from .core import from_cdf, implicit_sample

SWITCH = 10.5
SERIES_TERMS = 48


def _series_cdf(theta: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    ratio = torch.zeros_like(kappa)
    total = torch.zeros_like(theta + kappa)
    for n in range(SERIES_TERMS, 0, -1):
        ratio = 1 / (2 * n / kappa + ratio)                    # rho_n = I_n / I_{n-1}
        total = ratio * (torch.sin(n * theta) / n + total)
    return 0.5 + theta / (2 * math.pi) + total / math.pi


def _normal_cdf(theta: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    # Hill (1977): w = b sin(theta/2) with b = sqrt(2/pi) e^kappa / I0(kappa) is nearly
    # standard normal; a rational correction in w^2 and c = 24 kappa removes the leading error.
    w = math.sqrt(2 / math.pi) / torch.special.i0e(kappa) * torch.sin(theta / 2)
    s, c = w**2, 24 * kappa
    denom = (c - 2 * s - 16) / 3 - (s**2 + 1.75 * s + 83.5) / (c - 53 - s)
    xi = w - w * s / denom**2
    return 0.5 * torch.erfc(-xi / math.sqrt(2))


def von_mises_cdf(x: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    r"""CDF of the centred von Mises($0, \kappa$) at ``x`` (any real), differentiable in both.

    Shapes broadcast; the result has the promoted dtype of the inputs.
    """
    x, kappa = torch.broadcast_tensors(torch.as_tensor(x), torch.as_tensor(kappa))
    checks.positive("kappa", kappa)
    checks.finite("x", x)
    turns = torch.round(x.detach() / (2 * math.pi))
    theta = x - 2 * math.pi * turns                             # in [-pi, pi]
    small = kappa.detach() < SWITCH
    k_small = torch.where(small, kappa, torch.ones_like(kappa))    # safe values keep the
    k_large = torch.where(small, torch.full_like(kappa, 2 * SWITCH), kappa)  # unused branch finite
    cdf = torch.where(small, _series_cdf(theta, k_small), _normal_cdf(theta, k_large))
    return cdf.clamp(0, 1) + turns


def von_mises_log_prob(x: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log density of the centred von Mises(0, kappa) (stable for large kappa via i0e)."""
    return kappa * (torch.cos(x) - 1) - torch.log(2 * math.pi * torch.special.i0e(kappa))


def _proposal_r(kappa: torch.Tensor) -> torch.Tensor:
    # Best & Fisher's wrapped-Cauchy parameter, rearranged to avoid cancellation at small kappa.
    root = torch.sqrt(1 + 4 * kappa**2)
    tau = 1 + root
    rho = tau * (4 * kappa**2 / (root + 1)) / (tau + torch.sqrt(2 * tau)) / (2 * kappa)
    return (1 + rho**2) / (2 * rho)


def sample_centred(kappa: torch.Tensor) -> torch.Tensor:
    """Best-Fisher rejection samples of von Mises(0, ``kappa``), one per element, in (-pi, pi]."""
    k = kappa.detach().double()
    r = _proposal_r(k)
    out = torch.empty_like(k)
    todo = torch.ones_like(k, dtype=torch.bool)
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


_theta_grad = from_cdf(von_mises_cdf, von_mises_log_prob)


def rsample_centred(kappa: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    """Centred von Mises samples ``[*sample_shape, *kappa.shape]`` differentiable in ``kappa``."""
    checks.positive("kappa", kappa)
    k = kappa.expand(torch.Size(sample_shape) + kappa.shape)
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
