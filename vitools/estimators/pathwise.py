r"""The pathwise (reparameterization) estimator.

Write $z = g(\epsilon; \theta)$ with $\epsilon$ from a fixed base distribution; then
$\nabla_\theta \mathbb{E}_{q_\theta}[f(z)] = \mathbb{E}_{\epsilon}[\nabla_z f(z)\,
\nabla_\theta g(\epsilon; \theta)]$ (Kingma & Welling 2014, arXiv:1312.6114; Rezende,
Mohamed & Wierstra 2014, arXiv:1401.4082). It needs a differentiable cost and a sampler
with ``rsample`` (location-scale families, or implicit reparameterization for Gamma, Beta,
von Mises: see :mod:`vitools.implicit`). It does not apply to discrete latents.
"""
from __future__ import annotations

from .base import Estimator


class Pathwise(Estimator):
    """Average of ``f(rsample())``: autograd differentiates through the sampler."""

    name = "pathwise"

    @property
    def label(self) -> str:
        return "pathwise"

    def why_not(self, problem):
        if not getattr(problem, "cost_is_differentiable", True):
            return "the cost is not differentiable"
        if not problem.distribution(problem.init_params().detach()).has_rsample:
            return "the distribution has no reparameterized sampler (rsample)"
        return None

    def surrogate(self, problem, theta, k=1):
        z = problem.distribution(theta).rsample((k,))
        return problem.cost(z).mean(0)
