r"""Measure-valued (weak-derivative) gradient estimators.

The derivative of a density in one of its parameters $\vartheta$ can be written as a scaled
difference of two densities, $\partial_\vartheta q = c_\vartheta\,(q^+ - q^-)$, so that
$\partial_\vartheta \mathbb{E}_q[f] = c_\vartheta(\mathbb{E}_{q^+}[f] - \mathbb{E}_{q^-}[f])$
(Pflug 1989; Heidergott & Vázquez-Abad 2000; Mohamed et al. 2020, *Monte Carlo Gradient
Estimation in Machine Learning*, arXiv:1906.10652, Section 6 and Table 1). Only
evaluations of $f$ are needed, and the two expectations are coupled with common random
numbers. The weak derivatives implemented here (the survey's table):

======================  =======================  ===============================================  ======================================
distribution, param     $c$                      $q^+$                                            $q^-$
======================  =======================  ===============================================  ======================================
Normal, mean $\mu$      $1/(\sigma\sqrt{2\pi})$  $\mu + \sigma W$, $W \sim$ Weibull($\sqrt2$, 2)  $\mu - \sigma W$ (same $W$)
Normal, scale $\sigma$  $1/\sigma$               $\mu + \sigma M$, $M \sim$ double-sided Maxwell  $\mu + \sigma M U$, $U \sim U(0,1)$
Bernoulli, $p$          1                        $\delta_1$                                       $\delta_0$
Poisson, rate           1                        Poisson($\lambda$) + 1                           Poisson($\lambda$)
Uniform(a, b), $b$      $1/(b - a)$              $\delta_b$                                       $U(a, b)$
Categorical, $\pi_j$    1                        $\delta_j$                                       (constraint handled by the chain rule)
======================  =======================  ===============================================  ======================================

$MU$ is standard normal when $M$ is double-sided Maxwell and $U$ uniform, which couples the
two halves of the scale derivative. For $D$ independent bits the Bernoulli rule is applied
to each bit with the other bits kept at their sampled values ($2D$ cost evaluations); for a
mean-field Gaussian ``Independent(Normal, 1)`` the Normal rules are applied to each coordinate
the same way ($4D$ cost evaluations per draw: the cost the survey's Section 8.3 reports).
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from ..targets import ProblemTarget
from . import quadrature
from .base import Estimate, Estimator, linear_surrogate


def _normal(dist: D.Normal, cost, k: int):
    mu, sigma = dist.loc, dist.scale
    shape = (k, *dist.batch_shape)
    m0, s0 = mu.detach(), sigma.detach()
    weibull = torch.sqrt(-2 * torch.log1p(-torch.rand(shape, device=mu.device, dtype=mu.dtype)))
    grad_mu = (cost(m0 + s0 * weibull) - cost(m0 - s0 * weibull)).mean(0) / (s0 * math.sqrt(2 * math.pi))
    maxwell = torch.randn(3, *shape, device=mu.device, dtype=mu.dtype).norm(dim=0)
    maxwell = maxwell * (2 * torch.randint(0, 2, shape, device=mu.device) - 1)
    normal = maxwell * torch.rand(shape, device=mu.device, dtype=mu.dtype)
    grad_sigma = (cost(m0 + s0 * maxwell) - cost(m0 + s0 * normal)).mean(0) / s0
    value = cost(m0 + s0 * normal).mean(0)
    return value, [mu, sigma], [grad_mu, grad_sigma]


def _normal_vector(dist: D.Normal, cost, k: int):
    """Independent Normal over the last dimension ``[..., D]``: coordinate ``i``'s weak derivatives,
    the other coordinates kept at a common draw from q (``4 D`` cost evaluations per draw)."""
    mu, sigma = dist.loc, dist.scale
    m0, s0 = mu.detach(), sigma.detach()
    dim = mu.shape[-1]
    shape = (k, *mu.shape)
    z = m0 + s0 * torch.randn(shape, device=mu.device, dtype=mu.dtype)               # [k, *batch, D]
    eye = torch.eye(dim, device=mu.device, dtype=torch.bool)

    def at(coordinate):                       # z with coordinate i replaced: [k, *batch, i, D]
        return torch.where(eye, coordinate.unsqueeze(-1), z.unsqueeze(-2))

    weibull = torch.sqrt(-2 * torch.log1p(-torch.rand(shape, device=mu.device, dtype=mu.dtype)))
    grad_mu = (cost(at(m0 + s0 * weibull)) - cost(at(m0 - s0 * weibull))).mean(0) / (s0 * math.sqrt(2 * math.pi))
    maxwell = torch.randn(3, *shape, device=mu.device, dtype=mu.dtype).norm(dim=0)
    maxwell = maxwell * (2 * torch.randint(0, 2, shape, device=mu.device) - 1)
    normal = maxwell * torch.rand(shape, device=mu.device, dtype=mu.dtype)
    grad_sigma = (cost(at(m0 + s0 * maxwell)) - cost(at(m0 + s0 * normal))).mean(0) / s0
    return cost(z).mean(0), [mu, sigma], [grad_mu, grad_sigma]


def _bernoulli(dist: D.Bernoulli, cost, k: int, event_dims: int):
    z = dist.sample((k,))
    value = cost(z).mean(0)
    if event_dims == 0:
        ones, zeros = torch.ones_like(z), torch.zeros_like(z)
        return value, [dist.probs], [(cost(ones) - cost(zeros)).mean(0)]
    num_bits = z.shape[-1]
    eye = torch.eye(num_bits, device=z.device, dtype=torch.bool)
    flipped = z.unsqueeze(-2).expand(*z.shape[:-1], num_bits, num_bits)        # [..., bit i, D]
    high = torch.where(eye, torch.ones_like(flipped), flipped)
    low = torch.where(eye, torch.zeros_like(flipped), flipped)
    grad = (cost(high) - cost(low)).mean(0)                                     # [*batch, D]
    return value, [dist.probs], [grad]


def _poisson(dist: D.Poisson, cost, k: int):
    x = dist.sample((k,))
    return cost(x).mean(0), [dist.rate], [(cost(x + 1) - cost(x)).mean(0)]


def _uniform(dist: D.Uniform, cost, k: int):
    x = dist.sample((k,))
    f = cost(x)
    value = f.mean(0)
    width = (dist.high - dist.low).detach()
    grad_high = (cost(dist.high.detach().expand_as(x)) - f).mean(0) / width
    grad_low = (f - cost(dist.low.detach().expand_as(x))).mean(0) / width
    return value, [dist.high, dist.low], [grad_high, grad_low]


def _categorical(dist: D.Categorical, cost, k: int):
    value = cost(dist.sample((k,))).mean(0)
    classes = torch.arange(dist.probs.shape[-1], device=dist.probs.device)
    per_class = cost(classes.reshape(-1, *[1] * len(dist.batch_shape)).expand(-1, *dist.batch_shape))
    return value, [dist.probs], [per_class.movedim(0, -1)]


def _weak_derivative(dist, cost, k):
    if isinstance(dist, D.Independent) and isinstance(dist.base_dist, D.Bernoulli) \
            and dist.reinterpreted_batch_ndims == 1:
        return _bernoulli(dist.base_dist, cost, k, event_dims=1)
    if isinstance(dist, D.Independent) and isinstance(dist.base_dist, D.Normal) \
            and dist.reinterpreted_batch_ndims == 1:
        return _normal_vector(dist.base_dist, cost, k)
    if isinstance(dist, D.Normal):
        return _normal(dist, cost, k)
    if isinstance(dist, D.Bernoulli):
        return _bernoulli(dist, cost, k, event_dims=0)
    if isinstance(dist, D.Poisson):
        return _poisson(dist, cost, k)
    if isinstance(dist, D.Uniform):
        return _uniform(dist, cost, k)
    if isinstance(dist, D.Categorical):
        return _categorical(dist, cost, k)
    return None


SUPPORTED = (D.Normal, D.Bernoulli, D.Poisson, D.Uniform, D.Categorical)


class MeasureValued(Estimator):
    """Weak-derivative estimator with coupled positive and negative parts."""

    name = "measure_valued"

    @property
    def label(self) -> str:
        return "measure-valued"

    def _why_not(self, target):
        if not isinstance(target, ProblemTarget):
            return (f"weak derivatives are implemented for the distributions of toy problems, not for a "
                    f"{target.kind} target's latents")
        dist = target.distribution()
        base = dist.base_dist if isinstance(dist, D.Independent) else dist
        if isinstance(dist, D.Independent) and not (isinstance(base, (D.Bernoulli, D.Normal))
                                                    and dist.reinterpreted_batch_ndims == 1):
            return f"no weak derivative implemented for {type(dist).__name__}({type(base).__name__})"
        if not isinstance(base, SUPPORTED):
            return f"no weak derivative implemented for {type(dist).__name__}"
        return None

    def exact_variance(self, problem, theta, k, points):
        return quadrature.measure_valued_variance(problem, theta, k, points) if quadrature.is_gaussian(problem) else None

    def estimate(self, target, k):
        value, params, grads = _weak_derivative(target.distribution(), target.cost, k)
        return Estimate(linear_surrogate(value, params, grads))
