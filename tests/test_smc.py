"""Tests for vitools.smc: resampling, the particle filter's unbiasedness, ELBO/IWAE/FIVO."""
import math

import pytest
import torch

from vitools import smc
from vitools.models.ssm import LinearGaussianSSM

SCHEMES = ["multinomial", "stratified", "systematic"]
REPEATS = 4000


def _ssm():
    return LinearGaussianSSM.scalar(a=0.9, q=1.0, r=0.5, dtype=torch.float64)


@pytest.fixture(scope="module")
def data():
    ssm = _ssm()
    _, x = ssm.sample(2, 8, seed=0)
    return ssm, x, ssm.log_likelihood(x)


def _z_scores(log_z, exact):
    """z-score of mean(Z / p(x)) - 1, per sequence; ``log_z [B * REPEATS]``, ``exact [B]``."""
    ratio = (log_z.reshape(len(exact), -1) - exact[:, None]).exp()
    return (ratio.mean(1) - 1) / (ratio.std(1) / math.sqrt(ratio.shape[1]))


class Recorder:
    """Wraps a model and records every incremental log weight (to check the bookkeeping)."""

    def __init__(self, model):
        self.model, self.alphas = model, []

    def initial_state(self, x, k):
        return self.model.initial_state(x, k)

    def step(self, state, t, x):
        state, log_alpha = self.model.step(state, t, x)
        self.alphas.append(log_alpha)
        return state, log_alpha


class NaNModel:
    def initial_state(self, x, k):
        return x.new_zeros(x.shape[0], k, 1)

    def step(self, state, t, x):
        return state, torch.full(state.shape[:2], float("nan"), dtype=x.dtype)


# ------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("scheme", SCHEMES)
def test_expected_offspring_counts_equal_k_times_weights(scheme):
    weights = torch.tensor([0.05, 0.13, 0.31, 0.02, 0.49], dtype=torch.float64)
    k, m = len(weights), 20_000
    gen = torch.Generator().manual_seed(1)
    ancestors = smc.resample(weights.log().expand(m, k), scheme, generator=gen)     # [m, K]
    counts = torch.nn.functional.one_hot(ancestors, k).sum(1).double()               # [m, K]
    se = counts.std(0) / math.sqrt(m)
    z = (counts.mean(0) - k * weights) / se.clamp_min(1e-12)
    assert z.abs().max() < 4, z


def test_low_variance_schemes_keep_counts_within_one_of_expectation():
    weights = torch.tensor([0.05, 0.13, 0.31, 0.02, 0.49], dtype=torch.float64)
    for scheme in ("stratified", "systematic"):
        ancestors = smc.resample(weights.log().expand(2000, 5), scheme)
        counts = torch.nn.functional.one_hot(ancestors, 5).sum(1).double()
        if scheme == "systematic":
            assert ((counts - 5 * weights).abs() < 1).all()
    multinomial = torch.nn.functional.one_hot(smc.resample(weights.log().expand(2000, 5)), 5).sum(1)
    assert ((multinomial - 5 * weights).abs() >= 1).any()


def test_ess_bounds():
    assert smc.ess(torch.zeros(7)).item() == pytest.approx(7)
    assert smc.ess(torch.tensor([0.0, -math.inf, -math.inf])).item() == pytest.approx(1)


def test_resample_rejects_nan_and_bad_scheme():
    with pytest.raises(ValueError, match="log_weights must not contain NaN"):
        smc.resample(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="at least one finite"):
        smc.resample(torch.full((3,), -math.inf))
    with pytest.raises(ValueError, match="scheme must be one of"):
        smc.resample(torch.zeros(3), "residual")
    with pytest.raises(ValueError, match="log_weights must not contain NaN"):
        smc.ess(torch.tensor([float("nan")]))


# ------------------------------------------------------------------- the filter
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("resampling", ["always", "ess"])
def test_marginal_likelihood_estimate_is_unbiased(data, scheme, resampling):
    ssm, x, exact = data
    xr = x.repeat_interleave(REPEATS, 0)
    model = ssm.with_proposal(ssm.filtering_proposal(xr))
    result = smc.particle_filter(model, xr, 4, resampling=resampling, scheme=scheme, seed=3)
    z = _z_scores(result.log_z, exact)
    assert z.abs().max() < 4, z
    # and it is a lower bound in log space (Jensen): mean log Z below log p(x)
    assert (result.log_z.reshape(2, -1).mean(1) < exact).all()
    if resampling == "always":
        assert result.resampled[:, :-1].all() and not result.resampled[:, -1].any()


def test_iwae_estimate_is_unbiased_and_a_wrong_likelihood_is_caught(data):
    ssm, x, exact = data
    xr = x.repeat_interleave(REPEATS, 0)
    result = smc.iwae(ssm.with_proposal(ssm.filtering_proposal(xr)), xr, 4, seed=4)
    assert not result.resampled.any()
    assert _z_scores(result.log_z, exact).abs().max() < 4
    assert _z_scores(result.log_z, exact + 0.05).abs().max() > 4     # the test has power


def test_one_particle_gives_exactly_the_elbo_term(data):
    ssm, x, _ = data
    recorder = Recorder(ssm.with_proposal(ssm.prior_proposal(x.shape[1])))
    for run in (lambda: smc.elbo(recorder, x, seed=0),
                lambda: smc.particle_filter(recorder, x, 1, resampling="always")):
        result = run()
        total = torch.stack(recorder.alphas[-x.shape[1]:], 0).sum(0)[:, 0]
        torch.testing.assert_close(result.log_z, total, rtol=0, atol=1e-12)
    assert smc.bound("fivo", recorder, x, 1).log_z.shape == (2,)


def test_smoothing_proposal_has_zero_variance_without_resampling_only(data):
    ssm, x, exact = data
    xr = x.repeat_interleave(200, 0)
    model = ssm.with_proposal(ssm.smoothing_proposal(xr))
    iw = smc.iwae(model, xr, 4, seed=0).log_z.reshape(2, -1)
    torch.testing.assert_close(iw, exact[:, None].expand_as(iw), rtol=0, atol=1e-9)
    fivo = smc.fivo(model, xr, 4, seed=0).log_z.reshape(2, -1)
    assert (fivo.std(1) > 1e-2).all()


def test_filtering_proposal_beats_the_bootstrap_proposal(data):
    ssm, x, _ = data
    xr = x.repeat_interleave(1000, 0)
    var = {}
    for name, q in (("prior", ssm.prior_proposal(8)), ("filtering", ssm.filtering_proposal(xr))):
        var[name] = smc.fivo(ssm.with_proposal(q), xr, 4, seed=1).log_z.reshape(2, -1).var(1)
    assert (var["filtering"] < 0.5 * var["prior"]).all(), var


def test_masks_handle_variable_lengths(data):
    ssm, x, _ = data
    short = x[1, :5]
    padded, mask = smc.pad_sequences([x[0], short])
    assert mask.sum(1).tolist() == [8, 5]
    exact = ssm.log_likelihood(padded, mask)
    torch.testing.assert_close(exact[1], ssm.log_likelihood(short[None])[0])
    model = ssm.with_proposal(ssm.smoothing_proposal(padded, mask))
    for resampling in ("never", "always"):
        result = smc.particle_filter(model, padded, 3, mask=mask, resampling=resampling, seed=0)
        assert result.num_steps.tolist() == [8, 5]
        assert not result.resampled[1, 4:].any()
    torch.testing.assert_close(smc.iwae(model, padded, 3, mask=mask).log_z, exact)
    exact_filter = smc.particle_filter(model, padded, 3, mask=mask, resampling="never", seed=0)
    increments = smc.step_increments(exact_filter)
    assert increments.shape == (8,)
    torch.testing.assert_close(increments.sum(), exact.mean())           # smoothing proposal: exact log p(x)
    assert (exact_filter.log_z_steps[1, 4:] == exact_filter.log_z_steps[1, 4]).all()   # nothing past the end


def test_score_terms_change_the_gradient_not_the_value(data):
    ssm, x, _ = data
    offset = torch.zeros((), dtype=torch.float64, requires_grad=True)
    q = ssm.filtering_proposal(x)
    q.c = q.c + offset
    grads = {}
    for keep in (False, True):
        result = smc.fivo(ssm.with_proposal(q), x, 4, score_terms=keep, seed=0)
        torch.testing.assert_close(result.surrogate, result.log_z)
        grads[keep] = torch.autograd.grad(result.surrogate.sum(), offset)[0]
    assert grads[True] != grads[False]


def test_score_terms_gradient_is_unbiased_and_the_fivo_gradient_bias_is_measured():
    """d/dc E[log Z] by central differences with common random numbers, against both
    gradient estimators. Keeping the resampling score terms is unbiased (|z| < 4); FIVO's
    choice of dropping them is biased, and that bias is measured here: on this model it is
    about 35 standard errors at n = 20,000 (25 at n = 10,000)."""
    ssm = _ssm()
    _, x = ssm.sample(1, 4, seed=2)
    n, delta = 10_000, 0.05
    xr = x.expand(n, -1, -1)
    with pytest.raises(ValueError, match="score_terms=True needs multinomial"):
        smc.fivo(ssm.with_proposal(ssm.filtering_proposal(x)), x, 3, scheme="systematic", score_terms=True)
    base = ssm.filtering_proposal(x)

    def run(shift, keep, seed):
        offset = torch.full((n,), shift, dtype=torch.float64, requires_grad=True)   # one per run
        q = type(base)(base.F.expand(n, -1, -1, -1), base.c + offset[:, None, None], base.scale_tril)
        result = smc.fivo(ssm.with_proposal(q), xr, 3, score_terms=keep, seed=seed)
        (grad,) = torch.autograd.grad(result.surrogate.sum(), offset)
        return result.log_z.detach(), grad                                             # [n], [n]

    fd = (run(delta, False, 7)[0] - run(-delta, False, 7)[0]) / (2 * delta)
    z = {}
    for keep in (True, False):
        grad = run(0.0, keep, 8)[1]
        z[keep] = ((fd.mean() - grad.mean()) / math.sqrt(fd.var() / n + grad.var() / n)).item()
    assert abs(z[True]) < 4, z
    assert abs(z[False]) > 4, z         # FIVO's gradient is biased for d/dc E[log Z]
    print(f"z-score of the gradient bias: with score terms {z[True]:.2f}, without {z[False]:.2f}")


# ---------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(data):
    ssm, x, _ = data
    model = ssm.with_proposal(ssm.filtering_proposal(x))
    with pytest.raises(ValueError, match="num_particles must be an integer >= 1, got 0"):
        smc.particle_filter(model, x, 0)
    with pytest.raises(ValueError, match="list of sequences of lengths \\[8, 5\\]"):
        smc.particle_filter(model, [x[0], x[1, :5]], 2)
    with pytest.raises(ValueError, match="mask must have shape"):
        smc.particle_filter(model, x, 2, mask=torch.ones(2, 7))
    with pytest.raises(ValueError, match="mask must be ones then zeros"):
        smc.particle_filter(model, x, 2, mask=torch.tensor([[1.0, 0, 1, 1, 1, 1, 1, 1]] * 2))
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        smc.particle_filter(model, x, 2, mask=torch.full((2, 8), 0.5))
    with pytest.raises(ValueError, match="x must be finite"):
        smc.particle_filter(model, x * float("nan"), 2)
    with pytest.raises(ValueError, match="x must be a tensor"):
        smc.particle_filter(model, x[0, :, 0], 2)
    with pytest.raises(ValueError, match="resampling must be one of"):
        smc.particle_filter(model, x, 2, resampling="sometimes")
    with pytest.raises(ValueError, match="resampling must be one of"):
        smc.fivo(model, x, 2, resampling="never")
    with pytest.raises(ValueError, match="scheme must be one of"):
        smc.particle_filter(model, x, 2, scheme="residual")
    with pytest.raises(ValueError, match="score_terms must be True or False"):
        smc.particle_filter(model, x, 2, score_terms=1)
    with pytest.raises(ValueError, match="log_alpha .* must not contain NaN"):
        smc.particle_filter(NaNModel(), x, 2)
    with pytest.raises(ValueError, match="name must be one of"):
        smc.bound("vimco", model, x, 2)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        smc.particle_filter(model, x, 2, seed=-1)
    with pytest.raises(ValueError, match="sequences must share every dimension"):
        smc.pad_sequences([torch.zeros(3, 2), torch.zeros(3, 1)])
    with pytest.raises(ValueError, match="sequences must be a non-empty list"):
        smc.pad_sequences([])


# ------------------------------------------------------------------ explorer, plots
def test_bound_explorer_moves_and_validates():
    from vitools.widgets.smc import BoundExplorer

    explorer = BoundExplorer(particles=2, steps=10, repeats=50, proposal="smoothing")
    assert abs(explorer.data["mean_gap"]["IWAE (K=2)"]) < 1e-4          # smoothing q: exact
    explorer.controls["proposal"].value = "prior"
    explorer.controls["particles"].value = 16
    gaps = explorer.data["mean_gap"]
    assert gaps["FIVO (K=16)"] > gaps["ELBO"] and explorer.data["ess"].shape == (50, 10)
    assert len(explorer.png()) > 1000
    for kwargs, message in ((dict(particles=3), "particles must be one of"),
                            (dict(scheme="residual"), "scheme must be one of"),
                            (dict(proposal="optimal"), "proposal must be one of"),
                            (dict(repeats=0), "repeats must be an integer >= 1"),
                            (dict(steps=0), "steps must be an integer >= 1")):
        with pytest.raises(ValueError, match=message):
            BoundExplorer(**kwargs)
