"""The workbook as a whole: set-up files agree, notebooks follow the house shape, and a
failing assert in a notebook fails the test run."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _requirement(spec: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    listed = []
    for entry in conda:
        if isinstance(entry, dict):
            listed += [p for p in entry["pip"] if not p.startswith("-e")]
        elif not entry.startswith(("python", "pip")):
            listed.append(entry)
    assert sorted(map(_requirement, declared)) == sorted(map(_requirement, listed))
    assert ("torch", "==2.13.0") in map(_requirement, declared), "torch must stay pinned"


def test_ci_and_readme_use_the_two_commands():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


def test_readme_maps_every_notebook():
    readme = (ROOT / "README.md").read_text()
    missing = [nb.name for nb in NOTEBOOKS if nb.stem not in readme]
    assert not missing, f"README.md does not list {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "stored outputs from one top-to-bottom run"
    assert any(c.outputs for c in code), "outputs are stored"
    setup = code[0].source
    assert "NBVAL_IGNORE_OUTPUT" in setup and "seed_everything" in setup and "config.device()" in setup
    for heading in ("What you will learn", "Summary", "References", "Your turn"):
        assert heading in markdown, f"missing '{heading}'"
    assert re.search(r"arXiv:\d{4}\.\d{4,5}", markdown), "references carry arXiv numbers"
    for c in code:
        assert not any(line.rstrip().endswith(";") for line in c.source.splitlines()), "no trailing ';' (nbval #194)"
    solutions = [i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])]
    assert solutions, "exercises have reference solutions tagged 'solution'"
    for i in solutions:
        following = [c for c in nb.cells[i + 1:] if c.cell_type == "code"]
        assert following and "assert" in following[0].source, "a check cell follows each solution"
    asserts = sum(c.source.count("assert ") for c in code)
    assert asserts >= 10, f"every claim needs an assert; found only {asserts}"
    bundles = [o.get("data", {}) for c in code for o in c.outputs if o.output_type in ("display_data", "execute_result")]
    assert any("image/png" in d and "application/vnd.jupyter.widget-view+json" in d for d in bundles), \
        "an interactive explorer whose display leaves a static figure beside the live widget"
    assert path.stat().st_size < 3 * 2**20


def _write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "some-other-kernel", "display_name": "x", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)


@pytest.mark.parametrize("second_cell, expected", [("assert x == 3", 0), ("assert x == 4, 'claim'", 1)])
def test_a_failing_notebook_assert_fails_the_run(tmp_path, second_cell, expected):
    notebook = tmp_path / "probe.ipynb"
    _write_notebook(notebook, ["x = 1 + 2", second_cell])
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(notebook), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", str(ROOT / "pyproject.toml"), "--nbval-sanitize-with", str(ROOT / "notebooks" / "sanitize.cfg")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == expected, run.stdout[-2000:] + run.stderr[-2000:]


def test_pyproject_runs_nbval_lax_with_a_timeout_and_the_current_env():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    for flag in ("--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "--nbval-cell-timeout"):
        assert flag in options
