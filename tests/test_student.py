"""Student copies (tools/student.py, ``make student``): the stubs hide every answer, and in
each notebook every exercise's check cell fails on its stub and passes with the reference
solution, run in one kernel top to bottom."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("student", ROOT / "tools" / "student.py")
student = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(student)


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Exercises\n\n**Your turn (1):** square it. Then think."),
        nbformat.v4.new_code_cell("x = 3"),
        nbformat.v4.new_code_cell("y = x ** 2\n[t for t in range(2)]", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Why does it work?"),
        nbformat.v4.new_code_cell("assert y == 9, [t for t in (y,)]"),
        nbformat.v4.new_code_cell("# Write a sampler in plain torch\n# (three lines)\nz = 1",
                                  metadata={"tags": ["solution", "keep"]}),
        nbformat.v4.new_code_cell("assert z == 1"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "[0, 1]"}, execution_count=2)]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="the answer is 9")]
    return nb


def test_stub_replaces_the_solution_and_its_outputs():
    nb = _toy_notebook()
    copy, stubs = student.student_copy(nb)
    assert stubs == [2, 5]
    first, second = copy.cells[2], copy.cells[5]
    assert first.source.splitlines() == [
        "# Your turn (1): square it.", "# The check cell below reads: y",
        'raise NotImplementedError("Your turn: write this cell, then run the check below")']
    assert second.source.splitlines()[:2] == ["# Write a sampler in plain torch", "# (three lines)"], \
        "the solution's own comments are the task"
    assert "z = 1" not in second.source and "x ** 2" not in first.source
    assert first.outputs == [] and first.execution_count is None and copy.cells[4].outputs == []
    assert first.metadata["tags"] == ["solution-stub"] and second.metadata["tags"] == ["keep", "solution-stub"]
    assert [c.source for i, c in enumerate(copy.cells) if i not in stubs] == \
        [c.source for i, c in enumerate(nb.cells) if i not in stubs]
    assert nb.cells[2].source.startswith("y = x"), "the original notebook is left unchanged"
    nbformat.validate(copy)


def test_cli_writes_a_copy_of_every_notebook_without_a_solution(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_toy_notebook(), src / "00_toy.ipynb")
    nbformat.write(_toy_notebook(), src / "conftest.ipynb")          # not NN_*: not copied
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "student.py"), str(src), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00_toy.ipynb"]
    written = nbformat.read(tmp_path / "out" / "00_toy.ipynb", as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in written.cells)
    with pytest.raises(ValueError, match="no NN_"):
        student.write_student_copies(tmp_path / "out" / "missing", tmp_path / "out2")


def _errors(cell) -> list[str]:
    return [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_check_cells_fail_on_the_stub_and_pass_with_the_solution(path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("VITOOLS_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    original = nbformat.read(path, as_version=4)
    nb, stubs = student.student_copy(original)
    assert stubs, "every notebook has at least one exercise"
    checks = {i: student.check_cell_index(nb, i) for i in stubs}
    last = max(checks.values())
    client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    problems = []
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells[:last + 1]):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, i)
            if i in stubs:
                if _errors(cell) != ["NotImplementedError"]:
                    problems.append(f"cell {i}: the stub gave {_errors(cell)}, not NotImplementedError")
                check = nb.cells[checks[i]]
                client.execute_cell(check, checks[i])
                if not _errors(check):
                    problems.append(f"cell {checks[i]}: the check passes on the stub of cell {i}")
                reference = nbformat.from_dict(original.cells[i])
                client.execute_cell(reference, i)
                if _errors(reference):
                    problems.append(f"cell {i}: the reference solution fails: {_errors(reference)}")
                check.outputs = []
            elif i in checks.values():
                if _errors(cell):
                    problems.append(f"cell {i}: the check fails with the reference solution: {_errors(cell)}")
            elif _errors(cell):
                problems.append(f"cell {i}: {_errors(cell)}")
    assert not problems, "\n".join(problems)
