r"""Estimators for the $K$-sample importance-weighted bound.

$$\mathcal{L}_K = \mathbb{E}_{h_{1:K} \sim q}\Big[\log \frac1K \sum_{j=1}^K w_j\Big], \qquad
w_j = \frac{p_\theta(x, h_j)}{q_\phi(h_j \mid x)}, \qquad \tilde w_j = w_j / \textstyle\sum_i w_i,$$

a lower bound on $\log p(x)$ that tightens as $K$ grows (Burda, Grosse & Salakhutdinov 2016,
*Importance Weighted Autoencoders*, arXiv:1509.00519).

Discrete latents (score function; models with ``sample`` / ``log_p_layers``):

``vimco``
    Mnih & Rezende 2016, *Variational Inference for Monte Carlo Objectives*,
    arXiv:1602.06725: $\nabla = \sum_j \tilde w_j \nabla \log w_j + \sum_j
    (\hat L - \hat L_{-j}) \nabla \log q(h_j|x)$, where $\hat L_{-j}$ replaces $\log w_j$ by
    the mean of the others' $\log w_i$ (``mean="geometric"``, the paper's form) or $w_j$ by
    the mean of the others' $w_i$ (``mean="arithmetic"``). Needs $K \ge 2$.
``nvil_multisample``
    NVIL's baselines $b(x) + c$ and normalization on the single signal $\hat L$ shared by
    all $K$ samples (the VIMCO paper's comparison); with every component off it is the
    naive multi-sample score-function gradient.
``rws``
    reweighted wake-sleep (Bornschein & Bengio 2015, arXiv:1406.2751), wake updates only:
    $\sum_j \tilde w_j \nabla_\theta \log p(x, h_j)$ and $\sum_j \tilde w_j \nabla_\phi \log
    q(h_j|x)$. The first is the IWAE gradient for $\theta$; the second is a self-normalized
    estimate of $-\nabla_\phi \mathrm{KL}(p(h|x) \| q(h|x))$, biased for finite $K$.

Continuous latents (reparameterized; models with ``encode(x)`` (the distribution $q$),
``decode(z)`` and ``prior()``, such as :class:`vitools.models.GaussianVAE`):

``iwae``
    the reparameterized gradient of $\mathcal{L}_K$.
``stl``
    *sticking the landing* (Roeder, Wu & Duvenaud 2017, arXiv:1703.09194): $\log q$ inside
    $w_j$ with its parameters held fixed. Unbiased at $K = 1$, **biased** for $K > 1$
    (Tucker et al. 2018, arXiv:1810.04152).
``dreg``
    doubly reparameterized gradients (Tucker, Lawson, Gu & Maddison 2018,
    arXiv:1810.04152): $\nabla_\phi = \sum_j \tilde w_j^2\, \partial_{z_j} \log w_j\,
    \partial_\phi z_j$ with $\log q$'s parameters held fixed; unbiased for $\nabla_\phi
    \mathcal{L}_K$, with an SNR that grows with $K$. $\theta$ gets the IWAE gradient.

Shapes: ``log_w`` is ``[K, N]``; every surrogate is ``[N]``.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as D

from .. import checks
from ..models.sbn import iwae_bound
from . import register
from .amortized import ModelEstimator
from .base import score_box
from .nvil import NVIL

MEANS = {"geometric", "arithmetic"}


def leave_one_out_bounds(log_w: torch.Tensor, mean: str = "geometric") -> torch.Tensor:
    r"""$\hat L_{-j}$: the bound with sample $j$'s weight replaced by the others' mean, ``[K, N]``.

    ``geometric``: $\log w_j \to \frac{1}{K-1}\sum_{i \ne j} \log w_i$;
    ``arithmetic``: $w_j \to \frac{1}{K-1}\sum_{i \ne j} w_i$. Computed for all $j$ at once
    from a ``[K, K, N]`` table whose diagonal holds the replacements.
    """
    checks.choice("mean", mean, MEANS)
    k = checks.count("K", log_w.shape[0], minimum=2)
    log_w = log_w.detach()
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)[:, :, None]        # [K, K, 1]
    if mean == "geometric":
        replacement = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)              # [K, N]
    else:
        others = torch.where(eye, torch.full_like(log_w[None], -math.inf), log_w[None])
        replacement = torch.logsumexp(others, 1) - math.log(k - 1)                # [K, N]
    table = torch.where(eye, replacement[:, None, :], log_w[None])               # [j, i, N]
    return torch.logsumexp(table, 1) - math.log(k)


def _discrete_log_weights(model, x, k):
    """``(log_w [K, N], log_p [K, N], log_q [K, N])`` for ``k`` draws from ``q``."""
    hs, log_q = model.sample(x, k)
    log_p, log_q = sum(model.log_p_layers(x, hs)), sum(log_q)
    return log_p - log_q, log_p, log_q


@register
class VIMCO(ModelEstimator):
    """VIMCO's leave-one-out per-sample learning signals for the $K$-sample bound."""

    name = "vimco"

    def __init__(self, mean: str = "geometric"):
        checks.choice("mean", mean, MEANS)
        super().__init__(mean=mean)
        self.mean = mean

    @property
    def min_samples(self) -> int:
        return 2

    def _loss(self, model, x, k, update):
        log_w, _, log_q = _discrete_log_weights(model, x, k)
        bound = iwae_bound(log_w)                                         # [N]
        signal = bound.detach()[None] - leave_one_out_bounds(log_w, self.mean)
        return bound + (signal * score_box(log_q)).sum(0)


@register
class NVILMultiSample(NVIL):
    r"""NVIL's baselines and normalization on the $K$-sample bound's single learning signal.

    With ``normalize`` the whole inference-network gradient is divided by
    $\max(1, \hat\sigma)$ (score and pathwise parts alike), so the target is
    $(\nabla_\theta \mathcal{L}_K, \nabla_\phi \mathcal{L}_K / \max(1, \hat\sigma))$."""

    name = "nvil_multisample"

    def __init__(self, constant_baseline: bool = True, input_baseline: bool = True,
                 normalize: bool = True, decay: float = 0.8, hidden: int = 100):
        super().__init__(constant_baseline=constant_baseline, input_baseline=input_baseline,
                         normalize=normalize, local_signals=False, decay=decay, hidden=hidden)
        del self.options["local_signals"]

    def terms(self, model, x, k):
        log_w, log_p, log_q = _discrete_log_weights(model, x, k)
        bound = iwae_bound(log_w)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        # grad of the bound = sum_j w_j grad log p_j (theta) - sum_j w_j grad log q_j (phi)
        # + the score terms; normalization rescales both phi parts.
        return (bound, (weights * log_p).sum(0), -(weights * log_q).sum(0), bound[None, None],
                log_q.sum(0)[None, None])


@register
class ReweightedWakeSleep(ModelEstimator):
    """Reweighted wake-sleep, wake phase for both networks (biased for $\\phi$ at finite $K$)."""

    name = "rws"
    unbiased = False

    def _loss(self, model, x, k, update):
        log_w, log_p, log_q = _discrete_log_weights(model, x, k)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        moved = (log_p - log_p.detach()) + (log_q - log_q.detach())
        return iwae_bound(log_w).detach() + (weights * moved).sum(0)


# ------------------------------------------------------------------- continuous latents
def _frozen(dist: D.Distribution) -> D.Distribution:
    """The same distribution with its parameters detached (``log_prob`` still differentiates
    in the value): Normal, or Independent(Normal)."""
    if isinstance(dist, D.Independent):
        return D.Independent(_frozen(dist.base_dist), dist.reinterpreted_batch_ndims)
    if isinstance(dist, D.Normal):
        return D.Normal(dist.loc.detach(), dist.scale.detach())
    raise ValueError(f"dist must be Normal or Independent(Normal) for stl/dreg, got {type(dist).__name__}")


def _unchecked(model, name):
    """``model._name`` when the model has an unchecked variant (vmap cannot run checks)."""
    return getattr(model, "_" + name, None) or getattr(model, name)


class _Reparameterized(ModelEstimator):
    latents = "continuous"

    def _draw(self, model, x, k):
        q = _unchecked(model, "encode")(x)                                # batch [N], event [d]
        base = q.base_dist if isinstance(q, D.Independent) else q
        if isinstance(base, D.Normal):       # explicit location-scale draw: vmap-friendly
            z = base.loc + base.scale * torch.randn_like(base.loc.expand(k, *base.loc.shape))
        else:
            z = q.rsample((k,))                                           # [K, N, d]
        return q, z, self._log_joint(model, x, z)                         # log p: [K, N]

    @staticmethod
    def _log_joint(model, x, z):
        return _unchecked(model, "decode")(z).log_prob(x) + model.prior().log_prob(z)


@register
class IWAE(_Reparameterized):
    """The reparameterized gradient of the $K$-sample bound (``k=1``: the VAE's ELBO gradient)."""

    name = "iwae"

    def _loss(self, model, x, k, update):
        q, z, log_p = self._draw(model, x, k)
        return iwae_bound(log_p - q.log_prob(z))


@register
class STL(_Reparameterized):
    """Sticking the landing: $\\log q$ with frozen parameters inside the weights."""

    name = "stl"
    unbiased = False            # unbiased only at K = 1

    def _loss(self, model, x, k, update):
        q, z, log_p = self._draw(model, x, k)
        bound = iwae_bound(log_p - q.log_prob(z))
        stl = iwae_bound(log_p - _frozen(q).log_prob(z))
        return bound.detach() + (stl - stl.detach())


@register
class DReG(_Reparameterized):
    """Doubly reparameterized gradient: squared normalized weights on the frozen-q path."""

    name = "dreg"

    def _loss(self, model, x, k, update):
        q, z, log_p = self._draw(model, x, k)
        log_w = log_p - q.log_prob(z)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        log_p_theta = self._log_joint(model, x, z.detach())                      # theta path only
        log_w_phi = log_p - _frozen(q).log_prob(z)                        # phi path through z
        # theta: sum_j w_j grad log p;  phi: sum_j w_j^2 d log w_j / dz_j dz_j/dphi. The last
        # term cancels the theta-gradient that log_w_phi would otherwise contribute.
        moved = weights * log_p_theta + weights**2 * log_w_phi - weights**2 * log_p_theta
        moved = moved.sum(0)
        return iwae_bound(log_w).detach() + (moved - moved.detach())
