r"""Sigmoid belief networks with an amortized inference network, and their exact answers.

A sigmoid belief net (Neal 1992) with $L$ layers of Bernoulli latent units
$h_1, \dots, h_L$ (layer 1 next to the data $x = h_0$):

$$p_\theta(x, h) = p(h_L) \prod_{l=1}^{L} p(h_{l-1} \mid h_l), \qquad
p(h_{l-1} \mid h_l) = \mathrm{Bernoulli}(\sigma(f_l(h_l))),$$

and the inference network of the matching structure
$q_\phi(h \mid x) = \prod_{l=1}^{L} q(h_l \mid h_{l-1})$ with
$q(h_l \mid h_{l-1}) = \mathrm{Bernoulli}(\sigma(g_l(h_{l-1})))$. ``nonlinear=False`` makes
$f_l, g_l$ affine (the SBNs of Mnih & Gregor 2014, *Neural Variational Inference and
Learning in Belief Networks*, arXiv:1402.0030, and Mnih & Rezende 2016, VIMCO,
arXiv:1602.06725); ``nonlinear=True`` puts two deterministic tanh layers inside every
$f_l, g_l$, as in REBAR (Tucker et al. 2017, arXiv:1703.07370) and RELAX (arXiv:1711.00123).

With at most 16 latent bits in total every joint state can be enumerated, which gives the
exact $\log p(x)$, the exact ELBO, the exact $K$-sample bound of Burda et al. 2016 (IWAE,
arXiv:1509.00519) for tiny models, and, by autograd through the enumerated sums, their exact
gradients: the ground truth of the tests and notebooks.

Shapes: data ``x`` is ``[N, D]`` with entries in {0, 1}; latents are a list with one
``[K, N, d_l]`` tensor per layer; per-sample log-densities are ``[K, N]``.

Example::

    >>> model = SBN(x_dim=784, latent=(200,))
    >>> hs, _ = model.sample(x, k=5)              # [5, N, 200]
    >>> model.log_weights(x, k=5).shape           # log p(x, h) - log q(h | x)
    torch.Size([5, N])
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..targets import Layer, LayeredTarget
from ..problems import enumerate_states
from .vae import _mlp

MAX_ENUMERATED_BITS = 16
MAX_ENUMERATED_TUPLES = 2**18
CHUNK_ELEMENTS = 2**24            # bound on states * examples * units held at once


def _net(n_in: int, n_out: int, nonlinear: bool, hidden: int) -> nn.Module:
    return _mlp([n_in, hidden, hidden, n_out], "tanh") if nonlinear else nn.Linear(n_in, n_out)


def bernoulli_log_prob(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """$\\sum_d \\log \\mathrm{Bern}(v_d; \\sigma(\\ell_d))$ over the last dimension (broadcasts)."""
    logits, value = torch.broadcast_tensors(logits, value)
    return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


def bernoulli_sample(logits: torch.Tensor) -> torch.Tensor:
    """Bernoulli draws with ``sigmoid(logits)``, as floats, outside the autograd graph."""
    logits = logits.detach()
    return (torch.rand_like(logits) < torch.sigmoid(logits)).to(logits.dtype)


class SBN(nn.Module):
    """A sigmoid belief net with ``len(latent)`` stochastic layers and its inference network.

    ``latent`` lists the layer widths from the data upwards: ``(200,)``, ``(200, 200)``,
    ``(200, 200, 200)``. ``generative_parameters()`` ($\\theta$: ``decoders`` and
    ``prior_logits``) and ``inference_parameters()`` ($\\phi$: ``encoders``) split the
    parameters for estimators and optimizers.
    """

    def __init__(self, x_dim: int, latent=(200,), nonlinear: bool = False, hidden: int = 200):
        super().__init__()
        self.x_dim = checks.count("x_dim", x_dim)
        latent = tuple(latent) if isinstance(latent, (tuple, list)) else (latent,)
        if not 1 <= len(latent) <= 3:
            raise ValueError(f"latent must list 1 to 3 layer widths, got {latent!r}")
        self.latent = tuple(checks.count("latent", width) for width in latent)
        self.nonlinear = bool(nonlinear)
        self.hidden = checks.count("hidden", hidden)
        dims = (self.x_dim, *self.latent)
        self.encoders = nn.ModuleList(_net(dims[l], dims[l + 1], nonlinear, hidden) for l in range(len(latent)))
        self.decoders = nn.ModuleList(_net(dims[l + 1], dims[l], nonlinear, hidden) for l in range(len(latent)))
        self.prior_logits = nn.Parameter(torch.zeros(self.latent[-1]))
        self.register_buffer("input_mean", torch.zeros(self.x_dim))   # subtracted from x before q: see init_from_data
        self.to(config.device())

    @torch.no_grad()
    def init_from_data(self, x_train: torch.Tensor) -> "SBN":
        r"""Start from the training data's pixel means $m$, as the papers' SBNs do: the first inference
        layer sees $x - m$ (centred input), and the biases of the output layer $p(x \mid h_1)$ start at
        the log-odds $\log m - \log(1 - m)$, so that before the first update the net already models
        independent pixels (Mnih & Gregor 2014, arXiv:1402.0030, Section 6; the REBAR, RELAX, ARM and DisARM
        experiments use the same set-up). Means are clipped to $[10^{-3}, 1 - 10^{-3}]$ for the log-odds
        (a pixel never inked in training gets bias $-6.9$, not $-\infty$). Returns the model.

        Without it the output biases start at random and the first few hundred updates go to learning the
        pixel means; on the nonlinear net that is long enough for the decoder to learn to ignore $h$ while
        the antithetic estimators (ARM, DisARM) have not yet moved $q(h \mid x)$, and the latents are lost.
        """
        m = self.check_data(x_train).mean(0)
        self.input_mean.copy_(m)
        last = [mod for mod in self.decoders[0].modules() if isinstance(mod, nn.Linear)][-1]
        p = m.clamp(1e-3, 1 - 1e-3)
        last.bias.copy_(torch.log(p) - torch.log1p(-p))
        return self

    def encoder_logits(self, l: int, below: torch.Tensor) -> torch.Tensor:
        """The logits of $q(h_{l+1} \\mid h_l)$ given the layer below (``x`` for ``l = 0``, centred by
        ``input_mean``)."""
        return self.encoders[l](below - self.input_mean if l == 0 else below)

    @property
    def num_layers(self) -> int:
        return len(self.latent)

    @property
    def num_bits(self) -> int:
        return sum(self.latent)

    def generative_parameters(self) -> list[nn.Parameter]:
        return [*self.decoders.parameters(), self.prior_logits]

    def inference_parameters(self) -> list[nn.Parameter]:
        return list(self.encoders.parameters())

    def parameter_groups(self) -> dict[str, list[str]]:
        """``{label: [parameter-name prefixes]}`` as named by ``vt.diagnostics.grad_samples(est, sbn.on(x))``."""
        groups = {"generative (theta)": ["model.decoders", "model.prior_logits"]}
        for l in range(self.num_layers):
            groups[f"inference layer {l + 1} (phi)"] = [f"model.encoders.{l}."]
        return groups

    def extra_repr(self) -> str:
        kind = "nonlinear" if self.nonlinear else "linear"
        return f"x_dim={self.x_dim}, latent={self.latent}, {kind}"

    # ------------------------------------------------------------------ validation
    def check_data(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` must be ``[N, x_dim]`` with entries in {0, 1}; returned in the model's dtype and device."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a 2-D tensor [N, {self.x_dim}], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        checks.shape("x", x, (self.x_dim,), what="N examples of x_dim pixels")
        checks.binary("x", x)
        return x.to(device=self.prior_logits.device, dtype=self.prior_logits.dtype)

    def check_latents(self, hs, x: torch.Tensor) -> list[torch.Tensor]:
        """``hs`` must hold one ``[K, N, d_l]`` tensor per layer, with entries in {0, 1}."""
        if len(hs) != self.num_layers:
            raise ValueError(f"hs must hold {self.num_layers} layers, got {len(hs)}")
        k = hs[0].shape[0] if hs[0].dim() == 3 else None
        for l, h in enumerate(hs):
            if h.dim() != 3 or h.shape[0] != k or h.shape[1:] != (x.shape[0], self.latent[l]):
                raise ValueError(f"hs[{l}] must have shape [K, {x.shape[0]}, {self.latent[l]}], "
                                 f"got {tuple(h.shape)}")
            checks.binary(f"hs[{l}]", h)
        return list(hs)

    # ------------------------------------------------------------------ targets
    def on(self, x: torch.Tensor) -> "SBNTarget":
        """The ELBO on the batch ``x`` ``[N, x_dim]`` (binary) as a target for any discrete
        estimator: ``vt.estimators.get("disarm")(sbn.on(x), k)``."""
        return SBNTarget(self, self.check_data(x))

    def example_target(self) -> "SBNTarget":
        """A target on two blank images (what ``est.applies_to(sbn)`` reads)."""
        return self.on(torch.zeros(2, self.x_dim, device=self.prior_logits.device, dtype=self.prior_logits.dtype))

    # ------------------------------------------------------------------ densities
    def sample(self, x: torch.Tensor, k: int = 1):
        """Draw ``k`` latent states per example from $q(h \\mid x)$, layer by layer.

        Returns ``(hs, log_q)``: ``hs[l]`` is ``[k, N, d_l]`` (no gradient) and ``log_q[l]``
        is $\\log q(h_l \\mid h_{l-1})$, ``[k, N]``, differentiable in $\\phi$.
        """
        below = x                                                       # [N, D], then [k, N, d_l]
        hs, log_q = [], []
        for l in range(self.num_layers):
            logits = self.encoder_logits(l, below)                      # [(k,) N, d_l]
            logits = logits.expand(k, *logits.shape[-2:])
            h = bernoulli_sample(logits)
            hs.append(h)
            log_q.append(bernoulli_log_prob(logits, h))
            below = h
        return hs, log_q

    def log_q_layers(self, x: torch.Tensor, hs) -> list[torch.Tensor]:
        """$\\log q(h_l \\mid h_{l-1})$ for each layer, ``[K, N]`` each."""
        below = [x, *hs[:-1]]                                           # broadcast over K
        return [bernoulli_log_prob(self.encoder_logits(l, b), h) for l, (b, h) in enumerate(zip(below, hs))]

    def log_p_layers(self, x: torch.Tensor, hs) -> list[torch.Tensor]:
        """$[\\log p(x \\mid h_1), \\log p(h_1 \\mid h_2), \\dots, \\log p(h_L)]$, ``[K, N]`` each."""
        below = [x, *hs]
        terms = [bernoulli_log_prob(dec(h), b) for dec, h, b in zip(self.decoders, hs, below)]
        terms.append(bernoulli_log_prob(self.prior_logits, hs[-1]))
        return terms

    def log_weights(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """$\\log p(x, h_j) - \\log q(h_j \\mid x)$ for ``k`` draws $h_j \\sim q$: ``[k, N]``."""
        x = self.check_data(x)
        checks.count("k", k)
        hs, log_q = self.sample(x, k)
        return sum(self.log_p_layers(x, hs)) - sum(log_q)

    @torch.no_grad()
    def generate(self, n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Ancestral samples: ``(x_probs [n, D], hs)`` with ``hs[l]`` ``[n, d_l]``."""
        checks.count("n", n)
        h = bernoulli_sample(self.prior_logits.expand(n, -1))
        hs = [h]
        for dec in list(self.decoders)[:0:-1]:
            h = bernoulli_sample(dec(h))
            hs.insert(0, h)
        return torch.sigmoid(self.decoders[0](hs[0])), hs

    # ------------------------------------------------------------------ enumeration
    def states(self) -> list[torch.Tensor]:
        """Every joint latent state, split per layer: ``[S, d_l]`` each, ``S = 2**num_bits``."""
        if self.num_bits > MAX_ENUMERATED_BITS:
            raise ValueError(f"model has {self.num_bits} latent bits; at most {MAX_ENUMERATED_BITS} "
                             "can be enumerated")
        bits = enumerate_states(self.num_bits, device=self.prior_logits.device).to(self.prior_logits.dtype)
        return list(bits.split(self.latent, dim=1))

    def _enumerated(self, x: torch.Tensor):
        """``(log p(x, s), log q(s | x))`` for every state ``s``: two ``[S, N]`` tensors."""
        x = self.check_data(x)
        states = self.states()
        size = states[0].shape[0]
        chunk = max(1, CHUNK_ELEMENTS // (size * max(self.x_dim, self.hidden if self.nonlinear else 1)))
        log_p, log_q = [], []
        for xb in x.split(chunk):                                  # bounded memory, not per sample
            hs = [s[:, None, :] for s in states]                   # [S, 1, d_l], broadcast over N
            shape = (size, xb.shape[0])
            log_p.append(sum(t.expand(shape) for t in self.log_p_layers(xb, hs)))
            log_q.append(sum(t.expand(shape) for t in self.log_q_layers(xb, hs)))
        return torch.cat(log_p, 1), torch.cat(log_q, 1)

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """$\\log p(x) = \\log \\sum_h p(x, h)$ by enumeration: ``[N]``, differentiable in $\\theta$."""
        log_p, _ = self._enumerated(x)
        return torch.logsumexp(log_p, 0)

    def exact_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """$\\log p(h \\mid x)$ for every state (rows in :meth:`states` order): ``[S, N]``."""
        log_p, _ = self._enumerated(x)
        return log_p - torch.logsumexp(log_p, 0)

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """$\\sum_h q(h|x)[\\log p(x,h) - \\log q(h|x)]$: ``[N]``, differentiable in $\\theta, \\phi$."""
        log_p, log_q = self._enumerated(x)
        return (log_q.exp() * (log_p - log_q)).sum(0)

    def exact_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The exact expected $K$-sample bound $\\mathbb{E}_{h_{1:K} \\sim q}[\\log \\frac1K
        \\sum_j w_j]$ by enumerating all ``S**k`` tuples (tiny models only): ``[N]``."""
        checks.count("k", k)
        log_p, log_q = self._enumerated(x)
        size = log_p.shape[0]
        if size**k > MAX_ENUMERATED_TUPLES:
            raise ValueError(f"k={k} with {size} states needs {size}**{k} tuples; at most "
                             f"{MAX_ENUMERATED_TUPLES} can be enumerated")
        tuples = enumerate_states(k, size, device=log_p.device)                            # [T, k]
        log_w = (log_p - log_q)[tuples]                                                    # [T, k, N]
        bound = torch.logsumexp(log_w, 1) - math.log(k)                                     # [T, N]
        return (log_q[tuples].sum(1).exp() * bound).sum(0)


class SBNTarget(LayeredTarget):
    r"""An :class:`SBN` on a batch ``x``: Bernoulli layers $q(h_l \mid h_{l-1})$ with the signal
    $\log p(x, h) - \log q(h \mid x)$ (the ELBO)."""

    generative = True

    def __init__(self, model: SBN, x: torch.Tensor):
        self._model, self.x, self.context = model, x, x
        self.layers = tuple(Layer("bernoulli", (d,)) for d in model.latent)
        self.batch_shape = x.shape[:1]

    def model(self):
        return self._model

    def logits(self, l, below):
        return self._model.encoder_logits(l, self.x if l == 0 else below)

    def signal(self, values, relaxed=False):
        return sum(self._model.log_p_layers(self.x, values))

    def log_p_layers(self, hs):
        return self._model.log_p_layers(self.x, hs)


# ---------------------------------------------------------------------- evaluation
def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """$\\log \\frac1K \\sum_j \\exp(\\log w_j)$ over dim 0: ``[K, *batch] -> [*batch]``."""
    checks.count("K", log_w.shape[0] if log_w.dim() else 0)
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@torch.no_grad()
def evaluate(model, x: torch.Tensor, k: int = 1, batch_size: int = 100, k_chunk: int = 1000) -> float:
    """Mean $K$-sample bound over the examples of ``x`` (``k=1``: the ELBO; large ``k``: an
    importance-sampled estimate of $\\log p(x)$). ``model`` needs ``log_weights(x, k)``."""
    checks.count("k", k)
    checks.count("batch_size", batch_size)
    checks.count("k_chunk", k_chunk)
    total = 0.0
    for xb in x.split(batch_size):
        # split K into chunks and combine exactly: logsumexp of the per-chunk logsumexps.
        parts = [torch.logsumexp(model.log_weights(xb, min(k_chunk, k - start)), 0)
                 for start in range(0, k, k_chunk)]
        total += (torch.logsumexp(torch.stack(parts), 0) - math.log(k)).sum().item()
    return total / x.shape[0]


@torch.no_grad()
def bound_per_example(model, x: torch.Tensor, k: int = 1000, batch_size: int = 100,
                      k_chunk: int = 1000) -> torch.Tensor:
    """The ``k``-sample bound of every example of ``x``: ``[N]`` (one draw of $h_{1:K}$ each).
    ``model`` needs ``log_weights(x, k)`` (an :class:`SBN` or a ``GaussianVAE``)."""
    checks.count("k", k)
    checks.count("batch_size", batch_size)
    checks.count("k_chunk", k_chunk)
    out = []
    for xb in x.split(batch_size):
        parts = [torch.logsumexp(model.log_weights(xb, min(k_chunk, k - start)), 0)
                 for start in range(0, k, k_chunk)]
        out.append(torch.logsumexp(torch.stack(parts), 0) - math.log(k))
    return torch.cat(out)


def evaluate_with_error(model, x: torch.Tensor, k: int = 1000, batch_size: int = 100) -> tuple[float, float]:
    r"""``(mean, standard error)`` of the ``k``-sample bound over the examples of ``x``: the one
    held-out score of a comparison (``k >= 1000``: an importance-sampled $\log p(x)$). The
    standard error is over examples and draws together (sd of the per-example bounds / sqrt N)."""
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples for a standard error, got {x.shape[0]}")
    values = bound_per_example(model, x, k=k, batch_size=batch_size).double()
    return values.mean().item(), (values.std() / math.sqrt(values.numel())).item()


def log_likelihood(model, x: torch.Tensor, k: int = 1000, batch_size: int = 20) -> float:
    """Importance-sampled $\\log p(x)$ with ``k`` proposals from $q$ (Burda et al. 2016, k=5000)."""
    return evaluate(model, x, k=k, batch_size=batch_size)


def train_sbn(model, estimator, x_train: torch.Tensor, k: int = 1, steps: int = 1000,
              batch_size: int = 100, lr: float = 3e-4, x_valid: torch.Tensor | None = None,
              eval_every: int | None = None, eval_k: int = 1, seed: int | None = 0,
              progress: bool = True, desc: str | None = None):
    """:func:`vitools.train.fit` of ``estimator`` on ``model`` with Adam (the estimator's own baselines
    and control variates train alongside on its control loss), recording the mean ``eval_k``-sample
    bound on ``x_valid`` as ``history.evals["valid_bound"]``."""
    from .. import train

    checks.count("eval_k", eval_k)
    model.check_data(x_train)
    eval_fn = None
    if x_valid is not None:
        model.check_data(x_valid)
        eval_fn = lambda: {"valid_bound": evaluate(model, x_valid, k=eval_k)}   # noqa: E731
    return train.fit(estimator, model, x_train, steps=steps, batch_size=batch_size, lr=lr, k=k,
                     eval_fn=eval_fn, eval_every=eval_every, seed=seed, progress=progress, desc=desc)


@torch.no_grad()
def active_units(model, x: torch.Tensor, threshold: float = 0.01) -> list[int]:
    """Active units per layer (Burda et al. 2016, Section 5.2): unit $u$ of layer $l$ is
    active when $\\mathrm{Cov}_x(\\mathbb{E}_{q}[h_{l,u} \\mid x]) > $ ``threshold``; the
    expectation is under $q$ (exact for layer 1, estimated with 100 draws above it)."""
    x = model.check_data(x)
    checks.positive("threshold", threshold)
    hs, _ = model.sample(x, 100)
    counts = []
    below = x
    for l in range(model.num_layers):
        mean = torch.sigmoid(model.encoder_logits(l, below)).mean(0) if l else torch.sigmoid(model.encoder_logits(0, x))
        counts.append(int((mean.var(0) > threshold).sum().item()))
        below = hs[l]
    return counts
