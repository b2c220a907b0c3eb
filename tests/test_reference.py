"""The no-latent reference: independent Bernoulli units fitted by smoothed training means."""
import math

import pytest
import torch

import vitools as vt
from vitools.models import IndependentBernoulli


def test_fit_is_the_smoothed_mean_and_log_prob_matches_torch():
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    ref = IndependentBernoulli.fit(x, smoothing=1.0)
    torch.testing.assert_close(ref.probs, (x.sum(0) + 1) / 6)
    expected = torch.distributions.Bernoulli(probs=ref.probs).log_prob(x).sum(-1)
    torch.testing.assert_close(ref.log_prob(x), expected)


def test_training_means_maximise_the_training_likelihood():
    x = vt.data.small_digits("train", n=200)
    best = IndependentBernoulli.fit(x, smoothing=1e-3).mean_log_prob(x)
    for shift in (-0.05, 0.05):
        other = IndependentBernoulli((IndependentBernoulli.fit(x, smoothing=1e-3).probs + shift).clamp(1e-3, 1 - 1e-3))
        assert other.mean_log_prob(x) < best


def test_sequences_are_scored_per_valid_step():
    x = torch.zeros(2, 3, 4)
    x[0, 0, 1] = 1.0
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ref = IndependentBernoulli.fit(x, mask, smoothing=0.5)
    torch.testing.assert_close(ref.probs, torch.tensor([0.5, 1.5, 0.5, 0.5]) / 4)
    per_step = ref.log_prob(x)
    assert math.isclose(ref.mean_log_prob(x, mask), float((per_step * mask).sum() / 3), rel_tol=1e-6)


@pytest.mark.parametrize("kwargs,word", [({"smoothing": 0.0}, "smoothing"), ({"smoothing": float("nan")}, "smoothing")])
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        IndependentBernoulli.fit(torch.zeros(3, 2), **kwargs)
    with pytest.raises(ValueError, match="x"):
        IndependentBernoulli.fit(torch.full((3, 2), 2.0))
    with pytest.raises(ValueError, match="probs"):
        IndependentBernoulli(torch.tensor([0.0, 0.5]))
