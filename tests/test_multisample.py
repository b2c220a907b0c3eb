"""Tests for vitools.estimators.multisample: VIMCO, NVIL on the K-sample bound and
reweighted wake-sleep against enumeration; IWAE, STL and DReG on a tiny Gaussian VAE."""
import pytest
import torch

import vitools as vt
from vitools.estimators import multisample
from vitools.diagnostics import flat, grad_samples, median_snr
from vitools.estimators.multisample import leave_one_out_bounds

from sbn_helpers import X, exact_grads, max_abs_z, tiny


def samples_at(est, model, x, **kwargs):
    """Gradient samples ``{name: [n, ...]}`` of ``est`` on ``model.on(x)`` (estimator frozen)."""
    return grad_samples(est, model.on(x), **kwargs)


def exact_bound_grads(model, k, x=X, scale_phi=1.0):
    grads = exact_grads(model, model.exact_bound(x, k))
    return {n: g / (scale_phi if n.startswith("model.encoders") else 1.0) for n, g in grads.items()}


# ------------------------------------------------------------------------ leave-one-out
def test_leave_one_out_bounds_match_direct_formulas():
    log_w = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.7, 0.1]])            # [K=3, N=2]
    geo = leave_one_out_bounds(log_w, "geometric")
    ari = leave_one_out_bounds(log_w, "arithmetic")
    w = log_w.exp()
    for j in range(3):
        others = [i for i in range(3) if i != j]
        g = w.clone()
        g[j] = log_w[others].mean(0).exp()
        a = w.clone()
        a[j] = w[others].mean(0)
        assert torch.allclose(geo[j], (g.mean(0)).log(), atol=1e-6)
        assert torch.allclose(ari[j], (a.mean(0)).log(), atol=1e-6)


# ------------------------------------------------------------------------ unbiasedness
@pytest.mark.parametrize("mean", ["geometric", "arithmetic"])
@pytest.mark.parametrize("k,latent", [(2, (2, 1)), (3, (2, 1)), (5, (2,))])
def test_vimco_unbiased_for_the_k_sample_bound(mean, k, latent):
    model = tiny(latent)
    est = vt.estimators.get("vimco", mean=mean)
    samples = samples_at(est, model, X, n=10_000, k=k, seed=1)
    assert max_abs_z(samples, exact_bound_grads(model, k)) < 4


def test_vimco_test_has_power():
    """The same samples compared with the gradient of the K=1 bound fail widely."""
    model = tiny()
    samples = samples_at(vt.estimators.get("vimco"), model, X, n=10_000, k=3, seed=1)
    assert max_abs_z(samples, exact_bound_grads(model, 1)) > 10


@pytest.mark.parametrize("constant,input_,normalize", [(False, False, False), (True, False, False),
                                                       (False, True, False), (True, True, True)])
def test_nvil_multisample_unbiased(constant, input_, normalize):
    model = tiny()
    est = vt.estimators.get("nvil_multisample", constant_baseline=constant, input_baseline=input_,
                            normalize=normalize, hidden=8)
    target = model.on(X)
    state = est.baselines(target)
    with torch.no_grad():
        for p in state.parameters():
            p.normal_(0, 0.5)
    est.train()
    for _ in range(5):                       # train-mode passes fold the running statistics
        est(model.on(X.repeat(64, 1)), k=3)
    scale = state.running_var.sqrt().clamp_min(1.0).item() if normalize else 1.0
    if normalize:
        assert scale > 1                     # the normalization really rescales
    samples = samples_at(est, model, X, n=10_000, k=3, seed=2)
    assert max_abs_z(samples, exact_bound_grads(model, 3, scale_phi=scale)) < 4


def test_vimco_beats_naive_multisample_score_function():
    model = tiny()
    naive = vt.estimators.get("nvil_multisample", constant_baseline=False, input_baseline=False,
                              normalize=False)
    var_naive = flat(samples_at(naive, model, X, n=5000, k=5), "model.encoders").var(0).sum()
    var_vimco = flat(samples_at(vt.estimators.get("vimco"), model, X, n=5000, k=5),
                     "model.encoders").var(0).sum()
    assert var_vimco < 0.5 * var_naive


def test_rws_model_gradient_unbiased_and_inference_bias_measured():
    model = tiny()
    est = vt.estimators.get("rws")
    assert not est.unbiased
    decoders = {n: g for n, g in exact_bound_grads(model, 3).items() if not n.startswith("model.encoders")}
    samples = samples_at(est, model, X, n=10_000, k=3, seed=3)
    assert max_abs_z(samples, decoders) < 4
    # wake-phase phi target: -grad KL(p(h|x) || q(h|x)) = E_post[grad log q]
    log_post = model.exact_posterior(X).detach()
    _, log_q = model._enumerated(X)
    enc = model.inference_parameters()
    target = torch.autograd.grad((log_post.exp() * log_q).sum(), enc)
    names = [f"model.encoders.{n}" for n, _ in model.encoders.named_parameters()]
    bias = {}
    for k in (2, 50):
        samples = samples_at(est, model, X, n=10_000, k=k, seed=4)
        errors = [(samples[n].mean(0) - t).abs().sum() for n, t in zip(names, target)]
        bias[k] = sum(errors).item()
        zs = max_abs_z(samples, dict(zip(names, target)))
        if k == 2:
            assert zs > 4                     # biased at small K ...
    assert bias[50] < 0.25 * bias[2]          # ... and the bias shrinks as K grows


# ------------------------------------------------------------------------ Gaussian VAE
def vae(seed=0):
    model = vt.models.GaussianVAE(input_dim=4, hidden=3, latent_dim=1, seed=seed).double()
    return model


XV = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)


def enc_names(model):
    return [f"model.{n}" for n, _ in model.named_parameters() if n.startswith("encoder")]


def two_sample_z(a, b):
    """max |z| of the difference of two estimators' means; entries that are exactly zero in every
    draw (pixels that are off) must agree exactly."""
    return vt.diagnostics.two_sample_z(a, b).abs().max().item()


def test_iwae_and_stl_unbiased_at_k1_against_quadrature():
    model = vae()
    exact = exact_grads(model, vt.models.expected_elbo(model, XV))
    for name in ("iwae", "stl", "dreg"):
        samples = samples_at(vt.estimators.get(name), model, XV, n=20_000, k=1, seed=5)
        assert max_abs_z(samples, exact) < 4, name


def test_dreg_unbiased_and_stl_biased_for_k_above_one():
    model = vae()
    k = 8
    iwae = samples_at(vt.estimators.get("iwae"), model, XV, n=20_000, k=k, seed=6)
    dreg = samples_at(vt.estimators.get("dreg"), model, XV, n=20_000, k=k, seed=7)
    stl = samples_at(vt.estimators.get("stl"), model, XV, n=20_000, k=k, seed=8)
    phi = enc_names(model)
    assert max(two_sample_z(dreg[n], iwae[n]) for n in phi) < 4
    assert max(two_sample_z(dreg[n], iwae[n]) for n in iwae if n not in phi) < 4
    stl_bias_z = max(two_sample_z(stl[n], iwae[n]) for n in phi)
    assert stl_bias_z > 6                                   # STL's bias at K > 1, measured
    # DReG's inference-network SNR beats the plain IWAE gradient's at this K
    assert median_snr(dreg, "model.encoder") > 2 * median_snr(iwae, "model.encoder")


# ------------------------------------------------------------------------ applicability, input
def test_registered_and_applies_to_the_right_models():
    names = vt.estimators.names()
    for name in ("vimco", "nvil_multisample", "rws", "iwae", "stl", "dreg"):
        assert name in names
    sbn, gauss = tiny(), vae()
    for name in ("vimco", "nvil_multisample", "rws"):
        est = vt.estimators.get(name)
        assert est.applies_to(sbn) and not est.applies_to(gauss)
        assert not est.applies_to(vt.problems.BernoulliQuadratic())
    for name in ("iwae", "stl", "dreg"):
        est = vt.estimators.get(name)
        assert est.applies_to(gauss) and not est.applies_to(sbn)
    assert vt.estimators.get("vimco").min_samples == 2


def test_rejects_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        vt.estimators.get("vimco")(model.on(X), 1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        vt.estimators.get("rws")(model.on(X), 0)
    with pytest.raises(ValueError, match="mean must be one of"):
        vt.estimators.get("vimco", mean="harmonic")
    with pytest.raises(ValueError, match="x must contain only 0 and 1"):
        model.on(X * 0.3)
    with pytest.raises(ValueError, match="does not apply to VAETarget"):
        vt.estimators.get("vimco")(vae().on(XV), 2)
    with pytest.raises(ValueError, match="does not apply to SBNTarget.*discrete ones"):
        vt.estimators.get("dreg")(model.on(X), 2)
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        vae().on(torch.zeros(3))
    with pytest.raises(ValueError, match="K must be an integer >= 2"):
        leave_one_out_bounds(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="dist must be Normal"):
        multisample._frozen(torch.distributions.Bernoulli(0.5))
