r"""The compiled CPU kernel for Gamma sample-gradients (``native/gamma_grad.c``) and its tables.

The kernel evaluates the expansions of :mod:`vitools.implicit.gamma` (Figurnov, Mohamed & Mnih
2018, arXiv:1805.08498: the power series, the continued fraction) and of
:mod:`vitools.implicit.gamma_asymptotic` (Temme's uniform expansion differentiated in the shape)
as one loop over samples, in double precision for float32 and float64 input. Its tables are
passed at call time from the Python definitions, so there is one source of truth: Temme's Taylor
coefficients ``_C``, each band's truncation (``truncation``, at ``TAIL`` for float64 results and
``TAIL_32`` for float32 ones), the band grid, the Stirling coefficients of $\log\Gamma^*$ and the
continued fraction's convergents per bucket of $z$. The series takes as many terms as its
tolerance needs: a forward pass runs until the last term of $S'$ is below ``SERIES_TOL``
(float32 results: ``SERIES_TOL_32``) times the sum (its terms $-t_n H_n$ keep one sign and fall
faster than geometrically, so the dropped tail is below the tolerance), then the terms are summed
from the last one up by Horner's rule as in :func:`vitools.implicit.gamma._series`. Within a
block the kernel sorts the samples by region and runs the series and the fraction eight samples at
a time (vectorized); ``tests/test_implicit_native.py`` checks it against the torch path and mpmath.
"""
from __future__ import annotations

import ctypes
import functools
import math

import torch

from . import gamma_asymptotic as asym
from . import native

SERIES_TOL = 2.0 ** -57       # float64 results: the tail of S' below 7e-18 of the sum
SERIES_TOL_32 = 2.0 ** -34    # float32 results (their rounding: 6e-8): 6e-11
MAX_SERIES = 256              # never reached: z < a + 1 < 11 converges in about 60 terms
MAX_CF = 9                    # the kernel's most fraction buckets (CF_EDGES + 1)


class _Tables(ctypes.Structure):
    _fields_ = [("coef", ctypes.c_void_p), ("offset", ctypes.c_void_p), ("pairs", ctypes.c_void_p),
                ("width", ctypes.c_void_p), ("floors", ctypes.c_void_p), ("eta2", ctypes.c_void_p),
                ("log_gstar", ctypes.c_void_p), ("cf_edges", ctypes.c_void_p), ("cf_terms", ctypes.c_void_p),
                ("n_rows", ctypes.c_int32), ("n_levels", ctypes.c_int32), ("n_log_gstar", ctypes.c_int32),
                ("n_cf", ctypes.c_int32), ("max_series", ctypes.c_int32), ("amin", ctypes.c_double),
                ("tol", ctypes.c_double)]


KMAX = 16   # the kernel's widest band (c_k for k < 16: all of _C)


def band_table(degrees: tuple[int, ...]) -> tuple[list[float], int, int]:
    """One band's Taylor coefficients as the kernel reads them: ``[pairs][even, odd][width]``, the highest
    pair first, ``_C[k][n]`` where ``n < degrees[k]`` and 0 elsewhere; returns (flat list, pairs, width)."""
    width = 8 if len(degrees) <= 8 else KMAX
    pairs = (max(degrees) + 1) // 2

    def coef(k, n):
        return asym._C[k][n] if k < len(degrees) and n < degrees[k] else 0.0

    flat = [coef(k, 2 * j + odd) for j in range(pairs - 1, -1, -1) for odd in (0, 1) for k in range(width)]
    return flat, pairs, width


@functools.cache
def tables(single: bool, cf_buckets: tuple[tuple[float, int], ...]) -> tuple[_Tables, tuple[torch.Tensor, ...]]:
    """The kernel's tables for float32 (``single``) or float64 results, with ``cf_buckets`` ((upper z edge,
    convergents), rising); returns the structure and the tensors it points into (kept alive with it)."""
    assert len(asym._C) == KMAX and cf_buckets[-1][0] == math.inf and len(cf_buckets) <= MAX_CF
    assert len(asym.A_FLOORS) <= 17 and len(asym.ETA_LEVELS) <= 9 and len(asym._LOG_GSTAR) == 8   # its fixed sizes
    tail = asym.TAIL_32 if single else asym.TAIL
    coef, offset, pairs, width = [], [], [], []
    for band in asym.BANDS:
        flat, p, w = band_table(asym.truncation(*band, tail))
        offset.append(len(coef))
        coef += flat
        pairs.append(p)
        width.append(w)
    keep = (
        torch.tensor(coef, dtype=torch.float64),
        torch.tensor(offset, dtype=torch.int32),
        torch.tensor(pairs, dtype=torch.int32),
        torch.tensor(width, dtype=torch.int32),
        torch.tensor(asym.A_FLOORS, dtype=torch.float64),
        torch.tensor([h * h for h in asym.ETA_LEVELS], dtype=torch.float64),
        torch.tensor(asym._LOG_GSTAR, dtype=torch.float64),
        torch.tensor([edge for edge, _ in cf_buckets], dtype=torch.float64),
        torch.tensor([terms for _, terms in cf_buckets], dtype=torch.int32),
    )
    struct = _Tables(*(t.data_ptr() for t in keep), len(asym.A_FLOORS), len(asym.ETA_LEVELS),
                     len(asym._LOG_GSTAR), len(cf_buckets), MAX_SERIES, asym.A_FLOORS[-1],
                     SERIES_TOL_32 if single else SERIES_TOL)
    return struct, keep


ARGTYPES = (ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
            ctypes.POINTER(_Tables))     # n, z, alpha, alpha's stride (0: one shape), out, tables


def standard_gamma_grad(z: torch.Tensor, alpha: torch.Tensor,
                        cf_buckets: tuple[tuple[float, int], ...]) -> torch.Tensor:
    """$dz/d\\alpha$ by the kernel (which must load: :func:`native.library`) for CPU float32 / float64
    ``z`` and ``alpha`` of ``z``'s shape (already validated), with the truncations of ``z``'s precision
    (float32 kernel if both are float32, else float64); ``cf_buckets``: the fraction's convergents per bucket of $z$ for that precision."""
    single = z.dtype == torch.float32
    kernel = torch.float32 if single and alpha.dtype == torch.float32 else torch.float64
    x = z.detach().to(kernel).contiguous()
    a = alpha.detach().to(kernel)
    if a.numel() > 1 and all(s == 0 for s in a.stride()):       # one shape for all samples
        a, a_stride = a.as_strided((1,), (1,)), 0
    else:
        a, a_stride = a.contiguous(), 1
    out = torch.empty_like(x)
    struct, _ = tables(single, cf_buckets)
    entry = native.function("gamma_grad", "gamma_grad_f32" if kernel == torch.float32 else "gamma_grad_f64", ARGTYPES)
    entry(x.numel(), native.pointer(x), native.pointer(a), a_stride, native.pointer(out), ctypes.byref(struct))
    return out.to(z.dtype)
