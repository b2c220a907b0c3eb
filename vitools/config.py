"""Device selection, CPU threads, seeding and random generators.

The same notebook cell runs on a laptop CPU and on a GPU: every tensor vitools makes is
placed on :func:`device`, which reads ``VITOOLS_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``)
and otherwise picks CUDA when it is present. Randomness is made reproducible without
touching the caller's global state through :func:`seeded`.

Importing this module (which every notebook's set-up cell does) sets torch to **one CPU
thread** unless the user asks for more (:func:`threads`): the workbook's tensors are small,
so one thread is as fast as two, and it stays fast when another process shares the cores
(with torch's default threads and one busy neighbour on a 2-core machine, a 10 s notebook
took 300 s). ``VITOOLS_THREADS=4`` (or ``OMP_NUM_THREADS=4``) asks for four threads;
``VITOOLS_THREADS=auto`` keeps torch's own default.

Example::

    >>> import vitools as vt
    >>> vt.config.device()
    device(type='cpu')
    >>> with vt.config.seeded(0):
    ...     a = torch.randn(3)
    >>> with vt.config.seeded(0):
    ...     b = torch.randn(3)
    >>> bool((a == b).all())
    True
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

ENV_DEVICE = "VITOOLS_DEVICE"
ENV_THREADS = "VITOOLS_THREADS"
ENV_PROGRESS = "VITOOLS_PROGRESS"
DEFAULT_DTYPE = torch.float32


def device(requested: torch.device | str | None = None) -> torch.device:
    """The device every vitools tensor lives on, or ``requested`` when a caller names one.

    ``requested`` (a function's ``device=`` argument) wins when given; then ``VITOOLS_DEVICE``;
    otherwise ``cuda`` when a GPU is visible, else ``cpu``. Asking for CUDA on a machine
    without it is an error rather than a silent fallback.
    """
    if requested is None:
        requested = os.environ.get(ENV_DEVICE, "").strip()
        if not requested:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        what = f"{ENV_DEVICE}={requested!r}"
    else:
        what = f"device={requested!r}"
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{what} is not a torch device such as 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} but torch sees no CUDA device")
    return dev


def threads(count: int | str | None = None) -> int:
    """Set torch's CPU (intra-op) threads and return the number in force.

    ``count`` wins when given: a positive integer, or ``"auto"`` for torch's own default
    (left untouched). Otherwise ``VITOOLS_THREADS`` is read, then ``OMP_NUM_THREADS``, and
    with neither set the workbook's default is **1** (see the module docstring for why).
    Called once when vitools.config is imported; call it again to change your mind.
    """
    if count is None:
        for name in (ENV_THREADS, "OMP_NUM_THREADS"):
            value = os.environ.get(name, "").strip()
            if value:
                count, what = value, f"{name}={value!r}"
                break
        else:
            count, what = 1, "the default"
    else:
        what = f"count={count!r}"
    if isinstance(count, str) and count.strip().lower() == "auto":
        return torch.get_num_threads()
    try:
        number = int(count) if not isinstance(count, (bool, float)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1:
        raise ValueError(f"{what} must be a positive integer number of threads or 'auto'")
    if torch.get_num_threads() != number:
        torch.set_num_threads(number)
    return torch.get_num_threads()


def tensor(data, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.as_tensor`` on :func:`device` with the workbook's default float dtype."""
    if dtype is None and not (isinstance(data, torch.Tensor) and not data.is_floating_point()):
        dtype = DEFAULT_DTYPE
    return torch.as_tensor(data, dtype=dtype, device=device())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) globally; notebooks call this once."""
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's global generators seeded, restoring them afterwards.

    ``seed=None`` runs the block with the current random state, untouched.
    """
    if seed is None:
        yield
        return
    seed = _check_seed(seed)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def generator(seed: int, on: torch.device | str | None = None) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``on`` (default :func:`device`), seeded with ``seed``."""
    seed = _check_seed(seed)
    gen = torch.Generator(device=torch.device(on) if on is not None else device())
    gen.manual_seed(seed)
    return gen


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


threads()


def progress_enabled() -> bool:
    """Whether progress bars are drawn: yes, unless ``VITOOLS_PROGRESS=0`` (set by ``make
    execute-notebooks`` and ``make test``, so that stored outputs hold no frozen bar)."""
    value = os.environ.get(ENV_PROGRESS, "1").strip().lower()
    if value not in ("0", "1", "false", "true", "no", "yes", ""):
        raise ValueError(f"{ENV_PROGRESS} must be 0 or 1, got {value!r}")
    return value not in ("0", "false", "no")


def progress(iterable=None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, switched off when :func:`progress_enabled` says so
    (``disable=True`` in ``kwargs`` always wins)."""
    from tqdm.auto import tqdm

    kwargs["disable"] = kwargs.get("disable", False) or not progress_enabled()
    return tqdm(iterable, **kwargs)
