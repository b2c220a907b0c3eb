r"""Conjugate models whose exact posterior is known, fitted with implicit reparameterization.

Variational inference maximises $\mathcal{L}(\phi) = \mathbb{E}_{q_\phi(z)}[\log p(x, z) -
\log q_\phi(z)]$ with the pathwise gradient through ``q.rsample`` (Figurnov, Mohamed &
Mnih 2018, arXiv:1805.08498, Section 5). When $q$ is in the conjugate family the optimum
*is* the exact posterior, so a fit can be checked against the truth:

* :class:`GammaPoisson`: $\lambda \sim \mathrm{Gamma}(a_0, b_0)$, $x_i \sim \mathrm{Poisson}(\lambda)$;
  posterior $\mathrm{Gamma}(a_0 + \sum x_i, b_0 + n)$.
* :class:`BetaBernoulli`: $p \sim \mathrm{Beta}(a_0, b_0)$, $x_i \sim \mathrm{Bernoulli}(p)$;
  posterior $\mathrm{Beta}(a_0 + \sum x_i, b_0 + n - \sum x_i)$.
* :class:`CircularMean`: a mean direction $\phi \sim \mathrm{vM}(\mu_0, \kappa_0)$ with angles
  $y_i \sim \mathrm{vM}(\phi, \kappa_y)$; posterior $\mathrm{vM}$ with natural parameter
  $\kappa_0(\cos\mu_0, \sin\mu_0) + \kappa_y\sum_i(\cos y_i, \sin y_i)$. With
  ``latent="gaussian"`` the same data are modelled as if angles were numbers on a line
  ($\phi \sim N(\mu_0, 1/\kappa_0)$, $y_i \sim N(\phi, 1/\kappa_y)$), the usual mistake.

:func:`fit` runs Adam on the unconstrained parameters of $q$ and records the history.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks, config
from .beta import METHODS as BETA_METHODS, Beta
from .gamma import Gamma
from .von_mises import VonMises


class _Conjugate:
    """``log_joint(z)`` for ``z`` ``[k]``; ``q(params)``; ``q_params(params)``; ``exact()``; ``init()``."""

    def init(self) -> torch.Tensor:
        return torch.zeros(2, device=self.data.device, requires_grad=True)

    def elbo(self, params: torch.Tensor, k: int = 16) -> torch.Tensor:
        q = self.q(params)
        z = q.rsample((k,))
        return (self.log_joint(z) - q.log_prob(z)).mean()


class GammaPoisson(_Conjugate):
    """Counts ``data`` with a Gamma(a0, b0) prior on the Poisson rate; q = Gamma(e^u, e^u / e^v),
    i.e. log shape u and log mean v (a parameterization whose two gradients are not collinear)."""

    def __init__(self, data, a0: float = 2.0, b0: float = 1.0):
        self.data = checks.finite("data", config.tensor(data))
        if (self.data < 0).any() or (self.data != self.data.round()).any():
            raise ValueError(f"data must be non-negative counts, got {self.data.tolist()[:5]}...")
        self.a0, self.b0 = float(checks.positive("a0", a0)), float(checks.positive("b0", b0))

    def log_joint(self, rate):
        prior = D.Gamma(torch.tensor(self.a0, device=rate.device), torch.tensor(self.b0, device=rate.device))
        return prior.log_prob(rate) + D.Poisson(rate[..., None]).log_prob(self.data).sum(-1)

    def q(self, params):
        return Gamma(*self.q_params(params))

    def q_params(self, params) -> torch.Tensor:
        """q's (shape, rate), comparable with :meth:`exact`."""
        shape = params[0].exp()
        return torch.stack([shape, shape / params[1].exp()])

    def exact(self) -> torch.Tensor:
        """Posterior (shape, rate)."""
        return torch.stack([self.a0 + self.data.sum(), torch.tensor(self.b0 + len(self.data), device=self.data.device)])


class BetaBernoulli(_Conjugate):
    """Binary ``data`` with a Beta(a0, b0) prior; q = Beta(e^u, e^v) (``method`` picks the rsample route)."""

    def __init__(self, data, a0: float = 1.0, b0: float = 1.0, method: str = "gamma"):
        self.data = checks.binary("data", config.tensor(data))
        self.a0, self.b0 = float(checks.positive("a0", a0)), float(checks.positive("b0", b0))
        self.method = checks.choice("method", method, BETA_METHODS)

    def log_joint(self, p):
        prior = D.Beta(torch.tensor(self.a0, device=p.device), torch.tensor(self.b0, device=p.device))
        ones = self.data.sum()
        return prior.log_prob(p) + ones * torch.log(p) + (len(self.data) - ones) * torch.log1p(-p)

    def q(self, params):
        return Beta(*self.q_params(params), method=self.method)

    def q_params(self, params) -> torch.Tensor:
        """q's (a, b), comparable with :meth:`exact`."""
        return params.exp()

    def exact(self) -> torch.Tensor:
        ones = self.data.sum()
        return torch.stack([self.a0 + ones, self.b0 + len(self.data) - ones])


class CircularMean(_Conjugate):
    """Angles ``data`` (radians) with an unknown mean direction; q = vM(m, e^v) or N(m, e^v)."""

    def __init__(self, data, kappa_y: float = 2.0, mu0: float = 0.0, kappa0: float = 0.5,
                 latent: str = "von_mises"):
        self.data = checks.finite("data", config.tensor(data))
        self.kappa_y = float(checks.positive("kappa_y", kappa_y))
        self.mu0, self.kappa0 = float(checks.finite("mu0", mu0)), float(checks.positive("kappa0", kappa0))
        self.latent = checks.choice("latent", latent, {"von_mises", "gaussian"})

    def log_joint(self, phi):
        if self.latent == "von_mises":
            prior = self.kappa0 * torch.cos(phi - self.mu0)
            lik = self.kappa_y * torch.cos(self.data - phi[..., None]).sum(-1)
            return prior + lik                       # up to constants in phi
        prior = -0.5 * self.kappa0 * (phi - self.mu0) ** 2
        return prior - 0.5 * self.kappa_y * ((self.data - phi[..., None]) ** 2).sum(-1)

    def q(self, params):
        if self.latent == "von_mises":
            return VonMises(params[0], params[1].exp())
        return D.Normal(params[0], torch.exp(-0.5 * params[1]))    # e^v is the precision

    def q_params(self, params) -> torch.Tensor:
        """q's (location, concentration or precision), comparable with :meth:`exact`."""
        return torch.stack([params[0], params[1].exp()])

    def exact(self) -> torch.Tensor:
        """Posterior (location, concentration or precision)."""
        if self.latent == "von_mises":
            c = self.kappa0 * math.cos(self.mu0) + self.kappa_y * torch.cos(self.data).sum()
            s = self.kappa0 * math.sin(self.mu0) + self.kappa_y * torch.sin(self.data).sum()
            return torch.stack([torch.atan2(s, c), torch.hypot(c, s)])
        precision = self.kappa0 + self.kappa_y * len(self.data)
        mean = (self.kappa0 * self.mu0 + self.kappa_y * self.data.sum()) / precision
        return torch.stack([mean, torch.as_tensor(precision, device=self.data.device, dtype=mean.dtype)])


def fit(model: _Conjugate, steps: int = 500, k: int = 16, lr: float = 0.05, seed: int = 0,
        init: torch.Tensor | None = None) -> dict:
    """Maximise the ELBO with Adam (learning rate decayed to 5% linearly) through
    :func:`vitools.train.fit`.

    Returns ``{"params": [2] (``model.q_params``: shape/rate, a/b, location/concentration or
    precision), "elbo": [steps]}``.
    """
    from .. import train

    steps, k = checks.count("steps", steps), checks.count("k", k)
    checks.positive("lr", lr)
    params = model.init() if init is None else checks.finite("init", init).clone().requires_grad_(True)
    history = train.fit(lambda: -model.elbo(params, k), [params], steps=steps, lr=lr, seed=seed,
                        progress=False, log_every=steps, schedule=lambda t: 1 - 0.95 * t / steps)
    return {"params": model.q_params(params.detach()), "elbo": -torch.tensor(history.loss)}
