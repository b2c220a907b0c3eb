r"""Compiled CPU kernels for the implicit gradients, built on first use.

torch's own sample-gradients (``_standard_gamma_grad``) are C++ loops: one pass over the
samples, every term of the series in registers. The same expansions written as torch
operations pay a pass over memory per operation, several times the work. The C sources in
``vitools/implicit/native/`` are the same algorithms as one loop per sample; this module
compiles each with the system C compiler the first time it is needed, keeps the shared
library in a cache, and loads it with :mod:`ctypes` (no Python headers, no build step at
install time, about a second per source).

``VITOOLS_NATIVE`` chooses:

* ``auto`` (default): use a kernel where it builds; where it does not (no compiler), use
  the torch-operations path, which gives the same values more slowly, and warn once with
  the compiler's message;
* ``on``: a kernel must build, else :class:`NativeBuildError`;
* ``off``: never build or load one.

The cache is ``$VITOOLS_NATIVE_DIR``, else ``~/.cache/vitools/native``. A library's name
carries a hash of its source, the flags, the compiler's version and the CPU, so an edited
source or another machine sharing the folder builds its own; it is written beside its final
name and moved there in one step, so no half-written library is ever loaded. Kernels take
contiguous CPU float64 or float32 tensors; CUDA tensors keep the torch path.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ENV_MODE = "VITOOLS_NATIVE"
ENV_DIR = "VITOOLS_NATIVE_DIR"
MODES = ("auto", "on", "off")
SOURCE_DIR = Path(__file__).with_name("native")
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=c11", "-fno-math-errno")


class NativeBuildError(RuntimeError):
    """A kernel's source did not compile or load; the message carries the compiler's output."""


def mode() -> str:
    """``VITOOLS_NATIVE`` (``auto`` when unset); a ValueError names any other value."""
    value = os.environ.get(ENV_MODE, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_MODE} must be one of {', '.join(MODES)}, got {os.environ[ENV_MODE]!r}")
    return value


@contextlib.contextmanager
def use(chosen: str):
    """Run a block with ``VITOOLS_NATIVE`` set to ``chosen`` (``auto``, ``on`` or ``off``), restored after:
    ``with vt.implicit.native.use("off"): ...`` times or checks the torch-operations path."""
    if chosen not in MODES:
        raise ValueError(f"chosen must be one of {', '.join(MODES)}, got {chosen!r}")
    before = os.environ.get(ENV_MODE)
    os.environ[ENV_MODE] = chosen
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_MODE, None)
        else:
            os.environ[ENV_MODE] = before


def cache_dir() -> Path:
    """Where built kernels live: ``$VITOOLS_NATIVE_DIR``, else ``~/.cache/vitools/native``."""
    return Path(os.environ.get(ENV_DIR, "").strip() or Path.home() / ".cache" / "vitools" / "native")


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``, else ``gcc``, else ``clang`` (a NativeBuildError if none)."""
    for name in (os.environ.get("CC", "").strip(), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name
    raise NativeBuildError("no C compiler found ($CC, cc, gcc, clang); set VITOOLS_NATIVE=off to use the torch path")


@functools.cache
def _machine_tag() -> str:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith(("model name", "flags"))), cpu)
    except OSError:
        pass
    return f"{platform.machine()} {cpu}"


def _build(name: str) -> Path:
    source = SOURCE_DIR / f"{name}.c"
    if not source.is_file():
        raise ValueError(f"name must be a kernel source in {SOURCE_DIR}, got {name!r}")
    cc = compiler()
    version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), " ".join(FLAGS), cc, version, _machine_tag()])
                         .encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-", suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([*cc.split(), *FLAGS, str(source), "-o", partial, "-lm"],
                              capture_output=True, text=True)
        if done.returncode:
            raise NativeBuildError(f"{cc} could not build {source.name}:\n{done.stderr.strip()}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@functools.cache
def _load(name: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(str(_build(name)))
    except OSError as err:
        raise NativeBuildError(f"could not load the kernel {name!r}: {err}") from err


@functools.cache
def _warn_once(name: str, message: str) -> None:
    warnings.warn(f"vitools.implicit: the compiled kernel {name!r} is unavailable, so the slower torch path "
                  f"is used (same values). Set {ENV_MODE}=off to silence this. {message}", RuntimeWarning,
                  stacklevel=3)


def library(name: str) -> ctypes.CDLL | None:
    """The loaded kernel library ``native/<name>.c``, or None where ``VITOOLS_NATIVE`` is ``off`` or (under
    ``auto``) it cannot be built. ``on`` raises :class:`NativeBuildError` instead of returning None."""
    chosen = mode()
    if chosen == "off":
        return None
    try:
        return _load(name)
    except NativeBuildError as err:
        if chosen == "on":
            raise
        _warn_once(name, str(err))
        return None


@functools.cache
def _declared(lib: ctypes.CDLL, symbol: str, argtypes: tuple, restype) -> ctypes._CFuncPtr:
    fn = getattr(lib, symbol)
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def function(name: str, symbol: str, argtypes: tuple, restype=None):
    """The C function ``symbol`` of kernel ``name`` with its ctypes ``argtypes`` and ``restype``
    declared once, or None where :func:`library` gives no library (under the same modes)."""
    lib = library(name)
    return None if lib is None else _declared(lib, symbol, tuple(argtypes), restype)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether a kernel can take these tensors: all on the CPU, float32 or float64."""
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


def pointer(t: torch.Tensor) -> ctypes.c_void_p:
    """The data pointer of a contiguous CPU tensor, for a kernel call (a ValueError otherwise)."""
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError(f"a kernel argument must be a contiguous CPU tensor, got device {t.device}, "
                         f"contiguous={t.is_contiguous()}")
    return ctypes.c_void_p(t.data_ptr())


def status() -> dict:
    """What this process uses: the mode, the compiler (or why none), the cache folder and each kernel's state."""
    info = {"mode": mode(), "cache_dir": str(cache_dir()), "python": sys.version.split()[0], "kernels": {}}
    try:
        info["compiler"] = compiler()
    except NativeBuildError as err:
        info["compiler"] = str(err)
    for source in sorted(SOURCE_DIR.glob("*.c")):
        name = source.stem
        if info["mode"] == "off":
            info["kernels"][name] = "off"
            continue
        try:
            _load(name)
            info["kernels"][name] = "loaded"
        except NativeBuildError as err:
            info["kernels"][name] = f"unavailable: {err}"
    return info
