r"""Variational memory addressing: a VAE that reads a memory of exemplars through a discrete address.

Bornschein, Mnih, Zoran & Rezende 2017, *Variational Memory Addressing in Generative Models*
(arXiv:1709.07116). Given a memory $M = (m_1, \dots, m_S)$ of exemplars (images), the generative
model picks a slot and a continuous latent and draws $x$ near the chosen exemplar:

$$p(x \mid M) = \sum_{a=1}^S p(a \mid M) \int p(z)\, p_\theta(x \mid m_a, z)\, dz,$$

with $p(a \mid M)$ uniform (``prior="uniform"``) or learned from each exemplar's embedding
(``prior="learned"``), $p(z) = \mathcal N(0, I)$ and a Bernoulli decoder of $(z, e(m_a))$, $e$ an
embedding network. The inference network has a discrete part, $q_\phi(a \mid x, M) \propto
\exp(\langle u(x), w(e(m_a))\rangle / \sqrt{d_k})$ (similarity of a query embedding of $x$ and a key
embedding of each exemplar), and a Gaussian $q_\phi(z \mid x, m_a)$. The ELBO

$$\mathcal L = \mathbb E_{q(a \mid x, M)}\big[\mathbb E_{q(z \mid x, m_a)}[\log p(x \mid m_a, z) + \log p(z)
- \log q(z \mid x, m_a)]\big] - \mathrm{KL}(q(a \mid x, M) \,\|\, p(a \mid M))$$

has a discrete expectation over the address: the paper trains it with VIMCO on the $K$-sample
bound. :meth:`MemoryVAE.on` gives the target every discrete estimator reads (a
:class:`~vitools.targets.LayeredTarget` with one categorical layer of $S$ classes; its signal
draws one reparameterized $z$ per address; a relaxed address is a convex mixture of the
exemplars' embeddings). For a small memory the address is summed exactly
(:meth:`MemoryVAE.address_marginal_bound`: the bound with every tuple of addresses enumerated, $z$
by Monte Carlo), which is both a training objective without an address estimator and the
ground truth the estimators' gradients are tested against.

Shapes: ``x`` ``[N, D]``; ``memory`` ``[S, D]`` (shared by the batch) or ``[N, S, D]`` (one per
example); address logits ``[N, S]``; per-example bounds ``[N]``.
"""
from __future__ import annotations

import math

import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..problems import enumerate_states
from ..targets import Layer, LayeredTarget
from .vae import MIN_SCALE, _mlp

__all__ = ["MemoryVAE", "MemoryTarget", "PRIORS"]

PRIORS = ("uniform", "learned")
MAX_TUPLES = 4096           # address tuples enumerated by address_marginal_bound
LOG_2PI = math.log(2 * math.pi)


class MemoryVAE(nn.Module):
    """A VAE with a memory-addressing discrete latent (see the module docstring).

    ``hidden`` is the width of every MLP's one hidden layer; ``embed_dim`` the exemplar embedding
    $e(m)$ seen by the decoder and by $q(z \\mid x, m_a)$; ``key_dim`` the query/key space of the
    address posterior. ``seed`` fixes the initialisation; ``.double()`` gives float64.
    """

    def __init__(self, input_dim: int = 784, latent_dim: int = 8, hidden: int = 200, embed_dim: int = 32,
                 key_dim: int = 32, prior: str = "uniform", seed: int | None = None, device=None):
        super().__init__()
        self.input_dim = checks.count("input_dim", input_dim)
        self.latent_dim = checks.count("latent_dim", latent_dim)
        self.hidden = checks.count("hidden", hidden)
        self.embed_dim = checks.count("embed_dim", embed_dim)
        self.key_dim = checks.count("key_dim", key_dim)
        self.prior = checks.choice("prior", prior, PRIORS)
        h = self.hidden
        with config.seeded(seed):
            self.embed = _mlp([self.input_dim, h, self.embed_dim], "relu")         # e(m)
            self.key = nn.Linear(self.embed_dim, self.key_dim)                     # w(e(m))
            self.query = _mlp([self.input_dim, h, self.key_dim], "relu")           # u(x)
            self.prior_score = nn.Linear(self.embed_dim, 1) if self.prior == "learned" else None
            self.enc_x = nn.Linear(self.input_dim, h)                              # q(z | x, m_a)
            self.enc_m = nn.Linear(self.embed_dim, h, bias=False)
            self.enc_out = nn.Linear(h, 2 * self.latent_dim)
            self.dec_z = nn.Linear(self.latent_dim, h)                             # p(x | m_a, z)
            self.dec_m = nn.Linear(self.embed_dim, h, bias=False)
            self.dec_out = nn.Linear(h, self.input_dim)
        self.register_buffer("_zero", torch.zeros(()))
        self.to(config.device(device))

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
                f"embed_dim={self.embed_dim}, key_dim={self.key_dim}, prior={self.prior!r}")

    # ---------------------------------------------------------------- the address
    def address_logits(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        r"""$\log q(a \mid x, M)$, normalised: ``[N, S]``."""
        x, memory = self.check(x, memory)
        return self._address(x, self._embed(memory, x.shape[0]))

    def log_prior(self, memory: torch.Tensor, n: int = 1) -> torch.Tensor:
        r"""$\log p(a \mid M)$, normalised, for ``n`` examples: ``[n, S]``."""
        n = checks.count("n", n)
        memory = self._check_memory(memory, n if memory.dim() == 3 else None)
        return self._log_prior(self._embed(memory, n))

    def address_statistics(self, x: torch.Tensor, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Per example ``[N]``: the entropy $H[q(a \mid x, M)]$ and the information a lookup gains,
        $\mathrm{KL}(q(a \mid x, M) \,\|\, p(a \mid M))$, in nats (the paper's measure of how sharply
        the posterior addresses the memory); ``log_q`` ``[N, S]`` beside them."""
        x, memory = self.check(x, memory)
        with torch.no_grad():
            emb = self._embed(memory, x.shape[0])
            log_q, log_p = self._address(x, emb), self._log_prior(emb)
        q = log_q.exp()
        return {"entropy": -(q * log_q).sum(-1), "kl": (q * (log_q - log_p)).sum(-1), "log_q": log_q}

    def _embed(self, memory, n):
        """$e(m_s)$ for every slot, broadcast over the batch: ``[n, S, e]``."""
        emb = self.embed(memory)
        return emb.expand(n, *emb.shape[-2:]) if emb.dim() == 2 else emb

    def _address(self, x, emb):
        scores = (self.query(x)[:, None, :] * self.key(emb)).sum(-1) / math.sqrt(self.key_dim)
        return torch.log_softmax(scores, -1)                                      # [N, S]

    def _log_prior(self, emb):
        if self.prior_score is None:
            return torch.full(emb.shape[:-1], -math.log(emb.shape[-2]), dtype=emb.dtype, device=emb.device)
        return torch.log_softmax(self.prior_score(emb).squeeze(-1), -1)

    # ---------------------------------------------------------------- the continuous part
    def _slot_log_weights(self, x, e_sel):
        r"""$\log p(x \mid m, z) + \log p(z) - \log q(z \mid x, m)$ for one reparameterized $z \sim
        q(z \mid x, m)$ per row of ``e_sel`` ``[..., N, e]`` (one-hot or mixed embeddings): ``[..., N]``."""
        pre = F.relu(self.enc_x(x) + self.enc_m(e_sel))
        mu, raw = self.enc_out(pre).chunk(2, dim=-1)
        scale = F.softplus(raw) + MIN_SCALE
        eps = torch.randn_like(mu)
        z = mu + scale * eps
        log_q = (-0.5 * eps.pow(2) - torch.log(scale) - 0.5 * LOG_2PI).sum(-1)
        log_pz = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
        logits = self.dec_out(F.relu(self.dec_z(z) + self.dec_m(e_sel)))
        log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        return log_lik + log_pz - log_q

    def slot_log_weights(self, x: torch.Tensor, memory: torch.Tensor, k: int = 1) -> torch.Tensor:
        r"""Importance log-weights $\log p(x, z_i \mid m_a) - \log q(z_i \mid x, m_a)$ of ``k`` draws
        $z_i \sim q(z \mid x, m_a)$ for every slot $a$: ``[k, S, N]`` (what :meth:`log_likelihood` sums)."""
        k = checks.count("k", k)
        x, memory = self.check(x, memory)
        return self._per_slot(x, self._embed(memory, x.shape[0]), k)

    def _per_slot(self, x, emb, draws):
        """Slot log weights for ``draws`` independent $z$ per slot: ``[draws, S, N]``."""
        e = emb.transpose(0, 1)                                                    # [S, N, e]
        return self._slot_log_weights(x, e.expand(draws, *e.shape))

    # ---------------------------------------------------------------- targets
    def on(self, x: torch.Tensor, memory: torch.Tensor) -> "MemoryTarget":
        """The ELBO on the batch ``x`` with ``memory`` (``S >= 2`` slots) as a target for any discrete
        estimator: ``vt.estimators.get("vimco")(model.on(x, memory), k)``."""
        x, memory = self.check(x, memory)
        if memory.shape[-2] < 2:
            raise ValueError(f"memory must have at least 2 slots for an address to estimate, got "
                             f"{memory.shape[-2]} (score a one-slot memory with log_likelihood)")
        return MemoryTarget(self, x, memory)

    def example_target(self) -> "MemoryTarget":
        """A target on two blank images with a memory of two blank exemplars."""
        blank = torch.zeros(2, self.input_dim, device=self._zero.device, dtype=self._zero.dtype)
        return self.on(blank, blank)

    # ---------------------------------------------------------------- exact over addresses
    def address_marginal_bound(self, x: torch.Tensor, memory: torch.Tensor, k: int = 1, z_samples: int = 1,
                               max_tuples: int = MAX_TUPLES) -> torch.Tensor:
        r"""The $K$-sample bound $\mathcal L_K$ with the addresses summed exactly: ``[N]``.

        $\mathcal L_K = \sum_{a_{1:K}} \prod_j q(a_j \mid x, M)\; \mathbb E_{z_{1:K}}\big[\log \tfrac1K
        \sum_j w_j\big]$, $w_j = p(a_j) p(x, z_j \mid m_{a_j}) / (q(a_j) q(z_j \mid x, m_{a_j}))$, over
        all $S^K$ address tuples (at most ``max_tuples``), the inner expectation averaged over
        ``z_samples`` reparameterized draws. ``k=1`` is the ELBO, $\sum_a q(a) F_a - \mathrm{KL}(q \| p)$:
        with ``z_samples=1`` an unbiased training objective whose address part needs no estimator.
        Differentiable in every parameter.
        """
        k, z_samples = checks.count("k", k), checks.count("z_samples", z_samples)
        max_tuples = checks.count("max_tuples", max_tuples)
        x, memory = self.check(x, memory)
        s = memory.shape[-2]
        if s ** k > max_tuples:
            raise ValueError(f"max_tuples must be >= S ** k = {s}**{k} = {s ** k} to enumerate, got {max_tuples}")
        emb = self._embed(memory, x.shape[0])
        log_q, log_p = self._address(x, emb), self._log_prior(emb)                # [N, S]
        slot = self._per_slot(x, emb, z_samples * k).reshape(z_samples, k, s, -1)   # [R, K, S, N]
        if k == 1:
            elbo = (log_q.exp() * slot[:, 0].mean(0).T).sum(-1)
            return elbo - (log_q.exp() * (log_q - log_p)).sum(-1)
        tuples = enumerate_states(k, s, device=x.device)                          # [T, K]
        ratio = (log_p - log_q).T                                                  # [S, N]
        lw = torch.stack([slot[:, j, tuples[:, j]] + ratio[tuples[:, j]] for j in range(k)], 1)   # [R, K, T, N]
        inner = (torch.logsumexp(lw, 1) - math.log(k)).mean(0)                   # [T, N]
        weight = sum(log_q.T[tuples[:, j]] for j in range(k)).exp()               # [T, N]
        return (weight * inner).sum(0)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, memory: torch.Tensor, k: int = 1000, chunk: int = 100) -> torch.Tensor:
        r"""$\log p(x \mid M)$ per example ``[N]``: exact over the $S$ addresses, importance-sampled over
        $z$ with ``k`` draws from $q(z \mid x, m_a)$ per slot,
        $\log \sum_a p(a)\, \frac1k \sum_i p(x, z_i \mid m_a) / q(z_i \mid x, m_a)$ (a stochastic lower
        bound, tight as $k$ grows). A one-slot memory (e.g. a blank exemplar: an empty memory) is allowed."""
        k, chunk = checks.count("k", k), checks.count("chunk", chunk)
        x, memory = self.check(x, memory)
        emb = self._embed(memory, x.shape[0])
        parts = [torch.logsumexp(self._per_slot(x, emb, min(chunk, k - i)), 0) for i in range(0, k, chunk)]
        per_slot = torch.logsumexp(torch.stack(parts), 0) - math.log(k)            # [S, N]
        return torch.logsumexp(per_slot.T + self._log_prior(emb), -1)

    # ---------------------------------------------------------------- pictures
    @torch.no_grad()
    def generate(self, memory: torch.Tensor, n: int, slots: torch.Tensor | None = None) -> torch.Tensor:
        r"""Pixel probabilities of ``n`` draws $a \sim p(a \mid M)$ (or the given ``slots`` ``[n]``),
        $z \sim p(z)$, $p(x \mid m_a, z)$, from one memory ``[S, D]``: ``[n, D]``."""
        n = checks.count("n", n)
        memory = self._check_memory(memory, None)
        if memory.dim() != 2:
            raise ValueError(f"memory must be one memory [S, {self.input_dim}] to generate from, got {tuple(memory.shape)}")
        emb = self.embed(memory)                                                   # [S, e]
        if slots is None:
            slots = D.Categorical(logits=self._log_prior(emb[None])[0]).sample((n,))
        elif not isinstance(slots, torch.Tensor) or slots.shape != (n,) or slots.dtype != torch.long \
                or bool(((slots < 0) | (slots >= memory.shape[0])).any()):
            raise ValueError(f"slots must be a long tensor of {n} slot indices in [0, {memory.shape[0]}), got {slots!r}")
        z = torch.randn(n, self.latent_dim, device=emb.device, dtype=emb.dtype)
        return torch.sigmoid(self.dec_out(F.relu(self.dec_z(z) + self.dec_m(emb[slots]))))

    # ---------------------------------------------------------------- checks
    def check(self, x, memory) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, memory)`` validated and cast to the model's dtype and device."""
        x = checks.data_matrix("x", x, self.input_dim).to(device=self._zero.device, dtype=self._zero.dtype)
        return x, self._check_memory(memory, x.shape[0])

    def _check_memory(self, memory, n):
        if not isinstance(memory, torch.Tensor) or memory.dim() not in (2, 3) or memory.shape[-1] != self.input_dim:
            shown = tuple(memory.shape) if isinstance(memory, torch.Tensor) else type(memory).__name__
            raise ValueError(f"memory must be a tensor [S, {self.input_dim}] or [N, S, {self.input_dim}], got {shown}")
        if memory.dim() == 3 and n is not None and memory.shape[0] != n:
            raise ValueError(f"memory must have one row per example of x ({n}), got {memory.shape[0]}")
        checks.count("memory.shape[-2]", memory.shape[-2])
        checks.probability("memory", memory.detach())
        return memory.to(device=self._zero.device, dtype=self._zero.dtype)


class MemoryTarget(LayeredTarget):
    r"""A :class:`MemoryVAE` on a batch ``x`` with a memory: one categorical layer (the address, $S$
    classes) whose signal is the continuous part $\log p(x \mid m_a, z) + \log p(z) - \log q(z \mid x,
    m_a)$ at one reparameterized $z$; the address KL to $p(a \mid M)$ is exact (``exact_term``). At a
    relaxed address $\tilde a$ the decoder reads the mixture $\sum_s \tilde a_s e(m_s)$."""

    generative = True
    entropy_term = False

    def __init__(self, model: MemoryVAE, x: torch.Tensor, memory: torch.Tensor):
        self._model, self.x, self.memory, self.context = model, x, memory, x
        self.layers = (Layer("categorical", (1, memory.shape[-2])),)
        self.batch_shape = x.shape[:1]

    def model(self):
        return self._model

    def _emb(self):
        return self._model._embed(self.memory, self.x.shape[0])                   # [N, S, e]

    def logits(self, l, below):
        return self._model._address(self.x, self._emb())[:, None, :]             # [N, 1, S]

    def signal(self, values, relaxed=False):
        e_sel = torch.einsum("...ns,nse->...ne", values[0][..., 0, :], self._emb())   # [k, N, e]
        return self._model._slot_log_weights(self.x, e_sel)                       # [k, N]

    def exact_term(self):
        emb = self._emb()
        log_q = self._model._address(self.x, emb)
        return -(log_q.exp() * (log_q - self._model._log_prior(emb))).sum(-1)

    def log_p_layers(self, hs):
        log_prior = (hs[0][..., 0, :] * self._model._log_prior(self._emb())).sum(-1)   # [k, N]
        return [self.signal(hs) + log_prior]
