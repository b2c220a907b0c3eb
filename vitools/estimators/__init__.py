"""Gradient estimators, found by name: ``get(name, **options)``.

Example::

    >>> import vitools as vt
    >>> {"score_function", "pathwise", "measure_valued", "vimco", "rebar"} <= set(vt.estimators.names())
    True
    >>> est = vt.estimators.get("score_function", baseline="leave_one_out")
    >>> est.applies_to(vt.problems.BernoulliQuadratic())
    True
    >>> print(vt.estimators.describe("rebar"))          # its options, types and defaults

Every estimator follows the one protocol of :mod:`vitools.estimators.base`:
``est(target, k) -> Estimate(surrogate, control_loss)``. Unknown or ill-typed options raise a
``ValueError`` naming the option and the known ones.
"""
from __future__ import annotations

from .base import Estimate, Estimator, Option, as_target, linear_surrogate, score_box
from .antithetic import ARM, DisARM
from .bbvi import BBVI
from .control import LAX, REBAR, RELAX
from .delta import DeltaMethod
from .measure_valued import MeasureValued
from .mlmc import MLMC
from .multisample import DReG, FIVO, IWAE, NVILMultiSample, ReweightedWakeSleep, STL, VIMCO
from .nvil import NVIL
from .pathwise import Pathwise
from .relaxed import GappedStraightThrough, GumbelSoftmax, IGR, StraightThrough
from .rsvi import RSVI
from .score import ScoreFunction
from .rloo import RLOO, DoubleCV
from .stein import RODEO
from .unordered import UnorderedSet
from .gumbel_rao import GumbelRao
from .reinmax import ReinMax
from .aimle import AIMLE

_REGISTRY: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available as ``get(cls.name, **options)``."""
    if not cls.name:
        raise ValueError(f"estimator class {cls.__name__} must set a non-empty name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"name {cls.name!r} is already registered to {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Every registered estimator name, sorted."""
    return sorted(_REGISTRY)


def _cls(name: str) -> type[Estimator]:
    if name not in _REGISTRY:
        raise ValueError(f"name must be a registered estimator, got {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def get(name: str, **options) -> Estimator:
    """A fresh estimator: ``get("score_function", baseline="leave_one_out")``."""
    return _cls(name)(**options)


def describe(name: str) -> str:
    """The estimator's one-line summary and every option with its type, range and default."""
    cls = _cls(name)
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
    lines = [f"{name}: {doc}", f"  unbiased: {cls.unbiased}"]
    lines += [f"  {key}: {spec.describe()}" for key, spec in cls.OPTIONS.items()] or ["  (no options)"]
    return "\n".join(lines)


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


for _cls_ in (ScoreFunction, Pathwise, MeasureValued, NVIL, NVILMultiSample, VIMCO, ReweightedWakeSleep, IWAE,
              STL, DReG, FIVO, GumbelSoftmax, StraightThrough, GappedStraightThrough, IGR, REBAR, RELAX, LAX,
              ARM, DisARM, RSVI, BBVI, MLMC, DeltaMethod, RLOO, DoubleCV, RODEO, UnorderedSet, GumbelRao, ReinMax, AIMLE):
    register(_cls_)

__all__ = ["Estimator", "Estimate", "Option", "get", "names", "describe", "register", "standard_set",
           "score_box", "linear_surrogate", "as_target"]
