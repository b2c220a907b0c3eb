"""Notebooks re-run cleanly: run twice top to bottom in one kernel (what a reader does who runs
everything again without restarting), then once more in a fresh kernel (Restart & Run All),
every cell -- so every assert -- passes each time, and no file is left behind in the checkout.

``make test`` already runs every notebook once in a fresh kernel (nbval). Re-running costs three
runs more, so by default this test takes the short notebooks ``CHEAP`` (00, 01 and 06: about
three minutes on one core); ``VITOOLS_RERUN_ALL=1`` takes every notebook (about 30 minutes).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHEAP = ("00", "01", "06")
SKIP_PARTS = {".git", ".venv", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "build", ".hypothesis"}


def chosen() -> list:
    rerun_all = os.environ.get("VITOOLS_RERUN_ALL", "") == "1"
    return [pytest.param(path, id=path.stem) for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
            if rerun_all or path.name[:2] in CHEAP]


def snapshot() -> dict[str, float]:
    """Every file of the checkout (outside version control, environments and caches): path -> mtime."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_PARTS]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                files[str(path.relative_to(ROOT))] = path.stat().st_mtime
            except FileNotFoundError:
                pass
    return files


def run_cells(client: NotebookClient, nb, label: str) -> int:
    ran = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            client.execute_cell(cell, index)
            ran += 1
    assert ran, f"{label}: no code cell ran"
    return ran


def test_the_short_selection_names_existing_notebooks():
    assert [p.values[0].name[:2] for p in chosen()] == list(CHEAP) or os.environ.get("VITOOLS_RERUN_ALL") == "1"


@pytest.mark.parametrize("path", chosen())
def test_notebook_reruns_in_one_kernel_and_after_a_restart(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("VITOOLS_DATA_DIR", str(tmp_path / "cache"))
    for name, value in (("OMP_NUM_THREADS", "1"), ("VITOOLS_THREADS", "1"), ("VITOOLS_PROGRESS", "0")):
        monkeypatch.setenv(name, os.environ.get(name, value))
    source = nbformat.read(path, as_version=4)
    before = snapshot()
    resources = {"metadata": {"path": str(NOTEBOOKS)}}

    nb = copy.deepcopy(source)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources, allow_errors=False)
    with client.setup_kernel():
        first = run_cells(client, nb, "first run")
        second = run_cells(client, nb, "second run in the same kernel")
    assert first == second

    fresh = copy.deepcopy(source)                     # Restart & Run All: a new kernel, top to bottom
    NotebookClient(fresh, timeout=600, kernel_name="python3", resources=resources, allow_errors=False).execute()

    after = snapshot()
    created = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p] and not p.endswith(".ipynb"))
    assert not created, f"{path.name} left files behind: {created}"
    assert not changed, f"{path.name} rewrote files: {changed}"
