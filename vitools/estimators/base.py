r"""The one estimator protocol: a surrogate and a control loss for any target.

An estimator turns a target (:mod:`vitools.targets`) into an :class:`Estimate`: a *surrogate*
tensor ``[*batch]`` whose forward value is the Monte Carlo estimate of the objective and whose
autograd gradient with respect to the target's parameters is the estimator's gradient estimate
(Schulman et al. 2015, *Gradient Estimation Using Stochastic Computation Graphs*,
arXiv:1506.05254; the convention of DeepMind's ``mc_gradients``), and a ``control_loss`` (or
``None``): a scalar whose gradient with respect to the estimator's own parameters
(``est.parameters()``: baselines, control variates) trains them. The surrogate's graph never
reaches the estimator's parameters and the control loss never reaches the model's, so one
backward pass of each, stepped by whoever trains (:func:`vitools.train.fit`), updates each
parameter exactly once (Pyro's ``TraceGraph_ELBO`` joins them the same way).

Rules every estimator follows:

* differentiate the surrogate with respect to the model's parameters and ``control_loss`` with
  respect to ``est.parameters()`` only (``torch.autograd.grad(..., est.parameters())``, as
  :func:`vitools.train.fit` and :meth:`Estimator.warm_up` do): the surrogate's graph never reaches
  the estimator's parameters, but REBAR's and RELAX's control losses do pass through the model's
  relaxed forward pass, so a single joint ``backward()`` would add their gradient to the model's;
* it is an ``nn.Module``; its forward pass holds no optimizer and changes no state except
  running statistics, and those only in ``train()`` mode. In ``eval()`` mode it is a pure
  function of the target and the random numbers, safe under ``torch.func.vmap``;
* options are declared (:class:`Option`); an unknown or ill-typed option is a ``ValueError``
  naming it and the known ones;
* learned state is built per target signature (:meth:`Estimator.state`), so one estimator used
  on targets of different shapes keeps separate baselines for each;
* :meth:`Estimator.why_not` answers for every object without raising; ``None`` means the
  estimator runs on it and its gradient is right (or, for ``unbiased = False``, is the
  documented biased one);
* :meth:`Estimator.warm_up` is the one place where baselines and control variates are fitted
  with the model held fixed.

Shapes: toy ``theta`` is ``[*batch, P]`` and ``k`` samples are drawn per batch element, so
``z`` is ``[k, *batch, *event]``, costs ``[k, *batch]`` and the surrogate ``[*batch]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import numbers
import warnings
from typing import Callable, ClassVar, NamedTuple

import torch
from torch import nn

from .. import checks
from ..targets import ProblemTarget, Target


class Estimate(NamedTuple):
    """``surrogate`` ``[*batch]`` and ``control_loss`` (a scalar, or ``None``)."""

    surrogate: torch.Tensor
    control_loss: torch.Tensor | None = None


def score_box(log_prob: torch.Tensor) -> torch.Tensor:
    r"""Zero in value, $\nabla \log q$ in gradient: multiply a detached learning signal by it."""
    if not isinstance(log_prob, torch.Tensor) or not log_prob.is_floating_point():
        raise ValueError(f"log_prob must be a floating-point tensor, got {getattr(log_prob, 'dtype', type(log_prob))}")
    return log_prob - log_prob.detach()


def linear_surrogate(value: torch.Tensor, params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    r"""``value`` in the forward pass; gradient $\sum_i (\partial p_i/\partial\theta)^\top g_i$.

    Used by estimators that compute the gradient with respect to the distribution's own
    parameters ``params`` (shape ``[*batch, ...]``) explicitly, e.g. measure-valued ones;
    autograd then applies the chain rule from those parameters back to ``theta``.
    """
    out = value
    for p, g in zip(params, grads):
        term = (p - p.detach()) * g.detach()
        extra = term.dim() - value.dim()
        out = out + (term.sum(dim=tuple(range(-extra, 0))) if extra > 0 else term)
    return out


# ---------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class Option:
    """One declared option: ``kind`` is ``"bool"``, ``"int"`` (``>= minimum``), ``"float"``
    (``> minimum`` when given, ``<= maximum`` when given), ``"probability"`` (in [0, 1]) or
    ``"choice"`` (one of ``choices``; with ``number=True`` a finite number is accepted too)."""

    default: object
    doc: str
    kind: str = "float"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    number: bool = False

    def validate(self, name: str, value):
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            return value
        if self.kind == "choice":
            if value in self.choices and not isinstance(value, bool):
                return value
            if self.number and isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(checks.finite(name, value))
            extra = " or a number" if self.number else ""
            raise ValueError(f"{name} must be one of {list(self.choices)}{extra}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if self.kind == "int":
            return checks.count(name, value, minimum=int(self.minimum if self.minimum is not None else 0))
        if self.kind == "probability":
            return float(checks.probability(name, value))
        value = float(checks.finite(name, value))
        if self.minimum is not None and not value > self.minimum:
            raise ValueError(f"{name} must be > {self.minimum:g}, got {value!r}")
        if self.maximum is not None and not value <= self.maximum:
            raise ValueError(f"{name} must be <= {self.maximum:g}, got {value!r}")
        return value

    def describe(self) -> str:
        if self.kind == "choice":
            kind = " | ".join(map(repr, self.choices)) + (" | number" if self.number else "")
        elif self.kind == "int":
            kind = f"int >= {int(self.minimum or 0)}"
        elif self.kind == "probability":
            kind = "float in [0, 1]"
        elif self.kind == "float":
            bounds = [f"> {self.minimum:g}" if self.minimum is not None else "",
                      f"<= {self.maximum:g}" if self.maximum is not None else ""]
            kind = "float " + ", ".join(b for b in bounds if b) if any(bounds) else "float"
        else:
            kind = "bool"
        return f"{kind} (default {self.default!r}): {self.doc}"


def validate_options(cls, options: dict) -> dict:
    """Defaults of ``cls.OPTIONS`` overridden by ``options``, each checked; unknown names raise."""
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        known = ", ".join(sorted(cls.OPTIONS)) or "none"
        raise ValueError(f"option {unknown[0]!r} is not an option of estimator {cls.name!r}, got "
                         f"{unknown[0]}={options[unknown[0]]!r}; known options: {known}")
    return {name: spec.validate(name, options.get(name, spec.default)) for name, spec in cls.OPTIONS.items()}


# ---------------------------------------------------------------------- the base class
class Estimator(nn.Module):
    """Base class. Subclasses set ``name``, ``OPTIONS`` and implement :meth:`_why_not` and
    :meth:`estimate`; those with learned state build it with :meth:`state`."""

    name: ClassVar[str] = ""
    unbiased: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, Option]] = {}
    default_warm_up_steps: ClassVar[int] = 0   # warm_up's steps unless a train_steps option says (0: nothing to fit)
    min_k: ClassVar[int] = 1                    # the smallest k (2 for leave-one-out baselines)

    def __init__(self, **options):
        super().__init__()
        self.options = validate_options(type(self), options)
        self.states = nn.ModuleDict()

    # ------------------------------------------------------------------ descriptions
    @property
    def min_samples(self) -> int:
        """The smallest ``k`` the estimator accepts (2 for leave-one-out baselines)."""
        return self.min_k

    @property
    def warm_up_steps(self) -> int:
        """The default number of :meth:`warm_up` steps: the ``train_steps`` option where declared."""
        return self.options.get("train_steps", self.default_warm_up_steps)

    @property
    def label(self) -> str:
        """A short human-readable name for legends."""
        changed = [f"{v}" for key, v in self.options.items()
                   if v != self.OPTIONS[key].default and v not in (None, "none", False)]
        return self.name.replace("_", " ") + (f" ({', '.join(changed)})" if changed else "")

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())

    # ------------------------------------------------------------------ applicability
    def why_not(self, target) -> str | None:
        """``None`` when the estimator runs on ``target`` with a right gradient, else why not.

        Total: answers for targets, toy problems (read at their initial parameters) and models
        (read on a small example batch), and for anything else says what it expected."""
        try:
            target = as_target(target)
        except ValueError as err:
            return str(err)
        except Exception as err:                   # e.g. a class instead of an instance, or a failing init_params
            return f"it could not be read as a target ({type(err).__name__}: {err})"
        try:
            return self._why_not(target)
        except Exception as err:                   # a user's problem failing inside its own code
            return f"the target could not be read ({type(err).__name__}: {err})"

    def applies_to(self, target) -> bool:
        """``True`` means ``est(target, k)`` runs and its gradient is right (see :meth:`why_not`)."""
        return self.why_not(target) is None

    def _why_not(self, target: Target) -> str | None:
        return f"it is not implemented for {target.kind} targets"

    # ------------------------------------------------------------------ state
    def state(self, target: Target, build: Callable[[], nn.Module]) -> nn.Module:
        """The learned state (baselines, control variates, running statistics) for targets with
        ``target``'s signature, built by ``build()`` on first use. Different signatures get
        different states, never a shape error."""
        key = _state_key(target)
        if key not in self.states:
            module = build()
            like = _reference_tensor(target)
            if like is not None:
                module = module.to(device=like.device, dtype=like.dtype)
            self.states[key] = module
        return self.states[key]

    # ------------------------------------------------------------------ calls
    def forward(self, target, theta_or_k=None, k: int | None = None, *, check: bool = True):
        """``est(target, k=1) -> Estimate``; the toy form ``est(problem, theta, k)`` returns the
        surrogate tensor alone. ``check=False`` runs an estimator where :meth:`why_not` objects
        (how a notebook shows the score function's failure on a moving support)."""
        if isinstance(target, Target):
            if isinstance(theta_or_k, torch.Tensor):
                raise ValueError(f"k must be an integer for a target, got a tensor of shape {tuple(theta_or_k.shape)}")
            k = 1 if theta_or_k is None and k is None else (theta_or_k if k is None else k)
            return self._run(target, k, check)
        if not isinstance(theta_or_k, torch.Tensor):
            raise ValueError(f"target must be a target (problem.at(theta), model.on(x)), or call "
                             f"est(problem, theta, k); got {type(target).__name__} and {theta_or_k!r}")
        return self._run(ProblemTarget(target, theta_or_k), 1 if k is None else k, check).surrogate

    def _run(self, target: Target, k, check: bool) -> Estimate:
        k = checks.count("k", k, minimum=self.min_samples)
        if check:
            reason = self.why_not(target)
            if reason is not None:
                raise ValueError(f"estimator {self.label!r} does not apply to {target.describe()}: {reason}")
        out = self.estimate(target, k)
        if not (self.training and torch.is_grad_enabled()):
            out = Estimate(out.surrogate, None)
        return out

    def estimate(self, target: Target, k: int) -> Estimate:
        raise NotImplementedError

    def warm_up(self, target, k: int = 1, steps: int | None = None, lr: float | None = None) -> list[float]:
        """Fit the estimator's own baselines and control variates (and settle its running
        statistics) with the model held fixed: ``steps`` Adam steps on the control loss of
        ``est(target, k)``. ``target`` is a target or a callable returning one per step (e.g. a
        fresh minibatch). Returns the control loss per step (empty when there is nothing to fit)."""
        steps = checks.count("steps", self.warm_up_steps if steps is None else steps, minimum=0)
        lr = float(checks.positive("lr", self.options.get("lr", 1e-2) if lr is None else lr))
        if isinstance(target, nn.Module) or hasattr(target, "on"):
            raise ValueError(f"target must be a target or a callable returning one, got the model "
                             f"{type(target).__name__}: pass model.on(x) or vt.train.batches(model, x)")
        if isinstance(target, ProblemTarget) and target.theta.dim() == 1:
            target = ProblemTarget(target.problem, target.theta.detach().expand(self.warm_up_replicas(k), -1))
        next_target = target if callable(target) and not isinstance(target, Target) else (lambda: target)
        was_training = self.training
        self.train()
        history = []
        first = next_target()
        self(first, k)                                     # builds the state for this target
        if len(self.states) == 0:                          # nothing learned, nothing to settle
            self.train(was_training)
            return history
        params = [p for p in self.state_parameters(first) if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=lr) if params else None
        for step in range(steps):
            out = self(first if step == 0 else next_target(), k)
            if out.control_loss is not None and optimizer is not None:
                grads = torch.autograd.grad(out.control_loss, params, allow_unused=True)
                for p, g in zip(params, grads):
                    p.grad = None if g is None else g.detach()
                optimizer.step()
                history.append(float(out.control_loss.detach()))
        self.train(was_training)
        return history

    def exact_variance(self, problem, theta: torch.Tensor, k: int, points: int) -> torch.Tensor | None:
        """The variance of the ``k``-sample gradient at ``theta`` by numerical integration, ``[P]``, or
        ``None`` where this estimator has no integral for ``problem`` (see :mod:`.quadrature`)."""
        return None

    def warm_up_replicas(self, k: int) -> int:
        """How many copies of a toy problem's ``theta`` each warm-up step estimates at once."""
        return max(8, 256 // k)

    def state_parameters(self, target: Target) -> list[nn.Parameter]:
        """The trainable parameters of the state built for ``target`` (empty when none)."""
        key = _state_key(as_target(target))
        return list(self.states[key].parameters()) if key in self.states else []

    def reset(self) -> None:
        """Forget all learned state (it is rebuilt on the next call)."""
        self.states = nn.ModuleDict()

    # ------------------------------------------------------------------ deprecated
    def loss(self, model, x: torch.Tensor, k: int = 1, update: bool = True) -> torch.Tensor:
        """Deprecated: ``est(model.on(x), k).surrogate``."""
        warnings.warn("est.loss(model, x, k) is deprecated; use est(model.on(x), k).surrogate",
                      DeprecationWarning, stacklevel=2)
        if not hasattr(model, "on"):
            raise ValueError(f"model must be a latent-variable model with on(x), got {type(model).__name__}")
        was_training = self.training
        self.train(update)
        try:
            return self(model.on(x), k).surrogate
        finally:
            self.train(was_training)


def as_target(obj) -> Target:
    """``obj`` as a target: targets pass through; a problem is read at its initial parameters; a
    model with ``example_target()`` gives its example target. Anything else raises ValueError."""
    if isinstance(obj, Target):
        return obj
    if hasattr(obj, "example_target"):
        return obj.example_target()
    if all(hasattr(obj, a) for a in ("init_params", "distribution", "cost")):
        return ProblemTarget(obj, obj.init_params().detach())
    raise ValueError(f"it acts on targets (problem.at(theta), model.on(x)) and problems with "
                     f"init_params, distribution and cost; got {type(obj).__name__}")


def _state_key(target: Target) -> str:
    """The name of ``target``'s state: its signature, dtype and device."""
    like = _reference_tensor(target)
    where = (str(like.dtype), str(like.device)) if like is not None else ()
    return "s" + hashlib.sha1(repr((target.signature(), where)).encode()).hexdigest()[:12]


def _reference_tensor(target: Target) -> torch.Tensor | None:
    inner = getattr(target, "target", None)             # a toy problem read as a stack of layers
    if isinstance(target, ProblemTarget) or isinstance(inner, ProblemTarget):
        return (inner if isinstance(inner, ProblemTarget) else target).theta
    model = target.model()
    if model is not None:
        return next(iter(model.parameters()), None)
    return getattr(target, "context", None)
