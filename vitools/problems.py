r"""Toy objectives $\mathcal{F}(\theta) = \mathbb{E}_{q_\theta(z)}[f(z)]$ with exact answers.

Every gradient estimator in vitools is tested and compared on these problems, because each
one knows its true value and gradient: in closed form (the Gaussian costs of Mohamed et al.
2020, *Monte Carlo Gradient Estimation in Machine Learning*, arXiv:1906.10652, Figures 2-3;
the Bernoulli toy of Tucker et al. 2017, REBAR, arXiv:1703.07370, and Grathwohl et al. 2018,
RELAX, arXiv:1711.00123), or by enumerating every state (factorised Bernoulli, categorical).

The Problem protocol
--------------------
A problem is any object with

* ``init_params()``: a leaf tensor ``theta`` of shape ``[P]`` with ``requires_grad=True``;
* ``distribution(theta)``: a ``torch.distributions.Distribution`` whose parameters are
  differentiable functions of ``theta``. ``theta`` may carry leading batch dimensions
  ``[*batch, P]`` (write ``theta[..., i]``, not ``theta[i]``): diagnostics replicate
  ``theta`` to get many independent gradient estimates in one backward pass;
* ``cost(z)``: one value per sample, ``z`` of shape ``[*sample, *batch, *event]`` giving
  ``[*sample, *batch]``;
* ``exact_value(theta)`` and ``exact_grad(theta)``: the truth, or ``None``.

Optional attributes tell estimators what they may assume: ``cost_is_differentiable``
(pathwise and the delta method need ``f'``), ``support_depends_on_theta`` (the score
function is wrong then), ``param_names`` and ``param_ranges`` for labels and sliders.

Example::

    >>> problem = BernoulliQuadratic(target=0.45)
    >>> theta = problem.init_params()
    >>> problem.exact_grad(theta)        # d/dlogit of E[(b - 0.45)^2] at p = 1/2
    tensor([0.0250])
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import distributions as D

from . import checks, config
from .targets import ProblemTarget

__all__ = [
    "Problem", "GaussianQuadratic", "GaussianExp", "GaussianCos", "BernoulliQuadratic",
    "FactorisedBernoulli", "CategoricalCost", "PoissonQuadratic", "UniformLinear", "catalog",
    "enumerate_states",
]


def enumerate_states(num_digits: int, base: int = 2, device=None) -> torch.Tensor:
    """Every tuple of ``num_digits`` digits in ``base``: long ``[base**num_digits, num_digits]``,
    row ``i`` holding the digits of ``i``, least significant first (column ``d`` weighs ``base**d``).

    The states that exact expectations over small discrete models sum over: bits of
    :class:`FactorisedBernoulli` and sigmoid belief nets, codes of categorical latents.
    """
    num_digits, base = checks.count("num_digits", num_digits), checks.count("base", base, minimum=2)
    index = torch.arange(base**num_digits, device=device)
    return (index[:, None] // base ** torch.arange(num_digits, device=device)) % base


class Problem:
    """Base class: holds the initial parameters and derives the exact gradient by autograd.

    Subclasses define ``distribution``, ``cost`` and (when known) ``exact_value``; the exact
    gradient is then the autograd gradient of the exact value, so closed forms and
    enumerations need writing only once.
    """

    name = "problem"
    param_names: tuple[str, ...] = ()
    param_ranges: dict[str, tuple[float, float]] = {}
    cost_is_differentiable = True
    support_depends_on_theta = False

    def __init__(self, init):
        self._init = checks.finite("init", config.tensor(init)).flatten()

    def init_params(self) -> torch.Tensor:
        """A fresh leaf tensor ``[P]`` on the configured device, ready for an optimizer."""
        return self._init.clone().requires_grad_(True)

    def at(self, theta: torch.Tensor) -> ProblemTarget:
        """The problem at parameters ``theta`` ``[*batch, P]``, as a target for any estimator."""
        return ProblemTarget(self, theta)

    def distribution(self, theta: torch.Tensor) -> D.Distribution:
        raise NotImplementedError

    def cost(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def exact_value(self, theta: torch.Tensor) -> torch.Tensor | None:
        return None

    def exact_grad(self, theta: torch.Tensor) -> torch.Tensor | None:
        """Gradient of :meth:`exact_value` at ``theta`` (same shape as ``theta``)."""
        leaf = theta.detach().clone().requires_grad_(True)
        value = self.exact_value(leaf)
        if value is None:
            return None
        (grad,) = torch.autograd.grad(value.sum(), leaf)
        return grad

    def _check_theta(self, theta: torch.Tensor) -> torch.Tensor:
        return checks.shape("theta", theta, (len(self._init),), what=", ".join(self.param_names))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return self.name


# --------------------------------------------------------------------------------------
# Gaussian N(mu, sigma^2) with the survey's three costs; theta = [mu, sigma].
# --------------------------------------------------------------------------------------
class _GaussianProblem(Problem):
    """Base for ``q = N(mu, sigma^2)``, ``theta = [mu, sigma]`` (sigma itself, not its log,
    so that gradients match the survey's figures)."""

    param_names = ("mu", "sigma")
    param_ranges = {"mu": (-3.0, 3.0), "sigma": (0.1, 3.0)}
    cost_label = "f(x)"

    def __init__(self, k: float = 1.0, mu: float = 1.0, sigma: float = 1.0):
        self.k = float(checks.finite("k", k))
        checks.finite("mu", mu)
        checks.positive("sigma", sigma)
        super().__init__([mu, sigma])

    def distribution(self, theta):
        self._check_theta(theta)
        checks.positive("sigma", theta[..., 1].detach())
        return D.Normal(theta[..., 0], theta[..., 1])

    def describe(self):
        return f"k={self.k:g}"


class GaussianQuadratic(_GaussianProblem):
    r"""$f(x) = (x - k)^2$: $\mathbb{E}[f] = (\mu - k)^2 + \sigma^2$."""

    name = "gaussian_quadratic"
    cost_label = "(x - k)^2"

    def cost(self, z):
        return (z - self.k) ** 2

    def exact_value(self, theta):
        mu, sigma = theta[..., 0], theta[..., 1]
        return (mu - self.k) ** 2 + sigma**2


class GaussianExp(_GaussianProblem):
    r"""$f(x) = \exp(-k x^2)$: $\mathbb{E}[f] = (1 + 2k\sigma^2)^{-1/2}\exp(-k\mu^2/(1 + 2k\sigma^2))$."""

    name = "gaussian_exp"
    cost_label = "exp(-k x^2)"

    def __init__(self, k: float = 1.0, mu: float = 1.0, sigma: float = 1.0):
        checks.positive("k", k)
        super().__init__(k, mu, sigma)

    def cost(self, z):
        return torch.exp(-self.k * z**2)

    def exact_value(self, theta):
        mu, sigma = theta[..., 0], theta[..., 1]
        s = 1 + 2 * self.k * sigma**2
        return torch.exp(-self.k * mu**2 / s) / torch.sqrt(s)


class GaussianCos(_GaussianProblem):
    r"""$f(x) = \cos(k x)$: $\mathbb{E}[f] = \cos(k\mu)\exp(-k^2\sigma^2/2)$."""

    name = "gaussian_cos"
    cost_label = "cos(k x)"

    def cost(self, z):
        return torch.cos(self.k * z)

    def exact_value(self, theta):
        mu, sigma = theta[..., 0], theta[..., 1]
        return torch.cos(self.k * mu) * torch.exp(-0.5 * (self.k * sigma) ** 2)


# --------------------------------------------------------------------------------------
# Discrete problems
# --------------------------------------------------------------------------------------
class BernoulliQuadratic(Problem):
    r"""The REBAR/RELAX toy: $\mathbb{E}_{b \sim \mathrm{Bern}(p)}[(b - t)^2]$.

    Its gradient in $p$ is $1 - 2t$, tiny when $t$ is near $1/2$ ($t = 0.499$ in the
    RELAX paper) which makes the sign hard to estimate. ``param="logit"`` (default)
    optimises $\theta = \log(p / (1 - p))$; ``param="probability"`` optimises $p$ itself.
    """

    name = "bernoulli_quadratic"
    cost_label = "(b - t)^2"

    def __init__(self, target: float = 0.45, param: str = "logit", init: float | None = None):
        self.target = float(checks.probability("target", target))
        self.param = checks.choice("param", param, {"logit", "probability"})
        if init is None:
            init = 0.0 if param == "logit" else 0.5
        if param == "probability":
            checks.probability("init", init, open_interval=True)
        self.param_names = (param,)
        self.param_ranges = {"logit": (-4.0, 4.0), "probability": (0.02, 0.98)}
        super().__init__([init])

    def probs(self, theta):
        if self.param == "logit":
            return torch.sigmoid(theta[..., 0])
        p = theta[..., 0]
        checks.probability("p", p.detach())
        return p

    def distribution(self, theta):
        self._check_theta(theta)
        if self.param == "logit":
            return D.Bernoulli(logits=theta[..., 0])
        return D.Bernoulli(probs=self.probs(theta))

    def cost(self, z):
        return (z - self.target) ** 2

    def exact_value(self, theta):
        p = self.probs(theta)
        return p * (1 - self.target) ** 2 + (1 - p) * self.target**2

    def describe(self):
        return f"t={self.target:g}, {self.param}"


class FactorisedBernoulli(Problem):
    r"""$D \le 16$ independent bits with logits $\theta$ and an arbitrary cost table.

    $\mathbb{E}[f(b)] = \sum_{b \in \{0,1\}^D} f(b) \prod_d q(b_d)$ is computed by
    enumerating all $2^D$ states, so its gradient is exact. ``costs[i]`` is the cost of the
    state whose bits are the binary digits of ``i`` (bit ``d`` has weight ``2**d``).
    """

    name = "factorised_bernoulli"
    cost_is_differentiable = False
    max_bits = 16

    def __init__(self, costs, logits=None):
        costs = checks.finite("costs", config.tensor(costs))
        if costs.dim() != 1 or costs.numel() < 2 or costs.numel() & (costs.numel() - 1):
            raise ValueError(f"costs must be a 1-D table of length 2**D, got shape {tuple(costs.shape)}")
        self.num_bits = costs.numel().bit_length() - 1
        if self.num_bits > self.max_bits:
            raise ValueError(f"costs describe {self.num_bits} bits; at most {self.max_bits} can be enumerated")
        self.costs = costs
        self.param_names = tuple(f"logit[{d}]" for d in range(self.num_bits))
        self.param_ranges = {name: (-4.0, 4.0) for name in self.param_names}
        self._weights = 2 ** torch.arange(self.num_bits, device=costs.device)
        super().__init__(torch.zeros(self.num_bits) if logits is None else logits)
        checks.shape("logits", self._init, (self.num_bits,))

    @classmethod
    def random(cls, num_bits: int = 4, seed: int = 0, logits=None) -> "FactorisedBernoulli":
        """A cost table of standard-normal entries drawn with ``seed``."""
        checks.count("num_bits", num_bits)
        gen = config.generator(seed, on="cpu")
        return cls(torch.randn(2**num_bits, generator=gen), logits)

    def distribution(self, theta):
        self._check_theta(theta)
        return D.Independent(D.Bernoulli(logits=theta), 1)

    def states(self) -> torch.Tensor:
        """All ``2**D`` states as a ``[2**D, D]`` float tensor, row ``i`` = binary digits of ``i``."""
        return enumerate_states(self.num_bits, device=self.costs.device).to(self.costs.dtype)

    def cost(self, z):
        index = (z * self._weights).sum(-1).round().long()
        return self.costs[index]

    def exact_value(self, theta):
        states = self.states().to(theta.dtype)                   # [S, D] (float32 states would
        # make log_prob float32 even for a float64 theta, ruining finite-difference checks)
        log_q = self.distribution(theta).log_prob(states.reshape(-1, *[1] * (theta.dim() - 1), self.num_bits))
        return (log_q.exp() * self.costs.reshape(-1, *[1] * (theta.dim() - 1))).sum(0)

    def describe(self):
        return f"D={self.num_bits}"


class CategoricalCost(Problem):
    r"""One categorical variable with logits $\theta$ and a cost per class:
    $\mathbb{E}[f] = \sum_c \mathrm{softmax}(\theta)_c f(c)$."""

    name = "categorical"
    cost_is_differentiable = False

    def __init__(self, costs=(0.0, 1.0, 0.25, 0.6), logits=None):
        costs = checks.finite("costs", config.tensor(costs))
        if costs.dim() != 1 or costs.numel() < 2:
            raise ValueError(f"costs must be a 1-D table with at least 2 classes, got shape {tuple(costs.shape)}")
        self.costs = costs
        self.param_names = tuple(f"logit[{c}]" for c in range(costs.numel()))
        self.param_ranges = {name: (-4.0, 4.0) for name in self.param_names}
        super().__init__(torch.zeros(costs.numel()) if logits is None else logits)
        checks.shape("logits", self._init, (costs.numel(),))

    def distribution(self, theta):
        self._check_theta(theta)
        return D.Categorical(logits=theta)

    def cost(self, z):
        return self.costs[z]

    def exact_value(self, theta):
        return (torch.softmax(theta, -1) * self.costs).sum(-1)

    def describe(self):
        return f"C={self.costs.numel()}"


class PoissonQuadratic(Problem):
    r"""$\mathbb{E}_{x \sim \mathrm{Poisson}(\lambda)}[(x - k)^2] = \lambda + (\lambda - k)^2$,
    $\theta = [\lambda]$."""

    name = "poisson_quadratic"
    param_names = ("rate",)
    param_ranges = {"rate": (0.1, 10.0)}
    cost_label = "(x - k)^2"

    def __init__(self, k: float = 3.0, rate: float = 2.0):
        self.k = float(checks.finite("k", k))
        checks.positive("rate", rate)
        super().__init__([rate])

    def distribution(self, theta):
        self._check_theta(theta)
        checks.positive("rate", theta[..., 0].detach())
        return D.Poisson(theta[..., 0])

    def cost(self, z):
        return (z - self.k) ** 2

    def exact_value(self, theta):
        rate = theta[..., 0]
        return rate + (rate - self.k) ** 2

    def describe(self):
        return f"k={self.k:g}"


class UniformLinear(Problem):
    r"""$\mathbb{E}_{x \sim U(0, \theta)}[x] = \theta / 2$, so the gradient is $1/2$.

    The support moves with $\theta$, so differentiating under the integral sign drops the
    boundary term of Leibniz's rule: the score-function estimator has expectation
    $\mathbb{E}[x \cdot (-1/\theta)] = -1/2$, the wrong sign. Pathwise ($x = \theta u$) and
    measure-valued gradients are right.
    """

    name = "uniform_linear"
    param_names = ("theta",)
    param_ranges = {"theta": (0.2, 4.0)}
    support_depends_on_theta = True
    cost_label = "x"

    def __init__(self, upper: float = 1.0):
        checks.positive("upper", upper)
        super().__init__([upper])

    def distribution(self, theta):
        self._check_theta(theta)
        upper = theta[..., 0]
        checks.positive("theta", upper.detach())
        return D.Uniform(torch.zeros_like(upper), upper)

    def cost(self, z):
        return z

    def exact_value(self, theta):
        return theta[..., 0] / 2


def catalog() -> dict[str, Callable[[], Problem]]:
    """Named problem factories with the workbook's default settings (explorer menus)."""
    return {
        "Gaussian, (x-k)^2, k=1": lambda: GaussianQuadratic(k=1.0),
        "Gaussian, exp(-k x^2), k=1": lambda: GaussianExp(k=1.0),
        "Gaussian, cos(k x), k=2": lambda: GaussianCos(k=2.0),
        "Bernoulli, (b-t)^2, t=0.45": lambda: BernoulliQuadratic(target=0.45),
        "Factorised Bernoulli, 4 bits": lambda: FactorisedBernoulli.random(4, seed=0),
        "Categorical, 4 classes": lambda: CategoricalCost(),
        "Poisson, (x-3)^2": lambda: PoissonQuadratic(k=3.0),
        "Uniform U(0, theta), f(x)=x": lambda: UniformLinear(),
    }

