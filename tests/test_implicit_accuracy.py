"""The accuracy-table machinery: references, errors, summaries, the explorer and its plots."""
import math

import matplotlib
import pytest
import torch

import vitools as vt
from vitools.implicit import accuracy as acc

matplotlib.use("Agg")


def test_reference_agrees_with_vitools_on_both_sides_of_the_series_switch():
    # alpha = 1: z = 0.5 uses the power series, z = 2 the continued fraction.
    z = torch.tensor([0.5, 2.0], dtype=torch.float64)
    ours = vt.implicit.standard_gamma_grad(z, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(acc.gamma_reference_grad(z, torch.ones(2, dtype=torch.float64)), ours, rtol=1e-12)


def test_von_mises_reference_and_errors():
    errs = acc.von_mises_relative_errors(3.0, n=4, seed=0)
    assert errs.shape == (4,) and errs.max() < 1e-10
    errs = acc.von_mises_relative_errors(30.0, n=4, seed=0)       # normal-approximation side
    assert errs.max() < 1e-6


def test_gamma_error_ranking_and_summary():
    per_alpha = {a: acc.gamma_relative_errors(a, n=4, seed=0) for a in (0.05, 5.0, 500.0)}
    rows = {r["method"]: r for r in acc.summary_rows(per_alpha, "float64")}
    assert rows["vitools implicit"]["max"] < 1e-10
    assert rows["vitools implicit"]["max"] < rows["finite differences"]["max"] < rows["torch built-in"]["max"] \
        < rows["approx. inverse CDF"]["max"]
    table = acc.markdown_table(list(rows.values()), ["method", "dtype", "mean", "max"], {"max": ".1e"})
    assert table.count("\n") == 5 and "vitools implicit" in table


def test_seconds_per_million():
    t = acc.seconds_per_million(lambda: torch.ones(1000).sum(), n=1000, repeats=2)
    assert math.isfinite(t) and t > 0


def test_explorer_updates_when_controls_move():
    from vitools.widgets.implicit import ImplicitAccuracyExplorer

    explorer = ImplicitAccuracyExplorer(n=4)
    assert explorer.data["alpha"] == 1.0
    assert explorer.data["max_error"]["vitools implicit"] < 1e-10
    explorer.controls["log10_alpha"].value = -0.25
    assert explorer.data["alpha"] == pytest.approx(10**-0.25)
    assert explorer.data["max_error"]["approx. inverse CDF"] > 1e-2   # the small-alpha formula fails near 1
    explorer.controls["dtype"].value = "float32"
    assert explorer.data["z"].shape == (4,) and explorer.data["max_error"]["vitools implicit"] < 1e-6
    assert len(explorer.png()) > 1000


def test_draw_functions_return_artists():
    from vitools.plots import implicit as p

    fig, axes = vt.plots.new_figure(ncols=3, nrows=2)
    z = torch.linspace(0.1, 5, 30)
    alpha = torch.linspace(0.5, 4, 20)
    cdf = torch.special.gammainc(alpha[:, None], z[None, :])
    assert p.draw_cdf_surface(axes[0, 0], z, alpha, cdf)
    assert p.draw_sample_gradient(axes[0, 1], z, {"vitools implicit": z, "torch built-in": z})
    assert p.draw_error_strips(axes[0, 2], {"a": torch.tensor([1e-3, 0.0])})
    assert p.draw_error_curves(axes[1, 0], alpha[:3], {"a": torch.ones(3)})
    assert p.draw_elbo_history(axes[1, 1], {"a": torch.randn(50)})
    assert p.draw_angles(axes[1, 2], torch.rand(20), z, {"a": z})


def test_accuracy_bad_input():
    with pytest.raises(ValueError, match="alpha must be positive"):
        acc.gamma_relative_errors(0.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        acc.gamma_relative_errors(1.0, dtype=torch.float16)
    with pytest.raises(ValueError, match="n must be an integer"):
        acc.gamma_relative_errors(1.0, n=0)
    with pytest.raises(ValueError, match="kappa must be positive"):
        acc.von_mises_relative_errors(-1.0)
    with pytest.raises(ValueError, match="repeats must be an integer"):
        acc.seconds_per_million(lambda: None, n=10, repeats=0)
    from vitools.widgets.implicit import ImplicitAccuracyExplorer
    with pytest.raises(ValueError, match="log10_alpha must lie in"):
        ImplicitAccuracyExplorer(log10_alpha=5.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        ImplicitAccuracyExplorer(dtype="float16")


def test_float32_rows_are_float32_end_to_end():
    """Regression: the float32 finite differences and approximate inverse CDF were computed in float64
    and cast, so they looked as accurate in float32 as in float64. Cast float64 results would be off
    by float32 rounding only (below 1e-7); float32 arithmetic throughout is off by far more."""
    shapes = (1e-2, 1.0, 100.0)
    e64 = {a: acc.gamma_relative_errors(a, n=6, dtype=torch.float64, seed=0) for a in shapes}
    e32 = {a: acc.gamma_relative_errors(a, n=6, dtype=torch.float32, seed=0) for a in shapes}
    fd64 = max(e["finite differences"].max().item() for e in e64.values())
    fd32 = max(e["finite differences"].max().item() for e in e32.values())
    assert fd64 < 1e-9 and fd32 > 1e-5                          # measured: 2e-10 and 1e-4
    # the small-shape formula in float32: measured 7e-5 against 1e-9 in float64
    assert e64[1e-2]["approx. inverse CDF"].max() < 1e-7 < 1e-6 < e32[1e-2]["approx. inverse CDF"].max()
    assert max(e["vitools implicit"].max().item() for e in e32.values()) < 1e-6


def test_float32_inverse_cdf_and_differences_stay_in_float32(monkeypatch):
    seen = []
    gammainc = torch.special.gammainc

    def spy(a, x):
        seen.append((a.dtype, x.dtype))
        return gammainc(a, x)
    monkeypatch.setattr(torch.special, "gammainc", spy)
    z = torch.tensor([0.05, 1.0, 30.0])
    g = acc._fd_inverse_cdf_grad(z, torch.tensor([0.5, 2.0, 30.0]))
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    u = torch.tensor([1e-6, 0.3, 1 - 1e-6])
    a = torch.tensor([0.5, 3.0, 300.0])          # (at alpha = 0.1, u = 1e-6 lies below float32's smallest z)
    z32 = acc._gamma_icdf_in_dtype(u, a)
    assert z32.dtype == torch.float32
    assert torch.allclose(gammainc(a, z32), u, rtol=1e-4, atol=1e-6)


def test_finite_differences_reject_other_dtypes():
    with pytest.raises(ValueError, match="z.dtype must be one of"):
        acc._fd_inverse_cdf_grad(torch.tensor([1.0], dtype=torch.float16), torch.tensor([1.0]))
