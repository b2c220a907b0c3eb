"""The workbook's figure style and a stable colour for every estimator."""
from __future__ import annotations

import zlib

import matplotlib as mpl
import matplotlib.pyplot as plt

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
