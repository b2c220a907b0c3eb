r"""What implicit reparameterization is compared with.

* :func:`finite_difference_grad`: central differences of a sampler run twice with common
  random numbers. Biased by $O(h^2)$, and wrong wherever the sampler's accept/reject
  decision flips between $\theta \pm h$ (rejection samplers are not smooth in $\theta$).
* :func:`approx_inverse_gamma_grad`: autodiff through an explicit approximation of the
  inverse CDF at fixed $u = F(z)$ (in the spirit of Knowles 2015, *Stochastic gradient
  variational Bayes for gamma approximating distributions*, arXiv:1509.01631):
  $z \approx (u\,\alpha\Gamma(\alpha))^{1/\alpha}$ for $\alpha < 1$, Wilson-Hilferty
  $z \approx \alpha(1 - \tfrac{1}{9\alpha} + \tfrac{\Phi^{-1}(u)}{3\sqrt\alpha})^3$ otherwise.
  Cheap but only as accurate as the approximation.
* :func:`rsvi_gamma`: the rejection-sampler gradient of Naesseth, Ruiz, Linderman & Blei 2017,
  *Reparameterization Gradients through Acceptance-Rejection Sampling Algorithms*
  (arXiv:1610.05683), for Gamma: the Marsaglia-Tsang map $z = h(\epsilon, \tilde\alpha)
  = (\tilde\alpha - \tfrac13)(1 + \epsilon/\sqrt{9\tilde\alpha - 3})^3$ is differentiated at
  the accepted $\epsilon$ ($g_\text{rep}$), plus the correction
  $g_\text{cor} = f(z)\nabla \log[q(h(\epsilon, \tilde\alpha))\,\partial_\epsilon h]$;
  shape augmentation $\tilde\alpha = \alpha + B$, $z = \tilde z \prod_{i<B} u_i^{1/(\alpha + i)}$
  keeps the acceptance rate high and the correction small. Without the correction it is biased.
  The estimator is :class:`vitools.estimators.rsvi.RSVI` (``get("rsvi")``).
"""
from __future__ import annotations

import torch
from torch import distributions as D

from .. import checks, config


def finite_difference_grad(sampler, theta: torch.Tensor, h: float = 1e-3, seed: int = 0,
                           relative: bool = True) -> torch.Tensor:
    r"""$[z(\theta + h) - z(\theta - h)] / 2h$ with both calls of ``sampler(theta)`` seeded alike.

    ``relative=True`` uses the step $h\theta$ (for positive parameters spanning decades).
    Returns a tensor shaped like ``sampler(theta)``.
    """
    checks.positive("h", h)
    if not callable(sampler):
        raise ValueError(f"sampler must be callable, got {sampler!r}")
    theta = checks.finite("theta", theta.detach())
    step = h * theta.abs() if relative else torch.full_like(theta, h)
    with config.seeded(seed):
        up = sampler(theta + step)
    with config.seeded(seed):
        down = sampler(theta - step)
    return (up - down) / (2 * step)


def approx_inverse_gamma_grad(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """dz/dalpha by autodiff through an explicit approximate inverse CDF at u = P(alpha, z).

    Computed in ``z``'s dtype from end to end (``u``, the approximation and its derivative), so
    that a float32 row measures what the method gives in float32; the result has ``z``'s dtype."""
    checks.positive("alpha", alpha)
    if not (checks.finite("z", z) >= 0).all():
        raise ValueError(f"z must be non-negative (a Gamma sample), got {z.min().item()!r}")
    if checks.broadcast(z=z, alpha=alpha) != z.shape:
        raise ValueError(f"alpha must broadcast to z's shape {tuple(z.shape)}, got {tuple(alpha.shape)}")
    dtype = z.dtype if z.is_floating_point() else torch.get_default_dtype()
    info = torch.finfo(dtype)
    alpha = alpha.detach().to(dtype).expand(z.shape)
    x = z.detach().to(dtype)
    u = torch.special.gammainc(alpha, x).clamp(info.tiny, 1 - info.eps / 2)
    a = alpha.clone().requires_grad_(True)
    with torch.enable_grad():
        a_small = torch.where(a.detach() < 1, a, torch.full_like(a, 0.5))    # keep unused branch finite
        # (u a Gamma(a))^(1/a) in logs: the product underflows in float32 long before its root does
        small = torch.exp((torch.log(u) + torch.log(a_small) + torch.lgamma(a_small)) / a_small)
        normal = torch.special.ndtri(u)
        big = a * (1 - 1 / (9 * a) + normal / (3 * torch.sqrt(a))).clamp_min(0) ** 3
        approx = torch.where(a.detach() < 1, small, big)
        (grad,) = torch.autograd.grad(approx.sum(), a)
    return grad.to(z.dtype)


def _marsaglia_tsang_eps(alpha: torch.Tensor) -> torch.Tensor:
    """Accepted standard-normal proposals of Marsaglia-Tsang for Gamma(alpha >= 1), elementwise."""
    d = alpha - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    eps = torch.zeros_like(alpha)
    todo = torch.ones_like(alpha, dtype=torch.bool)
    while todo.any():
        e = torch.randn_like(alpha)
        v = (1 + c * e) ** 3
        u = torch.rand_like(alpha)
        ok = (v > 0) & (torch.log(u) < 0.5 * e**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        eps = torch.where(todo & ok, e, eps)
        todo = todo & ~ok
    return eps


def rsvi_gamma(alpha: torch.Tensor, sample_shape=torch.Size(), boost: int = 1):
    r"""RSVI Gamma(``alpha``, 1) samples and their correction log-density.

    Returns ``(z, log_pi)``, both ``[*sample_shape, *alpha.shape]``: ``z`` carries the
    pathwise part $g_\text{rep}$; ``log_pi`` $= \log q(h(\epsilon, \tilde\alpha)) + \log
    \partial_\epsilon h$ at the detached $\epsilon$, whose gradient times $f(z)$ is $g_\text{cor}$.
    """
    checks.positive("alpha", alpha)
    boost = checks.count("boost", boost, minimum=0)
    if (alpha.detach() + boost <= 1 / 3).any():      # Marsaglia-Tsang needs d = alpha + B - 1/3 > 0
        bad = alpha.detach()[alpha.detach() + boost <= 1 / 3].flatten()[0].item()
        raise ValueError(f"alpha + boost must exceed 1/3 for Marsaglia-Tsang, got alpha={bad!r}, boost={boost}")
    shape = checks.sample_shape("sample_shape", sample_shape) + alpha.shape
    a = alpha.expand(shape)
    boosted = a + boost
    with torch.no_grad():
        eps = _marsaglia_tsang_eps(boosted.detach())
        # uniforms in (0, 1]: torch.rand can return 0, whose log(0)/alpha makes a NaN gradient
        u = 1 - torch.rand((boost, *shape), dtype=a.dtype, device=a.device)
    d = boosted - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    z_tilde = d * (1 + c * eps) ** 3
    log_pi = (D.Gamma(boosted, torch.ones_like(boosted)).log_prob(z_tilde)
              + torch.log(3 * d * c) + 2 * torch.log1p(c * eps))
    offsets = torch.arange(boost, dtype=a.dtype, device=a.device).reshape(-1, *[1] * len(shape))
    z = z_tilde * torch.exp((torch.log(u) / (a + offsets)).sum(0))
    return z, log_pi
