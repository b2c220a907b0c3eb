"""vitools as an installed package: a wheel built from the sources carries the bundled data,
and installed into a fresh virtual environment outside the checkout it loads that data and
runs a notebook.

The fresh environment gets the wheel itself (``--no-deps``) and reaches its dependencies
(torch's CPU wheel among them) through a ``.pth`` line naming this environment's
site-packages, so the test never downloads anything. This environment's editable install of
vitools is not visible there (``.pth`` files are only run in site directories), and the test
checks that vitools is imported from the fresh environment.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("mnist_subset.npz", "chorales_quarter.npz", "README.md")
NOTEBOOK = ROOT / "notebooks" / "00_gradient_of_an_expectation.ipynb"


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert run.returncode == 0, f"{args}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (no stale build/ folder can leak into it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vitools", src / "vitools", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)])
    (path,) = out.glob("vitools-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh environment outside the checkout with the wheel installed; returns its python."""
    home = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(home)])
    python = home / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (purelib / "_vitools_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_wheel_carries_the_bundled_data_unchanged(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in BUNDLED:
            member = f"vitools/data/bundled/{name}"
            assert member in names, f"{member} missing from {wheel.name}"
            source = ROOT / "vitools" / "data" / "bundled" / name
            assert hashlib.sha256(archive.read(member)).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert not any(n.startswith(("data/", "tests/", "notebooks/")) for n in names)


def test_installed_wheel_loads_the_bundled_data_outside_the_checkout(venv, tmp_path):
    code = (
        "import vitools as vt, pathlib\n"
        "print(pathlib.Path(vt.__file__).resolve())\n"
        "x = vt.data.load_mnist('bundled')\n"
        "xt, yt = vt.data.load_mnist('bundled', split='test', binarize=None, return_labels=True)\n"
        "rolls = vt.data.load_chorales()\n"
        "print(tuple(x.shape), tuple(xt.shape), int(yt.max()), tuple(rolls[0].shape[-1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = _run([str(venv), "-c", code], cwd=tmp_path, env=env)
    location, shapes = run.stdout.strip().splitlines()[-2:]
    assert Path(location).is_relative_to(venv.parents[1].resolve()), f"vitools imported from {location}"
    assert not Path(location).is_relative_to(ROOT)
    assert shapes == "(4000, 784) (1000, 784) 9 (88,)"


def test_installed_wheel_builds_its_compiled_kernels(venv, tmp_path):
    """The C sources ship in the wheel, and the installed package builds and uses them (VITOOLS_NATIVE=on
    makes a missing source or compiler an error, not a silent fallback)."""
    code = (
        "import torch, vitools as vt\n"
        "z = torch.tensor([0.5, 2.0, 40.0], dtype=torch.float64)\n"
        "a = torch.tensor([0.3, 3.0, 50.0], dtype=torch.float64)\n"
        "g = vt.implicit.standard_gamma_grad(z, a)\n"
        "with vt.implicit.native.use('off'):\n"
        "    assert torch.allclose(g, vt.implicit.standard_gamma_grad(z, a), rtol=1e-13)\n"
        "print(sorted(vt.implicit.native.status()['kernels'].items()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(VITOOLS_NATIVE="on", VITOOLS_NATIVE_DIR=str(tmp_path / "kernels"))
    run = _run([str(venv), "-c", code], cwd=tmp_path, env=env)
    assert run.stdout.strip().splitlines()[-1] == "[('beta_grad', 'loaded'), ('gamma_grad', 'loaded')]"
    assert len(list((tmp_path / "kernels").glob("*.so"))) == 2


def test_installed_wheel_runs_a_notebook(venv, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    where = nbformat.v4.new_code_cell(
        "import vitools, pathlib, sys\n"
        f"assert pathlib.Path(vitools.__file__).resolve().is_relative_to({str(venv.parents[1].resolve())!r}), vitools.__file__\n"
        f"assert pathlib.Path(sys.executable).parent == pathlib.Path({str(venv.parent)!r}), sys.executable")
    nb.cells.insert(0, where)
    path = tmp_path / NOTEBOOK.name
    nbformat.write(nb, path)
    # the kernel talks over Unix sockets in tmp_path (transport="ipc"): no TCP ports to pick, so no race
    # with other processes for them
    code = ("import sys, nbformat, nbclient\n"
            "from jupyter_client.manager import KernelManager\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "km = KernelManager(kernel_name='python3', transport='ipc', ip=sys.argv[2] + '/kernel')\n"
            "nbclient.NotebookClient(nb, km=km, timeout=600,"
            " resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
            "print('executed', sum(c.cell_type == 'code' for c in nb.cells))\n")
    env = {"PATH": f"{venv.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "VITOOLS_DEVICE": "cpu", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "JUPYTER_PLATFORM_DIRS": "1"}
    run = _run([str(venv), "-c", code, str(path), str(tmp_path)], cwd=tmp_path, env=env)
    assert run.stdout.strip().startswith("executed")
