r"""RODEO: control variates from discrete Stein operators on top of RLOO (binary layers).

Shi, Zhou, Hwang, Titsias & Mackey 2022, *Gradient Estimation with Discrete Stein Operators*,
arXiv:2202.09497. For a factorised Bernoulli $q$ the Gibbs Stein operator

$$(\mathcal{A}h)(b) = \frac1D\sum_{i=1}^D q(\bar b_i)\,\big[h(b^{(i)}) - h(b)\big],$$

with $b^{(i)}$ the sample with bit $i$ flipped and $q(\bar b_i)$ the probability of the flipped
value, has $\mathbb{E}_q[\mathcal{A}h] = 0$ for *every* function $h$: it turns any $h$ into a
control variate. RODEO uses it twice on top of the leave-one-out estimator,

$$\hat g = \frac1K\sum_k\Big[\big(f_k - \tfrac{1}{K-1}\textstyle\sum_{j\ne k}(f_j + \mathcal{A}h_0(b^{(j)}))\big)
           \nabla\log q(b^{(k)}) + \mathcal{A}H(b^{(k)})\Big],\qquad H(b) = h_1(b)\,\nabla\log q(b),$$

a scalar control $\mathcal{A}h_0$ inside the baseline and a vector one $\mathcal{A}H$ added to the
gradient. The function $h = (h_0, h_1)$ must not spend evaluations of $f$: it reads a first-order
surrogate of $f$ built from the *other* samples, $\tilde f_{-k}(y) = \bar g_{-k}^\top y -
\frac{1}{K-1}\sum_{j\ne k}\nabla f(b^{(j)})^\top b^{(j)}$ (the gradients are one backward pass, as
in Double CV), and their mean signal $\bar f_{-k}$, through a small learned network
$r_\rho(\tilde f, \bar f) \in \mathbb{R}^2$ (the paper's design; its output layer starts at zero, so
RODEO starts as RLOO). Given the other samples $h$ is a fixed function, so both terms have mean
zero and the estimate is unbiased for every $\rho$; $\rho$ is trained through ``control_loss``.

On a stack of binary layers, layer $l$ uses the operator of $q(h_l \mid h_{l-1})$ and
$\nabla_{h_l} f$. The paper's operators for categorical variables are not implemented here.
"""
from __future__ import annotations

import torch
from torch import nn

from . import layers as L
from .base import Estimate, Estimator, Option
from .rloo import loo_mean, per_sample, signal_gradients, why_not_differentiable


def stein_net(hidden: int) -> nn.Module:
    """$r_\\rho(\\tilde f, \\bar f) \\to (h_0, h_1)$: one leaky-ReLU hidden layer, output initialised to zero."""
    net = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.3), nn.Linear(hidden, 2))
    nn.init.zeros_(net[2].weight)
    nn.init.zeros_(net[2].bias)
    return net


class SteinNets(nn.Module):
    def __init__(self, count: int, hidden: int):
        super().__init__()
        self.nets = nn.ModuleList(stein_net(hidden) for _ in range(count))


def gibbs_stein_terms(net, f, df, h, mu):
    r"""RODEO's two Stein controls for one binary layer: ``(scalar [k, *batch], vector [k, *batch, D])``,
    $\mathcal{A}h_0(b^{(k)})$ and $\mathcal{A}H(b^{(k)})$, from signals ``f`` ``[k, *batch]``, signal
    gradients ``df``, samples ``h`` and means ``mu`` ``[k, *batch, D]``."""
    g_other = loo_mean(df)                                                   # [k, *batch, D]
    offset = loo_mean((df * h).sum(-1))                                      # [k, *batch]
    f_other = loo_mean(f)
    lin_x = (g_other * h).sum(-1) - offset                                   # f~(b), [k, *batch]
    lin_nbr = lin_x[..., None] + g_other * (1 - 2 * h)                       # f~(b^(i)), [k, *batch, D]
    out_x = net(torch.stack([lin_x, f_other], -1))                           # [k, *batch, 2]
    out_nbr = net(torch.stack([lin_nbr, f_other[..., None].expand_as(lin_nbr)], -1))   # [k, *batch, D, 2]
    flip = mu * (1 - h) + (1 - mu) * h                                       # q(flipped bit i)
    d = h.shape[-1]
    scalar = (flip * (out_nbr[..., 0] - out_x[..., :1])).mean(-1)
    score = h - mu
    # A H at b: mean_i q(flip_i) [h1(b^(i)) s(b^(i)) - h1(b) s(b)], s(b^(i)) = s(b) + e_i (1 - 2 b_i)
    vector = (flip * (out_nbr[..., 1] - out_x[..., 1:])).mean(-1, keepdim=True) * score \
        + flip * out_nbr[..., 1] * (1 - 2 * h) / d
    return scalar, vector


class RODEO(Estimator):
    r"""RLOO with discrete-Stein control variates (Shi et al. 2022, arXiv:2202.09497); binary layers,
    the same $K$ evaluations of $f$ as RLOO."""

    name = "rodeo"
    OPTIONS = {
        "hidden": Option(32, "width of the Stein network's hidden layer", kind="int", minimum=1),
        "lr": Option(0.01, "Adam learning rate of warm_up", minimum=0.0),
        "train_steps": Option(100, "default number of warm_up steps", kind="int", minimum=0),
    }

    min_k = 2

    @property
    def label(self) -> str:
        return "RODEO"

    def _why_not(self, target):
        reason = why_not_differentiable(target)
        if reason is None and any(layer.kind != "bernoulli" for layer in L.as_layers(target).layers):
            return ("it uses the Gibbs Stein operator of Bernoulli (binary) layers (bit flips); "
                    "categorical layers are not implemented")
        return reason

    def nets(self, target) -> SteinNets:
        layered = L.as_layers(target)
        return self.state(layered, lambda: SteinNets(len(layered.layers), self.options["hidden"]))

    def estimate(self, target, k):
        target = L.as_layers(target)
        nets = self.nets(target).nets
        train = self.training and torch.is_grad_enabled()
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        dfs = signal_gradients(target, hs)
        grads = []
        for l, (layer, lg, h) in enumerate(zip(target.layers, logits, hs)):
            mu = torch.sigmoid(lg.detach())
            scalar, vector = gibbs_stein_terms(nets[l], f, dfs[l], h, mu)
            baseline = loo_mean(f + scalar)
            grads.append(per_sample(f - baseline, layer) * (h - mu) + vector)
        control_loss = None
        if train:
            control_loss = sum(g.pow(2).sum(-1) for g in grads).mean()
        else:
            grads = [g.detach() for g in grads]
        return Estimate(L.assemble(target, f, target.signal(hs, relaxed=False), logits, grads), control_loss)
