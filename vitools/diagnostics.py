r"""Gradient diagnostics: many independent estimates at once, their statistics, the truth.

:func:`grad_samples` replicates $\theta$ ``n`` times along a new batch dimension and takes a
single backward pass through the estimator's surrogate, so ``n`` independent gradient
estimates (each from ``k`` samples) cost one vectorized call, not a Python loop.
:func:`summarize` turns them into mean, variance, signal-to-noise ratio and the z-score of
the bias against an exact gradient. :func:`exact_variance` computes an estimator's variance
by numerical integration for Gaussian problems, reproducing the variance curves of Mohamed
et al. 2020, *Monte Carlo Gradient Estimation in Machine Learning* (arXiv:1906.10652),
Figures 2 and 3.

Example::

    >>> g = grad_samples(vt.estimators.get("pathwise"), problem, theta, n=10_000, k=1, seed=0)
    >>> summarize(g, exact=problem.exact_grad(theta))
"""
from __future__ import annotations

import dataclasses

import torch

from . import checks, config
from .targets import ProblemTarget, Target

MAX_DRAWS_PER_CHUNK = 2**21
ROUNDING_ULPS = 16


def grad_samples(estimator, problem, theta: torch.Tensor | None = None, n: int = 10_000, k: int = 1,
                 seed: int | None = 0, force: bool = False, warm_up: bool = True):
    """``n`` independent gradient estimates, each using ``k`` samples.

    Toy problems, ``grad_samples(est, problem, theta, ...)``: a tensor ``[n, *theta.shape]``.
    Vectorized: ``theta`` is replicated ``n`` times and one backward pass through the surrogate
    gives every estimate (in chunks of at most ``MAX_DRAWS_PER_CHUNK`` draws). With ``warm_up``
    an estimator with learned state first forgets it and is warmed up at ``theta``
    (:meth:`~vitools.estimators.base.Estimator.warm_up`); the estimates are then drawn with it
    frozen (``eval()`` mode).

    Model targets, ``grad_samples(est, model.on(x), n=..., k=...)``: ``{parameter name: [n, *shape]}``
    for the model's parameters (``model.<name>``) and the estimator's own
    (``estimator.<name>``), each estimate the gradient of the surrogate summed over the batch ``x``;
    vectorized with ``torch.func.vmap`` over replicas (different randomness each; a sequence
    target, whose particle filter branches on its weights, one replica at a time), the estimator
    frozen. The model target form does not warm up: call ``est.warm_up`` first.

    An estimator whose assumptions fail raises ``ValueError`` unless ``force=True``, which is how
    a notebook shows the failure.
    """
    n = checks.count("n", n)
    k = checks.count("k", k, minimum=getattr(estimator, "min_samples", 1))
    if isinstance(problem, Target):
        if theta is not None:
            raise ValueError("theta must be None for a target (it already holds its parameters), got a tensor")
        return _model_grad_samples(estimator, problem, n, k, seed, force)
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"theta must be a tensor of the problem's parameters, got {type(theta).__name__}")
    checks.finite("theta", theta.detach())
    target = ProblemTarget(problem, theta.detach())
    if not force:
        reason = estimator.why_not(target)
        if reason is not None:
            raise ValueError(f"estimator {estimator.label!r} does not apply to {problem!r}: {reason} "
                             "(pass force=True to run it anyway)")
    theta = theta.detach()
    check_batch_convention(problem, theta)
    chunk = max(1, MAX_DRAWS_PER_CHUNK // k)
    grads = []
    was_training = estimator.training
    with config.seeded(seed):
        if warm_up and estimator.warm_up_steps:
            estimator.reset()
            estimator.warm_up(ProblemTarget(problem, theta), k)       # at copies of theta
        estimator.eval()
        try:
            for start in range(0, n, chunk):
                size = min(chunk, n - start)
                replicated = theta.expand(size, *theta.shape).clone().requires_grad_(True)
                with torch.enable_grad():
                    surrogate = estimator(ProblemTarget(problem, replicated), k, check=not force).surrogate
                    (grad,) = torch.autograd.grad(surrogate.sum(), replicated, allow_unused=True)
                grads.append(torch.zeros_like(replicated) if grad is None else grad)
        finally:
            estimator.train(was_training)
    return torch.cat(grads)


def check_batch_convention(problem, theta: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``problem.distribution`` follows ``theta``'s leading batch
    dimensions (replicating ``theta`` must replicate the distribution's batch shape)."""
    single = problem.distribution(theta)     # validates theta here, so errors show its shape
    double = problem.distribution(theta.expand(2, *theta.shape))
    if tuple(double.batch_shape) != (2, *single.batch_shape):
        raise ValueError(
            f"problem.distribution must follow theta's leading batch dimensions: at theta of shape "
            f"{tuple(theta.shape)} its batch shape is {tuple(single.batch_shape)}, at theta of shape "
            f"{(2, *theta.shape)} it is {tuple(double.batch_shape)}, not {(2, *single.batch_shape)}; "
            f"index the parameters as theta[..., i], not theta[i]")


def _model_grad_samples(estimator, target, n, k, seed, force, chunk: int = 4096):
    model = target.model()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"problem must be a model target (model.on(x), the model an nn.Module) or a toy "
                         f"problem with theta, got {target.describe()}")
    if not force:
        reason = estimator.why_not(target)
        if reason is not None:
            raise ValueError(f"estimator {estimator.label!r} does not apply to {target.describe()}: {reason}")
    was_training = estimator.training
    estimator.eval()                                            # frozen: no running statistic moves
    try:
        with torch.no_grad():
            estimator(target, k, check=False)                   # builds its state for this target
    except BaseException:
        estimator.train(was_training)
        raise
    bundle = _Bundle(model, estimator)
    params = {name: p.detach() for name, p in bundle.named_parameters()}

    def one(p, _replica):
        return torch.func.functional_call(bundle, p, (target, k))

    if getattr(target, "vmappable", True):
        per_replica = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0), randomness="different")
    else:                                   # its computation branches on data: one replica at a time
        def per_replica(p, replicas):
            rows = [torch.func.grad(one)(p, r) for r in replicas]
            return {name: torch.stack([row[name] for row in rows]) for name in p}
    out: dict[str, list[torch.Tensor]] = {name: [] for name in params}
    try:
        with config.seeded(seed):
            for start in range(0, n, chunk):
                size = min(chunk, n - start)
                grads = per_replica(params, torch.zeros(size, device=target_device(target)))
                for name in out:
                    out[name].append(grads[name])
    finally:
        estimator.train(was_training)
    return {name: torch.cat(parts) for name, parts in out.items()}


class _Bundle(torch.nn.Module):
    """The model and the estimator under one roof, for ``torch.func.functional_call``."""

    def __init__(self, model, estimator):
        super().__init__()
        self.model, self.estimator = model, estimator

    def forward(self, target, k):
        return self.estimator(target, k, check=False).surrogate.sum()


def target_device(target) -> torch.device:
    model = target.model()
    return next(model.parameters()).device if model is not None else torch.device("cpu")


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


def model_grad_samples(estimator, model, x: torch.Tensor, n: int = 10_000, k: int = 1,
                       seed: int | None = 0) -> dict[str, torch.Tensor]:
    """Deprecated: ``grad_samples(estimator, model.on(x), n=n, k=k, seed=seed)`` for one example."""
    x = x.reshape(1, -1) if x.dim() == 1 else x
    if x.shape[0] != 1:
        raise ValueError(f"x must be one example ([D] or [1, D]), got shape {tuple(x.shape)}")
    return grad_samples(estimator, model.on(x), n=n, k=k, seed=seed)


@dataclasses.dataclass
class GradientSummary:
    """Per-parameter statistics of ``n`` gradient estimates (each field is ``[*theta.shape]``)."""

    mean: torch.Tensor
    variance: torch.Tensor
    std_error: torch.Tensor
    snr: torch.Tensor
    exact: torch.Tensor | None
    bias_z: torch.Tensor | None
    n: int
    variance_std_error: torch.Tensor | None = None

    @property
    def squared_bias(self) -> float:
        r"""$\|\bar g - \nabla\|^2 - \mathrm{tr}\,\mathrm{Var}/n$: the squared bias of the estimator,
        less the part the sample mean's own noise contributes on average (so it can be negative when
        no bias is resolved). Needs ``exact``."""
        if self.exact is None:
            raise ValueError("exact must be given to summarize() for the squared bias, got None")
        return float(((self.mean - self.exact) ** 2).sum() - self.variance.sum() / self.n)

    def __repr__(self) -> str:
        rows = [f"GradientSummary over n={self.n} estimates"]
        header = f"{'':>6} {'mean':>11} {'variance':>11} {'SNR':>8}"
        if self.exact is not None:
            header += f" {'exact':>11} {'bias z':>8}"
        rows.append(header)
        for i in range(self.mean.numel()):
            row = (f"[{i:>3}] {self.mean.flatten()[i]:>11.4g} {self.variance.flatten()[i]:>11.4g}"
                   f" {self.snr.flatten()[i]:>8.3g}")
            if self.exact is not None:
                row += f" {self.exact.flatten()[i]:>11.4g} {self.bias_z.flatten()[i]:>8.2f}"
            rows.append(row)
        return "\n".join(rows)


def summarize(grads: torch.Tensor, exact: torch.Tensor | None = None) -> GradientSummary:
    r"""Mean, variance (with its standard error), SNR $= |\text{mean}| / \text{std}$ and the bias z-score
    $(\text{mean} - \text{exact}) / (\text{std} / \sqrt{n})$ of gradient estimates ``[n, ...]``.

    A z-score beyond about 4 in absolute value means the estimator is biased (or the exact
    gradient is wrong); the test-suite uses exactly this check.
    """
    if grads.dim() < 1 or grads.shape[0] < 2:
        raise ValueError(f"grads must have at least 2 estimates along dim 0, got shape {tuple(grads.shape)}")
    checks.finite("grads", grads)
    g = grads.detach().double()
    n = g.shape[0]
    mean, variance = g.mean(0), g.var(0)
    std_error = (variance / n).sqrt()
    snr = mean.abs() / variance.sqrt()
    # Standard error of the sample variance, sqrt((m4 - var^2) / n): heavy tails make it large.
    fourth = ((g - mean) ** 4).mean(0)
    variance_std_error = ((fourth - variance**2).clamp_min(0) / n).sqrt()
    bias_z = None
    if exact is not None:
        exact = torch.as_tensor(exact, device=g.device).double()
        if exact.shape != mean.shape:
            raise ValueError(f"exact must have shape {tuple(mean.shape)}, got {tuple(exact.shape)}")
        # A zero-variance estimator is judged to the precision its arithmetic can resolve.
        rounding = ROUNDING_ULPS * torch.finfo(grads.dtype).eps * (mean.abs() + exact.abs())
        bias_z = (mean - exact) / torch.sqrt(std_error**2 + rounding**2).clamp_min(1e-300)
    return GradientSummary(mean, variance, std_error, snr, exact, bias_z, n, variance_std_error)


def two_sample_z(grads: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""Per-parameter z-score of the difference of two estimators' means,
    $(\bar g - \bar r) / \sqrt{s_g^2/n_g + s_r^2/n_r}$, for ``[n, ...]`` samples of each.

    Use it where no exact gradient exists but an unbiased estimator does (e.g. STL or DReG
    against IWAE): $|z| > 4$ says the two do not estimate the same thing. Parameters whose
    estimates have zero variance in both get 0 when the means agree exactly.
    """
    for name, g in (("grads", grads), ("reference", reference)):
        if g.dim() < 1 or g.shape[0] < 2:
            raise ValueError(f"{name} must have at least 2 estimates along dim 0, got shape {tuple(g.shape)}")
        checks.finite(name, g)
    if grads.shape[1:] != reference.shape[1:]:
        raise ValueError(f"reference must have per-estimate shape {tuple(grads.shape[1:])}, "
                         f"got {tuple(reference.shape[1:])}")
    a, b = grads.detach().double(), reference.detach().double()
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    diff = a.mean(0) - b.mean(0)
    return torch.where(se > 0, diff / torch.where(se > 0, se, torch.ones_like(se)),
                       torch.where(diff == 0, torch.zeros_like(diff), torch.full_like(diff, float("inf"))))


def compare(estimators, problem, theta, n: int = 10_000, k: int = 1, seed: int | None = 0,
            only_applicable: bool = True) -> dict[str, GradientSummary]:
    """Summaries for several estimators on the same problem, keyed by estimator label.

    ``only_applicable=False`` runs (forces) estimators whose assumptions fail too, to show how.
    """
    exact = problem.exact_grad(theta)
    results = {}
    for est in estimators:
        if only_applicable and not est.applies_to(problem):
            continue
        g = grad_samples(est, problem, theta, n=n, k=k, seed=seed, force=not only_applicable)
        results[est.label] = summarize(g, exact)
    return results


def exact_variance(estimator, problem, theta: torch.Tensor, k: int = 1, points: int = 20_001) -> torch.Tensor | None:
    r"""The variance of ``estimator``'s gradient with ``k`` samples by numerical integration, or
    ``None`` where the estimator has no integral for ``problem`` (see
    :meth:`~vitools.estimators.base.Estimator.exact_variance`; implemented for scalar Gaussian
    problems by the score function, pathwise and measure-valued estimators, reproducing the
    variance curves of Mohamed et al. 2020, arXiv:1906.10652, Figures 2 and 3)."""
    k = checks.count("k", k)
    checks.count("points", points, minimum=3)
    return estimator.exact_variance(problem, checks.finite("theta", theta.detach()), k, points)
