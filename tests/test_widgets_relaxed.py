"""The relaxation explorers: slider labels shown in full, and REBAR's explorer at eta = 0 is REINFORCE."""
import pytest

from vitools.widgets.relaxed import ConcreteExplorer, RebarExplorer


@pytest.mark.parametrize("make", [lambda: ConcreteExplorer(n=200), lambda: RebarExplorer(n=200, grid=2)],
                         ids=["concrete", "rebar"])
def test_slider_labels_are_not_truncated(make):
    explorer = make()
    for name, control in explorer.controls.items():
        # the default description width cuts "log10 lambda" to "log10 lam..."
        assert control.style.description_width == "initial", name


def test_rebar_explorer_at_eta_zero_is_reinforce_and_puts_its_controls_back():
    explorer = RebarExplorer(n=2000, grid=3)
    explorer.controls["eta"].value = 0.0
    assert abs(explorer.data["variance"] / explorer.data["reinforce_variance"] - 1) < 0.15
    explorer.controls["eta"].value = 1.0
    assert explorer.data["eta"] == 1.0
