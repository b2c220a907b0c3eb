"""Tests for vitools.models.vae: bounds against quadrature ground truth, gradients, shapes, checks."""
import math

import pytest
import torch

import vitools as vt
from vitools.models import GaussianVAE, exact_bounds, expected_elbo

CPU = torch.device("cpu")
X_TINY = torch.tensor([[0, 1, 1, 0, 0, 1.], [1, 1, 0, 0, 1, 0.], [0.2, 0.9, 0.5, 0, 1, 0.3]])


def tiny(latent_dim=1, seed=0):
    """A float64 VAE with 6 pixels and 1 or 2 latents, small enough to integrate exactly."""
    return GaussianVAE(input_dim=6, hidden=8, latent_dim=latent_dim, seed=seed, device=CPU).double()


def replicate(x, n):
    """``x`` [N, D] -> [n * N, D], example index fastest; reshape results with ``.view(n, N)``."""
    return x.double().repeat(n, 1)


def zscore(values, target):
    """(mean - target) / standard error over dim 0 of ``values`` [n, ...]."""
    return (values.mean(0) - target) / (values.std(0) / math.sqrt(values.shape[0]))


# ----------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("latent_dim", [1, 2])
def test_quadrature_gap_equals_posterior_kl(latent_dim):
    with torch.no_grad():
        exact = exact_bounds(tiny(latent_dim), X_TINY)
        finer = exact_bounds(tiny(latent_dim), X_TINY, points=601, radius=8.0)
    assert torch.allclose(exact.log_px, finer.log_px, atol=1e-8)
    assert (exact.elbo < exact.log_px).all()
    assert (exact.kl > 1e-3).all()                          # a real gap, not a degenerate model
    # log p(x) - ELBO (grid vs Gauss-Hermite) equals KL(q || p(z|x)) computed on the grid
    assert torch.allclose(exact.log_px - exact.elbo, exact.kl, atol=1e-6)
    # the grid posterior is a normalised density
    cell = (2 * 6.0 / 400) ** latent_dim
    assert torch.allclose(exact.log_posterior.exp().sum(0) * cell, torch.ones(3, dtype=torch.float64), atol=1e-3)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_elbo_unbiased_for_exact_elbo_and_below_log_px(kl):
    model = tiny(2)
    n = 20_000
    with torch.no_grad(), vt.config.seeded(0):
        exact = exact_bounds(model, X_TINY)
        values = model.elbo(replicate(X_TINY, n), k=1, kl=kl).view(n, 3)
    z = zscore(values, exact.elbo)
    assert z.abs().max() < 4, z
    se = values.std(0) / math.sqrt(n)
    assert (se < exact.kl / 10).all()                       # power: log p(x) itself would fail by > 10 SE
    assert (zscore(values, exact.log_px) < -10).all()


def test_analytic_and_mc_kl_agree_in_expectation_and_analytic_has_lower_variance():
    model = tiny(2)
    n = 20_000
    with torch.no_grad(), vt.config.seeded(1):
        a = model.elbo(replicate(X_TINY, n), kl="analytic").view(n, 3)
        m = model.elbo(replicate(X_TINY, n), kl="mc").view(n, 3)
    z = (a.mean(0) - m.mean(0)) / (a.var(0) / n + m.var(0) / n).sqrt()
    assert z.abs().max() < 4, z
    assert (a.var(0) < m.var(0)).all()


def test_iwae_bound_increases_with_k_towards_log_px():
    model = tiny(2)
    n = 2_000
    with torch.no_grad(), vt.config.seeded(2):
        exact = exact_bounds(model, X_TINY)
        means, ses = [], []
        for k in (1, 4, 32):
            b = model.iwae_bound(replicate(X_TINY, n), k=k).view(n, 3)
            means.append(b.mean(0))
            ses.append(b.std(0) / math.sqrt(n))
        big = model.iwae_bound(replicate(X_TINY, n // 2), k=400).view(n // 2, 3)
    for (m0, s0), (m1, s1) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert ((m1 - m0) / (s0**2 + s1**2).sqrt() > 4).all()  # strictly increasing in k
    assert (zscore(big, exact.log_px) < 4).all()               # still a lower bound in expectation
    assert zscore(big, means[-1]).min() > 0                     # and above K=32
    z1 = (means[0] - exact.elbo) / ses[0]
    assert z1.abs().max() < 4                                  # K=1 is the ELBO
    gap = exact.log_px - big.mean(0)
    assert (gap.abs() < 4 * big.std(0) / math.sqrt(n // 2) + 2e-3).all()
    assert (gap < 0.05 * exact.kl).all()                        # K=400 closes 95% of the gap


def test_iwae_chunks_combine_every_log_weight_exactly(monkeypatch):
    """Chunking bookkeeping: whatever the chunk sizes, the bound is logsumexp over all k weights - log k."""
    model = tiny(1)
    x = X_TINY.double().repeat(3, 1)                            # [9, 6]
    calls = []

    def fake(xc, k, detach_q=False):                            # records each chunk's [k, rows] weights
        values = torch.randn(k, xc.shape[0], dtype=torch.float64)
        calls.append((xc, values))
        return values

    monkeypatch.setattr(model, "_log_weights", fake)
    for k, max_pairs in [(7, 5), (7, 20), (50, 64), (3, 10_000)]:
        calls.clear()
        out = model.iwae_bound(x, k=k, max_pairs=max_pairs)
        assert out.shape == (9,)
        assert all(v.numel() <= max(max_pairs, 1) for _, v in calls)
        expected, row = [], 0
        while row < 9:                                          # group the calls by example chunk
            rows = [v for xc, v in calls if xc.data_ptr() == x[row:].data_ptr()]
            block = torch.cat(rows)
            assert block.shape[0] == k
            expected.append(torch.logsumexp(block, 0) - math.log(k))
            row += block.shape[1]
        assert torch.allclose(out, torch.cat(expected))


def test_large_k_on_many_examples_fits_in_chunks():
    model = GaussianVAE(input_dim=784, hidden=20, latent_dim=2, seed=0, device=CPU)
    x = (torch.rand(50, 784) > 0.5).float()
    with torch.no_grad():
        b = model.iwae_bound(x, k=1000)
    assert b.shape == (50,) and torch.isfinite(b).all()


# ----------------------------------------------------------------------------- gradients
def _group_gradients(model, x, estimate, groups=100, per_group=100, seed=0):
    """``groups`` independent gradient estimates ``[groups, P]`` of sum_n E[ELBO(x_n)]; each is the
    average of ``per_group`` one-sample estimates (vectorized over the replicated batch)."""
    params = [p for p in model.parameters()]
    xr = replicate(x, per_group)
    out = []
    with vt.config.seeded(seed):
        for _ in range(groups):
            value = estimate(model, xr).sum() / per_group
            out.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, params)]))
    return torch.stack(out)


def _exact_gradient(model, x):
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(expected_elbo(model, x, nodes=60).sum(), params)
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("latent_dim,kl", [(1, "analytic"), (1, "mc"), (2, "analytic")])
def test_reparameterized_elbo_gradient_is_unbiased(latent_dim, kl):
    model = tiny(latent_dim)
    exact = _exact_gradient(model, X_TINY)
    g = _group_gradients(model, X_TINY, lambda m, x: m.elbo(x, k=1, kl=kl))
    bias_z = vt.diagnostics.summarize(g, exact=exact).bias_z
    assert bias_z.abs().max() < 4, bias_z.abs().max()


def test_gradient_test_has_power_against_a_detached_sample():
    """Negative control: dropping the path dz/dphi (sampling without rsample) is biased."""
    model = tiny(1)
    exact = _exact_gradient(model, X_TINY)

    def wrong(m, x):
        q = m.encode(x)
        z = q.sample()
        return m.decode(z).log_prob(x) - torch.distributions.kl_divergence(q, m.prior())

    bias_z = vt.diagnostics.summarize(_group_gradients(model, X_TINY, wrong, groups=50), exact=exact).bias_z
    assert bias_z.abs().max() > 10


def test_expected_elbo_matches_grid_integral():
    model = tiny(1)
    with torch.no_grad():
        coarse = expected_elbo(model, X_TINY, nodes=30)
        fine = expected_elbo(model, X_TINY, nodes=80)
    assert torch.allclose(coarse, fine, atol=1e-8)


def test_detach_q_drops_exactly_the_score_term():
    model = tiny(2)
    x = X_TINY
    enc = list(model.encoder.parameters())
    with vt.config.seeded(4):
        full = model.log_weights(x, k=3)
    with vt.config.seeded(4):
        stl = model.log_weights(x, k=3, detach_q=True)
    with vt.config.seeded(4):
        q = model.encode(x)
        z = q.rsample((3,)).detach()
    assert torch.equal(full, stl)
    g_full = torch.autograd.grad(full.sum(), enc)
    g_stl = torch.autograd.grad(stl.sum(), enc)
    score = torch.autograd.grad(q.log_prob(z).sum(), enc)
    for a, b, s in zip(g_full, g_stl, score):
        assert torch.allclose(a - b, -s, atol=1e-10)


# ----------------------------------------------------------------------------- shapes and pictures
def test_shapes_and_ranges():
    model = GaussianVAE(input_dim=12, hidden=(10, 6), latent_dim=3, seed=0, device=CPU)
    x = (torch.rand(5, 12) > 0.5).float()
    q = model.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    p = model.decode(torch.zeros(4, 5, 3))
    assert p.batch_shape == (4, 5) and p.event_shape == (12,)
    assert model.elbo(x).shape == (5,) and model.elbo(x, k=4, kl="mc").shape == (5,)
    assert model.iwae_bound(x, k=9).shape == (5,)
    assert model.log_weights(x, k=7).shape == (7, 5)
    s = model.sample(8)
    assert s.shape == (8, 12) and ((s > 0) & (s < 1)).all()
    b = model.sample(8, mean=False)
    assert ((b == 0) | (b == 1)).all()
    r = model.reconstruct(x)
    assert r.shape == (5, 12) and not r.requires_grad
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [10, 6, 6]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [6, 10, 12]


def test_greyscale_input_and_dtype_conversion():
    model = tiny(1)
    x = torch.rand(4, 6)                                    # float32 greyscale into a float64 model
    out = model.elbo(x)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_seed_makes_initialisation_reproducible():
    a = GaussianVAE(input_dim=6, hidden=4, latent_dim=1, seed=3, device=CPU)
    b = GaussianVAE(input_dim=6, hidden=4, latent_dim=1, seed=3, device=CPU)
    c = GaussianVAE(input_dim=6, hidden=4, latent_dim=1, seed=4, device=CPU)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_training_a_tiny_vae_with_fit_improves_the_exact_log_likelihood():
    torch.manual_seed(0)
    data = (torch.rand(200, 6) < torch.tensor([0.9, 0.9, 0.1, 0.1, 0.5, 0.5])).double()
    model = tiny(1)
    with torch.no_grad():
        before = exact_bounds(model, data).log_px.mean()
    history = vt.train.fit(lambda x: -model.elbo(x).mean(), model, data, steps=150, batch_size=50,
                           lr=2e-2, progress=False, device=CPU)
    with torch.no_grad():
        after = exact_bounds(model, data).log_px.mean()
    assert after > before + 0.5
    assert len(history.loss) == 150


def test_active_units_counts_dimensions_whose_posterior_mean_varies_with_x():
    from vitools.models.vae import active_units
    vae = GaussianVAE(input_dim=6, hidden=(), latent_dim=3, seed=0)
    x = (torch.rand(200, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with torch.no_grad():
        vae.encoder[0].weight.zero_()
    assert active_units(vae, x) == 0                  # q(z | x) ignores x: nothing is active
    with torch.no_grad():
        vae.encoder[0].weight[0, 0] = 2.0             # mu_1 = 2 x_1: variance 4 * 0.25 = 1 > 0.01
        vae.encoder[0].weight[1, 1] = 0.1             # mu_2 = 0.1 x_2: variance 0.0025 < 0.01
    assert active_units(vae, x) == 1
    with pytest.raises(ValueError, match="threshold must be positive"):
        active_units(vae, x, threshold=0.0)
    with pytest.raises(ValueError, match="at least 2 examples"):
        active_units(vae, x[:1])



# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("kwargs,match", [
    (dict(input_dim=0), "input_dim"), (dict(latent_dim=0), "latent_dim"), (dict(hidden=0), "hidden"),
    (dict(hidden=(4, -1)), "hidden"), (dict(hidden="wide"), "hidden"), (dict(hidden=2.5), "hidden"),
    (dict(activation="gelu"), "activation"), (dict(seed=-1), "seed"),
])
def test_constructor_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianVAE(**{"input_dim": 6, "device": CPU, **kwargs})


@pytest.mark.parametrize("x,match", [
    (torch.zeros(6), r"x must be a tensor of shape \[N, 6\]"),
    (torch.zeros(2, 3, 6), r"x must be a tensor of shape \[N, 6\]"),
    (torch.zeros(2, 5), r"x must end in shape \(6,\)"),
    (torch.zeros(0, 6), r"x.shape\[0\] must be an integer >= 1"),
    (torch.full((2, 6), 1.5), r"x must lie in \[0, 1\], got 1.5"),
    (torch.full((2, 6), -0.1), r"x must lie in \[0, 1\]"),
    (torch.full((2, 6), float("nan")), "x must be finite"),
    ([[0.0] * 6], r"x must be a tensor"),
])
def test_x_checks(x, match):
    model = tiny(1)
    for call in (model.elbo, model.encode, model.reconstruct, lambda v: model.iwae_bound(v, 2),
                 lambda v: model.log_weights(v, 2)):
        with pytest.raises(ValueError, match=match):
            call(x)


def test_argument_checks():
    model = tiny(1)
    x = X_TINY
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        model.elbo(x, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        model.iwae_bound(x, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 1.5"):
        model.log_weights(x, k=1.5)
    with pytest.raises(ValueError, match="kl must be one of"):
        model.elbo(x, kl="exact")
    with pytest.raises(ValueError, match="max_pairs"):
        model.iwae_bound(x, k=2, max_pairs=0)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        model.sample(0)
    with pytest.raises(ValueError, match=r"z must end in shape \(1,\)"):
        model.decode(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z must be finite"):
        model.decode(torch.full((3, 1), float("inf")))


def test_quadrature_checks():
    with pytest.raises(ValueError, match="model.latent_dim must be <= 2 for quadrature, got 3"):
        exact_bounds(GaussianVAE(input_dim=6, latent_dim=3, device=CPU), X_TINY)
    with pytest.raises(ValueError, match="model must be a GaussianVAE"):
        expected_elbo(torch.nn.Linear(2, 2), X_TINY)
    with pytest.raises(ValueError, match="points must be an integer >= 3, got 2"):
        exact_bounds(tiny(1), X_TINY, points=2)
    with pytest.raises(ValueError, match="radius must be positive"):
        exact_bounds(tiny(1), X_TINY, radius=-1.0)
    with pytest.raises(ValueError, match="nodes must be an integer >= 2, got 1"):
        expected_elbo(tiny(1), X_TINY, nodes=1)
    with pytest.raises(ValueError, match="x must lie in"):
        exact_bounds(tiny(1), X_TINY + 1)


# ----------------------------------------------------------------------------- planar-flow posterior
def flow_vae(length=3, seed=1):
    return GaussianVAE(input_dim=6, hidden=8, latent_dim=2, seed=seed, device=CPU, flow="planar",
                       flow_length=length).double()


def test_flow_posterior_shapes_and_finite_bounds():
    model = flow_vae()
    assert model.encoder[-1].out_features == 2 * 2 + 3 * (2 * 2 + 1)   # loc, scale, then u, w, b per step
    q = model.encode(X_TINY)
    assert isinstance(q, vt.flows.FlowDistribution) and q.batch_shape == (3,) and q.event_shape == (2,)
    for value, shape in ((model.elbo(X_TINY), (3,)), (model.elbo(X_TINY, k=4, kl="mc"), (3,)),
                         (model.iwae_bound(X_TINY, k=7), (3,)), (model.log_weights(X_TINY, 5), (5, 3)),
                         (model.reconstruct(X_TINY), (3, 6))):
        assert value.shape == shape and torch.isfinite(value).all()
    assert 0 <= vt.models.vae.active_units(model, X_TINY) <= 2
    assert "flow='planar', flow_length=3" in repr(model)


def _flowed_density_ratio(model, x, n, jacobian=True):
    """p(z)/q(z | x) for n draws of the flow posterior, the log-determinants dropped if not ``jacobian``."""
    q = model.encode(x)
    z, log_q = q.rsample_and_log_prob((n,))
    if not jacobian:
        z0 = q.base.rsample((n,))
        z = z0
        for layer in q.layers:
            z, _ = layer(z)
        log_q = q.base.log_prob(z0)
    return torch.exp(model.prior().log_prob(z) - log_q)


def test_flow_posterior_is_a_normalised_density():
    """E_q[p(z) / q(z | x)] = 1 for any normalised q that covers the prior: a wrong log-determinant
    would break it. The encoder is made far from the identity flow (scaled weights) and wide (base
    scale about 2, so the ratio has a finite variance)."""
    torch.manual_seed(0)
    model = flow_vae()
    with torch.no_grad():
        model.encoder[-1].weight.mul_(3)
        model.encoder[-1].bias[2:4] = 2.0
    x = X_TINY[:2]
    with torch.no_grad():
        ratio = _flowed_density_ratio(model, x, 100_000)
        steps = model.encode(x).layers
        assert max(float(s.u.abs().max()) for s in steps) > 0.3           # the flow is not the identity
        assert (zscore(ratio, 1.0).abs() < 4).all()
        wrong = _flowed_density_ratio(model, x, 100_000, jacobian=False)
        assert (zscore(wrong, 1.0).abs() > 20).any()


def test_flow_posterior_gradients_reach_every_part():
    model = flow_vae()
    est = vt.estimators.get("pathwise")
    out = est(model.on(X_TINY), 4)
    out.surrogate.sum().backward()
    head = model.encoder[-1].weight.grad                                # [4 + 3 * 5, hidden]
    assert head[:4].abs().sum() > 0 and head[4:].abs().sum() > 0        # the Gaussian and the flow steps
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.decoder[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    vt.estimators.get("iwae")(model.on(X_TINY), 5).surrogate.sum().backward()
    assert model.encoder[-1].weight.grad[4:].abs().sum() > 0


def test_flow_options_raise_naming_the_option():
    with pytest.raises(ValueError, match="flow"):
        GaussianVAE(6, hidden=8, latent_dim=2, flow="radial")
    with pytest.raises(ValueError, match="flow_length"):
        GaussianVAE(6, hidden=8, latent_dim=2, flow="planar", flow_length=0)
    model = flow_vae()
    with pytest.raises(ValueError, match="kl"):
        model.elbo(X_TINY, kl="analytic")
    with pytest.raises(ValueError, match="detach_q"):
        model.log_weights(X_TINY, 2, detach_q=True)
    with pytest.raises(ValueError, match="model.flow"):
        exact_bounds(model, X_TINY)
    assert GaussianVAE(6, hidden=8, latent_dim=2, flow_length=0).flow_length == 0   # no flow: length unused
