r"""I-MLE and AIMLE: perturb-and-MAP gradients for discrete exponential families.

A discrete exponential family $p(z;\theta) \propto \exp\langle z, \theta\rangle$ over a set of
structures (one-hot classes, bits, $k$-subsets) is sampled by *perturb-and-MAP*,
$z = \mathrm{MAP}(\theta + \varepsilon)$: with Gumbel noise the argmax is an exact categorical
sample, with logistic noise the threshold an exact Bernoulli one, and Gumbel-top-$k$ draws the
$k$-subset distribution of :class:`vitools.problems_subset.KSubset`. I-MLE (Niepert, Minervini &
Franceschi 2021, arXiv:2106.01798) backpropagates a downstream gradient $g = \partial f/\partial z$
by moving to a *target distribution* $\theta' = \theta - \lambda g$ and differencing the two MAP
states under the same noise,

$$\hat\nabla_\theta f \approx \frac1\lambda\big[\mathrm{MAP}(\theta + \varepsilon) - \mathrm{MAP}(\theta - \lambda g + \varepsilon)\big]
  \;\approx\; \frac{\partial\,\mathbb{E}[z]}{\partial\theta}\,g,$$

a finite difference of the marginals $\mu(\theta) = \mathbb{E}[z]$ along $g$. AIMLE (Minervini,
Franceschi & Niepert 2023, arXiv:2209.04862) makes it two-sided,
$[\mathrm{MAP}(\theta + \lambda g + \varepsilon) - \mathrm{MAP}(\theta - \lambda g + \varepsilon)]/2\lambda$, and
adapts the step: $\lambda = \beta\,\lVert\theta\rVert/\lVert g\rVert$ (here with $\lVert\theta\rVert$ floored at 1,
so that zero logits still move), with $\beta$ raised or lowered
(by ``step``) so that a running mean of the number of non-zero gradient entries per sample
approaches ``target_nonzero`` (a running statistic, moved only in ``train()`` mode, in the backward
pass that measures it). ``adaptive=False, symmetric=False`` is I-MLE with a fixed $\lambda = \beta$.

The forward pass is the exact sample, so the value is unbiased; the gradient is biased
(``unbiased = False``): a finite difference, zero wherever $\lambda g$ is too small to change the
MAP state. It needs $\partial f/\partial z$ at the sample (a cost that can be differentiated at real
$z$). Targets: stacks of Bernoulli or categorical layers (each layer is a perturb-and-MAP of its
logits) and toy problems with ``Bernoulli``, ``OneHotCategorical`` or :class:`KSubset` latents.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import relaxations
from ..problems_subset import KSubset
from ..targets import ProblemTarget
from . import layers as L
from .base import Estimate, Option
from .relaxed import _Relaxed


def solve(kind: str, theta: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The MAP state of perturbed logits: bits $\\mathbb{1}[\\theta > 0]$, a one-hot argmax, or a k-hot top-k."""
    if kind == "bernoulli":
        return (theta > 0).to(theta.dtype)
    return torch.zeros_like(theta).scatter(-1, theta.topk(k, -1).indices, 1.0)


class Adaptation(nn.Module):
    """AIMLE's $\\beta$ and the running mean of non-zero gradient entries per sample."""

    def __init__(self, beta: float):
        super().__init__()
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.register_buffer("nonzero", torch.tensor(-1.0))       # < 0: nothing measured yet


class PerturbAndMAP(torch.autograd.Function):
    """Forward: ``solve(theta + noise)``; backward: the (A)I-MLE finite difference of MAP states."""

    generate_vmap_rule = True

    @staticmethod
    def forward(theta, noise, beta, kind, k, event_dims, symmetric, adaptive, record):
        return solve(kind, theta + noise, k)

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, noise, beta, kind, k, event_dims, symmetric, adaptive, record = inputs
        ctx.save_for_backward(theta, noise, beta, output)
        ctx.settings = (kind, k, event_dims, symmetric, adaptive, record)

    @staticmethod
    def backward(ctx, g):
        theta, noise, beta, z = ctx.saved_tensors
        kind, k, dims, symmetric, adaptive, record = ctx.settings
        if adaptive:
            norm_g = g.pow(2).sum(dims, keepdim=True).sqrt()
            norm_theta = theta.pow(2).sum(dims, keepdim=True).sqrt().clamp_min(1.0).expand_as(norm_g)
            step = torch.where(norm_g > 0, beta * norm_theta / torch.where(norm_g > 0, norm_g, 1.0), 0.0)
        else:
            step = beta * torch.ones_like(g.sum(dims, keepdim=True))
        right = solve(kind, theta - step * g + noise, k)
        left = solve(kind, theta + step * g + noise, k) if symmetric else z
        scale = torch.where(step > 0, (2.0 if symmetric else 1.0) * step, 1.0)
        grad = (left - right) / scale
        if record is not None:
            record(grad.detach(), dims)
        return grad, None, None, None, None, None, None, None, None


class AIMLE(_Relaxed):
    r"""Perturb-and-MAP with (adaptive) implicit maximum-likelihood gradients (Niepert et al. 2021;
    Minervini et al. 2023); ``adaptive=False, symmetric=False`` is I-MLE."""

    name = "aimle"
    OPTIONS = {
        "beta": Option(1.0, "perturbation size: lambda itself (I-MLE) or its scale beta (AIMLE)", minimum=0.0),
        "adaptive": Option(True, "adapt beta to the target number of non-zero gradient entries (AIMLE)",
                           kind="bool"),
        "symmetric": Option(True, "two-sided perturbation theta +- lambda g (AIMLE) instead of one-sided (I-MLE)",
                            kind="bool"),
        "target_nonzero": Option(1.0, "AIMLE's target number of non-zero gradient entries per sample",
                                 minimum=0.0),
        "step": Option(1e-3, "AIMLE's update of beta per training call", minimum=0.0),
        "decay": Option(0.9, "decay of the running mean of non-zero entries", kind="probability"),
    }

    @property
    def label(self) -> str:
        return "AIMLE" if self.options["adaptive"] or self.options["symmetric"] else "I-MLE"

    def _why_not(self, target):
        if isinstance(target, ProblemTarget) and isinstance(target.distribution(), KSubset):
            if not (hasattr(target.problem, "relaxed_cost") or getattr(target.problem, "cost_is_differentiable", False)):
                return "its cost must be differentiable at real z (give the problem relaxed_cost)"
            return None
        return super()._why_not(target)

    def adaptation(self, target) -> Adaptation:
        return self.state(target if isinstance(target, ProblemTarget) else L.as_layers(target),
                          lambda: Adaptation(self.options["beta"]))

    def _apply(self, theta, noise, kind, k, dims, state):
        record = self._recorder(state) if (self.training and torch.is_grad_enabled()
                                           and self.options["adaptive"]) else None
        return PerturbAndMAP.apply(theta, noise, state.beta.detach().clone(), kind, k, dims,
                                   self.options["symmetric"], self.options["adaptive"], record)

    def _recorder(self, state):
        def record(grad, dims):
            with torch.no_grad():
                per = (grad != 0).to(grad.dtype).sum(dims).mean()
                old = state.nonzero
                new = per if old < 0 else self.options["decay"] * old + (1 - self.options["decay"]) * per
                state.nonzero.copy_(new)
                sign = 1.0 if new < self.options["target_nonzero"] else -1.0
                state.beta.copy_((state.beta + sign * self.options["step"]).clamp_min(0.0))
        return record

    def estimate(self, target, k):
        if isinstance(target, ProblemTarget) and isinstance(target.distribution(), KSubset):
            return self._subset(target, k)
        object.__setattr__(self, "_current", self.adaptation(target))     # read by relax, not a submodule
        return super().estimate(target, k)

    def relax(self, layer, logits, u):
        return self._apply(logits, L.noise(layer, u), layer.kind, 1, (-1,), self._current)

    def _subset(self, target, k):
        state = self.adaptation(target)
        dist = target.distribution()
        theta = dist.logits.expand(k, *dist.logits.shape)
        gumbel = -torch.log(-torch.log(relaxations.uniform(theta.shape, theta)))
        z = self._apply(theta, gumbel, "subset", dist.k, (-1,), state)
        costs = target.problem.relaxed_cost(z) if hasattr(target.problem, "relaxed_cost") else target.cost(z)
        return Estimate(costs.mean(0))
