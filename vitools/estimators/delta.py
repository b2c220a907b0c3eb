r"""The delta-method control variate for any estimator of a Gaussian expectation.

Mohamed et al. 2020, *Monte Carlo Gradient Estimation in Machine Learning* (arXiv:1906.10652),
Section 7.4 and the Bayesian logistic regression of Section 8.3: expand the cost to second
order around the (detached) mean $\mu_0$ of $q = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$,

$$h(z) = f(\mu_0) + \nabla f(\mu_0)^\top (z - \mu_0) + \tfrac12 (z - \mu_0)^\top H (z - \mu_0),$$

whose expectation is known, $\mathbb{E}_q[h] = f(\mu_0) + \nabla f(\mu_0)^\top(\mu - \mu_0) +
\tfrac12(\mu - \mu_0)^\top H (\mu - \mu_0) + \tfrac12\sum_d H_{dd}\sigma_d^2$. Run the *same*
estimator on $h$ with the *same* random numbers and subtract: $\hat g_f - \beta(\hat g_h -
\nabla_\theta \mathbb{E}_q[h])$ is unbiased for any fixed $\beta$ and has low variance where $h$
tracks $f$. So one class gives the delta method to the pathwise, score-function and
measure-valued estimators alike (the survey's figures). ``base`` names the estimator; $\beta$
is the option ``beta`` (1: the survey's choice). The Hessian comes from ``torch.func``.
"""
from __future__ import annotations

import torch
from torch import distributions as D

from ..targets import ProblemTarget
from .base import Estimate, Estimator, Option


class _Taylor:
    """The problem with its cost replaced by the expansion ``h`` (same distribution)."""

    def __init__(self, problem, mu0, f0, g0, hess):
        self.problem, self.mu0, self.f0, self.g0, self.hess = problem, mu0, f0, g0, hess
        self.cost_is_differentiable = True

    def distribution(self, theta):
        return self.problem.distribution(theta)

    def cost(self, z):
        extra = z.dim() - self.mu0.dim() - 1          # dims after the batch (measure-valued's coordinates)
        mu0, g0, hess, f0 = self.mu0, self.g0, self.hess, self.f0
        for _ in range(max(extra, 0)):
            mu0, g0, hess, f0 = mu0.unsqueeze(-2), g0.unsqueeze(-2), hess.unsqueeze(-3), f0.unsqueeze(-1)
        d = z - mu0                                                       # [k, *batch, *extra, D]
        return f0 + (d * g0).sum(-1) + 0.5 * torch.einsum("...i,...ij,...j->...", d, hess, d)


class DeltaMethod(Estimator):
    """``base`` estimator with the delta-method control variate (second-order Taylor expansion)."""

    name = "delta_method"
    OPTIONS = {
        "base": Option("pathwise", "the estimator run on f and on its expansion h", kind="choice",
                       choices=("pathwise", "score_function", "measure_valued")),
        "beta": Option(1.0, "coefficient of the control variate (any fixed value keeps it unbiased)",
                       kind="float"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        from . import get                                                 # the registry, at call time

        self.base = get(self.options["base"])

    @property
    def label(self) -> str:
        return f"{self.base.label} + delta CV"

    def _why_not(self, target):
        if not isinstance(target, ProblemTarget):
            return f"it is implemented for toy problems with Gaussian q, not for a {target.kind} target"
        dist = target.distribution()
        if not (isinstance(dist, D.Normal) or (isinstance(dist, D.Independent) and dist.reinterpreted_batch_ndims == 1
                                                and isinstance(dist.base_dist, D.Normal))):
            return "it needs continuous Gaussian latents: q Normal or Independent(Normal, 1)"
        if not getattr(target.problem, "cost_is_differentiable", True):
            return "the delta method needs a twice-differentiable cost"
        return self.base.why_not(target)

    def estimate(self, target, k):
        problem, theta = target.problem, target.theta
        dist = target.distribution()
        scalar = isinstance(dist, D.Normal)
        mean, var = dist.mean, dist.variance
        mu0 = (mean[..., None] if scalar else mean).detach()              # [*batch, D]
        flat = mu0.reshape(-1, mu0.shape[-1])

        def f(m):
            return problem.cost(m[0] if scalar else m)

        with torch.enable_grad():
            f0 = torch.func.vmap(f)(flat)
            g0 = torch.func.vmap(torch.func.grad(f))(flat)
            hess = torch.func.vmap(torch.func.hessian(f))(flat)
        f0, g0, hess = (t.detach().reshape((*mu0.shape[:-1], *t.shape[1:])) for t in (f0, g0, hess))
        taylor = _Taylor(problem, mu0, f0, g0, hess)
        if scalar:
            taylor = _ScalarView(taylor)
        seed = int(torch.randint(0, 2**62, ()))
        devices = [theta.device] if theta.device.type == "cuda" else []
        outs = []
        for p in (problem, taylor):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                outs.append(self.base(ProblemTarget(p, theta), k, check=False).surrogate)
        d = (mean[..., None] if scalar else mean) - mu0
        v = var[..., None] if scalar else var
        expected_h = (f0 + (d * g0).sum(-1) + 0.5 * torch.einsum("...i,...ij,...j->...", d, hess, d)
                      + 0.5 * (torch.diagonal(hess, dim1=-2, dim2=-1) * v).sum(-1))
        beta = self.options["beta"]
        return Estimate(outs[0] - beta * (outs[1] - expected_h))


class _ScalarView:
    """A scalar-latent problem seen through the vector expansion (``z [...]`` as ``[..., 1]``)."""

    def __init__(self, taylor):
        self.taylor, self.cost_is_differentiable = taylor, True

    def distribution(self, theta):
        return self.taylor.distribution(theta)

    def cost(self, z):
        return self.taylor.cost(z[..., None])
