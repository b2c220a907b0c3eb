r"""Score-based graph learning: a distribution over graphs that parameterizes a forecaster.

Cini, Zambon & Alippi 2023, *Sparse Graph Learning from Spatiotemporal Time Series* (JMLR 24;
arXiv:2205.13492). $N$ time series $x_t \in \mathbb{R}^N$ are forecast one step ahead by a
graph-filtered linear autoregression whose graph $A$ is *sampled*,

$$\hat x_{t+1,i} = a_i x_{t,i} + \sum_{j \ne i} A_{ij} W_{ij} x_{t,j} + c_i,
\qquad A \sim p_\theta(A),$$

and the edge parameters $\theta$ are learned by minimising $\mathbb{E}_{p_\theta}[\delta(A)]$, the
expected forecasting cost. Two graph distributions (``graph=``):

``"bernoulli"``
    independent edges $A_{ij} \sim \mathrm{Bernoulli}(\sigma(\theta_{ij}))$, with a price
    ``penalty`` per edge in the cost (without it nothing discourages extra edges);
``"topk"``
    each node draws exactly ``neighbours`` distinct parents, a $k$-subset from Gumbel-top-$k$
    (:class:`vitools.problems_subset.KSubset`, exact subset probabilities).

The cost decomposes over nodes, $\delta(A) = \sum_i \delta_i(A_{i\cdot})$, where $\delta_i$ (node
$i$'s mean squared one-step error) depends only on row $i$ of $A$. So the score of row $i$ need
only be multiplied by $\delta_i$, not by the whole cost: the paper's node-level estimator. Its
baseline is the cost at the distribution's mode, $b_i = \delta_i(A^\star_{i\cdot})$ with
$A^\star = \mathbb{1}[\theta > 0]$ (or the top-$k$ of $\theta_i$): one extra forward pass,
independent of the samples, so unbiased (the paper's surrogate-optimality baseline).

:meth:`GraphVAR.on` gives the Bernoulli model as a :class:`vitools.targets.LayeredTarget`, so
every discrete estimator of :mod:`vitools.estimators` (RLOO, Gumbel-Softmax, ...) runs on it;
with ``local=True`` its batch is the $N$ nodes, each with its $N - 1$ candidate edges (the
node-level decomposition); with ``local=False`` one layer of $N(N-1)$ edges and the total cost.
:func:`score_objective` is the paper's estimator for both distributions; :meth:`GraphVAR.exact`
enumerates every row's graphs for small $N$ (the ground truth of the tests).
"""
from __future__ import annotations

import dataclasses
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from ..problems_subset import KSubset
from ..targets import Layer, LayeredTarget

__all__ = ["VARData", "simulate_var", "GraphVAR", "GraphTarget", "score_objective", "edge_f1",
           "least_squares_forecast", "fit_graph"]


@dataclasses.dataclass
class VARData:
    """A simulated sparse vector autoregression: ``x`` ``[T, N]``; ``adjacency[i, j] = 1`` when
    $x_j$ drives $x_{i}$ (``[N, N]``, zero diagonal); ``coefficients`` the full transition matrix."""

    x: torch.Tensor
    adjacency: torch.Tensor
    coefficients: torch.Tensor
    noise: float
    seed: int


def simulate_var(nodes: int = 10, parents: int = 2, steps: int = 1000, noise: float = 1.0,
                 seed: int = 0) -> VARData:
    r"""$x_{t+1} = M x_t + \sigma\varepsilon_t$ with $M = \mathrm{diag}(a) + A \odot W$: every node has
    exactly ``parents`` parents drawn uniformly, weights $|W_{ij}| \sim U(0.4, 0.8)$ with random
    signs, self-coefficients $a_i \sim U(0.1, 0.4)$, $M$ rescaled to spectral radius at most 0.9
    (stationary); 200 burn-in steps dropped. Seeded by ``seed`` alone (its own generator)."""
    nodes, steps = checks.count("nodes", nodes, minimum=2), checks.count("steps", steps, minimum=2)
    parents = checks.count("parents", parents)
    if parents >= nodes:
        raise ValueError(f"parents must be < nodes = {nodes}, got {parents}")
    noise = float(checks.positive("noise", noise))
    seed = checks.count("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    adjacency = torch.zeros(nodes, nodes, dtype=torch.float64)
    for i in range(nodes):
        others = torch.tensor([j for j in range(nodes) if j != i])
        adjacency[i, others[torch.randperm(nodes - 1, generator=gen)[:parents]]] = 1.0
    sign = torch.where(torch.rand(nodes, nodes, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    weights = sign * (0.4 + 0.4 * torch.rand(nodes, nodes, generator=gen, dtype=torch.float64))
    m = adjacency * weights + torch.diag(0.1 + 0.3 * torch.rand(nodes, generator=gen, dtype=torch.float64))
    m = m * min(1.0, 0.9 / torch.linalg.eigvals(m).abs().max().item())
    x = torch.zeros(steps + 200, nodes, dtype=torch.float64)
    eps = torch.randn(steps + 200, nodes, generator=gen, dtype=torch.float64)
    for t in range(1, steps + 200):
        x[t] = m @ x[t - 1] + noise * eps[t]
    return VARData(config.tensor(x[200:]), adjacency, m, noise, seed)


def _others(n: int) -> torch.Tensor:
    """``[n, n - 1]``: the candidate parents of each node (every other node, in order)."""
    return torch.tensor([[j for j in range(n) if j != i] for i in range(n)], dtype=torch.long)


def _check_series(x: torch.Tensor, nodes: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != nodes or x.shape[0] < 2:
        shown = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a series of shape [T >= 2, {nodes}], got {shown}")
    return checks.finite(name, checks.real(name, x))


class GraphVAR(nn.Module):
    """The graph-filtered linear autoregression with learned edge logits ``theta`` ``[N, N-1]``
    (row $i$: node $i$'s candidate parents, every other node in order), weights ``weight``
    ``[N, N-1]``, self-coefficients ``own`` and biases ``bias`` ``[N]``."""

    def __init__(self, nodes: int, graph: str = "bernoulli", neighbours: int = 2, penalty: float = 0.02,
                 init_logit: float = 0.0):
        super().__init__()
        self.nodes = checks.count("nodes", nodes, minimum=3)
        self.graph = checks.choice("graph", graph, ("bernoulli", "topk"))
        self.neighbours = checks.count("neighbours", neighbours)
        if self.neighbours >= nodes - 1:
            raise ValueError(f"neighbours must be < nodes - 1 = {nodes - 1}, got {neighbours}")
        self.penalty = float(checks.finite("penalty", penalty))
        if self.penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty!r}")
        init = float(checks.finite("init_logit", init_logit))
        dtype = torch.get_default_dtype()
        self.theta = nn.Parameter(torch.full((nodes, nodes - 1), init, dtype=dtype))
        self.weight = nn.Parameter(torch.zeros(nodes, nodes - 1, dtype=dtype))
        self.own = nn.Parameter(torch.zeros(nodes, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(nodes, dtype=dtype))
        self.register_buffer("others", _others(nodes), persistent=False)

    # ------------------------------------------------------------------ the forecaster and its cost
    def cost(self, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""$\delta_i(A)$ ``[*S, N]`` for rows ``adjacency`` ``[*S, N, N-1]`` (0/1, or relaxed values in
        [0, 1]): node $i$'s mean squared one-step error over the series ``x`` ``[T, N]``, plus
        ``penalty`` per edge of a Bernoulli graph."""
        x = _check_series(x, self.nodes).to(self.theta.dtype)
        past, future = x[:-1], x[1:]                                        # [T-1, N]
        parents = past[:, self.others]                                      # [T-1, N, N-1]
        pred = (torch.einsum("...ij,tij->...ti", adjacency * self.weight, parents)
                + self.own * past + self.bias)                              # [*S, T-1, N]
        out = (future - pred).pow(2).mean(-2)
        return out + self.penalty * adjacency.sum(-1) if self.graph == "bernoulli" else out

    def forecast_error(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> float:
        """The mean squared one-step error over ``x`` (all nodes) at the graph ``rows`` (default: the
        mode), without the edge penalty."""
        with torch.no_grad():
            rows = self.mode() if rows is None else rows
            penalty = self.penalty * rows.sum(-1) if self.graph == "bernoulli" else 0.0
            return float((self.cost(rows, x) - penalty).mean())

    def probabilities(self) -> torch.Tensor:
        r"""$P(A_{ij} = 1)$ ``[N, N-1]``: $\sigma(\theta)$, or each node's inclusion probabilities
        under its $k$-subset distribution (exact, by enumeration)."""
        with torch.no_grad():
            if self.graph == "bernoulli":
                return torch.sigmoid(self.theta)
            dist = KSubset(self.theta, self.neighbours)
            support = dist.enumerate_support()                              # [S, N, N-1]
            return (dist.log_prob(support).exp()[..., None] * support).sum(0)

    def mode(self) -> torch.Tensor:
        """The most probable graph's rows ``[N, N-1]``: $\\mathbb{1}[\\theta > 0]$, or the top-$k$ of each row."""
        with torch.no_grad():
            if self.graph == "bernoulli":
                return (self.theta > 0).to(self.theta.dtype)
            top = self.theta.topk(self.neighbours, -1).indices
            return torch.zeros_like(self.theta).scatter(-1, top, 1.0)

    def sample(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` graphs ``[k, N, N-1]`` (no gradient) and their row log-probabilities ``[k, N]``
        (differentiable in ``theta``)."""
        k = checks.count("k", k)
        if self.graph == "bernoulli":
            with torch.no_grad():
                a = torch.bernoulli(torch.sigmoid(self.theta).expand(k, *self.theta.shape))
            log_q = (a * self.theta - F.softplus(self.theta)).sum(-1)
            return a, log_q
        dist = KSubset(self.theta, self.neighbours)
        a = dist.sample((k,))
        return a, dist.log_prob(a)

    def adjacency(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[..., N, N-1]`` as an ``[..., N, N]`` adjacency matrix (zero diagonal)."""
        out = torch.zeros(*rows.shape[:-1], self.nodes, dtype=rows.dtype, device=rows.device)
        return out.scatter(-1, self.others.expand(*rows.shape[:-1], self.nodes - 1), rows)

    # ------------------------------------------------------------------ exact answers for small N
    def exact(self, x: torch.Tensor) -> torch.Tensor:
        r"""$-\mathbb{E}_{p_\theta}[\sum_i \delta_i(A)]$ by enumerating each row's graphs ($2^{N-1}$
        or $\binom{N-1}{k}$ per node; $N \le 12$): differentiable in every parameter, so its
        gradient is the exact gradient the estimators are checked against."""
        if self.nodes > 12:
            raise ValueError(f"nodes must be <= 12 to enumerate, got {self.nodes}")
        if self.graph == "bernoulli":
            rows = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.nodes - 1)),
                                dtype=self.theta.dtype, device=self.theta.device)       # [S, N-1]
            rows = rows[:, None, :].expand(-1, self.nodes, -1)
            log_q = (rows * self.theta - F.softplus(self.theta)).sum(-1)
        else:
            dist = KSubset(self.theta, self.neighbours)
            rows = dist.enumerate_support()
            log_q = dist.log_prob(rows)
        return -(log_q.exp() * self.cost(rows, x)).sum()

    def on(self, x: torch.Tensor, local: bool = True) -> "GraphTarget":
        """The Bernoulli graph as a :class:`vitools.targets.LayeredTarget` on the series ``x``."""
        if self.graph != "bernoulli":
            raise ValueError(f"graph must be 'bernoulli' for a layered target, got {self.graph!r} "
                             "(the k-subset graph is not a stack of Bernoulli or categorical layers)")
        return GraphTarget(self, _check_series(x, self.nodes), local=bool(local))

    def example_target(self) -> "GraphTarget":
        return self.on(torch.zeros(3, self.nodes, dtype=self.theta.dtype))


class GraphTarget(LayeredTarget):
    r"""The expected forecasting objective $-\mathbb{E}[\delta(A)]$ (maximised) of a Bernoulli
    :class:`GraphVAR`: ``local=True`` a batch of $N$ nodes, each a layer of $N-1$ edge bits with
    signal $-\delta_i$; ``local=False`` one layer of $N(N-1)$ bits with signal $-\sum_i\delta_i$.
    No entropy term; the signal is the same formula at relaxed edges (Gumbel-Softmax applies)."""

    entropy_term = False

    def __init__(self, model: GraphVAR, x: torch.Tensor, local: bool = True):
        self._model, self.x, self.local = model, x, local
        n = model.nodes
        self.layers = (Layer("bernoulli", (n - 1,) if local else (n * (n - 1),)),)
        self.batch_shape = torch.Size((n,) if local else ())

    def model(self):
        return self._model

    def logits(self, l, below):
        theta = self._model.theta
        return theta if self.local else theta.reshape(-1)

    def signal(self, values, relaxed=False):
        a = values[0]
        cost = self._model.cost(a if self.local else a.reshape(*a.shape[:-1], self._model.nodes, -1), self.x)
        return -cost if self.local else -cost.sum(-1)

    def signature(self):
        return ("graph", self._model.nodes, self.local)


def score_objective(model: GraphVAR, x: torch.Tensor, k: int = 8, baseline: str = "mode",
                    local: bool = True) -> torch.Tensor:
    r"""A scalar surrogate whose value estimates $-\mathbb{E}[\delta(A)]$ and whose gradient is the
    score-function estimate for ``theta`` (the other parameters: pathwise at the sampled graphs):
    per node $\frac1k\sum_s (\delta_i(A^{(s)}) - b_i)\nabla\log p_\theta(A^{(s)}_{i\cdot})$ when ``local``,
    the whole cost $\sum_i \delta_i$ times each row's score otherwise. ``baseline``: ``"mode"`` (the
    paper's, $b$ = the cost at the mode graph), ``"leave_one_out"`` (RLOO, $k \ge 2$) or ``"none"``."""
    checks.choice("baseline", baseline, ("mode", "leave_one_out", "none"))
    k = checks.count("k", k, minimum=2 if baseline == "leave_one_out" else 1)
    x = _check_series(x, model.nodes)
    a, log_q = model.sample(k)                                            # [k, N, N-1], [k, N]
    cost = model.cost(a, x)                                               # [k, N]
    signal = cost.detach() if local else cost.detach().sum(-1, keepdim=True).expand_as(cost)
    if baseline == "mode":
        with torch.no_grad():
            b = model.cost(model.mode(), x)
        b = b if local else b.sum(-1, keepdim=True)
    elif baseline == "leave_one_out":
        b = (signal.sum(0, keepdim=True) - signal) / (k - 1)
    else:
        b = torch.zeros(())
    return -(cost + (signal - b) * (log_q - log_q.detach())).mean(0).sum()


def edge_f1(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """F1 of the predicted edges against the true ones (0/1 matrices of one shape; the diagonal
    is ignored): $2\\,TP / (2\\,TP + FP + FN)$, 1.0 when both are empty."""
    for name, value in (("predicted", predicted), ("true", true)):
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[0] != value.shape[1]:
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a square [N, N] tensor, got {shown}")
        checks.binary(name, value)
    if predicted.shape != true.shape:
        raise ValueError(f"predicted and true must have one shape, got {tuple(predicted.shape)} and {tuple(true.shape)}")
    off = ~torch.eye(len(true), dtype=torch.bool, device=true.device)
    p, t = predicted.bool()[off], true.to(predicted.device).bool()[off]
    tp, fp, fn = (p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def least_squares_forecast(train: torch.Tensor, test: torch.Tensor, adjacency: torch.Tensor | None = None) -> float:
    r"""The no-structure references: fit $x_{t+1,i}$ on $x_{t,i}$, a bias and the parents that
    ``adjacency`` ``[N, N]`` allows (``None``: every node, the dense VAR; zeros: per-node AR(1))
    by least squares on ``train`` ``[T, N]``; the mean squared one-step error on ``test``."""
    n = train.shape[-1] if isinstance(train, torch.Tensor) else 0
    train, test = _check_series(train, n, "train").double(), _check_series(test, n, "test").double()
    allowed = torch.ones(n, n, dtype=torch.bool) if adjacency is None else \
        checks.binary("adjacency", checks.shape("adjacency", adjacency, (n, n))).bool().cpu()
    errors = []
    for i in range(n):
        cols = [j for j in range(n) if j == i or allowed[i, j]]
        design = lambda s: torch.cat([s[:-1, cols], torch.ones(len(s) - 1, 1, dtype=s.dtype, device=s.device)], 1)
        coef = torch.linalg.lstsq(design(train), train[1:, i:i + 1]).solution
        errors.append((design(test) @ coef - test[1:, i:i + 1]).pow(2).mean())
    out = float(torch.stack(errors).mean())
    if out != out or out == float("inf"):
        raise ValueError(f"train and test must be series of moderate values; the fit gives a mean squared error of {out}")
    return out


def fit_graph(model: GraphVAR, x: torch.Tensor, objective, steps: int = 300, lr: float = 0.05,
              seed: int = 0, record_every: int = 10, true: torch.Tensor | None = None) -> dict:
    """Adam on ``-objective(model, x)`` (a scalar surrogate to maximise: :func:`score_objective`, or
    an estimator's surrogate on ``model.on(x)`` summed) for ``steps`` steps from seed ``seed``;
    returns ``{"step": [...], "cost": [...]}``, the mode graph's total cost every ``record_every``
    steps, and ``"f1"``, its :func:`edge_f1` against the adjacency ``true`` ``[N, N]`` if given."""
    steps, record_every = checks.count("steps", steps), checks.count("record_every", record_every)
    lr = float(checks.positive("lr", lr))
    if not callable(objective):
        raise ValueError(f"objective must be a callable (model, x) -> scalar, got {objective!r}")
    x = _check_series(x, model.nodes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"step": [], "cost": [], "f1": []}
    with config.seeded(seed):
        for step in range(1, steps + 1):
            opt.zero_grad()
            (-objective(model, x)).backward()
            opt.step()
            if step % record_every == 0 or step == steps:
                with torch.no_grad():
                    history["step"].append(step)
                    history["cost"].append(float(model.cost(model.mode(), x).sum()))
                    if true is not None:
                        history["f1"].append(edge_f1(model.adjacency(model.mode()), true))
    return history
