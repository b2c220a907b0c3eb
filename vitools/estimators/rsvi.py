r"""RSVI: the rejection-sampler gradient for Gamma latents (Naesseth, Ruiz, Linderman & Blei 2017,
*Reparameterization Gradients through Acceptance-Rejection Sampling Algorithms*, arXiv:1610.05683).

The Marsaglia-Tsang map $z = h(\epsilon, \tilde\alpha)$ is differentiated at the accepted
$\epsilon$ ($g_\text{rep}$), plus the correction $g_\text{cor} = f(z)\nabla \log[q(h(\epsilon,
\tilde\alpha))\,\partial_\epsilon h]$; shape augmentation by ``boost`` keeps the acceptance rate
high and the correction small. Without the correction it is biased. The sampler is
:func:`vitools.implicit.alternatives.rsvi_gamma`.
"""
from __future__ import annotations

from torch import distributions as D

from ..implicit.alternatives import rsvi_gamma
from ..targets import ProblemTarget
from .base import Estimate, Estimator, Option, score_box


class RSVI(Estimator):
    """Rejection-sampler gradient for problems with a Gamma ``q``."""

    name = "rsvi"
    OPTIONS = {"boost": Option(1, "shape augmentation B", kind="int", minimum=0),
               "correction": Option(True, "add the correction term (False: biased pathwise part only)", kind="bool")}

    def __init__(self, **options):
        super().__init__(**options)
        self.unbiased = self.options["correction"]

    @property
    def label(self) -> str:
        return f"RSVI (B={self.options['boost']}{'' if self.options['correction'] else ', no correction'})"

    def _why_not(self, target):
        if not isinstance(target, ProblemTarget):
            return f"RSVI is implemented for toy problems with a Gamma distribution, not a {target.kind} target"
        if not getattr(target.problem, "cost_is_differentiable", True):
            return "the cost is not differentiable"
        dist = target.distribution()
        if not isinstance(dist, D.Gamma):
            return f"RSVI is implemented for Gamma distributions, not {type(dist).__name__}"
        return None

    def estimate(self, target, k):
        dist = target.distribution()
        z_std, log_pi = rsvi_gamma(dist.concentration, (k,), self.options["boost"])
        costs = target.cost(z_std / dist.rate)                  # [k, *batch]
        if self.options["correction"]:
            costs = costs + costs.detach() * score_box(log_pi)
        return Estimate(costs.mean(0))
