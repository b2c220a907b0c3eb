"""The compiled Gamma kernel (native/gamma_grad.c) against the torch path and mpmath, and the loader native.py."""
import os
import warnings

import pytest
import torch

from test_implicit_gamma import _hardest_points, _reference   # mpmath references of the torch path's tests
from vitools.implicit import gamma, gamma_asymptotic as asym, gamma_native, native

SHAPES = [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 9.99, 10.0, 10.01, 16.0, 100.0, 1e3, 4096.0, 1e4]
LEVELS = [1e-6, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6]


@pytest.fixture
def fresh_loader():
    """No library or warning cached from before, and none left behind for later tests."""
    native._load.cache_clear()
    native._warn_once.cache_clear()
    yield
    native._load.cache_clear()
    native._warn_once.cache_clear()


def _torch_path(monkeypatch, z, alpha):
    with monkeypatch.context() as m:
        m.setenv(native.ENV_MODE, "off")
        return gamma.standard_gamma_grad(z, alpha)


def _grid(dtype):
    """z at every CDF level of every shape (rounded to dtype), and 20 000 mixed draws."""
    a = torch.tensor(SHAPES, dtype=torch.float64).repeat_interleave(len(LEVELS))
    u = torch.tensor(LEVELS, dtype=torch.float64).repeat(len(SHAPES))
    gen = torch.Generator().manual_seed(3)
    mixed = 10 ** (torch.rand(20_000, generator=gen, dtype=torch.float64) * 7 - 3)
    z = torch.cat([gamma.gamma_icdf(u, a, iterations=120), torch._standard_gamma(mixed, generator=gen)])
    return z.to(dtype), torch.cat([a, mixed]).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_and_torch_paths_agree_over_shapes_and_levels(monkeypatch, dtype):
    monkeypatch.setenv(native.ENV_MODE, "on")
    z, a = _grid(dtype)
    ours = gamma.standard_gamma_grad(z, a)
    theirs = _torch_path(monkeypatch, z, a)
    assert ours.dtype == dtype and ours.shape == z.shape
    assert torch.equal(ours == 0, theirs == 0) and torch.isfinite(ours).all()
    normal = theirs >= torch.finfo(dtype).tiny          # (subnormal results: the torch path loses digits)
    assert normal.sum() > 0.8 * len(z) and ((ours > 0) == (theirs > 0)).all()
    rel = ((ours - theirs)[normal] / theirs[normal]).double().abs()
    ulp = torch.finfo(dtype).eps
    if dtype == torch.float64:
        # other summation orders and stopping rules: an ulp or so, tens where the series' bracket cancels
        assert rel.median() <= ulp and rel.quantile(0.99) < 8 * ulp and rel.max() < 50 * ulp
    else:
        assert rel.max() <= ulp                    # both round the same double-precision value


@pytest.mark.parametrize("single, bound", [(False, 1e-13), (True, 1e-9)])
def test_kernel_matches_mpmath_at_the_hardest_points(monkeypatch, single, bound):
    # the series' and the fraction's slowest corners, each Temme band's corners, the far tails, in float64
    pts = _hardest_points()
    for row, a_min in enumerate(asym.A_FLOORS):
        for eta_max in asym.ETA_LEVELS:
            pts += [(a_min, a_min * (1 + 0.9999 * m)) for m in asym.mu_bounds(eta_max)]
    pts += [(a, a * lam) for a in (10.0, 1e3, 1e5) for lam in (0.05, 0.2, 3.0, 6.0)]
    pts += [(1e-3, 1e-300), (0.4616, 1.0), (0.4616, 0.3), (1e4, 1e4 * (1 + 1e-9)), (5.0, 6.0 - 1e-12)]
    a = torch.tensor([p[0] for p in pts], dtype=torch.float64)
    z = torch.tensor([p[1] for p in pts], dtype=torch.float64)
    ref = torch.tensor([_reference(ai, zi) for ai, zi in pts], dtype=torch.float64)
    assert native.library("gamma_grad") is not None
    ours = gamma_native.standard_gamma_grad(z, a, gamma._NATIVE_CF[single])   # float64 in, given truncation
    assert ((ours - ref) / ref).abs().max() < bound
    theirs = _torch_path(monkeypatch, z, a)
    assert ((theirs - ref) / ref).abs().max() < 1e-13


def test_kernel_takes_float32_broadcast_and_zero(monkeypatch):
    monkeypatch.setenv(native.ENV_MODE, "on")
    z = torch.tensor([[0.0, 0.5, 2.0], [1e-30, 40.0, 3.0]])
    ours = gamma.standard_gamma_grad(z, torch.tensor(3.0))            # one shape for every sample
    theirs = _torch_path(monkeypatch, z, torch.tensor(3.0))
    assert ours.dtype == torch.float32 and ours[0, 0] == 0 and torch.allclose(ours, theirs, rtol=2e-7, atol=0)
    mixed = gamma.standard_gamma_grad(z, torch.full((3,), 3.0, dtype=torch.float64))   # float64 shape
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, theirs, rtol=2e-7, atol=0)
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    strided = gamma.standard_gamma_grad(z.t(), a)                   # not contiguous, shapes by row
    assert torch.equal(strided, gamma.standard_gamma_grad(z.t().contiguous(), a))
    assert torch.allclose(strided, _torch_path(monkeypatch, z.t(), a), rtol=2e-7, atol=0)


def test_huge_samples_and_shapes_agree_with_the_torch_path(monkeypatch):
    # past 2^200 the fraction takes its one-sample form (the division-free one would overflow)
    monkeypatch.setenv(native.ENV_MODE, "on")
    z = torch.tensor([1e300, 1e59, 1e61, 3e250, 2e249, 1e300], dtype=torch.float64)
    a = torch.tensor([2.0, 1.5, 1.5, 1e250, 1e250, 1e299], dtype=torch.float64)
    ours, theirs = gamma.standard_gamma_grad(z, a), _torch_path(monkeypatch, z, a)
    assert torch.isfinite(ours).all() and torch.allclose(ours, theirs, rtol=1e-13, atol=0)


def test_off_uses_the_torch_path_and_on_the_kernel(monkeypatch):
    z = torch.tensor([0.3, 2.5, 120.0], dtype=torch.float64)
    a = torch.tensor([0.7, 1.5, 100.0], dtype=torch.float64)
    ref = torch.tensor([_reference(ai, zi) for ai, zi in zip(a.tolist(), z.tolist())], dtype=torch.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("the wrong path was taken")

    with monkeypatch.context() as m:
        m.setenv(native.ENV_MODE, "off")
        m.setattr(gamma_native, "standard_gamma_grad", refuse)
        assert native.library("gamma_grad") is None
        assert ((gamma.standard_gamma_grad(z, a) - ref) / ref).abs().max() < 1e-14
    with monkeypatch.context() as m:
        m.setenv(native.ENV_MODE, "on")
        m.setattr(gamma, "_chunked_run", refuse)
        assert ((gamma.standard_gamma_grad(z, a) - ref) / ref).abs().max() < 1e-14


# --- the loader ---

def test_unknown_mode_is_named(monkeypatch):
    monkeypatch.setenv(native.ENV_MODE, "sometimes")
    with pytest.raises(ValueError, match="VITOOLS_NATIVE must be one of auto, on, off, got 'sometimes'"):
        native.library("gamma_grad")
    monkeypatch.setenv(native.ENV_MODE, " OFF ")
    assert native.mode() == "off" and native.library("gamma_grad") is None


def test_unknown_kernel_is_named(monkeypatch, fresh_loader):
    monkeypatch.setenv(native.ENV_MODE, "on")
    with pytest.raises(ValueError, match="name must be a kernel source in .*, got 'no_such_kernel'"):
        native.library("no_such_kernel")


def test_failing_compiler_raises_under_on_and_falls_back_under_auto(monkeypatch, tmp_path, fresh_loader):
    monkeypatch.setenv("CC", "false")                    # exists, and fails whatever it is asked
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(native.ENV_MODE, "on")
    with pytest.raises(native.NativeBuildError, match="false could not build gamma_grad.c"):
        native.library("gamma_grad")
    assert not list(tmp_path.iterdir())                  # no partial library left behind
    monkeypatch.setenv(native.ENV_MODE, "auto")
    z = torch.tensor([0.5, 3.0, 50.0], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 40.0], dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = gamma.standard_gamma_grad(z, a)
        second = gamma.standard_gamma_grad(z, a)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "torch path" in messages[0] and "false could not build" in messages[0]
    assert torch.equal(first, second) and torch.equal(first, _torch_path(monkeypatch, z, a))


def test_build_goes_to_the_cache_folder_once(monkeypatch, tmp_path, fresh_loader):
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(native.ENV_MODE, "on")
    lib = native.library("gamma_grad")
    built = list(tmp_path.iterdir())
    assert len(built) == 1 and built[0].name.startswith("gamma_grad-") and built[0].suffix == ".so"
    assert lib._name == str(built[0]) and native.library("gamma_grad") is lib      # loaded once per process
    stamp = built[0].stat().st_mtime_ns
    native._load.cache_clear()                           # a new process: finds the built library, no rebuild
    assert native.library("gamma_grad")._name == str(built[0]) and built[0].stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == built
    status = native.status()
    assert status["kernels"]["gamma_grad"] == "loaded" and status["cache_dir"] == str(tmp_path)


def test_use_sets_the_mode_for_a_block_and_restores_it(monkeypatch):
    monkeypatch.setenv(native.ENV_MODE, "on")
    with native.use("off"):
        assert native.mode() == "off" and native.library("gamma_grad") is None
    assert native.mode() == "on"
    monkeypatch.delenv(native.ENV_MODE)
    with pytest.raises(RuntimeError, match="inside"):
        with native.use("off"):
            raise RuntimeError("inside")
    assert native.ENV_MODE not in os.environ
    with pytest.raises(ValueError, match="chosen.*'fast'"):
        with native.use("fast"):
            pass
