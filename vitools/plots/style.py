"""The workbook's figure style, a stable colour for every estimator, and the small array
helpers every draw function shares."""
from __future__ import annotations

import zlib

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
           "#666666", "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6"]
_FIXED = {
    "score function": 0, "score + moving-average baseline": 1, "score + leave-one-out baseline": 2,
    "score + constant baseline": 6,
    "score + delta-method CV": 3, "pathwise": 4, "measure-valued": 5,
}


def use_style(dpi: int = 80) -> None:
    """Readable, compact defaults (small stored PNGs keep notebook diffs small)."""
    mpl.rcParams.update({
        "figure.dpi": dpi, "savefig.dpi": dpi, "figure.figsize": (9, 3.2),
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
        "legend.frameon": False, "figure.constrained_layout.use": True,
    })


def estimator_color(label: str) -> str:
    """The same colour for the same estimator label in every figure of the workbook."""
    index = _FIXED.get(label, zlib.crc32(label.encode()) % len(PALETTE))
    return PALETTE[index % len(PALETTE)]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 9.0, height: float = 3.2, **kwargs):
    """A figure that is *not* auto-displayed by the inline backend (explorers display it)."""
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
