"""Tests for vitools.models.categorical_vae: enumeration ground truth, unbiasedness of the discrete
ELBO estimate, measured bias of the relaxed objectives, the Concrete KL, training, shapes and checks."""
import math

import pytest
import torch
import torch.nn.functional as F

import vitools as vt
from vitools.models.categorical_vae import CategoricalVAE

CPU = torch.device("cpu")
X_TINY = torch.tensor([[0, 1, 1, 0, 0, 1.], [1, 1, 0, 0, 1, 0.], [1, 0, 1, 1, 1, 0.]], dtype=torch.float64)


def tiny(seed=0, num_latents=2, num_classes=3):
    """A float64 model with 6 pixels and 3**2 = 9 codes, small enough to enumerate."""
    return CategoricalVAE(input_dim=6, hidden=8, num_latents=num_latents, num_classes=num_classes,
                          activation="tanh", seed=seed, device=CPU).double()


def zscore(values, target):
    """(mean - target) / standard error over dim 0 of ``values`` [n, ...]."""
    return (values.mean(0) - target) / (values.std(0) / math.sqrt(values.shape[0]))


def grads(loss, params):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


# ----------------------------------------------------------------------------- ground truth
def test_exact_bounds_gap_is_the_posterior_kl():
    model = tiny()
    with torch.no_grad():
        exact = model.exact_bounds(X_TINY)
        log_q = model.encode(X_TINY)                                   # [N, L, C]
        # posterior over the 9 codes, computed independently of exact_bounds
        idx = torch.cartesian_prod(torch.arange(3), torch.arange(3))   # [9, 2]
        codes = F.one_hot(idx, 3).double()
        log_joint = model.decode(codes[:, None]).log_prob(X_TINY) - 2 * math.log(3)   # [9, N]
        log_post = log_joint - torch.logsumexp(log_joint, 0)
        log_qc = (codes[:, None] * log_q).sum((-2, -1))                               # [9, N]
        kl_post = (log_qc.exp() * (log_qc - log_post)).sum(0)
    assert (kl_post > 1e-3).all()
    assert torch.allclose(exact.log_px - exact.elbo, kl_post, atol=1e-10)


def test_log_weights_are_unbiased_for_the_elbo_and_for_p_x():
    """E_q[log w] is the exact ELBO and E_q[w] the exact p(x); sbn.evaluate at large k approaches log p(x)."""
    model = tiny()
    n = 20_000
    with torch.no_grad(), vt.config.seeded(0):
        exact = model.exact_bounds(X_TINY)
        log_w = model.log_weights(X_TINY, k=n)                         # [n, N]
        tight = vt.models.sbn.evaluate(model, X_TINY, k=5000)
        loose = vt.models.sbn.evaluate(model, X_TINY, k=1)
    assert log_w.shape == (n, 3)
    assert zscore(log_w, exact.elbo).abs().max() < 4
    assert zscore(log_w.exp(), exact.log_px.exp()).abs().max() < 4
    # power: the weights' mean is not log p(x), and the test sees it (the gap is the posterior KL)
    assert zscore(log_w, exact.log_px).abs().min() > 10
    assert abs(tight - float(exact.log_px.mean())) < 0.01 < abs(loose - float(exact.log_px.mean()))
    with pytest.raises(ValueError, match="k"):
        model.log_weights(X_TINY, k=0)


def test_discrete_elbo_is_unbiased_for_the_exact_elbo():
    model = tiny()
    n = 20_000
    with torch.no_grad(), vt.config.seeded(0):
        exact = model.exact_bounds(X_TINY).elbo                        # [N]
        est = model.discrete_elbo(X_TINY.repeat(n, 1)).view(n, -1)     # [n, N]
        relaxed = model.objective(X_TINY.repeat(n, 1), "gumbel_softmax", 1.0).view(n, -1)
    assert zscore(est, exact).abs().max() < 4
    # power: the relaxed objective's value is a different quantity, and the test sees it
    assert zscore(relaxed, exact).abs().max() > 10
    # straight-through and GST forward a hard code, so their values are also unbiased ELBO estimates
    for seed, method in enumerate(("straight_through", "gapped_straight_through"), start=1):
        with torch.no_grad(), vt.config.seeded(seed):
            st = model.objective(X_TINY.repeat(n, 1), method, 1.0).view(n, -1)
        assert zscore(st, exact).abs().max() < 4, method


def _gradient_draws(fn, params, reps=200, batch=50):
    """``reps`` independent gradient estimates, each averaging ``batch`` samples per example: [reps, P]."""
    x = X_TINY.repeat(batch, 1)
    out = []
    for r in range(reps):                              # repetitions of a vectorized estimate
        with vt.config.seeded(r):
            out.append(grads(fn(x).sum() / batch, params))
    return torch.stack(out)


def test_straight_through_decoder_gradient_unbiased_encoder_gradient_biased():
    model = tiny(seed=2)
    dec, enc = list(model.decoder.parameters()), list(model.encoder.parameters())
    n_dec = sum(p.numel() for p in dec)
    exact = grads(model.exact_bounds(X_TINY).elbo.sum(), dec + enc)
    g = _gradient_draws(lambda x: model.objective(x, "straight_through", 1.0), dec + enc)
    z = zscore(g, exact)
    assert z[:n_dec].abs().max() < 4.5                 # max over ~60 decoder coordinates
    assert z[n_dec:].abs().max() > 8                   # ST's encoder bias, measured
    # power: the same check sees the bias of a hot Gumbel-Softmax decoder gradient
    g_gs = _gradient_draws(lambda x: model.objective(x, "gumbel_softmax", 2.0), dec)
    assert zscore(g_gs, exact[:n_dec]).abs().max() > 8


def test_gst_and_igr_encoder_gradients_are_biased_and_the_bias_is_measured():
    """GST keeps ST's exact decoder gradient (hard code forward) and removes the Gumbel noise from
    the backward pass; IGR relaxes like Gumbel-Softmax with Gaussian noise. Both encoder gradients
    are biased (measured against enumeration) but point the right way."""
    model = tiny(seed=2)
    dec, enc = list(model.decoder.parameters()), list(model.encoder.parameters())
    n_dec = sum(p.numel() for p in dec)
    exact = grads(model.exact_bounds(X_TINY).elbo.sum(), dec + enc)
    gst = _gradient_draws(lambda x: model.objective(x, "gapped_straight_through", 1.0), dec + enc)
    st = _gradient_draws(lambda x: model.objective(x, "straight_through", 1.0), enc)
    assert zscore(gst, exact)[:n_dec].abs().max() < 4.5
    assert zscore(gst, exact)[n_dec:].abs().max() > 8
    assert gst[:, n_dec:].var(0).sum() < 0.6 * st.var(0).sum()            # no Gumbel noise backwards (0.44 measured)
    igr = _gradient_draws(lambda x: model.objective(x, "igr", 0.5), enc)
    assert zscore(igr, exact[n_dec:]).abs().max() > 8
    for g in (gst[:, n_dec:], igr):
        mean = g.mean(0)
        assert mean @ exact[n_dec:] / (mean.norm() * exact[n_dec:].norm()) > 0.9


def test_gumbel_softmax_bias_shrinks_with_temperature():
    model = tiny(seed=3)
    enc = list(model.encoder.parameters())
    exact = grads(model.exact_bounds(X_TINY).elbo.sum(), enc)
    bias = {}
    for tau in (0.1, 2.0):
        g = _gradient_draws(lambda x: model.objective(x, "gumbel_softmax", tau), enc)
        bias[tau] = float((g.mean(0) - exact).norm())
        if tau == 2.0:
            assert zscore(g, exact).abs().max() > 8    # a hot relaxation's bias, measured
    assert bias[2.0] > 2 * bias[0.1]                   # the cold one is (nearly) undetectable here


# ----------------------------------------------------------------------------- Concrete KL
def test_concrete_kl_vanishes_when_q_is_the_prior_and_is_positive_otherwise():
    model = tiny()
    with torch.no_grad():
        for p in model.encoder[-1].parameters():
            p.zero_()                                                  # q = uniform = prior
        x = X_TINY.repeat(100, 1)
        rel = model.objective(x, "gumbel_softmax", 0.7, kl="concrete")
        lik = model.objective(x, "gumbel_softmax", 0.7, kl="categorical")   # KL = 0 too
    with vt.config.seeded(0):
        a = model.objective(x, "gumbel_softmax", 0.7, kl="concrete").detach()
    with vt.config.seeded(0):
        b = model.objective(x, "gumbel_softmax", 0.7, kl="categorical").detach()
    assert torch.allclose(a, b, atol=1e-10)            # same noise, log q(y) = log p(y)
    assert rel.shape == lik.shape == (300,)
    # with the same temperature for q and prior, the relaxed KL is the KL between the Gumbel-perturbed
    # logits, whatever tau (KL is invariant under y -> tau y), and by data processing it exceeds the
    # discrete KL of the argmax codes
    sharp = tiny(seed=4)
    n = 20_000
    x = X_TINY[:1].repeat(n, 1)
    kl_relaxed = {}
    with torch.no_grad():
        sharp.encoder[-1].bias.add_(torch.tensor([3.0, 0, 0, 0, 2.0, 0], dtype=torch.float64))
        for tau in (0.2, 1.0):
            with vt.config.seeded(0):
                y_obj = sharp.objective(x, "gumbel_softmax", tau, kl="concrete")
            with vt.config.seeded(0):
                c_obj = sharp.objective(x, "gumbel_softmax", tau, kl="categorical")
            kl_relaxed[tau] = (c_obj + sharp.kl(sharp.encode(x))) - y_obj      # [n]: log q(y) - log p(y)
        kl_discrete = float(sharp.kl(sharp.encode(X_TINY[:1])))
        with vt.config.seeded(0):
            other = sharp.objective(x, "gumbel_softmax", 0.2, kl="concrete", prior_temperature=1.0)
    assert kl_discrete > 0.3
    assert zscore(kl_relaxed[0.2], kl_discrete) > 10
    # the same Gumbel noise gives the same log-ratio at both temperatures, sample by sample
    assert torch.allclose(kl_relaxed[0.2], kl_relaxed[1.0], atol=1e-8)
    assert not torch.allclose(other, y_obj)            # the prior temperature is a real choice


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("method", ["gumbel_softmax", "straight_through", "gapped_straight_through", "igr"])
def test_training_improves_the_held_out_discrete_elbo(method):
    g = vt.data.load_mnist("bundled", binarize=None, device=CPU)[:1200]
    x = vt.data.binarize(F.avg_pool2d(g.view(-1, 1, 28, 28), 4).flatten(1), "fixed", seed=0)   # [1200, 49]
    train, test = x[:1000], x[1000:]
    vae = CategoricalVAE(input_dim=49, hidden=64, num_latents=8, num_classes=4, seed=0, device=CPU)
    with torch.no_grad(), vt.config.seeded(0):
        before = float(vae.discrete_elbo(test, k=5).mean())
    vt.train.fit(lambda b: -vae.objective(b, method, 0.7).mean(), vae, train, steps=150, batch_size=100,
                 lr=3e-3, progress=False, device=CPU)
    with torch.no_grad(), vt.config.seeded(0):
        after = float(vae.discrete_elbo(test, k=5).mean())
    assert after > before + 5, (before, after)


# ----------------------------------------------------------------------------- shapes
def test_shapes():
    model = CategoricalVAE(input_dim=6, hidden=(5, 4), num_latents=3, num_classes=4, seed=0, device=CPU)
    x = X_TINY.float()
    log_q = model.encode(x)
    assert log_q.shape == (3, 3, 4)
    assert torch.allclose(torch.logsumexp(log_q, -1), torch.zeros(3, 3), atol=1e-6)
    assert model.decode(torch.full((7, 3, 4), 0.25)).batch_shape == (7,)
    assert model.discrete_elbo(x, k=4).shape == (3,)
    for method, kl in (("gumbel_softmax", "categorical"), ("gumbel_softmax", "concrete"), ("straight_through", "categorical"),
                       ("gapped_straight_through", "categorical"), ("igr", "categorical")):
        assert model.objective(x, method, 0.5, k=3, kl=kl).shape == (3,)
    assert model.reconstruct(x).shape == (3, 6)
    assert model.sample(5).shape == (5, 6)
    assert model.kl(log_q).shape == (3,) and (model.kl(log_q) >= 0).all()
    assert tiny().exact_bounds(X_TINY).elbo.shape == (3,)
    assert "num_latents=3" in repr(model)


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("kwargs, match", [
    (dict(input_dim=0), "input_dim"), (dict(num_latents=0), "num_latents"), (dict(num_classes=1), "num_classes"),
    (dict(hidden="8"), "hidden"), (dict(hidden=(8, 0)), "hidden"), (dict(activation="gelu"), "activation"),
])
def test_constructor_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CategoricalVAE(**{"input_dim": 6, **kwargs}, device=CPU)


def test_input_checks():
    model = tiny()
    bad_x = [X_TINY[0], X_TINY[:, :5], X_TINY * 2, X_TINY.clone().fill_(float("nan")), torch.zeros(0, 6)]
    for x in bad_x:
        with pytest.raises(ValueError, match="x"):
            model.discrete_elbo(x)
        with pytest.raises(ValueError, match="x"):
            model.objective(x)
    with pytest.raises(ValueError, match="x must be a tensor"):
        model.encode([[0.0] * 6])
    cases = [
        (dict(temperature=0.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
        (dict(k=0), "k"), (dict(method="rebar"), "method"), (dict(kl="mc"), "kl"),
        (dict(method="straight_through", kl="concrete"), "kl"),
        (dict(prior_temperature=0.5), "prior_temperature"),
        (dict(kl="concrete", prior_temperature=-1.0), "prior_temperature"),
        (dict(method="igr", kl="concrete"), "kl"), (dict(gap=1.0), "gap applies"),
        (dict(method="igr", gap=1.0), "gap applies"), (dict(sigma=1.0), "sigma applies"),
        (dict(method="gapped_straight_through", gap=0.0), "gap must"),
        (dict(method="igr", sigma=-1.0), "sigma must"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            model.objective(X_TINY, **kwargs)
    with pytest.raises(ValueError, match="k"):
        model.discrete_elbo(X_TINY, k=0)
    with pytest.raises(ValueError, match="h must end in shape"):
        model.decode(torch.zeros(2, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="h must lie in"):
        model.decode(torch.full((2, 3), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_states"):
        model.exact_bounds(X_TINY, max_states=8)
    with pytest.raises(ValueError, match="max_states"):
        model.exact_bounds(X_TINY, max_states=0)
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0)
