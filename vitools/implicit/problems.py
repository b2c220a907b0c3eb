r"""Toy problems whose $q$ needs implicit reparameterization, with exact answers.

They follow the :mod:`vitools.problems` protocol, so ``vt.estimators.get("pathwise")``
works on them through :mod:`vitools.implicit`'s ``rsample`` and the score function applies
too (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498).

* :class:`GammaLog`: $\mathbb{E}_{\mathrm{Gamma}(\alpha, \beta)}[\log x] = \psi(\alpha) - \log\beta$,
  gradient $(\psi'(\alpha), -1/\beta)$;
* :class:`BetaMean`: $\mathbb{E}_{\mathrm{Beta}(a, b)}[x] = a/(a + b)$, gradient
  $(b, -a)/(a + b)^2$;
* :class:`VonMisesCos`: $\mathbb{E}_{\mathrm{vM}(\mu, \kappa)}[\cos(x - c)] = A(\kappa)\cos(\mu - c)$,
  $A = I_1/I_0$, $A'(\kappa) = 1 - A/\kappa - A^2$.
"""
from __future__ import annotations

import torch

from .. import checks
from ..problems import Problem
from .beta import METHODS as BETA_METHODS, Beta
from .gamma import Gamma
from .von_mises import VonMises


def bessel_ratio(kappa: torch.Tensor) -> torch.Tensor:
    r"""$A(\kappa) = I_1(\kappa)/I_0(\kappa)$, differentiable (exponentially scaled Bessels)."""
    checks.finite("kappa", kappa)
    return torch.special.i1e(kappa) / torch.special.i0e(kappa)


class GammaLog(Problem):
    """theta = [alpha, rate] of q = Gamma(alpha, rate); f(x) = log x."""

    name = "gamma_log"
    param_names = ("alpha", "rate")
    param_ranges = {"alpha": (0.05, 20.0), "rate": (0.1, 5.0)}
    cost_label = "log x"

    def __init__(self, alpha: float = 1.5, rate: float = 1.0):
        checks.positive("alpha", alpha)
        checks.positive("rate", rate)
        super().__init__([alpha, rate])

    def distribution(self, theta):
        self._check_theta(theta)
        checks.positive("theta", theta.detach())
        return Gamma(theta[..., 0], theta[..., 1])

    def cost(self, z):
        return torch.log(z)

    def exact_value(self, theta):
        return torch.special.digamma(theta[..., 0]) - torch.log(theta[..., 1])


class BetaMean(Problem):
    """theta = [a, b] of q = Beta(a, b); f(x) = x; ``method`` picks the Beta rsample route."""

    name = "beta_mean"
    param_names = ("a", "b")
    param_ranges = {"a": (0.1, 20.0), "b": (0.1, 20.0)}
    cost_label = "x"

    def __init__(self, a: float = 2.0, b: float = 3.0, method: str = "gamma"):
        checks.positive("a", a)
        checks.positive("b", b)
        self.method = checks.choice("method", method, BETA_METHODS)
        super().__init__([a, b])

    def distribution(self, theta):
        self._check_theta(theta)
        checks.positive("theta", theta.detach())
        return Beta(theta[..., 0], theta[..., 1], method=self.method)

    def cost(self, z):
        return z

    def exact_value(self, theta):
        return theta[..., 0] / (theta[..., 0] + theta[..., 1])

    def describe(self):
        return f"method={self.method}"


class VonMisesCos(Problem):
    """theta = [mu, kappa] of q = VonMises(mu, kappa); f(x) = cos(x - c)."""

    name = "von_mises_cos"
    param_names = ("mu", "kappa")
    param_ranges = {"mu": (-3.0, 3.0), "kappa": (0.05, 50.0)}
    cost_label = "cos(x - c)"

    def __init__(self, c: float = 0.5, mu: float = 0.0, kappa: float = 2.0):
        self.c = float(checks.finite("c", c))
        checks.finite("mu", mu)
        checks.positive("kappa", kappa)
        super().__init__([mu, kappa])

    def distribution(self, theta):
        self._check_theta(theta)
        checks.positive("kappa", theta[..., 1].detach())
        return VonMises(theta[..., 0], theta[..., 1])

    def cost(self, z):
        return torch.cos(z - self.c)

    def exact_value(self, theta):
        return bessel_ratio(theta[..., 1]) * torch.cos(theta[..., 0] - self.c)

    def describe(self):
        return f"c={self.c:g}"
