"""Concrete / Gumbel-Softmax distributions (vitools.relaxations) and the biased relaxed
estimators on toy problems read as one-layer stacks (bias measured)."""
import math

import pytest
import torch

import vitools as vt
import vitools.estimators.layers as L
from vitools.estimators import get
from vitools.estimators.layers import ProblemLayers
from vitools.relaxations import BinaryConcrete, ExpConcrete, multilinear_bits
from vitools.diagnostics import grad_samples, summarize

from sbn_helpers import discrete_problems as problems

BIASED = ["gumbel_softmax", "straight_through", "gapped_straight_through", "igr"]
TEMPERATURES = [0.01, 0.1, 1.0, 10.0]


def layers_of(problem, theta=None):
    """The one-layer stack an estimator reads a toy problem as."""
    return ProblemLayers(problem.at(problem.init_params().detach() if theta is None else theta))


def relaxed_cost(problem, soft):
    """The problem's cost at relaxed points ``soft`` ``[..., D]`` (bits) or ``[..., C]`` (classes)."""
    target = layers_of(problem)
    value = soft.unsqueeze(-2) if target.layers[0].kind == "categorical" else soft
    return target.signal([value], relaxed=True)


@pytest.mark.parametrize("tau", TEMPERATURES)
@pytest.mark.parametrize("logit", [-3.0, 0.0, 2.0])
def test_binary_concrete_density_integrates_to_one(tau, logit):
    dist = BinaryConcrete(torch.tensor(logit, dtype=torch.float64), tau)
    y = torch.linspace((logit - 60) / tau, (logit + 60) / tau, 400_001, dtype=torch.float64)
    total = torch.trapezoid(dist.log_prob(y).exp(), y)
    assert float(total) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_binary_concrete_density_matches_histogram(tau):
    torch.manual_seed(0)
    dist = BinaryConcrete(torch.tensor(0.7, dtype=torch.float64), tau)
    y = dist.rsample((200_000,))
    edges = torch.linspace(-6 / tau, 6 / tau, 41, dtype=torch.float64)
    counts = torch.histc(y, bins=40, min=float(edges[0]), max=float(edges[-1]))
    fine = torch.linspace(float(edges[0]), float(edges[-1]), 40 * 200 + 1, dtype=torch.float64)
    dens = dist.log_prob(fine).exp()
    cells = 0.5 * (dens[:-1] + dens[1:]) * (fine[1] - fine[0])
    expected = 200_000 * cells.reshape(40, 200).sum(1)
    keep = expected > 20
    z = (counts[keep] - expected[keep]) / expected[keep].sqrt()
    assert z.abs().max() < 4.5


def test_exp_concrete_with_two_classes_is_the_binary_concrete():
    logits = torch.tensor([0.4, -0.8], dtype=torch.float64)
    tau = 0.6
    x = torch.linspace(-8, 8, 101, dtype=torch.float64)          # binary logit of the relaxed bit
    y1, y2 = -torch.nn.functional.softplus(-x), -torch.nn.functional.softplus(x)
    exp_density = ExpConcrete(logits, tau).log_prob(torch.stack([y1, y2], -1))
    # change of variables y1 = log sigmoid(x): p(y1) = p(x) / sigmoid(-x)
    binary = BinaryConcrete(logits[0] - logits[1], tau).log_prob(x) - torch.log(torch.sigmoid(-x))
    torch.testing.assert_close(exp_density, binary)


def test_exp_concrete_marginal_matches_a_histogram_for_three_classes():
    torch.manual_seed(1)
    logits = torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)
    tau = 2.0
    dist = ExpConcrete(logits, tau)
    y = dist.rsample((100_000,))
    assert torch.logsumexp(y, -1).abs().max() < 1e-9
    # P(y in cell) for the 2 free coordinates, by quadrature on a grid, against the counts
    grid = torch.linspace(-20 + 0.0125, -0.0125, 800, dtype=torch.float64)     # cell midpoints, h = 0.025
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    rest = torch.log1p(-(a.exp() + b.exp()).clamp(max=1 - 1e-15))
    inside = (a.exp() + b.exp()) < 1
    dens = torch.where(inside, dist.log_prob(torch.stack([a, b, rest], -1)).exp(), torch.zeros(()))
    cell = (grid[1] - grid[0]) ** 2
    assert float((dens * cell).sum()) == pytest.approx(1.0, abs=0.002)
    for lo0, hi0, lo1, hi1 in [(-1, 0, -2, -1), (-3, -1, -1, 0), (-2, -0.5, -3, -1.5)]:   # regions of the simplex
        box = (a > lo0) & (a < hi0) & (b > lo1) & (b < hi1)
        expected = float((dens * cell)[box].sum())
        observed = float(((y[:, 0] > lo0) & (y[:, 0] < hi0) & (y[:, 1] > lo1) & (y[:, 1] < hi1)).double().mean())
        assert abs(observed - expected) < 4 * math.sqrt(expected / 100_000) + 0.003


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_gradients_are_finite_at_every_temperature(tau):
    torch.manual_seed(0)
    logits = torch.tensor([[-6.0, 0.0, 3.0, 9.0]], requires_grad=True)
    for dist in (BinaryConcrete(logits, tau), ExpConcrete(logits, tau)):
        y = dist.rsample((500,))
        out = dist.log_prob(y).sum() + dist.probs_of(y).pow(2).sum()
        (g,) = torch.autograd.grad(out, logits)
        assert torch.isfinite(y).all() and torch.isfinite(out) and torch.isfinite(g).all()
    for name in BIASED:
        for problem in problems().values():
            g = grad_samples(get(name, temperature=tau), problem, problem.init_params(), n=500, seed=0)
            assert torch.isfinite(g).all(), name


def test_gumbel_max_gives_the_categorical():
    torch.manual_seed(0)
    problem = vt.problems.CategoricalCost(logits=[0.2, -0.5, 1.0, 0.1])
    target = layers_of(problem)
    _, hs, logits = L.draw(target, 100_000)
    freq, p = hs[0].mean(0).squeeze(0), torch.softmax(problem.init_params().detach(), -1)
    assert ((freq - p).abs() / (p * (1 - p) / 100_000).sqrt()).max() < 4


def test_multilinear_extension_agrees_with_the_table_and_is_affine_per_bit():
    problem = vt.problems.FactorisedBernoulli.random(3, seed=2)
    states = problem.states()
    torch.testing.assert_close(multilinear_bits(problem.costs, states), problem.costs)
    torch.manual_seed(0)
    x = torch.rand(5, 3)
    lo, hi = x.clone(), x.clone()
    lo[:, 1], hi[:, 1] = 0.0, 1.0
    mid = multilinear_bits(problem.costs, x)
    interp = (1 - x[:, 1]) * multilinear_bits(problem.costs, lo) + x[:, 1] * multilinear_bits(problem.costs, hi)
    torch.testing.assert_close(mid, interp)
    cat = vt.problems.CategoricalCost()
    torch.testing.assert_close(relaxed_cost(cat, torch.eye(4)), cat.costs)


def test_a_problem_can_bring_its_own_relaxation():
    class Custom(vt.problems.FactorisedBernoulli):
        def relaxed_cost(self, soft):
            return soft.sum(-1) * 0 + 7.0
    problem = Custom(torch.zeros(4))
    assert float(relaxed_cost(problem, torch.full((2,), 0.3))) == 7.0
    # and the estimators use it: the relaxed pass's gradient of a constant is zero
    theta = problem.init_params()
    assert not torch.autograd.grad(get("gumbel_softmax")(problem, theta, 4).sum(), theta)[0].any()


@pytest.mark.parametrize("name", BIASED)
def test_biased_estimators_have_their_bias_measured(name):
    est = get(name)
    assert est.unbiased is False
    worst = 0.0
    for problem in problems().values():
        theta = problem.init_params()
        s = summarize(grad_samples(est, problem, theta, n=20_000, seed=0), problem.exact_grad(theta))
        worst = max(worst, float(s.bias_z.abs().max()))
    assert worst > 4          # the tests' sample size is enough to see every biased estimator's bias


def test_gumbel_softmax_bias_shrinks_with_temperature_on_an_enumerable_problem():
    problem = problems()["categorical"]
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    bias = {}
    for tau in (0.1, 1.0, 3.0):
        g = grad_samples(get("gumbel_softmax", temperature=tau), problem, theta, n=20_000, seed=0)
        bias[tau] = float((g.mean(0) - exact).norm())
    assert bias[0.1] < 0.5 * bias[1.0] < bias[3.0]


def test_relaxed_estimators_forward_the_discrete_cost():
    """Every relaxation's surrogate value is the cost at the hard sample (an unbiased estimate of
    the objective); only its gradient is the relaxed pass's."""
    problem = problems()["bits"]
    theta = problem.init_params()
    for name in BIASED:
        with vt.config.seeded(0):
            value = get(name)(problem, theta, k=20_000).detach()
        assert float(value) == pytest.approx(float(problem.exact_value(theta).detach()), abs=0.03)


def test_why_not_names_problems_without_a_relaxation():
    for problem in (vt.problems.PoissonQuadratic(), vt.problems.GaussianQuadratic()):
        for name in BIASED:
            assert "Bernoulli or categorical" in get(name).why_not(problem)
            assert not get(name).applies_to(problem)

    class Tabled(vt.problems.BernoulliQuadratic):
        cost_is_differentiable = False
    assert "relaxed_cost" in layers_of(Tabled()).why_no_relaxation()
    for name in BIASED:
        assert "relaxed_cost" in get(name).why_not(Tabled())
    with pytest.raises(ValueError, match="relaxed_cost"):
        relaxed_cost(Tabled(), torch.full((3, 1), 0.5))

    class Indexed:                  # Categorical with a cost on class indices
        def init_params(self):
            return torch.zeros(3, requires_grad=True)

        def distribution(self, theta):
            return torch.distributions.Categorical(logits=theta)

        def cost(self, z):
            return z.to(torch.float32)
    assert "class indices" in get("gumbel_softmax").why_not(Indexed())
    assert get("score_function").applies_to(Indexed())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature must be positive"):
        BinaryConcrete(torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="temperature must be > 0, got -1.0"):
        get("gumbel_softmax", temperature=-1.0)
    with pytest.raises(ValueError, match="logits must be finite"):
        ExpConcrete(torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="logits must have at least 2 classes"):
        ExpConcrete(torch.zeros(3, 1), 1.0)
    with pytest.raises(ValueError, match="gap must be > 0, got 0.0"):
        get("gapped_straight_through", gap=0.0)
    with pytest.raises(ValueError, match="sigma must be > 0, got 0.0"):
        get("igr", sigma=0.0)
    with pytest.raises(ValueError, match="delta must be > 0, got -1.0"):
        get("igr", delta=-1.0)
    with pytest.raises(ValueError, match="costs must end in shape"):
        multilinear_bits(torch.zeros(5), torch.zeros(2))
    problem = vt.problems.CategoricalCost()
    with pytest.raises(ValueError, match=r"theta must be finite"):
        get("gumbel_softmax")(problem, torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="problem must have discrete latents.*Bernoulli or categorical"):
        ProblemLayers(vt.problems.PoissonQuadratic().at(torch.tensor([1.0])))
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        get("straight_through", temperature=0.0)
    with pytest.raises(ValueError, match="'gap' is not an option of estimator 'igr'"):
        get("igr", gap=1.0)


def test_concrete_explorer_moves_samples_with_the_temperature():
    from vitools.widgets.relaxed import ConcreteExplorer
    explorer = ConcreteExplorer(n=800)
    assert explorer.data["samples"].shape == (800, 3)
    explorer.controls["log10_temperature"].value = -2.0
    assert explorer.data["mean_max"] > 0.98 and explorer.data["temperature"] == pytest.approx(0.01)
    assert torch.isfinite(explorer.data["density"]).all()
    explorer.controls["log10_temperature"].value = 1.0
    assert explorer.data["mean_max"] < 0.45
    with pytest.raises(ValueError, match="logits must end in shape"):
        ConcreteExplorer(logits=(0.0, 1.0))
    with pytest.raises(ValueError, match="temperature must be positive"):
        ConcreteExplorer(temperature=0.0)


def test_relaxed_bit_density_and_its_check():
    dist = BinaryConcrete(torch.tensor(0.3, dtype=torch.float64), 2.0)       # bounded density for tau > 1
    x = torch.linspace(1e-4, 1 - 1e-4, 200_001, dtype=torch.float64)
    assert float(torch.trapezoid(dist.log_prob_bit(x).exp(), x)) == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError, match="x must lie in"):
        dist.log_prob_bit(torch.tensor([0.0, 0.5]))
