r"""Targets: the one thing every estimator acts on.

A *target* is one expectation whose gradient we want, bound to what it depends on (the
stochastic-computation-graph view of Schulman et al. 2015, arXiv:1506.05254). Every estimator
is called the same way, ``est(target, k) -> Estimate``, and reads only the target's protocol:

``problem.at(theta)`` -> :class:`ProblemTarget`
    a toy problem $\mathbb{E}_{q_\theta}[f(z)]$ at parameters ``theta`` ``[*batch, P]``
    (minimised).
``sbn.on(x)``, ``cat_vae.on(x)`` -> a :class:`LayeredTarget`
    a stack of discrete layers $q(h_1 \mid x)\,q(h_2 \mid h_1)\cdots$ (Bernoulli bits or groups
    of categorical classes) with a learning signal; its bound is maximised. A discrete toy
    problem is read as a one-layer stack by the estimators.
``vae.on(x)`` -> :class:`ReparamTarget`
    a latent-variable model with reparameterizable continuous latents.
``vrnn.on(x, mask)`` -> :class:`SequenceTarget`
    a sequence model whose bounds come from a particle filter (:mod:`vitools.smc`).

Targets hold no state and no parameters of their own: they point at a model's parameters and a
batch of data. ``signature()`` names their shape, so that an estimator's learned baselines and
control variates (:mod:`vitools.estimators.base`) are built once per kind of target and never
applied to a target of another shape.

This module sits just above :mod:`vitools.checks`; models and problems build their targets from
it, and estimators read them.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from . import checks

__all__ = ["Target", "ProblemTarget", "Layer", "LayeredTarget", "ReparamTarget", "SequenceTarget",
           "is_target"]


def is_target(obj) -> bool:
    """Whether ``obj`` follows the target protocol (an instance of :class:`Target`)."""
    return isinstance(obj, Target)


class Target:
    """Base class. ``kind`` names the protocol; ``sense`` is ``"minimize"`` (toy costs) or
    ``"maximize"`` (bounds on $\\log p(x)$), which is how :func:`vitools.train.fit` steps it."""

    kind: ClassVar[str] = ""
    sense: ClassVar[str] = "maximize"

    def signature(self) -> tuple:
        """What an estimator's learned state depends on (shapes, not values)."""
        raise NotImplementedError

    def model(self):
        """The ``nn.Module`` whose parameters the target depends on, or ``None`` (toy problems)."""
        return None

    def describe(self) -> str:
        return type(self).__name__


class ProblemTarget(Target):
    """A toy problem at parameters ``theta`` (``[*batch, P]``): $\\mathbb{E}_{q_\\theta}[f(z)]$."""

    kind = "problem"
    sense = "minimize"

    def __init__(self, problem, theta: torch.Tensor):
        if not isinstance(theta, torch.Tensor):
            raise ValueError(f"theta must be a tensor, got {type(theta).__name__}")
        checks.finite("theta", theta.detach())
        self.problem, self.theta = problem, theta

    def distribution(self):
        return self.problem.distribution(self.theta)

    def cost(self, z: torch.Tensor) -> torch.Tensor:
        return self.problem.cost(z)

    def signature(self) -> tuple:
        return ("problem", type(self.problem).__name__, tuple(self.theta.shape[-1:]))

    def describe(self) -> str:
        return f"{self.problem!r} at theta of shape {tuple(self.theta.shape)}"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One stochastic layer: ``kind`` ``"bernoulli"`` (``shape = (d,)`` bits) or ``"categorical"``
    (``shape = (G, C)``: G independent variables of C classes, one-hot)."""

    kind: str
    shape: tuple

    def __post_init__(self):
        checks.choice("kind", self.kind, ("bernoulli", "categorical"))
        if self.kind == "categorical" and (len(self.shape) != 2 or self.shape[-1] < 2):
            raise ValueError(f"shape must be (groups, classes >= 2) for a categorical layer, got {self.shape!r}")
        if self.kind == "bernoulli" and len(self.shape) != 1:
            raise ValueError(f"shape must be (bits,) for a Bernoulli layer, got {self.shape!r}")

    @property
    def event_dims(self) -> tuple:
        """The trailing dimensions of one layer's sample, to sum log-densities over."""
        return tuple(range(-len(self.shape), 0))


class LayeredTarget(Target):
    r"""A stack of discrete layers with a learning signal (subclasses: the SBN's and the
    categorical VAE's targets, and the estimators' view of a discrete toy problem).

    With $h_0 = x$ and $q(h \mid x) = \prod_l q(h_l \mid h_{l-1})$ the objective is
    $\mathbb{E}_q[f(h)] + e$, where $f(h) =$ :meth:`signal` $(h) - [\text{entropy\_term}]\,\log q(h \mid x)$
    and $e$ = :meth:`exact_term` is known in closed form (a KL, or zero). Subclasses implement:

    * ``layers``: a tuple of :class:`Layer`; ``batch_shape``;
    * :meth:`logits`: layer ``l``'s logits given the layer below (normalised log-probabilities
      for categorical layers), differentiable in the inference parameters;
    * :meth:`signal`: $f$ without its $-\log q$ part, at hard or relaxed samples ``[k, *batch]``,
      differentiable in the generative parameters (its gradient there is the pathwise gradient);
    * ``context``: the data ``[*batch, c]`` that learned baselines and control networks may read,
      or ``None``.
    """

    kind = "layered"
    generative: bool = False        # True when log_p_layers is defined (a model of x, not a toy cost)
    layers: tuple = ()
    entropy_term: bool = True
    context: torch.Tensor | None = None
    batch_shape: torch.Size = torch.Size()

    def logits(self, l: int, below: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def signal(self, values: list[torch.Tensor], relaxed: bool = False) -> torch.Tensor:
        r"""$f$ without its $-\log q$ part at hard (``relaxed=False``) or relaxed ``values``."""
        raise NotImplementedError

    def exact_term(self) -> torch.Tensor | None:
        return None

    def log_p_layers(self, hs) -> list[torch.Tensor]:
        """Per-layer log-densities of the generative model, ``[k, N]`` each (NVIL's local signals,
        VIMCO's weights); only where ``generative``."""
        raise ValueError(f"{type(self).__name__} is not a generative model: it has no log_p_layers")

    def signature(self) -> tuple:
        ctx = None if self.context is None else tuple(self.context.shape[-1:])
        return ("layered", type(self).__name__, tuple(self.layers), ctx)


class ReparamTarget(Target):
    """A latent-variable model with reparameterizable continuous latents on a batch ``x`` ``[N, D]``.
    Subclasses (the Gaussian VAE's ``VAETarget``) implement :meth:`q` and :meth:`log_joint`."""

    kind = "reparam"

    def __init__(self, model, x: torch.Tensor):
        self._model, self.x = model, x

    def model(self):
        return self._model

    def q(self):
        """$q(z \\mid x)$: a reparameterizable distribution with batch ``[N]``."""
        raise NotImplementedError

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """$\\log p(x, z)$ for latents ``z`` ``[K, N, d]`` -> ``[K, N]``."""
        raise NotImplementedError

    def signature(self) -> tuple:
        return ("reparam", type(self._model).__name__, tuple(self.x.shape[-1:]))


class SequenceTarget(Target):
    """A sequence model on padded sequences ``x`` ``[B, T, D]`` with ``mask`` ``[B, T]``: its bounds
    (ELBO, IWAE, FIVO) are particle-filter estimates (:func:`vitools.smc.particle_filter`)."""

    kind = "sequence"
    vmappable = False           # resampling branches on the weights: per-replica gradients one at a time

    def __init__(self, model, x: torch.Tensor, mask: torch.Tensor):
        self._model, self.x, self.mask = model, x, mask

    def normalizer(self) -> torch.Tensor:
        """The number of valid time steps: training divides the summed bound by it (nats per step)."""
        return self.mask.sum()

    def model(self):
        return self._model

    def signature(self) -> tuple:
        return ("sequence", type(self._model).__name__, tuple(self.x.shape[-1:]))
