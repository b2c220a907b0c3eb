"""Run time of every notebook, executed top to bottom in a fresh kernel.

    python bench/notebooks.py [--device cpu|cuda] [--only 00_gradient]

Writes bench/results/notebooks[-<device>].md. The budget is 3 minutes per notebook and 15 minutes
for the whole workbook on a 2-core CPU at one torch thread; the table records the machine's load
average before and after, since another busy process slows every notebook.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 180
WORKBOOK_BUDGET_SECONDS = 15 * 60


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=os.environ.get("VITOOLS_DEVICE", "cpu"))
    parser.add_argument("--only", default="", help="run notebooks whose name contains this")
    args = parser.parse_args(argv)
    os.environ["VITOOLS_DEVICE"] = args.device
    rows = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if args.only not in path.stem:
            continue
        seconds = run(path)
        rows.append((path.stem, seconds))
        print(f"{path.stem:40s} {seconds:7.1f} s", flush=True)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    total = sum(seconds for _, seconds in rows)
    suffix = "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    out = ROOT / "bench" / "results" / f"notebooks{suffix}.md"
    lines = [f"# Notebook run times ({args.device})", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset (torch default)')}. Each notebook executed top to bottom "
             f"in a fresh kernel; budget {BUDGET_SECONDS} s each, {WORKBOOK_BUDGET_SECONDS} s in all. "
             f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after.", "",
             "| notebook | seconds | within budget |", "|---|---:|:---:|"]
    lines += [f"| {name} | {seconds:.1f} | {'yes' if seconds <= BUDGET_SECONDS else 'NO'} |" for name, seconds in rows]
    lines.append(f"| **whole workbook** | **{total:.1f}** | {'yes' if total <= WORKBOOK_BUDGET_SECONDS else 'NO'} |")
    if not args.only:
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
