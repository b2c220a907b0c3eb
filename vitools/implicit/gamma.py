r"""Gamma samples with implicit reparameterization gradients in shape and rate.

Figurnov, Mohamed & Mnih 2018 (arXiv:1805.08498), Section 3 and Appendix: for
$z \sim \mathrm{Gamma}(\alpha, 1)$ with CDF the regularized incomplete gamma function
$P(\alpha, z)$, $dz/d\alpha = -\partial_\alpha P(\alpha, z) / q(z \mid \alpha)$; the rate
enters by scaling, $z/\beta$. torch's own ``Gamma.rsample`` uses fixed approximations of
this derivative (about $10^{-4}$ relative error); here $\partial_\alpha P$ is summed in
float64, so the sample-gradient is accurate to about $10^{-13}$ in float64
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

Both are used for $\alpha < 10$ and in the far tails ($|\eta| > 1$, see below). For
$\alpha \ge 10$ the series would need $O(\sqrt\alpha)$ terms; there
:mod:`vitools.implicit.gamma_asymptotic` differentiates Temme's uniform asymptotic expansion
(Temme 1979; DiDonato & Morris 1986) in closed form,
$dz/d\alpha = \lambda\{1 + \Gamma^*(\alpha)[-\eta/2 - (\eta^2/2 + 1/2\alpha)S + \partial_\alpha S]\}$,
$\lambda = z/\alpha$, with a number of terms fixed per band of $\alpha$ (about $3\cdot10^{-16}$
relative error) and no $\alpha$-dependent iteration count.

No loop length depends on the data: every sample is assigned a region (a band of Temme's
expansion, or a bucket of $z$ for the series / the continued fraction), the samples are sorted
by region once, and each region (a contiguous slice) runs a fixed number of terms, vectorized
and in place. Host synchronisations: a fixed handful per call (shape range, region counts),
none inside a loop. A region with fewer than ``MIN_BATCH`` samples runs together with the next
costlier one of its kind (fewer kernel launches for the rare ones). The counts
(``SERIES_BUCKETS``, ``CF_BUCKETS``) are the measured worst cases over $\alpha \in [10^{-4}, 10)$
and the far tails of $\alpha \in [10, 10^7]$ (terms needed to agree with the expansion summed
to convergence, to $2\cdot10^{-16}$ for the series and to the fraction's $3\cdot10^{-14}$
rounding floor), plus a margin of about a quarter. Tiny $z$ get few terms ($z < 2^{-60}$:
none, $S = 1$), which also keeps the terms out of slow subnormal arithmetic.

Samples whose value underflows to 0 get gradient 0 (the limit of $z \log z$).
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks
from . import gamma_asymptotic as asym
from .core import implicit_sample, invert_cdf

# (upper edge of z, terms): the series for z < alpha + 1, the continued fraction otherwise
SERIES_BUCKETS = ((2.0 ** -60, 0), (1e-8, 3), (1e-3, 7), (0.25, 16), (1.0, 24), (3.0, 36),
                  (float("inf"), 48))                                       # needed: 0, 2, 6, 12, 20, 28, 40
CF_BUCKETS = ((1.5, 96), (2.0, 64), (3.0, 48), (5.0, 36), (11.0, 28), (30.0, 20),
              (float("inf"), 16))                               # needed: 76, 52, 40, 28, 20, 16, 12
ASYMPTOTIC_MIN = asym.BANDS[-1][0]   # alpha >= 10 and |eta| <= 1: Temme's expansion
MIN_BATCH = 8192   # a region with fewer samples runs with the next costlier one (fewer dispatches)
_N_BANDS, _N_SERIES = len(asym.BANDS), len(SERIES_BUCKETS)
_N_CODES = _N_BANDS + _N_SERIES + len(CF_BUCKETS)   # region codes; _N_CODES itself: z <= 0 or NaN


def _series(x: torch.Tensor, a: torch.Tensor, terms: int) -> torch.Tensor:
    """dz/da for x < a + 1 (float64 1-D tensors), ``terms`` terms of the series."""
    S, dS = torch.ones_like(x), torch.zeros_like(x)          # partial sums of t_n and dt_n/da
    t, dt = torch.ones_like(x), torch.zeros_like(x)
    inv = torch.empty_like(x)
    for n in range(1, terms + 1):
        torch.add(a, float(n), out=inv).reciprocal_()        # 1 / (a + n)
        t.mul_(x).mul_(inv)                                  # t_n = t_{n-1} x / (a + n)
        dt.mul_(x).sub_(t).mul_(inv)                         # dt_n = (dt_{n-1} x - t_n) / (a + n)
        S.add_(t)
        dS.add_(dt)
    bracket = S.mul_(torch.log(x).sub_(torch.special.digamma(a + 1))).add_(dS)
    return bracket.mul_(x).div_(a).neg_()


def _continued_fraction(x: torch.Tensor, a: torch.Tensor, terms: int) -> torch.Tensor:
    """dz/da for x >= a + 1 (float64 1-D tensors), ``terms`` convergents."""
    # Convergents C_n = A_n / B_n of the fraction and their a-derivatives, by the three-term
    # recurrence; the state is rescaled by 1/B_n every step so B_n = 1 and C_n = A_n.
    xa = x - a
    A1 = (xa + 1).reciprocal_()
    A0, B0, dA0, dA1, dB0 = (torch.zeros_like(x) for _ in range(5))
    B0.copy_(A1)
    dB1 = -A1                                                # (A_{n-1}, A_n, B_{n-1}) / B_n and derivatives
    an, bn, B2, A2, dA2, dB2 = (torch.empty_like(x) for _ in range(6))
    for n in range(2, terms + 1):
        torch.sub(a, float(n - 1), out=an).mul_(float(n - 1))  # a_n = -(n-1)(n-1-a), da_n/da = n - 1
        torch.add(xa, float(2 * n - 1), out=bn)              # b_n = x + 2n - 1 - a, db_n/da = -1
        torch.addcmul(bn, an, B0, out=B2)                    # B_{n-1} = 1 after rescaling
        torch.mul(bn, A1, out=A2).addcmul_(an, A0)
        torch.mul(bn, dA1, out=dA2).sub_(A1).add_(A0, alpha=float(n - 1)).addcmul_(an, dA0)
        torch.mul(bn, dB1, out=dB2).sub_(1).add_(B0, alpha=float(n - 1)).addcmul_(an, dB0)
        scale = B2.reciprocal_()
        A0, A1, A2 = A1.mul_(scale), A2.mul_(scale), A0      # (A0 is reused as a buffer)
        dA0, dA1, dA2 = dA1.mul_(scale), dA2.mul_(scale), dA0
        dB0, dB1, dB2 = dB1.mul_(scale), dB2.mul_(scale), dB0
        B0, B2 = scale, B0
    C, dC = A1, dA1.sub_(A1 * dB1)
    return C.mul_(torch.log(x).sub_(torch.special.digamma(a))).add_(dC).mul_(x)


def _fallback_codes(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Series / continued-fraction bucket of each sample (int8 [n]), by z."""
    s_code = sum((x >= edge for edge, _ in SERIES_BUCKETS[:-1]),
                 torch.full_like(x, _N_BANDS, dtype=torch.int8))
    c_code = sum((x >= edge for edge, _ in CF_BUCKETS[:-1]),
                 torch.full_like(x, _N_BANDS + _N_SERIES, dtype=torch.int8))
    return torch.where(x < a + 1, s_code, c_code)


def _regions(x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Region code of each sample (int8 [n]): Temme band j (0..), else series / fraction bucket,
    else ``_N_CODES`` (z <= 0 or NaN); and eta (float64 [n], 0 where a < 10).

    The bands' shape floors decrease and their eta bounds increase with j, so a sample's band
    is max(j_a, j_eta): the first band its shape reaches and the first its |eta| fits in."""
    a_min, a_max = (float(v) for v in torch.aminmax(a))
    if a_max < ASYMPTOTIC_MIN:
        return _fallback_codes(x, a).masked_fill_(~(x > 0), _N_CODES), torch.zeros_like(x)
    big = None if a_min >= ASYMPTOTIC_MIN else a >= ASYMPTOTIC_MIN
    mu = (x - a).div_(a) if big is None else torch.where(big, x, a).sub_(a).div_(a)
    e = asym._eta_of_mu(mu)
    ae = e.abs()
    # j_eta = number of bands whose bound |eta| exceeds (>= _N_BANDS: none fits)
    code = torch.zeros_like(x, dtype=torch.int8)
    for hi in sorted(set(h for _, h in asym.BANDS)):
        code.add_(ae > hi, alpha=sum(1 for _, h in asym.BANDS if h == hi))
    code.masked_fill_(torch.isnan(ae), _N_BANDS)
    # j_a = number of bands whose shape floor a is below (constant where every a is above it)
    j_a = sum(1 for lo, _ in asym.BANDS if lo > a_max)
    for j, (lo, _) in enumerate(asym.BANDS):
        if a_min < lo <= a_max:
            code = torch.maximum(code, (a < lo).to(torch.int8).mul_(j + 1))
    if j_a:
        code.clamp_(min=j_a)
    rest = code >= _N_BANDS
    if big is not None:
        rest |= ~big
    n_rest = int(rest.sum())
    if n_rest == x.numel():
        code = _fallback_codes(x, a)
    elif n_rest:
        idx = rest.nonzero().squeeze(1)
        code[idx] = _fallback_codes(x[idx], a[idx])
    return code.masked_fill_(~(x > 0), _N_CODES), e



def _run(c: int, x: torch.Tensor, a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """dz/da by the method and fixed term count of region code ``c``."""
    if c < _N_BANDS:
        return asym._temme_dz_da(x, a, e, asym.BANDS[c])
    if c < _N_BANDS + _N_SERIES:
        return _series(x, a, SERIES_BUCKETS[c - _N_BANDS][1])
    return _continued_fraction(x, a, CF_BUCKETS[c - _N_BANDS - _N_SERIES][1])


def _check_grad_inputs(z, alpha) -> torch.Tensor:
    """``alpha`` broadcast to ``z``'s shape, after one fused validity test (a ValueError naming the
    argument and the value otherwise)."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got {type(z).__name__}")
    alpha = torch.as_tensor(alpha, device=z.device)
    if not alpha.is_floating_point():
        alpha = alpha.to(z.dtype)
    try:
        alpha = alpha.expand(z.shape)
    except RuntimeError:
        raise ValueError(f"alpha must broadcast to z's shape {tuple(z.shape)}, got shape {tuple(alpha.shape)}") from None
    if z.numel() and not bool(((z >= 0) & (z < math.inf) & (alpha > 0) & (alpha < math.inf)).all()):
        checks.positive("alpha", alpha)
        checks.finite("z", z)
        bad = z[z < 0].flatten()[0].item()
        raise ValueError(f"z must be >= 0 (a Gamma sample), got {bad!r}")
    return alpha


def standard_gamma_grad(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""$dz/d\alpha$ for samples ``z`` (>= 0) of Gamma(``alpha``, 1); same shape and dtype as ``z``.

    Computed in float64 whatever the input dtype; ``alpha`` (positive) broadcasts to ``z``.
    """
    alpha = _check_grad_inputs(z, alpha)
    x, a = z.detach().double().flatten(), alpha.detach().double().flatten()
    if not x.numel():
        return torch.zeros_like(z)
    code, e = _regions(x, a)
    counts = torch.bincount(code, minlength=_N_CODES + 1).tolist()
    # each kind's codes from the cheapest to the costliest; small regions ride with the next one
    groups = []                                              # (first code, last code, code whose method runs)
    for kind in (range(_N_BANDS), range(_N_BANDS, _N_BANDS + _N_SERIES),
                 range(_N_CODES - 1, _N_BANDS + _N_SERIES - 1, -1)):
        present = [c for c in kind if counts[c]]
        members: list[int] = []
        for c in present:
            members.append(c)
            if sum(counts[m] for m in members) >= MIN_BATCH or c == present[-1]:
                groups.append((min(members), max(members), c))
                members = []
    if len(groups) == 1 and counts[groups[0][2]] == x.numel():
        out = _run(groups[0][2], x, a, e)                    # one region: no reordering
    else:
        # sort the samples by region once; every region is then a contiguous slice (a view)
        order = torch.argsort(code, stable=True)
        xs, as_, es = x[order], a[order], e[order]
        starts = [0]
        for count in counts:
            starts.append(starts[-1] + count)
        res = torch.zeros_like(x)
        for lo, hi, c in groups:
            sl = slice(starts[lo], starts[hi + 1])
            res[sl] = _run(c, xs[sl], as_[sl], es[sl])
        out = torch.empty_like(x).index_copy_(0, order, res)
    return out.reshape(z.shape).to(z.dtype)


def _grad_fn(z, alpha):
    return (standard_gamma_grad(z, alpha),)


def log_grad(log_z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""$d\log z/d\alpha = (dz/d\alpha)/z$ from $\log z$ (float64), also where $z$ underflows: below
    $z = 2^{-60}$ the series has $S = 1$, $S' = 0$ and $d\log z/d\alpha = -(\log z - \psi(\alpha+1))/\alpha$."""
    small = log_z < -60 * math.log(2)                   # SERIES_BUCKETS[0]: no series terms below
    z = torch.where(small, torch.ones_like(log_z), log_z.exp())
    return torch.where(small, (torch.special.digamma(alpha + 1) - log_z) / alpha, standard_gamma_grad(z, alpha) / z)


def rsample_log_standard_gamma(alpha: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    r"""$\log z$ for $z \sim$ Gamma(``alpha``, 1), ``[*sample_shape, *alpha.shape]`` in float64, with its
    implicit gradient in ``alpha``; never $-\infty$. Shapes below 1 are boosted (Marsaglia & Tsang
    2000): $z = g\,u^{1/\alpha}$, $g \sim$ Gamma$(\alpha + 1)$, so $\log z = \log g + \log(u)/\alpha$
    stays finite where $z$ itself underflows (about half of all draws at $\alpha = 10^{-3}$)."""
    checks.positive("alpha", alpha)
    a = alpha.double().expand(checks.sample_shape("sample_shape", sample_shape) + alpha.shape)
    with torch.no_grad():
        ad = a.detach().contiguous()
        boost = ad < 1
        g = torch._standard_gamma(torch.where(boost, ad + 1, ad))
        log_u = torch.log1p(-torch.rand_like(g))                  # log of a uniform in (0, 1]
        log_z = torch.log(g) + torch.where(boost, log_u / ad, torch.zeros_like(g))
    return implicit_sample(log_z, lambda lz, al: (log_grad(lz, al),), a)


def rsample_standard_gamma(alpha: torch.Tensor, sample_shape=torch.Size()) -> torch.Tensor:
    """Gamma(``alpha``, 1) samples ``[*sample_shape, *alpha.shape]`` differentiable in ``alpha``."""
    checks.positive("alpha", alpha)
    shape = checks.sample_shape("sample_shape", sample_shape) + alpha.shape
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
        checks.positive("concentration", concentration)
        checks.positive("rate", rate)
        super().__init__(concentration, rate, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance=_instance or self.__new__(type(self)))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        z = rsample_standard_gamma(self.concentration.expand(shape))
        tiny = torch.finfo(z.dtype).tiny
        return (z / self.rate.expand(shape)).clamp_min(tiny)


def gamma_icdf(u: torch.Tensor, alpha: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    r"""$z = P^{-1}(\alpha, u)$, the inverse standard-Gamma CDF, by bisection in $\log z$ on torch's
    ``gammainc`` (float64 in, float64 out). A slow, exact-to-rounding reference for tests,
    benchmarks and pictures (central differences of it check $dz/d\alpha$), not a sampler."""
    checks.broadcast(u=u, alpha=alpha)
    checks.positive("alpha", alpha)
    return torch.exp(invert_cdf(lambda t: torch.special.gammainc(alpha, torch.exp(t)), u, -740.0, 12.0,
                                iterations=iterations))
