"""Tests for vitools.problems: exact values and gradients against independent computations
(quadrature, brute-force enumeration, finite differences), shapes, and input checks."""
import itertools
import math

import mpmath
import pytest
import torch

import vitools as vt
from vitools import problems as P


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps

GAUSSIAN_CASES = [
    (P.GaussianQuadratic, dict(k=2.0, mu=1.0, sigma=1.0)),
    (P.GaussianQuadratic, dict(k=-0.5, mu=0.3, sigma=2.0)),
    (P.GaussianExp, dict(k=1.0, mu=0.5, sigma=0.8)),
    (P.GaussianExp, dict(k=3.0, mu=-1.0, sigma=0.3)),
    (P.GaussianCos, dict(k=1.5, mu=0.7, sigma=0.6)),
    (P.GaussianCos, dict(k=4.0, mu=-0.2, sigma=1.3)),
]


def all_problems():
    return [
        *(cls(**kw) for cls, kw in GAUSSIAN_CASES),
        P.BernoulliQuadratic(0.45),
        P.BernoulliQuadratic(0.3, init=0.8),
        P.BernoulliQuadratic(0.499, param="probability", init=0.3),
        P.FactorisedBernoulli.random(4, seed=0, logits=[0.5, -1.0, 0.2, 1.5]),
        P.FactorisedBernoulli.random(7, seed=3, logits=torch.linspace(-1.0, 1.0, 7)),
        P.CategoricalCost(),
        P.CategoricalCost(costs=[1.0, -2.0, 0.5], logits=[0.3, -0.4, 1.0]),
        P.PoissonQuadratic(k=3.0, rate=2.0),
        P.PoissonQuadratic(k=0.5, rate=4.5),
        P.UniformLinear(1.0),
        P.UniformLinear(2.5),
    ]


def test_gaussian_exact_value_against_quadrature():
    mpmath.mp.dps = 20
    for cls, kw in GAUSSIAN_CASES:
        problem = cls(**kw)
        theta = problem.init_params().detach().double()    # the stored (float32) parameters
        mu, sigma = (mpmath.mpf(v) for v in theta.tolist())
        k = problem.k
        cost = {P.GaussianQuadratic: lambda x: (x - k) ** 2, P.GaussianExp: lambda x: mpmath.exp(-k * x**2),
                P.GaussianCos: lambda x: mpmath.cos(k * x)}[cls]
        density = lambda x: mpmath.npdf(x, mu, sigma)  # noqa: E731
        truth = mpmath.quad(lambda x: cost(x) * density(x), [-mpmath.inf, mu, mpmath.inf])
        assert float(problem.exact_value(theta)) == pytest.approx(float(truth), rel=1e-10, abs=1e-12), (problem, kw)


def test_gaussian_quadratic_closed_form_gradient():
    problem = P.GaussianQuadratic(k=2.0, mu=1.0, sigma=1.5)
    grad = problem.exact_grad(problem.init_params().double())
    assert grad.tolist() == pytest.approx([2 * (1.0 - 2.0), 2 * 1.5])


@pytest.mark.parametrize("index", range(len(all_problems())))
def test_exact_grad_matches_finite_differences(index):
    problem = all_problems()[index]
    theta = problem.init_params().detach().double()
    grad = problem.exact_grad(theta)
    assert grad.shape == theta.shape
    h = 1e-6
    for i in range(theta.numel()):
        step = torch.zeros_like(theta)
        step[i] = h
        fd = (problem.exact_value(theta + step) - problem.exact_value(theta - step)) / (2 * h)
        assert float(grad[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8), (problem, i)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def brute_bernoulli(target, param, theta):
    p = _sigmoid(theta) if param == "logit" else theta
    value = p * (1 - target) ** 2 + (1 - p) * (0 - target) ** 2
    dvalue_dp = (1 - target) ** 2 - target**2
    return value, dvalue_dp * (p * (1 - p) if param == "logit" else 1.0)


def brute_factorised(costs, logits):
    """Sum over every bit string in plain Python; gradient via d q(b) / d logit_d = q(b) (b_d - p_d)."""
    probs = [_sigmoid(a) for a in logits]
    value, grad = 0.0, [0.0] * len(logits)
    for bits in itertools.product([0, 1], repeat=len(logits)):
        q = math.prod(p if b else 1 - p for p, b in zip(probs, bits))
        f = costs[sum(b << d for d, b in enumerate(bits))]
        value += q * f
        for d, (p, b) in enumerate(zip(probs, bits)):
            grad[d] += q * f * (b - p)
    return value, grad


def brute_categorical(costs, logits):
    z = sum(math.exp(a) for a in logits)
    probs = [math.exp(a) / z for a in logits]
    value = sum(p * c for p, c in zip(probs, costs))
    return value, [p * (c - value) for p, c in zip(probs, costs)]


def brute_poisson(k, rate, terms=200):
    value, grad, pmf = 0.0, 0.0, math.exp(-rate)
    for x in range(terms):
        if x > 0:
            pmf *= rate / x
        value += pmf * (x - k) ** 2
        grad += pmf * (x / rate - 1) * (x - k) ** 2          # d pmf / d rate = pmf (x / rate - 1)
    return value, grad


@pytest.mark.parametrize("problem,brute", [
    (P.BernoulliQuadratic(0.45), lambda pr, th: brute_bernoulli(pr.target, "logit", th[0])),
    (P.BernoulliQuadratic(0.2, init=-1.3), lambda pr, th: brute_bernoulli(pr.target, "logit", th[0])),
    (P.BernoulliQuadratic(0.499, param="probability", init=0.3),
     lambda pr, th: brute_bernoulli(pr.target, "probability", th[0])),
    (P.PoissonQuadratic(k=3.0, rate=2.0), lambda pr, th: brute_poisson(pr.k, th[0])),
    (P.PoissonQuadratic(k=0.5, rate=4.5), lambda pr, th: brute_poisson(pr.k, th[0])),
    (P.UniformLinear(2.5), lambda pr, th: (th[0] / 2, 0.5)),
])
def test_scalar_problems_against_brute_force(problem, brute):
    theta = problem.init_params().detach().double()
    value, grad = brute(problem, theta.tolist())
    assert float(problem.exact_value(theta)) == pytest.approx(value, rel=1e-9)
    assert problem.exact_grad(theta).tolist() == pytest.approx([grad], rel=1e-9)


@pytest.mark.parametrize("bits,seed", [(4, 0), (6, 1), (8, 2)])
def test_factorised_bernoulli_against_enumeration(bits, seed):
    logits = torch.linspace(-1.5, 1.2, bits)
    problem = P.FactorisedBernoulli.random(bits, seed=seed, logits=logits)
    theta = problem.init_params().detach().double()
    value, grad = brute_factorised(problem.costs.tolist(), theta.tolist())
    assert float(problem.exact_value(theta)) == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert problem.exact_grad(theta).tolist() == pytest.approx(grad, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("costs,logits", [((0.0, 1.0, 0.25, 0.6), (0.0, 0.0, 0.0, 0.0)),
                                          ((1.0, -2.0, 0.5), (0.3, -0.4, 1.0))])
def test_categorical_against_enumeration(costs, logits):
    problem = P.CategoricalCost(costs=costs, logits=logits)
    theta = problem.init_params().detach().double()
    value, grad = brute_categorical(problem.costs.tolist(), theta.tolist())
    assert float(problem.exact_value(theta)) == pytest.approx(value, rel=1e-9)
    assert problem.exact_grad(theta).tolist() == pytest.approx(grad, rel=1e-7, abs=1e-12)


def test_bernoulli_docstring_example():
    problem = P.BernoulliQuadratic(target=0.45)
    assert problem.exact_grad(problem.init_params()).tolist() == pytest.approx([0.025])


def test_factorised_states_and_cost_index():
    problem = P.FactorisedBernoulli.random(5, seed=4)
    states = problem.states()
    assert states.shape == (32, 5)
    index = [int(sum(int(b) << d for d, b in enumerate(row))) for row in states.tolist()]
    assert index == list(range(32))
    assert torch.equal(problem.cost(states), problem.costs)
    batched = states.reshape(4, 8, 5)
    assert torch.equal(problem.cost(batched), problem.costs.reshape(4, 8))


@pytest.mark.parametrize("digits, base", [(1, 2), (3, 2), (2, 3), (3, 4)])
def test_enumerate_states_lists_every_tuple_least_significant_first(digits, base):
    states = P.enumerate_states(digits, base)
    assert states.shape == (base**digits, digits) and states.dtype == torch.int64
    expected = [tuple(reversed(t)) for t in itertools.product(range(base), repeat=digits)]
    assert [tuple(row) for row in states.tolist()] == expected
    with pytest.raises(ValueError, match="base must be an integer >= 2"):
        P.enumerate_states(3, 1)
    with pytest.raises(ValueError, match="num_digits must be an integer >= 1"):
        P.enumerate_states(0)


def test_random_is_reproducible():
    a = P.FactorisedBernoulli.random(5, seed=9).costs
    assert torch.equal(a, P.FactorisedBernoulli.random(5, seed=9).costs)
    assert not torch.equal(a, P.FactorisedBernoulli.random(5, seed=10).costs)


@pytest.mark.parametrize("index", range(len(all_problems())))
def test_batched_shapes(index):
    """theta [*batch, P] -> distribution batch [*batch], costs [*sample, *batch], values [*batch]."""
    problem = all_problems()[index]
    theta = problem.init_params()
    assert theta.is_leaf and theta.requires_grad and theta.dim() == 1
    batched = theta.detach().expand(3, 5, *theta.shape)
    dist = problem.distribution(batched)
    assert tuple(dist.batch_shape) == (3, 5)
    z = dist.sample((7,))
    assert problem.cost(z).shape == (7, 3, 5)
    values = problem.exact_value(batched)
    assert values.shape == (3, 5)
    assert torch.allclose(values, problem.exact_value(theta).expand(3, 5))
    assert problem.exact_grad(batched).shape == batched.shape


def test_catalog_builds_every_problem():
    catalog = P.catalog()
    assert len(catalog) == 8
    for label, factory in catalog.items():
        problem = factory()
        assert isinstance(problem, P.Problem) and problem.describe() in repr(problem), label
        theta = problem.init_params()
        assert problem.exact_grad(theta).shape == theta.shape


def test_base_problem_has_no_exact_answer():
    class Custom(P.Problem):
        def distribution(self, theta):
            return torch.distributions.Normal(theta[..., 0], 1.0)

        def cost(self, z):
            return z

    problem = Custom([0.5])
    assert problem.exact_value(problem.init_params()) is None
    assert problem.exact_grad(problem.init_params()) is None


# -- bad input: one test per check --------------------------------------------------------
def _theta(values):
    return vt.config.tensor(values)


BAD_INPUT = [
    (lambda: P.GaussianQuadratic(sigma=0.0), r"sigma must be positive, got 0.0"),
    (lambda: P.GaussianCos(sigma=-1.0), r"sigma must be positive, got -1.0"),
    (lambda: P.GaussianQuadratic(k=math.nan), r"k must be finite, got nan"),
    (lambda: P.GaussianExp(k=0.0), r"k must be positive, got 0.0"),
    (lambda: P.GaussianExp(k=-2.0), r"k must be positive, got -2.0"),
    (lambda: P.GaussianCos(mu=math.nan), r"mu must be finite, got nan"),
    (lambda: P.GaussianQuadratic().distribution(_theta([0.0, -0.5])), r"sigma must be positive, got -0.5"),
    (lambda: P.GaussianQuadratic().distribution(_theta([0.0, 1.0, 2.0])), r"theta must end in shape \(2,\) \(mu, sigma\), got shape \(3,\)"),
    (lambda: P.GaussianQuadratic().distribution(_theta([1.0])), r"theta must end in shape \(2,\).*got shape \(1,\)"),
    (lambda: P.BernoulliQuadratic(target=1.5), r"target must lie in \[0, 1\], got 1.5"),
    (lambda: P.BernoulliQuadratic(target=-0.1), r"target must lie in \[0, 1\], got -0.1"),
    (lambda: P.BernoulliQuadratic(param="prob"), r"param must be one of \['logit', 'probability'\], got 'prob'"),
    (lambda: P.BernoulliQuadratic(param="probability", init=1.0), r"init must lie in \(0, 1\), got 1.0"),
    (lambda: P.BernoulliQuadratic(init=math.nan), r"init must be finite, got nan"),
    (lambda: P.BernoulliQuadratic(param="probability").distribution(_theta([1.2])), r"p must lie in \[0, 1\], got 1.2"),
    (lambda: P.BernoulliQuadratic().distribution(_theta([0.1, 0.2])), r"theta must end in shape \(1,\).*got shape \(2,\)"),
    (lambda: P.FactorisedBernoulli([0.0, 1.0, 2.0]), r"costs must be a 1-D table of length 2\*\*D, got shape \(3,\)"),
    (lambda: P.FactorisedBernoulli([[0.0, 1.0], [2.0, 3.0]]), r"costs must be a 1-D table of length 2\*\*D, got shape \(2, 2\)"),
    (lambda: P.FactorisedBernoulli([0.0, math.nan, 1.0, 2.0]), r"costs must be finite, got nan"),
    (lambda: P.FactorisedBernoulli(torch.zeros(2**17)), r"costs describe 17 bits; at most 16"),
    (lambda: P.FactorisedBernoulli([0.0, 1.0, 2.0, 3.0], logits=[0.0, 1.0, 2.0]), r"logits must end in shape \(2,\), got shape \(3,\)"),
    (lambda: P.FactorisedBernoulli.random(0), r"num_bits must be an integer >= 1, got 0"),
    (lambda: P.FactorisedBernoulli.random(3, seed=-1), r"seed must be a non-negative integer, got -1"),
    (lambda: P.FactorisedBernoulli.random(4).distribution(_theta([0.0] * 5)), r"theta must end in shape \(4,\).*got shape \(5,\)"),
    (lambda: P.CategoricalCost(costs=[1.0]), r"costs must be a 1-D table with at least 2 classes, got shape \(1,\)"),
    (lambda: P.CategoricalCost(costs=[1.0, math.inf]), r"costs must be finite, got inf"),
    (lambda: P.CategoricalCost(costs=[1.0, 2.0], logits=[0.0, math.nan]), r"init must be finite, got nan"),
    (lambda: P.CategoricalCost(costs=[1.0, 2.0], logits=[0.0]), r"logits must end in shape \(2,\), got shape \(1,\)"),
    (lambda: P.PoissonQuadratic(rate=0.0), r"rate must be positive, got 0.0"),
    (lambda: P.PoissonQuadratic(rate=-2.0), r"rate must be positive, got -2.0"),
    (lambda: P.PoissonQuadratic(k=math.nan), r"k must be finite, got nan"),
    (lambda: P.PoissonQuadratic().distribution(_theta([-1.0])), r"rate must be positive, got -1.0"),
    (lambda: P.UniformLinear(upper=0.0), r"upper must be positive, got 0.0"),
    (lambda: P.UniformLinear(upper=-3.0), r"upper must be positive, got -3.0"),
    (lambda: P.UniformLinear().distribution(_theta([0.0])), r"theta must be positive, got 0.0"),
]


@pytest.mark.parametrize("make,message", BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input(make, message):
    with pytest.raises(ValueError, match=message):
        make()
