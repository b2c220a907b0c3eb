"""Draw functions for continuous relaxations (Maddison et al. 2017, arXiv:1611.00712;
Jang et al. 2017, arXiv:1611.01144): samples on the simplex, Concrete densities, and the
bias-variance trade-off against temperature."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import checks
from .style import as_curve, as_curves, estimator_color, to_numpy

_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])


def draw_simplex_samples(ax, samples, title: str = "", labels=("class 1", "class 2", "class 3")):
    """Points ``[n, 3]`` of the probability simplex drawn in barycentric coordinates."""
    samples = to_numpy(samples)
    if samples.ndim != 2 or samples.shape[1] != 3:
        raise ValueError(f"samples must have shape [n, 3] (points of the simplex), got {samples.shape}")
    xy = samples @ _CORNERS
    ax.fill(*_CORNERS.T, facecolor="none", edgecolor="0.4", lw=0.8)
    artists = ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.35, color="#7570b3", lw=0)
    for corner, label, (dx, dy) in zip(_CORNERS, labels, [(-0.02, -0.07), (0.02, -0.07), (0.0, 0.03)]):
        ax.annotate(label, corner + [dx, dy], ha="center", fontsize=8)
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.12, 0.98)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return artists


def draw_relaxed_bit_density(ax, xs, densities: dict, probability: float | None = None):
    """Densities of a relaxed bit on (0, 1), one curve per label (e.g. per temperature)."""
    if probability is not None:
        probability = float(checks.probability("probability", torch.as_tensor(float(probability), dtype=torch.float64)))
    xs = as_curve("xs", xs)
    lines = []
    for label, dens in as_curves("densities", densities, xs, "xs").items():
        (line,) = ax.plot(xs, dens, label=label)
        lines.append(line)
    ax.set_yscale("log")
    ax.set_xlabel("relaxed bit x")
    ax.set_ylabel("density")
    title = "Binary Concrete density"
    if probability is not None:
        title += f", P(b = 1) = {probability:.2f}"
    ax.set_title(title)
    ax.legend()
    return lines


def draw_bias_variance(ax, temperatures, bias: dict, variance: dict):
    """Squared bias (solid) and variance (dashed) of gradient estimators against temperature."""
    temps = as_curve("temperatures", temperatures)
    bias = as_curves("bias", bias, temps, "temperatures")
    variance = as_curves("variance", variance, temps, "temperatures")
    lines = []
    for label in bias:
        color = estimator_color(label)
        lines += ax.plot(temps, bias[label], "-o", ms=3, color=color, label=f"{label}: bias$^2$")
        if label in variance:
            lines += ax.plot(temps, variance[label], "--", color=color, label=f"{label}: variance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature $\\tau$")
    ax.set_title("bias$^2$ and variance of the gradient")
    ax.legend(ncol=2)
    return lines


def draw_log_variance_curves(ax, steps, curves: dict, ylabel: str = "log10 variance", colors: dict | None = None):
    """One line per estimator of a quantity recorded over training steps (``colors`` by label, optional)."""
    steps = as_curve("steps", steps)
    lines = []
    for label, values in as_curves("curves", curves, steps, "steps").items():
        color = (colors or {}).get(label, estimator_color(label))
        lines += ax.plot(steps, values, label=label, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    return lines
