r"""A linear Gaussian state-space model with its exact likelihood and exact proposals.

The test bed of Maddison et al. 2017, *Filtering Variational Objectives* (arXiv:1705.09279,
Section 5.1): every bound a particle filter gives can be set against the truth.

.. math::
    z_1 \sim N(\mu_0, Q_0), \quad z_t = A z_{t-1} + N(0, Q), \quad x_t = C z_t + N(0, R).

* :meth:`LinearGaussianSSM.log_likelihood`: log p(x) by the Kalman filter (batched, masks).
* Proposals q(z_t | z_{t-1}) = N(F_t z_{t-1} + c_t, L_t L_t^T), one set per sequence
  (:class:`LinearGaussianProposal`): the prior (bootstrap), the exact *filtering* proposal
  p(z_t | z_{t-1}, x_t) and the exact *smoothing* proposal p(z_t | z_{t-1}, x_{t:T}), which
  uses the backward information filter p(x_{t+1:T} | z_t) \propto exp(-z^T J_t z / 2 + h_t^T z).
  With the smoothing proposal every path's weight is exactly p(x).
* :class:`LearnableProposal`: the same family with free per-step parameters, to be fitted
  with ELBO, IWAE or FIVO and compared with the two exact proposals.
* :meth:`LinearGaussianSSM.with_proposal` gives the ``initial_state`` / ``step`` object
  that :func:`vitools.smc.particle_filter` runs.

Shapes: ``dz`` latent and ``dx`` observed dimensions, ``x [B, T, dx]``, ``mask [B, T]``.

Example::

    >>> ssm = LinearGaussianSSM.scalar()                       # FIVO's Gaussian random walk
    >>> z, x = ssm.sample(4, 10, seed=0)
    >>> exact = ssm.log_likelihood(x)                          # [4]
    >>> q = ssm.filtering_proposal(x)
    >>> vt.smc.fivo(ssm.with_proposal(q), x, num_particles=8).log_z   # [4], <= exact on average
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch.distributions import MultivariateNormal

from .. import checks, config
from ..smc import check_sequences
from ..targets import SequenceTarget


def _matrix(name: str, value, rows: int | None, cols: int | None, dtype, device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.reshape(1, 1)
    checks.finite(name, t)
    if t.dim() != 2 or (rows is not None and t.shape[0] != rows) or (cols is not None and t.shape[1] != cols):
        raise ValueError(f"{name} must be a matrix of shape ({rows}, {cols}), got shape {tuple(t.shape)}")
    return t


def _covariance(name: str, value, size: int, dtype, device) -> torch.Tensor:
    t = _matrix(name, value, size, size, dtype, device)
    _, info = torch.linalg.cholesky_ex(t)
    if not torch.allclose(t, t.mT) or info.item() != 0:
        raise ValueError(f"{name} must be a symmetric positive-definite matrix, got {t.tolist()}")
    return t


@dataclasses.dataclass
class LinearGaussianProposal:
    """q(z_t | z_{t-1}) = N(F_t z_{t-1} + c_t, L_t L_t^T), t = 0..T-1 (z_{-1} = 0).

    ``F [P, T, dz, dz]``, ``c [P, T, dz]``, ``scale_tril [P, T, dz, dz]`` with ``P`` = 1
    (shared) or ``B`` (one per sequence).
    """

    F: torch.Tensor
    c: torch.Tensor
    scale_tril: torch.Tensor

    @property
    def scale(self) -> torch.Tensor:
        """Marginal standard deviations ``[P, T, dz]``."""
        return self.scale_tril.square().sum(-1).sqrt()


class LearnableProposal(torch.nn.Module):
    """Free parameters F_t, c_t and a Cholesky factor per step, for one batch of ``P`` sequences."""

    def __init__(self, steps: int, latent_dim: int = 1, batch: int = 1, init_scale: float = 1.0):
        super().__init__()
        steps, latent_dim, batch = (checks.count(n, v) for n, v in
                                    (("steps", steps), ("latent_dim", latent_dim), ("batch", batch)))
        init_scale = float(checks.positive("init_scale", init_scale))
        dev, dtype = config.device(), config.DEFAULT_DTYPE
        self.F = torch.nn.Parameter(torch.zeros(batch, steps, latent_dim, latent_dim, device=dev, dtype=dtype))
        self.c = torch.nn.Parameter(torch.zeros(batch, steps, latent_dim, device=dev, dtype=dtype))
        self.raw_scale = torch.nn.Parameter(
            torch.full((batch, steps, latent_dim, latent_dim), 0.0, device=dev, dtype=dtype))
        with torch.no_grad():
            self.raw_scale.diagonal(dim1=-2, dim2=-1).fill_(torch.log(torch.expm1(torch.tensor(init_scale))).item())

    def proposal(self) -> LinearGaussianProposal:
        diag = torch.nn.functional.softplus(self.raw_scale.diagonal(dim1=-2, dim2=-1))
        tril = torch.tril(self.raw_scale, -1) + torch.diag_embed(diag)
        return LinearGaussianProposal(self.F, self.c, tril)


class LinearGaussianSSM:
    """z_1 ~ N(mu0, Q0); z_t = A z_{t-1} + N(0, Q); x_t = C z_t + N(0, R). Covariances, not scales."""

    def __init__(self, A, C, Q, R, mu0=None, Q0=None, dtype: torch.dtype | None = None):
        dtype = dtype or (A.dtype if isinstance(A, torch.Tensor) and A.is_floating_point() else config.DEFAULT_DTYPE)
        dev = config.device()
        self.A = _matrix("A", A, None, None, dtype, dev)
        dz = self.A.shape[0]
        self.A = _matrix("A", self.A, dz, dz, dtype, dev)
        self.C = _matrix("C", C, None, dz, dtype, dev)
        dx = self.C.shape[0]
        self.Q = _covariance("Q", Q, dz, dtype, dev)
        self.R = _covariance("R", R, dx, dtype, dev)
        self.mu0 = torch.zeros(dz, dtype=dtype, device=dev) if mu0 is None else torch.as_tensor(mu0, dtype=dtype, device=dev).reshape(-1)
        checks.shape("mu0", checks.finite("mu0", self.mu0), (dz,))
        self.Q0 = self.Q.clone() if Q0 is None else _covariance("Q0", Q0, dz, dtype, dev)
        self.latent_dim, self.obs_dim, self.dtype = dz, dx, dtype

    @classmethod
    def scalar(cls, a: float = 1.0, c: float = 1.0, q: float = 1.0, r: float = 1.0, mu0: float = 0.0,
               q0: float | None = None, dtype: torch.dtype | None = None) -> "LinearGaussianSSM":
        """The 1-D model (defaults: FIVO's Gaussian random walk z_t ~ N(z_{t-1}, 1), x_t ~ N(z_t, 1))."""
        for name, value in (("q", q), ("r", r)) + ((("q0", q0),) if q0 is not None else ()):
            checks.positive(name, value)
        return cls([[a]], [[c]], [[q]], [[r]], [mu0], None if q0 is None else [[q0]], dtype=dtype)

    def __repr__(self) -> str:
        return f"LinearGaussianSSM(latent_dim={self.latent_dim}, obs_dim={self.obs_dim})"

    def _check_x(self, x, mask):
        x, mask = check_sequences(x, mask)
        checks.shape("x", x, (None, None, self.obs_dim), "[B, T, obs_dim]")
        return x.to(self.dtype), mask.to(self.dtype)

    # ------------------------------------------------------------------ sampling, truth
    def sample(self, batch: int, steps: int, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, T, dz]``, ``x [B, T, dx]`` from the model."""
        batch, steps = checks.count("batch", batch), checks.count("steps", steps)
        lq, lr, l0 = (torch.linalg.cholesky(m) for m in (self.Q, self.R, self.Q0))
        with config.seeded(seed):
            eps = torch.randn(batch, steps, self.latent_dim, dtype=self.dtype, device=self.A.device)
            obs = torch.randn(batch, steps, self.obs_dim, dtype=self.dtype, device=self.A.device)
        zs = [self.mu0 + eps[:, 0] @ l0.T]
        for t in range(1, steps):
            zs.append(zs[-1] @ self.A.T + eps[:, t] @ lq.T)
        z = torch.stack(zs, 1)
        return z, z @ self.C.T + obs @ lr.T

    def log_likelihood(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) ``[B]`` by the Kalman filter (masked steps are unobserved)."""
        x, mask = self._check_x(x, mask)
        batch = x.shape[0]
        eye = torch.eye(self.latent_dim, dtype=self.dtype, device=x.device)
        m = self.mu0.expand(batch, -1)
        P = self.Q0.expand(batch, -1, -1)
        total = x.new_zeros(batch)
        for t in range(x.shape[1]):
            if t > 0:
                m, P = m @ self.A.T, self.A @ P @ self.A.T + self.Q
            valid = mask[:, t] > 0
            S = self.C @ P @ self.C.T + self.R                              # [B, dx, dx]
            total = total + valid * MultivariateNormal(m @ self.C.T, S).log_prob(x[:, t])
            gain = P @ self.C.T @ torch.linalg.inv(S)                        # [B, dz, dx]
            m_new = m + (gain @ (x[:, t] - m @ self.C.T)[..., None])[..., 0]
            P_new = (eye - gain @ self.C) @ P
            P_new = 0.5 * (P_new + P_new.mT)
            m = torch.where(valid[:, None], m_new, m)
            P = torch.where(valid[:, None, None], P_new, P)
        return total

    # --------------------------------------------------------------------- proposals
    def prior_proposal(self, steps: int) -> LinearGaussianProposal:
        """The bootstrap proposal p(z_t | z_{t-1}) (shared by every sequence, P = 1)."""
        steps = checks.count("steps", steps)
        F = self.A.expand(1, steps, -1, -1).clone()
        F[:, 0] = 0
        c = torch.zeros(1, steps, self.latent_dim, dtype=self.dtype, device=self.A.device)
        c[:, 0] = self.mu0
        L = torch.linalg.cholesky(self.Q).expand(1, steps, -1, -1).clone()
        L[:, 0] = torch.linalg.cholesky(self.Q0)
        return LinearGaussianProposal(F, c, L)

    def filtering_proposal(self, x, mask=None) -> LinearGaussianProposal:
        """The exact p(z_t | z_{t-1}, x_t), one per sequence (P = B)."""
        x, mask = self._check_x(x, mask)
        zeros = x.new_zeros(*x.shape[:2], self.latent_dim)
        return self._posterior_proposal(x, mask, zeros[..., None] * zeros[..., None, :], zeros)

    def smoothing_proposal(self, x, mask=None) -> LinearGaussianProposal:
        """The exact p(z_t | z_{t-1}, x_{t:T}), one per sequence (P = B)."""
        x, mask = self._check_x(x, mask)
        J, h = self._backward_information(x, mask)
        return self._posterior_proposal(x, mask, J, h)

    def _observation_information(self, x, mask):
        """C^T R^-1 C ``[B, T, dz, dz]`` and C^T R^-1 x_t ``[B, T, dz]``, zero where masked."""
        Rinv = torch.linalg.inv(self.R)
        G = (self.C.T @ Rinv @ self.C) * mask[..., None, None]
        g = (x @ (Rinv @ self.C)) * mask[..., None]
        return G, g

    def _backward_information(self, x, mask):
        """p(x_{t+1:T} | z_t) \\propto exp(-z^T J_t z / 2 + h_t^T z): ``J [B, T, dz, dz]``, ``h [B, T, dz]``."""
        G, g = self._observation_information(x, mask)
        Qinv = torch.linalg.inv(self.Q)
        AtQinv = self.A.T @ Qinv
        J = [torch.zeros_like(G[:, 0])]
        h = [torch.zeros_like(g[:, 0])]
        for t in range(x.shape[1] - 1, 0, -1):
            Pinv = torch.linalg.inv(Qinv + G[:, t] + J[-1])              # [B, dz, dz]
            J.append(AtQinv @ self.A - AtQinv @ Pinv @ AtQinv.T)
            h.append(((AtQinv @ Pinv) @ (g[:, t] + h[-1])[..., None])[..., 0])
        return torch.stack(J[::-1], 1), torch.stack(h[::-1], 1)

    def _posterior_proposal(self, x, mask, J, h) -> LinearGaussianProposal:
        G, g = self._observation_information(x, mask)
        steps = x.shape[1]
        first = torch.arange(steps, device=x.device) == 0                   # [T]
        prior_prec = torch.where(first[:, None, None], torch.linalg.inv(self.Q0), torch.linalg.inv(self.Q))
        cov = torch.linalg.inv(prior_prec + G + J)                          # [B, T, dz, dz]
        cov = 0.5 * (cov + cov.mT)
        F = torch.where(first[:, None, None], torch.zeros_like(self.A), torch.linalg.inv(self.Q) @ self.A)
        F = cov @ F                                                         # [B, T, dz, dz]
        prior_mean_info = torch.where(first[:, None], torch.linalg.inv(self.Q0) @ self.mu0, torch.zeros_like(self.mu0))
        c = (cov @ (g + h + prior_mean_info)[..., None])[..., 0]
        return LinearGaussianProposal(F, c, torch.linalg.cholesky(cov))

    def with_proposal(self, proposal) -> "ProposalModel":
        """The ``initial_state`` / ``step`` object for :func:`vitools.smc.particle_filter`.

        ``proposal``: a :class:`LinearGaussianProposal` or a :class:`LearnableProposal`.
        """
        return ProposalModel(self, proposal)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor,
                      inverse: torch.Tensor | None = None) -> torch.Tensor:
    """log N(value; mean, L L^T) over the last axis; ``[..., d]`` broadcast with ``L [..., d, d]``.

    ``inverse`` (``L^-1``, optional) lets a caller invert ``L`` once, at its own small batch
    shape, outside a loop over time: no per-sample solves, no LAPACK call per step.
    """
    inverse = torch.linalg.inv(scale_tril) if inverse is None else inverse
    white = (inverse @ (value - mean)[..., None])[..., 0]
    half_log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white.square().sum(-1) - half_log_det - 0.5 * value.shape[-1] * math.log(2 * math.pi)


class ProposalModel(torch.nn.Module):
    """The model with one proposal, in the protocol of :mod:`vitools.smc`. State: z ``[B, K, dz]``.
    A module whose parameters are a learnable proposal's (none for a fixed one), so estimators,
    :func:`vitools.diagnostics.grad_samples` and :func:`vitools.train.fit` can act on its targets."""

    def __init__(self, ssm: LinearGaussianSSM, proposal):
        super().__init__()
        if not isinstance(proposal, (LinearGaussianProposal, LearnableProposal)):
            raise ValueError(f"proposal must be a LinearGaussianProposal or LearnableProposal, "
                             f"got {type(proposal).__name__}")
        self.ssm, self.source = ssm, proposal
        self.chol = {name: torch.linalg.cholesky(getattr(ssm, name)) for name in ("Q", "R", "Q0")}
        self.inv = {name: torch.linalg.inv(L) for name, L in self.chol.items()}

    def on(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> SequenceTarget:
        """Sequences ``x`` ``[B, T, dx]`` as a target for the particle-filter bounds."""
        x, mask = check_sequences(x, mask)
        return SequenceTarget(self, x, mask)

    def example_target(self) -> SequenceTarget:
        """A target on one zero sequence as long as the proposal."""
        return self.on(torch.zeros(1, self.source.F.shape[1] if hasattr(self.source, "F") else 1, self.ssm.C.shape[0],
                                   dtype=self.ssm.C.dtype, device=self.ssm.C.device))

    def initial_state(self, x, num_particles):
        self.q = self.source.proposal() if isinstance(self.source, LearnableProposal) else self.source
        steps, batch = self.q.F.shape[1], self.q.F.shape[0]
        if steps < x.shape[1] or batch not in (1, x.shape[0]):
            raise ValueError(f"proposal covers {batch} sequence(s) x {steps} steps, "
                             f"which does not fit x of shape {tuple(x.shape)}")
        self.q_inv = torch.linalg.inv(self.q.scale_tril)                  # [P, T, dz, dz], once per run
        return x.new_zeros(x.shape[0], num_particles, self.ssm.latent_dim)

    def step(self, z_prev, t, x):
        ssm, q = self.ssm, self.q
        F, c, L = q.F[:, t, None], q.c[:, t, None], q.scale_tril[:, t, None]    # [P, 1, ...]
        mean = (F @ z_prev[..., None])[..., 0] + c                               # [B, K, dz]
        z = mean + (L @ torch.randn_like(mean)[..., None])[..., 0]
        log_q = gaussian_log_prob(z, mean, L, self.q_inv[:, t, None])            # [B, K]
        if t == 0:
            log_p = gaussian_log_prob(z, ssm.mu0, self.chol["Q0"], self.inv["Q0"])
        else:
            log_p = gaussian_log_prob(z, z_prev @ ssm.A.T, self.chol["Q"], self.inv["Q"])
        log_p = log_p + gaussian_log_prob(x[:, t, None], z @ ssm.C.T, self.chol["R"], self.inv["R"])
        return z, log_p - log_q


def proposal_distance(q, p) -> float:
    """Mean squared difference of two Gaussian proposals' parameters (``F``, ``c`` and the
    per-step scale), averaged over steps: 0 when ``q`` has learned ``p`` exactly."""
    return ((q.F - p.F).square().mean() + (q.c - p.c).square().mean()
            + (q.scale - p.scale).square().mean()).item()
