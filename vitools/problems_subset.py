r"""Sampling without replacement and a k-subset toy problem with exact answers.

Perturbing logits $\theta$ with Gumbel noise and keeping the $k$ largest entries
(Gumbel-top-k) draws $k$ distinct classes *without replacement*, in the order of the
sequential (Plackett-Luce) process $p(s_1, \dots, s_k) = \prod_i p_{s_i} / (1 - \sum_{j<i} p_{s_j})$
with $p = \mathrm{softmax}(\theta)$ (Kool, van Hoof & Welling 2019, *Stochastic Beams and Where to
Find Them*, arXiv:1903.06059). The unordered set $S$ has probability
$p(S) = \sum_{\sigma} p(s_{\sigma_1}, \dots, s_{\sigma_k})$, the sum over its $k!$ orders
(:func:`log_set_prob`; exact, for the small $k$ of the workbook).

:class:`KSubset` is that distribution over $k$-hot vectors $z \in \{0, 1\}^n$, $\sum_i z_i = k$:
its sample is the perturb-and-MAP solution $\mathrm{top}_k(\theta + G)$, the structured discrete
choice of I-MLE (Niepert, Minervini & Franceschi 2021, arXiv:2106.01798) and AIMLE (Minervini,
Franceschi & Niepert 2023, arXiv:2209.04862). :class:`SubsetSum` is a toy problem on it, a
subset-selection cost $f(z) = (w^\top z - y)^2$ whose exact value and gradient come from
enumerating all $\binom{n}{k}$ subsets.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import distributions as D

from . import checks, config
from .problems import Problem

__all__ = ["log_set_prob", "KSubset", "SubsetSum"]


def _permutations(m: int, device) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(m))), device=device, dtype=torch.long).reshape(-1, m)


def log_set_prob(probs: torch.Tensor, mass: torch.Tensor | float = 1.0) -> torch.Tensor:
    r"""$\log p^{D'}(S)$ for the unordered set $S$ whose members have probabilities ``probs``
    ``[..., m]`` under $p$, drawn without replacement from a domain $D'$ of total mass ``mass``
    (broadcast to ``[...]``; $1$ for the full domain, $1 - p_s$ once $s$ is removed):
    $\log \sum_\sigma \prod_i p_{\sigma_i} / (M - \sum_{j<i} p_{\sigma_j})$ over the $m!$ orders. ``[...]``,
    in the dtype of ``probs``.

    ``probs`` must be a floating-point tensor with entries in $(0, 1]$ and ``mass`` finite, in
    $(0, 1]$, at least the members' total (up to rounding): otherwise a ``ValueError`` names the
    argument."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise ValueError(f"probs must be a floating-point tensor [..., m], got "
                         f"{probs.dtype if isinstance(probs, torch.Tensor) else type(probs).__name__}")
    if probs.dim() == 0:
        raise ValueError("probs must have a last dimension (the set's members), got a 0-d tensor")
    checks.finite("probs", probs)
    if not ((probs > 0) & (probs <= 1)).all():
        bad = probs[~((probs > 0) & (probs <= 1))].flatten()[0].item()
        raise ValueError(f"probs must lie in (0, 1], got {bad!r}")
    if isinstance(mass, bool) or (isinstance(mass, torch.Tensor) and mass.dtype == torch.bool):
        raise ValueError(f"mass must be a number in (0, 1], got {mass!r}")
    mass = torch.as_tensor(mass, dtype=probs.dtype, device=probs.device)
    checks.finite("mass", mass)
    if not ((mass > 0) & (mass <= 1)).all():
        bad = mass[~((mass > 0) & (mass <= 1))].flatten()[0].item()
        raise ValueError(f"mass must lie in (0, 1], got {bad!r}")
    checks.broadcast(probs=probs[..., 0] if probs.shape[-1] else probs.sum(-1), mass=mass)
    slack = 1e-6 if probs.dtype == torch.float64 else 1e-3
    if not (probs.sum(-1) <= mass * (1 + slack)).all():
        raise ValueError("mass must be at least the total of probs (the set is drawn from a domain of that mass), "
                         f"got mass {_describe(mass)} below a total {probs.sum(-1).max().item()!r}")
    return _log_set_prob(probs, mass)


def _describe(t: torch.Tensor) -> str:
    return repr(t.item()) if t.numel() == 1 else f"of shape {tuple(t.shape)}"


def _log_set_prob(probs: torch.Tensor, mass: torch.Tensor | float = 1.0) -> torch.Tensor:
    """:func:`log_set_prob` without the input checks (inside estimators, under ``vmap``)."""
    m = probs.shape[-1]
    mass = torch.as_tensor(mass, dtype=probs.dtype, device=probs.device)
    if m == 0:
        return torch.zeros(torch.broadcast_shapes(probs.shape[:-1], mass.shape), dtype=probs.dtype,
                           device=probs.device)
    ordered = probs[..., _permutations(m, probs.device)]                       # [..., m!, m]
    before = ordered.cumsum(-1) - ordered                                      # mass drawn earlier
    remaining = (mass[..., None, None] - before).clamp_min(torch.finfo(probs.dtype).tiny)
    return torch.logsumexp((torch.log(ordered) - torch.log(remaining)).sum(-1), -1)


class KSubset(D.Distribution):
    r"""Gumbel-top-k subsets: $z = \mathrm{khot}(\mathrm{top}_k(\theta + G))$, ``[*batch, n]`` with
    exactly ``k`` ones; ``log_prob`` is $\log p(S)$ of :func:`log_set_prob`."""

    arg_constraints = {}
    has_enumerate_support = True

    def __init__(self, logits: torch.Tensor, k: int, validate_args=None):
        if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
            raise ValueError(f"logits must be a tensor [*batch, n], got {logits!r}")
        self.k = checks.count("k", k, minimum=1)
        if self.k >= logits.shape[-1]:
            raise ValueError(f"k must be < n = {logits.shape[-1]} (the number of items), got {k}")
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=False)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.logits.shape
            u = torch.rand(shape, device=self.logits.device, dtype=self.logits.dtype).clamp(1e-12, 1 - 1e-7)
            z = self.logits.expand(shape) - torch.log(-torch.log(u))
            return torch.zeros(shape, device=z.device, dtype=z.dtype).scatter(-1, z.topk(self.k, -1).indices, 1.0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        members = value.topk(self.k, -1).indices                                   # the k ones
        probs = self.probs.expand(value.shape).gather(-1, members)
        return _log_set_prob(probs)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        n = self.logits.shape[-1]
        rows = torch.tensor(list(itertools.combinations(range(n), self.k)), device=self.logits.device)
        out = torch.zeros(len(rows), n, dtype=self.logits.dtype, device=self.logits.device).scatter(-1, rows, 1.0)
        out = out.reshape(len(rows), *[1] * len(self.batch_shape), n)
        return out.expand(len(rows), *self.batch_shape, n) if expand else out


class SubsetSum(Problem):
    r"""Choose ``k`` of ``n`` items whose weights $w$ sum to $y$: $f(z) = (w^\top z - y)^2$ with
    $z \sim$ :class:`KSubset` $(\theta, k)$, minimised. Exact value and gradient by enumerating
    the $\binom{n}{k}$ subsets; ``relaxed_cost`` is the same formula at any real $z$ (so
    perturb-and-MAP and straight-through estimators may differentiate it)."""

    name = "subset_sum"
    cost_is_differentiable = True

    def __init__(self, n: int = 6, k: int = 2, weights=None, total: float | None = None, seed: int = 0):
        n, k = checks.count("n", n, minimum=2), checks.count("k", k, minimum=1)
        if k >= n:
            raise ValueError(f"k must be < n = {n}, got {k}")
        self.n, self.k = n, k
        gen = torch.Generator().manual_seed(seed)
        w = torch.rand(n, generator=gen) if weights is None else config.tensor(weights)
        self.weights = checks.shape("weights", checks.finite("weights", config.tensor(w)), (n,))
        self.total = float(checks.finite("total", self.weights[:k].sum() if total is None else total))
        self.param_names = tuple(f"theta[{i}]" for i in range(n))
        super().__init__(0.5 * torch.randn(n, generator=gen))
        if math.comb(n, k) > 50_000:
            raise ValueError(f"n, k must give at most 50000 subsets to enumerate, got C({n}, {k}) = {math.comb(n, k)}")

    def distribution(self, theta):
        self._check_theta(theta)
        return KSubset(theta, self.k)

    def cost(self, z):
        return (z @ self.weights.to(z.dtype) - self.total) ** 2

    def relaxed_cost(self, soft):
        return self.cost(soft)

    def exact_value(self, theta):
        dist = self.distribution(theta)
        support = dist.enumerate_support()                                        # [S, *batch, n]
        return (dist.log_prob(support).exp() * self.cost(support)).sum(0)

    def describe(self):
        return f"n={self.n}, k={self.k}"
