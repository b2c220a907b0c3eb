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
and in place. Every region edge is a power of two, so a sample's region is read off binary
exponents (``torch.frexp``: $z$'s, $\alpha$'s and $\eta^2$'s) and one table lookup, with no
search. Work goes in slices of ``CHUNK`` samples, whose few buffers stay in a core's cache.
Host synchronisations: a fixed handful per call (shape range, region counts), none inside a
loop. A region with fewer than ``MIN_BATCH`` samples runs together with the next costlier one of
its kind (fewer kernel launches for the rare ones). The counts (``SERIES_BUCKETS``,
``CF_BUCKETS``) are the measured worst cases over $\alpha \in [10^{-4}, 10)$ and the far tails of
$\alpha \in [10, 10^7]$ (terms needed to agree with the expansion summed to convergence, to
$2\cdot10^{-16}$ for the series and $3\cdot10^{-15}$ for the fraction), plus a margin of about a
quarter; a float32 ``z`` takes the counts needed to $10^{-9}$ (``SERIES_TERMS_32``,
``CF_TERMS_32``, and ``TAIL_32`` for Temme's expansion), still summed in float64. Tiny $z$ get
few terms ($z < 2^{-60}$: none, $S = 1$), which also keeps the terms out of slow subnormal
arithmetic.

Samples whose value underflows to 0 get gradient 0 (the limit of $z \log z$).
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks
from . import gamma_asymptotic as asym
from . import gamma_native, native
from .core import implicit_sample, invert_cdf

# (upper edge of z, terms): the series for z < alpha + 1, the continued fraction otherwise. Edges are
# powers of two (a sample's bucket is read off its floating-point exponent, torch.frexp).
SERIES_BUCKETS = ((2.0 ** -60, 0), (2.0 ** -27, 3), (2.0 ** -10, 6), (0.25, 16), (1.0, 23), (2.0, 28),
                  (4.0, 34), (float("inf"), 48))                     # needed: 0, 1, 4, 12, 18, 22, 27, 40
CF_BUCKETS = ((2.0, 104), (4.0, 58), (8.0, 34), (16.0, 21), (32.0, 16), (float("inf"), 16))
#                needed: 85, 46, 26, 16, 12, 9 (and 12 in the far upper tail of alpha in [10, 40])
# float32 results (rounding 6e-8) need the terms to 1e-9 only: needed 0, 1, 2, 8, 12, 15, 19, 28 (and 15
# in the far lower tail of large shapes); 36, 20, 12, 9, 9, 6. Computed in float64 all the same.
SERIES_TERMS_32 = (0, 2, 3, 10, 15, 19, 24, 34)
CF_TERMS_32 = (44, 25, 15, 12, 12, 10)
ASYMPTOTIC_MIN = asym.A_FLOORS[-1]   # alpha >= 10 and |eta| < 1: Temme's expansion
MIN_BATCH = 8192   # a region with fewer samples runs with the next costlier one (fewer dispatches)
CHUNK = 32768      # samples per slice of work: a slice's few buffers fit in a core's L2 cache
_N_BANDS, _N_SERIES = len(asym.BANDS), len(SERIES_BUCKETS)
_N_CODES = _N_BANDS + _N_SERIES + len(CF_BUCKETS)   # region codes; _N_CODES itself: z <= 0 or NaN


def _series(x: torch.Tensor, a: torch.Tensor, terms: int) -> torch.Tensor:
    r"""dz/da for x < a + 1 (float64 1-D tensors), ``terms`` terms of the series.

    Horner's rule from the last term up, $s \leftarrow 1 + w_n s$ with $w_n = x/(a+n)$, and its
    a-derivative $s' \leftarrow w_n s' - w_n s/(a+n)$: six in-place operations a term, and the
    smallest terms are summed first."""
    s, ds = torch.ones_like(x), torch.zeros_like(x)          # S and dS/da, from the tail up
    b, w = torch.empty_like(x), torch.empty_like(x)
    for n in range(terms, 0, -1):
        torch.add(a, float(n), out=b)                        # a + n
        torch.div(x, b, out=w)                               # w_n = x / (a + n), dw_n/da = -w_n / (a + n)
        ds.mul_(w)
        s.mul_(w)
        ds.addcdiv_(s, b, value=-1.0)
        s.add_(1.0)
    bracket = s.mul_(torch.log(x).sub_(torch.special.digamma(a + 1))).add_(ds)
    return bracket.mul_(x).div_(a).neg_()


def _continued_fraction(x: torch.Tensor, a: torch.Tensor, terms: int) -> torch.Tensor:
    r"""dz/da for x >= a + 1 (float64 1-D tensors), the ``terms``-th convergent.

    Evaluated from the bottom up: $f_T = b_T$, $f_n = b_n + a_{n+1}/f_{n+1}$, $C = 1/f_1$, with
    $b_n = x + 2n - 1 - a$ ($\partial_a b_n = -1$) and $a_{n+1} = n(a - n)$ ($\partial_a a_{n+1} = n$);
    carried as $h_n = f_n' + 1 = (n + r - r h_{n+1})/f_{n+1}$, $r = a_{n+1}/f_{n+1}$, with its sign
    alternating in place (nine operations a term). Then $C' = (1 - h_1)/f_1^2$."""
    xa = x - a
    f = xa + float(2 * terms - 1)                            # b_T
    h = torch.zeros_like(x)                                  # sign * h_n, h_T = f_T' + 1 = 0
    r = torch.empty_like(x)
    sign = 1.0
    for n in range(terms - 1, 0, -1):
        torch.sub(a, float(n), out=r).mul_(float(n)).div_(f)    # r = a_{n+1} / f_{n+1}
        if sign > 0:                                         # h holds +h_{n+1}: now -h_n
            h.mul_(r).sub_(r).sub_(float(n)).div_(f)
        else:                                                # h holds -h_{n+1}: now +h_n
            h.mul_(r).add_(r).add_(float(n)).div_(f)
        sign = -sign
        f, r = r.add_(xa).add_(float(2 * n - 1)), f          # f_n = b_n + r (r's buffer; f's is reused)
    # dz/da = x [C (log x - psi(a)) + C'] = (x / f) [log x - psi(a) + (1 - h) / f]
    one_minus_h = h.mul_(-sign).add_(1.0).div_(f)          # (1 - h_1) / f_1
    return one_minus_h.add_(torch.log(x)).sub_(torch.special.digamma(a)).mul_(x).div_(f)


_N_ETA = len(asym.ETA_LEVELS)
_NATIVE_CF = {False: CF_BUCKETS, True: tuple((edge, t) for (edge, _), t in zip(CF_BUCKETS, CF_TERMS_32))}


def _bucket_table(device) -> torch.Tensor:
    """Region code (int8) by key: the series buckets for keys 0.._SER_KEYS - 1 (binary exponent of z
    plus 61, clamped), then the fraction buckets (exponent - 1 + _SER_KEYS, clamped)."""
    table = _TABLES.get(device)
    if table is None:
        # z in [2^(e-1), 2^e) reaches the edge 2^p iff e >= p + 1
        ser = [_N_BANDS + sum(e - 1 >= math.log2(edge) for edge, _ in SERIES_BUCKETS[:-1])
               for e in range(-61, _SER_EMAX + 1)]
        cf = [_N_BANDS + _N_SERIES + sum(e - 1 >= math.log2(edge) for edge, _ in CF_BUCKETS[:-1])
              for e in range(1, _CF_EMAX + 1)]
        table = _TABLES[device] = torch.tensor(ser + cf, dtype=torch.int8, device=device)
    return table


_SER_EMAX = 5                        # z < alpha + 1 < 11: exponent <= 4
_CF_EMAX = int(math.log2(CF_BUCKETS[-2][0])) + 2
_SER_KEYS = 61 + _SER_EMAX + 1
_TABLES: dict = {}
_ROW_TOP = int(math.log2(asym.A_FLOORS[0])) + 1      # binary exponent of the first row's shapes
_LEVEL_SHIFT = 1 - 2 * int(math.log2(asym.ETA_LEVELS[0]))   # eta^2 exponent -> level, see _regions


def _regions(x: torch.Tensor, a: torch.Tensor, temme: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Region code of each sample (int8 [n]): Temme band ``row * len(ETA_LEVELS) + level`` (0..),
    else series / fraction bucket, else ``_N_CODES`` (z <= 0 or NaN); and eta (float64 [n]; None
    where no shape reaches the expansion; ``temme``: whether any does, if known).

    No search: every edge is a power of two, so each test reads a binary exponent (``torch.frexp``):
    z's for its bucket (one table lookup), a's for its row, and eta^2's for its level
    (|eta| < 2^-k iff eta^2 < 2^-2k)."""
    ex = torch.frexp(x).exponent
    key = torch.where(x < a + 1, ex.clamp(-61, _SER_EMAX).add_(61), ex.clamp(1, _CF_EMAX).add_(_SER_KEYS - 1))
    code = _bucket_table(x.device).index_select(0, key)
    e = None
    if (float(a.max()) >= ASYMPTOTIC_MIN) if temme is None else temme:
        mu = (x - a).div_(a)
        q = torch.log1p(mu).neg_().add_(mu).mul_(2).clamp_min_(0.0)          # eta^2
        # eta^2 in [2^(m-1), 2^m): |eta| < 2^-k for the smallest k with m <= -2k
        level = torch.frexp(q).exponent.add_(_LEVEL_SHIFT).bitwise_right_shift_(1).clamp_(min=0)   # floor(/2)
        row = torch.frexp(a).exponent.neg_().add_(_ROW_TOP).clamp_(0, len(asym.A_FLOORS) - 1)
        temme = (level < _N_ETA) & (a >= ASYMPTOTIC_MIN)
        code = torch.where(temme, row.mul_(_N_ETA).add_(level).to(torch.int8), code)
        e = q.sqrt_().mul_(mu.sign_())
    return code.masked_fill_(~(x > 0), _N_CODES), e


def _run(c: int, x: torch.Tensor, a: torch.Tensor, e: torch.Tensor | None, single: bool = False) -> torch.Tensor:
    """dz/da by the method and fixed term count of region code ``c`` (float32 counts if ``single``)."""
    if c < _N_BANDS:
        return asym._temme_dz_da(x, a, e, asym.BANDS[c], asym.TAIL_32 if single else asym.TAIL)
    if c < _N_BANDS + _N_SERIES:
        j = c - _N_BANDS
        return _series(x, a, SERIES_TERMS_32[j] if single else SERIES_BUCKETS[j][1])
    j = c - _N_BANDS - _N_SERIES
    return _continued_fraction(x, a, CF_TERMS_32[j] if single else CF_BUCKETS[j][1])


def _groups(counts: list[int]) -> list[tuple[int, int, int]]:
    """(first code, last code, code whose method runs): each kind's present codes from the
    cheapest to the costliest, a region with fewer than ``MIN_BATCH`` samples riding with the next.
    Kinds: each Temme row (rising eta level), the series buckets, the fraction buckets (falling z)."""
    kinds = [range(r * _N_ETA, (r + 1) * _N_ETA) for r in range(len(asym.A_FLOORS))]
    kinds += [range(_N_BANDS, _N_BANDS + _N_SERIES), range(_N_CODES - 1, _N_BANDS + _N_SERIES - 1, -1)]
    groups = []
    for kind in kinds:
        present = [c for c in kind if counts[c]]
        members: list[int] = []
        for c in present:
            members.append(c)
            if sum(counts[m] for m in members) >= MIN_BATCH or c == present[-1]:
                groups.append((min(members), max(members), c))
                members = []
    return groups


def _chunked_regions(x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_regions` over slices of ``CHUNK`` samples (each one's temporaries stay in cache)."""
    if x.numel() <= CHUNK:
        return _regions(x, a)
    code = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    temme = float(a.max()) >= ASYMPTOTIC_MIN
    e = torch.empty_like(x) if temme else None
    for i in range(0, x.numel(), CHUNK):
        c, ei = _regions(x[i:i + CHUNK], a[i:i + CHUNK], temme)
        code[i:i + CHUNK] = c
        if e is not None:
            e[i:i + CHUNK] = 0.0 if ei is None else ei
    return code, e


def _chunked_run(c: int, x: torch.Tensor, a: torch.Tensor, e: torch.Tensor | None, single: bool) -> torch.Tensor:
    """:func:`_run` over slices of ``CHUNK`` samples."""
    if x.numel() <= CHUNK:
        return _run(c, x, a, e, single)
    out = torch.empty_like(x)
    for i in range(0, x.numel(), CHUNK):
        out[i:i + CHUNK] = _run(c, x[i:i + CHUNK], a[i:i + CHUNK], None if e is None else e[i:i + CHUNK], single)
    return out


def _check_grad_inputs(z, alpha) -> torch.Tensor:
    """``alpha`` broadcast to ``z``'s shape, after one fused validity test (a ValueError naming the
    argument and the value otherwise)."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got {type(z).__name__}")
    alpha = torch.as_tensor(alpha, device=z.device)
    if not alpha.is_floating_point():
        alpha = alpha.to(z.dtype)
    try:
        expanded = alpha.expand(z.shape)
    except RuntimeError:
        raise ValueError(f"alpha must broadcast to z's shape {tuple(z.shape)}, got shape {tuple(alpha.shape)}") from None
    if z.numel() and alpha.numel():                   # two reductions (NaN propagates through both)
        (z_lo, z_hi), (a_lo, a_hi) = torch.aminmax(z), torch.aminmax(alpha)
        valid = bool(((z_lo >= 0) & (z_hi < math.inf) & (a_lo > 0) & (a_hi < math.inf)).item())
    else:
        valid = True
    alpha = expanded
    if not valid:
        checks.positive("alpha", alpha)
        checks.finite("z", z)
        bad = z[z < 0].flatten()[0].item()
        raise ValueError(f"z must be >= 0 (a Gamma sample), got {bad!r}")
    return alpha


def standard_gamma_grad(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""$dz/d\alpha$ for samples ``z`` (>= 0) of Gamma(``alpha``, 1); same shape and dtype as ``z``.

    Computed in float64 whatever the input dtype, with the term counts of ``z``'s precision (a float32
    ``z`` gets expansions truncated at about 1e-9, far below its rounding); ``alpha`` (positive)
    broadcasts to ``z``. CPU float32 / float64 tensors go to the compiled kernel
    (:mod:`vitools.implicit.gamma_native`, the same expansions in one loop) unless ``VITOOLS_NATIVE=off``
    or it cannot be built; the torch operations below give the same values to rounding.
    """
    alpha = _check_grad_inputs(z, alpha)
    if not z.numel():
        return torch.zeros_like(z)
    single = torch.finfo(z.dtype).bits <= 32             # a float32 (or narrower) result: fewer terms
    if native.usable(z, alpha) and native.library("gamma_grad") is not None:
        return gamma_native.standard_gamma_grad(z, alpha, _NATIVE_CF[single])
    x, a = z.detach().double().flatten(), alpha.detach().double().flatten()
    code, e = _chunked_regions(x, a)
    counts = torch.bincount(code, minlength=_N_CODES + 1).tolist()
    groups = _groups(counts)
    if len(groups) == 1 and counts[groups[0][2]] == x.numel():
        out = _chunked_run(groups[0][2], x, a, e, single)             # one region: no reordering
    else:
        # sort the samples by region once; every region is then a contiguous slice (a view)
        order = torch.argsort(code, stable=True)
        xs, as_ = x.index_select(0, order), a.index_select(0, order)
        es = None if e is None else e.index_select(0, order)
        starts = [0]
        for count in counts:
            starts.append(starts[-1] + count)
        res = torch.zeros_like(x)
        for lo, hi, c in groups:
            sl = slice(starts[lo], starts[hi + 1])
            res[sl] = _chunked_run(c, xs[sl], as_[sl], None if es is None else es[sl], single)
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
