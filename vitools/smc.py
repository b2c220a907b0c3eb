r"""Particle filters in log space, and the ELBO / IWAE / FIVO bounds they give for sequences.

Follows Maddison et al. 2017, *Filtering Variational Objectives* (arXiv:1705.09279), with
Le et al. 2018, *Auto-Encoding Sequential Monte Carlo* (arXiv:1705.10306) and Naesseth et
al. 2018, *Variational Sequential Monte Carlo* (arXiv:1705.11140).

A sequential model with a proposal is any object with two methods (shapes for a batch of
``B`` sequences and ``K`` particles)::

    initial_state(x, num_particles) -> state          # tensor or tuple of tensors [B, K, ...]
    step(state, t, x) -> (state, log_alpha)           # log_alpha [B, K]: the incremental
                                                      # log weight log p(z_t, x_t | z_<t) - log q(z_t | ...)

:func:`particle_filter` runs it for ``T`` steps on ``x`` ``[B, T, ...]``, keeping the
weights ``log_w [B, K]`` accumulated since the last resampling and adding
``log mean_k exp(log_w)`` to ``log_z`` whenever it resamples and at the end. ``log_z`` is
the log of the particle filter's unbiased estimate of p(x). One code path gives

* ELBO: ``K = 1`` (``log_z`` is then exactly ``sum_t log_alpha_t``);
* IWAE: ``resampling="never"`` (the K paths are independent importance samples);
* FIVO: ``resampling="always"`` or ``"ess"`` (when the effective sample size < K/2).

Gradients follow the surrogate convention of :mod:`vitools.estimators.base`: the returned
``surrogate`` has the forward value ``log_z`` and the autograd gradient of the estimator.
``score_terms=False`` (FIVO's choice) drops the score terms of the discrete resampling
indices: the gradient then flows only through the reparameterized particles and weights
(biased for the gradient of E[log Z]). ``score_terms=True`` keeps them: each resampling
step adds ``stopgrad(future log-normalizers) * log p(ancestor indices)``, which makes the
gradient unbiased at the price of variance.

Variable-length sequences: pass ``mask [B, T]`` (ones then zeros). A masked step leaves
the state and weights unchanged and never resamples. :func:`pad_sequences` builds ``x`` and
``mask`` from a list of ``[T_i, ...]`` tensors.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from . import checks, config

SCHEMES = ("multinomial", "stratified", "systematic")
CRITERIA = ("always", "never", "ess")


# ---------------------------------------------------------------------------- resampling

def _no_nan(name: str, value: torch.Tensor) -> torch.Tensor:
    """Log weights may hold -inf (zero weight) but never NaN or +inf; they are floating point."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"{value.dtype if isinstance(value, torch.Tensor) else type(value).__name__}")
    bad = torch.isnan(value) | (value == math.inf)
    if bad.any():
        raise ValueError(f"{name} must not contain NaN or +inf, got {value[bad].flatten()[0].item()!r} "
                         f"in a tensor of shape {tuple(value.shape)}")
    return value


def normalize(log_weights: torch.Tensor) -> torch.Tensor:
    """Normalized weights ``[..., K]`` from log weights ``[..., K]`` (softmax over particles)."""
    _no_nan("log_weights", log_weights)
    if (log_weights == -math.inf).all(dim=-1).any():
        raise ValueError("log_weights must have at least one finite entry per row, got a row of -inf")
    return torch.softmax(log_weights, dim=-1)


def ess(log_weights: torch.Tensor) -> torch.Tensor:
    """Effective sample size ``(sum w)^2 / sum w^2`` over the last axis: ``[...]`` in [1, K]."""
    _no_nan("log_weights", log_weights)
    return torch.exp(2 * torch.logsumexp(log_weights, -1) - torch.logsumexp(2 * log_weights, -1))


def resample(log_weights: torch.Tensor, scheme: str = "multinomial",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestor indices ``[..., K]`` (long) drawn from the normalized weights ``[..., K]``.

    Every scheme is unbiased: the expected number of copies of particle k is K w_k.
    ``multinomial`` draws K independent indices; ``stratified`` one uniform in each of the
    K strata [j/K, (j+1)/K); ``systematic`` one shared uniform offset for all strata.
    """
    checks.choice("scheme", scheme, SCHEMES)
    weights = normalize(log_weights)
    batch, k = weights.shape[:-1], weights.shape[-1]
    flat = weights.reshape(-1, k)                                     # [M, K]
    if scheme == "multinomial":
        ancestors = torch.multinomial(flat, k, replacement=True, generator=generator)
    else:
        shape = (flat.shape[0], k if scheme == "stratified" else 1)
        u = torch.rand(shape, generator=generator, device=flat.device, dtype=flat.dtype)
        points = (torch.arange(k, device=flat.device, dtype=flat.dtype) + u) / k   # [M, K]
        cumulative = torch.cumsum(flat, dim=-1)
        ancestors = torch.searchsorted(cumulative, points, right=True).clamp_(max=k - 1)
    return ancestors.reshape(*batch, k)


def gather_particles(state, ancestors: torch.Tensor):
    """Select particles: every tensor ``[B, K, ...]`` of ``state`` indexed by ``ancestors [B, K]``."""
    if isinstance(state, (tuple, list)):
        return type(state)(gather_particles(s, ancestors) for s in state)
    index = ancestors.reshape(*ancestors.shape, *([1] * (state.dim() - 2))).expand_as(state)
    return torch.gather(state, 1, index)


def _where(keep: torch.Tensor, new, old):
    """``new`` where ``keep [B]`` is true, else ``old``, for a state (tensor or tuple)."""
    if isinstance(new, (tuple, list)):
        return type(new)(_where(keep, n, o) for n, o in zip(new, old))
    return torch.where(keep.reshape(-1, *([1] * (new.dim() - 1))), new, old)


# --------------------------------------------------------------------------- sequences

def pad_sequences(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of ``[T_i, ...]`` tensors -> ``x [B, T_max, ...]`` (zero-padded), ``mask [B, T_max]``."""
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise ValueError(f"sequences must be a non-empty list of tensors, got {type(sequences).__name__}")
    tails = {tuple(s.shape[1:]) for s in sequences}
    if len(tails) != 1 or any(s.dim() < 1 or s.shape[0] < 1 for s in sequences):
        raise ValueError(f"sequences must share every dimension but the first (time), got shapes "
                         f"{[tuple(s.shape) for s in sequences]}")
    lengths = torch.tensor([s.shape[0] for s in sequences], device=sequences[0].device)
    x = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)
    mask = torch.arange(x.shape[1], device=x.device) < lengths[:, None]
    return x, mask.to(x.dtype)


def check_sequences(x, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``x [B, T, ...]`` and ``mask [B, T]`` (default all ones); returns both."""
    if isinstance(x, (list, tuple)):
        lengths = [getattr(s, "shape", (None,))[0] for s in x]
        raise ValueError(f"x must be one padded tensor [B, T, ...], got a list of sequences of lengths "
                         f"{lengths}; pad them with vitools.smc.pad_sequences and pass the mask")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor [B, T, ...], got {getattr(x, 'shape', type(x).__name__)}")
    checks.finite("x", x)
    if mask is None:
        return x, torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    mask = torch.as_tensor(mask, device=x.device)
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(x.shape[:2])} (x's [B, T]), got {tuple(mask.shape)}")
    checks.binary("mask", mask)
    if (mask[:, 1:] > mask[:, :-1]).any() or (mask[:, 0] == 0).any():
        raise ValueError("mask must be ones then zeros along time with at least one step per sequence, "
                         f"got {mask.int().tolist()[:4]}...")
    return x, mask.to(x.dtype)


def model_dtype(model) -> torch.dtype | None:
    """The floating dtype a sequence model computes in: its ``dtype`` attribute, that of the
    model it wraps (``.ssm``), or that of its first floating parameter; ``None`` if it has none."""
    for owner in (model, getattr(model, "ssm", None)):
        dtype = getattr(owner, "dtype", None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return dtype
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


# ------------------------------------------------------------------------- the filter

@dataclasses.dataclass
class FilterResult:
    """What :func:`particle_filter` returns (``B`` sequences, ``T`` steps, ``K`` particles)."""

    log_z: torch.Tensor            # [B]  log of the unbiased estimate of p(x)
    surrogate: torch.Tensor        # [B]  value log_z; gradient = the chosen estimator
    num_steps: torch.Tensor        # [B]  valid steps (mask sum): the per-step bound is log_z / num_steps
    ess: torch.Tensor              # [B, T] effective sample size after step t's reweighting
    resampled: torch.Tensor        # [B, T] bool: resampled after step t
    log_weights: torch.Tensor      # [B, K] final log weights (since the last resampling)
    state: object                  # final particles
    log_z_steps: torch.Tensor      # [B, T] running log_z (incl. pending weights) after step t


def particle_filter(model, x: torch.Tensor, num_particles: int, mask: torch.Tensor | None = None,
                    resampling: str = "always", scheme: str = "multinomial",
                    score_terms: bool = False, seed: int | None = None) -> FilterResult:
    """Run a particle filter over ``x [B, T, ...]``; see the module docstring.

    ``resampling``: ``"always"`` (every step but the last), ``"never"`` (IWAE) or ``"ess"``
    (when ESS < K/2). ``scheme``: ``"multinomial"``, ``"stratified"`` or ``"systematic"``.
    ``seed``: run with torch's generators seeded (``None``: the current random state).
    """
    with config.seeded(seed):
        return _run(model, x, num_particles, mask, resampling, scheme, score_terms)


def _run(model, x, num_particles, mask, resampling, scheme, score_terms) -> FilterResult:
    num_particles = checks.count("num_particles", num_particles)
    checks.choice("resampling", resampling, CRITERIA)
    checks.choice("scheme", scheme, SCHEMES)
    if not isinstance(score_terms, bool):
        raise ValueError(f"score_terms must be True or False, got {score_terms!r}")
    if score_terms and scheme != "multinomial":
        raise ValueError(f"score_terms=True needs multinomial resampling (the only scheme whose ancestor "
                         f"probabilities factorize over particles), got scheme={scheme!r}")
    x, mask = check_sequences(x, mask)
    dtype = model_dtype(model)
    if dtype is not None:                     # the filter computes in the model's dtype
        x, mask = x.to(dtype), mask.to(dtype)
    batch, steps, k = x.shape[0], x.shape[1], num_particles
    state = model.initial_state(x, k)
    log_w = x.new_zeros(batch, k)
    log_z = x.new_zeros(batch)
    ess_t, resampled_t, log_z_t = [], [], []
    score_logp, score_time = [], []      # log p(ancestors) [B] and log_z before that resampling
    for t in range(steps):
        valid = mask[:, t] > 0                                        # [B]
        new_state, log_alpha = model.step(state, t, x)
        _no_nan("log_alpha (the model's incremental log weight)", log_alpha.detach())
        state = _where(valid, new_state, state)
        log_w = log_w + torch.where(valid[:, None], log_alpha, torch.zeros_like(log_alpha))
        ess_t.append(ess(log_w.detach()))
        log_z_t.append(log_z + torch.logsumexp(log_w, -1) - math.log(k))
        if resampling == "never" or t == steps - 1 or k == 1:
            do = torch.zeros_like(valid)
        elif resampling == "always":
            do = valid & (mask[:, t + 1] > 0)
        else:
            do = valid & (mask[:, t + 1] > 0) & (ess_t[-1] < k / 2)
        resampled_t.append(do)
        if do.any():
            log_z = log_z + torch.where(do, torch.logsumexp(log_w, -1) - math.log(k), torch.zeros_like(log_z))
            ancestors = resample(log_w.detach(), scheme)
            if score_terms:
                logp = torch.log_softmax(log_w, -1).gather(1, ancestors).sum(-1)   # [B]
                score_logp.append(torch.where(do, logp, torch.zeros_like(logp)))
                score_time.append(log_z.detach())
            keep = torch.arange(k, device=x.device).expand(batch, k)
            ancestors = torch.where(do[:, None], ancestors, keep)
            state = gather_particles(state, ancestors)
            log_w = torch.where(do[:, None], torch.zeros_like(log_w), log_w)
    log_z = log_z + torch.logsumexp(log_w, -1) - math.log(k)
    surrogate = log_z
    if score_terms and score_logp:
        # the indices drawn after step t only affect the normalizers that come later
        future = torch.stack([log_z.detach() - before for before in score_time])   # [R, B]
        logp = torch.stack(score_logp)                                              # [R, B]
        surrogate = log_z + (future * (logp - logp.detach())).sum(0)
    return FilterResult(log_z=log_z, surrogate=surrogate, num_steps=mask.sum(1),
                        ess=torch.stack(ess_t, 1), resampled=torch.stack(resampled_t, 1),
                        log_weights=log_w, state=state, log_z_steps=torch.stack(log_z_t, 1))


# ------------------------------------------------------------------------------ bounds

def elbo(model, x, mask=None, seed=None) -> FilterResult:
    """The ELBO's one-sample estimate: one particle, ``log_z = sum_t log_alpha_t``."""
    return particle_filter(model, x, 1, mask, resampling="never", seed=seed)


def iwae(model, x, num_particles: int, mask=None, seed=None) -> FilterResult:
    """The IWAE bound's estimate: K independent paths, no resampling."""
    return particle_filter(model, x, num_particles, mask, resampling="never", seed=seed)


def fivo(model, x, num_particles: int, mask=None, resampling: str = "always", scheme: str = "multinomial",
         score_terms: bool = False, seed=None) -> FilterResult:
    """The FIVO bound's estimate: a particle filter that resamples (``"always"`` or ``"ess"``)."""
    checks.choice("resampling", resampling, ("always", "ess"))
    return particle_filter(model, x, num_particles, mask, resampling=resampling, scheme=scheme,
                           score_terms=score_terms, seed=seed)


BOUNDS = {"elbo": dict(resampling="never"), "iwae": dict(resampling="never"),
          "fivo": dict(resampling="always")}


def bound(name: str, model, x, num_particles: int, mask=None, **kwargs) -> FilterResult:
    """``bound("elbo" | "iwae" | "fivo", ...)``: the same call for the three objectives
    (``"elbo"`` forces one particle)."""
    checks.choice("name", name, BOUNDS)
    options = {**BOUNDS[name], **kwargs}
    return particle_filter(model, x, 1 if name == "elbo" else num_particles, mask, **options)


# ---------------------------------------------------------------------------- training

def per_step(result: FilterResult) -> torch.Tensor:
    """The bound per time step (nats): ``sum log_z / sum num_steps`` over the batch."""
    return result.log_z.sum() / result.num_steps.sum()


def step_increments(result: FilterResult) -> torch.Tensor:
    r"""What each time step adds to the running bound, averaged over the batch: ``[T]``,
    $\log\hat Z_{\le t} - \log\hat Z_{\le t-1}$ (zero past a sequence's end); they sum to the
    batch mean of ``log_z_steps[:, -1]``."""
    steps = result.log_z_steps
    return torch.diff(steps, dim=1, prepend=torch.zeros_like(steps[:, :1])).mean(0)


def fit(model, parameters, x: torch.Tensor, mask: torch.Tensor | None = None, name: str = "fivo",
        num_particles: int = 4, steps: int = 100, lr: float = 1e-2, batch_size: int | None = None,
        seed: int | None = 0, progress: bool = True, **options) -> list[float]:
    """Maximize a bound with Adam: ``steps`` updates of ``parameters`` on minibatches of ``x``.

    Every update takes ``batch_size`` sequences (all when ``None``) and ascends the
    per-time-step surrogate of :func:`bound` ``name`` through :func:`vitools.train.fit`.
    ``options`` go to :func:`particle_filter` (``resampling``, ``scheme``, ``score_terms``).
    Returns the per-step bound of every update (the training curve).
    """
    from . import train

    checks.choice("name", name, BOUNDS)
    x, mask = check_sequences(x, mask)
    batch_size = x.shape[0] if batch_size is None else checks.count("batch_size", batch_size)
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters must hold at least one tensor to train, got none")

    def loss(batch):
        xb, mb = batch
        result = bound(name, model, xb, num_particles, mb, **options)
        return -result.surrogate.sum() / result.num_steps.sum()      # value: minus the per-step bound

    history = train.fit(loss, parameters, data=(x, mask), steps=steps, batch_size=batch_size, lr=lr,
                        seed=seed, progress=progress, device=x.device, log_every=1, desc=name)
    return [-value for value in history.loss]
