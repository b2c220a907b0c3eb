r"""ReinMax: straight-through with second-order accuracy, at straight-through's cost.

Liu, Yang, Gao, Wang, Chen & Han 2023, *Bridging Discrete and Backpropagation: Straight-Through and
Beyond*, arXiv:2304.08612. For $\mathbb{E}_{b \sim \mathrm{Cat}(\pi)}[f(b)]$, $\pi = \mathrm{softmax}(\ell)$,
the exact gradient is $\sum_i \pi_i f(e_i)\nabla\log\pi_i$, and straight-through is its *first-order*
(forward-Euler) approximation: $\nabla_\ell \approx J_\pi^\top \partial f/\partial b$ with the softmax
Jacobian $J_p = \mathrm{diag}(p) - pp^\top$. ReinMax replaces it by Heun's second-order method, which
averages the slopes at the two ends of the segment from $\pi$ to the sample $b$:

$$\nabla_\ell \approx \big(2 J_{\pi_1} - \tfrac12 J_{\pi}\big)^\top \frac{\partial f}{\partial b},\qquad
  \pi_1 = \tfrac12\big(b + \mathrm{softmax}(\ell/\tau)\big),$$

where $J_{\pi_1}$ is the softmax Jacobian taken at the point $\pi_1$ (written here as
$\mathrm{softmax}(\ell + \mathrm{sg}(\log\pi_1 - \ell))$, whose value is $\pi_1$). The forward pass is the
hard sample; no extra evaluation of $f$. A bit is the two-class case, $J_p = p(1-p)$. The authors
recommend $\tau \ge 1$. Biased (``unbiased = False``), exact when $f$ is quadratic in $b$ per variable
(ibid., Thm. 3.1).
"""
from __future__ import annotations

import torch

from . import layers as L
from .base import Option
from .relaxed import _Relaxed


class ReinMax(_Relaxed):
    r"""Heun's method in place of straight-through's Euler step (Liu et al. 2023)."""

    name = "reinmax"
    OPTIONS = {"temperature": Option(1.0, "temperature tau of softmax(l / tau) in pi_1 (the paper prefers >= 1)",
                                     minimum=0.0)}

    @property
    def label(self) -> str:
        return "ReinMax"

    def relax(self, layer, logits, u):
        tau = self._temperature()
        hard = L.hard_from(layer, logits.detach() + L.noise(layer, u))
        eps = torch.finfo(logits.dtype).eps
        if layer.kind == "bernoulli":
            p0 = torch.sigmoid(logits)
            pi1 = (0.5 * (torch.sigmoid(logits.detach() / tau) + hard)).clamp(eps, 1 - eps)
            s1 = torch.sigmoid(logits + (torch.logit(pi1) - logits).detach())      # value pi_1, slope J at pi_1
        else:
            p0 = torch.softmax(logits, -1)
            pi1 = (0.5 * (torch.softmax(logits.detach() / tau, -1) + hard)).clamp_min(eps)
            s1 = torch.softmax(logits + (torch.log(pi1) - logits).detach(), -1)
        y = 2 * s1 - 0.5 * p0
        return hard + y - y.detach()
