"""Conjugate models fitted with implicit gradients reach their exact posteriors."""
import math

import pytest
import torch
from torch.distributions import Beta, Gamma, kl_divergence

from vitools.implicit import examples as ex


def test_gamma_poisson_reaches_exact_posterior():
    gen = torch.Generator().manual_seed(0)
    model = ex.GammaPoisson(torch.poisson(torch.full((20,), 3.0), generator=gen))
    fit = ex.fit(model, steps=250, lr=0.3, k=8, seed=0)
    assert kl_divergence(Gamma(*fit["params"]), Gamma(*model.exact())) < 0.02
    assert fit["elbo"][-50:].mean() > fit["elbo"][:10].mean()


@pytest.mark.parametrize("method", ["gamma", "cdf"])
def test_beta_bernoulli_reaches_exact_posterior(method):
    data = (torch.rand(30, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    model = ex.BetaBernoulli(data, method=method)
    fit = ex.fit(model, steps=250, lr=0.3, k=4, seed=0)
    assert kl_divergence(Beta(*fit["params"]), Beta(*model.exact())) < 0.02


def test_circular_mean_von_mises_vs_gaussian_latent():
    gen = torch.Generator().manual_seed(2)
    y = torch.remainder(2 * math.pi + 0.6 * torch.randn(15, generator=gen), 2 * math.pi) - math.pi  # around +-pi
    vm = ex.CircularMean(y, latent="von_mises")
    fit = ex.fit(vm, steps=250, lr=0.15, k=8, seed=0, init=torch.tensor([1.0, 0.0]))
    loc, conc = fit["params"]
    exact_loc, exact_conc = vm.exact()
    assert abs(math.remainder(float(loc - exact_loc), 2 * math.pi)) < 0.05
    assert abs(float(conc / exact_conc) - 1) < 0.15
    gauss = ex.CircularMean(y, latent="gaussian")
    g_loc = ex.fit(gauss, steps=250, lr=0.15, k=8, seed=0, init=torch.tensor([1.0, 0.0]))["params"][0]
    assert abs(float(g_loc - gauss.exact()[0])) < 0.05              # it fits its own (wrong) model ...
    assert abs(math.remainder(float(g_loc) - math.pi, 2 * math.pi)) > 2.0   # ... which points the wrong way


def test_examples_bad_input():
    with pytest.raises(ValueError, match="data must be non-negative counts"):
        ex.GammaPoisson([1.0, -1.0])
    with pytest.raises(ValueError, match="a0 must be positive"):
        ex.GammaPoisson([1.0], a0=0.0)
    with pytest.raises(ValueError, match="data must contain only 0 and 1"):
        ex.BetaBernoulli([0.0, 0.5])
    with pytest.raises(ValueError, match="method must be one of"):
        ex.BetaBernoulli([0.0, 1.0], method="x")
    with pytest.raises(ValueError, match="latent must be one of"):
        ex.CircularMean([0.0], latent="wrapped")
    with pytest.raises(ValueError, match="kappa_y must be positive"):
        ex.CircularMean([0.0], kappa_y=-1.0)
    with pytest.raises(ValueError, match="data must be finite"):
        ex.CircularMean([math.nan])
    with pytest.raises(ValueError, match="steps must be an integer"):
        ex.fit(ex.GammaPoisson([1.0]), steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        ex.fit(ex.GammaPoisson([1.0]), lr=-0.1)
