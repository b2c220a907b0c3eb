r"""Few-shot episodes for :class:`vitools.models.memory.MemoryVAE`: memories of exemplars and the
digits they should explain, drawn from labelled data.

Generative few-shot learning (Bornschein et al. 2017, arXiv:1709.07116, Sec. 4): the model is
trained on some classes and scored on digits of classes it never saw, given a memory holding a
few exemplars of the digit's class. A training episode is a memory of ``shots`` exemplars of each
of ``ways`` distinct classes (``S = ways * shots`` slots) and a batch of other digits of those
classes, so that the address posterior has to find the right exemplars among distractors.

Example::

    >>> episodes = FewShotEpisodes(x_train, y_train, classes=(0, 1, 2, 3, 4, 5, 6), ways=2, shots=4)
    >>> x, memory = episodes.sample(32)          # [32, 784], [8, 784]
    >>> memory = episodes.memory(7, shots=4)     # four exemplars of class 7 (if it is in the data)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import checks

__all__ = ["FewShotEpisodes"]


class FewShotEpisodes:
    """Episodes from ``x`` ``[N, D]`` with integer ``labels`` ``[N]``, restricted to ``classes``.

    ``sample(batch_size)`` -> ``(x [batch_size, D], memory [ways * shots, D])``: the memory's exemplars
    and the batch are disjoint, the batch's digits spread evenly over the episode's classes.
    Draws use ``generator`` (a ``torch.Generator``; default: torch's global one).
    """

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], ways: int = 2,
                 shots: int = 4, generator: torch.Generator | None = None):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a tensor [N, D], got {getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(labels, torch.Tensor) or labels.shape != x.shape[:1] or labels.is_floating_point() \
                or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor [{x.shape[0]}], got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        self.classes = tuple(int(c) for c in classes)
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"classes must be distinct class labels, got {classes!r}")
        self.ways = checks.count("ways", ways)
        self.shots = checks.count("shots", shots)
        if self.ways > len(self.classes):
            raise ValueError(f"ways must be <= the number of classes ({len(self.classes)}), got {ways}")
        self.x, self.generator = x, generator
        self.index = {c: torch.nonzero(labels.cpu() == c).flatten() for c in self.classes}
        for c, rows in self.index.items():
            if rows.numel() < self.shots + 1:
                raise ValueError(f"classes must each have more than shots = {self.shots} examples; class {c} "
                                 f"has {rows.numel()}")

    @property
    def slots(self) -> int:
        """Memory slots of a training episode, ``ways * shots``."""
        return self.ways * self.shots

    def _perm(self, n):
        return torch.randperm(n, generator=self.generator)

    def sample(self, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """One episode: ``(x [batch_size, D], memory [ways * shots, D])``."""
        batch_size = checks.count("batch_size", batch_size)
        chosen = [self.classes[i] for i in self._perm(len(self.classes))[:self.ways].tolist()]
        per = [batch_size // self.ways + (i < batch_size % self.ways) for i in range(self.ways)]
        memory, batch = [], []
        for c, n in zip(chosen, per):
            rows = self.index[c]
            take = rows[self._perm(rows.numel())]
            memory.append(take[:self.shots])
            rest = take[self.shots:]
            batch.append(rest[torch.randint(rest.numel(), (n,), generator=self.generator)])
        return self.x[torch.cat(batch).to(self.x.device)], self.x[torch.cat(memory).to(self.x.device)]

    def memory(self, cls: int, shots: int | None = None) -> torch.Tensor:
        """``shots`` (default: the episodes') random exemplars of class ``cls``: ``[shots, D]``."""
        shots = self.shots if shots is None else checks.count("shots", shots)
        if cls not in self.index:
            raise ValueError(f"cls must be one of the episodes' classes {self.classes}, got {cls!r}")
        rows = self.index[cls]
        if shots > rows.numel():
            raise ValueError(f"shots must be <= {rows.numel()} (the examples of class {cls}), got {shots}")
        return self.x[rows[self._perm(rows.numel())[:shots]].to(self.x.device)]
