r"""Generative few-shot learning with a memory-addressing VAE: data split, training, evaluation.

The experiment of Bornschein, Mnih, Zoran & Rezende 2017 (arXiv:1709.07116, Sec. 4.2) at workbook
scale: a :class:`~vitools.models.memory.MemoryVAE` is trained on episodes of some digit classes
(:class:`~vitools.models.memory_episodes.FewShotEpisodes`) and scored on digits of classes it never
saw, given a memory of a few exemplars of the digit's class (*right*), of another held-out class
(*wrong*) or a single blank exemplar (*empty*), against a plain Gaussian VAE with the same latent
size trained on the same classes. Every score is the same tight estimate: $\log p(x \mid M)$ exact
over the addresses with ``k`` importance samples of $z$ per slot
(:meth:`~vitools.models.memory.MemoryVAE.log_likelihood`), and the plain VAE's $\mathcal L_k$.

The address is trained by any registered discrete estimator on ``model.on(x, memory)``
(``METHODS``: VIMCO as in the paper, RLOO, Gumbel-Softmax) or by the exact sum over the slots
(``method=None``: no estimator).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from . import checks, config, data, estimators, train
from .models import sbn
from .models.memory import MemoryVAE
from .models.memory_episodes import FewShotEpisodes
from .models.vae import GaussianVAE

__all__ = ["METHODS", "FewShotExperiment"]

# label -> (registered estimator name, or None for the exact sum over slots; samples per step)
METHODS = {"VIMCO (K=5)": ("vimco", 5), "RLOO (K=5)": ("rloo", 5), "Gumbel-Softmax (K=5)": ("gumbel_softmax", 5),
           "exact sum over slots": (None, 1)}


class FewShotExperiment:
    """The bundled 28x28 digits (fixed binarization) split by class, with fixed memories.

    ``x_train``, ``y_train``: training digits of ``train_classes``. For the ``held_out`` classes:
    ``x_pool``, ``y_pool`` (their digits in the training split: exemplars for memories, never
    trained on) and ``x_eval``, ``y_eval`` (the first ``n_eval`` test digits of each). ``memories``:
    ``{class: [shots, D]}`` exemplars drawn from the pool with ``seed``; ``episodes``: training
    episodes of ``ways`` classes and ``shots`` exemplars each.
    """

    def __init__(self, held_out: Sequence[int] = (7, 8, 9), n_eval: int = 50, shots: int = 4, ways: int = 2,
                 seed: int = 0, device=None):
        held = tuple(int(c) for c in held_out)
        if not held or len(set(held)) != len(held) or not all(0 <= c <= 9 for c in held) or len(held) > 8:
            raise ValueError(f"held_out must be 1 to 8 distinct digit classes, got {held_out!r}")
        self.n_eval, self.shots = checks.count("n_eval", n_eval), checks.count("shots", shots)
        self.held_out, self.train_classes = held, tuple(c for c in range(10) if c not in held)
        x, y = data.load_mnist("bundled", "train", binarize="fixed", seed=0, return_labels=True, device=device)
        xt, yt = data.load_mnist("bundled", "test", binarize="fixed", seed=0, return_labels=True, device=device)
        is_held = torch.isin(y, torch.tensor(held, device=y.device))
        rows = torch.cat([torch.nonzero(yt == c).flatten()[:self.n_eval] for c in held])
        self.x_train, self.y_train, self.x_pool, self.y_pool = x[~is_held], y[~is_held], x[is_held], y[is_held]
        self.x_eval, self.y_eval = xt[rows], yt[rows]
        pool = FewShotEpisodes(self.x_pool, self.y_pool, held, ways=1, shots=self.shots,
                               generator=torch.Generator().manual_seed(seed))
        self.memories = {c: pool.memory(c) for c in held}
        self.episodes = FewShotEpisodes(self.x_train, self.y_train, self.train_classes, ways=ways, shots=self.shots,
                                        generator=torch.Generator().manual_seed(seed))

    def train(self, model: MemoryVAE, method: str | None, steps: int = 1000, batch_size: int = 32,
              lr: float = 1e-3, k: int = 5, seed: int = 0, eval_fn=None, eval_every: int | None = None,
              **options) -> train.History:
        """Train ``model`` on ``steps`` episodes with the registered estimator ``method`` (``k``
        samples, its ``options``) on the address, or with the exact sum over slots (``method=None``)."""
        est = None if method is None else estimators.get(method, **options)
        if est is not None:
            k = checks.count("k", k, minimum=est.min_samples)
            est.train()

        def loss():
            x, memory = self.episodes.sample(batch_size)
            if est is None:
                return -model.address_marginal_bound(x, memory).mean()
            return -est(model.on(x, memory), k).surrogate.mean()
        return train.fit(loss, model, steps=steps, lr=lr, seed=seed, eval_fn=eval_fn, eval_every=eval_every,
                         progress=config.progress_enabled(), desc=method or "exact")

    def _per_class(self, fn, rows_only: int | None = None) -> torch.Tensor:
        """``fn(x, right memory, wrong memory)`` per held-out class, concatenated in ``x_eval``'s order."""
        parts, held = [], self.held_out
        for i, c in enumerate(held):
            x = self.x_eval[self.y_eval == c][:rows_only]
            parts.append(fn(x, self.memories[c], self.memories[held[(i + 1) % len(held)]]).double().cpu())
        return torch.cat(parts)

    def scores(self, model: MemoryVAE, k: int = 1000, rows: int | None = None) -> dict[str, torch.Tensor]:
        r"""Per held-out digit ``[N]``: $\log p(x \mid M)$ with the ``right`` memory (its class's
        exemplars), a ``wrong`` one (the next held-out class's) and an ``empty`` one (one blank
        slot), ``k`` importance samples of $z$ per slot; ``rows``: the first digits of each class only."""
        blank = torch.zeros(1, self.x_eval.shape[1], device=self.x_eval.device)
        with config.seeded(0):
            return {"right": self._per_class(lambda x, m, w: model.log_likelihood(x, m, k), rows),
                    "wrong": self._per_class(lambda x, m, w: model.log_likelihood(x, w, k), rows),
                    "empty": self._per_class(lambda x, m, w: model.log_likelihood(x, blank, k), rows)}

    def address_report(self, model: MemoryVAE) -> dict[str, float]:
        r"""The address posterior on the held-out digits, means over digits: with the right memory
        alone, ``entropy`` and ``kl`` $= \mathrm{KL}(q(a \mid x, M) \,\|\, p(a))$ (nats); with a
        two-class memory (right and wrong exemplars side by side), ``entropy_mixed``, ``kl_mixed``
        and ``right_mass``, the posterior mass on the right class's slots (chance: 0.5)."""
        def alone(x, m, w):
            stats = model.address_statistics(x, m)
            return torch.stack([stats["entropy"], stats["kl"]], -1)

        def mixed(x, m, w):
            stats = model.address_statistics(x, torch.cat([m, w]))
            return torch.stack([stats["entropy"], stats["kl"], stats["log_q"].exp()[:, :m.shape[0]].sum(-1)], -1)
        a, b = self._per_class(alone).mean(0), self._per_class(mixed).mean(0)
        return {"entropy": a[0].item(), "kl": a[1].item(), "entropy_mixed": b[0].item(), "kl_mixed": b[1].item(),
                "right_mass": b[2].item()}

    def plain_vae_scores(self, vae: GaussianVAE, k: int = 1000, rows: int | None = None) -> torch.Tensor:
        r"""A plain VAE's $\mathcal L_k$ per held-out digit ``[N]`` (the same importance-sampling estimate)."""
        with config.seeded(0):
            return self._per_class(lambda x, m, w: sbn.bound_per_example(vae, x, k=k), rows)
