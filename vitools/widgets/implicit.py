"""Explorer: where does each method's Gamma sample-gradient lose accuracy?

Move the shape alpha (log scale) and the float type; the explorer draws a few Gamma samples,
computes dz/dalpha with every method of :mod:`vitools.implicit.accuracy` and their relative
errors against the mpmath reference (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498, Table 1).
"""
from __future__ import annotations

import ipywidgets as widgets
import torch

from .. import checks, plots
from ..implicit import accuracy
from ..plots import implicit as implicit_plots
from .base import Explorer

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class ImplicitAccuracyExplorer(Explorer):
    """Controls ``log10_alpha`` and ``dtype``; ``data`` holds ``alpha``, ``errors``
    (method -> ``[n]`` relative errors), ``max_error`` (method -> float) and the samples ``z``."""

    def __init__(self, n: int = 8, seed: int = 0, log10_alpha: float = 0.0, dtype: str = "float64"):
        self.n = checks.count("n", n)
        self.seed = checks.count("seed", seed, minimum=0)
        checks.choice("dtype", dtype, set(DTYPES))
        if not -2.0 <= float(log10_alpha) <= 3.0:
            raise ValueError(f"log10_alpha must lie in [-2, 3], got {log10_alpha!r}")
        controls = {
            "log10_alpha": widgets.FloatSlider(value=float(log10_alpha), min=-2.0, max=3.0, step=0.25,
                                               description="log10 alpha", continuous_update=False),
            "dtype": widgets.Dropdown(options=list(DTYPES), value=dtype, description="dtype"),
        }
        fig, _ = plots.new_figure(ncols=1, width=7.5, height=2.8)
        super().__init__(controls, fig)

    def compute(self, log10_alpha, dtype):
        alpha = 10.0 ** log10_alpha
        result = accuracy.gamma_relative_errors(alpha, n=self.n, dtype=DTYPES[dtype], seed=self.seed)
        z = result.pop("z")
        return {"alpha": alpha, "dtype": dtype, "z": z, "errors": result,
                "max_error": {name: float(e.max()) for name, e in result.items()}}

    def draw(self, figure, data):
        implicit_plots.draw_error_strips(figure.axes[0], data["errors"],
                                         title=f"Gamma(alpha={data['alpha']:.3g}), {data['dtype']}: "
                                               f"{self.n} samples")
