r"""Multilevel Monte Carlo (MLMC) reparameterized gradients that recycle past parameters.

Fujisawa & Sato 2021, *Multilevel Monte Carlo Variational Inference* (JMLR 22(278);
arXiv:1902.00468). Write $g(\lambda, \epsilon) = \nabla_\lambda f(T_\lambda(\epsilon))$ for the
reparameterized gradient at parameters $\lambda$ with base noise $\epsilon$. Optimisation has
left a history $\lambda_{t-L}, \dots, \lambda_{t-1}$ before the current $\lambda_t$; with
$\lambda^{(l)} = \lambda_{t-L+l}$ the gradient at $\lambda_t = \lambda^{(L)}$ telescopes,

$$\nabla \mathcal{F}(\lambda_t) = \mathbb{E}\,g(\lambda^{(0)}, \epsilon) + \sum_{l=1}^{L}
\mathbb{E}\big[g(\lambda^{(l)}, \epsilon) - g(\lambda^{(l-1)}, \epsilon)\big],$$

and each level is estimated by its own $N_l$ draws, the two terms of a difference sharing the
same $\epsilon$ (common random numbers):

$$\hat g = \frac{1}{N_0}\sum_{n=1}^{N_0} g(\lambda^{(0)}, \epsilon_{0n}) + \sum_{l=1}^{L}\frac{1}{N_l}
\sum_{n=1}^{N_l} \big[g(\lambda^{(l)}, \epsilon_{ln}) - g(\lambda^{(l-1)}, \epsilon_{ln})\big].$$

The past parameters are fixed before the current draws, so $\hat g$ is unbiased for the
gradient at $\lambda_t$ whatever the history. When $g$ is Lipschitz in $\lambda$ a difference's
variance $V_l$ is of order $\lVert\lambda^{(l)} - \lambda^{(l-1)}\rVert^2$: small when the steps
are small, and smaller still as a decaying learning rate shrinks them.

Sample sizes: $N_0 = k$; the others by the variance-to-cost allocation of MLMC (Giles 2008, *Multilevel Monte Carlo path
simulation*), which minimises $\mathrm{Var}\,\hat g = \sum_l V_l / N_l$ at a fixed cost
$\sum_l N_l C_l$: $N_l \propto \sqrt{V_l / C_l}$, i.e. $N_l = \lceil N_0 \sqrt{V_l C_0 / (V_0 C_l)}\,\rceil$
clipped to $[1, N_0]$, with $C_0 = 1$ gradient per draw and $C_l = 2$ for a difference. The
$V_l$ are exponential averages over *earlier* calls (running statistics, updated only in
``train()`` mode), so the sizes are fixed before the current draws and unbiasedness holds;
until a level has statistics it gets $N_0$ draws. The history is recorded in ``train()`` mode:
each call appends the current $\lambda_t$, keeping the last ``levels``.

When MLMC gains (:func:`equal_cost_ratio`): at the optimal allocation and equal total cost, MLMC's
variance over plain Monte Carlo's is $(\sum_l \sqrt{V_l C_l})^2 / (V C)$, at least $V_0 C_0 / (V C)$. Giles'
hierarchies gain because the first level is *cheaper* ($C_0 \ll C$) and the differences' variances
fall faster than their costs grow (:func:`quadrature_level_grad`: $V_l \sim 16^{-l}$, $C_l \sim 2^l$,
ratio about 0.03). Over recycled parameters every level costs one or two gradients at full price and
$V_0$, the variance at the oldest parameters, is about the variance $V$ at the current ones, so the
ratio is at least $V_0/V \approx 1$; smaller steps (a decaying learning rate) shrink the $V_l$ and
bring it down towards $V_0/V$, never below, unless the older parameters happen to have the smaller
gradient variance. With the same $N_0$ (the comparison of the paper's abstract, "without increasing the initial
sample size") MLMC's variance is about plain Monte Carlo's $V/N_0$, at a higher cost.
:meth:`MLMC.cost` reports the gradient evaluations of a call; the tests and notebook 09 measure
both comparisons.

Toy problems with reparameterizable distributions and differentiable costs only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..targets import ProblemTarget
from .base import Estimate, Estimator, Option, linear_surrogate


class History(nn.Module):
    """The last ``levels`` recorded parameters ``[m, P]`` and running per-level variances ``[levels + 1]``."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels
        self.register_buffer("past", torch.zeros(0))
        self.register_buffer("variance", torch.zeros(levels + 1))
        self.register_buffer("seen", torch.zeros(levels + 1, dtype=torch.bool))

    @torch.no_grad()
    def record(self, theta: torch.Tensor) -> None:
        row = theta.reshape(-1, theta.shape[-1]).mean(0)[None]
        past = row if self.past.numel() == 0 else torch.cat([self.past.to(row.dtype), row])
        self.past = past[-self.levels:]

    @torch.no_grad()
    def fold(self, level: int, value: torch.Tensor, decay: float) -> None:
        old = self.variance[level]
        self.variance[level] = decay * old + (1 - decay) * value if self.seen[level] else value
        self.seen[level] = True


def _per_sample_grads(problem, lam: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """$g(\\lambda, \\epsilon_i)$ for ``n`` draws ``[n, *batch, P]``; the noise fixed by ``seed``."""
    leaf = lam.detach().expand(n, *lam.shape).clone().requires_grad_(True)
    devices = [leaf.device] if leaf.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        z = problem.distribution(leaf).rsample()
        (grad,) = torch.autograd.grad(problem.cost(z).sum(), leaf)
    return grad


def allocate(variances: list[float], k: int) -> list[int]:
    r"""$N_l = \lceil k\sqrt{V_l C_0 / (V_0 C_l)}\,\rceil$ clipped to $[1, k]$, $N_0 = k$ ($C_0 = 1$, $C_l = 2$)."""
    v0 = float(variances[0])
    if v0 <= 0:
        return [k] * len(variances)
    return [k] + [int(min(k, max(1, math.ceil(k * math.sqrt(max(float(v), 0.0) / v0 / 2))))) for v in variances[1:]]


def equal_cost_ratio(variances, costs, plain_variance: float, plain_cost: float = 1.0) -> float:
    r"""MLMC's variance at the optimal allocation over plain Monte Carlo's, at the same total cost:

    $$\frac{\big(\sum_l \sqrt{V_l C_l}\big)^2}{V C}$$

    (Giles 2008: minimising $\sum_l V_l/N_l$ subject to $\sum_l N_l C_l$ fixed gives $N_l \propto
    \sqrt{V_l / C_l}$ and variance $(\sum_l\sqrt{V_l C_l})^2 / \text{cost}$), where plain Monte Carlo
    draws single estimates of variance ``plain_variance`` $V$ at ``plain_cost`` $C$ each. Below 1
    MLMC gains. Since every term is non-negative the ratio is at least $V_0 C_0 / (V C)$: MLMC
    can gain only where its first level is cheaper or less variable than the plain estimate."""
    variances, costs = [float(v) for v in variances], [float(c) for c in costs]
    if not variances or len(variances) != len(costs):
        raise ValueError(f"variances and costs must be non-empty and of one length, got {len(variances)} and "
                         f"{len(costs)}")
    if any(v < 0 or not math.isfinite(v) for v in variances):
        raise ValueError(f"variances must be finite and >= 0, got {variances}")
    if any(c <= 0 or not math.isfinite(c) for c in costs):
        raise ValueError(f"costs must be finite and > 0, got {costs}")
    if not (plain_variance > 0 and math.isfinite(plain_variance)):
        raise ValueError(f"plain_variance must be finite and > 0, got {plain_variance}")
    if not (plain_cost > 0 and math.isfinite(plain_cost)):
        raise ValueError(f"plain_cost must be finite and > 0, got {plain_cost}")
    return sum(math.sqrt(v * c) for v, c in zip(variances, costs)) ** 2 / (plain_variance * plain_cost)


def quadrature_level_grad(eps: torch.Tensor, level: int, mu: float = 0.5, sigma: float = 1.0) -> torch.Tensor:
    r"""A textbook MLMC hierarchy: the reparameterized gradient $\partial_\mu F_l(\mu + \sigma\epsilon)$ per draw
    ``eps`` ``[n]`` -> ``[n]``, where $F_l(z)$ is the $2^l$-point midpoint rule for $\int_0^1 \cos(zs)\,ds =
    \sin(z)/z$ (cost $2^l$ integrand evaluations). The rule's error is $O(4^{-l})$, so a coupled difference
    (one $\epsilon$ for levels $l$ and $l-1$) has variance $O(16^{-l})$ while its cost grows as $2^l$."""
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be an integer >= 0, got {level!r}")
    m = 2 ** level
    s = (torch.arange(m, dtype=eps.dtype, device=eps.device) + 0.5) / m
    z = (mu + sigma * eps)[..., None]
    return -(s * torch.sin(z * s)).mean(-1)


def multilevel_mean(difference, sizes) -> torch.Tensor:
    r"""$\sum_l \frac{1}{N_l}\sum_n Y_{l,n}$ with ``sizes`` $[N_0, \dots, N_L]$ and ``difference(l, n)`` returning
    ``n`` independent draws of the level-$l$ term (level 0 the coarsest estimate itself, $l \ge 1$ coupled
    differences): the MLMC estimate of the finest level's mean."""
    sizes = [int(n) for n in sizes]
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"sizes must be a non-empty list of integers >= 1, got {sizes}")
    return sum(difference(l, n).mean(0) for l, n in enumerate(sizes))


def level_variances(problem, lams: list[torch.Tensor], n: int, seed: int = 0) -> list[float]:
    r"""$V_0 = \mathrm{tr}\,\mathrm{Var}\, g(\lambda^{(0)}, \epsilon)$ and $V_l$ of the coupled differences, from ``n`` draws each."""
    g0 = _per_sample_grads(problem, lams[0], n, seed)
    out = [float(g0.var(0).sum())]
    for l in range(1, len(lams)):
        diff = _per_sample_grads(problem, lams[l], n, seed + l) - _per_sample_grads(problem, lams[l - 1], n, seed + l)
        out.append(float(diff.var(0).sum()))
    return out


class MLMC(Estimator):
    """MLMC reparameterized gradient over recycled past parameters (Fujisawa & Sato 2021)."""

    name = "mlmc"
    OPTIONS = {
        "levels": Option(3, "number of past parameters recycled (levels above level 0)", kind="int", minimum=1),
        "adapt": Option(True, "sample sizes by the variance/cost allocation (else N_l = k at every level)",
                        kind="bool"),
        "decay": Option(0.9, "decay of the running level variances", kind="probability"),
    }

    @property
    def label(self) -> str:
        return "MLMC"

    def _why_not(self, target):
        if not isinstance(target, ProblemTarget):
            return f"it is implemented for toy problems (ProblemTarget), not for a {target.kind} target"
        if not getattr(target.problem, "cost_is_differentiable", True):
            return "the cost is not differentiable"
        if not target.distribution().has_rsample:
            return "the distribution has no reparameterized sampler (rsample)"
        return None

    def _history(self, target) -> History:
        return self.state(target, lambda: History(self.options["levels"]))

    def sample_sizes(self, target, k: int) -> list[int]:
        """$[N_0, \\dots, N_L]$ the next call would use (``L`` = the recorded history's length)."""
        history = self._history(target)
        levels = len(history.past)
        sizes = allocate(history.variance[: levels + 1].tolist(), k) if levels else [k]
        return [n if self.options["adapt"] and bool(history.seen[0] and history.seen[l]) else k
                for l, n in enumerate(sizes)]

    def cost(self, target, k: int) -> int:
        """Gradient evaluations of the next call: $N_0 + 2\\sum_{l\\ge1} N_l$."""
        sizes = self.sample_sizes(target, k)
        return sizes[0] + 2 * sum(sizes[1:])

    def estimate(self, target, k):
        problem, theta = target.problem, target.theta
        history = self._history(target)
        sizes = self.sample_sizes(target, k)
        past = [p.to(theta.dtype).expand_as(theta) for p in history.past]
        lams = past + [theta.detach()]                               # lambda^(0), ..., lambda^(L)
        seeds = torch.randint(0, 2**62, (len(lams),)).tolist()
        g0 = _per_sample_grads(problem, lams[0], sizes[0], seeds[0])     # [N_0, *batch, P]
        grad, variances = g0.mean(0), [g0.var(0).sum(-1).mean() if sizes[0] > 1 else None]
        for l in range(1, len(lams)):
            diff = (_per_sample_grads(problem, lams[l], sizes[l], seeds[l])
                    - _per_sample_grads(problem, lams[l - 1], sizes[l], seeds[l]))
            grad = grad + diff.mean(0)
            variances.append(diff.var(0).sum(-1).mean() if sizes[l] > 1 else None)
        if self.training:
            for l, v in enumerate(variances):
                if v is not None:
                    history.fold(l, v.detach(), self.options["decay"])
            history.record(theta)
        with torch.no_grad():
            value = problem.cost(problem.distribution(theta.detach()).sample((k,))).mean(0)
        return Estimate(linear_surrogate(value, [theta], [grad]))
