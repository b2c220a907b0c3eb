"""The latent walker works headless: moving a control recomputes `data` and redraws the figure."""
import pytest
import torch

from vitools.models import GaussianVAE
from vitools.widgets.vae import LatentWalker

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def walker():
    model = GaussianVAE(input_dim=6, hidden=8, latent_dim=2, seed=0, device=CPU)
    x = (torch.rand(400, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return LatentWalker(model, x, torch.arange(400) % 10, ks=(1, 10, 100), image_shape=(2, 3))


def test_default_view(walker):
    data = walker.data
    assert data["z"].tolist() == [0.0, 0.0] and data["k"] == 1 and data["image"].shape == (2, 3)
    assert data["latents"].shape == (400, 2)
    assert data["bounds"][0] == pytest.approx(data["elbo"], abs=0.05)          # K=1 is a one-sample ELBO
    assert data["bounds"][0] < data["bounds"][1] < data["bounds"][2]
    assert len(walker.png()) > 1000


def test_moving_controls_updates_data(walker):
    model = walker.model
    walker.controls["z1"].value = 2.0
    walker.controls["z2"].value = -1.0
    expected = model.decode(torch.tensor([2.0, -1.0])).mean.detach().reshape(2, 3)
    assert torch.allclose(walker.data["image"], expected)
    walker.controls["k"].value = 100
    assert walker.data["bound"] == walker.data["bounds"][2]
    assert "K=100" in walker.figure.axes[2].get_title()


def test_walker_checks():
    x = torch.zeros(4, 6)
    with pytest.raises(ValueError, match="latent_dim 2"):
        LatentWalker(GaussianVAE(input_dim=6, latent_dim=3, device=CPU), x)
    model = GaussianVAE(input_dim=6, latent_dim=2, device=CPU)
    with pytest.raises(ValueError, match="ks must be an integer >= 1, got 0"):
        LatentWalker(model, x, ks=(0, 1), image_shape=(2, 3))
    with pytest.raises(ValueError, match="ks must hold at least one"):
        LatentWalker(model, x, ks=(), image_shape=(2, 3))
    with pytest.raises(ValueError, match="z_range must be positive"):
        LatentWalker(model, x, z_range=0.0, image_shape=(2, 3))
