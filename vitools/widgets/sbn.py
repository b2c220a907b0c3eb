"""Explorer: gradient variance of a sigmoid belief net per parameter group as NVIL's
variance-reduction techniques are switched on and off (Mnih & Gregor 2014, arXiv:1402.0030)."""
from __future__ import annotations

import ipywidgets as widgets
import torch

from .. import checks, config
from ..diagnostics import grad_samples, group_variance, median_snr
from ..estimators import get
from ..train import batches
from ..plots.sbn import draw_group_variance
from ..plots.style import new_figure
from .base import Explorer

TECHNIQUES = ("constant_baseline", "input_baseline", "normalize", "local_signals")


def nvil_variance(model, x_fit: torch.Tensor, x: torch.Tensor, k: int = 1, n: int = 2000,
                  prepare_steps: int = 200, seed: int = 0, **techniques) -> dict[str, float]:
    """Total gradient variance per parameter group of NVIL with ``techniques`` switched on,
    for the example ``x`` ``[1, D]``, after fitting the baselines on ``x_fit`` at the fixed model."""
    est = get("nvil", **{t: bool(techniques.get(t, False)) for t in TECHNIQUES})
    with config.seeded(seed):
        est.warm_up(batches(model, x_fit), k, steps=prepare_steps)
    grads = grad_samples(est, model.on(x), n=n, k=k, seed=seed)
    return group_variance(grads, model.parameter_groups())


class NVILVarianceExplorer(Explorer):
    """Checkboxes for NVIL's four techniques; bars of gradient variance per parameter group,
    beside the plain score function (every technique off). ``data``:
    ``{"variance": {config label: {group: variance}}, "techniques": {...}}``."""

    def __init__(self, model, x_fit: torch.Tensor, x: torch.Tensor, k: int = 1, n: int = 2000,
                 prepare_steps: int = 200, seed: int = 0, **initial):
        model.check_data(x_fit)
        model.check_data(x)
        if x.shape[0] != 1:
            raise ValueError(f"x must be one example [1, D], got shape {tuple(x.shape)}")
        self.model, self.x_fit, self.x = model, x_fit, x
        self.k, self.n = checks.count("k", k), checks.count("n", n)
        self.prepare_steps, self.seed = checks.count("prepare_steps", prepare_steps, 0), seed
        self._cache: dict[tuple, dict[str, float]] = {}
        controls = {t: widgets.Checkbox(value=bool(initial.get(t, False)), description=t.replace("_", " "))
                    for t in TECHNIQUES}
        figure, _ = new_figure(1, 1, width=7.5, height=3.2)
        super().__init__(controls, figure)

    def _variance(self, flags: tuple) -> dict[str, float]:
        if flags not in self._cache:
            self._cache[flags] = nvil_variance(self.model, self.x_fit, self.x, self.k, self.n,
                                               self.prepare_steps, self.seed, **dict(zip(TECHNIQUES, flags)))
        return self._cache[flags]

    def compute(self, **values):
        flags = tuple(bool(values[t]) for t in TECHNIQUES)
        label = get("nvil", **dict(zip(TECHNIQUES, flags))).label
        return {"techniques": dict(zip(TECHNIQUES, flags)),
                "variance": {"score function": self._variance((False,) * 4), label: self._variance(flags)}}

    def draw(self, figure, data):
        ax = figure.axes[0]
        draw_group_variance(ax, data["variance"], legend=False)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title("inference-network gradient variance with NVIL's techniques")


class MultiSampleSNRExplorer(Explorer):
    """A ``K`` slider; bars of the median gradient SNR per parameter group for VIMCO and for
    NVIL on the $K$-sample bound (Mnih & Rezende 2016, arXiv:1602.06725). ``data``:
    ``{"k": K, "snr": {estimator label: {group: median SNR}}}``."""

    def __init__(self, model, x_fit: torch.Tensor, x: torch.Tensor, ks=(2, 5, 10, 50), n: int = 1000,
                 prepare_steps: int = 100, seed: int = 0):
        model.check_data(x_fit)
        model.check_data(x)
        if x.shape[0] != 1:
            raise ValueError(f"x must be one example [1, D], got shape {tuple(x.shape)}")
        ks = [checks.count("ks", k, minimum=2) for k in ks]
        self.model, self.x_fit, self.x, self.n = model, x_fit, x, checks.count("n", n)
        self.prepare_steps, self.seed = prepare_steps, seed
        self._cache: dict[int, dict] = {}
        controls = {"k": widgets.SelectionSlider(options=ks, value=ks[0], description="K")}
        figure, _ = new_figure(1, 1, width=7.5, height=3.0)
        super().__init__(controls, figure)

    def _snr(self, k: int) -> dict:
        if k not in self._cache:
            out = {}
            for est in (get("vimco"), get("nvil_multisample")):
                with config.seeded(self.seed):                # fits what has state (b(x), running statistics)
                    est.warm_up(batches(self.model, self.x_fit), k, steps=self.prepare_steps)
                grads = grad_samples(est, self.model.on(self.x), n=self.n, k=k, seed=self.seed)
                out[est.label] = {label: median_snr(grads, tuple(prefixes))
                                  for label, prefixes in self.model.parameter_groups().items()}
            self._cache[k] = out
        return self._cache[k]

    def compute(self, k):
        return {"k": k, "snr": self._snr(k)}

    def draw(self, figure, data):
        ax = figure.axes[0]
        draw_group_variance(ax, data["snr"], legend=False)
        ax.set_ylabel("median gradient SNR")
        ax.set_title(f"gradient SNR at K = {data['k']}")
        ax.legend(loc="upper right", fontsize=7)
