"""Figures for implicit reparameterization (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498):
the CDF surface whose level sets are the sample paths z(theta), sample-gradients, and the
accuracy of each method's dz/dtheta."""
from __future__ import annotations

import numpy as np

from .. import checks
from .style import as_curve, as_curves, estimator_color, running_mean, to_numpy


# Distinct colours for the methods compared here (falls back to the workbook palette).
METHOD_COLORS = {"vitools implicit": "#1b9e77", "torch built-in": "#d95f02", "approx. inverse CDF": "#7570b3",
                 "finite differences": "#e7298a", "von Mises latent": "#1b9e77", "Gaussian latent": "#d95f02",
                 "exact posterior": "#000000"}


def _color(label: str) -> str:
    return METHOD_COLORS.get(label) or estimator_color(label)


def draw_cdf_surface(ax, z, params, cdf, levels=(0.1, 0.3, 0.5, 0.7, 0.9), xlabel="z", ylabel="theta",
                     log_y: bool = False):
    """Filled ``cdf`` ``[P, Z]`` over ``z`` ``[Z]`` and ``params`` ``[P]``, with level curves
    F = u: holding u fixed and moving theta, the sample slides along one of these curves."""
    z, params, cdf = as_curve("z", z), as_curve("params", params), to_numpy(cdf)
    for name, axis in (("z", z), ("params", params)):
        if len(axis) < 2:
            raise ValueError(f"{name} must hold at least 2 points, got {len(axis)}")
        checks.finite(name, axis)
    if cdf.shape != (len(params), len(z)):
        raise ValueError(f"cdf must have shape [len(params), len(z)] = {(len(params), len(z))}, got {cdf.shape}")
    checks.finite("cdf", cdf)
    Z, P = np.meshgrid(z, params)
    fill = ax.contourf(Z, P, cdf, levels=20, cmap="viridis")
    lines = ax.contour(Z, P, cdf, levels=list(levels), colors="white", linewidths=1.2)
    ax.clabel(lines, fmt=lambda v: f"u={v:g}", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    return fill, lines


def draw_sample_gradient(ax, z, grads: dict, xlabel="z", ylabel="dz/dtheta"):
    """``grads``: label -> ``[N]`` values of dz/dtheta at the sorted points ``z`` ``[N]``."""
    z = as_curve("z", z)
    grads = as_curves("grads", grads, z, "z")
    order = np.argsort(z)
    artists = []
    for i, (label, g) in enumerate(grads.items()):
        artists += ax.plot(z[order], g[order], lw=1.8 if i == 0 else 1.2,
                           ls="-" if i == 0 else "--", color=_color(label), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return artists


def draw_error_strips(ax, errors: dict, floor: float = 1e-17, title: str | None = None):
    """One row of points per method: relative errors ``[n]`` on a log axis (0 drawn at ``floor``)."""
    artists = []
    labels = list(errors)
    for i, label in enumerate(labels):
        e = np.clip(to_numpy(errors[label]), floor, None)
        artists.append(ax.scatter(e, np.full(e.shape, i), s=18, color=_color(label), alpha=0.8))
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("relative error of dz/dtheta")
    if title:
        ax.set_title(title)
    return artists


def draw_error_curves(ax, params, errors: dict, xlabel="shape alpha", floor: float = 1e-17):
    """Max relative error per method (label -> ``[M]``) against the parameter ``[M]``, log-log."""
    params = as_curve("params", params)
    artists = []
    for label, e in as_curves("errors", errors, params, "params").items():
        artists += ax.plot(params, np.clip(e, floor, None), "o-", ms=3,
                           color=_color(label), label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("max relative error")
    ax.legend()
    return artists


def draw_elbo_history(ax, histories: dict, smooth: int = 10):
    """ELBO traces (label -> ``[steps]``), smoothed by a running mean of ``smooth`` steps."""
    smooth = checks.count("smooth", smooth)
    artists = []
    for label, h in as_curves("histories", histories).items():
        artists += ax.plot(running_mean(h, smooth), color=_color(label), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("ELBO (running mean)")
    ax.legend()
    return artists


def draw_angles(ax, angles, grid, densities: dict, bins: int = 24):
    """A histogram of circular data ``angles`` with densities on ``grid`` (label -> ``[G]``)."""
    bins = checks.count("bins", bins)
    angles, grid = as_curve("angles", angles), as_curve("grid", grid)
    densities = as_curves("densities", densities, grid, "grid")
    artists = [ax.hist(angles, bins=bins, range=(-np.pi, np.pi), density=True, color="0.8",
                       label="data")[2]]
    for label, d in densities.items():
        artists += ax.plot(grid, d, color=_color(label), lw=1.8, label=label)
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xlabel("angle (radians)")
    ax.legend()
    return artists
