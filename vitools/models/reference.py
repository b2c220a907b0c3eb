r"""The no-latent reference every trained model is shown against: independent Bernoulli units.

$p(x) = \prod_j \pi_j^{x_j}(1 - \pi_j)^{1 - x_j}$ with $\pi$ the (smoothed) training mean: for digits,
*independent pixels*; for piano rolls, *independent keys* at every time step. A latent-variable
model that does not beat it has learned nothing about how pixels or keys go together, whatever
its bound says (see DESIGN.md, "Experiments a reader can trust").
"""
from __future__ import annotations

import torch

from .. import checks


class IndependentBernoulli:
    """Fit by ``IndependentBernoulli.fit(x_train)`` (``x`` ``[N, D]``, or ``[B, T, D]`` with ``mask``
    ``[B, T]`` for sequences); ``smoothing`` pseudo-counts keep every probability inside (0, 1)."""

    def __init__(self, probs: torch.Tensor):
        self.probs = checks.probability("probs", probs, open_interval=True)

    @classmethod
    def fit(cls, x: torch.Tensor, mask: torch.Tensor | None = None, smoothing: float = 1.0) -> "IndependentBernoulli":
        checks.positive("smoothing", smoothing)
        x = checks.probability("x", x)
        if mask is None:
            flat = x.reshape(-1, x.shape[-1])
        else:
            checks.shape("mask", mask, tuple(x.shape[:-1]), "x's leading dimensions")
            flat = x[mask > 0]
        checks.count("x.shape[0]", flat.shape[0])
        return cls((flat.sum(0) + smoothing) / (flat.shape[0] + 2 * smoothing))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """$\\log p(x)$ per row: ``[..., D] -> [...]`` (nats)."""
        x = checks.probability("x", x)
        checks.shape("x", x, (self.probs.shape[-1],), "one value per unit")
        p = self.probs.to(x)
        return (x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(-1)

    def mean_log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> float:
        """The mean over examples (``mask``: over valid time steps, nats per step)."""
        values = self.log_prob(x)
        if mask is None:
            return float(values.mean())
        return float((values * mask).sum() / mask.sum())
