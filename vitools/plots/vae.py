"""Figures of the VAE notebook: image grids, training curves, 2-D latent spaces, bounds vs K.

Pictures for Kingma & Welling 2014 (arXiv:1312.6114) and Burda et al. 2016 (arXiv:1509.00519);
pure draw functions ``draw_x(ax, data, ...) -> artists`` that compute nothing that matters.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import checks
from .style import running_mean, to_numpy

LABEL_CMAP = "tab10"


def draw_image_grid(ax, images, nrow: int = 1, image_shape: tuple[int, int] = (28, 28), pad: int = 1,
                    cmap: str = "gray_r"):
    """Tile ``images`` ``[n, H*W]`` (or ``[n, H, W]``) with values in [0, 1] into ``nrow`` rows.

    Missing cells of the last row stay blank; the axes lose their ticks and grid.
    """
    nrow = checks.count("nrow", nrow)
    pad = checks.count("pad", pad, minimum=0)
    h, w = (checks.count("image_shape", s) for s in image_shape)
    x = torch.as_tensor(images).detach().cpu().double()
    if x.dim() == 2:
        checks.shape("images", x, (h * w,), "image_shape")
        x = x.reshape(-1, h, w)
    checks.shape("images", x, (h, w), "image_shape")
    if x.dim() != 3 or x.shape[0] < 1:
        raise ValueError(f"images must have shape [n, {h * w}] or [n, {h}, {w}] with n >= 1, got {tuple(x.shape)}")
    checks.probability("images", x)
    n = x.shape[0]
    ncol = math.ceil(n / nrow)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), np.nan)
    for i, img in enumerate(x.numpy()):                   # a handful of pictures, not samples
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    artist = ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return artist


def draw_training_curves(ax, history, negate: bool = False, smooth: int = 25, label: str = "training loss",
                         evals: list[str] | None = None, eval_labels: dict | None = None,
                         negate_evals: bool = False):
    """The minibatch loss of a :class:`vitools.train.History` (moving average over ``smooth``
    steps, raw values faint) and its evaluations as lines with markers.

    ``negate=True`` plots ``-loss`` (an ELBO from a loss that was ``-ELBO``); evaluations are
    drawn as recorded unless ``negate_evals=True``. ``evals`` picks the evaluation names (default: all), ``eval_labels`` renames them.
    """
    smooth = checks.count("smooth", smooth)
    arrays = history.as_arrays()
    names = list(history.evals) if evals is None else list(evals)
    for name in names:
        if name not in history.evals:
            raise ValueError(f"evals must name recorded evaluations {sorted(history.evals)}, got {name!r}")
    sign = -1.0 if negate else 1.0
    steps, loss = arrays["steps"], sign * arrays["loss"]
    artists = []
    if len(loss):
        artists += ax.plot(steps, loss, color="0.75", lw=0.6)
        avg = running_mean(loss, smooth) if len(loss) >= smooth else loss
        artists += ax.plot(steps[len(steps) - len(avg):], avg, color="C0", lw=1.5,
                           label=label + (f" ({smooth}-step average)" if len(avg) < len(loss) else ""))
    for i, name in enumerate(names):
        text = (eval_labels or {}).get(name, name)
        artists += ax.plot(arrays["eval_steps"], (-1.0 if negate_evals else 1.0) * arrays[name], "o-", ms=3, color=f"C{i + 1}", label=text)
    ax.set_xlabel("step")
    ax.set_ylabel("-loss" if negate else "loss")
    ax.legend(loc="lower right" if negate else "upper right")
    return artists


def draw_latent_scatter(ax, z, labels=None, s: float = 4.0, legend: bool = True):
    """Points ``z`` ``[N, 2]`` (e.g. posterior means), coloured by integer ``labels`` ``[N]``."""
    z = to_numpy(z)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"z must have shape [N, 2], got {z.shape}")
    checks.finite("z", torch.as_tensor(z))
    if labels is None:
        return [ax.scatter(z[:, 0], z[:, 1], s=s, color="C0")]
    labels = to_numpy(labels).astype(int)
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {labels.shape}")
    artist = ax.scatter(z[:, 0], z[:, 1], c=labels, s=s, cmap=LABEL_CMAP, vmin=-0.5, vmax=9.5)
    if legend:
        handles, names = artist.legend_elements(num=sorted(set(labels.tolist())))
        ax.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=0.7,
                  title="digit", title_fontsize=7)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return [artist]


def draw_bounds_vs_k(ax, ks, values, label: str = r"IWAE bound $\mathcal{L}_K$", elbo: float | None = None,
                     reference: float | None = None, reference_label: str = r"$\log p(x)$", highlight=None,
                     errors=None, color: str = "C0"):
    """A bound (mean over data) against the number of samples ``K`` on a log axis; optional
    horizontal ELBO and reference lines, error bars and a highlighted ``K``."""
    ks, values = to_numpy(ks), to_numpy(values)
    if ks.ndim != 1 or ks.shape != values.shape or len(ks) < 1:
        raise ValueError(f"ks and values must be 1-D of equal length, got shapes {ks.shape} and {values.shape}")
    checks.positive("ks", torch.as_tensor(ks))
    artists = [ax.errorbar(ks, values, yerr=None if errors is None else to_numpy(errors), fmt="o-", ms=4,
                           color=color, label=label, capsize=2)]
    if elbo is not None:
        artists.append(ax.axhline(float(elbo), color="C1", ls=":", lw=1.2, label=r"ELBO $\mathcal{L}_1$"))
    if reference is not None:
        artists.append(ax.axhline(float(reference), color="black", ls="--", lw=1.0, label=reference_label))
    if highlight is not None:
        i = int(np.argmin(np.abs(ks - float(highlight))))
        artists += ax.plot(ks[i], values[i], "o", ms=10, mfc="none", mec="C3", mew=2)
    ax.set_xscale("log")
    ax.set_xlabel("number of samples $K$")
    ax.legend(loc="lower right")
    return artists
