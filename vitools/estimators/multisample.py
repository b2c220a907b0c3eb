r"""Estimators for the $K$-sample importance-weighted bound.

$$\mathcal{L}_K = \mathbb{E}_{h_{1:K} \sim q}\Big[\log \frac1K \sum_{j=1}^K w_j\Big], \qquad
w_j = \frac{p_\theta(x, h_j)}{q_\phi(h_j \mid x)}, \qquad \tilde w_j = w_j / \textstyle\sum_i w_i,$$

a lower bound on $\log p(x)$ that tightens as $K$ grows (Burda, Grosse & Salakhutdinov 2016,
*Importance Weighted Autoencoders*, arXiv:1509.00519).

Discrete latents (score function; ``sbn.on(x)``, ``cat_vae.on(x)``):

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

Continuous latents (reparameterized; ``vae.on(x)``; ``iwae`` also on ``vrnn.on(x, mask)``):

``iwae``
    the reparameterized gradient of $\mathcal{L}_K$; on a sequence model, $K$ particles that are
    never resampled.
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

from .. import checks, smc
from ..models.sbn import iwae_bound
from ..targets import ReparamTarget, SequenceTarget
from .base import Estimate, Estimator, Option, score_box
from .nvil import NVIL, draw_log_densities, why_not_generative
from .pathwise import reparameterized_draw

MEANS = ("geometric", "arithmetic")


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


def _log_weights(target, k):
    """``(log_w [K, N], log_p [K, N], log_q [K, N])`` for ``k`` draws from ``q``."""
    _, log_p, log_q = draw_log_densities(target, k)
    log_p, log_q = sum(log_p), sum(log_q)
    return log_p - log_q, log_p, log_q


class VIMCO(Estimator):
    """VIMCO's leave-one-out per-sample learning signals for the $K$-sample bound."""

    name = "vimco"
    OPTIONS = {"mean": Option("geometric", "how the left-out weight is replaced", kind="choice", choices=MEANS)}

    min_k = 2

    def _why_not(self, target):
        return why_not_generative(target)

    def estimate(self, target, k):
        log_w, _, log_q = _log_weights(target, k)
        bound = iwae_bound(log_w)                                         # [N]
        signal = bound.detach()[None] - leave_one_out_bounds(log_w, self.options["mean"])
        return Estimate(bound + (signal * score_box(log_q)).sum(0))


class NVILMultiSample(NVIL):
    r"""NVIL's baselines and normalization on the $K$-sample bound's single learning signal.

    With ``normalize`` the whole inference-network gradient is divided by
    $\max(1, \hat\sigma)$ (score and pathwise parts alike), so the target is
    $(\nabla_\theta \mathcal{L}_K, \nabla_\phi \mathcal{L}_K / \max(1, \hat\sigma))$."""

    name = "nvil_multisample"
    OPTIONS = {key: spec for key, spec in NVIL.OPTIONS.items() if key != "local_signals"}

    def groups(self, target) -> int:
        return 1

    def terms(self, target, k):
        log_w, log_p, log_q = _log_weights(target, k)
        bound = iwae_bound(log_w)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        # grad of the bound = sum_j w_j grad log p_j (theta) - sum_j w_j grad log q_j (phi)
        # + the score terms; normalization rescales both phi parts.
        return (bound, (weights * log_p).sum(0), -(weights * log_q).sum(0), bound[None, None],
                log_q.sum(0)[None, None])


class ReweightedWakeSleep(Estimator):
    """Reweighted wake-sleep, wake phase for both networks (biased for $\\phi$ at finite $K$)."""

    name = "rws"
    unbiased = False

    def _why_not(self, target):
        return why_not_generative(target)

    def estimate(self, target, k):
        log_w, log_p, log_q = _log_weights(target, k)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        moved = (log_p - log_p.detach()) + (log_q - log_q.detach())
        return Estimate(iwae_bound(log_w).detach() + (weights * moved).sum(0))


# ------------------------------------------------------------------- continuous latents
def _frozen(dist: D.Distribution) -> D.Distribution:
    """The same distribution with its parameters detached (``log_prob`` still differentiates
    in the value): Normal, or Independent(Normal)."""
    if isinstance(dist, D.Independent):
        return D.Independent(_frozen(dist.base_dist), dist.reinterpreted_batch_ndims)
    if isinstance(dist, D.Normal):
        return D.Normal(dist.loc.detach(), dist.scale.detach())
    raise ValueError(f"dist must be Normal or Independent(Normal) for stl/dreg, got {type(dist).__name__}")


class _Reparameterized(Estimator):
    def _why_not(self, target):
        if isinstance(target, ReparamTarget):
            return None
        return (f"it needs reparameterizable continuous latents (vae.on(x)), and a {target.kind} target "
                + ("has discrete ones: use vimco or nvil" if target.kind == "layered" else "has none"))

    @staticmethod
    def _draw(target, k):
        q = target.q()                                                    # batch [N], event [d]
        z = reparameterized_draw(q, k)                                    # [K, N, d]
        return q, z, target.log_joint(z)                                  # log p: [K, N]


class IWAE(_Reparameterized):
    """The reparameterized gradient of the $K$-sample bound (``k=1``: the VAE's ELBO gradient)."""

    name = "iwae"

    def _why_not(self, target):
        return None if isinstance(target, SequenceTarget) else super()._why_not(target)

    def estimate(self, target, k):
        if isinstance(target, SequenceTarget):
            result = smc.particle_filter(target.model(), target.x, k, target.mask, resampling="never")
            return Estimate(result.surrogate)
        q, z, log_p = self._draw(target, k)
        return Estimate(iwae_bound(log_p - q.log_prob(z)))


class STL(_Reparameterized):
    """Sticking the landing: $\\log q$ with frozen parameters inside the weights."""

    name = "stl"
    unbiased = False            # unbiased only at K = 1

    def estimate(self, target, k):
        q, z, log_p = self._draw(target, k)
        bound = iwae_bound(log_p - q.log_prob(z))
        stl = iwae_bound(log_p - _frozen(q).log_prob(z))
        return Estimate(bound.detach() + (stl - stl.detach()))


class DReG(_Reparameterized):
    """Doubly reparameterized gradient: squared normalized weights on the frozen-q path."""

    name = "dreg"

    def estimate(self, target, k):
        q, z, log_p = self._draw(target, k)
        log_w = log_p - q.log_prob(z)
        weights = torch.softmax(log_w.detach(), 0)                        # [K, N]
        log_p_theta = target.log_joint(z.detach())                        # theta path only
        log_w_phi = log_p - _frozen(q).log_prob(z)                        # phi path through z
        # theta: sum_j w_j grad log p;  phi: sum_j w_j^2 d log w_j / dz_j dz_j/dphi. The last
        # term cancels the theta-gradient that log_w_phi would otherwise contribute.
        moved = weights * log_p_theta + weights**2 * log_w_phi - weights**2 * log_p_theta
        moved = moved.sum(0)
        return Estimate(iwae_bound(log_w).detach() + (moved - moved.detach()))


class FIVO(Estimator):
    """FIVO (Maddison et al. 2017, arXiv:1705.09279): the bound of a particle filter that resamples,
    on a sequence model (``vrnn.on(x, mask)``); ``k`` particles. Biased for the gradient of
    $\\mathbb{E}[\\log\\hat Z]$ unless ``score_terms`` (see :mod:`vitools.smc`)."""

    name = "fivo"
    unbiased = False
    OPTIONS = {"resampling": Option("always", "when to resample", kind="choice", choices=("always", "ess")),
               "scheme": Option("multinomial", "resampling scheme", kind="choice", choices=smc.SCHEMES),
               "score_terms": Option(False, "keep the resampling indices' score terms (unbiased)", kind="bool")}

    def __init__(self, **options):
        super().__init__(**options)
        if self.options["score_terms"] and self.options["scheme"] != "multinomial":
            raise ValueError(f"scheme must be 'multinomial' with score_terms=True, got {self.options['scheme']!r}")
        self.unbiased = self.options["score_terms"]

    def _why_not(self, target):
        if isinstance(target, SequenceTarget):
            return None
        return f"it is a particle-filter bound for sequence models (vrnn.on(x, mask)), not a {target.kind} target"

    def estimate(self, target, k):
        o = self.options
        result = smc.particle_filter(target.model(), target.x, k, target.mask, resampling=o["resampling"],
                                     scheme=o["scheme"], score_terms=o["score_terms"])
        return Estimate(result.surrogate)
