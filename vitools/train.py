r"""One small fit loop for every notebook: minibatches, a progress bar, a history.

Stochastic optimisation of a Monte Carlo objective (Robbins & Monro 1951; Adam: Kingma &
Ba 2015, arXiv:1412.6980), as used to train the VAE of Kingma & Welling 2014
(arXiv:1312.6114) and every later model of the workbook: ``loss_fn(batch)`` returns a
scalar to *minimise* (e.g. ``-vae.elbo(batch).mean()``, or ``-surrogate.mean()`` for a
score-function or FIVO surrogate), and :func:`fit` does the rest.

Example::

    >>> vae = vt.models.GaussianVAE(latent_dim=2, seed=0)
    >>> history = vt.train.fit(lambda x: -vae.elbo(x).mean(), vae, x_train, steps=2000,
    ...                        batch_size=100, lr=1e-3, eval_fn=lambda: vae.elbo(x_test).mean())
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
from tqdm.auto import tqdm

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


def fit(loss_fn: Callable, params_or_module, data=None, steps: int = 1000, batch_size: int = 100,
        lr: float = 1e-3, optimizer: str | torch.optim.Optimizer = "adam", eval_fn: Callable | None = None,
        eval_every: int | None = None, seed: int | None = 0, progress: bool = True, device=None,
        log_every: int = 25, desc: str = "fit") -> History:
    """Minimise ``loss_fn`` by stochastic gradient steps; return a :class:`History`.

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
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
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
        bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=True)
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
            opt.step()
            history.steps.append(step)
            history.seconds.append(time.perf_counter() - start)
            pending.append(loss.detach().reshape(()))
            if step % log_every == 0 or step == steps:
                flush()
            if eval_fn is not None and (step % eval_every == 0 or step == steps):
                evaluate(step)
        bar.close()
    return history
