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
