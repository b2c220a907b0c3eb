"""Pick two discrete estimators and compare them live on one target with an exact gradient.

``PairExplorer(target, exact)``: two estimator menus (every registered estimator that applies to
``target``) and the number of function evaluations per estimate; the explorer draws ``n`` estimates
of each with :func:`vitools.diagnostics.grad_samples` and shows, per estimator, the variance of the
gradient of the chosen parameters and the largest ``|z|`` of its bias against ``exact``
(``{name: tensor}``, as ``grad_samples`` names parameters). ``k`` is each estimator's own sample
count: antithetic estimators (ARM, DisARM) evaluate ``f`` twice per sample, so they spend ``2k``.
"""
from __future__ import annotations

import ipywidgets as widgets

from .. import checks, diagnostics, estimators, plots
from .base import Explorer

K_CHOICES = (2, 4, 8)


class PairExplorer(Explorer):
    """``explorer.controls``: ``first``, ``second`` (estimator names), ``k``;
    ``explorer.data``: ``{"variance": {name: float}, "bias_z": {name: float}, "k": {name: int}}``."""

    def __init__(self, target, exact: dict, names: list[str] | None = None, prefix: str = "model.",
                 first: str = "rloo", second: str = "score_function", n: int = 500, seed: int = 0):
        self.target, self.exact, self.prefix = target, exact, prefix
        self.n, self.seed = checks.count("n", n, minimum=2), seed
        usable = [name for name in (names or estimators.names()) if estimators.get(name).applies_to(target)]
        for label, value in (("first", first), ("second", second)):
            if value not in usable:
                raise ValueError(f"{label} must be an estimator that applies to the target, got {value!r}; "
                                 f"usable: {usable}")
        controls = {
            "first": widgets.Dropdown(options=usable, value=first, description="first"),
            "second": widgets.Dropdown(options=usable, value=second, description="second"),
            "k": widgets.SelectionSlider(options=K_CHOICES, value=4, description="k samples",
                                         continuous_update=False),
        }
        fig, _ = plots.new_figure(ncols=2, width=9, height=3.0)
        super().__init__(controls, fig)

    def compute(self, first, second, k):
        variance, bias_z, ks = {}, {}, {}
        for name in dict.fromkeys((first, second)):
            est = estimators.get(name)
            g = diagnostics.grad_samples(est, self.target, n=self.n, k=max(k, est.min_samples), seed=self.seed)
            names = [p for p in self.exact if p.startswith(self.prefix)]
            variance[name] = sum(float(g[p].var(0).sum()) for p in names)
            bias_z[name] = max(float(diagnostics.summarize(g[p], exact=self.exact[p]).bias_z.abs().max())
                               for p in self.exact)
            ks[name] = max(k, est.min_samples)
        return {"variance": variance, "bias_z": bias_z, "k": ks}

    def draw(self, figure, data):
        left, right = figure.axes
        names = list(data["variance"])
        colors = [plots.estimator_color(estimators.get(n).label) for n in names]
        left.bar(names, [data["variance"][n] for n in names], color=colors)
        left.set_yscale("log")
        ks = ", ".join(f"{n}: k={k}" for n, k in data["k"].items())
        left.set_title(f"variance ({self.prefix}*); {ks}", fontsize=9)
        right.bar(names, [data["bias_z"][n] for n in names], color=colors)
        right.axhline(4, color="0.4", ls="--", lw=1)
        right.set_title("max |z| of the bias (dashed: 4)", fontsize=9)
