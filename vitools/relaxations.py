r"""Continuous relaxations of discrete variables: noise, Concrete distributions, bit relaxations.

The pure mathematics behind the relaxation-based estimators (no estimator, no model here).

* Gumbel-max: $b = \arg\max_i(\ell_i + G_i)$ with $G_i$ standard Gumbel is categorical, and a
  bit is $b = \mathbb{1}[\ell + L > 0]$ with $L$ standard logistic. Replacing the argmax by a
  tempered softmax gives the Concrete distribution (Maddison, Mnih & Teh 2017,
  arXiv:1611.00712), a.k.a. Gumbel-Softmax (Jang, Gu & Poole 2017, arXiv:1611.01144):
  :class:`BinaryConcrete` (the logit $y = (\ell + L)/\tau$ of a relaxed bit) and
  :class:`ExpConcrete` ($y = \mathrm{log\_softmax}((\ell + G)/\tau)$ on the log-simplex), both
  ``torch.distributions.Distribution`` subclasses with stable log-space densities.
* Gapped straight-through (GST, Fan et al. 2022, arXiv:2206.07235): :func:`gapped_logits`.
* Invertible Gaussian reparameterization (IGR, Potapczynski, Loaiza-Ganem & Cunningham 2020,
  arXiv:1912.09588): :func:`igr_simplex`, :func:`igr_bits`.
* Conditional noise $\tilde z \sim p(z \mid b)$ for REBAR/RELAX (Tucker et al. 2017,
  arXiv:1703.07370, Appendix): :func:`conditional_bits`, :func:`conditional_gumbels`.
* *Bit relaxations* ``relax(logits, u, ...)`` of one layer of bits from the hard pass's
  uniforms ``u`` ($z = \ell + \mathrm{logit}(1 - u)$, $b = \mathbb{1}[z > 0]$):
  :func:`concrete_bits`, :func:`straight_through_bits`, :func:`gapped_straight_through_bits`,
  :func:`igr_bits`; and :func:`multilinear_bits`, the multilinear extension of a cost table.

Shapes: logits ``[*batch, D]`` (``D`` bits) or ``[*batch, C]`` (``C`` classes); uniforms and
samples broadcast with them, usually ``[k, *batch, D]``.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from . import checks
from .problems import enumerate_states

TINY = 1e-6                      # uniforms are drawn in [TINY, 1 - TINY]


# ------------------------------------------------------------------------------- noise
def uniform(shape, like: torch.Tensor) -> torch.Tensor:
    """Uniforms ``shape`` in ``[TINY, 1 - TINY]`` (dtype, device of ``like``): logits and double logs stay finite."""
    return torch.rand(shape, device=like.device, dtype=like.dtype).clamp(TINY, 1 - TINY)


def logistic_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """Standard logistic noise ``shape``, $\\log u - \\log(1 - u)$."""
    u = uniform(shape, like)
    return torch.log(u) - torch.log1p(-u)


def gumbel_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``shape``, $-\\log(-\\log u)$."""
    return -torch.log(-torch.log(uniform(shape, like)))


def noise(u: torch.Tensor) -> torch.Tensor:
    """$\\mathrm{logit}(1 - u)$: $z = \\ell + $ this gives $H(z) = \\mathbb{1}[u < \\sigma(\\ell)]$."""
    return torch.log1p(-u) - torch.log(u)


def logistic_score(u: torch.Tensor) -> torch.Tensor:
    r"""$\nabla_\ell \log p(z \mid \ell)$ at $z = \ell + \mathrm{logit}(1 - u)$ (logistic density with
    location $\ell$): $\tanh((z - \ell)/2) = 1 - 2u$ (LAX's score, Grathwohl et al. 2018, Eq. 5)."""
    return 1 - 2 * u


# ------------------------------------------------------------------------------- distributions
def _check_logits(logits: torch.Tensor, categorical: bool) -> torch.Tensor:
    checks.finite("logits", logits.detach())
    if categorical and (logits.dim() == 0 or logits.shape[-1] < 2):
        raise ValueError(f"logits must have at least 2 classes in the last dimension, got shape {tuple(logits.shape)}")
    return logits


class _Concrete(Distribution):
    has_rsample = True
    _categorical = False

    def __init__(self, logits, temperature, validate_args=None):
        self._tau = checks.positive("temperature", temperature)      # a tensor (its dtype sets the numerics)
        self._temperature = float(temperature) if isinstance(temperature, numbers.Real) else None
        self.logits = _check_logits(torch.as_tensor(logits), categorical=self._categorical)
        shape = self.logits.shape
        batch, event = (shape[:-1], shape[-1:]) if self._categorical else (shape, torch.Size())
        super().__init__(batch, event, validate_args=validate_args)

    @property
    def temperature(self):
        """$\\tau$ as a float (the tensor itself if it holds several values)."""
        if self._temperature is not None:
            return self._temperature
        return self._tau.item() if self._tau.numel() == 1 else self._tau

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new._tau, new._temperature = self._tau, self._temperature
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _tau_like(self, y: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self._tau, dtype=y.dtype, device=y.device)


class BinaryConcrete(_Concrete):
    r"""Relaxed Bernoulli in logit space: $y = (\ell + L)/\tau$, $\sigma(y) \in (0, 1)$.

    ``logits`` ``[*batch]`` (batch shape), event shape ``()``. ``rsample(shape)`` ->
    ``[*shape, *batch]`` logits $y$ (differentiable in $\ell$); ``log_prob(y)`` their
    log-density $\log\tau - u - 2\,\mathrm{softplus}(-u)$, $u = \tau y - \ell$ (the same density
    as ``torch.distributions.LogitRelaxedBernoulli``); ``probs_of(y) = sigmoid(y)`` the relaxed bit.
    """

    arg_constraints = {"logits": constraints.real}        # temperature: checked by checks.positive
    support = constraints.real

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return (self.logits + logistic_noise(shape, self.logits)) / self._tau

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(y)
        tau = self._tau_like(y)
        u = tau * y - self.logits
        return torch.log(tau) - u - 2 * F.softplus(-u)

    @staticmethod
    def probs_of(y):
        return torch.sigmoid(y)

    def log_prob_bit(self, x: torch.Tensor) -> torch.Tensor:
        r"""Log-density of the relaxed bit $x = \sigma(y) \in (0, 1)$ (change of variables)."""
        checks.probability("x", x.detach(), open_interval=True)
        return self.log_prob(torch.log(x) - torch.log1p(-x)) - torch.log(x) - torch.log1p(-x)


class ExpConcrete(_Concrete):
    r"""Concrete on the log-simplex: $y = \mathrm{log\_softmax}((\ell + G)/\tau)$, ``[*batch, C]``.

    ``logits`` ``[*batch, C]``, ``C >= 2``; event shape ``(C,)``. ``log_prob(y)`` is the density
    of the first $C - 1$ coordinates with respect to Lebesgue measure (the last one is fixed by
    $\mathrm{logsumexp}(y) = 0$): the paper's symmetric formula (Maddison et al. 2017, App. C)
    $\log(C-1)! + (C-1)\log\tau + \sum_i a_i - C\,\mathrm{logsumexp}_i\,a_i$,
    $a = \mathrm{log\_softmax}(\ell) - \tau y$, minus $y_C$, the log-Jacobian of dropping the last
    coordinate, so that it integrates to one. ``torch.distributions.ExpRelaxedCategorical``
    returns the symmetric formula, i.e. this ``log_prob`` plus $y_C$ (a density with respect to
    $\prod_{i<C} dy_i / e^{y_C}$); the two differ by a function of $y$ alone, so log-ratios of
    two such densities at the same $y$ (a relaxed KL) agree. ``probs_of(y) = exp(y)`` is the
    relaxed one-hot vector.
    """

    arg_constraints = {"logits": constraints.real_vector}  # temperature: checked by checks.positive
    support = constraints.real_vector
    _categorical = True

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return torch.log_softmax((self.logits + gumbel_noise(shape, self.logits)) / self._tau, -1)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(y)
        c = self.logits.shape[-1]
        tau = self._tau_like(y)
        a = torch.log_softmax(self.logits, -1) - tau * y
        symmetric = math.lgamma(c) + (c - 1) * torch.log(tau) + a.sum(-1) - c * torch.logsumexp(a, -1)
        return symmetric - y[..., -1]          # Jacobian of dropping y_C (see the class docstring)

    @staticmethod
    def probs_of(y):
        return torch.exp(y)


# ------------------------------------------------------------------------------- GST, IGR, tables
def gapped_logits(logits: torch.Tensor, hard: torch.Tensor, gap: float, categorical: bool) -> torch.Tensor:
    r"""GST's perturbed logits (Fan et al. 2022, arXiv:2206.07235): ``logits`` shifted by a
    constant (so their gradient is the identity) such that the sampled ``hard`` state leads by at
    least ``gap``. Classes: $\delta_b = (\max_{i\neq b}\ell_i + \kappa - \ell_b)_+$ on the sampled
    class ``b`` only; a bit (its other logit is 0): $\max(\ell, \kappa)$ if $b = 1$, else $\min(\ell, -\kappa)$.
    ``logits`` and ``hard`` (one-hot or bits) of the same shape ``[..., D]``."""
    with torch.no_grad():
        if categorical:
            others = logits.masked_fill(hard > 0, -torch.inf).amax(-1, keepdim=True)
            chosen = (logits * hard).sum(-1, keepdim=True)
            target = logits + hard * (others + gap - chosen).clamp_min(0)
        else:
            target = torch.where(hard > 0, logits.clamp_min(gap), logits.clamp_max(-gap))
    return logits + (target - logits).detach()


def igr_simplex(logits: torch.Tensor, k: int, temperature: float, sigma: float, delta: float,
                eps: torch.Tensor | None = None) -> torch.Tensor:
    r"""``k`` IGR points of the simplex ``[k, *logits.shape]`` for categorical ``logits`` ``[..., C]``
    (Potapczynski et al. 2020, arXiv:1912.09588): $y = (\mu + \sigma\varepsilon)/\tau$ with
    $\mu_i = \ell_i - \ell_C$, then softmax++ $e^{y_i}/(\sum_j e^{y_j} + \delta)$ and $1 - \sum$ for class $C$."""
    mu = logits[..., :-1] - logits[..., -1:]
    if eps is None:                                 # standard normals [k, ..., C - 1], else given
        eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype)
    y = (mu + sigma * eps) / temperature
    log_delta = torch.full_like(y[..., :1], math.log(delta))
    return torch.softmax(torch.cat([y, log_delta], -1), -1)


def multilinear_bits(costs: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    r"""$\sum_s f(s)\prod_d \tilde b_d^{s_d}(1-\tilde b_d)^{1-s_d}$ for ``soft`` ``[..., D]`` in
    $[0, 1]^D$ and a table ``costs`` ``[2**D]`` (state ``i`` = binary digits of ``i``) -> ``[...]``."""
    num_bits = soft.shape[-1]
    checks.shape("costs", costs, (2**num_bits,), what="one cost per state")
    states = enumerate_states(num_bits, device=soft.device).to(soft.dtype)          # [S, D]
    s = soft.unsqueeze(-2)                                                          # [..., 1, D]
    weights = (states * s + (1 - states) * (1 - s)).prod(-1)                        # [..., S]
    return weights @ costs.to(soft.dtype)


# ------------------------------------------------------------------------------- conditional noise
def conditional_bits(hard, logits, v) -> torch.Tensor:
    r"""$\tilde z \sim p(z \mid b)$ for logistic-noise bits ($z = \ell + L$, $b = \mathbb{1}[z > 0]$),
    reparameterised by uniforms ``v`` (all broadcast, ``[..., D]``): $\mathrm{softplus}(\mathrm{logit}\,v
    + \mathrm{softplus}(\ell))$ if $b = 1$, else $-\mathrm{softplus}(\mathrm{logit}\,v + \mathrm{softplus}(-\ell))$."""
    logit_v = torch.log(v) - torch.log1p(-v)
    ones = F.softplus(logit_v + F.softplus(logits))
    zeros = -F.softplus(logit_v + F.softplus(-logits))
    return torch.where(hard > 0, ones, zeros)


def conditional_gumbels(hard, logits, v) -> torch.Tensor:
    r"""$\tilde z \sim p(z \mid b)$ for Gumbel-max classes ($z = \mathrm{log\_softmax}(\ell) + G$,
    $b = \mathrm{one\_hot}(\arg\max z)$), reparameterised by uniforms ``v`` ``[..., C]`` (Tucker et al.
    2017, Appendix): with $E = -\log v$ (Exponential(1)), $\tilde z_b = -\log E_b$ (the maximum, a
    standard Gumbel) and $\tilde z_i = -\log(E_i / p_i + E_b)$ for $i \ne b$ (Gumbels truncated below it).
    ``hard`` one-hot ``[..., C]``; the bit case is :func:`conditional_bits`."""
    log_p = torch.log_softmax(logits, -1)
    neg_log_v = -torch.log(v)                                           # Exponential(1)
    top = (neg_log_v * hard).sum(-1, keepdim=True)                      # -log v_b
    others = -torch.log(neg_log_v * torch.exp(-log_p) + top)            # truncated below the top
    return torch.where(hard > 0, -torch.log(top), others)


# ------------------------------------------------------------------------------- bit relaxations
# A *bit relaxation* maps a layer's logits and its uniforms ``u`` (the hard pass's, so the
# relaxed and hard passes share their noise) to the value fed to the next layer, ``[..., D]``.
def concrete_bits(logits, u, temperature):
    """Binary Concrete / Gumbel-Softmax (arXiv:1611.00712, arXiv:1611.01144): $\\sigma((\\ell + L)/\\tau)$."""
    return torch.sigmoid((logits + noise(u)) / temperature)


def straight_through_bits(logits, u, temperature):
    """Straight-through Gumbel-Softmax: forward $H(z)$, backward $\\sigma(z/\\tau)$, $z = \\ell + L$."""
    z = logits + noise(u)
    soft = torch.sigmoid(z / temperature)
    return (z > 0).to(z.dtype) + soft - soft.detach()


def gapped_straight_through_bits(logits, u, temperature, gap):
    """Gapped straight-through (Fan et al. 2022, arXiv:2206.07235): forward $H(z)$, backward
    $\\sigma(\\tilde\\ell/\\tau)$ at the gapped logit of :func:`gapped_logits`."""
    hard = (logits + noise(u) > 0).to(logits.dtype)
    soft = torch.sigmoid(gapped_logits(logits, hard, gap, categorical=False) / temperature)
    return hard + soft - soft.detach()


def igr_bits(logits, u, temperature, sigma):
    """IGR for one bit (Potapczynski et al. 2020, arXiv:1912.09588): $\\sigma((\\ell + \\sigma\\varepsilon)/\\tau)$,
    $\\varepsilon = \\Phi^{-1}(1 - u)$ standard normal, increasing in the hard pass's logistic noise."""
    return torch.sigmoid((logits + sigma * torch.special.ndtri(1 - u)) / temperature)
