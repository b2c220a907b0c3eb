"""The explorers work headless: moving a control recomputes `data` and redraws the figure."""
import pytest
import torch

import vitools as vt


@pytest.fixture(scope="module")
def explorer():
    return vt.widgets.VarianceExplorer(n=1000)


def test_default_view_has_every_applicable_estimator(explorer):
    data = explorer.data
    assert data["problem"].name == "gaussian_quadratic"
    assert set(data["samples"]) == {"score function", "score + moving-average baseline",
                                    "score + delta-method CV", "pathwise", "measure-valued"}
    assert "score + leave-one-out baseline" in data["skipped"]          # k = 1
    for label, g in data["samples"].items():
        assert g.shape == (1000,) and torch.isfinite(g).all()
        assert data["variance"][label] == pytest.approx(float(g.var()))
    assert data["exact_variance"]["pathwise"] == pytest.approx(4.0, rel=1e-4)   # 4 sigma^2 for the mean


def test_changing_the_problem_resets_parameter_controls(explorer):
    explorer.controls["problem"].value = "Uniform U(0, theta), f(x)=x"
    assert explorer.controls["parameter"].options == ("theta",)
    assert explorer.controls["value"].value == pytest.approx(1.0)
    assert set(explorer.data["samples"]) == {"pathwise", "measure-valued"}
    assert "score function" in explorer.data["skipped"]
    assert explorer.data["exact_grad"] == pytest.approx(0.5)


def test_value_and_k_controls_change_the_data(explorer):
    explorer.controls["problem"].value = "Gaussian, cos(k x), k=2"
    explorer.controls["parameter"].value = "sigma"
    assert explorer.data["index"] == 1
    explorer.controls["value"].value = 0.5
    assert float(explorer.data["theta"][1]) == pytest.approx(0.5)
    one = explorer.data["variance"]["pathwise"]
    explorer.controls["k"].value = 16
    assert 8 < one / explorer.data["variance"]["pathwise"] < 32
    assert "score + leave-one-out baseline" in explorer.data["samples"]
    explorer.controls["k"].value = 1


def test_display_bundle_carries_a_static_png_beside_the_widget(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert len(bundle["image/png"]) > 1000
    assert explorer.figure.axes[0].get_title()


def test_unknown_problem_is_an_error():
    with pytest.raises(ValueError, match="problem must be one of"):
        vt.widgets.VarianceExplorer(problem="no such problem")
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        vt.widgets.VarianceExplorer(n=0)
    with pytest.raises(ValueError, match="max_draws must be an integer >= 1, got 0"):
        vt.widgets.VarianceExplorer(max_draws=0)


def test_small_n_is_honoured():
    explorer = vt.widgets.VarianceExplorer(n=50)
    assert explorer.data["n"] == 50 and explorer.data["samples"]["pathwise"].shape == (50,)


def test_multisample_snr_explorer_moves_caches_and_validates():
    from vitools.models import sbn
    from vitools.widgets.sbn import MultiSampleSNRExplorer

    torch.manual_seed(0)
    x = (torch.rand(20, 16) > 0.5).float()
    model = sbn.SBN(16, (3,))
    explorer = MultiSampleSNRExplorer(model, x, x[:1], ks=(2, 5), n=200, prepare_steps=5)
    assert explorer.data["k"] == 2
    vimco, nvil = explorer.data["snr"]
    assert vimco.startswith("vimco") and nvil.startswith("nvil multisample")
    groups = set(model.parameter_groups())
    assert all(set(snr) == groups and all(v > 0 for v in snr.values()) for snr in explorer.data["snr"].values())
    explorer.controls["k"].value = 5
    assert explorer.data["k"] == 5 and explorer.data["snr"] is explorer._snr(5)      # computed once per K
    assert len(explorer.png()) > 1000
    with pytest.raises(ValueError, match="x must be one example"):
        MultiSampleSNRExplorer(model, x, x[:2])
    with pytest.raises(ValueError, match="ks must be an integer >= 2"):
        MultiSampleSNRExplorer(model, x, x[:1], ks=(1, 5))
