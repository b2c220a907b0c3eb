"""The FIVO notebook's explorer: ELBO, IWAE and FIVO against log p(x) on a linear Gaussian model.

Maddison et al. 2017, *Filtering Variational Objectives* (arXiv:1705.09279). Move the
number of particles, the sequence length, the resampling scheme and the proposal; the
explorer runs ``repeats`` independent particle filters of each kind in one vectorized call
and shows the distribution of ``log Z_hat - log p(x)`` (exact by the Kalman filter) and
the effective sample size of the FIVO filter over time.
"""
from __future__ import annotations

import ipywidgets as widgets

from .. import checks, plots, smc
from ..plots import smc as smc_plots
from ..models.ssm import LinearGaussianSSM
from .base import Explorer

K_CHOICES = (1, 2, 4, 8, 16, 32, 64)
PROPOSALS = ("prior", "filtering", "smoothing")


class BoundExplorer(Explorer):
    """``BoundExplorer()``; controls ``particles``, ``steps``, ``scheme``, ``proposal``;
    ``explorer.data``: ``exact`` (log p(x)), ``gaps`` (label -> ``[repeats]`` of
    log Z_hat - log p(x)), ``mean_gap`` / ``std`` (label -> float), ``ess`` and ``resampled``
    (FIVO, ``[repeats, T]``)."""

    def __init__(self, ssm: LinearGaussianSSM | None = None, particles: int = 4, steps: int = 20,
                 scheme: str = "multinomial", proposal: str = "prior", repeats: int = 200, seed: int = 0):
        self.ssm = ssm or LinearGaussianSSM.scalar()
        self.repeats, self.seed = checks.count("repeats", repeats), seed
        checks.choice("particles", particles, K_CHOICES)
        checks.choice("scheme", scheme, smc.SCHEMES)
        checks.choice("proposal", proposal, PROPOSALS)
        controls = {
            "particles": widgets.SelectionSlider(options=K_CHOICES, value=particles, description="particles K",
                                                 continuous_update=False),
            "steps": widgets.IntSlider(value=checks.count("steps", steps), min=1, max=100, step=1,
                                       description="length T", continuous_update=False),
            "scheme": widgets.Dropdown(options=smc.SCHEMES, value=scheme, description="resampling"),
            "proposal": widgets.Dropdown(options=PROPOSALS, value=proposal, description="proposal"),
        }
        fig, _ = plots.new_figure(ncols=2, width=10, height=3.4)
        super().__init__(controls, fig)

    def compute(self, particles, steps, scheme, proposal):
        _, x = self.ssm.sample(1, steps, seed=self.seed)
        exact = self.ssm.log_likelihood(x)[0]
        xr = x.expand(self.repeats, -1, -1)
        q = {"prior": lambda: self.ssm.prior_proposal(steps),
             "filtering": lambda: self.ssm.filtering_proposal(x),
             "smoothing": lambda: self.ssm.smoothing_proposal(x)}[proposal]()
        model = self.ssm.with_proposal(q)
        runs = {"ELBO": smc.elbo(model, xr, seed=self.seed + 1),
                f"IWAE (K={particles})": smc.iwae(model, xr, particles, seed=self.seed + 2),
                f"FIVO (K={particles})": smc.fivo(model, xr, particles, scheme=scheme, seed=self.seed + 3)}
        gaps = {label: (r.log_z - exact).detach() for label, r in runs.items()}
        fivo = runs[f"FIVO (K={particles})"]
        return {"exact": exact.item(), "gaps": gaps, "particles": particles,
                "mean_gap": {k: v.mean().item() for k, v in gaps.items()},
                "std": {k: v.std().item() for k, v in gaps.items()},
                "ess": fivo.ess, "resampled": fivo.resampled.float()}

    def draw(self, figure, data) -> None:
        left, right = figure.axes
        smc_plots.draw_gap_histograms(left, data["gaps"])
        left.set_title(f"log p(x) = {data['exact']:.2f}")
        smc_plots.draw_ess(right, data["ess"], num_particles=data["particles"])
        right.set_title("FIVO: mean ESS before resampling")
