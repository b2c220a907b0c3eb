"""The gradient lab's variance explorer: every applicable estimator, side by side.

Pick a problem, the parameter whose gradient you want and its value, and the number of
samples ``k`` per estimate; the explorer draws ``n`` estimates from each applicable
estimator with :func:`vitools.diagnostics.grad_samples` (one vectorized call each) and
shows their distributions against the exact gradient and their variances (with the exact
variance by numerical integration as a tick, where one exists).
"""
from __future__ import annotations

import ipywidgets as widgets

from .. import checks, diagnostics, estimators, plots, problems
from .base import Explorer

K_CHOICES = (1, 2, 4, 8, 16, 32, 64)


class VarianceExplorer(Explorer):
    """``VarianceExplorer()``; ``explorer.controls`` holds ``problem``, ``parameter``,
    ``value`` and ``k``; ``explorer.data`` holds the samples, variances and exact values.

    Each estimator contributes ``n`` estimates (fewer, but at least 200, when ``n * k`` would
    exceed ``max_draws``, so that an update stays well under a second on a laptop CPU).
    """

    def __init__(self, catalog: dict | None = None, n: int = 2000, seed: int = 0,
                 problem: str | None = None, max_draws: int = 32_000):
        self.catalog = catalog or problems.catalog()
        self.n, self.seed, self.max_draws = checks.count("n", n), seed, checks.count("max_draws", max_draws)
        first = problem or next(iter(self.catalog))
        if first not in self.catalog:
            raise ValueError(f"problem must be one of {list(self.catalog)}, got {first!r}")
        self._syncing = False
        controls = {
            "problem": widgets.Dropdown(options=list(self.catalog), value=first, description="problem",
                                        layout=widgets.Layout(width="330px")),
            "parameter": widgets.Dropdown(description="gradient in", layout=widgets.Layout(width="200px")),
            "value": widgets.FloatSlider(description="value", continuous_update=False, step=0.01),
            "k": widgets.SelectionSlider(options=K_CHOICES, value=1, description="k samples",
                                         continuous_update=False),
        }
        self._point_controls(controls, self.catalog[first]())
        fig, _ = plots.new_figure(ncols=2, width=10, height=3.6, gridspec_kw={"width_ratios": [3, 2]})
        super().__init__(controls, fig)

    @staticmethod
    def _point_controls(controls, problem, parameter: str | None = None):
        """Point the parameter menu at ``problem``'s parameters (``parameter``, default the first)
        and the value slider at that parameter's range and initial value."""
        names = list(problem.param_names)
        if parameter is None:
            parameter = names[0]
            controls["parameter"].options = names
            controls["parameter"].value = parameter
        lo, hi = problem.param_ranges.get(parameter, (-3.0, 3.0))
        slider = controls["value"]
        slider.min, slider.max = -1e9, 1e9           # widen first so no bound rejects the new range
        slider.min, slider.max = lo, hi
        slider.value = float(problem.init_params().detach()[names.index(parameter)])

    def _on_change(self, change) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            if change["owner"] is self.controls["problem"]:
                self._point_controls(self.controls, self.catalog[change["new"]]())
            elif change["owner"] is self.controls["parameter"]:
                self._point_controls(self.controls, self.catalog[self.controls["problem"].value](), change["new"])
        finally:
            self._syncing = False
        self.update()

    def compute(self, problem, parameter, value, k):
        prob = self.catalog[problem]()
        index = list(prob.param_names).index(parameter)
        theta = prob.init_params().detach().clone()
        theta[index] = value
        exact = prob.exact_grad(theta)
        samples, variance, exact_variance, skipped = {}, {}, {}, {}
        n = min(self.n, max(200, self.max_draws // k))      # bound n * k so updates stay interactive
        for est in estimators.standard_set():
            reason = est.why_not(prob) or (f"needs k >= {est.min_samples}" if k < est.min_samples else None)
            if reason:
                skipped[est.label] = reason
                continue
            g = diagnostics.grad_samples(est, prob, theta, n=n, k=k, seed=self.seed)
            samples[est.label] = g[:, index]
            variance[est.label] = float(g[:, index].var())
            ev = diagnostics.exact_variance(est, prob, theta, k=k, points=4001)
            exact_variance[est.label] = None if ev is None else float(ev[index])
        return {
            "problem": prob, "theta": theta, "index": index, "parameter": parameter, "k": k, "n": n,
            "exact_grad": None if exact is None else float(exact[index]),
            "samples": samples, "variance": variance, "exact_variance": exact_variance, "skipped": skipped,
        }

    def draw(self, figure, data):
        left, right = figure.axes
        plots.draw_gradient_histograms(left, data["samples"], exact=data["exact_grad"], legend=False)
        theta = ", ".join(f"{v:.3g}" for v in data["theta"].tolist())
        left.set_title(f"{data['problem']!r}, theta=({theta}): d/d{data['parameter']}, k={data['k']}",
                       fontsize=9)
        plots.draw_variance_bars(right, data["variance"], exact=data["exact_variance"])
        right.set_title("variance (|: exact, by quadrature)", fontsize=9)
        if data["skipped"]:
            right.text(0.0, -0.3, "not applicable: " + "; ".join(data["skipped"]), fontsize=8,
                       transform=right.transAxes, wrap=True, va="top")

