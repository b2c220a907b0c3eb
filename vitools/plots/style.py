"""The workbook's figure style, a stable colour for every estimator, and the small array
helpers every draw function shares."""
from __future__ import annotations

import re

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

DPI = 120

# One colour per method across the whole workbook, by name: "FIVO (K=64)" and "FIVO (K=4)" are
# FIVO's colour, "REBAR, eta = 0.50" is REBAR's. Methods drawn in the same figure differ; a
# colour is shared only by methods that never meet in one figure.
METHOD_COLORS = {
    # notebook 00: the score function and its variance reduction; pathwise; measure-valued
    "score function": "#1b9e77", "reinforce": "#1b9e77",
    "score + moving-average baseline": "#d95f02", "score + leave-one-out baseline": "#7570b3",
    "score + delta-method cv": "#e7298a", "pathwise": "#66a61e", "measure-valued": "#e6ab02",
    "measure valued": "#e6ab02", "score + constant baseline": "#a6761d",
    # 01-03, 07: bounds and multi-sample estimators
    "elbo": "#666666", "iwae": "#ff7f00", "fivo": "#6a3d9a", "vimco": "#e31a1c", "nvil": "#1f78b4",
    "nvil multisample": "#a6cee3", "dreg": "#b15928", "stl": "#33a02c", "rws": "#fb9a99",
    # 04-05: relaxations and their control variates
    "gumbel softmax": "#17becf", "gumbel-softmax": "#17becf", "concrete": "#17becf",
    "straight through": "#bcbd22", "straight-through": "#bcbd22", "gapped straight through": "#8c564b",
    "gst": "#8c564b", "igr": "#e377c2", "rebar": "#d62728", "relax": "#9467bd", "lax": "#2ca02c",
    "arm": "#ff9896", "disarm": "#08306b",
    # 06: implicit reparameterization
    "rsvi": "#98df8a", "implicit": "#1b9e77",
    # 09: black-box VI, delta-method control variates, flows, MLMC
    "pathwise + delta cv": "#2e7d32", "score function + delta cv": "#ad1457", "measure-valued + delta cv": "#8d6e00",
    "delta method": "#4e342e", "bbvi": "#00838f", "bbvi + cv": "#4527a0", "bbvi + no rao-blackwell": "#90a4ae",
    "bbvi + no rao-blackwell + cv": "#607d8b", "mlmc": "#c62828", "planar": "#0277bd", "radial": "#ef6c00",
    "coupling": "#6a1b9a", "diagonal gaussian": "#757575", "planar flow": "#0277bd",
    # 10: variational memory addressing (the exact sum over slots; the memoryless VAE)
    "exact sum over slots": "#4a4a4a", "plain vae": "#8e8e8e",
    # 08: discrete estimators since REBAR
    "rloo": "#004d40", "double cv": "#f57f17", "rodeo": "#880e4f", "unordered set": "#33691e",
    "gumbel-rao": "#006064", "gumbel rao": "#006064", "reinmax": "#bf360c", "aimle": "#1a237e", "i-mle": "#7986cb",
    # 10: score-based graph learning, label trees
    "score + mode baseline": "#b71c1c", "whole-cost score function": "#9e9d24", "top-k + mode baseline": "#ff6f00",
    "top-k rloo": "#26a69a", "flat softmax": "#37474f", "learned tree": "#c2185b", "random tree": "#ffb300",
    "oracle tree": "#5d4037",
}
# Labels the table does not know get these, in order of first use, and keep them.
EXTRA_COLORS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
                "#756bb1", "#636363", "#9c9ede", "#cedb9c"]
PALETTE = list(dict.fromkeys(METHOD_COLORS.values()))
_extra: dict[str, str] = {}


def use_style(dpi: int = DPI) -> None:
    """The workbook's figure defaults: 120 dpi (readable when a notebook is shown full width),
    9-10 pt text, legends framed so that one that must sit inside an axes stays readable."""
    if not isinstance(dpi, (int, float)) or isinstance(dpi, bool) or dpi < DPI:
        raise ValueError(f"dpi must be a number >= {DPI}, got {dpi!r}")
    mpl.rcParams.update({
        "figure.dpi": dpi, "savefig.dpi": dpi, "figure.figsize": (9, 3.2),
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
        "ytick.labelsize": 9, "legend.fontsize": 9, "legend.frameon": True, "legend.framealpha": 0.9,
        "legend.edgecolor": "0.85", "legend.loc": "best", "figure.constrained_layout.use": True,
    })


def method_key(label: str) -> str:
    """The method a label names: lower case, without settings such as "(K=64)", ", eta = 0.5",
    ": variance" or "tau=0.5"; underscores as spaces (registered names match their labels)."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    key = label.lower().replace("_", " ")
    key = re.sub(r"\([^)]*\)", " ", key)
    key = re.split(r"[,:;]", key)[0]
    key = re.sub(r"\b(k|tau|lambda|eta|t|n)\s*=\s*[-+.\w]*", " ", key)
    return " ".join(key.split())


def estimator_color(label: str) -> str:
    """The same colour for the same method in every figure of the workbook (METHOD_COLORS);
    a label the table does not know gets the next of EXTRA_COLORS and keeps it."""
    key = method_key(label)
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    if key not in _extra:
        _extra[key] = EXTRA_COLORS[len(_extra) % len(EXTRA_COLORS)]
    return _extra[key]


def legend_outside(ax, where: str = "right", **kwargs):
    """A legend beside the axes (``where="right"``) or under it (``"below"``), off the data."""
    if where == "right":
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)
    if where == "below":
        handles, _ = ax.get_legend_handles_labels()
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), borderaxespad=0.0,
                         ncols=kwargs.pop("ncols", max(1, min(4, len(handles)))), **kwargs)
    raise ValueError(f"where must be 'right' or 'below', got {where!r}")


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 9.0, height: float = 3.2, **kwargs):
    """A figure that is *not* auto-displayed by the inline backend (explorers display it).
    ``ncols`` and ``nrows`` are positive integers, ``width`` and ``height`` positive inches."""
    for name, value in (("ncols", ncols), ("nrows", nrows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1e3:
            raise ValueError(f"{name} must be a positive number of inches below 1000, got {value!r}")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)
    plt.close(fig)
    return fig, axes


def to_numpy(x) -> np.ndarray:
    """A float64 NumPy array of a tensor (detached, on the CPU) or of anything array-like."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Means of ``window`` consecutive values (of all of them when there are fewer):
    ``[len(values) - w + 1]`` with ``w = min(window, len(values))``."""
    w = max(1, min(int(window), len(values)))
    return np.convolve(values, np.ones(w) / w, mode="valid")


def as_curve(name: str, values, like: np.ndarray | None = None, like_name: str = "") -> np.ndarray:
    """``values`` as a non-empty 1-D float64 array (see :func:`to_numpy`); with ``like``, of the
    same length as that array (named ``like_name``). A ValueError naming ``name`` otherwise."""
    v = to_numpy(values)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    if like is not None and v.shape != like.shape:
        raise ValueError(f"{name} must have the length of {like_name} ({len(like)}), got length {len(v)}")
    return v


def as_curves(name: str, curves: dict, like: np.ndarray | None = None, like_name: str = "") -> dict:
    """``{label: as_curve(f"{name}[label]", values, like, like_name)}`` for a dict of curves."""
    return {label: as_curve(f"{name}[{label!r}]", values, like, like_name) for label, values in curves.items()}
