r"""Black-box variational inference: Rao-Blackwellized score-function gradients per factor.

Ranganath, Gerrish & Blei 2014, *Black Box Variational Inference* (AISTATS; arXiv:1401.0118).
For a mean-field posterior $q_\theta(z) = \prod_i q(z_i; \lambda_i)$ and a cost $f$ whose
terms each touch few latents, the gradient for factor $i$ needs only the terms that contain
$z_i$, its Markov blanket part $f_i$: the other terms are independent of $z_i$ under $q$ and
their score-function contribution has mean zero (Rao-Blackwellization, the paper's Section 3.1):

$$\nabla_{\lambda_i} \mathbb{E}_q[f] = \mathbb{E}_q\big[\nabla_{\lambda_i}\log q(z_i; \lambda_i)\,
(f_i(z) - a_i)\big],$$

and $a_i$ is the control variate's coefficient (Section 3.2): with $h_i = \nabla_{\lambda_i}
\log q(z_i)$ (mean zero) the variance-minimising scalar is $a_i^* = \sum_d \mathrm{Cov}(h_{id}
f_i, h_{id}) / \sum_d \mathrm{Var}(h_{id}) = \mathbb{E}[\lVert h_i\rVert^2 f_i] / \mathbb{E}
\lVert h_i\rVert^2$. The paper estimates it from the same samples, which biases the estimate
slightly; here it comes from data independent of each sample, so the estimate stays unbiased:

* ``control_variate="leave_one_out"``: $a_{i,s}$ from the other $k - 1$ samples;
* ``control_variate="running"``: exponential averages over *earlier* calls (``train()`` mode only);
* ``control_variate="none"``.

``rao_blackwellize=False`` gives every factor the whole cost $f$ (the plain score-function
estimator with a per-factor baseline). ``score_entropy=True`` estimates the gradient of
$\mathbb{E}_q[f + \log q]$ (the negative ELBO when $f = -\log p(x, z)$), with $f_i + \log q(z_i)$
as factor $i$'s signal, exactly the paper's Equation (3); by default the entropy is left to the
caller in closed form, which has lower variance.

Problems give ``local_cost(z)`` ``[*sample, *batch, D]`` for Rao-Blackwellization (without it
every factor's blanket is the whole cost: nothing to Rao-Blackwellize) and a factorised distribution: ``Independent(Bernoulli | Poisson | Normal, 1)``; $h_i$ is taken with
respect to the factor's logit, log-rate, or (mean, log-scale).
"""
from __future__ import annotations

import torch
from torch import distributions as D
from torch import nn

from ..targets import ProblemTarget
from .base import Estimate, Estimator, Option, score_box

FAMILIES = (D.Bernoulli, D.Poisson, D.Normal)


def factor_scores_squared(base: D.Distribution, z: torch.Tensor) -> torch.Tensor:
    r"""$\lVert\nabla_{\lambda_i} \log q(z_i)\rVert^2$ ``[*sample, *batch, D]`` in each factor's natural
    coordinates: logit (Bernoulli), log-rate (Poisson), mean and log-scale (Normal)."""
    if isinstance(base, D.Bernoulli):
        return (z - base.probs) ** 2
    if isinstance(base, D.Poisson):
        return (z - base.rate) ** 2
    u = (z - base.loc) / base.scale
    return (u / base.scale) ** 2 + (u**2 - 1) ** 2


class CoefficientStats(nn.Module):
    """Exponential averages of $\\mathbb{E}[\\lVert h_i\\rVert^2 f_i]$ and $\\mathbb{E}\\lVert h_i\\rVert^2$ per factor."""

    def __init__(self):
        super().__init__()
        self.register_buffer("hhf", torch.zeros(0))
        self.register_buffer("hh", torch.zeros(0))

    @torch.no_grad()
    def fold(self, hhf, hh, decay):
        if self.hh.shape != hh.shape:
            self.hhf, self.hh = hhf.clone(), hh.clone()
        else:
            self.hhf.mul_(decay).add_((1 - decay) * hhf)
            self.hh.mul_(decay).add_((1 - decay) * hh)

    def coefficient(self, like):
        if self.hh.numel() == 0:
            return torch.zeros((), dtype=like.dtype, device=like.device)
        return (self.hhf / self.hh.clamp_min(1e-30)).to(like.dtype)


class BBVI(Estimator):
    """Rao-Blackwellized score-function gradient per mean-field factor, with its control variate."""

    name = "bbvi"
    OPTIONS = {
        "control_variate": Option("leave_one_out", "coefficient a_i of the score control variate", kind="choice",
                                  choices=("none", "leave_one_out", "running")),
        "rao_blackwellize": Option(True, "each factor reads only its Markov blanket (problem.local_cost)",
                                   kind="bool"),
        "score_entropy": Option(False, "estimate the gradient of E[f + log q] (entropy by score function too)",
                                kind="bool"),
        "decay": Option(0.9, "decay of the running coefficient statistics", kind="probability"),
    }

    @property
    def min_samples(self) -> int:
        return 2 if self.options["control_variate"] == "leave_one_out" else 1

    @property
    def label(self) -> str:
        parts = ["BBVI"] + (["no Rao-Blackwell"] if not self.options["rao_blackwellize"] else [])
        if self.options["control_variate"] != "none":
            parts.append("CV")
        return " + ".join(parts)

    def _why_not(self, target):
        if not isinstance(target, ProblemTarget):
            return f"it is implemented for toy problems with a factorised q, not for a {target.kind} target"
        problem, dist = target.problem, target.distribution()
        if getattr(problem, "support_depends_on_theta", False):
            return "the support of q depends on theta, so the score function misses the boundary term"
        if not (isinstance(dist, D.Independent) and dist.reinterpreted_batch_ndims == 1
                and isinstance(dist.base_dist, FAMILIES)):
            return "it needs a mean-field q: Independent(Bernoulli, Poisson or Normal, 1)"
        return None

    def estimate(self, target, k):
        problem = target.problem
        dist = target.distribution()
        base = dist.base_dist
        with torch.no_grad():
            z = dist.sample((k,))                                     # [k, *batch, D]
        log_q = base.log_prob(z)                                      # [k, *batch, D], depends on theta
        cost = problem.cost(z)                                        # [k, *batch]
        with torch.no_grad():
            blanket = self.options["rao_blackwellize"] and callable(getattr(problem, "local_cost", None))
            local = problem.local_cost(z) if blanket else cost[..., None].expand(log_q.shape)
            if self.options["score_entropy"]:
                local = local + log_q
            signal = local - self._coefficient(target, base, z, local)
        value = cost + (log_q.detach().sum(-1) if self.options["score_entropy"] else 0)
        return Estimate(value.mean(0) + (signal * score_box(log_q)).sum(-1).mean(0))

    def _coefficient(self, target, base, z, local):
        mode = self.options["control_variate"]
        if mode == "none":
            return torch.zeros((), dtype=local.dtype, device=local.device)
        hh = factor_scores_squared(base, z).detach()                  # [k, *batch, D]
        if mode == "leave_one_out":
            k = z.shape[0]
            num = ((hh * local).sum(0, keepdim=True) - hh * local) / (k - 1)
            den = (hh.sum(0, keepdim=True) - hh) / (k - 1)
            return num / den.clamp_min(1e-30)
        stats = self.state(target, CoefficientStats)
        a = stats.coefficient(local)
        if self.training:
            dims = tuple(range(local.dim() - 1))                      # samples and batch
            stats.fold((hh * local).mean(dims), hh.mean(dims), self.options["decay"])
        return a
