r"""Gamma samples with implicit reparameterization gradients in shape and rate.

Figurnov, Mohamed & Mnih 2018 (arXiv:1805.08498), Section 3 and Appendix: for
$z \sim \mathrm{Gamma}(\alpha, 1)$ with CDF the regularized incomplete gamma function
$P(\alpha, z)$, $dz/d\alpha = -\partial_\alpha P(\alpha, z) / q(z \mid \alpha)$; the rate
enters by scaling, $z/\beta$. torch's own ``Gamma.rsample`` uses fixed approximations of
this derivative (about $10^{-4}$ relative error); here $\partial_\alpha P$ is summed to
convergence in float64, so the sample-gradient is accurate to about $10^{-13}$ in float64
(and to rounding in float32, which is computed in float64 and cast).

Two expansions, both with their $\alpha$-derivative carried along term by term (the
prefactor $z^\alpha e^{-z}/\Gamma(\cdot)$ cancels against the density, so nothing
overflows):

* $z < \alpha + 1$, the power series
  $P = \frac{z^\alpha e^{-z}}{\Gamma(\alpha+1)} \sum_{n\ge0} t_n$, $t_0 = 1$,
  $t_n = t_{n-1}\, z/(\alpha+n)$, giving
  $\frac{dz}{d\alpha} = -\frac{z}{\alpha}\big[S(\log z - \psi(\alpha+1)) + S'\big]$;
* $z \ge \alpha + 1$, the continued fraction $Q = 1 - P = \frac{z^\alpha e^{-z}}{\Gamma(\alpha)} C$,
  $C = \cfrac{1}{z+1-\alpha - \cfrac{1(1-\alpha)}{z+3-\alpha - \cdots}}$, evaluated by the
  three-term recurrence for its convergents with their derivatives (rescaled each step),
  giving $\frac{dz}{d\alpha} = z\big[C(\log z - \psi(\alpha)) + C'\big]$.

Samples whose value underflows to 0 get gradient 0 (the limit of $z \log z$).
"""
from __future__ import annotations

import torch
from torch import distributions as D

from .core import check_parameter, implicit_sample

EPS = 1e-16        # series: stop when the next term is below EPS of the sum
CF_TOL = 1e-15     # continued fraction: successive convergents agree to a few ulps
MAX_TERMS = 20_000
CHECK_EVERY = 8


def _series(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """dz/da for x < a + 1 (float64 1-D tensors)."""
    S_out, dS_out = torch.empty_like(x), torch.empty_like(x)
    S, dS = torch.ones_like(x), torch.zeros_like(x)          # partial sums of t_n and dt_n/da
    t, dt = torch.ones_like(x), torch.zeros_like(x)
    active = torch.arange(x.numel(), device=x.device)
    xa, aa = x, a
    n = 0
    while active.numel():
        for _ in range(CHECK_EVERY):
            n += 1
            inv = 1.0 / (aa + n)
            t = t * xa * inv
            dt = (dt * xa - t) * inv
            S, dS = S + t, dS + dt
        going = ((t.abs() > EPS * S.abs()) | (dt.abs() > EPS * dS.abs())) & (n < MAX_TERMS)
        done = ~going
        S_out[active[done]], dS_out[active[done]] = S[done], dS[done]
        active, xa, aa, t, dt, S, dS = (v[going] for v in (active, xa, aa, t, dt, S, dS))
    return -(x / a) * (S_out * (torch.log(x) - torch.special.digamma(a + 1)) + dS_out)


def _continued_fraction(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """dz/da for x >= a + 1 (float64 1-D tensors)."""
    # Convergents C_n = A_n / B_n of the fraction and their a-derivatives, by the three-term
    # recurrence; the state is rescaled by 1/B_n every step so B_n = 1 and C_n = A_n.
    C_out, dC_out = torch.empty_like(x), torch.empty_like(x)
    b1 = x + 1 - a
    A0, A1, B0 = torch.zeros_like(x), 1 / b1, 1 / b1              # (A_{n-1}, A_n, B_{n-1}) / B_n
    dA0, dA1, dB0, dB1 = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x), -1 / b1
    active = torch.arange(x.numel(), device=x.device)
    xa, aa = x, a
    n = 1
    while active.numel():
        for i in range(CHECK_EVERY):
            n += 1
            an = -(n - 1) * (n - 1 - aa)                            # da_n/da = n - 1
            bn = xa + (2 * n - 1) - aa                              # db_n/da = -1
            B2 = bn + an * B0                                       # B_{n-1} = 1 after rescaling
            A2 = bn * A1 + an * A0
            dA2 = bn * dA1 - A1 + (n - 1) * A0 + an * dA0
            dB2 = bn * dB1 - 1 + (n - 1) * B0 + an * dB0
            scale = 1 / B2
            if i == CHECK_EVERY - 1:
                C_prev, dC_prev = A1, dA1 - A1 * dB1
            A0, A1, B0 = A1 * scale, A2 * scale, scale
            dA0, dA1, dB0, dB1 = dA1 * scale, dA2 * scale, dB1 * scale, dB2 * scale
        C, dC = A1, dA1 - A1 * dB1
        # dC may pass through 0, so its change is judged against the size of the whole
        # bracket C (log x - psi(a)) + dC that the result is made of.
        scale = dC.abs() + C.abs() * (torch.log(xa) - torch.special.digamma(aa)).abs()
        going = (((C - C_prev).abs() > CF_TOL * C.abs()) | ((dC - dC_prev).abs() > CF_TOL * scale)) \
            & (n < MAX_TERMS)
        done = ~going
        C_out[active[done]], dC_out[active[done]] = C[done], dC[done]
        active, xa, aa, A0, A1, B0, dA0, dA1, dB0, dB1 = (
            v[going] for v in (active, xa, aa, A0, A1, B0, dA0, dA1, dB0, dB1))
    return x * (C_out * (torch.log(x) - torch.special.digamma(a)) + dC_out)


def standard_gamma_grad(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""$dz/d\alpha$ for samples ``z`` of Gamma(``alpha``, 1); same shape and dtype as ``z``.

    Computed in float64 whatever the input dtype; ``alpha`` broadcasts to ``z``.
    """
    alpha = alpha.expand(z.shape)
    x, a = z.detach().double().flatten(), alpha.detach().double().flatten()
    out = torch.zeros_like(x)
    pos = x > 0
    series = pos & (x < a + 1)
    frac = pos & ~series
    if series.any():
        out[series] = _series(x[series], a[series])
    if frac.any():
        out[frac] = _continued_fraction(x[frac], a[frac])
    return out.reshape(z.shape).to(z.dtype)


def _grad_fn(z, alpha):
    return (standard_gamma_grad(z, alpha),)


def rsample_standard_gamma(alpha: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    """Gamma(``alpha``, 1) samples ``[*sample_shape, *alpha.shape]`` differentiable in ``alpha``."""
    check_parameter("alpha", alpha)
    shape = torch.Size(sample_shape) + alpha.shape
    a = alpha.expand(shape)
    with torch.no_grad():
        z = torch._standard_gamma(a.detach().contiguous())
    return implicit_sample(z, _grad_fn, a)


class Gamma(D.Gamma):
    r"""``torch.distributions.Gamma`` whose ``rsample`` carries the accurate implicit gradient.

    Example::

        >>> alpha = torch.tensor([0.5, 5.0], requires_grad=True)
        >>> x = vt.implicit.Gamma(alpha, 1.0).rsample((1000,))   # [1000, 2]
        >>> torch.log(x).mean(0).sum().backward()                # ~ trigamma(alpha)
    """

    def __init__(self, concentration, rate, validate_args=None):
        check_parameter("concentration", concentration)
        check_parameter("rate", rate)
        super().__init__(concentration, rate, validate_args=validate_args)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        z = rsample_standard_gamma(self.concentration.expand(shape))
        tiny = torch.finfo(z.dtype).tiny
        return (z / self.rate.expand(shape)).clamp_min(tiny)
