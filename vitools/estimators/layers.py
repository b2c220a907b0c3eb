r"""Discrete estimators written once: passes over stacks of Bernoulli or categorical layers.

Every discrete target is a :class:`vitools.targets.LayeredTarget`: $h_0 = x$,
$q(h \mid x) = \prod_l q(h_l \mid h_{l-1})$ with logits $\ell_l = g_l(h_{l-1})$, and a learning
signal $f(h)$. A toy problem with Bernoulli, factorised-Bernoulli or categorical $q_\theta$ is
the one-layer stack :class:`ProblemLayers` (logits from $\theta$, $f$ its cost). REINFORCE,
REBAR, RELAX, LAX, ARM, DisARM and the relaxations are then written once, as a gradient
estimate $\hat g_l$ with respect to each layer's logits, chained to the parameters by
:func:`assemble` (the multi-layer treatment of Tucker et al. 2017, arXiv:1703.07370, Sec. 3 and
App.; Grathwohl et al. 2018, arXiv:1711.00123, App.; Dong et al. 2020, arXiv:2006.10680, Sec. 5).

The hard and relaxed passes share each layer's uniforms ``u`` (shaped like its logits): bits
$h_l = \mathbb{1}[u_l < \sigma(\ell_l)]$, i.e. noisy logits $z_l = \ell_l + \mathrm{logit}(1 - u_l)$
and $h_l = H(z_l)$; classes $z_l = \ell_l + G(u_l)$ with Gumbel noise and $h_l = \mathrm{onehot}
(\arg\max z_l)$. A *relaxed pass* re-runs the stack above layer ``start`` with the same
uniforms through a relaxation of each layer (:func:`relaxed_signal`).

Shapes: logits, uniforms and samples of layer $l$ are ``[k, *batch, *layer.shape]``; signals
``[k, *batch]``; the surrogate ``[*batch]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import distributions as Dist

from .. import relaxations
from ..problems import CategoricalCost, FactorisedBernoulli
from ..targets import Layer, LayeredTarget, ProblemTarget, Target


# ---------------------------------------------------------------------- one layer's mathematics
def noise(layer: Layer, u: torch.Tensor) -> torch.Tensor:
    """The noise added to the logits: logistic $\\mathrm{logit}(1 - u)$ or Gumbel $-\\log(-\\log u)$."""
    return relaxations.noise(u) if layer.kind == "bernoulli" else -torch.log(-torch.log(u))


def hard_from(layer: Layer, z: torch.Tensor) -> torch.Tensor:
    """The discrete sample of noisy logits ``z``: $H(z)$, or one-hot $\\arg\\max$."""
    if layer.kind == "bernoulli":
        return (z > 0).to(z.dtype)
    return torch.zeros_like(z).scatter(-1, z.argmax(-1, keepdim=True), 1.0)     # vmap-safe one-hot


def soft_from(layer: Layer, z: torch.Tensor, temperature) -> torch.Tensor:
    """The tempered relaxation of noisy logits: $\\sigma(z/\\tau)$ or $\\mathrm{softmax}(z/\\tau)$."""
    return torch.sigmoid(z / temperature) if layer.kind == "bernoulli" else torch.softmax(z / temperature, -1)


def log_prob(layer: Layer, logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """$\\log q(h_l \\mid \\ell_l)$ summed over the layer (also at relaxed values), ``[k, *batch]``."""
    if layer.kind == "bernoulli":
        per = value * logits - F.softplus(logits)
    else:
        per = value * torch.log_softmax(logits, -1)
    return per.sum(layer.event_dims)


def score(layer: Layer, logits: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """$\\nabla_{\\ell} \\log q(h \\mid \\ell)$: $h - \\sigma(\\ell)$ or $h - \\mathrm{softmax}(\\ell)$."""
    return hard - (torch.sigmoid(logits) if layer.kind == "bernoulli" else torch.softmax(logits, -1))


def conditional(layer: Layer, hard: torch.Tensor, logits: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""$\tilde z \sim p(z \mid h)$ reparameterised in ``logits`` by fresh uniforms ``v``."""
    if layer.kind == "bernoulli":
        return relaxations.conditional_bits(hard, logits, v)
    return relaxations.conditional_gumbels(hard, torch.log_softmax(logits, -1), v)


def pair_sum(layer: Layer, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """$\\sum (\\ell - \\mathrm{sg}(\\ell))\\,\\mathrm{sg}(\\hat g)$ over the layer: zero in value, ``grad``
    in gradient with respect to ``logits``, ``[k, *batch]``."""
    return ((logits - logits.detach()) * grad.detach()).sum(layer.event_dims)


# ---------------------------------------------------------------------- passes
def draw(target: LayeredTarget, k: int):
    """``(us, hs, logits)`` per layer, ``[k, *batch, *shape]`` each; ``logits[l]`` is differentiable
    in the parameters of layer ``l`` only (the layer below is a hard sample)."""
    us, hs, logits = [], [], []
    below = None
    for l, layer in enumerate(target.layers):
        lg = target.logits(l, below)
        lg = lg.expand(k, *target.batch_shape, *layer.shape)
        u = relaxations.uniform(lg.shape, lg)
        h = hard_from(layer, lg.detach() + noise(layer, u))
        us.append(u), hs.append(h), logits.append(lg)
        below = h
    return us, hs, logits


def propagate(target: LayeredTarget, hs, start: int, value: torch.Tensor, us) -> list[torch.Tensor]:
    """Latents with layers ``< start`` from ``hs``, layer ``start`` = ``value`` and the layers above
    drawn from $q$ with the uniforms ``us`` (common random numbers)."""
    out = [*hs[:start], value]
    with torch.no_grad():
        for j in range(start + 1, len(hs)):
            layer = target.layers[j]
            out.append(hard_from(layer, target.logits(j, out[-1]) + noise(layer, us[j])))
    return out


def signal(target: LayeredTarget, hs, logits) -> torch.Tensor:
    """$f(h)$ at hard samples ``[k, *batch]``: the target's signal, less $\\log q$ when it has one."""
    f = target.signal(hs, relaxed=False)
    if target.entropy_term:
        f = f - sum(log_prob(layer, lg, h) for layer, lg, h in zip(target.layers, logits, hs))
    return f


def relaxed_signal(target: LayeredTarget, hs, us, start: int, logits_start, first, relax) -> torch.Tensor:
    """$f$ along a relaxed pass ``[k, *batch]``: layers ``< start`` hard from ``hs``, layer ``start``
    equal to ``first`` (a relaxed value of the layer with logits ``logits_start``), every later
    layer ``relax(layer, logits, us[j])`` given the relaxed layer below; log-densities at relaxed
    points."""
    values = [*hs[:start], first]
    log_q = log_prob(target.layers[start], logits_start, first) if target.entropy_term else 0.0
    for j in range(start + 1, len(hs)):
        layer = target.layers[j]
        lg = target.logits(j, values[-1])
        h = relax(layer, lg, us[j])
        if target.entropy_term:
            log_q = log_q + log_prob(layer, lg, h)
        values.append(h)
    f = target.signal(values, relaxed=True)
    if target.entropy_term and start:                      # the hard layers below: constants
        below = [target.logits(j, None if j == 0 else hs[j - 1]) for j in range(start)]
        log_q = log_q + sum(log_prob(target.layers[j], below[j], hs[j]) for j in range(start)).detach()
    return f - log_q


def assemble(target: LayeredTarget, value: torch.Tensor, pathwise: torch.Tensor, logits, grads) -> torch.Tensor:
    r"""The surrogate ``[*batch]``: ``value`` ``[k, *batch]`` (the estimate of $\mathbb{E}[f]$) in the
    forward pass; gradient $\nabla\,$``pathwise`` (the generative parameters' pathwise term) plus
    $\sum_l \hat g_l^\top \partial\ell_l/\partial\phi$ (each layer's logit gradient ``grads[l]``)
    plus the gradient of the target's closed-form term."""
    out = value.detach() + (pathwise - pathwise.detach())
    for layer, lg, g in zip(target.layers, logits, grads):
        out = out + pair_sum(layer, lg, g)
    out = out.mean(0)
    exact = target.exact_term()
    return out if exact is None else out + exact


# ---------------------------------------------------------------------- toy problems as stacks
def why_not_layered(target: Target) -> str | None:
    """``None`` when ``target`` is a stack of discrete layers (or a discrete toy problem)."""
    if isinstance(target, LayeredTarget):
        return None
    if isinstance(target, ProblemTarget):
        return ProblemLayers.why_not(target)
    return f"it needs discrete latents (Bernoulli or categorical layers), and a {target.kind} target has none"


def as_layers(target: Target) -> LayeredTarget:
    return target if isinstance(target, LayeredTarget) else ProblemLayers(target)


class ProblemLayers(LayeredTarget):
    """A toy problem with Bernoulli, ``Independent(Bernoulli)``, ``Categorical`` or
    ``OneHotCategorical`` latents, as a one-layer stack whose signal is its cost (minimised).

    At relaxed points the cost is the problem's ``relaxed_cost(soft)`` when it has one; the
    multilinear extension of a cost table (``FactorisedBernoulli``: $\\sum_s f(s)\\prod_d
    \\tilde b_d^{s_d}(1 - \\tilde b_d)^{1 - s_d}$; ``CategoricalCost``: $\\sum_c \\tilde b_c f(c)$),
    which agrees with $f$ at every vertex; or the cost itself when ``cost_is_differentiable``
    and the samples are bits or one-hot vectors."""

    sense = "minimize"
    entropy_term = False

    def __init__(self, target: ProblemTarget):
        reason = self.why_not(target)
        if reason is not None:
            raise ValueError(f"problem must have discrete latents for this estimator: {reason}")
        self.target, self.problem = target, target.problem
        dist = target.distribution()
        self.form = _form(dist)
        if self.form == "bits":
            logits = dist.base_dist.logits
        elif self.form == "bit":
            logits = dist.logits.unsqueeze(-1)
        else:
            logits = torch.log_softmax(dist.logits, -1).unsqueeze(-2)           # [*batch, 1, C]
        kind = "bernoulli" if self.form in ("bits", "bit") else "categorical"
        self._logits = logits
        self.layers = (Layer(kind, tuple(logits.shape[-1:] if kind == "bernoulli" else logits.shape[-2:])),)
        self.batch_shape = logits.shape[:-len(self.layers[0].shape)]

    @staticmethod
    def why_not(target: ProblemTarget) -> str | None:
        form = _form(target.distribution())
        if form is None:
            return (f"it needs Bernoulli or categorical latents, got {type(target.distribution()).__name__} "
                    "(write Independent(Bernoulli(logits=theta), 1) for several bits)")
        return None

    def why_no_relaxation(self) -> str | None:
        """``None`` when the cost can be evaluated at relaxed points (see the class docstring)."""
        if hasattr(self.problem, "relaxed_cost") or isinstance(self.problem, (FactorisedBernoulli, CategoricalCost)):
            return None
        if self.form != "index" and getattr(self.problem, "cost_is_differentiable", True):
            return None
        if self.form == "index":
            return ("its cost takes class indices, which have no relaxation; give the problem a "
                    "relaxed_cost(soft) on the simplex, or use OneHotCategorical with a differentiable cost")
        return ("its cost is defined only at discrete points; give the problem a relaxed_cost(soft) "
                "(e.g. the multilinear extension of its table) or set cost_is_differentiable = True")

    def logits(self, l, below):
        return self._logits

    def signal(self, values, relaxed=False):
        v = values[0]
        if self.form == "bit":
            v = v.squeeze(-1)
        elif self.form in ("index", "onehot"):
            v = v.squeeze(-2)
        if not relaxed:
            return self.problem.cost(v.argmax(-1) if self.form == "index" else v)
        if hasattr(self.problem, "relaxed_cost"):
            return self.problem.relaxed_cost(v)
        if isinstance(self.problem, FactorisedBernoulli):
            return relaxations.multilinear_bits(self.problem.costs, v)
        if isinstance(self.problem, CategoricalCost):
            return v @ self.problem.costs.to(v.dtype)
        reason = self.why_no_relaxation()
        if reason is not None:
            raise ValueError(f"problem {self.problem!r} has no cost at relaxed points: {reason}")
        return self.problem.cost(v)

    def signature(self):
        return self.target.signature()      # the problem target's: state_parameters(problem.at(theta)) finds it


def _form(dist) -> str | None:
    if isinstance(dist, Dist.Independent) and isinstance(dist.base_dist, Dist.Bernoulli) \
            and dist.reinterpreted_batch_ndims == 1:
        return "bits"
    if isinstance(dist, Dist.Bernoulli):
        return "bit"
    if isinstance(dist, Dist.OneHotCategorical):
        return "onehot"
    if isinstance(dist, Dist.Categorical):
        return "index"
    return None
