"""vitools.config.threads: one torch CPU thread unless the user asks for more."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vitools import config


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(config.ENV_THREADS, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield monkeypatch
    torch.set_num_threads(before)


def _threads_after_import(**env) -> int:
    environ = {k: v for k, v in os.environ.items() if k not in (config.ENV_THREADS, "OMP_NUM_THREADS")}
    environ.update(env)
    code = "import torch, vitools as vt; vt.config; print(torch.get_num_threads())"
    run = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return int(run.stdout.split()[-1])


def test_importing_config_sets_one_thread_unless_asked():
    assert _threads_after_import() == 1
    assert _threads_after_import(VITOOLS_THREADS="2") == 2


def test_threads_reads_vitools_threads_then_omp(restore_threads):
    restore_threads.setenv("OMP_NUM_THREADS", "2")
    assert config.threads() == 2
    restore_threads.setenv(config.ENV_THREADS, "1")
    assert config.threads() == 1, "VITOOLS_THREADS wins over OMP_NUM_THREADS"
    restore_threads.delenv(config.ENV_THREADS)
    restore_threads.delenv("OMP_NUM_THREADS")
    assert config.threads() == 1


def test_explicit_count_and_auto(restore_threads):
    assert config.threads(2) == 2 == torch.get_num_threads()
    assert config.threads("auto") == 2, "'auto' leaves torch's setting as it is"
    restore_threads.setenv(config.ENV_THREADS, "auto")
    assert config.threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two", ""])
def test_bad_count_names_the_argument(restore_threads, bad):
    with pytest.raises(ValueError, match="count="):
        config.threads(bad)


@pytest.mark.parametrize("bad", ["0", "many", "-3"])
def test_bad_environment_value_names_the_variable(restore_threads, bad):
    restore_threads.setenv(config.ENV_THREADS, bad)
    with pytest.raises(ValueError, match=config.ENV_THREADS):
        config.threads()
