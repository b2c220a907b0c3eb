"""Figures of variational memory addressing (:mod:`vitools.models.memory`, :mod:`vitools.few_shot`):
held-out-class log-likelihoods by memory and estimator, and the address posterior over a memory."""
from __future__ import annotations

import numpy as np
import torch

from .. import checks
from .style import estimator_color

__all__ = ["run_values", "draw_memory_scores", "draw_address_posterior"]

CONDITIONS = (("right", "o", "right-class memory"), ("wrong", "s", "wrong-class memory"), ("empty", "v", "empty memory"))


def run_values(result: dict, key: str) -> dict[str, np.ndarray]:
    """``{method: values over seeds}`` of the run entry ``key`` (``"final"``, ``"wrong_mean"``, ``"kl"``, ...)
    of a stored reproduction, for the methods whose runs carry it."""
    if not isinstance(result, dict) or not isinstance(result.get("runs"), list):
        raise ValueError(f"result must be a stored reproduction with runs, got {type(result).__name__}")
    if not isinstance(key, str):
        raise ValueError(f"key must be a string, got {key!r}")
    out: dict[str, list] = {}
    for run in result["runs"]:
        if key in run:
            out.setdefault(run["method"], []).append(float(run[key]))
    if not out:
        raise ValueError(f"key must name an entry of the runs, got {key!r}; they have {sorted(result['runs'][0])}")
    return {method: np.asarray(values) for method, values in out.items()}


def draw_memory_scores(ax, result: dict, plain: str = "plain VAE"):
    """Per method (x axis), the held-out log-likelihood with the right, wrong and empty memory: the mean
    over seeds as a marker, min-max over seeds as a bar; the ``plain`` model and the no-latent
    reference as horizontal lines. Returns the axes."""
    means = {c: run_values(result, f"{c}_mean") for c, _, _ in CONDITIONS}
    methods = [m for m in means["right"] if m in means["wrong"]]
    if not methods:
        raise ValueError("result must hold memory runs with right_mean, wrong_mean and empty_mean")
    for i, method in enumerate(methods):
        color = estimator_color(method)
        for j, (cond, marker, label) in enumerate(CONDITIONS):
            values = means[cond][method]
            x = i + (j - 1) * 0.22
            ax.errorbar([x], [values.mean()], yerr=[[values.mean() - values.min()], [values.max() - values.mean()]],
                        fmt=marker, color=color, mfc=color if cond == "right" else "white", ms=6, capsize=2,
                        label=label if i == 0 else None)
    if plain in means["right"]:
        values = means["right"][plain]
        ax.axhline(values.mean(), color=estimator_color(plain), lw=1.2,
                   label=f"{plain} ({len(values)} seeds)")
    ref = result.get("reference", {})
    if "value" in ref:
        ax.axhline(ref["value"], color="0.5", ls="--", lw=1, label=ref.get("label", "reference"))
    ax.set_xticks(range(len(methods)), [m.replace(" (", "\n(").replace(" over ", "\nover ") for m in methods])
    ax.set_ylabel("held-out log p(x | M) (nats)")
    return ax


def draw_address_posterior(ax, probs, right, labels=("right class", "other class")):
    """Bars of one digit's $q(a \\mid x, M)$ over the slots ``probs`` ``[S]``, coloured by the boolean
    mask ``right`` ``[S]`` (slots holding the digit's class). Returns the bar container."""
    p = torch.as_tensor(probs).detach().cpu().double()
    r = torch.as_tensor(right).detach().cpu()
    if p.dim() != 1 or p.numel() < 1:
        raise ValueError(f"probs must be a vector [S] with S >= 1, got shape {tuple(p.shape)}")
    checks.probability("probs", p)
    if r.dtype != torch.bool or r.shape != p.shape:
        raise ValueError(f"right must be a boolean mask shaped like probs {tuple(p.shape)}, got {r.dtype} {tuple(r.shape)}")
    colors = ["#1b9e77" if flag else "#bbbbbb" for flag in r.tolist()]
    bars = ax.bar(np.arange(p.numel()), p.numpy(), color=colors)
    for flag, label in zip((True, False), labels):
        if bool((r == flag).any()):
            ax.bar([0], [0], color="#1b9e77" if flag else "#bbbbbb", label=label)
    ax.set_xlabel("memory slot a")
    ax.set_ylabel("q(a | x, M)")
    ax.set_ylim(0, 1)
    return bars
