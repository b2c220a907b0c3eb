"""Gradient estimators, found by name.

Example::

    >>> import vitools as vt
    >>> {"score_function", "pathwise", "measure_valued", "vimco", "rebar"} <= set(vt.estimators.names())
    True
    >>> est = vt.estimators.get("score_function", baseline="leave_one_out")
    >>> est.applies_to(vt.problems.BernoulliQuadratic())
    True

Every estimator follows the surrogate convention of :mod:`vitools.estimators.base`.
New estimators join the registry with the :func:`register` decorator.
"""
from __future__ import annotations

from .base import Estimator, linear_surrogate, score_box
from .measure_valued import MeasureValued
from .pathwise import Pathwise
from .score import ScoreFunction

_REGISTRY: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available as ``get(cls.name, **options)``."""
    if not cls.name:
        raise ValueError(f"estimator class {cls.__name__} must set a non-empty name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Every registered estimator name, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **options) -> Estimator:
    """A fresh estimator instance: ``get("score_function", baseline="leave_one_out")``."""
    if name not in _REGISTRY:
        raise ValueError(f"name must be a registered estimator, got {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name](**options)


def standard_set() -> list[Estimator]:
    """The gradient lab's line-up: every score-function variant, pathwise, measure-valued."""
    return [
        get("score_function"),
        get("score_function", baseline="moving_average"),
        get("score_function", baseline="leave_one_out"),
        get("score_function", control_variate="delta"),
        get("pathwise"),
        get("measure_valued"),
    ]


for _cls in (ScoreFunction, Pathwise, MeasureValued):
    register(_cls)

# Estimators defined beside the models and distributions they need register themselves on import.
from . import multisample, nvil  # noqa: E402,F401  (nvil, nvil_multisample, vimco, rws, iwae, stl, dreg)
from . import control, relaxed  # noqa: E402,F401  (gumbel_softmax, straight_through, ..., rebar, relax, lax, arm, disarm)
from ..implicit import alternatives as _implicit_alternatives  # noqa: E402,F401  (rsvi)

__all__ = ["Estimator", "get", "names", "register", "standard_set", "score_box", "linear_surrogate"]
