"""Notebooks re-run cleanly, every one of them: a fresh kernel runs the notebook top to bottom
(what Restart & Run All does), then runs it again in the same kernel (what a reader does who runs
everything once more without restarting). Every cell -- so every assert -- passes both times, and
no file is left behind or rewritten in the checkout (downloads go to a temporary VITOOLS_DATA_DIR).

``make test`` also runs every notebook once through nbval, which compares outputs; this test adds
two runs of each, about ten minutes for the whole workbook on one core.
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
SKIP_PARTS = {".git", ".venv", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "build", ".hypothesis"}


def notebooks() -> list:
    return [pytest.param(path, id=path.stem) for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]


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


def test_every_notebook_is_taken():
    assert len(notebooks()) == len(list(NOTEBOOKS.glob("*.ipynb"))) >= 10


@pytest.mark.parametrize("path", notebooks())
def test_notebook_reruns_in_one_kernel_and_after_a_restart(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("VITOOLS_DATA_DIR", str(tmp_path / "cache"))
    for name, value in (("OMP_NUM_THREADS", "1"), ("VITOOLS_THREADS", "1"), ("VITOOLS_PROGRESS", "0")):
        monkeypatch.setenv(name, os.environ.get(name, value))
    source = nbformat.read(path, as_version=4)
    before = snapshot()
    resources = {"metadata": {"path": str(NOTEBOOKS)}}

    nb = copy.deepcopy(source)                        # Restart & Run All: a new kernel, top to bottom
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources, allow_errors=False)
    with client.setup_kernel():
        first = run_cells(client, nb, "run in a fresh kernel")
        second = run_cells(client, nb, "second run in the same kernel")
    assert first == second

    after = snapshot()
    created = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p] and not p.endswith(".ipynb"))
    assert not created, f"{path.name} left files behind: {created}"
    assert not changed, f"{path.name} rewrote files: {changed}"
