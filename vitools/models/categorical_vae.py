r"""A VAE with categorical latents, trained through the Gumbel-Softmax / Concrete relaxation.

Jang, Gu & Poole 2017, *Categorical Reparameterization with Gumbel-Softmax* (arXiv:1611.01144);
Maddison, Mnih & Teh 2017, *The Concrete Distribution* (arXiv:1611.00712).

Model: $L$ independent categorical latents $h_l \in \{1..C\}$ (one-hot ``[L, C]``), a uniform
prior $p(h_l = c) = 1/C$, an MLP decoder $p_\theta(x \mid h) = \prod_j \mathrm{Bernoulli}(x_j;
\sigma(\ell_j(h)))$ on the flattened one-hot code, and an MLP encoder giving normalised logits
$\log q_\phi(h_l = c \mid x)$. The objective that matters is the *discrete* ELBO

$$\mathcal L = \mathbb E_{q(h\mid x)}[\log p(x \mid h)] - \mathrm{KL}(q(h \mid x) \,\|\, p(h)),\qquad
\mathrm{KL} = \sum_l \sum_c q_{lc}(\log q_{lc} + \log C)$$

(exact), estimated without bias by :meth:`CategoricalVAE.discrete_elbo` from hard samples;
:meth:`CategoricalVAE.exact_bounds` enumerates all $C^L$ codes of a tiny model.

Training objectives (:meth:`CategoricalVAE.objective`):

* ``"gumbel_softmax"``: the decoder sees the relaxed code $\tilde h = \exp(y)$, $y \sim$
  :class:`~vitools.relaxations.ExpConcrete` $(\log q, \tau)$, and the KL term is chosen
  explicitly with ``kl=``:

  - ``"categorical"`` (Jang et al.): $\log p(x \mid \tilde h) - \mathrm{KL}(q \,\|\, p)$, the exact
    discrete KL beside a relaxed reconstruction term;
  - ``"concrete"`` (Maddison et al., Sec. 3.3 / App. C): $\log p(x \mid \tilde h) + \log p_{\tau_p}(y)
    - \log q_\tau(y)$, a single-sample relaxed KL between ExpConcrete densities in log space, the
    prior being ExpConcrete with uniform logits at ``prior_temperature`` $\tau_p$ (default $\tau$).
    This is an ELBO of the *relaxed* model, not a bound on the discrete one.

* ``"straight_through"``: forward the hard code $h = \mathrm{onehot}(\arg\max y)$ (an exact sample,
  Gumbel-max), backward through $\tilde h$; the value is the discrete ELBO estimate.
* ``"gapped_straight_through"`` (GST; Fan et al. 2022, arXiv:2206.07235, whose main experiment is
  this categorical MNIST VAE): forward the same exact hard code, backward through
  $\mathrm{softmax}(\tilde\ell/\tau)$ at the deterministic gapped logits $\tilde\ell$ of
  :func:`vitools.relaxations.gapped_logits` (no Gumbel noise in the backward pass; ``gap``
  $\kappa$, default 1); the value is the discrete ELBO estimate.
* ``"igr"`` (Potapczynski et al. 2020, arXiv:1912.09588): the decoder sees the IGR point
  :func:`vitools.relaxations.igr_simplex` (Gaussian noise of scale ``sigma``, default 1.7,
  through softmax++ with $\delta = 1$, means $\ell_c - \ell_C$), beside the exact categorical KL.
  The paper learns the Gaussian's scale and uses a Gaussian KL; here the encoder's categorical
  stays the variational family, so IGR is one more relaxation of the same discrete ELBO.

All four are biased for $\nabla\mathcal L$.

Shapes: ``x`` ``[N, D]`` in [0, 1]; encoder logits ``[N, L, C]``; codes ``[k, N, L, C]``;
per-example bounds ``[N]``. Example::

    >>> vae = CategoricalVAE(input_dim=784, num_latents=20, num_classes=10, seed=0)
    >>> loss = -vae.objective(x, "gumbel_softmax", temperature=0.5).mean()
    >>> vae.discrete_elbo(x_test, k=10).shape
    torch.Size([N])
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..problems import enumerate_states
from ..relaxations import ExpConcrete, gapped_logits, igr_simplex
from ..targets import Layer, LayeredTarget
from .vae import ACTIVATIONS, _mlp

METHODS = ("gumbel_softmax", "straight_through", "gapped_straight_through", "igr")
KL_CHOICES = ("categorical", "concrete")
MAX_STATES = 2**14      # codes enumerated by exact_bounds


@dataclasses.dataclass
class DiscreteBounds:
    """Exact quantities of a tiny :class:`CategoricalVAE` by enumeration: ``elbo`` and ``log_px`` ``[N]``."""

    elbo: torch.Tensor
    log_px: torch.Tensor


class CategoricalVAE(nn.Module):
    """Bernoulli-decoder VAE with ``num_latents`` categorical latents of ``num_classes`` classes.

    ``hidden`` is one width or a sequence of widths (encoder; the decoder mirrors them).
    Parameters live on ``device`` (default :func:`vitools.config.device`); ``seed`` fixes
    the initialisation. ``.double()`` gives float64 (the enumeration tests use it).
    """

    def __init__(self, input_dim: int = 784, hidden: int | Sequence[int] = (256,), num_latents: int = 20,
                 num_classes: int = 10, activation: str = "relu", seed: int | None = None, device=None):
        super().__init__()
        self.input_dim = checks.count("input_dim", input_dim)
        self.num_latents = checks.count("num_latents", num_latents)
        self.num_classes = checks.count("num_classes", num_classes, minimum=2)
        self.hidden = checks.widths("hidden", hidden)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        code = self.num_latents * self.num_classes
        with config.seeded(seed):
            self.encoder = _mlp([self.input_dim, *self.hidden, code], activation)
            self.decoder = _mlp([code, *self.hidden[::-1], self.input_dim], activation)
        self.register_buffer("_zero", torch.zeros(()))
        self.to(config.device(device))

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden={self.hidden}, num_latents={self.num_latents}, "
                f"num_classes={self.num_classes}")

    # ---------------------------------------------------------------- distributions
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""Normalised logits $\log q_\phi(h_l = c \mid x)$: ``[N, L, C]``."""
        return self._encode(self._check_x(x))

    def decode(self, h: torch.Tensor) -> D.Distribution:
        """$p_\\theta(x \\mid h)$ for codes ``h`` ``[..., L, C]`` (one-hot or relaxed): batch ``[...]``, event ``[D]``."""
        checks.shape("h", h, (self.num_latents, self.num_classes), "num_latents, num_classes")
        checks.probability("h", h.detach())
        return self._decode(h)

    def _encode(self, x):
        logits = self.encoder(x).view(*x.shape[:-1], self.num_latents, self.num_classes)
        return torch.log_softmax(logits, -1)

    def _decode(self, h):
        logits = self.decoder(h.flatten(-2))                                      # [..., D]
        return D.Independent(D.Bernoulli(logits=logits, validate_args=False), 1)

    def kl(self, log_q: torch.Tensor) -> torch.Tensor:
        r"""Exact $\mathrm{KL}(q \,\|\, \mathrm{Uniform})$ summed over latents, for logits ``[..., L, C]`` -> ``[...]``."""
        return (log_q.exp() * (log_q + math.log(self.num_classes))).sum((-2, -1))

    # ---------------------------------------------------------------- targets
    def on(self, x: torch.Tensor) -> "CategoricalVAETarget":
        """The discrete ELBO on the batch ``x`` ``[N, D]`` as a target for any discrete estimator:
        ``vt.estimators.get("rebar")(cat_vae.on(x), k)``."""
        return CategoricalVAETarget(self, self._check_x(x))

    def example_target(self) -> "CategoricalVAETarget":
        """A target on two blank images (what ``est.applies_to(cat_vae)`` reads)."""
        return self.on(torch.zeros(2, self.input_dim, device=self._zero.device, dtype=self._zero.dtype))

    # ---------------------------------------------------------------- objectives
    def discrete_elbo(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        r"""Unbiased estimate of the discrete ELBO per example: $\frac1k\sum_k \log p(x \mid h_k) - \mathrm{KL}$, ``[N]``.

        $h_k \sim q(h \mid x)$ exactly (hard one-hot codes); the KL to the uniform prior is exact.
        Differentiable in the decoder only (the codes are sampled without a path to $\phi$).
        """
        k = checks.count("k", k)
        x = self._check_x(x)
        log_q = self._encode(x)                                                    # [N, L, C]
        h = D.OneHotCategorical(logits=log_q.detach()).sample((k,))                # [k, N, L, C]
        return self._decode(h).log_prob(x).mean(0) - self.kl(log_q)

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        r"""$\log p(x, h_j) - \log q(h_j \mid x)$ for ``k`` exact draws $h_j \sim q$: ``[k, N]``, so that
        :func:`vitools.models.sbn.evaluate` (``k >= 1000``: an importance-sampled $\log p(x)$) scores a
        categorical VAE by the same tight estimate as any other model."""
        k = checks.count("k", k)
        x = self._check_x(x)
        log_q = self._encode(x)                                                    # [N, L, C]
        h = D.OneHotCategorical(logits=log_q.detach()).sample((k,))                # [k, N, L, C]
        log_prior = -self.num_latents * math.log(self.num_classes)
        return self._decode(h).log_prob(x) + log_prior - (h * log_q).sum((-2, -1))

    def objective(self, x: torch.Tensor, method: str = "gumbel_softmax", temperature: float = 1.0, k: int = 1,
                  kl: str = "categorical", prior_temperature: float | None = None, gap: float | None = None,
                  sigma: float | None = None) -> torch.Tensor:
        """A relaxed training objective per example, ``[N]`` (maximise its mean; see the module docstring).

        ``method``: one of ``METHODS``; ``kl`` (Gumbel-Softmax only): ``"categorical"`` or
        ``"concrete"``; ``prior_temperature`` (``kl="concrete"`` only) defaults to ``temperature``;
        ``gap`` (GST only, default 1) and ``sigma`` (IGR only, default 1.7). Averaged over ``k``
        relaxed samples.
        """
        checks.choice("method", method, METHODS)
        checks.choice("kl", kl, KL_CHOICES)
        temperature = float(checks.positive("temperature", temperature))
        k = checks.count("k", k)
        if method != "gumbel_softmax" and kl != "categorical":
            raise ValueError(f"kl must be 'categorical' for method={method!r} (only Gumbel-Softmax codes have a "
                             f"Concrete density), got {kl!r}")
        if prior_temperature is not None and kl != "concrete":
            raise ValueError(f"prior_temperature applies to kl='concrete' only, got {prior_temperature!r} with kl={kl!r}")
        for name, value, owner in (("gap", gap, "gapped_straight_through"), ("sigma", sigma, "igr")):
            if value is not None and method != owner:
                raise ValueError(f"{name} applies to method={owner!r} only, got {name}={value!r} with method={method!r}")
        prior_temperature = temperature if prior_temperature is None else float(
            checks.positive("prior_temperature", prior_temperature))
        x = self._check_x(x)
        log_q = self._encode(x)                                                    # [N, L, C]
        if method == "igr":
            sigma = 1.7 if sigma is None else float(checks.positive("sigma", sigma))
            soft = igr_simplex(log_q, k, temperature, sigma, 1.0)                  # [k, N, L, C]
            return self._decode(soft).log_prob(x).mean(0) - self.kl(log_q)
        q = ExpConcrete(log_q, temperature)
        y = q.rsample((k,))                                                        # [k, N, L, C] log-simplex
        soft = y.exp()
        if method in ("straight_through", "gapped_straight_through"):
            hard = F.one_hot(y.argmax(-1), self.num_classes).to(soft.dtype)        # Gumbel-max: exact sample
            if method == "gapped_straight_through":
                gap = 1.0 if gap is None else float(checks.positive("gap", gap))
                soft = torch.softmax(gapped_logits(log_q.expand_as(hard), hard, gap, categorical=True) / temperature, -1)
            return self._decode(hard + soft - soft.detach()).log_prob(x).mean(0) - self.kl(log_q)
        log_lik = self._decode(soft).log_prob(x)                                   # [k, N]
        if kl == "categorical":
            return log_lik.mean(0) - self.kl(log_q)
        prior = ExpConcrete(torch.zeros_like(log_q), prior_temperature)
        log_ratio = (prior.log_prob(y) - q.log_prob(y)).sum(-1)                    # [k, N], summed over L
        return (log_lik + log_ratio).mean(0)

    # ---------------------------------------------------------------- ground truth
    def exact_bounds(self, x: torch.Tensor, max_states: int = MAX_STATES) -> DiscreteBounds:
        r"""Exact ELBO and $\log p(x)$ by enumerating all $C^L$ codes (tiny models): ``[N]`` each.

        Differentiable in every parameter: the gradient of ``elbo`` is the exact ELBO gradient.
        """
        max_states = checks.count("max_states", max_states)
        states = self.num_classes ** self.num_latents
        if states > max_states:
            raise ValueError(f"max_states must be >= num_classes ** num_latents = {states} to enumerate, "
                             f"got {max_states}")
        x = self._check_x(x)
        ref = self._zero
        index = enumerate_states(self.num_latents, self.num_classes, device=ref.device)   # [S, L]
        codes = F.one_hot(index, self.num_classes).to(ref.dtype)                   # [S, L, C]
        log_lik = self._decode(codes[:, None]).log_prob(x)                         # [S, N]
        log_q = self._encode(x)                                                    # [N, L, C]
        log_q_codes = (codes[:, None] * log_q).sum((-2, -1))                       # [S, N]
        elbo = (log_q_codes.exp() * log_lik).sum(0) - self.kl(log_q)
        log_px = torch.logsumexp(log_lik, 0) - self.num_latents * math.log(self.num_classes)
        return DiscreteBounds(elbo, log_px)

    # ---------------------------------------------------------------- pictures
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r"""Pixel probabilities of $p(x \mid h = \mathrm{mode}\ q(h \mid x))$: ``[N, D]``."""
        log_q = self._encode(self._check_x(x))
        return self._decode(F.one_hot(log_q.argmax(-1), self.num_classes).to(log_q.dtype)).mean

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Pixel probabilities of ``n`` codes from the uniform prior: ``[n, D]``."""
        n = checks.count("n", n)
        index = torch.randint(self.num_classes, (n, self.num_latents), device=self._zero.device)
        return self._decode(F.one_hot(index, self.num_classes).to(self._zero.dtype)).mean

    # ---------------------------------------------------------------- checks
    def _check_x(self, x) -> torch.Tensor:
        x = checks.data_matrix("x", x, self.input_dim)
        return x.to(device=self._zero.device, dtype=self._zero.dtype)


class CategoricalVAETarget(LayeredTarget):
    r"""A :class:`CategoricalVAE` on a batch ``x``: one layer of ``L`` categorical variables with
    $\mathbb{E}_q[\log p(x \mid h)] - \mathrm{KL}(q \,\|\, p)$, the KL exact (``exact_term``), so the
    estimators estimate only the reconstruction term's gradient (Rao-Blackwellization)."""

    generative = True
    entropy_term = False

    def __init__(self, model: CategoricalVAE, x: torch.Tensor):
        self._model, self.x, self.context = model, x, x
        self.layers = (Layer("categorical", (model.num_latents, model.num_classes)),)
        self.batch_shape = x.shape[:1]

    def model(self):
        return self._model

    def logits(self, l, below):
        return self._model._encode(self.x)                                        # [N, L, C]

    def signal(self, values, relaxed=False):
        return self._model._decode(values[0]).log_prob(self.x)                     # [k, N]

    def exact_term(self):
        return -self._model.kl(self._model._encode(self.x))

    def log_p_layers(self, hs):
        prior = -self._model.num_latents * math.log(self._model.num_classes)
        return [self.signal(hs) + prior]
