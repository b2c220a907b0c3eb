"""vitools: Monte Carlo gradient estimators for variational inference, and the workbook
that teaches them.

Submodules load on first use (``vt.smc``, ``vt.implicit``, ...), so ``import vitools as vt``
stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "checks", "config", "problems", "estimators", "diagnostics", "plots", "widgets", "data",
    "train", "models", "implicit", "smc", "targets", "relaxations", "flows", "problems_subset", "few_shot",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'vitools' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
