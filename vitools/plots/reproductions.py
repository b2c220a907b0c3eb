"""Stored paper reproductions (``bench/results/reproductions/<name>.json``): load, check, draw.

``make reproduce`` writes them (bench/reproduce/); a notebook draws one with :func:`draw_runs`
(one colour per method, a band over seeds, the no-latent reference as a line) and asserts the
finding on the loaded numbers. The schema is :data:`KEYS` (see bench/reproduce/common.py).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .style import estimator_color

KEYS = ("name", "paper", "finding", "command", "commit", "machine", "date", "seconds", "metric",
        "reference", "runs")
RUN_KEYS = ("method", "seed", "steps", "curve", "final")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "bench" / "results" / "reproductions"


def check_result(result: dict) -> dict:
    """Raise ``ValueError`` naming the first key that is missing or malformed."""
    if not isinstance(result, dict):
        raise ValueError(f"result must be a dict, got {type(result).__name__}")
    for key in KEYS:
        if key not in result:
            raise ValueError(f"result must have the key {key!r}; it has {sorted(result)}")
    if "higher is better" not in result["metric"] and "nll" not in result["metric"].lower():
        raise ValueError(f"metric must say 'higher is better' or 'nll', got {result['metric']!r}")
    ref = result["reference"]
    if not (isinstance(ref, dict) and isinstance(ref.get("label"), str) and _finite(ref.get("value"))):
        raise ValueError(f"reference must be {{'label': str, 'value': number}}, got {ref!r}")
    if not isinstance(result["runs"], list) or not result["runs"]:
        raise ValueError("runs must be a non-empty list")
    for i, run in enumerate(result["runs"]):
        for key in RUN_KEYS:
            if key not in run:
                raise ValueError(f"runs[{i}] must have the key {key!r}; it has {sorted(run)}")
        if not _finite(run["final"]):
            raise ValueError(f"runs[{i}]['final'] must be a finite number, got {run['final']!r}")
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 and _finite(p[1]) for p in run["curve"]):
            raise ValueError(f"runs[{i}]['curve'] must be a list of [step, value] pairs with finite values")
    return result


def load(name: str, directory: str | Path | None = None) -> dict:
    """The stored result ``<directory>/<name>.json`` (default: the checkout's bench/results/reproductions)."""
    path = Path(directory or DEFAULT_DIR) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"name must be a stored reproduction; {path} does not exist (run `make reproduce-{name}`)")
    return check_result(json.loads(path.read_text()))


def finals(result: dict) -> dict[str, np.ndarray]:
    """``{method: final values over seeds}``."""
    out: dict[str, list] = {}
    for run in result["runs"]:
        out.setdefault(run["method"], []).append(run["final"])
    return {method: np.asarray(values, dtype=float) for method, values in out.items()}


def paired_differences(result: dict, a: str, b: str, key: str = "per_example") -> list[tuple[float, float]]:
    """Per seed (in seed order), the mean and standard error of method ``a``'s minus method ``b``'s
    per-digit scores ``key``: every run is scored on the same held-out digits, so the difference is
    paired digit by digit and its standard error is far below each score's own."""
    by_seed = {m: {r["seed"]: r for r in result["runs"] if r["method"] == m} for m in (a, b)}
    for method, runs in by_seed.items():
        if not runs:
            raise ValueError(f"method {method!r} is not among the runs of {result.get('name')!r}")
    if set(by_seed[a]) != set(by_seed[b]):
        raise ValueError(f"methods {a!r} and {b!r} were run on different seeds: "
                         f"{sorted(by_seed[a])} and {sorted(by_seed[b])}")
    out = []
    for seed in sorted(by_seed[a]):
        d = np.asarray(by_seed[a][seed][key], dtype=float) - np.asarray(by_seed[b][seed][key], dtype=float)
        out.append((float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))))
    return out


def draw_runs(ax, result: dict, methods=None, reference: bool = True, xlabel: str = "updates"):
    """Curves per method: the mean over seeds as a line, min-max over seeds as a band; the no-latent
    reference as a dashed grey line. Returns the axes."""
    by_method: dict[str, list] = {}
    for run in result["runs"]:
        by_method.setdefault(run["method"], []).append(np.asarray(run["curve"], dtype=float))
    for method, curves in by_method.items():
        if methods is not None and method not in methods:
            continue
        length = min(len(c) for c in curves)
        stack = np.stack([c[:length] for c in curves])                 # [seeds, points, 2]
        steps, values = stack[0, :, 0], stack[:, :, 1]
        color = estimator_color(method)
        ax.plot(steps, values.mean(0), color=color, label=f"{method} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2, lw=0)
    if reference:
        ref = result["reference"]
        ax.axhline(ref["value"], color="0.4", ls="--", lw=1, label=ref["label"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(result["metric"])
    return ax


def draw_finals(ax, finals: dict, reference: dict | None = None, *, errors: dict | None = None,
                offset: float = 0.0, marker: str = "o", label: str | None = None, tick_labels: bool = True):
    """Every seed's final score, one column per method (``finals`` as from :func:`finals`) at
    x = its index + ``offset``, in the method's colour, with +- ``errors[method]`` bars if given; the
    no-latent ``reference`` (a result's ``"reference"``) as a dashed grey line; method names as x ticks
    (blank if not ``tick_labels``). ``label`` puts a grey ``marker`` in the legend (to tell two sets of
    columns apart). Returns the axes."""
    for i, (method, values) in enumerate(finals.items()):
        x = [i + offset] * len(values)
        if errors is None:
            ax.plot(x, values, marker, color=estimator_color(method), ms=4, ls="none")
        else:
            ax.errorbar(x, values, yerr=errors[method], fmt=marker, ms=4, capsize=2, color=estimator_color(method))
    if label is not None:
        ax.plot([], [], marker, color="0.3", ls="none", label=label)
    if reference is not None:
        ax.axhline(reference["value"], color="0.4", ls="--", lw=1, label=reference["label"])
    ax.set_xticks(range(len(finals)), list(finals) if tick_labels else [], rotation=40, ha="right", fontsize=8)
    return ax


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
