"""Figures of the gradient lab: gradient distributions, variance bars and variance curves."""
from __future__ import annotations

import matplotlib.ticker as mticker
import numpy as np
import torch

from .. import checks
from .style import as_curve, as_curves, estimator_color, to_numpy


def draw_gradient_histograms(ax, samples: dict, exact: float | None = None, bins: int = 60,
                             clip_quantile: float = 0.99, legend: bool = True):
    """Overlaid histograms of one gradient component per estimator (``label -> [n]``).

    The x-range covers the central ``clip_quantile`` of the pooled samples, so one
    heavy-tailed estimator does not squash the others (samples outside are not drawn); the
    exact gradient is a dashed black line.
    """
    bins = checks.count("bins", bins)
    samples = as_curves("samples", samples)
    for label, v in samples.items():
        checks.finite(f"samples[{label!r}]", v)
    if exact is not None:
        exact = float(checks.finite("exact", torch.as_tensor(float(exact), dtype=torch.float64)))
    pooled = np.concatenate(list(samples.values())) if samples else np.zeros(1)
    lo, hi = np.quantile(pooled, [(1 - clip_quantile) / 2, (1 + clip_quantile) / 2])
    if exact is not None:
        lo, hi = min(lo, exact), max(hi, exact)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    artists = []
    for label, values in samples.items():
        v = values
        weights = np.full(v.shape, 1.0 / (len(v) * (edges[1] - edges[0])))   # density over all samples
        artists.append(ax.hist(v, bins=edges, weights=weights, histtype="step", lw=1.6,
                               color=estimator_color(label), label=label)[2])
    if exact is not None:
        artists.append(ax.axvline(exact, color="black", lw=1.2, ls="--", label="exact gradient"))
    ax.set_xlabel("gradient estimate")
    ax.set_ylabel("density")
    if legend:
        ax.legend(loc="upper right")
    return artists


def draw_variance_bars(ax, variances: dict, log: bool = True, exact: dict | None = None,
                       dynamic_range: float = 1e-8):
    """One bar per estimator (``label -> variance``), log-scaled; optional exact values as ticks.

    On the log axis the left edge sits ``dynamic_range`` below the largest value, so a variance
    that is (almost) zero does not squash the others: its bar stops at the edge and is marked
    "< edge", with its value printed. At most five decades are labelled, so labels never overlap.
    """
    labels = list(variances)
    raw = [float(variances[label]) for label in labels]
    floor = 0.0
    if log:
        top = max([v for v in raw if v > 0] + [float(e) for e in (exact or {}).values() if e] + [1e-300])
        floor = top * dynamic_range
    values = [max(v, floor) for v in raw]
    bars = ax.barh(range(len(labels)), values, color=[estimator_color(label) for label in labels])
    if exact:
        for i, label in enumerate(labels):
            if exact.get(label) is not None:
                ax.plot(max(float(exact[label]), floor), i, "k|", markersize=14, mew=2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left=floor, right=top * 10)
        decades = max(1, int(np.ceil(np.log10(10 / dynamic_range) / 5)))
        ax.xaxis.set_major_locator(mticker.LogLocator(base=10.0 ** decades, numticks=8))
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        for i, v in enumerate(raw):
            if v <= floor:
                ax.annotate(f"< {floor:.0e} ({v:.1e})", (floor, i), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=8)
    ax.set_xlabel("variance" + (" (log scale)" if log else ""))
    return bars


def draw_variance_curves(ax, ks, curves: dict, points: dict | None = None, xlabel: str = "k",
                         ylabel: str = "variance", logx: bool = True, dynamic_range: float = 1e-7):
    """Variance against a problem parameter: lines for exact curves (``label -> [len(ks)]``),
    markers for Monte Carlo checks (``label -> (xs, values)``); the log axis shows
    ``dynamic_range`` below the largest value."""
    ks = as_curve("ks", ks)
    curves = as_curves("curves", curves, ks, "ks")
    artists = []
    for label, values in curves.items():
        artists += ax.plot(ks, values, color=estimator_color(label), label=label)
    for label, (xs, values) in (points or {}).items():
        xs = as_curve(f"points[{label!r}] xs", xs)
        values = as_curve(f"points[{label!r}] values", values, xs, "its xs")
        artists += ax.plot(xs, values, "o", ms=4, color=estimator_color(label))
    ax.set_yscale("log")
    top = max((float(np.nanmax(v)) for v in curves.values()), default=1.0)
    ax.set_ylim(bottom=top * dynamic_range)     # a variance that touches 0 would squash the rest
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return artists


def draw_cost_and_gradient(ax, xs, costs: dict, legend: bool = True):
    """The cost functions ``label -> f(xs)`` (solid) and their derivatives (dashed); ``legend=False``
    leaves the legend to the caller (e.g. one :func:`~vitools.plots.style.legend_outside` per figure)."""
    xs_t = torch.as_tensor(to_numpy(xs)).requires_grad_(True)
    artists = []
    for i, (label, f) in enumerate(costs.items()):
        ys = f(xs_t)
        (dy,) = torch.autograd.grad(ys.sum(), xs_t)
        color = f"C{i}"
        artists += ax.plot(to_numpy(xs_t), to_numpy(ys), color=color, label=label)
        artists += ax.plot(to_numpy(xs_t), to_numpy(dy), "--", color=color)
    ax.set_xlabel("x")
    if legend:
        ax.legend()
    return artists
