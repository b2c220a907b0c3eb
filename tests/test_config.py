"""Tests for vitools.config: device selection, seeding, generators."""
import io
import random

import numpy as np
import pytest
import torch

import vitools as vt
from vitools import config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_device_default_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv(config.ENV_DEVICE, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.device().type == expected


@pytest.mark.parametrize("value", ["cpu", " cpu ", "CPU".lower()])
def test_device_honours_env(monkeypatch, value):
    monkeypatch.setenv(config.ENV_DEVICE, value)
    assert config.device() == torch.device("cpu")


def test_empty_env_means_default(monkeypatch):
    monkeypatch.setenv(config.ENV_DEVICE, "   ")
    assert config.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("value", ["garbage", "gpu0", "cuda:x"])
def test_device_rejects_garbage(monkeypatch, value):
    monkeypatch.setenv(config.ENV_DEVICE, value)
    with pytest.raises(ValueError, match=rf"VITOOLS_DEVICE='{value}'"):
        config.device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda(monkeypatch, value):
    monkeypatch.setenv(config.ENV_DEVICE, value)
    with pytest.raises(ValueError, match=rf"VITOOLS_DEVICE='{value}'.*no CUDA"):
        config.device()


@pytest.mark.gpu
@needs_cuda
def test_device_cuda_with_cuda(monkeypatch):
    monkeypatch.setenv(config.ENV_DEVICE, "cuda")
    assert config.device().type == "cuda"
    assert config.tensor([1.0]).device.type == "cuda"


def test_device_argument_wins_over_env_and_is_checked(monkeypatch):
    monkeypatch.setenv(config.ENV_DEVICE, "garbage")
    assert config.device("cpu") == config.device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device='gpu0' is not a torch device"):
        config.device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_device_argument_cuda_without_cuda():
    with pytest.raises(ValueError, match=r"^device='cuda'.*no CUDA"):
        config.device("cuda")


def test_tensor_dtype_and_device(monkeypatch):
    monkeypatch.setenv(config.ENV_DEVICE, "cpu")
    t = config.tensor([1, 2])
    assert t.dtype == config.DEFAULT_DTYPE and t.device.type == "cpu"
    ints = config.tensor(torch.tensor([1, 2]))
    assert ints.dtype == torch.int64                      # integer tensors keep their dtype
    assert config.tensor([1.0], dtype=torch.float64).dtype == torch.float64


def test_seed_everything_seeds_all_generators():
    config.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(()).item())
    config.seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(()).item())
    assert a == b
    config.seed_everything(124)
    assert torch.rand(()).item() != a[2] or random.random() != a[0]


def test_seeded_is_reproducible_and_restores_state():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    with config.seeded(0):
        a = torch.randn(5)
    assert torch.equal(torch.get_rng_state(), before)
    with config.seeded(0):
        b = torch.randn(5)
    with config.seeded(1):
        c = torch.randn(5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), before)


def test_seeded_none_uses_current_state():
    torch.manual_seed(3)
    with config.seeded(None):
        a = torch.randn(3)
    torch.manual_seed(3)
    assert torch.equal(a, torch.randn(3))


def test_generator_reproducible():
    g1, g2, g3 = config.generator(5, on="cpu"), config.generator(5, on="cpu"), config.generator(6, on="cpu")
    a, b, c = (torch.rand(4, generator=g) for g in (g1, g2, g3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert config.generator(0).device.type == config.device().type


BAD_SEEDS = [-1, 1.5, "0", True, np.float64(2.0)]


@pytest.mark.parametrize("seed", [*BAD_SEEDS, None])
@pytest.mark.parametrize("func", ["seed_everything", "generator"])
def test_bad_seed(func, seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer, got"):
        getattr(config, func)(seed)


@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_bad_seed_seeded(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer, got"):
        with config.seeded(seed):
            pass


def test_lazy_submodule_access():
    assert vt.config is config
    with pytest.raises(AttributeError):
        vt.not_a_module


def test_numpy_integer_seeds_are_accepted_everywhere():
    import numpy as np

    seed = np.int64(3)
    vt.config.seed_everything(seed)
    with vt.config.seeded(seed):
        a = torch.randn(2)
    assert torch.equal(a, torch.randn(2, generator=vt.config.generator(seed, on="cpu")))


def test_progress_bars_follow_vitools_progress(monkeypatch):
    monkeypatch.setenv("VITOOLS_PROGRESS", "0")
    assert not vt.config.progress_enabled()
    assert vt.config.progress(range(3)).disable
    monkeypatch.setenv("VITOOLS_PROGRESS", "1")
    assert vt.config.progress_enabled()
    assert not vt.config.progress(range(3), file=io.StringIO()).disable
    assert vt.config.progress(range(3), disable=True).disable
    monkeypatch.setenv("VITOOLS_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="VITOOLS_PROGRESS"):
        vt.config.progress_enabled()
