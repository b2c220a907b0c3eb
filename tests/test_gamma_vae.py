"""The Gamma VAE: shapes, its three ELBO gradients against the exact gradient (quadrature), errors."""
import math

import pytest
import torch
import torch.distributions as D

import vitools as vt
from vitools.models import sbn
from vitools.models.gamma_vae import METHODS, GammaVAE

F64 = torch.float64
X = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)


def _tiny(seed=0):
    """D = 3, one latent, linear maps; the encoder puts q at Gamma(3, 2) (alpha > 1: a smooth density)."""
    model = GammaVAE(input_dim=3, hidden=(), latent_dim=1, prior_shape=2.0, prior_rate=1.5, seed=seed).double()
    with torch.no_grad():
        enc = model.encoder[0]
        enc.weight.mul_(0.3)
        enc.bias.copy_(torch.tensor([math.log(math.expm1(3.0)), math.log(math.expm1(2.0))], dtype=F64))
    return model


def _exact_grads(model, x):
    """d/dparams of E_q[log p(x | z)] - KL by quadrature of q(z) log p(x | z) over t = log z."""
    t = torch.linspace(-14.0, 4.0, 40_001, dtype=F64)
    z = t.exp()[:, None, None]                                     # [G, 1, 1]
    model.zero_grad()
    q = model.encode(x)
    dens = (q.log_prob(z) + t[:, None]).exp()                      # q(z) dz/dt, [G, N]
    f = model.decode(z).log_prob(x)                                # [G, N]
    integrand = dens * f
    expected = ((integrand[1:] + integrand[:-1]) / 2 * (t[1] - t[0])).sum(0)
    (expected - model.kl(x)).sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _mc_grads(model, x, method, replicas=20_000, repeats=8):
    """``repeats`` independent estimates, each averaging ``replicas`` copies of ``x``: [repeats, P]."""
    out = []
    xs = x.expand(replicas, -1)
    for r in range(repeats):
        model.zero_grad()
        with vt.config.seeded(r):
            (method(xs) if callable(method) else model.surrogate(xs, k=2, method=method)).mean().backward()
        out.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(out)


def _z_scores(samples, exact):
    """Per parameter; a parameter with no noise (weights from the zero pixel) must be exact to 1e-9."""
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return (samples.mean(0) - exact) / se.clamp_min(1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_every_gradient_is_unbiased_against_quadrature(method):
    model = _tiny()
    exact = _exact_grads(model, X)
    z = _z_scores(_mc_grads(model, X, method), exact)
    assert z.abs().max() < 4, (method, z)


def test_a_wrong_gradient_fails_the_same_check_by_a_wide_margin():
    """Power: dropping dz/dalpha (the implicit part) while keeping dz/drate is biased."""
    model = _tiny()
    exact = _exact_grads(model, X)

    def no_shape_path(xs):
        alpha, rate = model._params(xs)
        q = D.Independent(vt.implicit.Gamma(alpha, rate), 1)
        z_std = vt.implicit.Gamma(alpha.detach(), torch.ones_like(rate)).sample((2,))
        return model._decode(z_std / rate).log_prob(xs).mean(0) - D.kl_divergence(q, model.prior())

    z = _z_scores(_mc_grads(model, X, no_shape_path), exact)
    assert z.abs().max() > 20


def test_surrogate_values_are_the_elbo_estimate_and_agree_across_methods():
    model = _tiny()
    with torch.no_grad():
        values = {}
        for m in METHODS:
            with vt.config.seeded(0):
                values[m] = model.surrogate(X.expand(50_000, -1), k=2, method=m).mean().item()
        with vt.config.seeded(1):
            elbo = model.log_weights(X, 200_000).mean().item()
    for m in METHODS:
        assert abs(values[m] - elbo) < 0.02, (m, values[m], elbo)


def test_shapes_and_protocol():
    model = GammaVAE(input_dim=6, hidden=[5, 4], latent_dim=3, seed=0)
    x = (torch.rand(7, 6) < 0.5).float()
    q = model.encode(x)
    assert q.batch_shape == (7,) and q.event_shape == (3,) and q.has_rsample
    assert model.log_weights(x, 4).shape == (4, 7)
    for m in METHODS:
        assert model.surrogate(x, k=2, method=m).shape == (7,)
    assert model.elbo(x).shape == (7,) and model.kl(x).shape == (7,) and (model.kl(x) >= 0).all()
    assert model.sample(5).shape == (5, 6) and model.decode(q.sample((2,))).batch_shape == (2, 7)
    out = vt.estimators.get("pathwise")(model.on(x), 3)
    assert out.surrogate.shape == (7,)
    assert vt.estimators.get("iwae").applies_to(model)
    assert sbn.bound_per_example(model, x, k=50).shape == (7,)


def test_training_beats_independent_pixels_on_digits():
    x = vt.data.load_mnist("bundled", "train", binarize="fixed", seed=0)[:1000]
    model = GammaVAE(784, hidden=100, latent_dim=10, seed=0)
    vt.train.fit(lambda b: -model.surrogate(b, k=1).mean(), model, x, steps=150, batch_size=100,
                 lr=3e-3, progress=False, seed=0)
    ref = vt.models.IndependentBernoulli.fit(x).mean_log_prob(x[:200])
    assert sbn.evaluate(model, x[:200], k=50) > ref + 10       # measured: about 30 nats


def test_bad_input_is_named():
    model = _tiny()
    with pytest.raises(ValueError, match="method must be one of"):
        model.surrogate(X, method="reinforce")
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        model.surrogate(X, k=1, method="score")
    with pytest.raises(ValueError, match="boost must be"):
        model.surrogate(X, method="rsvi", boost=-1)
    with pytest.raises(ValueError, match="x"):
        model.surrogate(torch.ones(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="z must be positive"):
        model.decode(torch.tensor([[-1.0]], dtype=F64))
    with pytest.raises(ValueError, match="prior_shape must be positive"):
        GammaVAE(prior_shape=0.0)
    with pytest.raises(ValueError, match="latent_dim"):
        GammaVAE(latent_dim=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        GammaVAE(activation="gelu")
