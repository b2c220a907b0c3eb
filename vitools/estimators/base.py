r"""The surrogate convention shared by every estimator.

An estimator turns a problem and parameters $\theta$ into a *surrogate* tensor: its forward
value is the Monte Carlo estimate of $\mathbb{E}_{q_\theta}[f]$ and its autograd gradient
is the estimator's gradient estimate (Schulman et al. 2015, *Gradient Estimation Using
Stochastic Computation Graphs*, arXiv:1506.05254; the same convention as DeepMind's
``mc_gradients``). Training is ``surrogate.mean().backward()``; diagnostics replicate
$\theta$ along a batch dimension and take one backward pass to get many independent
estimates at once.

Shapes: ``theta`` is ``[*batch, P]``; ``k`` samples are drawn per batch element, so
``z`` is ``[k, *batch, *event]``, costs are ``[k, *batch]`` and the surrogate is ``[*batch]``.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from .. import checks


def score_box(log_prob: torch.Tensor) -> torch.Tensor:
    r"""Zero in value, $\nabla \log q$ in gradient: multiply a detached learning signal by it."""
    return log_prob - log_prob.detach()


def linear_surrogate(value: torch.Tensor, params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    r"""``value`` in the forward pass; gradient $\sum_i (\partial p_i/\partial\theta)^\top g_i$.

    Used by estimators that compute the gradient with respect to the distribution's own
    parameters ``params`` (shape ``[*batch, ...]``) explicitly, e.g. measure-valued ones;
    autograd then applies the chain rule from those parameters back to ``theta``.
    """
    out = value
    for p, g in zip(params, grads):
        term = (p - p.detach()) * g.detach()
        extra = term.dim() - value.dim()
        out = out + (term.sum(dim=tuple(range(-extra, 0))) if extra > 0 else term)
    return out


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    """One ``optimizer`` step on ``params`` down the gradient of ``loss`` (leaving other tensors'
    ``.grad`` alone); returns the loss. Trains estimators' own baselines and control variates."""
    updates = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, updates):
        p.grad = None if g is None else g.detach()
    optimizer.step()
    return float(loss.detach())


class Estimator:
    """Base class. Subclasses set ``name`` and implement :meth:`surrogate` and :meth:`why_not`."""

    name: ClassVar[str] = ""
    unbiased: ClassVar[bool] = True

    def __init__(self, **options):
        self.options = options

    @property
    def min_samples(self) -> int:
        """The smallest ``k`` the estimator accepts (2 for leave-one-out baselines)."""
        return 1

    @property
    def label(self) -> str:
        """A short human-readable name for legends."""
        extras = ", ".join(f"{v}" for v in self.options.values() if v not in (None, "none", False))
        return f"{self.name.replace('_', ' ')}" + (f" ({extras})" if extras else "")

    def why_not(self, problem) -> str | None:
        """``None`` when the estimator is valid for ``problem``, else the reason it is not."""
        return None

    def applies_to(self, problem) -> bool:
        """Whether the estimator's assumptions hold for ``problem`` (see :meth:`why_not`)."""
        return self.why_not(problem) is None

    def prepare(self, problem, theta: torch.Tensor, k: int) -> None:
        """Bring internal state (moving averages, learned control variates) to a steady state
        at fixed ``theta`` before variance is measured. Stateless estimators do nothing."""

    def reset(self) -> None:
        """Forget internal state."""

    def surrogate(self, problem, theta: torch.Tensor, k: int = 1) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, problem, theta: torch.Tensor, k: int = 1) -> torch.Tensor:
        checks.count("k", k, minimum=self.min_samples)
        return self.surrogate(problem, theta, k)

    def __repr__(self) -> str:
        opts = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{type(self).__name__}({opts})"
