r"""Bayesian logistic regression with a mean-field Gaussian posterior: the survey's case study.

Mohamed, Rosca, Figurnov & Mnih 2020, *Monte Carlo Gradient Estimation in Machine Learning*
(JMLR 21(132); arXiv:1906.10652), Section 8.3: weights $w \in \mathbb{R}^D$ (a bias included)
with prior $\mathcal{N}(0, I)$, labels $y_n \in \{0, 1\}$ with $p(y_n = 1 \mid x_n, w) =
\sigma(x_n^\top w)$, and $q_\theta(w) = \prod_d \mathcal{N}(w_d; \mu_d, \sigma_d^2)$ with $\theta =
[\mu, \log\sigma]$ ``[*batch, 2D]``. The ELBO is

$$\mathcal{L}(\theta) = \mathbb{E}_{q_\theta}[\log p(y \mid X, w) + \log p(w)] + \mathbb{H}[q_\theta],$$

the entropy $\sum_d \log\sigma_d + \tfrac{D}{2}\log(2\pi e)$ in closed form, so the gradient to
estimate is that of $\mathbb{E}_q[f(w)]$ with the cost $f(w) = -\log p(y, w \mid X)$ (minimised).
As a toy problem (:mod:`vitools.problems`' protocol) every registered estimator for Gaussian
latents runs on it unchanged: pathwise, score function (with its baselines), measure-valued.
:meth:`negative_elbo` joins an estimator's surrogate and the exact entropy into the loss that
training descends; :meth:`heldout_log_likelihood` scores a posterior on held-out data.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D
from torch.nn import functional as F

from .. import checks, config
from ..problems import Problem

__all__ = ["BayesianLogisticRegression"]


def _design(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], -1)


class BayesianLogisticRegression(Problem):
    """Features ``x`` ``[N, F]`` and labels ``y`` ``[N]`` in {0, 1}; ``D = F + 1`` weights (a bias
    column is appended). ``init_log_sigma`` starts every $\\log\\sigma_d$ (means start at 0)."""

    name = "bayesian_logistic_regression"

    def __init__(self, x, y, prior_scale: float = 1.0, init_log_sigma: float = -2.0):
        x = checks.finite("x", config.tensor(x, dtype=x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else None))
        if x.dim() != 2 or len(x) == 0:
            raise ValueError(f"x must be a matrix [N, F], got shape {tuple(x.shape)}")
        y = checks.binary("y", config.tensor(y, dtype=x.dtype))
        if y.shape != (len(x),):
            raise ValueError(f"y must have shape ({len(x)},) to match x, got {tuple(y.shape)}")
        self.x, self.y = _design(x), y
        self.dim = self.x.shape[-1]
        self.prior_scale = float(checks.positive("prior_scale", prior_scale))
        checks.finite("init_log_sigma", init_log_sigma)
        super().__init__(torch.cat([torch.zeros(self.dim), torch.full((self.dim,), float(init_log_sigma))]))
        self.param_names = tuple(f"mu[{d}]" for d in range(self.dim)) + tuple(
            f"log sigma[{d}]" for d in range(self.dim))

    def describe(self):
        return f"N={len(self.x)}, D={self.dim}"

    def distribution(self, theta):
        self._check_theta(theta)
        return D.Independent(D.Normal(theta[..., : self.dim], theta[..., self.dim:].exp()), 1)

    def log_likelihood(self, w: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """$\\log p(y \\mid X, w)$ per data point ``[..., N]`` for weights ``w`` ``[..., D]``."""
        x = self.x if x is None else x
        y = self.y if y is None else y
        logits = torch.einsum("...d,nd->...n", w, x.to(w.dtype))
        return -F.binary_cross_entropy_with_logits(logits, y.to(w.dtype).expand_as(logits), reduction="none")

    def cost(self, w):
        prior = D.Normal(torch.zeros((), dtype=w.dtype, device=w.device), self.prior_scale).log_prob(w).sum(-1)
        return -(self.log_likelihood(w).sum(-1) + prior)

    def entropy(self, theta: torch.Tensor) -> torch.Tensor:
        """$\\mathbb{H}[q_\\theta]$ ``[*batch]`` in closed form."""
        return theta[..., self.dim:].sum(-1) + 0.5 * self.dim * math.log(2 * math.pi * math.e)

    def negative_elbo(self, estimator, theta: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The scalar training loss: ``estimator``'s surrogate for $\\mathbb{E}_q[f]$ minus the entropy
        (averaged over ``theta``'s batch). Its value is the negative ELBO estimate."""
        return (estimator(self, theta, k) - self.entropy(theta)).mean()

    @torch.no_grad()
    def heldout_log_likelihood(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                               samples: int = 1000, seed: int | None = 0) -> float:
        r"""Average over test points of $\log \frac1S\sum_s p(y_n \mid x_n, w_s)$, $w_s \sim q_\theta$:
        the posterior predictive log-likelihood per test point (nats)."""
        samples = checks.count("samples", samples)
        x = checks.finite("x", config.tensor(x, dtype=self.x.dtype))
        if x.dim() != 2 or x.shape[-1] != self.dim - 1:
            raise ValueError(f"x must be a matrix [M, {self.dim - 1}], got shape {tuple(x.shape)}")
        y = checks.binary("y", config.tensor(y, dtype=self.x.dtype))
        with config.seeded(seed):
            w = self.distribution(theta.detach()).sample((samples,))                    # [S, D]
        ll = self.log_likelihood(w, _design(x), y)                                    # [S, M]
        return float((torch.logsumexp(ll, 0) - math.log(samples)).mean())
