"""The dtype policy of ARCHITECTURE.md ("Dtypes and devices"), enforced.

* Models compute in their parameters' dtype; data of another dtype (float64, integer, bool)
  is cast to it on entry, and what they return is in that dtype.
* The particle filter computes in its sequence model's dtype (``vitools.smc.model_dtype``).
* Toy problems compute in ``theta``'s dtype.
* Implicit reparameterization computes in float64 inside; samples come back in the promoted
  dtype of the parameters, gradients dz/dtheta in the dtype of ``z``.
* Functions of log weights and parameters reject integer and bool tensors with a ValueError
  naming the argument; none raises a torch dtype error.
"""
from __future__ import annotations

import pytest
import torch

import vitools as vt

FLOATS = (torch.float32, torch.float64)
DATA_DTYPES = (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool)


def _binary(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.5).to(dtype)


# ------------------------------------------------------------------------------- models

@pytest.mark.parametrize("model_dtype", FLOATS)
@pytest.mark.parametrize("data_dtype", DATA_DTYPES)
def test_particle_filter_casts_the_data_to_the_model_dtype(model_dtype, data_dtype):
    """Regression: a float32 LinearGaussianSSM with float64 data raised 'expected scalar type
    Float but found Double' from inside torch; log_likelihood cast, the filter did not."""
    ssm = vt.models.LinearGaussianSSM.scalar(dtype=model_dtype)
    _, x = ssm.sample(3, 4, seed=0)
    x = x.round().to(data_dtype)
    model = ssm.with_proposal(ssm.prior_proposal(4))
    assert vt.smc.model_dtype(model) == model_dtype
    for result in (vt.smc.particle_filter(model, x, 8, seed=0), vt.smc.fivo(model, x, 8, seed=0),
                   vt.smc.iwae(model, x, 8, seed=0), vt.smc.elbo(model, x, seed=0)):
        assert result.log_z.dtype == model_dtype and torch.isfinite(result.log_z).all()
    exact = ssm.log_likelihood(x)
    assert exact.dtype == model_dtype
    # the cast changes nothing else: the same numbers as data already in the model's dtype
    same = vt.smc.particle_filter(model, x.to(model_dtype), 8, seed=0).log_z
    assert torch.equal(vt.smc.particle_filter(model, x, 8, seed=0).log_z, same)


@pytest.mark.parametrize("data_dtype", DATA_DTYPES)
def test_vrnn_filter_and_fivo_cast_the_data(data_dtype):
    vrnn = vt.models.VRNN(hidden=8, latent=2, data_dim=5)
    x = _binary((2, 3, 5), data_dtype)
    assert vt.smc.model_dtype(vrnn) == torch.float32
    assert vt.smc.fivo(vrnn, x, 4, seed=0).log_z.dtype == torch.float32
    out = vt.estimators.get("fivo")(vrnn.on(x), 4)
    assert out.surrogate.dtype == torch.float32 and torch.isfinite(out.surrogate).all()


def test_model_dtype_of_objects_without_one_is_none():
    class Bare:
        def initial_state(self, x, k):
            return x.new_zeros(x.shape[0], k)

        def step(self, state, t, x):
            return state, torch.zeros_like(state)

    assert vt.smc.model_dtype(Bare()) is None
    x = torch.zeros(2, 3, dtype=torch.float64)
    assert vt.smc.particle_filter(Bare(), x, 2).log_z.dtype == torch.float64


@pytest.mark.parametrize("data_dtype", DATA_DTYPES)
def test_sbn_casts_the_data_to_its_dtype(data_dtype):
    """Regression: SBN.on / log_weights / evaluate / log_likelihood with float64, integer or
    bool images raised 'mat1 and mat2 must have the same dtype' from inside torch."""
    sbn = vt.models.SBN(12, latent=(3,))
    x = _binary((4, 12), data_dtype)
    assert sbn.check_data(x).dtype == torch.float32
    assert sbn.log_weights(x, 2).dtype == torch.float32
    out = vt.estimators.get("score_function")(sbn.on(x), 2)
    assert out.surrogate.dtype == torch.float32 and torch.isfinite(out.surrogate).all()
    value = vt.models.sbn.evaluate(sbn, x, k=3)
    assert isinstance(value, float) and value < 0
    assert isinstance(vt.models.sbn.log_likelihood(sbn, x, k=3), float)
    assert torch.isfinite(sbn.exact_log_likelihood(x)).all() if hasattr(sbn, "exact_log_likelihood") else True
    # float64 data gives the same numbers as float32 data (the cast happens once, on entry)
    torch.manual_seed(0)
    a = sbn.log_weights(x.float(), 2)
    torch.manual_seed(0)
    assert torch.equal(sbn.log_weights(x, 2), a)


@pytest.mark.parametrize("data_dtype", DATA_DTYPES)
def test_vae_and_categorical_vae_cast_the_data(data_dtype):
    x = _binary((3, 12), data_dtype)
    vae = vt.models.GaussianVAE(input_dim=12, hidden=8, latent_dim=2)
    out = vt.estimators.get("iwae")(vae.on(x), 2)
    assert out.surrogate.dtype == torch.float32 and torch.isfinite(out.surrogate).all()
    assert vt.models.expected_elbo(vae, x[:1], nodes=5).dtype == torch.float32
    cat = vt.models.CategoricalVAE(input_dim=12, hidden=8, num_latents=2, num_classes=3)
    out = vt.estimators.get("gumbel_softmax")(cat.on(x), 2)
    assert out.surrogate.dtype == torch.float32 and torch.isfinite(out.surrogate).all()


# --------------------------------------------------------------------------- toy problems

@pytest.mark.parametrize("dtype", FLOATS)
def test_toy_problems_compute_in_thetas_dtype(dtype):
    ran = 0
    for name, make in vt.problems.catalog().items():
        problem = make()
        theta = problem.init_params().to(dtype)
        for est in vt.estimators.standard_set():
            if est.why_not(problem) is None:
                value = est(problem, theta, 3)
                assert value.dtype == dtype, (name, est.name)
                ran += 1
    assert ran >= 10


# ------------------------------------------------------------------ implicit reparameterization

@pytest.mark.parametrize("a_dtype,b_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                             (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_implicit_samples_come_back_in_the_promoted_dtype(a_dtype, b_dtype):
    promoted = torch.promote_types(a_dtype, b_dtype)
    a = torch.tensor([0.5, 2.0], dtype=a_dtype)
    b = torch.tensor([3.0, 1.5], dtype=b_dtype)
    torch.manual_seed(0)
    for method in ("gamma", "cdf"):
        x = vt.implicit.rsample_beta(a, b, (4,), method=method)
        assert x.dtype == promoted and ((x > 0) & (x < 1)).all(), method
    assert vt.implicit.Gamma(a, b).rsample().dtype == promoted
    assert vt.implicit.Beta(a, b).rsample().dtype == promoted
    assert vt.implicit.VonMises(a, b).rsample().dtype == promoted
    assert vt.implicit.betainc(torch.tensor([0.3], dtype=a_dtype), a, b).dtype == promoted
    assert vt.implicit.beta_log_prob(torch.tensor([0.3], dtype=a_dtype), a, b).dtype == promoted
    assert vt.implicit.von_mises_cdf(torch.tensor([0.3], dtype=a_dtype), b).dtype == promoted


@pytest.mark.parametrize("z_dtype,alpha_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32)])
def test_implicit_gradients_come_back_in_the_samples_dtype(z_dtype, alpha_dtype):
    z = torch.tensor([0.5, 2.0], dtype=z_dtype)
    alpha = torch.tensor([1.5, 3.0], dtype=alpha_dtype)
    for grad in (vt.implicit.standard_gamma_grad, vt.implicit.approx_inverse_gamma_grad):
        g = grad(z, alpha)
        assert g.dtype == z_dtype and torch.isfinite(g).all()
    exact = vt.implicit.standard_gamma_grad(z.double(), alpha.double())
    assert torch.allclose(vt.implicit.standard_gamma_grad(z, alpha).double(), exact, rtol=1e-6)


# ------------------------------------------------------------------- integer and bool tensors

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
@pytest.mark.parametrize("call", ["normalize", "ess", "resample"])
def test_log_weight_functions_reject_integer_tensors_by_name(call, dtype):
    """Regression: smc.normalize on a long tensor raised torch's NotImplementedError
    ('softmax_lastdim_kernel_impl not implemented for Long')."""
    with pytest.raises(ValueError, match="log_weights"):
        getattr(vt.smc, call)(torch.zeros(2, 3, dtype=dtype))
