"""Tests for vitools.models.sbn: enumeration, the K-sample bound, evaluation, input checks."""
import math

import pytest
import torch

import vitools as vt
from vitools.models import sbn
from vitools.models.sbn import SBN, iwae_bound


def tiny(latent=(2, 1), x_dim=5, nonlinear=False, seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = SBN(x_dim, latent, nonlinear=nonlinear, hidden=4)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, scale)
    return model


def data(n=3, x_dim=5, seed=1):
    return (torch.rand(n, x_dim, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def brute_force_log_px(model, x):
    """log p(x) of a one-layer SBN from torch.distributions, state by state (reference only)."""
    d = model.latent[0]
    states = torch.tensor([[(i >> b) & 1 for b in range(d)] for i in range(2**d)], dtype=torch.float32)
    prior = torch.distributions.Bernoulli(logits=model.prior_logits).log_prob(states).sum(-1)   # [S]
    lik = torch.distributions.Bernoulli(logits=model.decoders[0](states)[:, None, :]).log_prob(x).sum(-1)
    return torch.logsumexp(prior[:, None] + lik, 0)


@pytest.mark.parametrize("nonlinear", [False, True])
@pytest.mark.parametrize("latent", [(3,), (2, 1), (2, 1, 2)])
def test_enumeration_consistent(latent, nonlinear):
    model, x = tiny(latent, nonlinear=nonlinear), data()
    log_px = model.exact_log_px(x)
    post = model.exact_posterior(x)
    assert torch.allclose(post.exp().sum(0), torch.ones(3), atol=1e-5)
    elbo = model.exact_elbo(x)
    assert (elbo <= log_px + 1e-5).all()
    assert torch.allclose(model.exact_bound(x, 1), elbo, atol=1e-5)
    bounds = torch.stack([model.exact_bound(x, k) for k in (1, 2, 3)])
    assert (bounds[1:] >= bounds[:-1] - 1e-5).all() and (bounds <= log_px + 1e-5).all()
    # log p(x) from the importance-sampling identity p(x) = E_q[w] with many draws
    w = model.log_weights(x, 100_000).double().exp()
    z = (w.mean(0) - log_px.double().exp()) / (w.std(0) / math.sqrt(w.shape[0]))
    assert z.abs().max() < 4


def test_log_px_matches_distributions_reference():
    model, x = tiny((4,)), data(5)
    assert torch.allclose(model.exact_log_px(x), brute_force_log_px(model, x), atol=1e-5)


def test_exact_log_px_gradient_matches_finite_differences():
    model, x = tiny((3,)), data(2)
    model = model.double()
    x = x.double()
    p = model.decoders[0].weight
    (g,) = torch.autograd.grad(model.exact_log_px(x).sum(), p)
    eps = 1e-6
    with torch.no_grad():
        p[1, 2] += eps
        up = model.exact_log_px(x).sum()
        p[1, 2] -= 2 * eps
        down = model.exact_log_px(x).sum()
    assert abs((up - down).item() / (2 * eps) - g[1, 2].item()) < 1e-6


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sampled_bound_is_unbiased_for_exact_bound(k):
    model, x = tiny((2, 1)), data(2)
    torch.manual_seed(3)
    draws = iwae_bound(model.log_weights(x.repeat(20_000, 1), k)).reshape(20_000, 2).double()
    exact = model.exact_bound(x, k).double()
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(20_000))
    assert z.abs().max() < 4


def test_bound_below_log_px_and_increasing_in_k_statistically():
    model, x = tiny((2, 1), scale=2.0), data(1)
    log_px = model.exact_log_px(x).item()
    torch.manual_seed(4)
    n = 20_000
    means, ses, maxima = [], [], []
    for k in (1, 5, 20):
        draws = iwae_bound(model.log_weights(x.expand(n, -1), k)).double()
        means.append(draws.mean().item())
        ses.append((draws.std() / math.sqrt(n)).item())
        maxima.append(draws.max().item())
    assert means[0] < means[1] < means[2]
    assert (means[1] - means[0]) / math.hypot(ses[0], ses[1]) > 4      # strictly tighter
    assert all((m - log_px) / s < 4 for m, s in zip(means, ses))          # E[bound] <= log p(x)
    assert max(maxima) > log_px                                          # one draw can exceed it


def test_exact_posterior_as_q_gives_log_px_for_every_k():
    model, x = tiny((1,)), data(1)
    post_logit = model.exact_posterior(x)[1] - model.exact_posterior(x)[0]      # log p(h=1|x)/p(h=0|x)
    with torch.no_grad():
        model.encoders[0].weight.zero_()
        model.encoders[0].bias.copy_(post_logit)
    log_px = model.exact_log_px(x)
    for k in (1, 2, 7, 50):
        assert torch.allclose(iwae_bound(model.log_weights(x, k)), log_px, atol=1e-5)
        assert torch.allclose(model.exact_bound(x, min(k, 7)), log_px, atol=1e-5)


def test_evaluate_and_log_likelihood_approach_exact():
    model, x = tiny((2, 1)), data(4)
    torch.manual_seed(0)
    assert abs(sbn.evaluate(model, x.repeat(5000, 1), k=1, batch_size=4000) - model.exact_elbo(x).mean().item()) < 0.1
    ll = sbn.log_likelihood(model, x, k=5000, batch_size=2)
    assert abs(ll - model.exact_log_px(x).mean().item()) < 0.05


def test_evaluate_with_error_is_unbiased_for_the_exact_bound_and_its_error_is_honest():
    model, x = tiny((2, 1), scale=2.0, seed=2), data(4)
    with torch.no_grad():                                       # q(h | x) ignores x: L_2 well above the ELBO
        for enc in model.encoders:
            enc.weight.zero_()
    torch.manual_seed(0)
    xs = x.repeat(500, 1)                                       # 2,000 examples, 4 distinct digits
    mean, se = sbn.evaluate_with_error(model, xs, k=2, batch_size=300)
    assert abs(mean - model.exact_bound(x, 2).mean().item()) < 4 * se      # unbiased for the exact L_2
    one = x[:1].repeat(2000, 1)                                  # one digit: se is Monte Carlo noise only
    mean1, se1 = sbn.evaluate_with_error(model, one, k=2)
    exact1 = model.exact_bound(x[:1], 2).item()
    assert abs(mean1 - exact1) < 4 * se1
    # power: the looser exact ELBO of that digit is rejected by a wide margin
    assert abs(mean1 - model.exact_elbo(x[:1]).item()) > 8 * se1
    # the error is the spread of repeated evaluations: sd of 40 means against the reported se
    means = torch.tensor([sbn.evaluate_with_error(model, one[:50], k=2)[0] for _ in range(40)])
    se_small = sbn.evaluate_with_error(model, one[:50], k=2)[1]
    assert 0.6 < means.std().item() / se_small < 1.6
    with pytest.raises(ValueError, match="at least 2 examples"):
        sbn.evaluate_with_error(model, x[:1], k=2)


class _FixedWeights:
    """log_weights(x, k) hands out the next k rows of a fixed table (to test K chunking)."""

    def __init__(self, table):
        self.table, self.used = table, 0

    def log_weights(self, x, k):
        rows = self.table[self.used:self.used + k, :x.shape[0]]
        self.used += k
        return rows


def test_bound_per_example_combines_k_chunks_exactly():
    table = torch.randn(600, 3, generator=torch.Generator().manual_seed(0)) * 3
    chunked = sbn.bound_per_example(_FixedWeights(table), torch.zeros(3, 1), k=600, k_chunk=250)
    assert chunked.shape == (3,)
    assert torch.allclose(chunked, iwae_bound(table), atol=1e-5)
    whole = sbn.bound_per_example(_FixedWeights(table), torch.zeros(3, 1), k=600, k_chunk=1000)
    assert torch.allclose(whole, iwae_bound(table), atol=1e-5)
    # power: dropping the last chunk is caught
    assert not torch.allclose(chunked, iwae_bound(table[:500]), atol=1e-3)


def test_generate_shapes_and_range():
    model = tiny((3, 2))
    probs, hs = model.generate(7)
    assert probs.shape == (7, 5) and [h.shape for h in hs] == [(7, 3), (7, 2)]
    assert ((probs >= 0) & (probs <= 1)).all()


def test_parameter_split_covers_everything():
    model = tiny((3, 2), nonlinear=True)
    ids = {id(p) for p in model.generative_parameters()} | {id(p) for p in model.inference_parameters()}
    assert ids == {id(p) for p in model.parameters()}


def test_active_units_counts_units_whose_posterior_mean_varies_with_x():
    torch.manual_seed(0)
    model, x = tiny((3, 2)), data(n=40)
    with torch.no_grad():
        for enc in model.encoders:
            enc.weight.zero_()
    assert sbn.active_units(model, x) == [0, 0]          # q(h | x) ignores x: nothing is active
    with torch.no_grad():
        model.encoders[0].weight[0, 0] = 8.0             # unit 0 of layer 1 copies pixel 0
    assert sbn.active_units(model, x) == [1, 0]
    with pytest.raises(ValueError, match="threshold must be positive"):
        sbn.active_units(model, x, threshold=0.0)


# ------------------------------------------------------------------------ bad input
def test_rejects_bad_input():
    model = tiny((2, 1))
    with pytest.raises(ValueError, match="x must contain only 0 and 1"):
        model.log_weights(torch.full((2, 5), 0.5), 1)
    with pytest.raises(ValueError, match="x must end in shape"):
        model.log_weights(torch.zeros(2, 4), 1)
    with pytest.raises(ValueError, match="x must be a 2-D tensor"):
        model.log_weights(torch.zeros(5), 1)
    with pytest.raises(ValueError, match="x must be finite"):
        model.log_weights(torch.full((1, 5), float("nan")), 1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        model.log_weights(torch.zeros(2, 5), 0)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        model.exact_bound(torch.zeros(2, 5), 0)
    with pytest.raises(ValueError, match="K must be an integer >= 1"):
        iwae_bound(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="at most 262144"):
        model.exact_bound(torch.zeros(1, 5), 7)


def test_rejects_bad_latents():
    model, x = tiny((2, 1)), data(3)
    good = [torch.zeros(4, 3, 2), torch.zeros(4, 3, 1)]
    assert len(model.check_latents(good, x)) == 2
    with pytest.raises(ValueError, match=r"hs\[1\] must have shape \[K, 3, 1\]"):
        model.check_latents([torch.zeros(4, 3, 2), torch.zeros(4, 3, 2)], x)
    with pytest.raises(ValueError, match="hs must hold 2 layers"):
        model.check_latents([torch.zeros(4, 3, 2)], x)
    with pytest.raises(ValueError, match=r"hs\[0\] must contain only 0 and 1"):
        model.check_latents([torch.full((4, 3, 2), 0.3), torch.zeros(4, 3, 1)], x)


def test_rejects_bad_construction():
    with pytest.raises(ValueError, match="latent must list 1 to 3"):
        SBN(5, (2, 2, 2, 2))
    with pytest.raises(ValueError, match="latent must be an integer >= 1"):
        SBN(5, (0,))
    with pytest.raises(ValueError, match="x_dim must be an integer >= 1"):
        SBN(0, (2,))
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        SBN(5, (2,), nonlinear=True, hidden=0)
    with pytest.raises(ValueError, match="at most 16 can be enumerated"):
        SBN(5, (17,)).exact_log_px(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        SBN(5, (2,)).generate(0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        sbn.evaluate(SBN(5, (2,)), torch.zeros(1, 5), batch_size=0)


# ------------------------------------------------------------------------ training, plots, explorer
def test_train_sbn_records_validation_bound():
    torch.manual_seed(0)
    x = vt.data.small_digits("test", size=7, n=200)
    model = SBN(49, (4,))
    est = vt.estimators.get("nvil", hidden=8)
    history = sbn.train_sbn(model, est, x, steps=60, lr=1e-2, x_valid=x[:50], eval_every=30, progress=False)
    bounds = history.evals["valid_bound"]
    assert len(bounds) == 3 and bounds[-1] > bounds[0]
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        sbn.train_sbn(model, est, x, k=0)


def test_group_variance_and_explorer_toggle():
    import matplotlib
    matplotlib.use("Agg")
    from vitools.diagnostics import group_variance
    from vitools.plots import sbn as plots
    from vitools.widgets.sbn import NVILVarianceExplorer

    torch.manual_seed(0)
    model = tiny((2, 1))
    x = data(20)
    explorer = NVILVarianceExplorer(model, x, x[:1], n=500, prepare_steps=20)
    plain = explorer.data["variance"]["score function"]["inference layer 1 (phi)"]
    explorer.controls["constant_baseline"].value = True
    assert explorer.data["techniques"]["constant_baseline"]
    label = [key for key in explorer.data["variance"] if key != "score function"][0]
    assert explorer.data["variance"][label]["inference layer 1 (phi)"] < plain
    assert len(explorer.png()) > 1000
    with pytest.raises(ValueError, match="x must be one example"):
        NVILVarianceExplorer(model, x, x[:2])
    with pytest.raises(ValueError, match=r"groups\['none'\] must match"):
        group_variance({"model.a": torch.zeros(3, 1)}, {"none": ["aux"]})
    fig, ax = plt_subplots()
    assert plots.draw_digits(ax, torch.rand(4, 49), rows=2) is not None
    assert len(plots.draw_bound_curves(ax, {"a": ([0, 1, 2], [-3.0, -2.0, -1.0])}, skip_before=1)) == 1
    assert len(plots.draw_snr_vs_k(ax, [1, 2], {"a": [1.0, 2.0]})) == 1


def plt_subplots():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plt.close(fig)
    return fig, ax


@pytest.mark.parametrize("nonlinear", [False, True])
def test_init_from_data_starts_at_independent_pixels_and_centres_q(nonlinear):
    x = (torch.rand(400, 6, generator=torch.Generator().manual_seed(3)) < torch.tensor([0.05, 0.2, 0.5, 0.7, 0.9, 0.0])).float()
    model = tiny((2,), x_dim=6, nonlinear=nonlinear)
    before = model.encoder_logits(0, x).detach()
    assert model.init_from_data(x) is model
    m = x.mean(0)
    assert torch.equal(model.input_mean, m)
    # q sees x - m: the same logits as the untouched first layer applied to the centred data
    assert torch.allclose(model.encoder_logits(0, x), model.encoders[0](x - m))
    assert not torch.allclose(model.encoder_logits(0, x), before)
    # the output layer's bias is the log-odds of the (clipped) means: with the weights zeroed, log p(x | h)
    # is exactly the independent-pixel log-likelihood for every h (the hidden tanh layers then carry nothing)
    with torch.no_grad():
        for mod in model.decoders[0].modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.zero_()
    hs = [torch.bernoulli(torch.full((3, len(x), 2), 0.5))]
    p = m.clamp(1e-3, 1 - 1e-3)
    pixels = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(model.log_p_layers(x, hs)[0], pixels.expand(3, -1), atol=1e-5)
    # every path that reads q uses the centring: sampled log q equals log_q_layers at the same h
    torch.manual_seed(0)
    hs2, log_q = model.sample(x, 4)
    assert torch.allclose(log_q[0], model.log_q_layers(x, hs2)[0])
    assert torch.allclose(model.on(x).logits(0, None), model.encoder_logits(0, x))
    with pytest.raises(ValueError, match="x"):
        model.init_from_data(torch.full((3, 6), 0.5))
