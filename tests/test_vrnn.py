"""Tests for vitools.models.vrnn: the VRNN in the particle filter's protocol."""
import math

import pytest
import torch

from vitools import smc
from vitools.models.vrnn import VRNN


def _model(data_dim=6, seed=0):
    torch.manual_seed(seed)
    return VRNN(hidden=8, latent=2, data_dim=data_dim, data_mean=torch.full((data_dim,), 0.3))


def _data(batch=3, steps=4, data_dim=6, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((batch, steps, data_dim), 0.3), generator=gen)


def test_estimates_of_p_x_agree_across_bounds_in_linear_space():
    """ELBO (K=1), IWAE and FIVO estimate the same p(x) without bias: their means of
    Z_hat / p_ref agree (|z| < 4), for each resampling scheme."""
    model, x = _model(data_dim=3), _data(1, 3, 3)
    n = 6_000
    xr = x.expand(n, -1, -1)
    with torch.no_grad():
        ref = smc.iwae(model, x.expand(1000, -1, -1), 64, seed=0).log_z.exp().mean().log()
        runs = {"elbo": smc.elbo(model, xr, seed=1)}
        runs.update({s: smc.fivo(model, xr, 4, scheme=s, seed=2) for s in smc.SCHEMES})
        runs["iwae"] = smc.iwae(model, xr, 4, seed=3)
    ratios = {k: (r.log_z - ref).exp() for k, r in runs.items()}
    base = ratios.pop("iwae")
    for label, ratio in ratios.items():
        z = (ratio.mean() - base.mean()) / math.sqrt(ratio.var() / n + base.var() / n)
        assert abs(z) < 4, (label, z)
    # and in log space the bounds are ordered as Jensen says: ELBO below IWAE
    assert runs["elbo"].log_z.mean() < runs["iwae"].log_z.mean()


def test_masked_steps_do_not_change_the_estimate():
    model, x = _model(), _data(2, 5)
    x[1, 3:] = 0
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    full = smc.fivo(model, x, 3, mask=mask, seed=0)
    garbage = x.clone()
    garbage[1, 3:] = 1                       # whatever sits in the padding is ignored
    other = smc.fivo(model, garbage, 3, mask=mask, seed=0)
    torch.testing.assert_close(full.log_z, other.log_z)
    assert full.num_steps.tolist() == [5, 3] and not full.resampled[1, 2:].any()
    unmasked = smc.fivo(model, garbage, 3, seed=0)
    assert (unmasked.log_z[1] - full.log_z[1]).abs() > 0.1      # without the mask it would matter


def test_training_improves_the_bound_and_gradients_reach_every_part():
    model, x = _model(), _data(8, 5)
    result = smc.fivo(model, x, 2, seed=0)
    (-result.surrogate.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    before = smc.per_step(smc.iwae(model, x, 8, seed=5)).item()
    history = smc.fit(model, model.parameters(), x, name="fivo", num_particles=2, steps=60, lr=1e-2,
                      batch_size=4, progress=False)
    after = smc.per_step(smc.iwae(model, x, 8, seed=5)).item()
    assert len(history) == 60 and after > before + 0.1


def test_sample_gives_binary_rolls():
    rolls = _model().sample(5, 7, seed=0)
    assert rolls.shape == (5, 7, 6) and ((rolls == 0) | (rolls == 1)).all()
    torch.testing.assert_close(_model().sample(2, 3, seed=1), _model().sample(2, 3, seed=1))


def test_emission_bias_starts_at_the_data_mean():
    model = _model()
    logits = model.emission[-1].bias
    torch.testing.assert_close(torch.sigmoid(logits), torch.full((6,), 0.3))


def test_bad_input():
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        VRNN(hidden=0)
    with pytest.raises(ValueError, match="data_mean must lie in"):
        VRNN(hidden=4, latent=2, data_dim=3, data_mean=[0.5, 1.5, 0.2])
    with pytest.raises(ValueError, match="data_mean must end in shape"):
        VRNN(hidden=4, latent=2, data_dim=3, data_mean=[0.5, 0.5])
    with pytest.raises(ValueError, match="x must end in shape"):
        smc.fivo(_model(), torch.zeros(2, 3, 5), 2)
    with pytest.raises(ValueError, match="num must be an integer >= 1"):
        _model().sample(0, 3)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        smc.fit(_model(), _model().parameters(), _data(), steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        smc.fit(_model(), _model().parameters(), _data(), lr=0.0)
    with pytest.raises(ValueError, match="parameters must hold at least one tensor"):
        smc.fit(_model(), [], _data())
