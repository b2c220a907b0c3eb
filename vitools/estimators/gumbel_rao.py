r"""Gumbel-Rao: straight-through Gumbel-Softmax Rao-Blackwellized over the noise given the sample.

Paulus, Maddison & Krause 2021, *Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient
Estimator*, arXiv:2010.04838. Straight-through Gumbel-Softmax forwards the hard sample
$b = H(\ell + G)$ and backpropagates through one tempered softmax $\sigma_\tau(\ell + G)$. Its
backward pass is a function of $(b, G)$; averaging it over $G \sim p(G \mid b)$ keeps the forward
pass (and the bias of straight-through) and can only lower the variance (Rao-Blackwell):

$$\hat g_{\mathrm{GR}} = \frac{\partial f}{\partial b}\,\frac1M\sum_{m=1}^M
   \frac{\partial \sigma_\tau(\ell + \tilde G_m)}{\partial \ell},\qquad \tilde G_m \sim p(G \mid b),$$

the conditional noises drawn by the truncated-Gumbel construction of REBAR (classes;
:func:`vitools.relaxations.conditional_gumbels`) or its logistic analogue (bits) and held fixed
in the derivative, as straight-through holds its one noise draw. $f$ is
evaluated once per sample, whatever $M$: only the cheap softmax is repeated. Biased
(``unbiased = False``), as straight-through is; on a stack, every layer is treated so in the
relaxed pass (:func:`.layers.relaxed_signal`).
"""
from __future__ import annotations

from .. import relaxations
from . import layers as L
from .base import Option
from .relaxed import _Relaxed


class GumbelRao(_Relaxed):
    r"""Straight-through Gumbel-Softmax with its backward pass averaged over $M$ draws of the noise
    given the hard sample (Paulus et al. 2021)."""

    name = "gumbel_rao"
    OPTIONS = {"temperature": Option(0.5, "relaxation temperature tau", minimum=0.0),
               "samples": Option(10, "conditional noise draws M averaged in the backward pass", kind="int",
                                 minimum=1)}

    @property
    def label(self) -> str:
        return "Gumbel-Rao"

    def relax(self, layer, logits, u):
        hard = L.hard_from(layer, logits.detach() + L.noise(layer, u))
        v = relaxations.uniform((self.options["samples"], *logits.shape), logits)
        fixed = logits.detach()
        noise = L.conditional(layer, hard, fixed, v) - fixed           # [M, *logits.shape]: G ~ p(G | hard)
        z = logits + noise                                             # differentiated at fixed noise, as in ST
        soft = L.soft_from(layer, z, self._temperature()).mean(0)
        return hard + soft - soft.detach()
