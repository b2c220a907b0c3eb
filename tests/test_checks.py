"""Tests for vitools.checks: every check accepts what it should and rejects the rest with a
ValueError that names the argument and the value."""
import math

import numpy as np
import pytest
import torch

from vitools import checks


@pytest.mark.parametrize("value,minimum", [(1, 1), (5, 1), (0, 0), (2, 2), (np.int64(3), 1)])
def test_count_accepts(value, minimum):
    out = checks.count("n", value, minimum=minimum)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value,minimum,shown", [
    (0, 1, "0"), (-3, 1, "-3"), (1, 2, "1"), (2.0, 1, "2.0"), (1.5, 1, "1.5"), (True, 1, "True"),
    ("4", 1, "'4'"), (None, 1, "None"), (1e4, 1, "10000.0"),
])
def test_count_rejects(value, minimum, shown):
    with pytest.raises(ValueError, match=rf"^n must be an integer >= {minimum}, got {shown}$"):
        checks.count("n", value, minimum=minimum)


@pytest.mark.parametrize("value", [0.0, -2, [1.0, 2.0], torch.tensor([[1.0, -1.0]]), torch.tensor([1, 2])])
def test_finite_accepts(value):
    assert isinstance(checks.finite("x", value), torch.Tensor)


@pytest.mark.parametrize("value,bad", [
    (math.nan, "nan"), (math.inf, "inf"), (torch.tensor([1.0, -math.inf]), "-inf"),
    ([0.0, math.nan, 1.0], "nan"),
])
def test_finite_rejects(value, bad):
    with pytest.raises(ValueError, match=rf"^x must be finite, got {bad}"):
        checks.finite("x", value)


@pytest.mark.parametrize("value", [1e-8, 3, [0.5, 2.0], torch.tensor([1.0])])
def test_positive_accepts(value):
    checks.positive("sigma", value)


@pytest.mark.parametrize("value,bad", [(0.0, "0.0"), (-1, "-1"), ([1.0, -0.5], "-0.5"), (math.nan, "nan")])
def test_positive_rejects(value, bad):
    with pytest.raises(ValueError, match=rf"^sigma must (be positive|be finite), got {bad}"):
        checks.positive("sigma", value)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5, [0.0, 0.3, 1.0]])
def test_probability_accepts(value):
    checks.probability("p", value)


@pytest.mark.parametrize("value,bad", [(-0.1, "-0.1"), (1.5, "1.5"), ([0.2, 2.0], "2.0")])
def test_probability_rejects(value, bad):
    with pytest.raises(ValueError, match=rf"^p must lie in \[0, 1\], got {bad}"):
        checks.probability("p", value)


@pytest.mark.parametrize("value,bad", [(0.0, "0.0"), (1.0, "1.0"), (-0.2, "-0.2")])
def test_probability_open_interval(value, bad):
    with pytest.raises(ValueError, match=rf"^p must lie in \(0, 1\), got {bad}"):
        checks.probability("p", value, open_interval=True)
    checks.probability("p", 0.5, open_interval=True)


def test_probability_rejects_nan():
    with pytest.raises(ValueError, match=r"^p must be finite, got nan"):
        checks.probability("p", math.nan)


def test_binary():
    checks.binary("x", torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"^x must contain only 0 and 1, got 0.5 in a tensor of shape \(3,\)$"):
        checks.binary("x", torch.tensor([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("value_shape,expected", [((2,), (2,)), ((5, 2), (2,)), ((3, 4), (None, 4)), ((7,), ())])
def test_shape_accepts(value_shape, expected):
    t = torch.zeros(value_shape)
    assert checks.shape("theta", t, expected) is t


@pytest.mark.parametrize("value_shape,expected,shown", [
    ((3,), (2,), r"\(2,\)"), ((2, 3), (2,), r"\(2,\)"), ((4,), (None, 4), r"\('\*', 4\)"),
])
def test_shape_rejects(value_shape, expected, shown):
    got = str(tuple(value_shape)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^theta must end in shape {shown} \(mu, sigma\), got shape {got}$"):
        checks.shape("theta", torch.zeros(value_shape), expected, what="mu, sigma")


def test_choice():
    assert checks.choice("mode", "a", {"a", "b"}) == "a"
    with pytest.raises(ValueError, match=r"^mode must be one of \['a', 'b'\], got 'c'$"):
        checks.choice("mode", "c", {"a", "b"})


def test_describe_large_tensor():
    with pytest.raises(ValueError, match=r"got -1.0 in a tensor of shape \(2, 2\)"):
        checks.positive("scale", torch.tensor([[1.0, 1.0], [-1.0, 2.0]]))
