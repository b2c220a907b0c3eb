r"""A VAE with Gamma latents on binary data, trainable through three gradients of its ELBO.

The application of implicit reparameterization (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498)
that runs on a CPU: prior $p(z) = \prod_i \mathrm{Gamma}(z_i; a_0, b_0)$, decoder
$p_\theta(x \mid z) = \prod_j \mathrm{Bernoulli}(x_j; \sigma(\ell_j(z)))$ (an MLP $\ell$), encoder
$q_\phi(z \mid x) = \prod_i \mathrm{Gamma}(z_i; \alpha_i(x), \beta_i(x))$. The ELBO
$\mathcal L = \mathbb E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p)$ has its KL in closed form;
the three ways of getting $\nabla_\phi \mathbb E_q[\log p(x \mid z)]$ (``METHODS``) are

* ``"implicit"``: ``vt.implicit.Gamma(alpha, beta).rsample``, $dz/d\alpha = -\partial_\alpha
  P(\alpha, \beta z) / (\beta\,q(z))$ (implicit reparameterization; $z = \tilde z/\beta$ for the rate);
* ``"rsvi"``: the rejection-sampler gradient of Naesseth et al. 2017 (arXiv:1610.05683) through
  Marsaglia-Tsang with shape augmentation ``boost`` (:func:`vitools.implicit.alternatives.rsvi_gamma`,
  the sampler of the ``rsvi`` estimator): the pathwise part plus $f(z)\,\nabla\log\pi(\epsilon)$;
* ``"score"``: the score function $f(z)\,\nabla_\phi\log q(z \mid x)$ with the leave-one-out baseline
  over the ``k`` draws (needs ``k >= 2``).

The decoder's gradient is pathwise in every method (it does not depend on how $z$ was drawn).
Every surrogate has the ``k``-draw ELBO estimate as its value. Shapes: ``x`` ``[N, D]``,
``z`` ``[K, N, d]``, per-example bounds ``[N]``, ``log_weights`` ``[K, N]``. Example::

    >>> vae = GammaVAE(784, hidden=200, latent_dim=20, seed=0)
    >>> vae.surrogate(x, k=2, method="implicit").mean().backward()    # ascend it
    >>> vt.models.sbn.evaluate(vae, x, k=1000)                        # held-out L_1000

``vitools.implicit`` is imported when a distribution is built (importing a model loads no sampler
package).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..targets import ReparamTarget
from .vae import ACTIVATIONS, _mlp

__all__ = ["GammaVAE", "GammaVAETarget", "METHODS"]

METHODS = ("implicit", "rsvi", "score")
MIN_SHAPE = 1e-3        # alpha_phi(x) = softplus(.) + MIN_SHAPE
MIN_RATE = 1e-3         # beta_phi(x) = softplus(.) + MIN_RATE


def _score_box(log_prob: torch.Tensor) -> torch.Tensor:
    """Zero in value, the gradient of ``log_prob`` in gradient."""
    return log_prob - log_prob.detach()


class GammaVAE(nn.Module):
    """Bernoulli-decoder VAE with Gamma(``prior_shape``, ``prior_rate``) latents and a Gamma encoder.

    ``hidden`` is one width or a sequence of widths (the decoder mirrors the encoder); parameters
    live on ``device`` (default :func:`vitools.config.device`); ``seed`` fixes the initialisation.
    """

    def __init__(self, input_dim: int = 784, hidden: int | Sequence[int] = 200, latent_dim: int = 20,
                 prior_shape: float = 1.0, prior_rate: float = 1.0, activation: str = "tanh",
                 seed: int | None = None, device=None):
        super().__init__()
        self.input_dim = checks.count("input_dim", input_dim)
        self.latent_dim = checks.count("latent_dim", latent_dim)
        self.hidden = checks.widths("hidden", hidden)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        self.prior_shape = float(checks.positive("prior_shape", prior_shape))
        self.prior_rate = float(checks.positive("prior_rate", prior_rate))
        with config.seeded(seed):
            self.encoder = _mlp([self.input_dim, *self.hidden, 2 * self.latent_dim], activation)
            self.decoder = _mlp([self.latent_dim, *self.hidden[::-1], self.input_dim], activation)
        self.register_buffer("_zero", torch.zeros(self.latent_dim))
        self.to(config.device(device))

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden={self.hidden}, latent_dim={self.latent_dim}, "
                f"prior=Gamma({self.prior_shape:g}, {self.prior_rate:g})")

    # ---------------------------------------------------------------- distributions
    def prior(self) -> D.Distribution:
        """$p(z)$: batch shape ``[]``, event shape ``[d]``."""
        from ..implicit import Gamma

        return D.Independent(Gamma(self._zero + self.prior_shape, self._zero + self.prior_rate), 1)

    def encode(self, x: torch.Tensor) -> D.Distribution:
        """$q_\\phi(z \\mid x)$ for ``x`` ``[N, D]``: batch ``[N]``, event ``[d]``, with implicit ``rsample``."""
        return self._encode(self._check_x(x))

    def decode(self, z: torch.Tensor) -> D.Distribution:
        """$p_\\theta(x \\mid z)$ for positive ``z`` ``[..., d]``: batch ``[...]``, event ``[D]``."""
        checks.shape("z", z, (self.latent_dim,), "latent_dim")
        if not (checks.finite("z", z.detach()) > 0).all():
            raise ValueError(f"z must be positive (Gamma latents), got {z.detach().min().item()!r}")
        return self._decode(z)

    def on(self, x: torch.Tensor) -> "GammaVAETarget":
        """The bound on ``x`` as a target for reparameterized estimators (``pathwise``, ``iwae``)."""
        return GammaVAETarget(self, self._check_x(x))

    def example_target(self) -> "GammaVAETarget":
        return self.on(torch.zeros(2, self.input_dim, device=self._zero.device, dtype=self._zero.dtype))

    def _params(self, x):
        raw_shape, raw_rate = self.encoder(x).chunk(2, dim=-1)        # [N, d] each
        return F.softplus(raw_shape) + MIN_SHAPE, F.softplus(raw_rate) + MIN_RATE

    def _encode(self, x):
        from ..implicit import Gamma

        return D.Independent(Gamma(*self._params(x)), 1)

    def _decode(self, z):
        return D.Independent(D.Bernoulli(logits=self.decoder(z), validate_args=False), 1)

    # ---------------------------------------------------------------- bounds
    def kl(self, x: torch.Tensor) -> torch.Tensor:
        """$\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z))$ in closed form: ``[N]``."""
        return D.kl_divergence(self._encode(self._check_x(x)), self.prior())

    @torch.no_grad()
    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """$\\log p(x, z_k) - \\log q(z_k \\mid x)$ for ``k`` draws $z_k \\sim q$ (no gradient): ``[k, N]``."""
        k = checks.count("k", k)
        x = self._check_x(x)
        q = self._encode(x)
        z = q.sample((k,))
        return self._decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """$\\frac1k\\sum_k \\log p(x \\mid z_k) - \\mathrm{KL}(q \\,\\|\\, p)$ per example: ``[N]``."""
        return self.surrogate(x, k, "score" if k > 1 else "implicit")

    def surrogate(self, x: torch.Tensor, k: int = 1, method: str = "implicit", boost: int = 1) -> torch.Tensor:
        """The ``k``-draw ELBO estimate per example (``[N]``) whose gradient is ``method``'s estimate of
        the ELBO's gradient (see the module docstring); ``boost``: RSVI's shape augmentation B."""
        checks.choice("method", method, METHODS)
        k = checks.count("k", k, minimum=2 if method == "score" else 1)
        boost = checks.count("boost", boost, minimum=0)
        x = self._check_x(x)
        alpha, rate = self._params(x)
        from ..implicit import Gamma
        q = D.Independent(Gamma(alpha, rate), 1)
        kl = D.kl_divergence(q, self.prior())
        if method == "implicit":
            return self._decode(q.rsample((k,))).log_prob(x).mean(0) - kl
        if method == "rsvi":
            from ..implicit.alternatives import rsvi_gamma

            z_std, log_pi = rsvi_gamma(alpha, (k,), boost)               # [k, N, d] each
            f = self._decode((z_std / rate).clamp_min(torch.finfo(x.dtype).tiny)).log_prob(x)     # [k, N]
            return (f + f.detach() * _score_box(log_pi.sum(-1))).mean(0) - kl
        z = q.sample((k,))
        f = self._decode(z).log_prob(x)                                  # [k, N]
        baseline = (f.sum(0, keepdim=True) - f).detach() / (k - 1)       # leave-one-out
        return (f + (f.detach() - baseline) * _score_box(q.log_prob(z))).mean(0) - kl

    # ---------------------------------------------------------------- pictures and checks
    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` images from the model, ``[n, D]``: pixel probabilities (``mean``) or binary draws."""
        n = checks.count("n", n)
        p = self._decode(self.prior().sample((n,)))
        return p.mean if mean else p.sample()

    def _check_x(self, x) -> torch.Tensor:
        x = checks.data_matrix("x", x, self.input_dim)
        return x.to(device=self._zero.device, dtype=self._zero.dtype)


class GammaVAETarget(ReparamTarget):
    r"""A :class:`GammaVAE` on a checked batch ``x``: $q(z \mid x)$ (implicit ``rsample``) and
    $\log p(x, z)$, for the ``pathwise`` and multi-sample estimators."""

    def q(self):
        return self._model._encode(self.x)

    def log_joint(self, z):
        return self._model._decode(z).log_prob(self.x) + self._model.prior().log_prob(z)
