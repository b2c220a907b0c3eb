"""Figures for sigmoid belief nets and their estimators (NVIL, Mnih & Gregor 2014,
arXiv:1402.0030; VIMCO, Mnih & Rezende 2016, arXiv:1602.06725): digit grids, gradient
variance per parameter group, bound-versus-updates curves."""
from __future__ import annotations

import numpy as np

from .. import checks
from .style import PALETTE, as_curve, as_curves, to_numpy


def draw_digits(ax, images, rows: int = 2, title: str | None = None):
    """A grid of square images ``[n, side*side]`` (the first ``rows * cols`` of them)."""
    rows = checks.count("rows", rows)
    images = to_numpy(images)
    side = int(round(np.sqrt(images.shape[1]))) if images.ndim == 2 else 0
    if images.ndim != 2 or side < 1 or side * side != images.shape[1]:
        raise ValueError(f"images must have shape [n, side*side] with side >= 1, got {images.shape}")
    if images.shape[0] < rows:
        raise ValueError(f"images must hold at least rows = {rows} images, got {images.shape[0]}")
    cols = max(1, images.shape[0] // rows)
    grid = images[: rows * cols].reshape(rows, cols, side, side).transpose(0, 2, 1, 3)
    artist = ax.imshow(grid.reshape(rows * side, cols * side), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)
    return artist


def draw_group_variance(ax, variances: dict, log: bool = True, legend: bool = True):
    """Grouped bars: ``{configuration label: {parameter group: total variance}}``."""
    configs = list(variances)
    groups = list(next(iter(variances.values()))) if variances else []
    width = 0.8 / max(1, len(configs))
    artists = []
    for i, label in enumerate(configs):
        values = [variances[label][g] for g in groups]
        artists.append(ax.bar(np.arange(len(groups)) + (i - (len(configs) - 1) / 2) * width, values,
                              width, label=label, color=PALETTE[i % len(PALETTE)]))
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("gradient variance")
    if log:
        ax.set_yscale("log")
    if legend:
        ax.legend(loc="best")
    return artists


def draw_bound_curves(ax, curves: dict, ylabel: str = "validation bound (nats)", legend: bool = True,
                      skip_before: int = 0):
    """One line per run: ``{label: (updates, bound values)}``; points before update
    ``skip_before`` are left out (the untrained model's bound squashes the scale)."""
    artists = []
    for i, (label, (steps, values)) in enumerate(curves.items()):
        steps = as_curve(f"curves[{label!r}] steps", steps)
        values = as_curve(f"curves[{label!r}] values", values, steps, "its steps")
        keep = steps >= skip_before
        artists.extend(ax.plot(steps[keep], values[keep], marker="o", ms=3, lw=1.5,
                               color=PALETTE[i % len(PALETTE)], label=label))
    ax.set_xlabel("parameter updates")
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(loc="lower right")
    return artists


def draw_snr_vs_k(ax, ks, snrs: dict, ylabel: str = "gradient SNR", legend: bool = True):
    """SNR against the number of samples ``K`` for each estimator: ``{label: [len(ks)]}``."""
    ks = as_curve("ks", ks)
    artists = []
    for i, (label, values) in enumerate(as_curves("snrs", snrs, ks, "ks").items()):
        artists.extend(ax.plot(ks, values, marker="o", color=PALETTE[i % len(PALETTE)],
                               label=label))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K (samples)")
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(loc="best")
    return artists
