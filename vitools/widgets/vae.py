"""A latent-space walker for a 2-D Gaussian VAE (Kingma & Welling 2014, arXiv:1312.6114).

Sliders ``z1``, ``z2`` pick a point of the latent space, decoded to an image; a slider for
``k`` picks the number of importance samples of the IWAE bound (Burda et al. 2016,
arXiv:1509.00519) on held-out digits, whose curve against K shows the bound tightening.
The bounds for every K are computed once (seeded) when the walker is built.
"""
from __future__ import annotations

import ipywidgets as widgets
import torch

from .. import checks, config, plots
from ..models import GaussianVAE
from ..plots import vae as vae_plots
from .base import Explorer

K_CHOICES = (1, 2, 5, 10, 50, 200)


class LatentWalker(Explorer):
    """``LatentWalker(vae, x, labels)``; controls ``z1``, ``z2``, ``k``; ``data`` holds ``z``
    ``[2]``, ``image`` ``[H, W]``, ``k``, ``bound`` (mean IWAE bound at ``k``), ``elbo``, and the
    whole curve ``ks``, ``bounds``, with ``latents`` ``[N, 2]`` (posterior means of ``x``)."""

    def __init__(self, model: GaussianVAE, x: torch.Tensor, labels: torch.Tensor | None = None,
                 ks=K_CHOICES, image_shape: tuple[int, int] = (28, 28), z_range: float = 3.0, seed: int = 0):
        if not isinstance(model, GaussianVAE) or model.latent_dim != 2:
            raise ValueError(f"model must be a GaussianVAE with latent_dim 2, got {model!r}")
        self.ks = tuple(checks.count("ks", k) for k in ks)
        if not self.ks:
            raise ValueError("ks must hold at least one sample count, got ()")
        z_range = float(checks.positive("z_range", z_range))
        self.model, self.image_shape, self.labels = model, image_shape, labels
        with torch.no_grad(), config.seeded(seed):
            self.latents = model.encode(x).mean.cpu()                                   # [N, 2]
            self.elbo = float(model.elbo(x).mean())
            self.bounds = [float(model.iwae_bound(x, k).mean()) for k in self.ks]
        controls = {
            "z1": widgets.FloatSlider(value=0.0, min=-z_range, max=z_range, step=0.1, description="z1",
                                      continuous_update=False),
            "z2": widgets.FloatSlider(value=0.0, min=-z_range, max=z_range, step=0.1, description="z2",
                                      continuous_update=False),
            "k": widgets.SelectionSlider(options=self.ks, value=self.ks[0], description="K samples",
                                         continuous_update=False),
        }
        fig, _ = plots.new_figure(ncols=3, width=10, height=3.2, gridspec_kw={"width_ratios": [4, 3, 4]})
        super().__init__(controls, fig)

    def compute(self, z1, z2, k):
        z = self.model.prior().mean.new_tensor([z1, z2])
        with torch.no_grad():
            image = self.model.decode(z).mean.reshape(self.image_shape).cpu()
        return {"z": z.cpu(), "image": image, "k": k, "bound": self.bounds[self.ks.index(k)], "elbo": self.elbo,
                "ks": self.ks, "bounds": self.bounds, "latents": self.latents}

    def draw(self, figure, data) -> None:
        ax_z, ax_img, ax_k = figure.axes
        vae_plots.draw_latent_scatter(ax_z, data["latents"], self.labels, s=3)
        ax_z.plot(*data["z"].tolist(), "x", color="black", ms=10, mew=2.5)
        ax_z.set_title("posterior means of held-out digits")
        vae_plots.draw_image_grid(ax_img, data["image"][None], nrow=1, image_shape=self.image_shape)
        ax_img.set_title(f"decoded $z$ = ({data['z'][0]:.1f}, {data['z'][1]:.1f})")
        vae_plots.draw_bounds_vs_k(ax_k, data["ks"], data["bounds"], elbo=data["elbo"], highlight=data["k"])
        ax_k.set_title(f"IWAE bound at K={data['k']}: {data['bound']:.1f} nats")
