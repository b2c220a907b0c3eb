"""Explorers for relaxations: how Concrete samples move on the simplex as the temperature
changes (Maddison et al. 2017, arXiv:1611.00712; Jang et al. 2017, arXiv:1611.01144), and
REBAR's gradient variance against its temperature and eta (Tucker et al. 2017, arXiv:1703.07370)."""
from __future__ import annotations

import math

import ipywidgets as widgets
import torch

from .. import checks, config, diagnostics, estimators, plots
from ..problems import BernoulliQuadratic
from ..plots import relaxed as relaxed_plots
from ..relaxations import BinaryConcrete, ExpConcrete
from .base import Explorer


class ConcreteExplorer(Explorer):
    """``ConcreteExplorer(logits=(1., 0., -1.))``: a log-temperature slider; ``explorer.data``
    holds ``temperature``, ``samples`` ``[n, 3]`` (relaxed one-hot vectors), ``mean_max``
    (mean of the largest coordinate: 1 means one-hot), ``frequencies`` (how often each
    class is the argmax), ``probs`` (the categorical), and the binary density on a grid."""

    def __init__(self, logits=(1.0, 0.0, -1.0), n: int = 1500, seed: int = 0, temperature: float = 0.5):
        self.logits = checks.finite("logits", config.tensor(logits))
        checks.shape("logits", self.logits, (3,), what="three classes")
        self.n, self.seed = checks.count("n", n), seed
        checks.positive("temperature", temperature)
        controls = {"log10_temperature": widgets.FloatSlider(
            value=math.log10(temperature), min=-2.0, max=1.0, step=0.05,
            description="log10 tau", continuous_update=False, style={"description_width": "initial"})}
        fig, _ = plots.new_figure(ncols=2, width=9, height=3.4)
        super().__init__(controls, fig)

    def compute(self, log10_temperature):
        tau = 10.0 ** log10_temperature
        with config.seeded(self.seed):
            y = ExpConcrete(self.logits, tau).rsample((self.n,))             # [n, 3]
        samples = y.exp()
        xs = torch.linspace(0.002, 0.998, 400, device=self.logits.device)
        binary = BinaryConcrete(self.logits[0] - self.logits[1], tau)         # class 1 against class 2
        return {
            "temperature": tau,
            "samples": samples,
            "mean_max": float(samples.max(-1).values.mean()),
            "frequencies": torch.bincount(samples.argmax(-1), minlength=3).float() / self.n,
            "probs": torch.softmax(self.logits, -1),
            "xs": xs,
            "density": binary.log_prob_bit(xs).exp(),
            "p_bit": float(torch.sigmoid(self.logits[0] - self.logits[1])),
        }

    def draw(self, figure, data):
        left, right = figure.axes
        relaxed_plots.draw_simplex_samples(left, data["samples"].cpu(),
                                   title=f"Concrete samples, tau = {data['temperature']:.3g}")
        relaxed_plots.draw_relaxed_bit_density(right, data["xs"].cpu(),
                                       {f"tau = {data['temperature']:.3g}": data["density"].cpu()},
                                       probability=data["p_bit"])


class RebarExplorer(Explorer):
    """REBAR's gradient variance as a function of its temperature and scale (Tucker et al.
    2017, arXiv:1703.07370), at a fixed ``theta`` of a toy problem, without the learned
    baseline so that only $\\eta$ and $\\lambda$ act. ``explorer.data`` holds
    ``temperatures`` and ``curve`` (variance along the temperature grid at the current
    ``eta``), ``variance`` at the current setting and ``reinforce_variance``."""

    def __init__(self, problem=None, n: int = 2000, seed: int = 0, grid: int = 9):
        self.problem = problem if problem is not None else BernoulliQuadratic(0.45, init=1.0)
        self.theta = self.problem.init_params().detach()
        self.n, self.seed = checks.count("n", n, minimum=2), seed
        self.temperatures = torch.logspace(-2, 1, checks.count("grid", grid, minimum=2)).tolist()
        g = diagnostics.grad_samples(estimators.get("score_function"), self.problem, self.theta, n=self.n, seed=seed)
        self.reinforce_variance = float(g.var(0).sum())
        controls = {
            "log10_temperature": widgets.FloatSlider(value=-0.3, min=-2.0, max=1.0, step=0.1,
                                                     description="log10 lambda", continuous_update=False,
                                                     style={"description_width": "initial"}),
            "eta": widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="eta",
                                       continuous_update=False, style={"description_width": "initial"}),
        }
        fig, _ = plots.new_figure(width=6, height=3.2)
        super().__init__(controls, fig)

    def _variance(self, temperature, eta):
        est = estimators.get("rebar", temperature=temperature, eta=eta, baseline=False, train_steps=0)
        g = diagnostics.grad_samples(est, self.problem, self.theta, n=self.n, seed=self.seed)
        return float(g.var(0).sum())

    def compute(self, log10_temperature, eta):
        temperature = 10.0 ** log10_temperature
        curve = torch.tensor([self._variance(t, eta) for t in self.temperatures])
        return {"temperature": temperature, "eta": eta, "temperatures": torch.tensor(self.temperatures),
                "curve": curve, "variance": self._variance(temperature, eta),
                "reinforce_variance": self.reinforce_variance}

    def draw(self, figure, data):
        (ax,) = figure.axes
        ax.plot(data["temperatures"], data["curve"], "-o", ms=3, label=f"REBAR, eta = {data['eta']:.2f}")
        ax.plot([data["temperature"]], [data["variance"]], "s", color="k", label="current lambda")
        ax.axhline(data["reinforce_variance"], color="0.5", ls="--", label="REINFORCE")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("temperature lambda")
        ax.set_ylabel("gradient variance")
        ax.set_title("REBAR's variance against temperature and eta")
        ax.legend()
