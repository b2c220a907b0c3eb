"""vitools.relaxations: the Concrete distributions against torch.distributions, their conformance
to the Distribution protocol, the conditional noise of REBAR/RELAX, and (while they exist) bitwise
agreement with the implementations this module replaces."""
import math

import pytest
import torch
from torch import distributions as D
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from vitools import relaxations as R
from vitools.relaxations import BinaryConcrete, ExpConcrete

F64 = torch.float64


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of 1-D samples ``a`` and ``b``."""
    a, b = a.flatten().sort().values, b.flatten().sort().values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True).to(F64) / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True).to(F64) / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def ks_critical(n: int, m: int, alpha: float = 1e-4) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


def hard_from(z: torch.Tensor, categorical: bool) -> torch.Tensor:
    if categorical:
        return torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
    return (z > 0).to(z.dtype)


# ------------------------------------------------------------------------------ old vs new
def test_binary_concrete_density_is_torchs_logit_relaxed_bernoulli():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 3, generator=gen, dtype=F64)
    for tau in (0.1, 0.6, 2.0):
        t = torch.tensor(tau, dtype=F64)
        ours, theirs = BinaryConcrete(logits, t), LogitRelaxedBernoulli(t, logits=logits)
        y = (logits + 4 * torch.randn(200, 4, 3, generator=gen, dtype=F64)) / tau       # moderate points
        torch.testing.assert_close(ours.log_prob(y), theirs.log_prob(y), rtol=1e-12, atol=1e-12)


def test_binary_concrete_samples_follow_torchs_distribution():
    n = 20_000
    logits = torch.tensor([-1.5, 0.0, 0.8], dtype=F64)
    for tau in (0.3, 1.0, 3.0):
        torch.manual_seed(0)
        ours = BinaryConcrete(logits, tau).sample((n,))
        torch.manual_seed(1)
        theirs = LogitRelaxedBernoulli(torch.tensor(tau, dtype=F64), logits=logits).sample((n,))
        wrong = LogitRelaxedBernoulli(torch.tensor(1.2 * tau, dtype=F64), logits=logits).sample((n,))
        for i in range(3):
            assert ks_statistic(ours[:, i], theirs[:, i]) < ks_critical(n, n)
            assert ks_statistic(ours[:, i], wrong[:, i]) > ks_critical(n, n)     # the test has power


def test_exp_concrete_density_is_torchs_plus_the_dropped_coordinate():
    """torch's ExpRelaxedCategorical.log_prob is the paper's symmetric formula over all C
    coordinates; ours is the Lebesgue density of the first C - 1, so torch = ours + y_C exactly."""
    gen = torch.Generator().manual_seed(0)
    for c in (2, 3, 5):
        logits = 2 * torch.randn(4, c, generator=gen, dtype=F64)
        for tau in (0.2, 1.0, 2.5):
            t = torch.tensor(tau, dtype=F64)
            ours, theirs = ExpConcrete(logits, t), ExpRelaxedCategorical(t, logits=logits)
            y = ours.sample((100,))
            torch.testing.assert_close(theirs.log_prob(y), ours.log_prob(y) + y[..., -1], rtol=1e-10, atol=1e-10)
    # so torch's density does not integrate to one over the C - 1 free coordinates: for C = 2
    # its integral over y_1 is E[exp(y_2)], the mean of the relaxed second coordinate
    logits, tau = torch.tensor([0.4, -0.8], dtype=F64), 0.6
    t = torch.tensor(tau, dtype=F64)
    x = torch.linspace(-100, 100, 400_001, dtype=F64)                     # the relaxed bit's logit y_1 - y_2
    y = torch.stack([-torch.nn.functional.softplus(-x), -torch.nn.functional.softplus(x)], -1)
    jacobian = torch.sigmoid(-x)                                          # dy_1/dx
    ours = torch.trapezoid(ExpConcrete(logits, t).log_prob(y).exp() * jacobian, x)
    theirs = torch.trapezoid(ExpRelaxedCategorical(t, logits=logits).log_prob(y).exp() * jacobian, x)
    torch.manual_seed(0)
    mean_second = ExpConcrete(logits, t).sample((200_000,)).exp()[:, 1].mean()
    assert float(ours) == pytest.approx(1.0, abs=1e-8)
    assert float(theirs) == pytest.approx(float(mean_second), abs=4 * 0.5 / math.sqrt(200_000))
    assert abs(float(theirs) - 1) > 0.5


def test_exp_concrete_samples_follow_torchs_relaxed_one_hot_categorical():
    n = 20_000
    logits = torch.tensor([0.5, 0.0, -1.0, 1.5], dtype=F64)
    for tau in (0.3, 1.0, 3.0):
        torch.manual_seed(0)
        ours = ExpConcrete(logits, tau).sample((n,)).exp()
        torch.manual_seed(1)
        theirs = D.RelaxedOneHotCategorical(torch.tensor(tau, dtype=F64), logits=logits).sample((n,))
        wrong = D.RelaxedOneHotCategorical(torch.tensor(1.3 * tau, dtype=F64), logits=logits).sample((n,))
        assert torch.allclose(ours.sum(-1), torch.ones((), dtype=F64))
        for stat in (lambda s: s[:, 0], lambda s: s[:, 3], lambda s: s.max(-1).values, lambda s: s[:, 1] - s[:, 2]):
            assert ks_statistic(stat(ours), stat(theirs)) < ks_critical(n, n)
        assert ks_statistic(ours.max(-1).values, wrong.max(-1).values) > ks_critical(n, n)


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_shapes_and_expand(batch):
    torch.manual_seed(0)
    for cls, event in ((BinaryConcrete, ()), (ExpConcrete, (3,))):
        logits = torch.randn((*batch, *event))
        dist = cls(logits, 0.5)
        assert isinstance(dist, D.Distribution) and dist.has_rsample
        assert dist.batch_shape == batch and dist.event_shape == event
        assert dist.rsample().shape == (*batch, *event)
        assert dist.sample((5,)).shape == (5, *batch, *event)
        big = dist.expand((2, *batch))
        assert type(big) is cls and big.batch_shape == (2, *batch) and big.event_shape == event
        assert big.temperature == 0.5
        y = big.sample((5,))
        assert y.shape == (5, 2, *batch, *event)
        assert big.log_prob(y).shape == (5, 2, *batch)
        torch.testing.assert_close(big.log_prob(y), dist.log_prob(y), rtol=0, atol=0)
        assert D.Independent(dist, len(batch)).log_prob(dist.sample()).shape == ()


def test_sample_has_no_grad_and_rsample_reaches_the_logits():
    torch.manual_seed(0)
    for cls in (BinaryConcrete, ExpConcrete):
        logits = torch.randn(4, 3, requires_grad=True)
        dist = cls(logits, 0.7)
        assert not dist.sample((10,)).requires_grad
        y = dist.rsample((10,))
        (g,) = torch.autograd.grad(dist.probs_of(y)[..., 0].sum(), logits)
        assert torch.isfinite(g).all() and (g[:, 0] != 0).all()
        (g,) = torch.autograd.grad(dist.log_prob(y.detach()).sum(), logits)
        assert torch.isfinite(g).all() and (g != 0).any()


def test_temperature_reads_as_a_float_and_a_tensor_one_keeps_its_gradient():
    assert BinaryConcrete(torch.zeros(2), 0.6).temperature == 0.6
    assert isinstance(ExpConcrete(torch.zeros(2), 2).temperature, float)
    assert ExpConcrete(torch.zeros(2), torch.tensor(0.25)).temperature == 0.25
    tau = torch.tensor(0.5, requires_grad=True)
    torch.manual_seed(0)
    (g,) = torch.autograd.grad(BinaryConcrete(torch.ones(3), tau).rsample().sum(), tau)
    assert torch.isfinite(g) and g != 0


def test_bad_arguments_raise_errors_that_name_them():
    for cls in (BinaryConcrete, ExpConcrete):
        for tau in (0.0, -1.0, torch.tensor(-0.5)):
            with pytest.raises(ValueError, match="temperature must be positive, got "):
                cls(torch.zeros(3), tau)
        for tau in (float("inf"), float("nan")):
            with pytest.raises(ValueError, match="temperature must be finite"):
                cls(torch.zeros(3), tau)
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"logits must be finite, got {bad}"):
                cls(torch.tensor([0.0, bad]), 1.0)
    for shape in ((3, 1), ()):
        with pytest.raises(ValueError, match="logits must have at least 2 classes"):
            ExpConcrete(torch.zeros(shape), 1.0)
    with pytest.raises(ValueError):                        # torch's own sample check, when asked for
        BinaryConcrete(torch.zeros(2), 1.0, validate_args=True).log_prob(torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 5.0])
@pytest.mark.parametrize("logit", [-3.0, 0.0, 2.0])
def test_densities_integrate_to_one(tau, logit):
    binary = BinaryConcrete(torch.tensor(logit, dtype=F64), tau)
    y = torch.linspace((logit - 60) / tau, (logit + 60) / tau, 400_001, dtype=F64)
    assert float(torch.trapezoid(binary.log_prob(y).exp(), y)) == pytest.approx(1.0, abs=1e-7)
    # ExpConcrete with C = 2 over its free coordinate y_1 = log sigmoid(x), x the bit's logit
    pair = ExpConcrete(torch.tensor([logit, -0.5], dtype=F64), tau)
    x = torch.linspace((logit + 0.5 - 60) / tau, (logit + 0.5 + 60) / tau, 400_001, dtype=F64)
    y = torch.stack([-torch.nn.functional.softplus(-x), -torch.nn.functional.softplus(x)], -1)
    total = torch.trapezoid((pair.log_prob(y) + torch.nn.functional.logsigmoid(-x)).exp(), x)   # in log space: no inf * 0
    assert float(total) == pytest.approx(1.0, abs=1e-7)


# ------------------------------------------------------------------------------ conditional noise
def test_conditional_bits_agree_with_the_hard_sample_and_with_the_prior():
    n = 200_000
    logits = torch.tensor([-3.0, -0.5, 0.0, 1.2, 4.0], dtype=F64)
    torch.manual_seed(0)
    z = logits + R.noise(R.uniform((n, 5), logits))                # the prior p(z)
    hard = hard_from(z, categorical=False)
    z_tilde = R.conditional_bits(hard, logits, R.uniform((n, 5), logits))
    assert torch.equal(hard_from(z_tilde, categorical=False), hard)
    fresh = logits + R.noise(R.uniform((n, 5), logits))            # independent, for the two-sample test
    for i in range(5):
        assert ks_statistic(z_tilde[:, i], fresh[:, i]) < ks_critical(n, n)
    # the test can fail: conditioning on a Bernoulli(0.5) instead of the hard sample is caught
    coin = (torch.rand(n, 5, dtype=F64) < 0.5).to(F64)
    assert ks_statistic(R.conditional_bits(coin, logits, R.uniform((n, 5), logits))[:, 0], fresh[:, 0]) \
        > ks_critical(n, n)
    for dtype in (torch.float32, F64):                              # consistent at the extremes too
        lg = torch.tensor([-12.0, -4.0, 0.0, 4.0, 12.0], dtype=dtype)
        b = hard_from(lg + R.noise(R.uniform((n, 5), lg)), categorical=False)
        assert torch.equal(hard_from(R.conditional_bits(b, lg, R.uniform((n, 5), lg)), categorical=False), b)


def test_conditional_gumbels_agree_with_the_hard_sample_and_with_the_prior():
    n = 200_000
    logits = torch.tensor([1.0, 0.3, -0.5, -2.0], dtype=F64) + 5.0  # unnormalised on purpose
    log_p = torch.log_softmax(logits, -1)
    torch.manual_seed(0)
    z = log_p + R.gumbel_noise((n, 4), logits)                      # the prior: Gumbel-max
    hard = hard_from(z, categorical=True)
    z_tilde = R.conditional_gumbels(hard, logits, R.uniform((n, 4), logits))
    assert torch.equal(hard_from(z_tilde, categorical=True), hard)
    fresh = log_p + R.gumbel_noise((n, 4), logits)
    for stat in (lambda s: s[:, 0], lambda s: s[:, 2], lambda s: s[:, 3], lambda s: s.max(-1).values,
                 lambda s: s[:, 0] - s[:, 1]):
        assert ks_statistic(stat(z_tilde), stat(fresh)) < ks_critical(n, n)
    # the test can fail: a hard sample from the wrong categorical (uniform) is caught
    wrong = torch.nn.functional.one_hot(torch.randint(4, (n,)), 4).to(F64)
    assert ks_statistic(R.conditional_gumbels(wrong, logits, R.uniform((n, 4), logits))[:, 0], fresh[:, 0]) \
        > ks_critical(n, n)
    for dtype in (torch.float32, F64):                              # consistent for peaked logits too
        lg = torch.tensor([6.0, 0.0, -6.0], dtype=dtype)
        b = hard_from(torch.log_softmax(lg, -1) + R.gumbel_noise((n, 3), lg), categorical=True)
        assert torch.equal(hard_from(R.conditional_gumbels(b, lg, R.uniform((n, 3), lg)), categorical=True), b)
