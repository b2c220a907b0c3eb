r"""A hidden chain of binary switches: a discrete-latent model for black-box VI.

Latents $z_1, \dots, z_D \in \{0, 1\}$ form a Markov chain, $z_1 \sim \mathrm{Bernoulli}(1/2)$ and
$z_i = z_{i-1}$ with probability $\rho$ (the *stay* probability); each is seen through Gaussian
noise, $x_i \mid z_i \sim \mathcal{N}(2 z_i - 1, s^2)$. The mean-field posterior
$q_\theta(z) = \prod_i \mathrm{Bernoulli}(z_i; \sigma(\theta_i))$ has no reparameterization (its
latents are discrete), so its gradients are score-function ones: the setting of black-box
variational inference (Ranganath, Gerrish & Blei 2014, arXiv:1401.0118), whose
Rao-Blackwellization uses each latent's *Markov blanket*: the terms of $\log p(x, z)$ that
contain $z_i$ are $\log p(z_i \mid z_{i-1})$, $\log p(z_{i+1} \mid z_i)$ and $\log p(x_i \mid z_i)$.

As a toy problem (:mod:`vitools.problems`' protocol) the cost is $f(z) = -\log p(x, z)$ and
:meth:`SwitchingChain.local_cost` gives each latent's blanket part, $f_i(z)$ ``[*sample, *batch,
D]``. The negative ELBO is $\mathbb{E}_q[f] - \mathbb{H}[q]$ with the entropy in closed form
(:meth:`SwitchingChain.entropy`). With $D \le 12$ every expectation is exact by enumerating the
$2^D$ states (:meth:`SwitchingChain.exact_value`, :meth:`SwitchingChain.log_evidence`).
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks, config
from ..problems import Problem, enumerate_states

__all__ = ["SwitchingChain"]


class SwitchingChain(Problem):
    """``x`` ``[D]`` observed switches, stay probability ``stay``, noise scale ``noise``;
    ``theta`` ``[*batch, D]`` the logits of the mean-field posterior."""

    name = "switching_chain"
    cost_is_differentiable = False          # discrete latents: no pathwise gradient
    MAX_ENUMERATE = 12

    def __init__(self, x, stay: float = 0.9, noise: float = 1.0, init: float = 0.0):
        x = checks.finite("x", config.tensor(x)).flatten()
        if len(x) < 2:
            raise ValueError(f"x must hold at least 2 observations, got {len(x)}")
        self.x = x
        self.stay = float(checks.probability("stay", stay, open_interval=True))
        self.noise = float(checks.positive("noise", noise))
        super().__init__(torch.full((len(x),), float(init)))
        self.param_names = tuple(f"logit {i + 1}" for i in range(len(x)))

    @classmethod
    def example(cls, dim: int = 8, seed: int = 0, **kwargs) -> "SwitchingChain":
        """A chain drawn from the model itself (``dim`` switches, ``seed`` fixed)."""
        dim = checks.count("dim", dim, minimum=2)
        g = torch.Generator().manual_seed(seed)
        stay, noise = kwargs.get("stay", 0.9), kwargs.get("noise", 1.0)
        z = [int(torch.rand((), generator=g) < 0.5)]
        for _ in range(dim - 1):
            z.append(z[-1] if torch.rand((), generator=g) < stay else 1 - z[-1])
        x = 2 * torch.tensor(z, dtype=torch.float64) - 1 + noise * torch.randn(dim, generator=g, dtype=torch.float64)
        return cls(x, **kwargs)

    def describe(self):
        return f"D={len(self.x)}, stay={self.stay:g}, noise={self.noise:g}"

    def distribution(self, theta):
        self._check_theta(theta)
        return D.Independent(D.Bernoulli(logits=theta), 1)

    # ------------------------------------------------------------------ log joint, by parts
    def _terms(self, z):
        """Emission ``[..., D]``, transition ``[..., D - 1]`` (between i and i + 1), log p(z_1) ``[...]``."""
        x = self.x.to(z.dtype)
        emission = D.Normal(2 * z - 1, self.noise).log_prob(x)
        same = (z[..., 1:] == z[..., :-1]).to(z.dtype)
        transition = same * math.log(self.stay) + (1 - same) * math.log(1 - self.stay)
        return emission, transition, torch.full(z.shape[:-1], math.log(0.5), dtype=z.dtype, device=z.device)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """$\\log p(x, z)$ for ``z`` ``[..., D]`` in {0, 1} -> ``[...]``."""
        emission, transition, first = self._terms(z)
        return emission.sum(-1) + transition.sum(-1) + first

    def cost(self, z):
        return -self.log_joint(z)

    def local_cost(self, z: torch.Tensor) -> torch.Tensor:
        """$f_i(z) = -$ (the terms of $\\log p(x, z)$ that contain $z_i$), ``[..., D]``: the Markov
        blanket that black-box VI's Rao-Blackwellized gradient for factor $i$ reads."""
        emission, transition, first = self._terms(z)
        blanket = emission.clone()
        blanket[..., 1:] += transition                      # p(z_i | z_{i-1}) for i >= 2
        blanket[..., :-1] += transition                     # p(z_{i+1} | z_i) for i < D
        blanket[..., 0] += first
        return -blanket

    def entropy(self, theta: torch.Tensor) -> torch.Tensor:
        """$\\mathbb{H}[q_\\theta]$ ``[*batch]``, in closed form."""
        return self.distribution(theta).entropy()

    # ------------------------------------------------------------------ exact answers
    def _states(self, dtype):
        if len(self.x) > self.MAX_ENUMERATE:
            return None
        return enumerate_states(len(self.x), device=self.x.device).to(dtype)        # [2^D, D]

    def exact_value(self, theta):
        """$\\mathbb{E}_q[f]$ by enumerating the $2^D$ states (``None`` beyond D = 12)."""
        states = self._states(theta.dtype)
        if states is None:
            return None
        log_q = self.distribution(theta).log_prob(states.reshape(-1, *[1] * (theta.dim() - 1), len(self.x)))
        return (log_q.exp() * self.cost(states).reshape(-1, *[1] * (theta.dim() - 1))).sum(0)

    def log_evidence(self) -> float:
        """$\\log p(x)$ by enumeration: the ELBO's ceiling."""
        states = self._states(torch.float64)
        if states is None:
            raise ValueError(f"x must hold at most {self.MAX_ENUMERATE} observations to enumerate, got {len(self.x)}")
        return float(torch.logsumexp(self.log_joint(states), 0))
