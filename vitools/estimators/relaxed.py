r"""Continuous relaxations of discrete latents: Concrete / Gumbel-Softmax and its descendants.

The Gumbel-max trick writes a categorical sample as $b = \arg\max_i(\ell_i + G_i)$ with
$G_i$ standard Gumbel; replacing the argmax by a tempered softmax gives the Concrete
distribution (Maddison, Mnih & Teh 2017, arXiv:1611.00712), a.k.a. Gumbel-Softmax
(Jang, Gu & Poole 2017, arXiv:1611.01144):
$\tilde b = \mathrm{softmax}((\ell + G)/\tau)$, or for one bit
$\tilde b = \sigma((\ell + L)/\tau)$ with $L$ standard logistic.

Distributions (sampling and densities in log space, stable down to $\tau = 0.01$):

* :class:`BinaryConcrete` -- the *logit* $y = (\ell + L)/\tau$ of a relaxed bit, density
  $\log p(y) = \log\tau - u - 2\,\mathrm{softplus}(-u)$ with $u = \tau y - \ell$;
* :class:`ExpConcrete` -- $y = \mathrm{log\_softmax}((\ell + G)/\tau)$ on the log-simplex,
  density (Maddison et al. 2017, Appendix C) $\log (C-1)! + (C-1)\log\tau
  + \sum_i(\ell_i - \tau y_i) - C\,\mathrm{logsumexp}_i(\ell_i - \tau y_i) - y_C$ over the
  $C-1$ free coordinates.

Estimators (all biased, ``unbiased = False``; their bias is measured in the tests):
``gumbel_softmax`` (the relaxed objective's pathwise gradient), ``straight_through``
(Gumbel-Softmax straight-through: forward the hard sample, backward the relaxed one),
``gapped_straight_through`` (Fan et al. 2022, arXiv:2206.07235: the Gumbel noise is replaced
by a deterministic perturbation of the logits that keeps the sampled class ahead by a gap
$\kappa$ -- here the variant that raises only the sampled logit) and ``igr`` (Potapczynski,
Loaiza-Ganem & Cunningham 2020, arXiv:1912.09588: Gaussian noise through softmax++; for a
toy problem with logits $\ell$ the Gaussian means are $\ell_i - \ell_C$, so part of its bias is
that the discretised IGR distribution is not the problem's categorical).

Which relaxation of $f$ is used (:func:`relaxed_cost`): a problem may define
``relaxed_cost(soft)``; otherwise a scalar Bernoulli problem with a differentiable cost
(``BernoulliQuadratic``: $(b - t)^2$) is evaluated at the relaxed bit itself; cost *tables*
use their multilinear extension, $\sum_s f(s)\prod_d \tilde b_d^{s_d}(1-\tilde b_d)^{1-s_d}$
for bits and $\sum_c \tilde b_c f(c)$ on the simplex, which agrees with $f$ at every vertex.

Shapes: ``theta`` ``[*batch, P]``; logits are normalised to ``[*batch, D]`` (``D`` bits, or
``C`` classes); samples are ``[k, *batch, D]``; costs and surrogates as in :mod:`.base`.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import distributions as Dist

from .. import checks
from ..models.sbn import bernoulli_log_prob
from ..problems import enumerate_states
from . import register
from . import relaxed_sbn
from .base import Estimator

TINY = 1e-6                      # uniforms are drawn in [TINY, 1 - TINY]


# --------------------------------------------------------------------------------------
# Noise and distributions
# --------------------------------------------------------------------------------------
def _check_logits(logits: torch.Tensor, categorical: bool) -> torch.Tensor:
    checks.finite("logits", logits.detach())
    if categorical and (logits.dim() == 0 or logits.shape[-1] < 2):
        raise ValueError(f"logits must have at least 2 classes in the last dimension, got shape {tuple(logits.shape)}")
    return logits


def uniform(shape, like: torch.Tensor) -> torch.Tensor:
    """Uniforms in ``[TINY, 1 - TINY]`` so that their logits and double logs stay finite."""
    return torch.rand(shape, device=like.device, dtype=like.dtype).clamp(TINY, 1 - TINY)


def logistic_noise(shape, like):
    u = uniform(shape, like)
    return torch.log(u) - torch.log1p(-u)


def gumbel_noise(shape, like):
    return -torch.log(-torch.log(uniform(shape, like)))


class BinaryConcrete:
    r"""Relaxed Bernoulli in logit space: $y = (\ell + L)/\tau$, $\sigma(y) \in (0, 1)$.

    ``rsample(shape)`` -> ``[*shape, *logits.shape]`` logits $y$ (differentiable in $\ell$);
    ``log_prob(y)`` their log-density; ``probs_of(y) = sigmoid(y)`` the relaxed bit.
    """

    def __init__(self, logits, temperature):
        self.temperature = checks.positive("temperature", temperature)
        self.logits = _check_logits(torch.as_tensor(logits), categorical=False)

    def rsample(self, shape=()) -> torch.Tensor:
        shape = torch.Size(shape) + self.logits.shape
        return (self.logits + logistic_noise(shape, self.logits)) / self.temperature

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        tau = torch.as_tensor(self.temperature, dtype=y.dtype, device=y.device)
        u = tau * y - self.logits
        return torch.log(tau) - u - 2 * F.softplus(-u)

    @staticmethod
    def probs_of(y):
        return torch.sigmoid(y)

    def log_prob_bit(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log-density of the relaxed bit $x = \sigma(y) \in (0, 1)$ (change of variables)."""
        checks.probability("x", x.detach(), open_interval=True)
        return self.log_prob(torch.log(x) - torch.log1p(-x)) - torch.log(x) - torch.log1p(-x)


class ExpConcrete:
    r"""Concrete on the log-simplex: $y = \mathrm{log\_softmax}((\ell + G)/\tau)$, ``[..., C]``.

    ``log_prob(y)`` is the density of the first $C - 1$ coordinates with respect to Lebesgue
    measure (the last one is fixed by $\mathrm{logsumexp}(y) = 0$): the paper's symmetric
    formula minus $y_C$, the log-Jacobian of dropping the last coordinate, so that it
    integrates to one; ``probs_of(y) = exp(y)`` is the relaxed one-hot vector.
    """

    def __init__(self, logits, temperature):
        self.temperature = checks.positive("temperature", temperature)
        self.logits = _check_logits(torch.as_tensor(logits), categorical=True)

    def rsample(self, shape=()) -> torch.Tensor:
        shape = torch.Size(shape) + self.logits.shape
        return torch.log_softmax((self.logits + gumbel_noise(shape, self.logits)) / self.temperature, -1)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        c = self.logits.shape[-1]
        tau = torch.as_tensor(self.temperature, dtype=y.dtype, device=y.device)
        a = torch.log_softmax(self.logits, -1) - tau * y
        symmetric = math.lgamma(c) + (c - 1) * torch.log(tau) + a.sum(-1) - c * torch.logsumexp(a, -1)
        return symmetric - y[..., -1]          # Jacobian of dropping y_C (see the class docstring)

    @staticmethod
    def probs_of(y):
        return torch.exp(y)


# --------------------------------------------------------------------------------------
# Reading a problem: which latent, its logits, its cost at hard and relaxed points
# --------------------------------------------------------------------------------------
class Latent:
    """The discrete latent of a problem in a common format.

    ``kind`` is ``"bernoulli"`` (``logits`` ``[*batch, D]``, hard samples in {0, 1}) or
    ``"categorical"`` (normalised ``logits`` ``[*batch, C]``, hard samples one-hot).
    """

    def __init__(self, problem, theta):
        self.problem = problem
        checks.finite("theta (the logits)", theta.detach())
        dist = problem.distribution(theta)
        self.scalar = False
        if isinstance(dist, Dist.Independent) and isinstance(dist.base_dist, Dist.Bernoulli) \
                and dist.reinterpreted_batch_ndims == 1:
            self.kind, self.logits = "bernoulli", dist.base_dist.logits
        elif isinstance(dist, Dist.Bernoulli):
            self.kind, self.logits, self.scalar = "bernoulli", dist.logits.unsqueeze(-1), True
        elif isinstance(dist, Dist.Categorical) and not isinstance(dist, Dist.OneHotCategorical):
            self.kind, self.logits = "categorical", dist.logits
        else:
            raise ValueError(f"problem must have Bernoulli or categorical latents, got {type(dist).__name__}")
        _check_logits(self.logits, self.kind == "categorical")

    def log_prob(self, hard):
        """``log q(b)`` of hard samples ``[k, *batch, D]`` -> ``[k, *batch]``."""
        if self.kind == "bernoulli":
            return bernoulli_log_prob(self.logits, hard)
        return (hard * torch.log_softmax(self.logits, -1)).sum(-1)

    def hard_from(self, z):
        """Hard sample from the noisy logits ``z`` (threshold at 0, or one-hot argmax)."""
        if self.kind == "bernoulli":
            return (z > 0).to(z.dtype)
        return F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)

    def soft_from(self, z, temperature):
        return torch.sigmoid(z / temperature) if self.kind == "bernoulli" else torch.softmax(z / temperature, -1)

    def noisy_logits(self, k):
        """$z = \\ell + $ logistic (bits) or Gumbel (classes) noise, ``[k, *batch, D]``."""
        noise = logistic_noise if self.kind == "bernoulli" else gumbel_noise
        return self.logits + noise((k, *self.logits.shape), self.logits)

    def cost(self, hard):
        """The problem's own cost at hard samples, ``[k, *batch]``."""
        if self.kind == "bernoulli":
            return self.problem.cost(hard.squeeze(-1) if self.scalar else hard)
        return self.problem.cost(hard.argmax(-1))

    def relaxed_cost(self, soft):
        """The relaxation of $f$ at relaxed points (see the module docstring)."""
        cost = relaxed_cost(self.problem, soft.squeeze(-1) if self.scalar else soft)
        if cost is None:
            raise ValueError(f"problem {self.problem!r} has no cost at relaxed points: {why_no_relaxation(self.problem)}")
        return cost


def why_no_relaxation(problem) -> str | None:
    """``None`` when :func:`relaxed_cost` can evaluate ``problem``'s cost at relaxed points."""
    reason = why_not_discrete(problem)
    if reason is not None:
        return reason
    if hasattr(problem, "relaxed_cost") or _table(problem) is not None:
        return None
    dist = problem.distribution(problem.init_params().detach())
    if isinstance(dist, Dist.Bernoulli) and getattr(problem, "cost_is_differentiable", True):
        return None
    return ("its cost is defined only at discrete points; give the problem a relaxed_cost(soft) "
            "(e.g. the multilinear extension of its table)")


def why_not_discrete(problem) -> str | None:
    """``None`` when the problem's latents are Bernoulli bits or one categorical variable."""
    if not all(hasattr(problem, a) for a in ("init_params", "distribution", "cost")):
        return ("it works on problems with distribution(theta) and cost(z); among latent-variable "
                "models only sigmoid belief nets are supported (rebar, relax, lax, arm, disarm, "
                "gumbel_softmax, straight_through, gapped_straight_through, igr)")
    try:
        Latent(problem, problem.init_params().detach())
    except ValueError as err:
        return f"it needs Bernoulli or categorical latents ({err})"
    return None


def _table(problem):
    from ..problems import CategoricalCost, FactorisedBernoulli
    if isinstance(problem, (FactorisedBernoulli, CategoricalCost)):
        return problem.costs
    return None


def multilinear_bits(costs: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    r"""$\sum_s f(s)\prod_d \tilde b_d^{s_d}(1-\tilde b_d)^{1-s_d}$ for ``soft`` ``[..., D]`` in
    $[0, 1]^D$ and a table ``costs`` ``[2**D]`` (state ``i`` = binary digits of ``i``) -> ``[...]``."""
    num_bits = soft.shape[-1]
    checks.shape("costs", costs, (2**num_bits,), what="one cost per state")
    states = enumerate_states(num_bits, device=soft.device).to(soft.dtype)          # [S, D]
    s = soft.unsqueeze(-2)                                                          # [..., 1, D]
    weights = (states * s + (1 - states) * (1 - s)).prod(-1)                        # [..., S]
    return weights @ costs.to(soft.dtype)


def relaxed_cost(problem, soft: torch.Tensor) -> torch.Tensor | None:
    """The cost at relaxed points ``soft`` (bits in [0, 1], or points of the simplex ``[..., C]``);
    ``None`` when the problem offers no relaxation."""
    if hasattr(problem, "relaxed_cost"):
        return problem.relaxed_cost(soft)
    table = _table(problem)
    if table is not None:
        from ..problems import CategoricalCost
        if isinstance(problem, CategoricalCost):
            return soft @ table.to(soft.dtype)
        return multilinear_bits(table, soft)
    if why_no_relaxation(problem) is None:
        return problem.cost(soft)
    return None


def gapped_logits(logits: torch.Tensor, hard: torch.Tensor, gap: float, categorical: bool) -> torch.Tensor:
    r"""GST's perturbed logits (Fan et al. 2022, arXiv:2206.07235): ``logits`` shifted by a
    constant (so their gradient is the identity) such that the sampled ``hard`` state leads by at
    least ``gap``. Classes: $\delta_b = (\max_{i\neq b}\ell_i + \kappa - \ell_b)_+$ on the sampled
    class ``b`` only; a bit (its other logit is 0): $\max(\ell, \kappa)$ if $b = 1$, else $\min(\ell, -\kappa)$."""
    with torch.no_grad():
        if categorical:
            others = logits.masked_fill(hard > 0, -torch.inf).amax(-1, keepdim=True)
            chosen = (logits * hard).sum(-1, keepdim=True)
            target = logits + hard * (others + gap - chosen).clamp_min(0)
        else:
            target = torch.where(hard > 0, logits.clamp_min(gap), logits.clamp_max(-gap))
    return logits + (target - logits).detach()


# --------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------
class _Relaxed(relaxed_sbn.ModelSupport, Estimator):
    unbiased = False

    def __init__(self, temperature: float = 0.5, **options):
        checks.positive("temperature", temperature)
        self.temperature = float(temperature)
        super().__init__(temperature=self.temperature, **options)

    def why_not(self, problem):
        if relaxed_sbn.is_sbn(problem):
            return None
        return why_no_relaxation(problem)

    def _loss(self, model, x, k, update):
        return relaxed_sbn.relaxed_loss(self.bit_relaxation(), model, x, k)

    def bit_relaxation(self):
        """``(logits, u) -> value``: this relaxation of one layer of bits on a sigmoid belief net
        (see :mod:`.relaxed_sbn`)."""
        raise NotImplementedError

    def surrogate(self, problem, theta, k=1):
        latent = Latent(problem, theta)
        return latent.relaxed_cost(self.relaxed_sample(latent, k)).mean(0)

    def relaxed_sample(self, latent, k):
        raise NotImplementedError


@register
class GumbelSoftmax(_Relaxed):
    r"""Pathwise gradient of the relaxed objective $\mathbb{E}[f(\tilde b_\tau)]$ (biased for $\tau > 0$).

    The forward value is the relaxed cost, not $f$ of a discrete sample.
    """

    name = "gumbel_softmax"

    def bit_relaxation(self):
        return functools.partial(relaxed_sbn.concrete_bits, temperature=self.temperature)

    def relaxed_sample(self, latent, k):
        return latent.soft_from(latent.noisy_logits(k), self.temperature)


@register
class StraightThrough(_Relaxed):
    r"""Straight-through Gumbel-Softmax: $b + \tilde b - \mathrm{stop\_grad}(\tilde b)$, forward
    $f(b)$ at the hard sample, backward $\partial f/\partial b \cdot \partial \tilde b/\partial\theta$."""

    name = "straight_through"

    def __init__(self, temperature: float = 1.0):
        super().__init__(temperature)

    def bit_relaxation(self):
        return functools.partial(relaxed_sbn.straight_through_bits, temperature=self.temperature)

    def relaxed_sample(self, latent, k):
        z = latent.noisy_logits(k)
        soft = latent.soft_from(z, self.temperature)
        return latent.hard_from(z) + soft - soft.detach()


@register
class GappedStraightThrough(_Relaxed):
    r"""Gapped straight-through (Fan et al. 2022, arXiv:2206.07235).

    Draw $b$ exactly, then replace the Gumbel noise by the deterministic perturbation
    $\delta$ that lifts the sampled logit to at least $\kappa$ above every other one
    ($\delta_b = (\max_{i\neq b}\ell_i + \kappa - \ell_b)_+$, zero elsewhere; for a bit the
    other logit is 0, so the perturbed logit is $\max(\ell, \kappa)$ or $\min(\ell, -\kappa)$),
    and pass the straight-through gradient of $\mathrm{softmax}((\ell + \delta)/\tau)$.
    """

    name = "gapped_straight_through"

    def __init__(self, temperature: float = 1.0, gap: float = 1.0):
        checks.positive("gap", gap)
        self.gap = float(gap)
        super().__init__(temperature, gap=self.gap)

    def relaxed_sample(self, latent, k):
        with torch.no_grad():
            hard = latent.hard_from(latent.noisy_logits(k))
        gapped = gapped_logits(latent.logits.expand_as(hard), hard, self.gap, latent.kind == "categorical")
        soft = latent.soft_from(gapped, self.temperature)
        return hard + soft - soft.detach()

    def bit_relaxation(self):
        return functools.partial(relaxed_sbn.gapped_straight_through_bits, temperature=self.temperature,
                                 gap=self.gap)


@register
class IGR(_Relaxed):
    r"""Invertible Gaussian reparameterization with softmax++ (Potapczynski et al. 2020, arXiv:1912.09588).

    $y = (\mu + \sigma\varepsilon)/\tau$ with $\varepsilon \sim N(0, I)$ in $C - 1$ dimensions and
    $\tilde b = (\mathrm{softmax}\text{++}(y), 1 - \sum)$, $\mathrm{softmax}\text{++}(y)_i =
    e^{y_i}/(\sum_j e^{y_j} + \delta)$; $\mu_i = \ell_i - \ell_C$ here, $\sigma$ fixed. For a bit,
    $\tilde b = \sigma((\ell + \sigma\varepsilon)/\tau)$ ($\delta = 1$).
    """

    name = "igr"

    def __init__(self, temperature: float = 0.5, sigma: float = 1.7, delta: float = 1.0):
        checks.positive("sigma", sigma)
        checks.positive("delta", delta)
        self.sigma, self.delta = float(sigma), float(delta)
        super().__init__(temperature, sigma=self.sigma, delta=self.delta)

    def bit_relaxation(self):
        return functools.partial(relaxed_sbn.igr_bits, temperature=self.temperature, sigma=self.sigma)

    def relaxed_sample(self, latent, k):
        logits = latent.logits
        if latent.kind == "bernoulli":
            eps = torch.randn((k, *logits.shape), device=logits.device, dtype=logits.dtype)
            return torch.sigmoid((logits + self.sigma * eps) / self.temperature)
        return igr_simplex(logits, k, self.temperature, self.sigma, self.delta)


def igr_simplex(logits: torch.Tensor, k: int, temperature: float, sigma: float, delta: float) -> torch.Tensor:
    r"""``k`` IGR points of the simplex ``[k, *logits.shape]`` for categorical ``logits`` ``[..., C]``
    (Potapczynski et al. 2020, arXiv:1912.09588): $y = (\mu + \sigma\varepsilon)/\tau$ with
    $\mu_i = \ell_i - \ell_C$, then softmax++ $e^{y_i}/(\sum_j e^{y_j} + \delta)$ and $1 - \sum$ for class $C$."""
    mu = logits[..., :-1] - logits[..., -1:]
    eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype)
    y = (mu + sigma * eps) / temperature
    log_delta = torch.full_like(y[..., :1], math.log(delta))
    return torch.softmax(torch.cat([y, log_delta], -1), -1)
