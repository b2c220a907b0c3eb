r"""Label trees: a distribution over $N$ items as a tree of binary choices, exact in $O(\log N)$.

Mnih & Hinton 2008, *A Scalable Hierarchical Distributed Language Model* (NIPS; the hierarchical
log-bilinear model), and Mnih & Teh 2012, *A fast and simple algorithm for training neural
probabilistic language models* (arXiv:1206.6426), which compare tree-structured and flat
output layers. Each item $i$ is a leaf of a binary tree; the path from the root to it is a
sequence of internal nodes $n_1, \dots, n_D$ and turns $d_j \in \{+1, -1\}$, and with a context
vector $u$ (here a user's embedding) and per-node vectors $q_n$ and biases $b_n$,

$$p(i \mid u) = \prod_{j=1}^{D} \sigma\big(d_j\,(u^\top q_{n_j} + b_{n_j})\big).$$

At every internal node the two branches' probabilities sum to one, so the leaves' probabilities
sum to one exactly: no normaliser over $N$ items is needed, and $\log p(i \mid u)$ and its
gradient cost $O(D\,d) = O(d \log N)$, against $O(N d)$ for a flat softmax (:class:`FlatSoftmax`).
The likelihood is a sum over a path, not an expectation: nothing needs sampling.

The tree matters: :meth:`LabelTree.balanced` splits items in a given (e.g. random) order;
:func:`split_tree` learns one as Mnih & Hinton do, from item representations (here the mean
embedding of the users who chose the item, under a model trained with a random tree), splitting
them recursively in two by 2-means with balanced halves.

:func:`simulate_feedback` draws an implicit-feedback data set (users choosing items; no ratings)
from a seeded hierarchical taste model, so that its provenance is this code and a seed.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, config

__all__ = ["FeedbackData", "simulate_feedback", "LabelTree", "FlatSoftmax", "split_tree", "fit_items",
           "popularity_log_prob", "item_representations"]


@dataclasses.dataclass
class FeedbackData:
    """Implicit feedback: (user, item) events ``train`` and ``test`` ``[E, 2]`` (long); ``genre``
    ``[items]`` the top level of the generating hierarchy; ``seed``."""

    train: torch.Tensor
    test: torch.Tensor
    users: int
    items: int
    genre: torch.Tensor
    seed: int


def simulate_feedback(users: int = 400, genres: int = 4, subgenres: int = 4, per_subgenre: int = 16,
                      events: int = 30, test_fraction: float = 0.2, seed: int = 0) -> FeedbackData:
    r"""Items in a two-level hierarchy (``genres`` x ``subgenres`` x ``per_subgenre``) with vectors
    $v_i = g + 0.7\,s + 0.3\,\varepsilon$ in $\mathbb{R}^8$ (genre, subgenre, item noise, all standard
    normal), a log-normal popularity; each user likes one genre and one of its subgenres,
    $w = 1.5\,g_u + 1.0\,s_u + 0.5\,\varepsilon$, and chooses ``events`` items with replacement from
    $\mathrm{softmax}(w^\top v_i / 2 + \log \mathrm{pop}_i)$. The last ``test_fraction`` of each user's
    events are held out. Seeded by ``seed`` alone."""
    users, events = checks.count("users", users), checks.count("events", events, minimum=2)
    genres, subgenres = checks.count("genres", genres), checks.count("subgenres", subgenres)
    per_subgenre = checks.count("per_subgenre", per_subgenre)
    frac = float(checks.probability("test_fraction", test_fraction, open_interval=True))
    seed = checks.count("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)     # noqa: E731
    g, s = randn(genres, 8), randn(genres, subgenres, 8)
    n = genres * subgenres * per_subgenre
    genre = torch.arange(genres).repeat_interleave(subgenres * per_subgenre)
    sub = torch.arange(subgenres).repeat_interleave(per_subgenre).repeat(genres)
    v = g[genre] + 0.7 * s[genre, sub] + 0.3 * randn(n, 8)
    log_pop = 0.5 * randn(n)
    ug = torch.randint(genres, (users,), generator=gen)
    us = torch.randint(subgenres, (users,), generator=gen)
    w = 1.5 * g[ug] + 1.0 * s[ug, us] + 0.5 * randn(users, 8)
    probs = torch.softmax(w @ v.T / 2 + log_pop, -1)
    chosen = torch.multinomial(probs, events, replacement=True, generator=gen)   # [users, events]
    cut = events - max(1, int(round(frac * events)))
    pairs = lambda c: torch.stack([torch.arange(users).repeat_interleave(c.shape[1]), c.reshape(-1)], 1)  # noqa: E731
    return FeedbackData(pairs(chosen[:, :cut]), pairs(chosen[:, cut:]), users, n, genre, seed)


def _check_events(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, prefix: str = ""):
    for name, value, bound in ((prefix + "users", users, n_users), (prefix + "items", items, n_items)):
        if not isinstance(value, torch.Tensor) or value.dtype != torch.long or value.dim() != 1:
            shown = (value.dtype, tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a 1-D long tensor, got {shown}")
        if value.numel() and (value.min() < 0 or value.max() >= bound):
            raise ValueError(f"{name} must lie in [0, {bound}), got values in [{value.min()}, {value.max()}]")
    if users.shape != items.shape:
        raise ValueError(f"{prefix}users and {prefix}items must have one shape, got {tuple(users.shape)} and {tuple(items.shape)}")


def _check_table(name: str, value, n_users: int, n_items: int) -> torch.Tensor:
    """(user, item) events ``[E >= 1, 2]`` of integer indices within range."""
    if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[-1] != 2 or not len(value):
        shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be (user, item) events of shape [E >= 1, 2], got {shown}")
    if value.is_floating_point() or value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must hold integer (user, item) indices, got dtype {value.dtype}")
    _check_events(value[:, 0].long(), value[:, 1].long(), n_users, n_items, prefix=f"{name} ")
    return value.long()


def _paths(groups) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Paths of a nested pair structure (a leaf is an int item): ``nodes`` and ``signs`` ``[N, D]``
    (``signs`` +1 left, -1 right, 0 padding) and the number of internal nodes."""
    paths: dict[int, list] = {}
    counter = [0]

    def visit(node, prefix):
        if isinstance(node, int):
            paths[node] = prefix
            return
        left, right = node
        me = counter[0]
        counter[0] += 1
        visit(left, prefix + [(me, 1.0)])
        visit(right, prefix + [(me, -1.0)])

    visit(groups, [])
    n = len(paths)
    if sorted(paths) != list(range(n)):
        raise ValueError(f"tree must hold every item 0..{n - 1} exactly once")
    depth = max(len(p) for p in paths.values())
    nodes, signs = torch.zeros(n, depth, dtype=torch.long), torch.zeros(n, depth)
    for item, path in paths.items():
        for j, (node, sign) in enumerate(path):
            nodes[item, j], signs[item, j] = node, sign
    return nodes, signs, counter[0]


def _halves(order: list[int]):
    if len(order) == 1:
        return order[0]
    mid = (len(order) + 1) // 2
    return (_halves(order[:mid]), _halves(order[mid:]))


class LabelTree(nn.Module):
    r"""$p(i \mid u)$ as a product of binary choices along item $i$'s path (see the module doc);
    ``tree`` a nested pair structure over the items ``0..N-1`` (``(left, right)``, leaves ints)."""

    def __init__(self, users: int, tree, dim: int = 16):
        super().__init__()
        self.users, self.dim = checks.count("users", users), checks.count("dim", dim)
        nodes, signs, internal = _paths(tree)
        self.items, self.tree = len(nodes), tree
        if self.items < 2:
            raise ValueError(f"tree must hold at least 2 items, got {self.items}")
        self.register_buffer("path_nodes", nodes)
        self.register_buffer("path_signs", signs.to(torch.get_default_dtype()))
        self.user = nn.Parameter(0.1 * torch.randn(users, dim))
        self.node = nn.Parameter(torch.zeros(internal, dim))
        self.node_bias = nn.Parameter(torch.zeros(internal))

    @classmethod
    def balanced(cls, users: int, items: int, dim: int = 16, order=None) -> "LabelTree":
        """A balanced tree over ``items`` split in halves in the given ``order`` (default 0..N-1)."""
        items = checks.count("items", items, minimum=2)
        order = list(range(items)) if order is None else [int(i) for i in order]
        if sorted(order) != list(range(items)):
            raise ValueError(f"order must be a permutation of 0..{items - 1}")
        return cls(users, _halves(order), dim)

    @property
    def depth(self) -> int:
        return self.path_nodes.shape[1]

    def scores(self, users: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """$s_n(u) = u^\\top q_n + b_n$ for ``users`` ``[B]`` and ``nodes`` ``[B, D]`` -> ``[B, D]``."""
        return (self.user[users][:, None, :] * self.node[nodes]).sum(-1) + self.node_bias[nodes]

    def log_prob(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """$\\log p(i \\mid u)$ ``[B]``: the sum of $\\log\\sigma(d_j s_{n_j})$ along each path, $O(d\\log N)$."""
        _check_events(users, items, self.users, self.items)
        nodes, signs = self.path_nodes[items], self.path_signs[items]
        return (F.logsigmoid(signs * self.scores(users, nodes)) * signs.abs()).sum(-1)

    def log_prob_all(self, users: torch.Tensor) -> torch.Tensor:
        """$\\log p(i \\mid u)$ for every item ``[B, N]`` ($O(N d \\log N)$; for checks and small $N$)."""
        b = users.shape[0] if isinstance(users, torch.Tensor) else 0
        _check_events(users, torch.zeros_like(users), self.users, self.items)
        u = users.repeat_interleave(self.items)
        i = torch.arange(self.items, device=users.device).repeat(b)
        return self.log_prob(u, i).reshape(b, self.items)


class FlatSoftmax(nn.Module):
    """$p(i \\mid u) = \\mathrm{softmax}_i(u^\\top w_i + c_i)$: the flat output layer, $O(N d)$ per event."""

    def __init__(self, users: int, items: int, dim: int = 16):
        super().__init__()
        self.users, self.items = checks.count("users", users), checks.count("items", items, minimum=2)
        dim = checks.count("dim", dim)
        self.user = nn.Parameter(0.1 * torch.randn(users, dim))
        self.item = nn.Parameter(torch.zeros(items, dim))
        self.item_bias = nn.Parameter(torch.zeros(items))

    def log_prob_all(self, users: torch.Tensor) -> torch.Tensor:
        _check_events(users, torch.zeros_like(users), self.users, self.items)
        return torch.log_softmax(self.user[users] @ self.item.T + self.item_bias, -1)

    def log_prob(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        _check_events(users, items, self.users, self.items)
        return self.log_prob_all(users).gather(-1, items[:, None])[:, 0]


def popularity_log_prob(train: torch.Tensor, test: torch.Tensor, items: int) -> float:
    """The no-structure reference: $\\log$ of each item's training frequency (add-one smoothed),
    averaged over the ``test`` events ``[E, 2]`` (nats per event)."""
    items = checks.count("items", items, minimum=2)
    train, test = _check_table("train", train, 2 ** 62, items), _check_table("test", test, 2 ** 62, items)
    counts = torch.bincount(train[:, 1].long(), minlength=items).double() + 1
    return float(torch.log(counts / counts.sum())[test[:, 1].long()].mean())


def split_tree(embeddings: torch.Tensor, iterations: int = 10, seed: int = 0):
    r"""A tree learned from item representations ``embeddings`` ``[N, d]``: split the items in two by
    2-means (started on the principal direction, ``iterations`` Lloyd steps), cut at the median of
    the difference of the distances to the two centres so the halves are balanced, recurse. Returns
    the nested pair structure for :class:`LabelTree`."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[0] < 2 \
            or embeddings.shape[1] < 1:
        shown = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"embeddings must be a tensor [N >= 2, d >= 1], got {shown}")
    emb = checks.finite("embeddings", checks.real("embeddings", embeddings)).detach().double().cpu()
    iterations = checks.count("iterations", iterations, minimum=0)
    gen = torch.Generator().manual_seed(checks.count("seed", seed, minimum=0))

    def split(index: torch.Tensor):
        if len(index) == 1:
            return int(index[0])
        x = emb[index]
        centred = x - x.mean(0)
        direction = torch.linalg.svd(centred, full_matrices=False).Vh[0] if x.shape[0] > 1 else torch.zeros(x.shape[1])
        proj = centred @ direction
        c = torch.stack([x[proj >= proj.median()].mean(0), x[proj < proj.median()].mean(0)]) \
            if (proj < proj.median()).any() else x[torch.randperm(len(x), generator=gen)[:2]]
        for _ in range(iterations):
            assign = torch.cdist(x, c).argmin(-1)
            if assign.min() == assign.max():
                break
            c = torch.stack([x[assign == 0].mean(0), x[assign == 1].mean(0)])
        gap = (x - c[0]).pow(2).sum(-1) - (x - c[1]).pow(2).sum(-1)
        order = gap.argsort()
        mid = (len(index) + 1) // 2
        return (split(index[order[:mid]]), split(index[order[mid:]]))

    return split(torch.arange(len(emb)))


def fit_items(model: nn.Module, train: torch.Tensor, steps: int = 2000, batch_size: int = 256,
              lr: float = 0.05, seed: int = 0, test: torch.Tensor | None = None, record_every: int = 100) -> dict:
    """Adam on the mean $-\\log p(i \\mid u)$ of minibatches of the (user, item) events ``train``
    ``[E, 2]``; returns ``{"loss": [per step], "step": [...], "test": [...]}``, the mean held-out
    $\\log p(i \\mid u)$ over the events ``test`` every ``record_every`` steps (when given)."""
    steps, batch_size = checks.count("steps", steps), checks.count("batch_size", batch_size)
    lr = float(checks.positive("lr", lr))
    train = _check_table("train", train, getattr(model, "users", 2 ** 62), getattr(model, "items", 2 ** 62))
    record_every = checks.count("record_every", record_every)
    if test is not None:
        test = _check_table("test", test, getattr(model, "users", 2 ** 62), getattr(model, "items", 2 ** 62))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    out = {"loss": [], "step": [], "test": []}
    gen = config.generator(seed)
    for step in range(1, steps + 1):
        batch = train[torch.randint(len(train), (min(batch_size, len(train)),), generator=gen)]
        loss = -model.log_prob(batch[:, 0].long(), batch[:, 1].long()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out["loss"].append(float(loss.detach()))
        if test is not None and (step % record_every == 0 or step == steps):
            with torch.no_grad():
                out["step"].append(step)
                out["test"].append(float(model.log_prob(test[:, 0], test[:, 1]).mean()))
    return out


def item_representations(model: nn.Module, train: torch.Tensor, items: int) -> torch.Tensor:
    """Each item's representation: the mean learned embedding of the users who chose it in ``train``
    (Mnih & Hinton's averaged context), ``[items, d]``; items never chosen get the overall mean."""
    items = checks.count("items", items, minimum=2)
    train = _check_table("train", train, model.user.shape[0], items)
    u = model.user.detach()[train[:, 0].long()]
    sums = torch.zeros(items, u.shape[1], dtype=u.dtype).index_add_(0, train[:, 1].long(), u)
    counts = torch.bincount(train[:, 1].long(), minlength=items).to(u.dtype)[:, None]
    return torch.where(counts > 0, sums / counts.clamp_min(1), u.mean(0))

