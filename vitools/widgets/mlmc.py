"""Explorer for MLMC gradients over recycled parameters (Fujisawa & Sato 2021, arXiv:1902.00468):
how the level variances, the allocated sample sizes and the total variance change with the
number of levels and the size of the optimiser's past steps, against plain Monte Carlo."""
from __future__ import annotations

import ipywidgets as widgets
import torch

from .. import checks, config, plots
from ..estimators.mlmc import allocate, level_variances
from ..problems import GaussianCos
from .base import Explorer


class MLMCExplorer(Explorer):
    """Sliders ``levels`` and ``log10_step`` (the distance between recycled parameters). ``data``:
    ``variances`` [V_0..V_L], ``sizes`` [N_0..N_L], ``mlmc`` (sum V_l / N_l), ``plain_same_n0``
    (V / N_0 at the current parameters), ``plain_equal_cost`` (V / cost), ``cost``."""

    def __init__(self, problem=None, k: int = 32, n: int = 4000, levels: int = 3, log10_step: float = -1.5,
                 seed: int = 0):
        self.problem = GaussianCos(k=1.5, mu=0.4, sigma=0.8) if problem is None else problem
        self.k, self.n, self.seed = checks.count("k", k), checks.count("n", n, minimum=2), seed
        self.theta = self.problem.init_params().detach()
        self.direction = torch.ones_like(self.theta) / self.theta.numel() ** 0.5
        controls = {
            "levels": widgets.IntSlider(value=levels, min=1, max=6, description="levels", continuous_update=False),
            "log10_step": widgets.FloatSlider(value=log10_step, min=-3.0, max=0.0, step=0.25, description="log10 step",
                                              continuous_update=False, style={"description_width": "initial"}),
        }
        fig, _ = plots.new_figure(ncols=2, width=9, height=3.2)
        super().__init__(controls, fig)

    def compute(self, levels, log10_step):
        step = 10.0 ** log10_step
        lams = [self.theta + step * (levels - l) * self.direction for l in range(levels + 1)]   # oldest first
        with config.seeded(self.seed):
            v = level_variances(self.problem, lams, self.n, seed=self.seed)
            v_now = level_variances(self.problem, [self.theta], self.n, seed=self.seed + 100)[0]
        sizes = allocate(v, self.k)
        cost = sizes[0] + 2 * sum(sizes[1:])
        return {"variances": v, "sizes": sizes, "cost": cost, "step": step,
                "mlmc": sum(vl / nl for vl, nl in zip(v, sizes)),
                "plain_same_n0": v_now / self.k, "plain_equal_cost": v_now / cost}

    def draw(self, figure, data):
        left, right = figure.axes
        levels = list(range(len(data["variances"])))
        left.bar(levels, data["variances"], color=plots.estimator_color("MLMC"))
        left.set_yscale("log")
        left.set(xlabel="level l", ylabel="V_l (trace)", title=f"level variances, step {data['step']:.3g}")
        for l, n in zip(levels, data["sizes"]):
            left.annotate(f"N={n}", (l, data["variances"][l]), ha="center", va="bottom", fontsize=8)
        names = ["MLMC", "plain, same N_0", "plain, equal cost"]
        values = [data["mlmc"], data["plain_same_n0"], data["plain_equal_cost"]]
        right.bar(names, values, color=[plots.estimator_color("MLMC"), plots.estimator_color("pathwise"),
                                        plots.estimator_color("pathwise")])
        right.set(ylabel="variance of the gradient", title=f"cost {data['cost']} vs {self.k} gradients")
