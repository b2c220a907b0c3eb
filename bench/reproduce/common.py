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

from vitools.plots.reproductions import check_result

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "reproductions"


def machine() -> str:
    """The machine in words: CPU or GPU, threads, torch version."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and \
        os.environ.get("VITOOLS_DEVICE", "").startswith("cuda") else f"{platform.machine()} CPU"
    return f"{device}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


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
