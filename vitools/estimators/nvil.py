r"""NVIL: neural variational inference and learning (Mnih & Gregor 2014, arXiv:1402.0030).

For a model with discrete latents the ELBO gradient splits into a pathwise part for the
model, $\mathbb{E}_q[\nabla_\theta \log p_\theta(x, h)]$, and a score-function part for the
inference network driven by the *learning signal* $\ell(x, h) = \log p_\theta(x, h) -
\log q_\phi(h \mid x)$:

$$\nabla_\phi \mathcal{L} = \mathbb{E}_q\big[(\ell(x, h) - b(x) - c)\,
\nabla_\phi \log q_\phi(h \mid x)\big] \,/\, \max(1, \hat\sigma),$$

with four variance-reduction components, each switched on and off independently:

``constant_baseline``
    $c$: a running mean of $\ell - b(x)$ (decay $\alpha$ = ``decay``).
``input_baseline``
    $b(x)$: an MLP of $x$ alone (one tanh hidden layer) fitted by minimising
    $(\ell - b(x) - c)^2$; its parameters are ``est.parameters(model)``.
``normalize``
    divide the centred signal by $\max(1, \hat\sigma)$, $\hat\sigma^2$ a running variance of
    $\ell - b(x)$: a per-step rescaling of the inference network's gradient (not of its
    direction), so the estimator targets $\nabla_\phi \mathcal{L} / \max(1, \hat\sigma)$.
``local_signals``
    with $q(h|x) = \prod_l q(h_l|h_{l-1})$, layer $l$'s signal keeps only the terms that
    depend on $h_l$: $\ell_l = \sum_{j \ge l-1} \log p(h_j|h_{j+1}) - \sum_{j \ge l}
    \log q(h_j|h_{j-1})$ ($h_0 = x$, $p(h_L|h_{L+1}) = p(h_L)$); each layer has its own
    $b_l(x)$, $c_l$, $\hat\sigma_l$.

Running statistics are read before they are updated with the current batch, so baselines
never depend on the current samples and the estimate stays unbiased for its target.
Shapes: signals are ``[G, K, N]`` (G = 1, or the number of layers with local signals).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import checks
from . import register
from .amortized import ModelEstimator
from .base import descend, score_box


@register
class NVIL(ModelEstimator):
    """NVIL on the ELBO with ``k`` independent samples per example (averaged).

    Example::

        >>> est = vt.estimators.get("nvil", local_signals=True)
        >>> opt = torch.optim.Adam([*model.parameters(), *est.parameters(model)], lr=3e-4)
        >>> (-est.loss(model, x, k=1).mean()).backward(); opt.step()
    """

    name = "nvil"

    def __init__(self, constant_baseline: bool = True, input_baseline: bool = True,
                 normalize: bool = True, local_signals: bool = False, decay: float = 0.8,
                 hidden: int = 100):
        for flag, value in (("constant_baseline", constant_baseline), ("input_baseline", input_baseline),
                            ("normalize", normalize), ("local_signals", local_signals)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be True or False, got {value!r}")
        checks.probability("decay", decay)
        super().__init__(constant_baseline=constant_baseline, input_baseline=input_baseline,
                         normalize=normalize, local_signals=local_signals)
        self.constant_baseline, self.input_baseline = constant_baseline, input_baseline
        self.normalize, self.local_signals = normalize, local_signals
        self.decay = float(decay)
        self.hidden = checks.count("hidden", hidden)
        self.baseline_net: nn.Module | None = None
        self.reset()

    @property
    def label(self) -> str:
        parts = [name for flag, name in ((self.constant_baseline, "c"), (self.input_baseline, "b(x)"),
                                         (self.normalize, "norm"), (self.local_signals, "local"))
                 if flag]
        return f"{self.name.replace('_', ' ')} ({', '.join(parts) or 'no baseline'})"

    def reset(self) -> None:
        """Forget the running mean and variance (the baseline network is kept)."""
        self.running_mean: torch.Tensor | None = None
        self.running_var: torch.Tensor | None = None

    # ------------------------------------------------------------------ components
    def groups(self, model) -> int:
        return model.num_layers if self.local_signals else 1

    def parameters(self, model) -> list[nn.Parameter]:
        if not self.input_baseline:
            return []
        if self.baseline_net is None:
            device = next(model.parameters()).device
            self.baseline_net = nn.Sequential(nn.Linear(model.x_dim, self.hidden), nn.Tanh(),
                                              nn.Linear(self.hidden, self.groups(model))).to(device)
        return list(self.baseline_net.parameters())

    def modules(self):
        return {"baseline_net": self.baseline_net} if self.baseline_net is not None else {}

    def baseline(self, model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b(x), c)``, each ``[G, 1, N]``-broadcastable: functions of ``x`` and of past
        batches only, never of the current samples (zeros where switched off)."""
        b = torch.zeros(self.groups(model), 1, x.shape[0], device=x.device)
        if self.input_baseline:
            self.parameters(model)
            b = b + self.baseline_net(x).T[:, None, :]
        c = torch.zeros(self.groups(model), 1, 1, device=x.device)
        if self.constant_baseline and self.running_mean is not None:
            c = c + self.running_mean[:, None, None]
        return b, c

    def scale(self, model, device) -> torch.Tensor:
        """$\\max(1, \\hat\\sigma)$ per group, ``[G, 1, 1]`` (ones without normalization)."""
        if not self.normalize or self.running_var is None:
            return torch.ones(self.groups(model), 1, 1, device=device)
        return self.running_var.sqrt().clamp_min(1.0)[:, None, None]

    def prepare(self, model, x: torch.Tensor, k: int = 1, steps: int = 200, lr: float = 1e-2,
                batch_size: int = 100) -> None:
        """Bring the baselines to a steady state for a *fixed* model: fit $b(x)$ by Adam on
        ``steps`` minibatches of ``x`` and let the running statistics settle (the model's
        parameters are not updated). Used before measuring gradient variance."""
        self.check(model, x, k)
        steps = checks.count("steps", steps, minimum=0)
        checks.positive("lr", lr)
        params = self.parameters(model)
        opt = torch.optim.Adam(params, lr=lr) if params else None
        for _ in range(steps):
            index = torch.randint(x.shape[0], (min(batch_size, x.shape[0]),), device=x.device)
            surrogate = self._loss(model, x[index], k, True)
            if opt is not None:
                descend(opt, -surrogate.mean(), params)

    # ------------------------------------------------------------------ the estimator
    def terms(self, model, x, k):
        r"""``(value [N], pathwise [N], pathwise_phi [N], signals [G, K', N], log_q [G, K', N])``:
        the objective's estimate, terms whose gradients are the pathwise parts for $\theta$
        and for $\phi$ (the latter rescaled with the signal), the learning signals and the
        log-densities whose scores they multiply."""
        hs, log_q = model.sample(x, k)
        log_p = model.log_p_layers(x, hs)
        value = (sum(log_p) - sum(log_q)).mean(0)
        if self.local_signals:
            signals = torch.stack([sum(log_p[l:]) - sum(log_q[l:]) for l in range(len(log_q))])
            scored = torch.stack(log_q)
        else:
            signals = (sum(log_p) - sum(log_q))[None]
            scored = sum(log_q)[None]
        # E_q[grad_phi log q] = 0: NVIL drops the phi pathwise term of the ELBO.
        return value, sum(log_p).mean(0), torch.zeros_like(value), signals, scored

    def _loss(self, model, x, k, update):
        value, pathwise, pathwise_phi, signals, scored = self.terms(model, x, k)
        raw = signals.detach()
        b, c = self.baseline(model, x)                                 # [G, 1, N], [G, 1, 1]
        scale = self.scale(model, x.device)                            # [G, 1, 1]
        centred = (raw - b.detach() - c) / scale
        score = (centred * score_box(scored)).sum(0).mean(0)           # [N]
        surrogate = (value.detach() + (pathwise - pathwise.detach()) + score
                     + (pathwise_phi - pathwise_phi.detach()) / scale[0, 0, 0])
        if self.input_baseline:
            fit = -((raw - c - b) ** 2).sum(0).mean(0)                 # baseline net descends its error
            surrogate = surrogate + (fit - fit.detach())
        if update:
            self._update(raw - b.detach())
        return surrogate

    @torch.no_grad()
    def _update(self, residual: torch.Tensor) -> None:
        """Fold the batch's mean and variance of $\\ell - b(x)$, ``[G, K', N]``, into the state."""
        mean = residual.mean((1, 2))
        var = residual.var((1, 2)) if residual[0].numel() > 1 else torch.zeros_like(mean)
        if self.running_mean is None:
            self.running_mean, self.running_var = mean, var
        else:
            a = self.decay
            self.running_mean = a * self.running_mean + (1 - a) * mean
            self.running_var = a * self.running_var + (1 - a) * var
