"""Figures of the FIVO notebook: bounds against K and T, ESS traces, proposals, piano rolls.

Pure draw functions (Maddison et al. 2017, *Filtering Variational Objectives*,
arXiv:1705.09279); the numbers come from :mod:`vitools.smc` and the models.
"""
from __future__ import annotations

import numpy as np

from .style import estimator_color, legend_outside, running_mean, to_numpy

LINESTYLES = ("-", "--", ":", "-.")


def draw_bound_curves(ax, xs, curves: dict, exact=None, xlabel: str = "particles K", log_x: bool = True):
    """Mean ± one standard deviation of each bound's estimate (``label -> [len(xs), repeats]``)
    against ``xs``; ``exact`` (a number or ``[len(xs)]``) as a dashed black line."""
    xs = to_numpy(xs)
    artists = []
    for label, samples in curves.items():
        s = to_numpy(samples)
        mean, std = s.mean(1), s.std(1)
        color = estimator_color(label)
        artists.append(ax.plot(xs, mean, "o-", color=color, label=label, ms=3)[0])
        artists.append(ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, lw=0))
    if exact is not None:
        artists.append(ax.plot(xs, np.broadcast_to(to_numpy(exact), xs.shape), "k--", lw=1.2, label="log p(x)")[0])
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("bound (nats)")
    ax.legend(loc="lower right")
    return artists


def _styles(labels):
    """``label -> (colour, linestyle)``: the method's colour (one per method across the workbook);
    labels of the same method in one figure (e.g. two proposals) differ by line style."""
    seen: dict[str, int] = {}
    out = {}
    for label in labels:
        color = estimator_color(label)
        out[label] = (color, LINESTYLES[seen.get(color, 0) % len(LINESTYLES)])
        seen[color] = seen.get(color, 0) + 1
    return out


def draw_gap_histograms(ax, gaps: dict, bins: int = 40, legend: str = "right"):
    """Histograms of ``log Z_hat - log p(x)`` per bound (``label -> [repeats]``); the same method
    twice (e.g. FIVO with two proposals) keeps its colour and changes line style. ``legend``:
    "right" of the axes (off the data), "inside" or "none"."""
    pooled = np.concatenate([to_numpy(v) for v in gaps.values()])
    lo, hi = np.quantile(pooled, [0.01, 1.0])
    edges = np.linspace(min(lo, -0.5), max(hi, 0.1), bins + 1)
    styles = _styles(gaps)
    artists = []
    for label, values in gaps.items():
        color, ls = styles[label]
        artists.append(ax.hist(np.clip(to_numpy(values), edges[0], edges[-1]), bins=edges, histtype="step",
                               lw=1.6, ls=ls, density=True, color=color, label=label)[2])
    artists.append(ax.axvline(0.0, color="black", ls="--", lw=1.2, label="log p(x)"))
    ax.set_xlabel(r"$\log \hat Z - \log p(x)$  (nats)")
    ax.set_ylabel("density")
    if legend == "right":
        legend_outside(ax, "right")
    elif legend == "inside":
        ax.legend(loc="upper left")
    return artists


def draw_ess(ax, ess, num_particles: int | None = None, label: str = "FIVO"):
    """Effective sample size over time ``[T]`` (or mean of ``[R, T]``), with ``K / 2`` dotted."""
    e = to_numpy(ess)
    e = e.mean(0) if e.ndim == 2 else e
    t = np.arange(1, len(e) + 1)
    artists = [ax.plot(t, e, color=estimator_color(label), label=f"ESS ({label})")[0]]
    if num_particles is not None:
        artists.append(ax.axhline(num_particles / 2, color="grey", ls=":", lw=1, label="K / 2"))
    ax.set_xlabel("time step t")
    ax.set_ylabel("effective sample size")
    ax.legend(loc="upper right")
    return artists


def draw_proposal_parameters(axes, proposals: dict, exact: dict | None = None, index: int = 0):
    """Per-step coefficients of 1-D linear Gaussian proposals: F_t, c_t and the scale.

    ``proposals`` and ``exact``: ``label -> LinearGaussianProposal`` (sequence ``index``);
    learned ones solid with markers, exact ones dashed.
    """
    names = (("F", "F_t (weight on z_{t-1})"), ("c", "c_t (offset)"), ("scale", "scale"))
    artists = []
    for ax, (attr, title) in zip(axes, names):
        for style, group in (("o-", proposals), ("--", exact or {})):
            for label, q in group.items():
                values = to_numpy(getattr(q, attr))[min(index, getattr(q, attr).shape[0] - 1)].reshape(
                    getattr(q, attr).shape[1], -1)[:, 0]
                artists.append(ax.plot(np.arange(1, len(values) + 1), values, style, ms=3, lw=1.4,
                                       color=estimator_color(label), label=label)[0])
        ax.set_title(title)
        ax.set_xlabel("time step t")
    legend_outside(axes[-1])          # off the data
    return artists


def draw_piano_roll(ax, roll, title: str = "", lowest: int = 21):
    """A binary piano roll ``[T, 88]`` as an image: time across, pitch up (MIDI ``lowest + k``)."""
    r = to_numpy(roll)
    keys = np.nonzero(r.any(0))[0]
    lo, hi = (keys.min() - 2, keys.max() + 3) if keys.size else (20, 70)
    image = ax.imshow(r[:, lo:hi].T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                      extent=(0.5, r.shape[0] + 0.5, lowest + lo - 0.5, lowest + hi - 0.5))
    ax.set_xlabel("quarter note")
    ax.set_ylabel("MIDI pitch")
    ax.grid(False)
    ax.set_title(title)
    return [image]


def _reference_line(ax, reference, label="independent keys"):
    if reference is None:
        return []
    return [ax.axhline(float(reference), color="0.4", ls="--", lw=1, label=label)]


def draw_per_step_bounds(ax, curves: dict, reference: float | None = None):
    """Per-time-step bound on held-out pieces (``label -> [T]`` nats per step, mean over pieces);
    ``reference``: the no-latent model's nats per step (independent keys), a dashed grey line."""
    artists = []
    styles = _styles(curves)
    for label, values in curves.items():
        v = to_numpy(values)
        color, ls = styles[label]
        artists.append(ax.plot(np.arange(1, len(v) + 1), v, color=color, ls=ls, label=label)[0])
    artists += _reference_line(ax, reference)
    ax.set_xlabel("time step t")
    ax.set_ylabel("log p(x_t | x_<t) bound (nats)")
    ax.legend(loc="lower right")
    return artists


def draw_training_curves(ax, histories: dict, smooth: int = 10, reference: float | None = None):
    """Training curves (per-step bound per update), smoothed by a running mean of ``smooth``;
    ``reference``: the no-latent model's nats per step on the same data, a dashed grey line."""
    artists = []
    styles = _styles(histories)
    for label, values in histories.items():
        v = to_numpy(values)
        s = running_mean(v, smooth)
        steps = np.arange(len(v) - len(s) + 1, len(v) + 1)          # each mean at its window's last update
        color, ls = styles[label]
        artists.append(ax.plot(steps, s, color=color, ls=ls, label=label)[0])
    artists += _reference_line(ax, reference)
    ax.set_xlabel("update")
    ax.set_ylabel("training bound per step (nats)")
    ax.legend(loc="lower right")
    return artists
