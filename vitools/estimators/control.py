r"""REBAR, RELAX and LAX: unbiased gradients for discrete latents with relaxation-based control variates.

For layer $l$ of a discrete stack (:mod:`.layers`; a toy problem is a one-layer stack) with
noisy logits $z_l$, hard sample $h_l = H(z_l)$, the layers below held at their samples and the
layers above re-run with the same uniforms, RELAX (Grathwohl et al. 2018, arXiv:1711.00123,
Eq. 8) is

$$\hat g_l = \big[f(h) - c(\tilde z_l)\big]\nabla_{\ell_l} \log q(h_l)
          + \nabla_{\ell_l} c(z_l) - \nabla_{\ell_l} c(\tilde z_l),$$

where $\tilde z_l \sim p(z_l \mid h_l)$ is reparameterised by fresh uniforms (bits: Tucker et al.
2017, arXiv:1703.07370, App.; classes: truncated Gumbels, ibid.). It is unbiased for every control
$c(z, \ell)$ as long as both pathwise terms take the total derivative in $\ell_l$ (REBAR's relaxed
signal also holds $\log q$ at relaxed points, a direct function of $\ell_l$: autograd differentiates
both terms the same way, so the score and pathwise corrections still cancel in expectation). REBAR takes $c(z) = \eta\,
f(\sigma_\lambda(z))$, the signal along the relaxed pass at temperature $\lambda$
(:func:`.layers.relaxed_signal`); RELAX adds a learned network $r_\rho(\sigma_\lambda(z_l), x)$;
LAX (ibid., Eq. 5) uses the network alone and the score of the continuous $z_l$,
$\hat g_l = [f(h) - c(z_l)]\,\nabla_{\ell}\log p(z_l \mid \ell_l) + \nabla_{\ell_l} c(z_l)$.
With ``baseline=True`` (default) $c$ also holds a learned constant (it cancels in the pathwise
terms, so it acts as a baseline); ``baseline=False`` gives the papers' plain control variates.

The control parameters $(\eta, \log\lambda, \rho, \text{constant})$ are the estimator's own,
built per target (:meth:`~.base.Estimator.state`). The estimate's ``control_loss`` is the mean
$\sum_l \|\hat g_l\|^2$ (the second moment of the logit gradients, whose gradient in the control
parameters is that of the variance), differentiated through $\hat g$ itself; the forward pass
steps nothing. In ``eval()`` mode the pathwise terms use ``torch.func.grad`` so that the
estimator composes with ``torch.func.vmap`` (per-sample diagnostics).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from .. import relaxations
from ..targets import LayeredTarget
from . import layers as L
from .base import Estimate, Estimator, Option


def control_net(d_in: int, hidden: int) -> nn.Module:
    """RELAX's network $r_\\rho$: one tanh hidden layer and a scalar output initialised to zero, so
    that RELAX starts as REBAR."""
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    nn.init.zeros_(net[2].weight)
    nn.init.zeros_(net[2].bias)
    return net


class Controls(nn.Module):
    """The control parameters for one kind of target: $\\eta$, $\\log\\lambda$, the constant and
    one network per layer (each present only when the estimator uses it)."""

    def __init__(self, target: LayeredTarget, temperature: float, eta: float | None, baseline: bool,
                 hidden: int | None):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.eta = nn.Parameter(torch.tensor(float(eta))) if eta is not None else None
        self.constant = nn.Parameter(torch.tensor(0.0)) if baseline else None
        context = 0 if target.context is None else target.context.shape[-1]
        self.nets = None if hidden is None else nn.ModuleList(
            control_net(math.prod(layer.shape) + context, hidden) for layer in target.layers)

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())


class RelaxFamily(Estimator):
    """Shared machinery of ``rebar``, ``relax`` and ``lax`` (see the module docstring)."""

    use_network = True
    use_relaxed_cost = True
    conditional = True
    OPTIONS = {
        "temperature": Option(0.5, "initial relaxation temperature lambda (learned)", minimum=0.0),
        "eta": Option(1.0, "initial scale of the relaxed-cost control (learned)"),
        "baseline": Option(True, "add a learned constant to the control variate", kind="bool"),
        "hidden": Option(16, "width of the control network's hidden layer", kind="int", minimum=1),
        "lr": Option(0.03, "Adam learning rate of warm_up", minimum=0.0),
        "train_steps": Option(100, "default number of warm_up steps", kind="int", minimum=0),
        "train_batch": Option(128, "replicas of a toy problem's theta per warm_up step", kind="int", minimum=2),
    }

    @property
    def label(self) -> str:
        return self.name.upper()

    def warm_up_replicas(self, k: int) -> int:
        return self.options["train_batch"]

    def _why_not(self, target):
        reason = L.why_not_layered(target)
        if reason is None and self.use_relaxed_cost and not isinstance(target, LayeredTarget):
            reason = L.ProblemLayers(target).why_no_relaxation()
        return reason

    def controls(self, target) -> Controls:
        """The control parameters built for ``target`` (created on first use)."""
        layered = L.as_layers(target)
        return self.state(layered, lambda: Controls(
            layered, self.options["temperature"], self.options["eta"] if self.use_relaxed_cost else None,
            self.options["baseline"], self.options["hidden"] if self.use_network else None))

    def estimate(self, target, k):
        layered = L.as_layers(target)
        controls = self.controls(layered)
        us, hs, logits = L.draw(layered, k)
        f = L.signal(layered, hs, logits)                                     # [k, *batch]
        train = self.training and torch.is_grad_enabled()
        grads = [self._layer_grad(layered, controls, us, hs, logits, f, l, train) for l in range(len(hs))]
        control_loss = None
        if train:
            per_example = sum(g.pow(2).sum(layer.event_dims) for layer, g in zip(layered.layers, grads))
            control_loss = per_example.mean()
        pathwise = layered.signal(hs, relaxed=False)
        return Estimate(L.assemble(layered, f, pathwise, logits, grads), control_loss)

    def _layer_grad(self, target, controls, us, hs, logits, f, l, create_graph):
        layer, lg = target.layers[l], logits[l].detach()
        if self.conditional:
            v = relaxations.uniform(lg.shape, lg)

            def difference(lv):                                              # c(z) - c(z~), and c(z~)
                c_tilde = self._control(target, controls, hs, us, l, lv, L.conditional(layer, hs[l], lv, v))
                c_z = self._control(target, controls, hs, us, l, lv, lv + L.noise(layer, us[l]))
                return (c_z - c_tilde).sum(), c_tilde
            pathwise, c = _logit_grad(difference, lg, create_graph)
            return (f.detach() - c).reshape(*c.shape, *[1] * len(layer.shape)) * L.score(layer, lg, hs[l]) + pathwise

        def control(lv):          # LAX needs c to depend on the logits through z only (detached lg elsewhere)
            c_z = self._control(target, controls, hs, us, l, lg, lv + L.noise(layer, us[l]))
            return c_z.sum(), c_z
        pathwise, c = _logit_grad(control, lg, create_graph)
        noise_score = _noise_score(layer, us[l], lg)
        return (f.detach() - c).reshape(*c.shape, *[1] * len(layer.shape)) * noise_score + pathwise

    def _control(self, target, controls, hs, us, l, lv, z) -> torch.Tensor:
        r"""$c(z_l)$ ``[k, *batch]``: the scaled relaxed signal, the constant and the network."""
        layer = target.layers[l]
        temp = controls.log_temperature.exp()
        soft = L.soft_from(layer, z, temp)
        out = torch.zeros(z.shape[:z.dim() - len(layer.shape)], device=z.device, dtype=z.dtype)
        if self.use_relaxed_cost:
            relax = functools.partial(_concrete, temperature=temp)
            out = out + controls.eta * L.relaxed_signal(target, hs, us, l, lv, soft, relax)
        if controls.constant is not None:
            out = out + controls.constant
        if controls.nets is not None:
            out = out + _network(controls, layer, l, soft, target.context)
        return out


def _concrete(layer, logits, u, temperature):
    """The Concrete relaxation of one layer with the hard pass's uniforms ``u``."""
    return L.soft_from(layer, logits + L.noise(layer, u), temperature)


def _network(controls: Controls, layer, l, soft, context):
    flat = soft.flatten(-len(layer.shape)) if len(layer.shape) > 1 else soft
    if context is not None:
        flat = torch.cat([flat, context.expand(*flat.shape[:-1], context.shape[-1])], -1)
    return controls.nets[l](flat).squeeze(-1)


def _noise_score(layer, u, logits):
    r"""$\nabla_\ell \log p(z \mid \ell)$ at the drawn noisy logits: logistic $1 - 2u$ (Grathwohl et al.
    2018, Eq. 5); Gumbel $g$ with location $\ell$ (normalised log-probabilities):
    $1 - e^{-g} = 1 + \log u$."""
    if layer.kind == "bernoulli":
        return relaxations.logistic_score(u)
    return 1 + torch.log(u)


def _logit_grad(fn, logits, create_graph: bool):
    """``(d fn(logits)[0] / d logits, fn(logits)[1])``. Training (``create_graph``): autograd with the
    graph kept, so the control loss differentiates through it; otherwise ``torch.func.grad``,
    which also runs inside ``torch.func.vmap``."""
    if create_graph:
        leaf = logits.detach().requires_grad_(True)
        with torch.enable_grad():
            value, aux = fn(leaf)
            (grad,) = torch.autograd.grad(value, leaf, create_graph=True, allow_unused=True)
        return (torch.zeros_like(leaf) if grad is None else grad), aux
    grad, aux = torch.func.grad(fn, has_aux=True)(logits.detach())
    return grad.detach(), aux.detach()


class REBAR(RelaxFamily):
    r"""REBAR (Tucker et al. 2017, arXiv:1703.07370): $c = \eta f(\sigma_\lambda(z))$, $\eta$ and $\lambda$ tuned."""

    name = "rebar"
    use_network = False
    OPTIONS = {key: spec for key, spec in RelaxFamily.OPTIONS.items() if key != "hidden"}


class RELAX(RelaxFamily):
    r"""RELAX (Grathwohl et al. 2018): $c = \eta f(\sigma_\lambda(z)) + r_\rho(\sigma_\lambda(z))$, all tuned."""

    name = "relax"


class LAX(RelaxFamily):
    r"""LAX on $f \circ H$ (Grathwohl et al. 2018, arXiv:1711.00123, Eq. 5): a learned network
    $c_\rho(\sigma_\lambda(z))$ and the score of the continuous noisy logits $z$; no conditional
    sample and no relaxed cost needed."""

    name = "lax"
    use_relaxed_cost = False
    conditional = False
    OPTIONS = {key: spec for key, spec in RelaxFamily.OPTIONS.items() if key != "eta"}
