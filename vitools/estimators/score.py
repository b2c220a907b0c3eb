r"""The score-function estimator (REINFORCE, likelihood ratio) and its variance reduction.

$$\nabla_\theta \mathbb{E}_{q_\theta}[f(z)] = \mathbb{E}_{q_\theta}\big[(f(z) - b)\,
\nabla_\theta \log q_\theta(z)\big]$$

for any $b$ independent of $z$ (Williams 1992; Ranganath, Gerrish & Blei 2014, *Black Box
Variational Inference*, arXiv:1401.0118). It needs only $\log q$ and evaluations of $f$, so
it works for discrete $z$ and non-differentiable $f$, but it is wrong when the support of
$q_\theta$ moves with $\theta$ (the Leibniz boundary term is lost). On a stack of discrete
layers (an SBN, a categorical VAE) it is REINFORCE on the bound with the same baselines, the
generative parameters taking their pathwise gradient.

Baselines: ``"none"``; a number (a fixed constant $b$, e.g. the ideal $b = \mathbb{E}[f]$
of the textbook analysis); ``"moving_average"`` (an exponential average of past costs, a
constant at fixed $\theta$); ``"leave_one_out"`` ($b_j$ = mean cost of the other $k - 1$
samples, Kool et al. 2019, *Buy 4 REINFORCE samples, get a baseline for free!*).
Control variate ``"delta"`` (toy problems with scalar latents): the second-order Taylor
expansion $h$ of $f$ around the mean (the delta method, Mohamed et al. 2020, arXiv:1906.10652,
Section 7.4), whose score-function term has the known expectation $\nabla_\theta \mathbb{E}[h]$;
its coefficient $\beta$ is the variance-minimising one, $\beta^* = \mathrm{Cov}(a, c) /
\mathrm{Var}(c)$ per parameter, tracked by exponential averages over *earlier* calls, so that it
is independent of the current samples and the estimate stays unbiased ($\beta = 1$ before any
statistics exist). Running statistics change only in ``train()`` mode.
"""
from __future__ import annotations

import torch
from torch import nn

from ..targets import LayeredTarget, ProblemTarget
from . import layers as L
from . import quadrature
from .base import Estimate, Estimator, Option, linear_surrogate, score_box


class RunningStats(nn.Module):
    """Exponential averages of the cost (``mean``) and of the delta method's moments."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("ac", torch.zeros(0))
        self.register_buffer("cc", torch.zeros(0))

    @torch.no_grad()
    def fold(self, decay: float, **fresh) -> None:
        for name, value in fresh.items():
            old = getattr(self, name)
            setattr(self, name, value.to(old.dtype) if self.count == 0 or old.shape != value.shape
                    else decay * old + (1 - decay) * value.to(old.dtype))
        self.count += 1


class ScoreFunction(Estimator):
    """REINFORCE with an optional baseline and an optional delta-method control variate.

    Example::

        >>> est = ScoreFunction(baseline="leave_one_out")
        >>> out = est(problem.at(theta), k=8)          # out.surrogate: [*batch]
        >>> out.surrogate.mean().backward()            # descend the toy's cost
    """

    name = "score_function"
    OPTIONS = {
        "baseline": Option("none", "baseline subtracted from the cost", kind="choice",
                           choices=("none", "moving_average", "leave_one_out"), number=True),
        "control_variate": Option(None, "control variate: None or 'delta' (toy problems, scalar latents)",
                                  kind="choice", choices=(None, "delta")),
        "decay": Option(0.9, "decay of the running averages", kind="probability"),
        "warmup_steps": Option(40, "default number of warm_up steps", kind="int", minimum=0),
    }

    def __init__(self, **options):
        super().__init__(**options)
        if self.options["control_variate"] == "delta" and self.options["baseline"] != "none":
            raise ValueError(f"baseline must be 'none' with control_variate='delta', got {self.options['baseline']!r}")

    @property
    def baseline(self):
        return self.options["baseline"]

    @property
    def control_variate(self):
        return self.options["control_variate"]

    @property
    def min_samples(self) -> int:
        return 2 if self.baseline == "leave_one_out" else 1

    @property
    def warm_up_steps(self) -> int:
        return self.options["warmup_steps"] if (self.control_variate or self.baseline == "moving_average") else 0

    @property
    def label(self) -> str:
        if self.control_variate == "delta":
            return "score + delta-method CV"
        if isinstance(self.baseline, float):
            return "score + constant baseline"
        return {"none": "score function", "moving_average": "score + moving-average baseline",
                "leave_one_out": "score + leave-one-out baseline"}[self.baseline]

    def _why_not(self, target):
        if isinstance(target, LayeredTarget):
            if self.control_variate == "delta":
                return "the delta-method control variate is implemented for toy problems with scalar latents"
            return None
        if not isinstance(target, ProblemTarget):
            return (f"it is implemented for toy problems and discrete layered targets; for a {target.kind} "
                    "target use a reparameterized estimator (pathwise, iwae, ...)")
        problem = target.problem
        if getattr(problem, "support_depends_on_theta", False):
            return "the support of q depends on theta, so the score function misses the boundary term"
        if self.control_variate == "delta":
            if not getattr(problem, "cost_is_differentiable", True):
                return "the delta method needs a twice-differentiable cost"
            dist = target.distribution()
            if dist.event_shape != ():
                return "the delta-method control variate is implemented for scalar latents"
            if not torch.isfinite(dist.mean).all():
                return (f"the delta method expands the cost around the mean, and {type(dist).__name__} "
                        "(class indices) has none")
        return None

    def exact_variance(self, problem, theta, k, points):
        if not quadrature.is_gaussian(problem) or self.baseline in ("leave_one_out", "moving_average"):
            return None                                  # sample-dependent baselines have no fixed integral
        return quadrature.score_variance(problem, theta, k, points,
                                         baseline=self.baseline if isinstance(self.baseline, float) else None,
                                         delta=self.control_variate == "delta")

    def estimate(self, target, k):
        stats = self.state(target, RunningStats)
        if isinstance(target, ProblemTarget):
            if self.control_variate == "delta":
                return Estimate(self._delta_surrogate(target, k, stats))
            dist = target.distribution()
            z = dist.sample((k,))                              # [k, *batch, *event]
            costs = target.cost(z)                             # [k, *batch]
            signal = costs.detach() - self._baseline(costs, stats)
            return Estimate(costs.mean(0) + (signal * score_box(dist.log_prob(z))).mean(0))
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        signal = f - self._baseline(f, stats)
        grads = [signal.reshape(*signal.shape, *[1] * len(layer.shape)) * L.score(layer, lg.detach(), h)
                 for layer, lg, h in zip(target.layers, logits, hs)]
        return Estimate(L.assemble(target, f, target.signal(hs, relaxed=False), logits, grads))

    def _baseline(self, costs, stats):
        if isinstance(self.baseline, float):
            return torch.tensor(self.baseline, device=costs.device, dtype=costs.dtype)
        if self.baseline == "leave_one_out":
            k = costs.shape[0]
            return ((costs.sum(0, keepdim=True) - costs) / (k - 1)).detach()
        if self.baseline == "moving_average":
            value = stats.mean.clone() if stats.count > 0 else torch.zeros((), device=costs.device)
            if self.training:
                stats.fold(self.options["decay"], mean=costs.detach().mean())
            return value.to(costs.dtype)
        return torch.zeros((), device=costs.device, dtype=costs.dtype)

    def _delta_surrogate(self, target, k, stats):
        problem, theta = target.problem, target.theta
        dist = target.distribution()
        z = dist.sample((k,))                              # [k, *batch]
        costs = problem.cost(z)
        batch_dims = costs.dim() - 1

        # Taylor expansion of f around the (detached) mean mu0.
        mu0 = dist.mean.detach().requires_grad_(True)
        with torch.enable_grad():
            f0 = problem.cost(mu0)
            (f1,) = torch.autograd.grad(f0.sum(), mu0, create_graph=True)
            f2 = torch.autograd.grad(f1.sum(), mu0)[0] if f1.requires_grad else torch.zeros_like(f1)
        f0, f1 = f0.detach(), f1.detach()
        taylor = f0 + f1 * (z - mu0.detach()) + 0.5 * f2 * (z - mu0.detach()) ** 2    # h(z), [k, *batch]

        # Per-sample scores and the exact gradient of E[h], both per batch element.
        theta_d = theta.detach()
        with torch.enable_grad():
            theta_k = theta_d.expand(k, *theta_d.shape).clone().requires_grad_(True)
            (scores,) = torch.autograd.grad(problem.distribution(theta_k).log_prob(z).sum(), theta_k)
            theta_1 = theta_d.clone().requires_grad_(True)
            q = problem.distribution(theta_1)
            expected_h = f0 + f1 * (q.mean - mu0.detach()) + 0.5 * f2 * (q.variance + (q.mean - mu0.detach()) ** 2)
            (grad_expected_h,) = torch.autograd.grad(expected_h.sum(), theta_1)

        extra = scores.dim() - 1 - batch_dims                          # parameter dimensions
        expand = (...,) + (None,) * extra
        raw = costs.detach()[expand] * scores                          # a_j, [k, *batch, *P]
        control = taylor[expand] * scores - grad_expected_h            # c_j, mean zero
        beta = self._coefficient(stats)
        if self.training:
            dims = tuple(range(1 + batch_dims))                        # average over samples and batch
            stats.fold(self.options["decay"], ac=(raw * control).mean(dims).detach(),
                       cc=(control * control).mean(dims).detach())
        grad = (raw - beta * control).mean(0)
        return linear_surrogate(costs.mean(0), [theta], [grad])

    @staticmethod
    def _coefficient(stats):
        if stats.count == 0 or stats.cc.numel() == 0:
            return 1.0
        cov, var = stats.ac, stats.cc
        return torch.where(var > 0, cov / torch.where(var > 0, var, torch.ones_like(var)), torch.ones_like(var))
