r"""ARM and DisARM: antithetic pairs of Bernoulli samples, unbiased with no relaxation.

ARM (Yin & Zhou 2019, arXiv:1807.11143) and DisARM (Dong, Mnih & Tucker 2020, arXiv:2006.10680)
draw one uniform vector $u$ per layer and evaluate the signal at the sample
$b = \mathbb{1}[u < \sigma(\ell)]$ and at an antithetic partner $\check b$ built from the same
$u$; $(f(b) - f(\check b))\,w$ is the gradient in the logits (:func:`antithetic_pair`). DisARM
is ARM Rao-Blackwellized over the pair's shared logistic noise, so its variance is never
larger. On a stack of layers (ibid., Sec. 5) layer $l$'s partner is propagated through the
layers above with the same uniforms; the layer-1 partner is itself a draw from $q$ and joins the
value and the pathwise term. A sample of ``k`` means ``k`` pairs; Bernoulli layers only.
"""
from __future__ import annotations

import contextlib

import torch

from . import layers as L
from .base import Estimate, Estimator


def antithetic_pair(kind: str, u: torch.Tensor, logits: torch.Tensor):
    r"""``(b, b_check, w)`` from uniforms ``u``: the draw $b = \mathbb{1}[u < \sigma(\ell)]$, its
    antithetic partner $\check b$ and the weight with which $(f(b) - f(\check b))\,w$ is the
    gradient in ``logits`` (detached), all shaped like ``u``. ``kind="arm"`` (Yin & Zhou 2019):
    $\check b = \mathbb{1}[u > \sigma(-\ell)]$, $w = \tfrac12 - u$; ``"disarm"`` (Dong et al. 2020):
    $\check b = \mathbb{1}[1 - u < \sigma(\ell)]$, $w = \tfrac12(-1)^{\check b}
    \mathbb{1}[b \ne \check b]\,\sigma(|\ell|)$."""
    hard = (u < torch.sigmoid(logits)).to(u.dtype)
    if kind == "arm":
        partner = (u > torch.sigmoid(-logits)).to(u.dtype)
        return hard, partner, 0.5 - u
    partner = (1 - u < torch.sigmoid(logits)).to(u.dtype)
    weight = 0.5 * (1 - 2 * partner) * (hard != partner).to(u.dtype) * torch.sigmoid(logits.abs())
    return hard, partner, weight


class _Antithetic(Estimator):
    def _why_not(self, target):
        reason = L.why_not_layered(target)
        if reason is None and any(layer.kind != "bernoulli" for layer in L.as_layers(target).layers):
            return "it is defined for Bernoulli (binary) latents only"
        return reason

    def estimate(self, target, k):
        target = L.as_layers(target)
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        pathwise = target.signal(hs, relaxed=False)
        value, grads = f, []
        for l in range(len(hs)):
            lg = logits[l].detach()
            _, partner, weight = antithetic_pair(self.name, us[l], lg)          # h_l = 1[u_l < sigma]
            hs_partner = L.propagate(target, hs, l, partner, us)
            with torch.no_grad() if l else contextlib.nullcontext():
                partner_logits = [*logits[:l], lg, *[target.logits(j, hs_partner[j - 1]) for j in range(l + 1, len(hs))]]
                f_partner = L.signal(target, hs_partner, partner_logits)
                if l == 0:                                                        # a second draw from q
                    value = 0.5 * (f + f_partner.detach())
                    pathwise = 0.5 * (pathwise + target.signal(hs_partner, relaxed=False))
            grads.append((f - f_partner.detach()).unsqueeze(-1) * weight)        # [k, *batch, d_l]
        return Estimate(L.assemble(target, value, pathwise, logits, grads))


class ARM(_Antithetic):
    r"""ARM: $\hat g_d = [f(\mathbb{1}[u > \sigma(-\ell)]) - f(\mathbb{1}[u < \sigma(\ell)])](u_d - \tfrac12)$."""

    name = "arm"


class DisARM(_Antithetic):
    r"""DisARM: $\hat g_d = \tfrac12[f(b) - f(\tilde b)](-1)^{\tilde b_d}\mathbb{1}[b_d \ne \tilde b_d]\sigma(|\ell_d|)$,
    $b = \mathbb{1}[u < \sigma(\ell)]$, $\tilde b = \mathbb{1}[1 - u < \sigma(\ell)]$."""

    name = "disarm"
