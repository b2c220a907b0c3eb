r"""The score-function estimator (REINFORCE, likelihood ratio) and its variance reduction.

$$\nabla_\theta \mathbb{E}_{q_\theta}[f(z)] = \mathbb{E}_{q_\theta}\big[(f(z) - b)\,
\nabla_\theta \log q_\theta(z)\big]$$

for any $b$ independent of $z$ (Williams 1992; Ranganath, Gerrish & Blei 2014, *Black Box
Variational Inference*, arXiv:1401.0118). It needs only $\log q$ and evaluations of $f$, so
it works for discrete $z$ and non-differentiable $f$, but it is wrong when the support of
$q_\theta$ moves with $\theta$ (the Leibniz boundary term is lost).

Baselines: ``"none"``; a number (a fixed constant $b$, e.g. the ideal $b = \mathbb{E}[f]$
of the textbook analysis); ``"moving_average"`` (an exponential average of past costs, a
constant at fixed $\theta$); ``"leave_one_out"`` ($b_j$ = mean cost of the other $k - 1$
samples, Kool et al. 2019, *Buy 4 REINFORCE samples, get a baseline for free!*).
Control variate ``"delta"``: the second-order Taylor expansion $h$ of $f$ around the mean
(the delta method, Mohamed et al. 2020, arXiv:1906.10652, Section 7.4), whose score-function
term has the known expectation $\nabla_\theta \mathbb{E}[h]$; its coefficient $\beta$ is the
variance-minimising one, $\beta^* = \mathrm{Cov}(a, c) / \mathrm{Var}(c)$ per parameter,
tracked by exponential averages over *earlier* calls, so that it is independent of the
current samples and the estimate stays unbiased ($\beta = 1$ before any statistics exist).
"""
from __future__ import annotations

import torch

from .. import checks
from .base import Estimator, linear_surrogate, score_box

BASELINES = {"none", "moving_average", "leave_one_out"}
CONTROL_VARIATES = {None, "delta"}
WARMUP_BATCH = 256


class ScoreFunction(Estimator):
    """REINFORCE with an optional baseline and an optional delta-method control variate.

    Example::

        >>> est = ScoreFunction(baseline="leave_one_out")
        >>> surrogate = est(problem, theta, k=8)      # [*batch]
        >>> (-surrogate.mean()).backward()            # ascend, or .mean().backward() to descend
    """

    name = "score_function"

    def __init__(self, baseline: str | float = "none", control_variate: str | None = None,
                 decay: float = 0.9, warmup_steps: int = 40):
        if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            baseline = float(checks.finite("baseline", baseline))
        else:
            checks.choice("baseline", baseline, BASELINES)
        if control_variate not in CONTROL_VARIATES:
            raise ValueError(f"control_variate must be one of [None, 'delta'], got {control_variate!r}")
        checks.probability("decay", decay)
        checks.count("warmup_steps", warmup_steps, minimum=0)
        if control_variate == "delta" and baseline != "none":
            raise ValueError(f"baseline must be 'none' with control_variate='delta', got {baseline!r}")
        super().__init__(baseline=baseline, control_variate=control_variate)
        self.baseline, self.control_variate = baseline, control_variate
        self.decay, self.warmup_steps = float(decay), warmup_steps
        self.running_mean: torch.Tensor | None = None
        self.cv_moments: dict[str, torch.Tensor] | None = None

    @property
    def min_samples(self) -> int:
        return 2 if self.baseline == "leave_one_out" else 1

    @property
    def label(self) -> str:
        if self.control_variate == "delta":
            return "score + delta-method CV"
        if isinstance(self.baseline, float):
            return "score + constant baseline"
        return {"none": "score function", "moving_average": "score + moving-average baseline",
                "leave_one_out": "score + leave-one-out baseline"}[self.baseline]

    def why_not(self, problem):
        if getattr(problem, "support_depends_on_theta", False):
            return "the support of q depends on theta, so the score function misses the boundary term"
        if self.control_variate == "delta":
            if not getattr(problem, "cost_is_differentiable", True):
                return "the delta method needs a twice-differentiable cost"
            if problem.distribution(problem.init_params().detach()).event_shape != ():
                return "the delta-method control variate is implemented for scalar latents"
        return None

    def reset(self):
        self.running_mean = None
        self.cv_moments = None

    def prepare(self, problem, theta, k):
        """Start afresh and run ``warmup_steps`` updates of the running statistics at fixed
        ``theta`` on ``WARMUP_BATCH`` replicates, as a long training run at ``theta`` would."""
        self.reset()     # state from another problem or theta must not leak into the estimates
        replicated = theta.detach().expand(max(8, WARMUP_BATCH // k), *theta.shape).clone()   # ~WARMUP_BATCH draws a step
        if self.control_variate == "delta":
            for _ in range(self.warmup_steps):
                self._delta_surrogate(problem, replicated, k)
        elif self.baseline == "moving_average":
            with torch.no_grad():
                for _ in range(self.warmup_steps):
                    z = problem.distribution(replicated).sample((k,))
                    self._update_running_mean(problem.cost(z))

    def _update_running_mean(self, costs):
        batch_mean = costs.detach().float().mean()
        if self.running_mean is None:
            self.running_mean = batch_mean
        else:
            self.running_mean = self.decay * self.running_mean + (1 - self.decay) * batch_mean

    def surrogate(self, problem, theta, k=1):
        if self.control_variate == "delta":
            return self._delta_surrogate(problem, theta, k)
        dist = problem.distribution(theta)
        z = dist.sample((k,))                              # [k, *batch, *event]
        costs = problem.cost(z)                            # [k, *batch]
        signal = costs.detach() - self._baseline(costs)
        return costs.mean(0) + (signal * score_box(dist.log_prob(z))).mean(0)

    def _baseline(self, costs):
        if isinstance(self.baseline, float):
            return torch.tensor(self.baseline, device=costs.device, dtype=costs.dtype)
        if self.baseline == "leave_one_out":
            k = costs.shape[0]
            return ((costs.sum(0, keepdim=True) - costs) / (k - 1)).detach()
        if self.baseline == "moving_average":
            value = self.running_mean if self.running_mean is not None else torch.zeros((), device=costs.device)
            self._update_running_mean(costs)
            return value
        return torch.zeros((), device=costs.device)

    def _delta_surrogate(self, problem, theta, k):
        dist = problem.distribution(theta)
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
        beta = self._coefficient()
        self._update_cv_moments(raw, control, batch_dims)
        grad = (raw - beta * control).mean(0)
        return linear_surrogate(costs.mean(0), [theta], [grad])

    def _coefficient(self):
        if self.cv_moments is None:
            return 1.0
        cov, var = self.cv_moments["ac"], self.cv_moments["cc"]
        return torch.where(var > 0, cov / torch.where(var > 0, var, torch.ones_like(var)), torch.ones_like(var))

    def _update_cv_moments(self, raw, control, batch_dims):
        dims = tuple(range(1 + batch_dims))                   # average over samples and batch
        fresh = {"ac": (raw * control).mean(dims).detach(), "cc": (control * control).mean(dims).detach()}
        if self.cv_moments is None:
            self.cv_moments = fresh
        else:
            self.cv_moments = {key: self.decay * self.cv_moments[key] + (1 - self.decay) * fresh[key]
                               for key in fresh}

