r"""REINFORCE leave-one-out (RLOO) and double control variates, on any stack of discrete layers.

RLOO (Kool, van Hoof & Welling 2019, *Buy 4 REINFORCE samples, get a baseline for free!*):
with $K$ independent samples $h^{(1)}, \dots, h^{(K)}$, each sample's learning signal is
baselined by the mean of the others,

$$\hat g = \frac1K \sum_k \Big(f(h^{(k)}) - \frac{1}{K-1}\sum_{j \ne k} f(h^{(j)})\Big)
           \nabla \log q(h^{(k)}),$$

unbiased because the baseline of sample $k$ is independent of $h^{(k)}$. It is the score
function with ``baseline="leave_one_out"``, registered on its own as the baseline every later
estimator is compared with.

Double control variates (Titsias & Shi 2022, arXiv:2111.05300): a second, Taylor-expansion
control variate on top of RLOO. With $\bar g_{-k} = \frac{1}{K-1}\sum_{j\ne k}\nabla_h f(h^{(j)})$
(the signal's gradient at the *other* samples, treating $h$ as real; one backward pass, no extra
evaluation of $f$) and $\mu = \mathbb{E}_q[h]$, the linear control $c_k = \bar g_{-k}^\top(h^{(k)} - \mu)$
cancels the first-order variation of $f$ around the other samples:

$$\hat g = \frac1K\sum_k\Big[\big(f_k - \alpha c_k - \tfrac{1}{K-1}\textstyle\sum_{j\ne k}(f_j - \alpha c_j)\big)
           \nabla\log q(h^{(k)}) + \alpha\,\mathrm{Cov}_q[h]\,\bar g_{-k}\Big],$$

the last term being the exact expectation of $c_k \nabla \log q(h^{(k)})$ (a Bernoulli layer:
$\mu(1-\mu)\odot\bar g$; a categorical group: $\mu\odot(\bar g - \mu^\top\bar g)$). Each $c_j$ is linear in
$h^{(j)} - \mu^{(j)}$ given the rest, so the estimate stays unbiased for every $\alpha$; $\alpha$
(one per layer, $1$ = the Taylor choice) is learned through ``control_loss`` (the second moment
of the logit gradients). On a stack, layer $l$ uses $\nabla_{h_l} f$ and its conditional $\mu_l$.
"""
from __future__ import annotations

import torch
from torch import nn

from . import layers as L
from .base import Estimate, Estimator, Option


def loo_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of the *other* samples along dim 0: $\\frac{1}{K-1}\\sum_{j\\ne k} x_j$, shaped like ``x``."""
    return (x.sum(0, keepdim=True) - x) / (x.shape[0] - 1)


def per_sample(signal: torch.Tensor, layer) -> torch.Tensor:
    """A ``[k, *batch]`` signal broadcast over one layer's event dimensions."""
    return signal.reshape(*signal.shape, *[1] * len(layer.shape))


def mean_of(layer, logits: torch.Tensor) -> torch.Tensor:
    """$\\mathbb{E}[h_l]$: $\\sigma(\\ell)$ or $\\mathrm{softmax}(\\ell)$."""
    return torch.sigmoid(logits) if layer.kind == "bernoulli" else torch.softmax(logits, -1)


def covariance_times(layer, mean: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    r"""$\mathrm{Cov}_q[h]\,g$ per variable: $\mu(1-\mu) g$, or $\mu \odot (g - \mu^\top g)$ per group."""
    if layer.kind == "bernoulli":
        return mean * (1 - mean) * g
    return mean * (g - (mean * g).sum(-1, keepdim=True))


def signal_gradients(target, hs) -> list[torch.Tensor]:
    r"""$\nabla_{h_l} f(h)$ at the hard samples, one ``[k, *batch, *shape]`` tensor per layer (detached):
    the target's signal at relaxed points (the same formula at real-valued $h$), less $\log q$ when
    the target has an entropy term. ``torch.func.grad``, so it also runs inside ``vmap``."""
    def total(values):
        f = target.signal(values, relaxed=True)
        if target.entropy_term:
            for l, layer in enumerate(target.layers):
                lg = target.logits(l, None if l == 0 else values[l - 1])
                f = f - L.log_prob(layer, lg, values[l])
        return f.sum()
    return [g.detach() for g in torch.func.grad(total)([h.detach() for h in hs])]


def why_not_differentiable(target) -> str | None:
    """``None`` when the signal can be differentiated at real-valued latents."""
    reason = L.why_not_layered(target)
    if reason is None and not isinstance(target, L.LayeredTarget):
        reason = L.ProblemLayers(target).why_no_relaxation()
    return reason


class RLOO(Estimator):
    r"""REINFORCE with the leave-one-out baseline (Kool et al. 2019): $K \ge 2$ samples, each baselined
    by the mean signal of the others."""

    name = "rloo"

    min_k = 2

    @property
    def label(self) -> str:
        return "RLOO"

    def _why_not(self, target):
        return L.why_not_layered(target)

    def estimate(self, target, k):
        target = L.as_layers(target)
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        signal = f - loo_mean(f)
        grads = [per_sample(signal, layer) * L.score(layer, lg.detach(), h)
                 for layer, lg, h in zip(target.layers, logits, hs)]
        return Estimate(L.assemble(target, f, target.signal(hs, relaxed=False), logits, grads))


class Alphas(nn.Module):
    """Double CV's coefficient $\\alpha$, one per layer."""

    def __init__(self, count: int, alpha: float):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((count,), float(alpha)))


class DoubleCV(Estimator):
    r"""RLOO plus a Taylor-expansion control variate built from the other samples' signal gradients
    (Titsias & Shi 2022, arXiv:2111.05300); same $K$ evaluations of $f$ as RLOO."""

    name = "double_cv"
    OPTIONS = {
        "alpha": Option(1.0, "initial coefficient of the Taylor control variate (learned; 1 = first-order Taylor)"),
        "lr": Option(0.01, "Adam learning rate of warm_up", minimum=0.0),
        "train_steps": Option(50, "default number of warm_up steps", kind="int", minimum=0),
    }

    min_k = 2

    @property
    def label(self) -> str:
        return "Double CV"

    def _why_not(self, target):
        return why_not_differentiable(target)

    def alphas(self, target) -> Alphas:
        layered = L.as_layers(target)
        return self.state(layered, lambda: Alphas(len(layered.layers), self.options["alpha"]))

    def estimate(self, target, k):
        target = L.as_layers(target)
        alphas = self.alphas(target).alpha
        train = self.training and torch.is_grad_enabled()
        alphas = alphas if train else alphas.detach()
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        dfs = signal_gradients(target, hs)
        grads = []
        for l, (layer, lg, h) in enumerate(zip(target.layers, logits, hs)):
            mu = mean_of(layer, lg.detach())
            g_other = loo_mean(dfs[l])                                        # [k, *batch, *shape]
            c = (g_other * (h - mu)).sum(layer.event_dims)                    # [k, *batch]
            adjusted = f - alphas[l] * c
            signal = adjusted - loo_mean(adjusted)
            grads.append(per_sample(signal, layer) * L.score(layer, lg.detach(), h)
                         + alphas[l] * covariance_times(layer, mu, g_other))
        control_loss = None
        if train:
            control_loss = sum(g.pow(2).sum(layer.event_dims) for layer, g in zip(target.layers, grads)).mean()
        return Estimate(L.assemble(target, f, target.signal(hs, relaxed=False), logits, grads), control_loss)
