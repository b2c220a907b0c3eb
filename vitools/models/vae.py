r"""The Gaussian VAE with a Bernoulli decoder, and exact bounds for tiny ones by quadrature.

Kingma & Welling 2014, *Auto-Encoding Variational Bayes* (arXiv:1312.6114); Rezende,
Mohamed & Wierstra 2014, *Stochastic Backpropagation and Approximate Inference in Deep
Generative Models* (arXiv:1401.4082); the importance-weighted bound of Burda, Grosse &
Salakhutdinov 2016 (arXiv:1509.00519).

Model: $p(z) = \mathcal N(0, I_d)$, $p_\theta(x \mid z) = \prod_j \mathrm{Bernoulli}(x_j;
\sigma(\ell_j(z)))$ with an MLP decoder $\ell$, and an MLP encoder (amortized inference)
$q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2)$. With
$w = p_\theta(x, z) / q_\phi(z \mid x)$ and $z_{1..K} \sim q_\phi$,

* ELBO $\mathcal L_1 = \mathbb E_q[\log w] = \mathbb E_q[\log p(x\mid z)] - \mathrm{KL}(q \,\|\, p(z))
  = \log p(x) - \mathrm{KL}(q(z\mid x) \,\|\, p(z \mid x))$;
* IWAE bound $\mathcal L_K = \mathbb E[\log \frac1K \sum_k w_k]$, increasing in $K$ towards $\log p(x)$.

Shapes: ``x`` is ``[N, D]`` with values in [0, 1] (binary, or greyscale read as the
Bernoulli cross-entropy); ``z`` is ``[K, N, d]``; per-example bounds are ``[N]``; log
weights are ``[K, N]``. Example::

    >>> vae = GaussianVAE(input_dim=784, hidden=200, latent_dim=2, seed=0)
    >>> vae.elbo(x).shape, vae.iwae_bound(x, k=100).shape, vae.log_weights(x, 5).shape
    (torch.Size([N]), torch.Size([N]), torch.Size([5, N]))

``flow="planar"`` with ``flow_length=L`` makes the posterior a normalizing flow (Rezende & Mohamed
2015, arXiv:1505.05770, Section 4.2): the diagonal Gaussian pushed through $L$ planar steps whose
parameters $u_l, w_l, b_l$ the encoder outputs per example (its last layer grows by $L(2d + 1)$
units; the hidden layers are unchanged), $\log q(z_L \mid x) = \log q_0(z_0 \mid x) - \sum_l
\log|1 + \hat u_l^\top \psi_l(z_{l-1})|$. Its KL has no closed form (``elbo`` uses $\log w$).

For a model with ``latent_dim <= 2`` :func:`exact_bounds` computes $\log p(x)$, the exact
ELBO and $\mathrm{KL}(q \,\|\, p(z \mid x))$ by quadrature, and :func:`expected_elbo` the
exact (differentiable) $\mathbb E_q[\mathcal L_1]$, which the tests use as ground truth.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..flows import FlowDistribution, PlanarStep
from ..targets import ReparamTarget

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}
MAX_PAIRS = 2**15       # (sample, example) pairs per decoder pass in iwae_bound
MIN_SCALE = 1e-4        # sigma_phi(x) = softplus(.) + MIN_SCALE
FLOWS = ("planar",)     # posterior flows (None: the diagonal Gaussian)


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianVAE(nn.Module):
    """Bernoulli-decoder VAE with a diagonal-Gaussian encoder.

    ``hidden`` is one width or a sequence of widths (encoder layers; the decoder mirrors
    them); ``hidden=()`` gives linear maps. Parameters live on ``device`` (default
    :func:`vitools.config.device`); ``seed`` makes the initialisation reproducible.
    Call ``.double()`` for float64 (the quadrature checks do). ``flow="planar"`` and
    ``flow_length`` (>= 1) give the amortized planar-flow posterior of the module docstring.
    """

    def __init__(self, input_dim: int = 784, hidden: int | Sequence[int] = 200, latent_dim: int = 2,
                 activation: str = "tanh", seed: int | None = None, device=None,
                 flow: str | None = None, flow_length: int = 4):
        super().__init__()
        self.input_dim = checks.count("input_dim", input_dim)
        self.latent_dim = checks.count("latent_dim", latent_dim)
        self.hidden = checks.widths("hidden", hidden)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        if flow is not None:
            checks.choice("flow", flow, FLOWS)
        self.flow = flow
        self.flow_length = checks.count("flow_length", flow_length) if flow else 0
        outputs = 2 * self.latent_dim + self.flow_length * (2 * self.latent_dim + 1)
        with config.seeded(seed):
            self.encoder = _mlp([self.input_dim, *self.hidden, outputs], activation)
            self.decoder = _mlp([self.latent_dim, *self.hidden[::-1], self.input_dim], activation)
        self.register_buffer("_zero", torch.zeros(self.latent_dim))
        self.to(config.device(device))

    def extra_repr(self) -> str:
        flow = f", flow={self.flow!r}, flow_length={self.flow_length}" if self.flow else ""
        return f"input_dim={self.input_dim}, hidden={self.hidden}, latent_dim={self.latent_dim}{flow}"

    # ---------------------------------------------------------------- distributions
    def prior(self) -> D.Distribution:
        """$p(z) = \\mathcal N(0, I_d)$: batch shape ``[]``, event shape ``[d]``."""
        return D.Independent(D.Normal(self._zero, torch.ones_like(self._zero)), 1)

    def encode(self, x: torch.Tensor) -> D.Distribution:
        """$q_\\phi(z \\mid x)$ for ``x`` ``[N, D]``: batch shape ``[N]``, event shape ``[d]`` (a
        :class:`~vitools.flows.FlowDistribution` for a flow posterior)."""
        return self._encode(self._check_x(x))

    def decode(self, z: torch.Tensor) -> D.Distribution:
        """$p_\\theta(x \\mid z)$ for ``z`` ``[..., d]``: batch ``[...]``, event ``[D]``.

        ``.mean`` is the pixel probabilities; ``log_prob`` accepts greyscale values in [0, 1].
        """
        checks.shape("z", z, (self.latent_dim,), "latent_dim")
        checks.finite("z", z.detach())
        return self._decode(z)

    def on(self, x: torch.Tensor) -> "VAETarget":
        """The bound on the batch ``x`` ``[N, D]`` as a target for reparameterized estimators:
        ``vt.estimators.get("dreg")(vae.on(x), k)``."""
        return VAETarget(self, self._check_x(x))

    def example_target(self) -> "VAETarget":
        """A target on two blank images (what ``est.applies_to(vae)`` reads)."""
        return self.on(torch.zeros(2, self.input_dim, device=self._zero.device, dtype=self._zero.dtype))

    def _encode(self, x):
        d = self.latent_dim
        out = self.encoder(x)
        mu, raw = out[..., :d], out[..., d:2 * d]                      # [N, d] each
        q = D.Independent(D.Normal(mu, F.softplus(raw) + MIN_SCALE), 1)
        if not self.flow:
            return q
        steps = out[..., 2 * d:].unflatten(-1, (self.flow_length, 2 * d + 1))   # [N, L, 2d + 1]
        return FlowDistribution(q, [PlanarStep(s[..., :d], s[..., d:2 * d], s[..., 2 * d])
                                    for s in steps.unbind(-2)])

    def _posterior_mean(self, x):
        """$\\mathbb{E}_q[z \\mid x]$: exact for the Gaussian, from 256 draws for a flow."""
        q = self._encode(x)
        return q.rsample((256,)).mean(0) if self.flow else q.mean

    def _decode(self, z):
        # validate_args=False: the Bernoulli log-likelihood of greyscale x is the usual cross-entropy.
        return D.Independent(D.Bernoulli(logits=self.decoder(z), validate_args=False), 1)

    # ---------------------------------------------------------------- bounds
    def log_weights(self, x: torch.Tensor, k: int = 1, detach_q: bool = False) -> torch.Tensor:
        """$\\log p(x, z_k) - \\log q(z_k \\mid x)$ for ``k`` reparameterized $z_k \\sim q$: ``[k, N]``.

        ``detach_q=True`` evaluates $\\log q$ with stopped-gradient encoder outputs (the
        path-derivative ingredient of STL, Roeder et al. 2017, and DReG, Tucker et al. 2019);
        values are unchanged.
        """
        k = checks.count("k", k)
        return self._log_weights(self._check_x(x), k, detach_q)

    def _log_weights(self, x, k, detach_q=False):
        q = self._encode(x)
        z = q.rsample((k,))                                            # [k, N, d]
        if detach_q:
            if self.flow:
                raise ValueError(f"detach_q=True needs the diagonal Gaussian posterior, not flow={self.flow!r}")
            base = q.base_dist
            q = D.Independent(D.Normal(base.loc.detach(), base.scale.detach()), 1)
        return self._decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)

    def elbo(self, x: torch.Tensor, k: int = 1, kl: str = "auto") -> torch.Tensor:
        """Reparameterized ELBO estimate per example, averaged over ``k`` samples: ``[N]``.

        ``kl="analytic"``: $\\frac1k\\sum_k \\log p(x \\mid z_k) - \\mathrm{KL}(q \\,\\|\\, p(z))$ in
        closed form; ``kl="mc"``: $\\frac1k\\sum_k \\log w_k$. Both are unbiased for $\\mathcal L_1$.
        ``kl="auto"``: analytic for the Gaussian posterior, ``"mc"`` for a flow (no closed form).
        """
        k = checks.count("k", k)
        checks.choice("kl", kl, ("auto", "analytic", "mc"))
        if kl == "analytic" and self.flow:
            raise ValueError(f"kl='analytic' needs the diagonal Gaussian posterior; a {self.flow} flow's KL has "
                             f"no closed form: use kl='mc' or 'auto'")
        x = self._check_x(x)
        if kl == "mc" or self.flow:
            return self._log_weights(x, k).mean(0)
        q = self._encode(x)
        z = q.rsample((k,))                                            # [k, N, d]
        return self._decode(z).log_prob(x).mean(0) - D.kl_divergence(q, self.prior())

    def iwae_bound(self, x: torch.Tensor, k: int, max_pairs: int = MAX_PAIRS) -> torch.Tensor:
        """$\\log \\frac1k \\sum_{k} w_k$ per example: ``[N]``, an estimate of (a lower bound on) $\\log p(x)$.

        Computed in chunks of at most ``max_pairs`` (sample, example) pairs, so ``k=1000``
        on 1,000 digits fits in memory; differentiable (the IWAE training objective) when
        gradients are enabled. ``k=1`` is a one-sample ELBO estimate.
        """
        k = checks.count("k", k)
        max_pairs = checks.count("max_pairs", max_pairs)
        x = self._check_x(x)
        rows = max(1, min(x.shape[0], max_pairs // k))                 # examples per chunk
        out = []
        for xc in x.split(rows):
            per = max(1, max_pairs // xc.shape[0])                     # samples per pass
            log_w = torch.cat([self._log_weights(xc, min(per, k - s)) for s in range(0, k, per)])
            out.append(torch.logsumexp(log_w, 0) - math.log(k))        # [rows]
        return torch.cat(out)

    # ---------------------------------------------------------------- pictures
    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` images from the model, ``[n, D]``: pixel probabilities (``mean``) or binary draws."""
        n = checks.count("n", n)
        p = self._decode(self.prior().sample((n,)))
        return p.mean if mean else p.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of $p(x \\mid z = \\mathbb{E}_q[z \\mid x])$ ($\\mu_\\phi(x)$ for the Gaussian): ``[N, D]``."""
        return self._decode(self._posterior_mean(self._check_x(x))).mean

    # ---------------------------------------------------------------- checks
    def _check_x(self, x) -> torch.Tensor:
        x = checks.data_matrix("x", x, self.input_dim)
        return x.to(device=self._zero.device, dtype=self._zero.dtype)


# ------------------------------------------------------------------------------------------
# Ground truth for tiny models (latent_dim <= 2) by numerical integration
# ------------------------------------------------------------------------------------------
@torch.no_grad()
def active_units(model: GaussianVAE, x: torch.Tensor, threshold: float = 0.01) -> int:
    r"""Active latent dimensions (Burda et al. 2016, Section 5.2): dimension $u$ is active when
    $\mathrm{Cov}_x(\mathbb{E}_{q}[z_u \mid x]) > $ ``threshold``, with $\mathbb{E}_q[z \mid x]
    = \mu_\phi(x)$ exactly (for a flow posterior, the mean of 256 draws)."""
    x = model._check_x(x)
    checks.positive("threshold", threshold)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples, got {x.shape[0]}")
    mean = model._posterior_mean(x)                                  # [N, d]
    return int((mean.var(0) > threshold).sum().item())


class VAETarget(ReparamTarget):
    r"""A :class:`GaussianVAE` on a checked batch ``x``: $q(z \mid x)$ and $\log p(x, z)$."""

    def q(self):
        return self._model._encode(self.x)

    def log_joint(self, z):
        return self._model._decode(z).log_prob(self.x) + self._model.prior().log_prob(z)


@dataclasses.dataclass
class ExactBounds:
    """Quadrature results for data ``x`` ``[N, D]``.

    ``z``: grid nodes ``[G, d]``; ``log_posterior``: $\\log p(z \\mid x)$ at the nodes ``[G, N]``;
    ``log_px``: $\\log p(x)$ ``[N]``; ``elbo``: exact $\\mathcal L_1$ ``[N]`` (Gauss-Hermite under
    $q$); ``kl``: $\\mathrm{KL}(q(z\\mid x) \\,\\|\\, p(z \\mid x))$ on the grid ``[N]``.
    ``log_px - elbo`` and ``kl`` are computed independently; they agree to quadrature accuracy.
    """

    z: torch.Tensor
    log_posterior: torch.Tensor
    log_px: torch.Tensor
    elbo: torch.Tensor
    kl: torch.Tensor


def _check_tiny(model: GaussianVAE) -> None:
    if not isinstance(model, GaussianVAE):
        raise ValueError(f"model must be a GaussianVAE, got {type(model).__name__}")
    if model.flow:
        raise ValueError(f"model.flow must be None for quadrature (a diagonal Gaussian posterior), got {model.flow!r}")
    if model.latent_dim > 2:
        raise ValueError(f"model.latent_dim must be <= 2 for quadrature, got {model.latent_dim}")


def _hermite(model: GaussianVAE, nodes: int):
    """Tensor-product Gauss-Hermite rule for N(0, I_d): nodes ``[G, d]``, weights ``[G]``."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    ref = model._zero
    t, w = (torch.as_tensor(a, dtype=ref.dtype, device=ref.device) for a in (t, w / math.sqrt(2 * math.pi)))
    grids = torch.meshgrid(*[t] * model.latent_dim, indexing="ij")
    weights = torch.meshgrid(*[w] * model.latent_dim, indexing="ij")
    return torch.stack(grids, -1).reshape(-1, model.latent_dim), torch.stack(weights, -1).prod(-1).reshape(-1)


def expected_elbo(model: GaussianVAE, x: torch.Tensor, nodes: int = 40) -> torch.Tensor:
    """Exact $\\mathbb E_q[\\mathcal L_1] = \\mathbb E_q[\\log p(x\\mid z)] - \\mathrm{KL}(q\\,\\|\\,p(z))$, ``[N]``.

    Gauss-Hermite quadrature in $z = \\mu + \\sigma\\epsilon$ with ``nodes`` points per
    latent dimension; differentiable in every parameter (the exact ELBO gradient).
    """
    _check_tiny(model)
    nodes = checks.count("nodes", nodes, minimum=2)
    x = model._check_x(x)
    eps, w = _hermite(model, nodes)                                    # [G, d], [G]
    q = model._encode(x)
    z = q.base_dist.loc + q.base_dist.scale * eps[:, None, :]          # [G, N, d]
    log_lik = model._decode(z).log_prob(x)                             # [G, N]
    return (w[:, None] * log_lik).sum(0) - D.kl_divergence(q, model.prior())


def exact_bounds(model: GaussianVAE, x: torch.Tensor, points: int = 401, radius: float = 6.0,
                 nodes: int = 40) -> ExactBounds:
    """$\\log p(x)$, the exact ELBO and $\\mathrm{KL}(q \\,\\|\\, p(z\\mid x))$ by quadrature (see :class:`ExactBounds`).

    $\\log p(x) = \\log \\int p(z) p(x\\mid z)\\,dz$ by the trapezoid rule on ``points`` nodes
    per dimension over $[-r, r]^d$; accurate when the posterior lies inside the box and is
    wider than a few grid spacings $2r/(\\text{points}-1)$. Use a float64 model for tight checks.
    """
    _check_tiny(model)
    points = checks.count("points", points, minimum=3)
    radius = float(checks.positive("radius", radius))
    x = model._check_x(x)
    ref = model._zero
    t = torch.linspace(-radius, radius, points, dtype=ref.dtype, device=ref.device)
    cell = torch.full_like(t, 2 * radius / (points - 1))
    cell[0] = cell[-1] = cell[0] / 2                                    # trapezoid weights
    z = torch.stack(torch.meshgrid(*[t] * model.latent_dim, indexing="ij"), -1).reshape(-1, model.latent_dim)
    log_cell = torch.stack(torch.meshgrid(*[cell.log()] * model.latent_dim, indexing="ij"), -1).sum(-1).reshape(-1)
    logits = model.decoder(z)                                          # [G, D]
    log_lik = F.logsigmoid(logits) @ x.T + F.logsigmoid(-logits) @ (1 - x).T   # [G, N]
    log_joint = model.prior().log_prob(z)[:, None] + log_lik           # [G, N]
    log_px = torch.logsumexp(log_joint + log_cell[:, None], 0)         # [N]
    log_post = log_joint - log_px                                      # [G, N]
    log_q = model._encode(x).log_prob(z[:, None, :])                   # [G, N]
    kl = (torch.exp(log_q + log_cell[:, None]) * (log_q - log_post)).sum(0)
    return ExactBounds(z, log_post, log_px, expected_elbo(model, x, nodes), kl)
