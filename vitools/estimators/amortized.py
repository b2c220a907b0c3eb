r"""Estimators for amortized latent-variable models: the model-level surrogate protocol.

The toy-problem estimators take ``(problem, theta, k)``. Estimators for a model with an
inference network (sigmoid belief nets, VAEs) follow the same surrogate convention
(Schulman et al. 2015, arXiv:1506.05254) at the level of a data batch:

``est.loss(model, x, k) -> [N]``
    one surrogate per example: its value is the Monte Carlo estimate of the objective
    (the ELBO or the $K$-sample bound) and its autograd gradient with respect to *all*
    parameters -- the model's $\theta$, the inference network's $\phi$ and the estimator's
    own baseline networks (``est.parameters(model)``, which minimise their own squared
    error through a term that is zero in value) -- is the estimator's gradient. Training
    ascends it: ``(-est.loss(model, x, k).mean()).backward()``.

Discrete models provide ``sample(x, k) -> (hs, log_q)``, ``log_p_layers(x, hs)`` and
``check_data(x)`` (see :class:`vitools.models.sbn.SBN`); continuous ones provide
``encode(x)`` (a reparameterizable $q$ with batch shape ``[N]``), ``decode(z)``
(the distribution of $x$ given ``z`` ``[K, N, d]``) and ``prior()`` (see
:class:`vitools.models.GaussianVAE`).

:func:`model_grad_samples` gives ``n`` independent gradient estimates for one example at
once (``torch.func.vmap`` over replicas, stateful estimators frozen), the model-level
counterpart of :func:`vitools.diagnostics.grad_samples`.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import checks, config
from .base import Estimator


def is_discrete_model(model) -> bool:
    return all(hasattr(model, a) for a in ("sample", "log_p_layers", "check_data"))


def is_continuous_model(model) -> bool:
    return all(hasattr(model, a) for a in ("encode", "decode", "prior"))


class ModelEstimator(Estimator):
    """Base class: subclasses set ``name``, ``latents`` ("discrete" or "continuous") and
    implement ``_loss(model, x, k, update)``."""

    latents = "discrete"

    def why_not(self, target) -> str | None:
        if self.latents == "discrete" and not is_discrete_model(target):
            if is_continuous_model(target):
                return "it is a score-function estimator for discrete latents; use iwae, stl or dreg"
            return "it estimates gradients of latent-variable models (loss(model, x, k)), not toy problems"
        if self.latents == "continuous" and not is_continuous_model(target):
            return "it needs reparameterizable continuous latents (a model with encode, decode and prior)"
        return None

    def surrogate(self, problem, theta, k=1):
        raise ValueError(f"estimator {self.name!r} works on models: call loss(model, x, k), not "
                         f"est(problem, theta, k)")

    def parameters(self, model) -> list[nn.Parameter]:
        """The estimator's own trainable parameters for ``model`` (baseline networks)."""
        return []

    def modules(self) -> dict[str, nn.Module]:
        """The estimator's own modules (for functional calls); empty when it has none."""
        return {}

    def check(self, model, x: torch.Tensor, k: int) -> None:
        reason = self.why_not(model)
        if reason is not None:
            raise ValueError(f"estimator {self.label!r} does not apply to {type(model).__name__}: {reason}")
        checks.count("k", k, minimum=self.min_samples)
        if hasattr(model, "check_data"):
            model.check_data(x)
        elif hasattr(model, "_check_x"):
            model._check_x(x)
        else:
            checks.finite("x", x)

    def loss(self, model, x: torch.Tensor, k: int = 1, update: bool = True) -> torch.Tensor:
        """The per-example surrogate ``[N]`` (see the module docstring). ``update=False``
        leaves running statistics untouched (diagnostics at a fixed state)."""
        self.check(model, x, k)
        return self._loss(model, x, k, update)

    def _loss(self, model, x, k, update):
        raise NotImplementedError


class _Bundle(nn.Module):
    """The model and an estimator's modules under one roof, for ``functional_call``."""

    def __init__(self, estimator: ModelEstimator, model: nn.Module):
        super().__init__()
        self.model = model
        self.aux = nn.ModuleDict(estimator.modules())
        self.estimator = estimator

    def forward(self, x, k):
        return self.estimator._loss(self.model, x, k, False).sum()


def model_grad_samples(estimator: ModelEstimator, model: nn.Module, x: torch.Tensor, n: int = 10_000,
                       k: int = 1, seed: int | None = 0, chunk: int = 4096) -> dict[str, torch.Tensor]:
    """``n`` independent gradient estimates of ``estimator`` for one example ``x`` (``[D]`` or
    ``[1, D]``), each using ``k`` latent samples: ``{parameter name: [n, *shape]}``.

    Names are ``model.<name>`` and ``aux.<name>`` (baseline networks). Vectorized with
    ``torch.func.vmap(grad)`` over replicas (different randomness per replica), in chunks of
    ``chunk`` replicas; the estimator's running statistics are frozen.
    """
    n = checks.count("n", n)
    chunk = checks.count("chunk", chunk)
    x = x.reshape(1, -1) if x.dim() == 1 else x
    if x.shape[0] != 1:
        raise ValueError(f"x must be one example ([D] or [1, D]), got shape {tuple(x.shape)}")
    estimator.parameters(model)                        # build lazy baseline networks
    estimator.check(model, x, k)
    bundle = _Bundle(estimator, model)
    params = {name: p.detach() for name, p in bundle.named_parameters()}

    def one(p, xi):
        return torch.func.functional_call(bundle, p, (xi[None], k))

    per_replica = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0), randomness="different")
    out: dict[str, list[torch.Tensor]] = {name: [] for name in params}
    with config.seeded(seed):
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            grads = per_replica(params, x.expand(size, x.shape[1]))
            for name in out:
                out[name].append(grads[name])
    return {name: torch.cat(parts) for name, parts in out.items()}


def flat(grads: dict[str, torch.Tensor], prefix: str | tuple = "") -> torch.Tensor:
    """Concatenate the gradient samples whose names start with ``prefix`` (or with one of
    a tuple of prefixes): ``[n, P]``."""
    parts = [g.flatten(1) for name, g in grads.items() if name.startswith(prefix)]
    if not parts:
        raise ValueError(f"prefix must match some parameter name, got {prefix!r}; names: {sorted(grads)}")
    return torch.cat(parts, 1)


def group_variance(grads: dict[str, torch.Tensor], groups: dict[str, list[str]]) -> dict[str, float]:
    """Total variance (sum over parameters of the per-parameter variance) of gradient samples
    ``{name: [n, ...]}`` for each group ``{label: [name prefixes]}``."""
    out = {}
    for label, prefixes in groups.items():
        parts = [g.flatten(1) for name, g in grads.items() if any(name.startswith(p) for p in prefixes)]
        if not parts:
            raise ValueError(f"groups[{label!r}] must match some parameter name, got {prefixes!r}")
        out[label] = torch.cat(parts, 1).double().var(0).sum().item()
    return out


def median_snr(grads: dict[str, torch.Tensor], prefix: str | tuple = "") -> float:
    """Median over parameters (named ``prefix...``, zero-variance ones left out) of the
    gradient SNR $|\\text{mean}| / \\text{sd}$ of samples ``{name: [n, ...]}``."""
    g = flat(grads, prefix).double()
    var = g.var(0)
    keep = var > 0
    if not keep.any():
        raise ValueError(f"grads must vary for some parameter named {prefix!r}..., all have zero variance")
    return (g.mean(0).abs()[keep] / var[keep].sqrt()).median().item()
