r"""The unordered set estimator: $K$ distinct classes of one categorical variable, drawn without replacement.

Kool, van Hoof & Welling 2020, *Estimating Gradients for Discrete Random Variables by Sampling
without Replacement*, arXiv:2002.06043. Gumbel-top-$k$ draws a set $S$ of $K$ distinct classes
(:mod:`vitools.problems_subset`), so no evaluation of $f$ is spent twice on the same class. With
the leave-one-out ratio $R(S, s) = p^{D\setminus s}(S \setminus s) / p(S)$ (the probability of the
rest of the set once $s$ is removed from the domain, over that of the set),

$$\mathbb{E}_S\Big[\sum_{s\in S} p(s) R(S, s)\, g(s, S\setminus s)\Big] = \sum_s p(s)\,
\mathbb{E}_{S' \sim \mathrm{WOR}_{K-1}(D\setminus s)}[g(s, S')]$$

for any $g$; $g = f(s)$ gives the unbiased value $\sum_s p(s)R(S,s)f(s)$ and, with $\nabla p(s)$ in place
of $p(s)$, the gradient. The built-in baseline (ibid., Sec. 4) is, for each $s$, the same
estimate of $\mathbb{E}_p[f]$ from the rest of the set: $b_s = p(s)f(s) + \sum_{s'\in S\setminus s}
p(s') R^{D\setminus s}(S\setminus s, s') f(s')$, whose conditional mean is $\mathbb{E}_p[f]$ for every
$s$, so $\sum_s \nabla p(s)\,\mathbb{E}_p[f] = 0$ and

$$\hat g = \sum_{s\in S} \nabla p(s)\, R(S, s)\,\big(f(s) - b_s\big)$$

stays unbiased. With $K = C$ the set is the whole domain and $\hat g$ is the exact gradient. The
set probabilities are exact sums over the $K!$ orders of the set (small $K$).

Where it applies: one categorical variable (a one-layer stack with one group of $C \ge K$
classes: a ``Categorical`` or ``OneHotCategorical`` toy, a categorical VAE with one latent). Not
for several independent variables or a stack of layers, whose joint domain needs stochastic beam
search (Kool et al. 2019) to sample without replacement, and not for Bernoulli layers (a single
bit has two states; factorised bits are a product domain again).
"""
from __future__ import annotations

import torch

from .. import relaxations
from ..problems_subset import _log_set_prob as log_set_prob
from . import layers as L
from .base import Estimate, Estimator

MAX_K = 7          # K! orders per set


class UnorderedSet(Estimator):
    r"""$\sum_{s\in S}\nabla p(s) R(S,s)(f(s) - b_s)$ over a Gumbel-top-$k$ set of distinct classes
    (Kool et al. 2020), with the built-in baseline; one categorical variable."""

    name = "unordered_set"

    min_k = 2

    @property
    def label(self) -> str:
        return "unordered set"

    def _why_not(self, target):
        reason = L.why_not_layered(target)
        if reason is not None:
            return reason
        layers = L.as_layers(target).layers
        if len(layers) != 1 or layers[0].kind != "categorical" or layers[0].shape[0] != 1:
            what = "a stack of several layers" if len(layers) != 1 else (
                "Bernoulli latents" if layers[0].kind == "bernoulli" else f"{layers[0].shape[0]} categorical variables")
            return (f"it samples without replacement from one categorical variable (Gumbel-top-k), got {what}; "
                    "a joint domain of several variables would need stochastic beam search")
        return None

    def estimate(self, target, k):
        target = L.as_layers(target)
        layer = target.layers[0]
        classes = layer.shape[-1]
        if k > classes or k > MAX_K:
            raise ValueError(f"k must be at most the number of classes ({classes}) and at most {MAX_K} "
                             f"for sampling without replacement, got {k}")
        logits = torch.log_softmax(target.logits(0, None), -1)                     # [*batch, 1, C]
        log_p = logits.detach()
        u = relaxations.uniform(log_p.shape, log_p)
        top = (log_p + L.noise(layer, u)).topk(k, -1).indices                      # [*batch, 1, k]
        index = top.movedim(-1, 0)                                                 # [k, *batch, 1]
        hs = [torch.zeros(k, *log_p.shape, dtype=log_p.dtype, device=log_p.device).scatter(-1, index[..., None], 1.0)]
        lg = logits.expand(k, *logits.shape)
        f = L.signal(target, hs, [lg]).detach()                                    # [k, *batch]
        weights, baselines = _weights(log_p.exp().squeeze(-2).gather(-1, top.squeeze(-2)), f)
        grads = [(k * weights * (f - baselines))[..., None, None] * L.score(layer, lg.detach(), hs[0])]
        value = k * weights * f
        pathwise = k * weights * target.signal(hs, relaxed=False)
        return Estimate(L.assemble(target, value, pathwise, [lg], grads))


def _weights(p: torch.Tensor, f: torch.Tensor):
    r"""``(p(s) R(S, s), b_s)``, each ``[k, *batch]``, from the members' probabilities ``p``
    ``[*batch, k]`` and signals ``f`` ``[k, *batch]``."""
    k = p.shape[-1]
    p64 = p.double()
    eye = torch.eye(k, dtype=torch.bool, device=p.device)
    rest = [torch.arange(k, device=p.device)[~eye[i]] for i in range(k)]
    without = torch.stack(rest)                                                # [k, k-1]
    log_set = log_set_prob(p64)                                                # [*batch]
    log_rest = log_set_prob(p64[..., without], 1 - p64)                        # [*batch, k]
    ratio = (log_rest - log_set[..., None]).exp()                              # R(S, s)
    # second-order ratios R^{D\s}(S\s, s') = p^{D\{s,s'}}(S\{s,s'}) / p^{D\s}(S\s), s' != s
    if k > 2:
        pairs = torch.tensor([[[m for m in range(k) if m not in (i, j)][:k - 2] for j in range(k)] for i in range(k)],
                             device=p.device)                                   # [k, k, k-2]; diagonal unused
        mass = torch.where(eye, torch.ones_like(p64[..., None, :]), 1 - p64[..., :, None] - p64[..., None, :])
        log_pair = log_set_prob(p64[..., pairs], mass)
    else:
        log_pair = torch.zeros(*p.shape, k, dtype=p64.dtype, device=p.device)     # empty rest: probability 1
    ratio2 = (log_pair - log_rest[..., None]).exp()                            # [*batch, s, s']
    fb = f.movedim(0, -1).double()                                             # [*batch, k]
    terms = p64[..., None, :] * ratio2 * fb[..., None, :]                      # p(s') R2 f(s')
    baselines = torch.where(eye, p64[..., None, :] * fb[..., None, :], terms).sum(-1)
    weights = p64 * ratio
    return weights.movedim(-1, 0).to(p.dtype), baselines.movedim(-1, 0).to(p.dtype)
