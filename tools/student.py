"""Student copies of the workbook: every ``solution``-tagged cell becomes a stub.

``python tools/student.py [NOTEBOOK_DIR] [OUT_DIR]`` (``make student``) reads
``NOTEBOOK_DIR/NN_*.ipynb`` (default ``notebooks/``) and writes ``OUT_DIR/NN_*.ipynb``
(default ``build/student/``). In each copy a reference solution (a code cell tagged
``solution``) is replaced by

    # Your turn (1): write your own problem.        <- the task, from the Markdown above it
    # The check cell below reads: cube_results       <- the names the solution must define
    raise NotImplementedError("Your turn: ...")

keeping any comment lines the solution itself opened with; the stub and the check cell after
it carry no stored outputs, so no answer shows. Every other cell is unchanged. The tag
``solution-stub`` marks the stubs (tests/test_student.py runs each copy and checks that every
check cell fails on its stub and passes with the reference solution).

This script needs only ``nbformat``; it does not import vitools.
"""
from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import textwrap
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
STUB_TAG = "solution-stub"
WIDTH = 88


def is_solution(cell) -> bool:
    return cell.cell_type == "code" and SOLUTION_TAG in cell.metadata.get("tags", [])


def check_cell_index(nb, solution_index: int) -> int | None:
    """The index of the first code cell after the solution: the cell that checks it."""
    for j in range(solution_index + 1, len(nb.cells)):
        if nb.cells[j].cell_type == "code":
            return j
    return None


def task_line(nb, solution_index: int) -> str:
    """The first sentence of the nearest "Your turn" paragraph above the solution."""
    for j in range(solution_index - 1, -1, -1):
        cell = nb.cells[j]
        if cell.cell_type == "code" and is_solution(cell):
            break
        if cell.cell_type != "markdown":
            continue
        paragraphs = re.split(r"\n\s*\n", cell.source)
        for paragraph in reversed(paragraphs):
            if "your turn" in paragraph.lower():
                text = " ".join(paragraph.replace("**", "").split())
                text = text[text.lower().index("your turn"):]
                sentence = re.match(r"(.+?[.?!])(\s|$)", text)
                return sentence.group(1) if sentence else text
    return "Your turn: write this cell."


class _Scope(ast.NodeVisitor):
    """Names a cell's own scope stores and reads; comprehensions, lambdas and function
    bodies are scopes of their own (only a comprehension's first iterable is read here)."""

    def __init__(self):
        self.stored, self.read = set(), set()

    def visit_Name(self, node):
        (self.stored if isinstance(node.ctx, (ast.Store, ast.Del)) else self.read).add(node.id)

    def _comprehension(self, node):
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Lambda(self, node):
        pass

    def visit_FunctionDef(self, node):
        self.stored.add(node.name)
        for decorator in node.decorator_list:
            self.visit(decorator)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Import(self, node):
        self.stored.update((a.asname or a.name).split(".")[0] for a in node.names)

    visit_ImportFrom = visit_Import


def _scope(source: str) -> _Scope:
    """The names a cell stores and reads at its top level, IPython magics aside."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    scope = _Scope()
    try:
        scope.visit(ast.parse("\n".join(lines)))
    except SyntaxError:
        pass
    return scope


def stub_source(solution: str, task: str, needed: list[str]) -> str:
    """The stub: the solution's own leading comments (or the task), then NotImplementedError."""
    lines = solution.splitlines()
    leading = []
    for line in lines:
        if line.startswith("#") and not line.startswith("# NBVAL"):
            leading.append(line)
        else:
            break
    comment = leading or textwrap.wrap(task, WIDTH - 2, initial_indent="# ", subsequent_indent="# ")
    if needed:
        comment += textwrap.wrap("The check cell below reads: " + ", ".join(needed), WIDTH - 2,
                                 initial_indent="# ", subsequent_indent="#   ")
    return "\n".join(comment + ['raise NotImplementedError("Your turn: write this cell, then run the check below")'])


def student_copy(nb):
    """A copy of ``nb`` with every solution replaced by a stub; returns (copy, [stub indices])."""
    nb = copy.deepcopy(nb)
    stubs = []
    for i, cell in enumerate(nb.cells):
        if not is_solution(cell):
            continue
        j = check_cell_index(nb, i)
        needed = []
        if j is not None:
            needed = sorted(_scope(cell.source).stored & _scope(nb.cells[j].source).read)
            nb.cells[j].outputs, nb.cells[j].execution_count = [], None
        tags = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + [STUB_TAG]
        metadata = {k: v for k, v in cell.metadata.items() if k != "tags"}
        nb.cells[i] = nbformat.v4.new_code_cell(stub_source(cell.source, task_line(nb, i), needed),
                                                metadata={**metadata, "tags": tags})
        if "id" in cell:
            nb.cells[i]["id"] = cell["id"]
        stubs.append(i)
    return nb, stubs


def write_student_copies(src: Path, out: Path) -> list[Path]:
    """Write a student copy of every ``src/NN_*.ipynb`` into ``out``; returns the paths written."""
    notebooks = sorted(Path(src).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise ValueError(f"no NN_*.ipynb notebooks in {src}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        copy, stubs = student_copy(nbformat.read(path, as_version=4))
        target = out / path.name
        nbformat.write(copy, target)
        written.append(target)
        print(f"{target}: {len(stubs)} exercise(s) stubbed")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", default="notebooks", type=Path)
    parser.add_argument("out", nargs="?", default="build/student", type=Path)
    args = parser.parse_args(argv)
    write_student_copies(args.src, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
