"""Tests for vitools.widgets.discrete.PairExplorer: it compares two estimators on an enumerable SBN,
moving a control updates its data (more evaluations, less variance), and bad choices raise."""
from __future__ import annotations

import pytest
import torch

from vitools.widgets.discrete import PairExplorer

from test_protocol import _exact_model_grad, _sbn


def _explorer(**kwargs):
    model, x = _sbn()
    exact = _exact_model_grad(model, lambda: model.exact_elbo(x))
    return PairExplorer(model.on(x), exact, prefix="model.encoders", n=2000, **kwargs)


def test_moving_the_control_updates_the_data_and_putting_it_back_restores_it():
    explorer = _explorer(first="rloo", second="disarm")
    assert set(explorer.data["variance"]) == {"rloo", "disarm"}
    assert explorer.data["k"] == {"rloo": 4, "disarm": 4}
    at_4 = explorer.data["variance"]["rloo"]
    explorer.controls["k"].value = 8
    assert explorer.data["variance"]["rloo"] < 0.8 * at_4
    explorer.controls["k"].value = 4
    assert explorer.data["variance"]["rloo"] == at_4
    assert explorer.data["bias_z"]["rloo"] < 4
    assert explorer.png()[:4] == b"\x89PNG"


def test_a_biased_estimator_shows_its_bias():
    explorer = _explorer(first="rloo", second="straight_through")
    assert explorer.data["bias_z"]["straight_through"] > 8


def test_an_estimator_that_does_not_apply_is_refused():
    with pytest.raises(ValueError, match="first must be an estimator that applies"):
        _explorer(first="pathwise")
    with pytest.raises(ValueError, match="unordered_set"):
        _explorer(second="unordered_set")
