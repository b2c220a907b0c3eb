r"""A variational RNN (VRNN) for 88-key piano rolls, with a learned proposal.

The sequence model of Maddison et al. 2017, *Filtering Variational Objectives*
(arXiv:1705.09279, Section 5.2), itself from Chung et al. 2015, *A Recurrent Latent
Variable Model for Sequential Data* (arXiv:1506.02216). With ``h_t`` an LSTM state,

.. math::
    h_t = \mathrm{LSTM}(h_{t-1}, [\phi_x(x_{t-1}), \phi_z(z_{t-1})]), \quad
    z_t \sim p(z_t | h_t) = N(\mu_p(h_t), \sigma_p(h_t)^2), \quad
    x_t \sim \mathrm{Bernoulli}(\mathrm{logits}(h_t, \phi_z(z_t))),

and the proposal q(z_t | h_t, x_t) = N(\mu_p(h_t) + \Delta\mu(h_t, \phi_x(x_t)), \sigma_q^2)
(a residual on the prior mean, as in the FIVO code). The emission bias starts at the
logit of the training data's mean piano roll. The model follows the ``initial_state`` /
``step`` protocol of :mod:`vitools.smc`, so ELBO, IWAE and FIVO train it with the same
call; the state per particle is ``(h [B, K, H], c [B, K, H], z [B, K, Z])``.

Example::

    >>> music = vt.data.music.load_chorales(split="train", max_steps=32)
    >>> model = VRNN(hidden=32, latent=8, data_mean=music.x[music.mask > 0].mean(0))
    >>> result = vt.smc.fivo(model, music.x[:4], 4, mask=music.mask[:4])
    >>> vt.smc.per_step(result)                            # per-time-step bound (nats)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import checks, config
from ..smc import check_sequences
from ..targets import SequenceTarget
from .sbn import bernoulli_log_prob
from .vae import _mlp

KEYS = 88


def _normal_log_prob(z, mean, scale):
    """log N(z; mean, diag(scale^2)) summed over the last axis."""
    return (-0.5 * ((z - mean) / scale).square() - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


class VRNN(nn.Module):
    """``hidden``: LSTM width (and MLP width); ``latent``: z dimension; ``data_mean [88]``:
    per-key frequency in the training set, used to initialise the emission bias."""

    def __init__(self, hidden: int = 32, latent: int = 16, data_dim: int = KEYS,
                 data_mean: torch.Tensor | None = None):
        super().__init__()
        self.hidden = checks.count("hidden", hidden)
        self.latent = checks.count("latent", latent)
        self.data_dim = checks.count("data_dim", data_dim)
        self.encode_x = _mlp([data_dim, hidden, hidden], "relu")
        self.encode_z = _mlp([latent, hidden, hidden], "relu")
        self.rnn = nn.LSTMCell(2 * hidden, hidden)
        self.prior = _mlp([hidden, hidden, 2 * latent], "relu")
        self.proposal = _mlp([2 * hidden, hidden, 2 * latent], "relu")
        self.emission = _mlp([2 * hidden, hidden, data_dim], "relu")
        if data_mean is not None:
            mean = checks.probability("data_mean", torch.as_tensor(data_mean, dtype=torch.float32).cpu())
            checks.shape("data_mean", mean, (data_dim,))
            with torch.no_grad():
                self.emission[-1].bias.copy_(torch.logit(mean.clamp(1e-5, 1 - 1e-5)))
        self.to(config.device())

    def _check_x(self, x):
        checks.shape("x", x, (None, None, self.data_dim), "[B, T, data_dim]")

    def on(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> SequenceTarget:
        """Padded sequences ``x`` ``[B, T, data_dim]`` (``mask`` ``[B, T]``, default all valid) as a
        target for the particle-filter bounds: ``vt.estimators.get("fivo")(vrnn.on(x, mask), k)``."""
        x, mask = check_sequences(x, mask)
        self._check_x(x)
        return SequenceTarget(self, x, mask)

    def example_target(self) -> SequenceTarget:
        """A target on one blank two-step sequence (what ``est.applies_to(vrnn)`` reads)."""
        return self.on(torch.zeros(1, 2, self.data_dim, device=next(self.parameters()).device))

    @staticmethod
    def _gaussian(params):
        mean, raw = params.chunk(2, -1)
        return mean, nn.functional.softplus(raw) + 1e-4

    # ------------------------------------------------------------- smc protocol
    def initial_state(self, x: torch.Tensor, num_particles: int):
        self._check_x(x)
        batch, k = x.shape[0], num_particles
        encoded = self.encode_x(x)                                                 # [B, T, H]
        self._inputs = torch.cat([torch.zeros_like(encoded[:, :1]), encoded[:, :-1]], 1)  # phi_x(x_{t-1})
        self._targets = encoded                                                    # phi_x(x_t)
        zeros = x.new_zeros(batch, k, self.hidden)
        return zeros, zeros, x.new_zeros(batch, k, self.latent)

    def step(self, state, t: int, x: torch.Tensor):
        h, c, z_prev = state
        batch, k = h.shape[:2]
        inputs = torch.cat([self._inputs[:, t, None].expand(-1, k, -1), self.encode_z(z_prev)], -1)
        h, c = self.rnn(inputs.reshape(batch * k, -1), (h.reshape(batch * k, -1), c.reshape(batch * k, -1)))
        h, c = h.reshape(batch, k, -1), c.reshape(batch, k, -1)                    # [B, K, H]
        prior_mean, prior_scale = self._gaussian(self.prior(h))                    # [B, K, Z]
        delta, q_scale = self._gaussian(self.proposal(torch.cat([h, self._targets[:, t, None].expand(-1, k, -1)], -1)))
        q_mean = prior_mean + delta
        z = q_mean + q_scale * torch.randn_like(q_mean)
        logits = self.emission(torch.cat([h, self.encode_z(z)], -1))               # [B, K, 88]
        log_px = bernoulli_log_prob(logits, x[:, t, None])                        # [B, K]
        log_alpha = _normal_log_prob(z, prior_mean, prior_scale) + log_px - _normal_log_prob(z, q_mean, q_scale)
        return (h, c, z), log_alpha

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, num: int, steps: int, seed: int | None = None) -> torch.Tensor:
        """``num`` piano rolls ``[num, steps, 88]`` from the generative model (ancestral sampling)."""
        num, steps = checks.count("num", num), checks.count("steps", steps)
        dev = next(self.parameters()).device
        h = c = torch.zeros(num, self.hidden, device=dev)
        z = torch.zeros(num, self.latent, device=dev)
        x_prev = torch.zeros(num, self.data_dim, device=dev)
        rolls = []
        with config.seeded(seed):
            for _ in range(steps):
                h, c = self.rnn(torch.cat([self.encode_x(x_prev), self.encode_z(z)], -1), (h, c))
                mean, scale = self._gaussian(self.prior(h))
                z = mean + scale * torch.randn_like(mean)
                x_prev = torch.bernoulli(torch.sigmoid(self.emission(torch.cat([h, self.encode_z(z)], -1))))
                rolls.append(x_prev)
        return torch.stack(rolls, 1)
