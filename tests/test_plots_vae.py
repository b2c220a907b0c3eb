"""Tests for vitools.plots.vae: the draw functions draw what they are given and check their input."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vitools.plots import vae as vp  # noqa: E402
from vitools.train import History  # noqa: E402


def test_image_grid_tiles_images_with_blank_cells(ax):
    images = torch.stack([torch.full((6,), v) for v in (0.0, 0.5, 1.0)])      # three 2x3 images
    artist = vp.draw_image_grid(ax, images, nrow=2, image_shape=(2, 3), pad=1)
    canvas = artist.get_array()
    assert canvas.shape == (2 * 3 + 1, 2 * 4 + 1)
    assert np.allclose(canvas[1:3, 1:4], 0.0) and np.allclose(canvas[1:3, 5:8], 0.5)
    assert np.allclose(canvas[4:6, 1:4], 1.0)
    assert np.ma.getmaskarray(canvas)[4:6, 5:8].all() or np.isnan(np.ma.filled(canvas, np.nan)[4:6, 5:8]).all()
    vp.draw_image_grid(ax, images.reshape(3, 2, 3), nrow=1, image_shape=(2, 3))


@pytest.mark.parametrize("images,kwargs,match", [
    (torch.zeros(3, 5), {}, r"images must end in shape \(6,\)"),
    (torch.zeros(0, 6), {}, "n >= 1"),
    (torch.full((2, 6), 2.0), {}, r"images must lie in \[0, 1\]"),
    (torch.zeros(2, 6), {"nrow": 0}, "nrow must be an integer >= 1"),
    (torch.zeros(2, 6), {"pad": -1}, "pad must be an integer >= 0"),
])
def test_image_grid_checks(ax, images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vp.draw_image_grid(ax, images, **{"image_shape": (2, 3), **kwargs})


def history():
    h = History(steps=list(range(1, 51)), loss=list(np.linspace(10, 1, 50)), seconds=list(np.arange(50.0)))
    for step in (0, 25, 50):
        h.record_eval(step, float(step), {"test": -step / 10})
    return h


def test_training_curves_smooth_and_negate(ax):
    artists = vp.draw_training_curves(ax, history(), negate=True, smooth=10)
    raw, smooth, test = artists
    assert np.allclose(raw.get_ydata(), -np.linspace(10, 1, 50))
    assert len(smooth.get_xdata()) == 41 and smooth.get_xdata()[0] == 10
    assert np.allclose(test.get_ydata(), [0, -2.5, -5])                         # evals drawn as recorded
    _, _, flipped = vp.draw_training_curves(ax, history(), negate=True, negate_evals=True)
    assert np.allclose(flipped.get_ydata(), [0, 2.5, 5])


def test_training_curves_checks(ax):
    with pytest.raises(ValueError, match="evals must name recorded evaluations"):
        vp.draw_training_curves(ax, history(), evals=["elbo"])
    with pytest.raises(ValueError, match="smooth must be an integer >= 1"):
        vp.draw_training_curves(ax, history(), smooth=0)


def test_latent_scatter_colours_by_label(ax):
    z = torch.randn(20, 2)
    (artist,) = vp.draw_latent_scatter(ax, z, torch.arange(20) % 10)
    assert np.allclose(artist.get_offsets(), z.numpy())
    assert list(artist.get_array()) == [i % 10 for i in range(20)]
    assert len(ax.get_legend().get_texts()) == 10
    vp.draw_latent_scatter(ax, z)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 2\]"):
        vp.draw_latent_scatter(ax, torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"labels must have shape \(20,\)"):
        vp.draw_latent_scatter(ax, z, torch.zeros(3))
    with pytest.raises(ValueError, match="z must be finite"):
        vp.draw_latent_scatter(ax, torch.full((2, 2), float("nan")))


def test_bounds_vs_k(ax):
    artists = vp.draw_bounds_vs_k(ax, [1, 10, 100], [-3.0, -2.0, -1.5], elbo=-3.0, reference=-1.4, highlight=10)
    assert ax.get_xscale() == "log"
    assert artists[-1].get_xdata()[0] == 10
    with pytest.raises(ValueError, match="ks and values must be 1-D of equal length"):
        vp.draw_bounds_vs_k(ax, [1, 2], [0.0])
    with pytest.raises(ValueError, match="ks must be positive"):
        vp.draw_bounds_vs_k(ax, [0, 2], [0.0, 1.0])
