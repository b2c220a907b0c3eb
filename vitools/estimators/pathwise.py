r"""The pathwise (reparameterization) estimator.

Write $z = g(\epsilon; \theta)$ with $\epsilon$ from a fixed base distribution; then
$\nabla_\theta \mathbb{E}_{q_\theta}[f(z)] = \mathbb{E}_{\epsilon}[\nabla_z f(z)\,
\nabla_\theta g(\epsilon; \theta)]$ (Kingma & Welling 2014, arXiv:1312.6114; Rezende,
Mohamed & Wierstra 2014, arXiv:1401.4082). It needs a differentiable cost and a sampler
with ``rsample`` (location-scale families, or implicit reparameterization for Gamma, Beta,
von Mises: see :mod:`vitools.implicit`). It does not apply to discrete latents. On a model with
reparameterizable latents (``vae.on(x)``) it is the $k$-sample ELBO's reparameterized gradient.
"""
from __future__ import annotations

import torch
from torch import distributions as D

from ..targets import ProblemTarget, ReparamTarget
from . import quadrature
from .base import Estimate, Estimator


def reparameterized_draw(q, k: int) -> torch.Tensor:
    """``k`` reparameterized draws ``[k, *batch, *event]`` of ``q``; Normal (or Independent Normal) by
    an explicit location-scale map, which ``torch.func.vmap`` can give fresh noise per replica."""
    base = q.base_dist if isinstance(q, D.Independent) else q
    if isinstance(base, D.Normal):
        return base.loc + base.scale * torch.randn_like(base.loc.expand(k, *base.loc.shape))
    return q.rsample((k,))


class Pathwise(Estimator):
    """Average of ``f(rsample())``: autograd differentiates through the sampler."""

    name = "pathwise"

    @property
    def label(self) -> str:
        return "pathwise"

    def _why_not(self, target):
        if isinstance(target, ReparamTarget):
            return None
        if not isinstance(target, ProblemTarget):
            return (f"it needs reparameterizable continuous latents, and a {target.kind} target's are "
                    + ("discrete" if target.kind == "layered" else "sampled by a particle filter (use iwae or fivo)"))
        if not getattr(target.problem, "cost_is_differentiable", True):
            return "the cost is not differentiable"
        if not target.distribution().has_rsample:
            return "the distribution has no reparameterized sampler (rsample)"
        return None

    def exact_variance(self, problem, theta, k, points):
        return quadrature.pathwise_variance(problem, theta, k, points) if quadrature.is_gaussian(problem) else None

    def estimate(self, target, k):
        if isinstance(target, ReparamTarget):
            q = target.q()
            z = reparameterized_draw(q, k)                               # [k, N, d]
            return Estimate((target.log_joint(z) - q.log_prob(z)).mean(0))
        z = target.distribution().rsample((k,))
        return Estimate(target.cost(z).mean(0))
