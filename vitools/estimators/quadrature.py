r"""Exact gradient variances by numerical integration, for scalar Gaussian problems.

$\mathrm{Var}[\hat g] = \int (\hat g(\epsilon) - \mathbb{E}\hat g)^2\, \mathcal N(\epsilon)\, d\epsilon$ on a
fine grid (and a Gauss-Legendre rule for the measure-valued estimator's coupling), as in the
variance curves of Mohamed et al. 2020, *Monte Carlo Gradient Estimation in Machine Learning*
(arXiv:1906.10652), Figures 2 and 3. ``theta = [mu, sigma]``; estimates that average ``k``
independent terms have variance (one-sample variance) / ``k``. The estimators call these from
their ``exact_variance`` methods.
"""
from __future__ import annotations

import math

import torch

from ..problems import _GaussianProblem


def is_gaussian(problem) -> bool:
    return isinstance(problem, _GaussianProblem)


def score_variance(problem, theta, k, points, baseline: float | None = None, delta: bool = False):
    """The score function's variance, with a constant baseline or the delta method at its optimal coefficient."""
    problem.distribution(theta)                       # validates shape and sigma > 0
    mu, sigma = (float(v) for v in theta.detach().cpu().double())
    eps, w = _normal_grid(points)
    fx = problem.cost(mu + sigma * eps).detach()
    scores = torch.stack([eps / sigma, (eps**2 - 1) / sigma], -1)
    if baseline is not None:
        fx = fx - baseline
    values = fx[:, None] * scores
    if delta:
        return (_delta_variance(problem, values, scores, eps, w, mu, sigma) / k).to(theta.dtype)
    mean, second = _moments(values, w)
    return ((second - mean**2) / k).to(theta.dtype)


def pathwise_variance(problem, theta, k, points):
    problem.distribution(theta)
    mu, sigma = (float(v) for v in theta.detach().cpu().double())
    eps, w = _normal_grid(points)
    x = (mu + sigma * eps).requires_grad_(True)
    with torch.enable_grad():
        (dfdx,) = torch.autograd.grad(problem.cost(x).sum(), x)
    mean, second = _moments(torch.stack([dfdx, dfdx * eps], -1).detach(), w)
    return ((second - mean**2) / k).to(theta.dtype)


def measure_valued_variance(problem, theta, k, points):
    problem.distribution(theta)
    mu, sigma = (float(v) for v in theta.detach().cpu().double())
    return (_measure_valued_variance(problem.cost, mu, sigma, points) / k).to(theta.dtype)


def _normal_grid(points):
    eps, w = _grid(-12.0, 12.0, points)
    return eps, w * torch.exp(-0.5 * eps**2) / math.sqrt(2 * math.pi)

def _grid(lo: float, hi: float, points: int):
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    w = torch.full_like(x, (hi - lo) / (points - 1))
    w[0] = w[-1] = w[0] / 2
    return x, w


def _moments(values: torch.Tensor, weights: torch.Tensor):
    """Mean and second moment of per-node gradient values ``[nodes, P]`` under ``weights``."""
    mean = (weights[:, None] * values).sum(0)
    second = (weights[:, None] * values**2).sum(0)
    return mean, second


def _measure_valued_variance(f, mu, sigma, points):
    # mean: c (f(mu + sigma W) - f(mu - sigma W)), W Rayleigh (Weibull(sqrt 2, 2)).
    w_nodes, w_weights = _grid(0.0, 14.0, points)
    w_weights = w_weights * w_nodes * torch.exp(-0.5 * w_nodes**2)
    g_mu = (f(mu + sigma * w_nodes) - f(mu - sigma * w_nodes)) / (sigma * math.sqrt(2 * math.pi))
    m_mu, s_mu = _moments(g_mu[:, None], w_weights)
    # scale: (f(mu + sigma M) - f(mu + sigma M U)) / sigma, M double-sided Maxwell, U uniform.
    m_nodes, m_weights = _grid(0.0, 14.0, max(2001, points // 10))
    m_weights = m_weights * math.sqrt(2 / math.pi) * m_nodes**2 * torch.exp(-0.5 * m_nodes**2)
    u_nodes, u_weights = (torch.as_tensor(a, dtype=torch.float64) for a in _legendre(64))
    first, second = 0.0, 0.0
    for sign in (1.0, -1.0):
        m = sign * m_nodes[:, None]
        g = (f(mu + sigma * m) - f(mu + sigma * m * u_nodes[None, :])) / sigma
        weights = 0.5 * m_weights[:, None] * u_weights[None, :]
        first = first + (weights * g).sum()
        second = second + (weights * g**2).sum()
    var_mu = s_mu - m_mu**2
    return torch.stack([var_mu[0], second - first**2])


def _legendre(n):
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1) / 2, w / 2


def _delta_variance(problem, values, scores, eps, w, mu, sigma):
    """Variance of a - beta* c at the optimal coefficient beta* = Cov(a, c) / Var(c)."""
    mu0 = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    f0 = problem.cost(mu0)
    (f1,) = torch.autograd.grad(f0, mu0, create_graph=True)
    f2 = torch.autograd.grad(f1, mu0)[0] if f1.requires_grad else torch.zeros(())
    x = mu + sigma * eps
    taylor = f0.detach() + f1.detach() * (x - mu) + 0.5 * f2 * (x - mu) ** 2
    grad_expected_h = torch.stack([f1.detach(), f2 * sigma])    # d/dmu, d/dsigma of E[h] at mu0 = mu
    control = taylor[:, None] * scores - grad_expected_h
    mean_a, second_a = _moments(values, w)
    mean_c, second_c = _moments(control, w)
    cov = (w[:, None] * values * control).sum(0) - mean_a * mean_c
    var_c = second_c - mean_c**2
    var_a = second_a - mean_a**2
    reduction = torch.where(var_c > 1e-300, cov**2 / var_c.clamp_min(1e-300), torch.zeros_like(cov))
    return (var_a - reduction).detach()

