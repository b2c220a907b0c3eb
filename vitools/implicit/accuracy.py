r"""Accuracy and speed of sample-gradients, as in the tables of Figurnov, Mohamed & Mnih 2018
(arXiv:1805.08498, Tables 1-2): each method's $dz/d\theta$ against a high-precision reference.

The reference is the implicit-function formula evaluated by mpmath at 40 digits:
$-\partial_\alpha P(\alpha, z)/q(z \mid \alpha)$ with ``mpmath.diff`` of the regularized
incomplete gamma (Gamma), and $-\int_{-\pi}^{\theta}\partial_\kappa q\,/\,q(\theta)$ with
$\partial_\kappa q = q(\cos t - A(\kappa))$ by ``mpmath.quad`` over the tail side of $\theta$
(von Mises). mpmath (the
``test`` extra) is imported only when a reference is asked for; it is never on a hot path.

Methods compared for Gamma (all at the same samples ``z``):

* ``vitools implicit``: :func:`vitools.implicit.standard_gamma_grad`;
* ``torch built-in``: the gradient behind ``torch.distributions.Gamma.rsample``;
* ``approx. inverse CDF``: :func:`vitools.implicit.approx_inverse_gamma_grad`;
* ``finite differences``: central differences (step $10^{-5}\alpha$ in float64,
  $\epsilon_{32}^{1/3}\alpha \approx 4.9 \cdot 10^{-3}\alpha$ in float32) of the inverse CDF solved by
  bisection at the sample's $u = P(\alpha, z)$.

Float32 rows are float32 from end to end for the approximate inverse CDF and the finite
differences (every intermediate in float32), and torch's built-in runs its float32 kernel;
vitools' implicit gradient evaluates its series in the precision its own implementation
chooses (:func:`vitools.implicit.standard_gamma_grad`) and returns the sample's dtype.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from .. import checks, config
from .alternatives import approx_inverse_gamma_grad
from .gamma import standard_gamma_grad
from .von_mises import _theta_grad, sample_centred

FD_STEP = 1e-5
DTYPES = (torch.float32, torch.float64)
# relative step of the central differences per dtype: 1e-5 in float64; eps^(1/3) in float32
# (truncation h^2 against rounding eps/h: the best a central difference can do)
FD_STEPS = {torch.float64: FD_STEP, torch.float32: torch.finfo(torch.float32).eps ** (1 / 3)}
ICDF_BRACKET = {torch.float64: (-740.0, 12.0), torch.float32: (-103.0, 12.0)}   # log z, subnormals included


def _gamma_icdf_in_dtype(u: torch.Tensor, alpha: torch.Tensor, iterations: int = 64) -> torch.Tensor:
    """The inverse standard-Gamma CDF by bisection in log z, every step in ``u``'s dtype (float32
    arithmetic for float32 input: the midpoints, torch's ``gammainc`` and the comparisons)."""
    lo, hi = ICDF_BRACKET[u.dtype]
    low, high = torch.full_like(u, lo), torch.full_like(u, hi)
    with torch.no_grad():
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            below = torch.special.gammainc(alpha, torch.exp(mid)) < u
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return torch.exp(0.5 * (low + high))


def _fd_inverse_cdf_grad(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Central differences of the inverse CDF at the sample's u = P(alpha, z), computed in ``z``'s
    dtype from end to end (u, the step, both inversions and the difference), step ``FD_STEPS``."""
    dtype = z.dtype
    checks.choice("z.dtype", dtype, DTYPES)
    a, x = alpha.expand(z.shape).to(dtype), z.detach()
    info = torch.finfo(dtype)
    u = torch.special.gammainc(a, x).clamp(info.tiny, 1 - info.eps / 2)
    h = FD_STEPS[dtype] * a
    upper, lower = _gamma_icdf_in_dtype(u, a + h), _gamma_icdf_in_dtype(u, a - h)
    return x * (torch.log(upper) - torch.log(lower)) / (2 * h)


def _torch_builtin(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return torch._standard_gamma_grad(alpha.expand(z.shape).to(z.dtype).contiguous(), z)


GAMMA_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "vitools implicit": standard_gamma_grad,
    "torch built-in": _torch_builtin,
    "approx. inverse CDF": approx_inverse_gamma_grad,
    "finite differences": _fd_inverse_cdf_grad,
}


def _mpmath_elementwise(fn, x: torch.Tensor, param: torch.Tensor, dps: int) -> torch.Tensor:
    """``fn(x_i, param_i)`` on mpmath numbers at ``dps`` digits, elementwise; float64, shape of ``x``."""
    import mpmath

    p = param.expand(x.shape).detach().double().flatten().tolist()
    with mpmath.workdps(dps):
        out = [float(fn(mpmath.mpf(xi), mpmath.mpf(pi)))
               for xi, pi in zip(x.detach().double().flatten().tolist(), p)]
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape)


def gamma_reference_grad(z: torch.Tensor, alpha: torch.Tensor, dps: int = 40) -> torch.Tensor:
    r"""$dz/d\alpha$ at each sample by mpmath at ``dps`` digits; float64, shape of ``z``."""
    import mpmath

    def dz_dalpha(X, A):
        dP = mpmath.diff(lambda s: mpmath.gammainc(s, 0, X, regularized=True), A)
        return -dP / mpmath.exp((A - 1) * mpmath.log(X) - X - mpmath.loggamma(A))

    return _mpmath_elementwise(dz_dalpha, z, alpha, dps)


def tail_path(theta, kappa) -> list:
    r"""mpmath breakpoints from $-\pi$ to ``theta`` < 0 (negate and reverse for the right tail)
    where $\kappa(\cos\theta - \cos t)$ steps by 1 (up to 100), so that every interval of a tail
    integrand peaked at its end varies by at most $e$ (one interval gets 2% wrong at $\kappa = 1000$)."""
    import mpmath

    steps = [-mpmath.acos(mpmath.cos(theta) - m / kappa) for m in range(100, 0, -1)
             if mpmath.cos(theta) - m / kappa > -1]
    return [-mpmath.pi, *steps, theta]


def von_mises_reference_grad(theta: torch.Tensor, kappa: torch.Tensor, dps: int = 40) -> torch.Tensor:
    r"""$d\theta/d\kappa$ of centred von Mises samples by mpmath quadrature; float64."""
    import mpmath

    def dtheta_dkappa(T, K):
        A = mpmath.besseli(1, K) / mpmath.besseli(0, K)
        dq = lambda s: mpmath.exp(K * (mpmath.cos(s) - 1)) * (mpmath.cos(s) - A)   # noqa: E731
        # integral of dq over [-pi, pi] is 0: integrate over the tail side, never cancel
        dF = mpmath.quad(dq, tail_path(T, K)) if T < 0 else -mpmath.quad(dq, [-t for t in tail_path(-T, K)][::-1])
        return -dF / mpmath.exp(K * (mpmath.cos(T) - 1))

    return _mpmath_elementwise(dtheta_dkappa, theta, kappa, dps)


def gamma_relative_errors(alpha: float, n: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0,
                          methods: dict | None = None) -> dict[str, torch.Tensor]:
    """``|method - reference| / |reference|`` at ``n`` Gamma(``alpha``) samples drawn in ``dtype``.

    Returns ``{method: [n] float64}`` (CPU), plus ``"z"``: the samples.
    """
    checks.positive("alpha", alpha)
    n = checks.count("n", n)
    checks.choice("dtype", dtype, DTYPES)
    gen = config.generator(seed, on="cpu")
    a = torch.full((n,), float(alpha), dtype=torch.float64)
    z = torch._standard_gamma(a, generator=gen).to(dtype).clamp_min(torch.finfo(dtype).tiny)
    ref = gamma_reference_grad(z, a)
    out = {"z": z.double()}
    for name, fn in (methods or GAMMA_METHODS).items():
        got = fn(z, a.to(dtype)).double()
        out[name] = ((got - ref).abs() / ref.abs()).nan_to_num(nan=math.inf)
    return out


def von_mises_relative_errors(kappa: float, n: int = 8, dtype: torch.dtype = torch.float64,
                              seed: int = 0) -> torch.Tensor:
    """Relative error of vitools' dtheta/dkappa at ``n`` samples drawn in ``dtype`` ([n] float64)."""
    checks.positive("kappa", kappa)
    n = checks.count("n", n)
    checks.choice("dtype", dtype, DTYPES)
    k = torch.full((n,), float(kappa), dtype=dtype)
    with config.seeded(seed):
        theta = sample_centred(k)
    (ours,) = _theta_grad(theta, k)
    ref = von_mises_reference_grad(theta, k)
    return ((ours.double() - ref).abs() / ref.abs()).nan_to_num(nan=math.inf)


def summary_rows(errors_by_param: dict[float, dict[str, torch.Tensor]], dtype_name: str) -> list[dict]:
    """Rows ``{method, dtype, mean, max}`` pooling errors over every parameter value."""
    methods = [m for m in next(iter(errors_by_param.values())) if m != "z"]
    rows = []
    for m in methods:
        pooled = torch.cat([errs[m].flatten() for errs in errors_by_param.values()])
        rows.append({"method": m, "dtype": dtype_name, "mean": pooled.mean().item(), "max": pooled.max().item()})
    return rows


def seconds_per_million(fn: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` (which handles ``n`` samples), per 10^6 samples."""
    n = checks.count("n", n)
    repeats = checks.count("repeats", repeats)
    best = math.inf
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / n


def markdown_table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) with the given ``columns``."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format(row[c], formats.get(c, "")) if not isinstance(row[c], str) else row[c] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
