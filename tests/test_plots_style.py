"""vitools.plots.style: 120 dpi or more, one colour per method by name, legends off the data."""
import matplotlib as mpl
import pytest

from vitools.plots import style


def test_use_style_sets_at_least_120_dpi():
    style.use_style()
    assert mpl.rcParams["figure.dpi"] >= 120 and mpl.rcParams["savefig.dpi"] >= 120
    style.use_style(150)
    assert mpl.rcParams["figure.dpi"] == 150
    for bad in (80, 0, "high", True):
        with pytest.raises(ValueError, match="dpi"):
            style.use_style(bad)
    style.use_style()


@pytest.mark.parametrize("a, b", [("FIVO (K=64)", "FIVO (K=4)"), ("fivo", "FIVO (K=32)"), ("REINFORCE", "score function"),
                                  ("REBAR, eta = 0.50", "rebar"), ("gumbel_softmax", "Gumbel-Softmax"),
                                  ("straight_through", "straight-through"), ("ESS (FIVO)", "ESS (IWAE)")])
def test_a_method_keeps_its_colour_whatever_its_settings(a, b):
    assert style.estimator_color(a) == style.estimator_color(b)


@pytest.mark.parametrize("figure", [
    ["score function", "score + moving-average baseline", "score + leave-one-out baseline", "score + delta-method CV",
     "pathwise", "measure-valued", "score + constant baseline"],
    ["ELBO", "IWAE (K=64)", "FIVO (K=64)"],
    ["IWAE", "VIMCO", "NVIL", "DReG", "STL", "RWS", "nvil_multisample"],
    ["gumbel_softmax", "straight_through", "gapped_straight_through", "igr", "arm", "disarm", "rebar", "score function"],
    ["rebar", "relax", "lax", "arm", "disarm", "score function", "nvil"],
])
def test_methods_drawn_together_have_different_colours(figure):
    colours = [style.estimator_color(label) for label in figure]
    assert len(set(colours)) == len(colours), dict(zip(figure, colours))


def test_every_registered_estimator_has_a_fixed_colour():
    import vitools as vt
    unknown = [n for n in vt.estimators.names() if style.method_key(n) not in style.METHOD_COLORS]
    assert not unknown, f"add {unknown} to plots.style.METHOD_COLORS"


def test_unknown_labels_get_a_stable_colour_of_their_own():
    first = style.estimator_color("a method nobody knows")
    assert style.estimator_color("a method nobody knows (K=3)") == first
    assert style.estimator_color("another unknown method") != first
    with pytest.raises(ValueError, match="label"):
        style.estimator_color("")


@pytest.mark.parametrize("where", ["right", "below"])
def test_legend_outside_sits_off_the_axes(where):
    fig, ax = style.new_figure()
    for label in ("ELBO", "IWAE", "FIVO"):
        ax.plot([0, 1], [0, 1], label=label, color=style.estimator_color(label))
    legend = style.legend_outside(ax, where)
    fig.canvas.draw()
    box, axes = legend.get_window_extent(), ax.get_window_extent()
    assert (box.x0 >= axes.x1) if where == "right" else (box.y1 <= axes.y0)
    with pytest.raises(ValueError, match="where"):
        style.legend_outside(ax, "inside")
