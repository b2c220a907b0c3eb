r"""Relaxation estimators: Gumbel-Softmax and its descendants, on any stack of discrete layers.

The Gumbel-max trick writes a categorical sample as $b = \arg\max_i(\ell_i + G_i)$; replacing
the argmax by a tempered softmax gives the Concrete distribution (Maddison, Mnih & Teh 2017,
arXiv:1611.00712), a.k.a. Gumbel-Softmax (Jang, Gu & Poole 2017, arXiv:1611.01144):
$\tilde b = \mathrm{softmax}((\ell + G)/\tau)$, or $\sigma((\ell + L)/\tau)$ for one bit
(:mod:`vitools.relaxations` holds the distributions and the per-layer mathematics).

Each estimator is a *relaxation* of one layer, ``relax(layer, logits, u)``, using the hard pass's
uniforms; the relaxed pass applies it to every layer (:func:`.layers.relaxed_signal`) and is
differentiated end to end. The surrogate's value is the estimate at the hard sample (an unbiased
estimate of the objective); its gradient is the relaxed pass's, so all four are biased
(``unbiased = False``; the tests measure by how much):

``gumbel_softmax``
    the Concrete relaxation itself.
``straight_through``
    forward the hard sample, backward the Concrete one (Bengio et al. 2013; Jang et al. 2017).
``gapped_straight_through``
    (Fan et al. 2022, arXiv:2206.07235) forward the hard sample, backward
    $\mathrm{softmax}(\tilde\ell/\tau)$ at deterministic logits that keep the sampled class ahead
    by a gap $\kappa$ (:func:`vitools.relaxations.gapped_logits`): no noise in the backward pass.
``igr``
    (Potapczynski, Loaiza-Ganem & Cunningham 2020, arXiv:1912.09588) Gaussian noise through
    softmax++ (for a bit, $\sigma((\ell + \sigma\varepsilon)/\tau)$ with $\varepsilon = \Phi^{-1}(1 - u)$);
    for classes the Gaussian means are $\ell_i - \ell_C$, so part of its bias is that the
    discretised IGR distribution is not the target's categorical.

At relaxed points a toy problem's cost is its relaxed cost (see :class:`.layers.ProblemLayers`).
"""
from __future__ import annotations

import torch

from .. import relaxations
from . import layers as L
from .base import Estimate, Estimator, Option

TEMPERATURE = Option(0.5, "relaxation temperature tau", minimum=0.0)


class _Relaxed(Estimator):
    unbiased = False
    OPTIONS = {"temperature": TEMPERATURE}

    def _why_not(self, target):
        reason = L.why_not_layered(target)
        if reason is None and not isinstance(target, L.LayeredTarget):
            reason = L.ProblemLayers(target).why_no_relaxation()
        return reason

    def relax(self, layer, logits, u) -> torch.Tensor:
        """This relaxation of one layer with logits ``logits`` and the hard pass's uniforms ``u``."""
        raise NotImplementedError

    def estimate(self, target, k):
        target = L.as_layers(target)
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        f_rel = L.relaxed_signal(target, hs, us, 0, logits[0], self.relax(target.layers[0], logits[0], us[0]),
                                 self.relax)
        out = (f + f_rel - f_rel.detach()).mean(0)
        exact = target.exact_term()
        return Estimate(out if exact is None else out + exact)

    def _temperature(self):
        return self.options["temperature"]


class GumbelSoftmax(_Relaxed):
    r"""Pathwise gradient of the relaxed objective $\mathbb{E}[f(\tilde b_\tau)]$ (biased for $\tau > 0$)."""

    name = "gumbel_softmax"

    def relax(self, layer, logits, u):
        if layer.kind == "bernoulli":
            return relaxations.concrete_bits(logits, u, self._temperature())
        return L.soft_from(layer, logits + L.noise(layer, u), self._temperature())


class StraightThrough(_Relaxed):
    r"""Straight-through Gumbel-Softmax: $b + \tilde b - \mathrm{stop\_grad}(\tilde b)$, forward
    $f(b)$ at the hard sample, backward $\partial f/\partial b \cdot \partial \tilde b/\partial\theta$."""

    name = "straight_through"
    OPTIONS = {"temperature": Option(1.0, TEMPERATURE.doc, minimum=0.0)}

    def relax(self, layer, logits, u):
        if layer.kind == "bernoulli":
            return relaxations.straight_through_bits(logits, u, self._temperature())
        z = logits + L.noise(layer, u)
        soft = L.soft_from(layer, z, self._temperature())
        return L.hard_from(layer, z) + soft - soft.detach()


class GappedStraightThrough(_Relaxed):
    r"""Gapped straight-through (Fan et al. 2022, arXiv:2206.07235): the sampled logit lifted to at
    least $\kappa$ above every other one ($\delta_b = (\max_{i\neq b}\ell_i + \kappa - \ell_b)_+$; for a
    bit $\max(\ell, \kappa)$ or $\min(\ell, -\kappa)$), straight-through of its tempered softmax."""

    name = "gapped_straight_through"
    OPTIONS = {"temperature": Option(1.0, TEMPERATURE.doc, minimum=0.0),
               "gap": Option(1.0, "the gap kappa by which the sampled class leads", minimum=0.0)}

    def relax(self, layer, logits, u):
        tau, gap = self._temperature(), self.options["gap"]
        if layer.kind == "bernoulli":
            return relaxations.gapped_straight_through_bits(logits, u, tau, gap)
        hard = L.hard_from(layer, logits.detach() + L.noise(layer, u))
        soft = torch.softmax(relaxations.gapped_logits(logits, hard, gap, categorical=True) / tau, -1)
        return hard + soft - soft.detach()


class IGR(_Relaxed):
    r"""Invertible Gaussian reparameterization with softmax++ (Potapczynski et al. 2020, arXiv:1912.09588)."""

    name = "igr"
    OPTIONS = {"temperature": TEMPERATURE,
               "sigma": Option(1.7, "scale of the Gaussian noise", minimum=0.0),
               "delta": Option(1.0, "softmax++ constant delta", minimum=0.0)}

    def relax(self, layer, logits, u):
        tau, sigma = self._temperature(), self.options["sigma"]
        if layer.kind == "bernoulli":
            return relaxations.igr_bits(logits, u, tau, sigma)
        eps = torch.special.ndtri(1 - u[..., :-1])            # Gaussians monotone in the hard pass's uniforms
        return relaxations.igr_simplex(logits, 1, tau, sigma, self.options["delta"], eps=eps[None])[0]
