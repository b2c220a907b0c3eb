r"""The implicit reparameterization gradient as one autograd Function.

Figurnov, Mohamed & Mnih 2018, *Implicit Reparameterization Gradients* (arXiv:1805.08498),
Section 2.2: for a sample $z \sim q(z \mid \theta)$ with CDF $F(z \mid \theta)$, hold the
"standardized" value $\epsilon = F(z \mid \theta)$ fixed and differentiate
$F(z(\theta) \mid \theta) = \epsilon$ by the implicit function theorem:

$$\frac{dz}{d\theta} = -\frac{\partial F(z \mid \theta) / \partial \theta}{q(z \mid \theta)}.$$

No inverse CDF is ever needed: any sampler gives $z$, and only $F$'s derivative in
$\theta$ and the density are evaluated at the sample.

:class:`ImplicitReparam` attaches such a gradient to samples: the forward pass returns
``z`` unchanged, the backward pass multiplies the incoming gradient by a user-supplied
``dz/dtheta_i`` and sums it down to each parameter's shape. :func:`cdf_sample_grad`
builds ``dz/dtheta`` from a CDF written in differentiable torch code (autograd gives
$\partial F/\partial\theta$), which is how Beta-through-its-CDF and von Mises use it;
Gamma supplies a hand-written derivative instead (:mod:`vitools.implicit.gamma`).
Works on any device and float dtype, batched by broadcasting.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .. import checks

GradFn = Callable[..., Sequence[torch.Tensor]]


class ImplicitReparam(torch.autograd.Function):
    """``z`` in the forward pass; ``dL/dtheta_i = sum(dL/dz * dz/dtheta_i)`` in the backward.

    ``apply(z, grad_fn, *params)``: ``z`` ``[*shape]`` (no gradient of its own), ``params``
    broadcastable to ``z``; ``grad_fn(z, *params)`` returns one tensor ``dz/dtheta_i`` of
    ``z``'s shape per parameter (evaluated on detached values, under ``no_grad`` unless it
    enables grad itself). First order only: the backward pass is not itself differentiable.
    """

    @staticmethod
    def forward(ctx, z, grad_fn, *params):
        ctx.grad_fn = grad_fn
        ctx.save_for_backward(z, *params)
        return z.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z):
        z, *params = ctx.saved_tensors
        needed = ctx.needs_input_grad[2:]
        grads: list[torch.Tensor | None] = [None] * len(params)
        if any(needed):
            dz = ctx.grad_fn(z, *params)
            if isinstance(dz, torch.Tensor) or len(dz) != len(params):
                got = f"a tensor of shape {tuple(dz.shape)}" if isinstance(dz, torch.Tensor) else f"{len(dz)} values"
                raise ValueError(f"grad_fn must return a sequence of {len(params)} tensor(s), one per param, got {got}")
            for i, (p, d, need) in enumerate(zip(params, dz, needed)):
                if need:
                    grads[i] = (grad_z * d).sum_to_size(p.shape)
        return (None, None, *grads)


def implicit_sample(z: torch.Tensor, grad_fn: GradFn, *params: torch.Tensor) -> torch.Tensor:
    """Samples ``z`` (detached) carrying the gradient ``grad_fn(z, *params)`` to ``params``.

    Example::

        >>> alpha = torch.tensor(2.0, requires_grad=True)
        >>> z0 = torch._standard_gamma(torch.full((3,), 2.0))
        >>> z = implicit_sample(z0, lambda z, a: (vt.implicit.standard_gamma_grad(z, a),), alpha)
        >>> z.sum().backward()      # alpha.grad = sum of dz/dalpha at z0
    """
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got {type(z).__name__}")
    shape = checks.broadcast(z=z, **{f"params[{i}]": p for i, p in enumerate(params)})
    if shape != z.shape:
        raise ValueError(f"params must broadcast to z's shape {tuple(z.shape)}, got shapes "
                         f"{[tuple(p.shape) for p in params]}")
    return ImplicitReparam.apply(z.detach(), grad_fn, *params)


def cdf_sample_grad(cdf: Callable[..., torch.Tensor], log_prob: Callable[..., torch.Tensor],
                    z: torch.Tensor, *params: torch.Tensor) -> list[torch.Tensor]:
    r"""$dz/d\theta_i = -(\partial F/\partial\theta_i) / q$ with $\partial F$ from autograd.

    ``cdf(z, *params)`` and ``log_prob(z, *params)`` are torch functions of ``z`` ``[*shape]``
    and ``params`` (broadcastable), evaluated here in float64. Returns one ``[*shape]``
    tensor per parameter in ``z``'s dtype.
    """
    if checks.broadcast(z=z, **{f"params[{i}]": p for i, p in enumerate(params)}) != z.shape:
        raise ValueError(f"params must broadcast to z's shape {tuple(z.shape)}, got shapes "
                         f"{[tuple(p.shape) for p in params]}")
    checks.finite("z", z)
    x = z.detach().double()                       # evaluated in float64 whatever the dtype
    leaves = [p.detach().double().expand(z.shape).clone().requires_grad_(True) for p in params]
    with torch.enable_grad():
        F = cdf(x, *leaves)
        dF = torch.autograd.grad(F.sum(), leaves, allow_unused=True)
    with torch.no_grad():
        density = log_prob(x, *(p.detach() for p in leaves)).exp()
        # where the density underflows to 0 the sample is pinned: gradient 0 (not 0/0)
        return [torch.zeros_like(z) if d is None else torch.where(density > 0, -d / density, 0.0).to(z.dtype)
                for d in dF]


def from_cdf(cdf: Callable[..., torch.Tensor], log_prob: Callable[..., torch.Tensor]) -> GradFn:
    """A ``grad_fn`` for :func:`implicit_sample` from a differentiable CDF and a log density."""
    for name, fn in (("cdf", cdf), ("log_prob", log_prob)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable, got {fn!r}")
    return lambda z, *params: cdf_sample_grad(cdf, log_prob, z, *params)


def invert_cdf(cdf: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, lo: float, hi: float,
               iterations: int = 200) -> torch.Tensor:
    r"""Solve ``cdf(t) = u`` for ``t`` in ``[lo, hi]`` by vectorized bisection (``cdf`` increasing).

    The reference that implicit gradients are tested against: central differences of the
    numerically inverted CDF, $[F^{-1}(u \mid \theta + h) - F^{-1}(u \mid \theta - h)]/2h$.
    Pass a CDF of a transformed variable (``log z``, ``logit x``) for wide supports.
    ``u`` ``[*shape]`` in (0, 1) gives ``t`` ``[*shape]`` (float64).
    """
    if not callable(cdf):
        raise ValueError(f"cdf must be callable, got {cdf!r}")
    u = checks.probability("u", u).double()
    iterations = checks.count("iterations", iterations)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"lo must be below hi, both finite, got lo={lo!r}, hi={hi!r}")
    low, high = torch.full_like(u, lo), torch.full_like(u, hi)
    with torch.no_grad():
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            below = cdf(mid) < u
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return 0.5 * (low + high)
