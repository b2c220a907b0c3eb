"""Writing a reproduction's result: one JSON file with its provenance, written atomically.

Schema (checked by tests/test_reproductions.py through :data:`vitools.plots.reproductions.KEYS`):
``name``, ``paper`` (arXiv id), ``finding`` (one sentence), ``command``, ``commit``, ``machine``,
``date``, ``seconds``, ``metric`` (what is measured, saying "higher is better" or "nll"),
``reference`` (``{"label", "value"}``: the no-latent model on the same metric), ``runs`` (a list of
``{"method", "seed", "steps", "curve": [[step, value], ...], "final"}``), optionally
``paper_value`` (``{method: value}``) and ``notes``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import vitools as vt

from vitools.plots.reproductions import check_result

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "reproductions"
DATA_DIR = ROOT.parent / "shared" / "data"      # the full reference datasets, beside the checkout


def machine() -> str:
    """The machine in words: CPU or GPU, threads, torch version."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and \
        os.environ.get("VITOOLS_DEVICE", "").startswith("cuda") else f"{platform.machine()} CPU"
    return f"{device}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def commit() -> str:
    """``git rev-parse --short HEAD``, with ``+modified`` when the code (``vitools/``, ``bench/`` but its
    results) differs from that commit, untracked files included; ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--", "vitools", "bench",
                                  ":(exclude)bench/results"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    head = out.stdout.strip()
    if not head:
        return "unknown"
    return head + ("+modified" if changed.stdout.strip() else "")


def command() -> str:
    """The command line as typed: ``python -m bench.reproduce.<name> ...`` (no absolute paths)."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    argv[0] = Path(argv[0]).name
    return " ".join(str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in argv)


class Timer:
    """Wall-clock seconds since construction: ``Timer().seconds``."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def fit_with_curve(estimator, model, x_train, valid, *, steps: int, batch_size: int, lr: float, seed: int,
                   eval_points: int = 8, **fit_options):
    """:func:`vitools.train.fit` recording ``valid()`` ``eval_points`` times: ``(curve, seconds)``,
    ``curve`` as ``[(step, value), ...]`` and ``seconds`` the training wall time."""
    timer = Timer()
    history = vt.train.fit(estimator, model, x_train, steps=steps, batch_size=batch_size, lr=lr,
                           eval_fn=lambda: {"valid": valid()}, eval_every=max(1, steps // eval_points),
                           seed=seed, progress=False, **fit_options)
    seconds = timer.seconds
    h = history.as_arrays()
    return list(zip(h["eval_steps"].tolist(), h["valid"].tolist())), seconds


def held_out_bound(model, x_test, eval_k: int, seed: int, batch_size: int = 20):
    """The common evaluation: L_eval_k per test digit, drawn under the seed ``10_000 + seed``;
    ``(mean, standard error, per-digit values rounded to 0.01)``."""
    from vitools.models.sbn import bound_per_example

    with vt.config.seeded(10_000 + seed):
        values = bound_per_example(model, x_test, k=eval_k, batch_size=batch_size).double()
    return (values.mean().item(), (values.std() / len(values) ** 0.5).item(),
            [round(v, 2) for v in values.tolist()])


def run(method: str, seed: int, steps: int, curve, final: float, **extra) -> dict:
    """One entry of ``runs``: ``curve`` is ``[[step, value], ...]``."""
    return {"method": method, "seed": int(seed), "steps": int(steps),
            "curve": [[int(s), float(v)] for s, v in curve], "final": float(final), **extra}


def write_result(name: str, paper: str, finding: str, metric: str, reference: dict, runs: list,
                 seconds: float, paper_value: dict | None = None, notes: str | None = None,
                 results_dir: Path = RESULTS) -> Path:
    """Validate and write ``<results_dir>/<name>.json`` atomically (a failure leaves no file behind);
    returns its path."""
    result = {"name": name, "paper": paper, "finding": finding,
              "command": command(), "commit": commit(),
              "machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seconds": float(seconds), "metric": metric, "reference": reference, "runs": runs}
    if paper_value is not None:
        result["paper_value"] = paper_value
    if notes is not None:
        result["notes"] = notes
    check_result(result)
    results_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=results_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, results_dir / f"{name}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return results_dir / f"{name}.json"


def digits(source: str = "binarized", n_valid: int = 1000, n_test: int = 500):
    """``(x_train, x_valid, x_test, description)``: the full binarized MNIST (50,000 train; the
    first ``n_valid`` validation and ``n_test`` test digits) or the bundled 28x28 digits (4,000
    train, fixed binarization; validation and test from the 1,000 held-out digits). ``source="auto"``:
    the full data where ../shared/data has it, else the bundled digits."""
    if source == "auto":
        source = "binarized" if (DATA_DIR / "binarized_mnist.npz").exists() else "bundled"
    if source == "binarized":
        load = lambda split: vt.data.load_mnist("binarized", split=split, data_dir=DATA_DIR)  # noqa: E731
        x_train, x_valid, x_test = load("train"), load("valid")[:n_valid], load("test")[:n_test]
        return x_train, x_valid, x_test, (f"binarized MNIST (Larochelle & Murray), 50,000 train, "
                                          f"{n_valid} validation, first {n_test} test digits")
    if source == "bundled":
        x_train = vt.data.load_mnist("bundled", "train", binarize="fixed", seed=0)
        held = vt.data.load_mnist("bundled", "test", binarize="fixed", seed=0)
        n_test = min(n_test, 500)
        return x_train, held[500:500 + n_valid], held[:n_test], (
            f"bundled 28x28 digits, 4,000 train, fixed binarization; {min(n_valid, 500)} validation and "
            f"{n_test} test digits from the 1,000 held out")
    raise ValueError(f"source must be 'binarized' or 'bundled', got {source!r}")
