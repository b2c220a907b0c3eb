"""Figures of the gradient lab and the FIVO notebook: a near-zero variance does not flatten the
variance bars, log-axis labels stay few, one colour per method across panels, line styles tell
apart two settings of one method, the no-latent reference is drawn, legends can leave the data."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import vitools as vt  # noqa: E402
from vitools.plots import smc as smc_plots  # noqa: E402


def _visible_major_ticks(ax):
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_a_zero_variance_does_not_flatten_the_other_bars(ax):
    variances = {"score function": 2.0, "pathwise": 0.1, "score + delta-method CV": 1e-17}
    vt.plots.draw_variance_bars(ax, variances, exact={"score function": 2.1, "score + delta-method CV": 0.0})
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(2.1 * 1e-8, rel=1e-6), "the axis starts 8 decades below the largest value"
    assert hi > 2.1
    widths = [bar.get_width() for bar in ax.patches]
    assert widths[2] == pytest.approx(lo, rel=1e-6), "the near-zero bar stops at the edge"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 1 and texts[0].startswith("< 2e-08") and "1.0e-17" in texts[0]
    assert 3 <= len(_visible_major_ticks(ax)) <= 6, "few enough log labels that they do not overlap"


def test_variance_bars_without_tiny_values_are_unannotated_and_linear_axes_work(ax):
    vt.plots.draw_variance_bars(ax, {"pathwise": 1.0, "measure-valued": 0.5})
    assert len(ax.texts) == 0 and ax.get_xlim()[0] == pytest.approx(1e-8, rel=1e-6)
    fig, linear = plt.subplots()
    vt.plots.draw_variance_bars(linear, {"pathwise": 1.0, "measure-valued": 0.0}, log=False)
    assert linear.get_xscale() == "linear" and [b.get_width() for b in linear.patches] == [1.0, 0.0]
    plt.close(fig)


def test_cost_and_gradient_can_leave_the_legend_to_the_caller(ax):
    xs = torch.linspace(-1, 1, 5, dtype=torch.float64)
    vt.plots.draw_cost_and_gradient(ax, xs, {"k=1": lambda x: x ** 2}, legend=False)
    assert ax.get_legend() is None
    vt.plots.draw_cost_and_gradient(ax, xs, {"k=2": lambda x: x ** 3})
    assert ax.get_legend() is not None


def test_gap_histograms_one_colour_per_method_and_styles_for_its_settings(ax):
    gaps = {"ELBO": torch.randn(50), "FIVO, smoothing q": torch.randn(50), "FIVO, filtering q": torch.randn(50)}
    smc_plots.draw_gap_histograms(ax, gaps)
    patches = {p.get_label(): p for p in ax.patches}
    fivo_a, fivo_b, elbo = patches["FIVO, smoothing q"], patches["FIVO, filtering q"], patches["ELBO"]
    assert fivo_a.get_edgecolor() == fivo_b.get_edgecolor() != elbo.get_edgecolor()
    assert fivo_a.get_linestyle() != fivo_b.get_linestyle()
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1, "legend right of the axes"


def test_training_and_held_out_panels_colour_a_method_the_same_and_draw_the_reference():
    fig, (left, right) = plt.subplots(1, 2)
    curves = {"ELBO": np.linspace(-12, -10, 30), "FIVO": np.linspace(-12, -9, 30)}
    smc_plots.draw_training_curves(left, curves, smooth=5, reference=-11.5)
    smc_plots.draw_per_step_bounds(right, {"ELBO (trained)": np.full(8, -10.0), "FIVO (trained)": np.full(8, -9.0)},
                                   reference=-11.6)
    colour = lambda ax, label: next(l.get_color() for l in ax.lines if l.get_label() == label)   # noqa: E731
    assert colour(left, "ELBO") == colour(right, "ELBO (trained)") == vt.plots.estimator_color("elbo")
    assert colour(left, "FIVO") == colour(right, "FIVO (trained)") != colour(left, "ELBO")
    for ax, value in ((left, -11.5), (right, -11.6)):
        ref = [l for l in ax.lines if l.get_label() == "independent keys"]
        assert len(ref) == 1 and ref[0].get_ydata()[0] == value
    plt.close(fig)
