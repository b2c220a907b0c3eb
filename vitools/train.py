r"""One small fit loop for every notebook: minibatches, a progress bar, a history.

Stochastic optimisation of a Monte Carlo objective (Robbins & Monro 1951; Adam: Kingma &
Ba 2015, arXiv:1412.6980), as used to train the VAE of Kingma & Welling 2014
(arXiv:1312.6114) and every later model of the workbook: ``loss_fn(batch)`` returns a
scalar to *minimise* (e.g. ``-vae.elbo(batch).mean()``), and :func:`fit` does the rest.

With an estimator in place of ``loss_fn`` the same loop trains any model family through the one
estimator protocol (:mod:`vitools.estimators.base`): ``fit(est, model, x)`` builds the target
``model.on(batch)`` (``model.on(x, mask)`` for sequences, ``problem.at(theta)`` for toy problems),
ascends the surrogate's bound (or descends a toy's cost) on the model's parameters and descends the
estimate's ``control_loss`` on the estimator's own, each stepped exactly once per step, by its own
optimizer (the control loss never reaches the model's parameters).

Example::

    >>> vae = vt.models.GaussianVAE(latent_dim=2, seed=0)
    >>> history = vt.train.fit(lambda x: -vae.elbo(x).mean(), vae, x_train, steps=2000,
    ...                        batch_size=100, lr=1e-3, eval_fn=lambda: vae.elbo(x_test).mean())
    >>> sbn_history = vt.train.fit(vt.estimators.get("nvil"), sbn, x_train, steps=1000, k=1)
    >>> history.as_arrays()["loss"].shape
    (2000,)
"""
from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Callable

import numpy as np
import torch

from . import checks, config

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
              "adagrad": torch.optim.Adagrad}
RESERVED = ("steps", "loss", "seconds", "eval_steps", "eval_seconds")


@dataclasses.dataclass
class History:
    """What :func:`fit` saw. ``loss[i]`` is the minibatch loss of step ``steps[i]`` (1-based),
    ``seconds[i]`` the wall-clock time since the start of fit; each evaluation (at step 0, every
    ``eval_every`` steps and at the end) appends to ``eval_steps``, ``eval_seconds`` and
    ``evals[name]`` (``name="eval"`` when ``eval_fn`` returns a single number)."""

    steps: list = dataclasses.field(default_factory=list)
    loss: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    eval_steps: list = dataclasses.field(default_factory=list)
    eval_seconds: list = dataclasses.field(default_factory=list)
    evals: dict = dataclasses.field(default_factory=dict)
    control_loss: list = dataclasses.field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """``{"steps", "loss", "seconds", "eval_steps", "eval_seconds", <eval names>...}`` as arrays."""
        out = {name: np.asarray(getattr(self, name), dtype=float) for name in RESERVED}
        out["steps"] = out["steps"].astype(int)
        out["eval_steps"] = out["eval_steps"].astype(int)
        out.update({name: np.asarray(values, dtype=float) for name, values in self.evals.items()})
        return out

    def record_eval(self, step: int, seconds: float, result) -> None:
        """Append one evaluation: a number, a one-element tensor, or a dict of them."""
        values = result if isinstance(result, dict) else {"eval": result}
        for name, value in values.items():
            if name in RESERVED:
                raise ValueError(f"eval_fn result names must not be one of {RESERVED}, got {name!r}")
            value = torch.as_tensor(value).detach()
            if value.numel() != 1:
                raise ValueError(f"eval_fn must return numbers, got shape {tuple(value.shape)} for {name!r}")
            self.evals.setdefault(name, []).append(float(value.item()))
        self.eval_steps.append(step)
        self.eval_seconds.append(seconds)

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.4g}" if self.loss else ""
        return f"History({len(self.loss)} steps{last}, evals {sorted(self.evals)})"


def _parameters(params_or_module) -> list[torch.Tensor]:
    if isinstance(params_or_module, torch.nn.Module):
        params = [p for p in params_or_module.parameters() if p.requires_grad]
    elif isinstance(params_or_module, torch.Tensor):
        params = [params_or_module]
    else:
        try:
            params = list(params_or_module)
        except TypeError:
            raise ValueError("params_or_module must be a torch.nn.Module, a tensor or an iterable "
                             f"of tensors, got {type(params_or_module).__name__}") from None
    if not params:
        raise ValueError("params_or_module must hold at least one parameter, got none")
    for p in params:
        if not isinstance(p, torch.Tensor) or not p.is_leaf or not p.requires_grad:
            raise ValueError(f"params_or_module must hold leaf tensors with requires_grad=True, got {p!r}")
    return params


def _data(data, device) -> tuple[torch.Tensor, ...] | None:
    if data is None:
        return None
    tensors = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise ValueError("data must be a tensor [N, ...], a tuple of tensors with the same N, or None")
    n = tensors[0].shape[0]
    if n < 1 or any(t.shape[0] != n for t in tensors):
        raise ValueError(f"data must share a non-empty first dimension, got shapes {[tuple(t.shape) for t in tensors]}")
    for t in tensors:
        checks.finite("data", t)
    return tuple(t.to(device) for t in tensors)


def fit(loss_fn, params_or_module, data=None, steps: int = 1000, batch_size: int = 100,
        lr: float = 1e-3, optimizer: str | torch.optim.Optimizer = "adam", eval_fn: Callable | None = None,
        eval_every: int | None = None, seed: int | None = 0, progress: bool = True, device=None,
        log_every: int = 25, desc: str | None = None, k: int = 1, control_lr: float | None = None,
        theta: torch.Tensor | None = None, control_batch: int | None = None,
        schedule: Callable[[int], float] | None = None) -> History:
    """Minimise ``loss_fn`` by stochastic gradient steps; return a :class:`History`.

    ``loss_fn`` is a callable, or an estimator: then ``params_or_module`` is the model (or the
    toy problem, at ``theta``, default ``init_params()``), each step's loss is the negated
    surrogate of ``est(model.on(batch), k)`` per example (per time step for sequences; a toy's
    cost as it is), and the estimator's own parameters descend the ``control_loss`` with Adam at
    ``control_lr`` (default: the estimator's ``lr`` option, else ``lr``); ``history.evals`` gets
    no extra entries, ``history.control_loss`` the control loss per step. For a toy problem,
    ``control_batch`` takes the control loss from a separate estimate on that many replicas of
    ``theta`` (as the REBAR and RELAX toy experiments do) instead of the step's own estimate.
    ``schedule(step) -> factor`` multiplies the learning rate after each step (``LambdaLR``).

    ``data``: a tensor ``[N, ...]`` (or a tuple of tensors sharing ``N``, passed on as a
    tuple), moved once to ``device`` (default :func:`vitools.config.device`) and served in
    shuffled epochs of minibatches of ``min(batch_size, N)`` rows; ``data=None`` calls
    ``loss_fn()`` with no argument. ``optimizer``: a name in ``OPTIMIZERS`` (built with
    ``lr``) or an optimizer instance (e.g. to continue a run; ``lr`` is then ignored).
    ``eval_fn()`` runs under ``torch.no_grad`` at step 0, every ``eval_every`` steps
    (default ``steps // 10``) and at the end. ``seed`` fixes the shuffling and, inside the
    loop, torch's global generator (restored afterwards); ``seed=None`` uses the current
    random state. Loss values are synchronised every ``log_every`` steps (progress bar
    postfix, finiteness check: a NaN or infinite loss raises ``FloatingPointError``).
    """
    from .estimators.base import Estimator

    if isinstance(loss_fn, Estimator):
        loss_fn, params_or_module, controls = _estimator_loss(loss_fn, params_or_module, data, k, theta,
                                                              lr if control_lr is None else control_lr,
                                                              control_lr is not None, control_batch)
        desc = desc or controls.estimator.label
    else:
        controls = None
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    desc = desc or "fit"
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn must be callable or None, got {type(eval_fn).__name__}")
    steps = checks.count("steps", steps)
    batch_size = checks.count("batch_size", batch_size)
    log_every = checks.count("log_every", log_every)
    eval_every = checks.count("eval_every", eval_every if eval_every is not None else max(1, steps // 10))
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    device = config.device(device)
    params = _parameters(params_or_module)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        checks.choice("optimizer", optimizer, OPTIMIZERS)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        opt = OPTIMIZERS[optimizer](params, lr=float(checks.positive("lr", lr)))
    if schedule is not None and not callable(schedule):
        raise ValueError(f"schedule must be callable or None, got {type(schedule).__name__}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule is not None else None
    tensors = _data(data, device)
    history = History()
    with config.seeded(seed):
        gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
        start = time.perf_counter()
        order, cursor, pending = torch.empty(0, dtype=torch.long), 0, []

        def evaluate(step):
            with torch.no_grad():
                history.record_eval(step, time.perf_counter() - start, eval_fn())

        def flush():
            values = torch.stack(pending).cpu().tolist()
            bad = [(history.steps[-len(values) + i], v) for i, v in enumerate(values) if not np.isfinite(v)]
            history.loss.extend(values)
            pending.clear()
            if bad:
                raise FloatingPointError(f"loss_fn returned {bad[0][1]} at step {bad[0][0]}")
            bar.set_postfix(loss=f"{values[-1]:.4g}", refresh=False)

        if eval_fn is not None:
            evaluate(0)
        bar = config.progress(range(1, steps + 1), desc=desc, disable=not progress, leave=True)
        for step in bar:
            if tensors is None:
                loss = loss_fn()
            else:
                n = tensors[0].shape[0]
                size = min(batch_size, n)
                if cursor + size > order.numel():
                    order, cursor = torch.randperm(n, generator=gen), 0
                index = order[cursor:cursor + size].to(device)
                cursor += size
                batch = tuple(t[index] for t in tensors)
                loss = loss_fn(batch if len(batch) > 1 else batch[0])
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                got = (f"shape {tuple(loss.shape)}, requires_grad={loss.requires_grad}"
                       if isinstance(loss, torch.Tensor) else repr(loss))
                raise ValueError(f"loss_fn must return a scalar tensor that depends on the parameters, got {got}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if controls is not None:          # before opt.step(): the control loss's graph holds the parameters
                history.control_loss.append(controls.step())
            opt.step()
            if scheduler is not None:
                scheduler.step()
            history.steps.append(step)
            history.seconds.append(time.perf_counter() - start)
            pending.append(loss.detach().reshape(()))
            if step % log_every == 0 or step == steps:
                flush()
            if eval_fn is not None and (step % eval_every == 0 or step == steps):
                evaluate(step)
        bar.close()
    return history


def batches(model, x: torch.Tensor, batch_size: int = 100):
    """A callable giving ``model.on(minibatch)`` with ``min(batch_size, N)`` random rows of ``x``
    per call: what :meth:`~vitools.estimators.base.Estimator.warm_up` takes to fit baselines and
    control variates on a data set with the model held fixed."""
    batch_size = checks.count("batch_size", batch_size)
    model.on(x[:1])                                     # validates x once, with a clear error

    def target():
        index = torch.randint(x.shape[0], (min(batch_size, x.shape[0]),), device=x.device)
        return model.on(x[index])
    return target


class _Controls:
    """Steps an estimator's own parameters on the control loss of the step's estimate, once."""

    def __init__(self, estimator, lr: float):
        self.estimator, self.lr = estimator, float(checks.positive("control_lr", lr))
        self.pending = None
        self.optimizer = None
        self.params: list = []

    def step(self) -> float:
        out, self.pending = self.pending, None
        if out is None or out.control_loss is None:
            return float("nan")
        params = [p for p in self.estimator.parameters() if p.requires_grad]
        if self.optimizer is None or len(params) != len(self.params):
            self.params, self.optimizer = params, torch.optim.Adam(params, lr=self.lr)
        grads = torch.autograd.grad(out.control_loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.detach()
        self.optimizer.step()
        return float(out.control_loss.detach())


def _estimator_loss(estimator, model_or_problem, data, k, theta, lr, explicit_lr, control_batch=None):
    """``(loss_fn, parameters, controls)`` for :func:`fit` with an estimator."""
    from .targets import ProblemTarget

    k = checks.count("k", k, minimum=estimator.min_samples)
    control_lr = lr if explicit_lr else estimator.options.get("lr", lr)
    controls = _Controls(estimator, control_lr)
    estimator.train()
    if hasattr(model_or_problem, "on"):
        if data is None:
            raise ValueError(f"data must hold the training batches for {type(model_or_problem).__name__}, got None")
        if control_batch is not None:
            raise ValueError(f"control_batch applies to toy problems only, got {control_batch!r}")
        model = model_or_problem

        def loss(batch):
            target = model.on(*batch) if isinstance(batch, tuple) else model.on(batch)
            out = estimator(target, k)
            controls.pending = out
            norm = target.normalizer() if hasattr(target, "normalizer") else out.surrogate.numel()
            return _signed(target, out.surrogate.sum()) / norm
        return loss, model, controls
    if all(hasattr(model_or_problem, a) for a in ("init_params", "distribution", "cost")):
        if data is not None:
            raise ValueError(f"data must be None for a toy problem, got {type(data).__name__}")
        theta = model_or_problem.init_params() if theta is None else theta
        replicas = None if control_batch is None else checks.count("control_batch", control_batch, minimum=2)

        def loss():
            target = ProblemTarget(model_or_problem, theta)
            out = estimator(target, k)
            controls.pending = out
            if replicas is not None and out.control_loss is not None:
                replicated = theta.detach().expand(replicas, *theta.shape)
                controls.pending = estimator(ProblemTarget(model_or_problem, replicated), k)
            return _signed(target, out.surrogate.sum())
        return loss, [theta], controls
    raise ValueError(f"params_or_module must be a model with on(x) or a toy problem when training an "
                     f"estimator, got {type(model_or_problem).__name__}")


def _signed(target, value):
    """What the optimizer descends: the value itself for a target that is minimised (a toy's cost),
    its negative for one that is maximised (a bound), as ``target.sense`` says."""
    return value if target.sense == "minimize" else -value


def fit_toy(estimator, problem, steps: int = 300, lr: float = 0.05, k: int = 1, record_every: int = 10,
            variance_n: int = 200, control_batch: int = 16, seed: int = 0) -> dict:
    r"""Minimise $\mathbb{E}_{q_\theta}[f]$ over $\theta$ with :func:`fit` (Adam), as in the REBAR/RELAX
    toy figures: one ``k``-sample estimate per step for $\theta$; the estimator's control variates
    take one step per step on the control loss of ``control_batch`` estimates at the same $\theta$.
    Every ``record_every`` steps the variance of the estimate at
    the current $\theta$ is measured from ``variance_n`` fresh estimates (estimator frozen).
    Returns ``{"steps", "theta" [S, P], "log10_variance" [S], "exact_value" [S]}``."""
    checks.count("record_every", record_every)
    checks.count("variance_n", variance_n, minimum=2)
    estimator.reset()
    record = {"steps": [], "theta": [], "log10_variance": [], "exact_value": []}
    with config.seeded(seed):
        theta = problem.init_params()

    def measure():
        was_training = estimator.training
        estimator.eval()
        replicated = theta.detach().expand(variance_n, *theta.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(estimator(problem.at(replicated), k).surrogate.sum(), replicated)
        estimator.train(was_training)
        record["theta"].append(theta.detach().clone())
        record["log10_variance"].append(float(g.var(0).sum().clamp_min(1e-30).log10()))
        record["exact_value"].append(float(problem.exact_value(theta.detach())))
        return {"log10_variance": record["log10_variance"][-1]}

    history = fit(estimator, problem, steps=steps, lr=lr, k=k, theta=theta, eval_fn=measure,
                  eval_every=record_every, seed=seed, progress=False, control_batch=control_batch)
    keep = [i for i, step in enumerate(history.eval_steps) if step % record_every == 0 and step < steps]
    return {"steps": torch.tensor([history.eval_steps[i] for i in keep]),
            "theta": torch.stack([record["theta"][i] for i in keep]),
            "log10_variance": torch.tensor([record["log10_variance"][i] for i in keep]),
            "exact_value": torch.tensor([record["exact_value"][i] for i in keep])}
