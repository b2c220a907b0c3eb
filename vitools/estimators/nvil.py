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
    $(\ell - b(x) - c)^2$: the estimate's ``control_loss``.
``normalize``
    divide the centred signal by $\max(1, \hat\sigma)$, $\hat\sigma^2$ a running variance of
    $\ell - b(x)$: a per-step rescaling of the inference network's gradient (not of its
    direction), so the estimator targets $\nabla_\phi \mathcal{L} / \max(1, \hat\sigma)$.
``local_signals``
    with $q(h|x) = \prod_l q(h_l|h_{l-1})$, layer $l$'s signal keeps only the terms that
    depend on $h_l$: $\ell_l = \sum_{j \ge l-1} \log p(h_j|h_{j+1}) - \sum_{j \ge l}
    \log q(h_j|h_{j-1})$ ($h_0 = x$, $p(h_L|h_{L+1}) = p(h_L)$); each layer has its own
    $b_l(x)$, $c_l$, $\hat\sigma_l$.

Running statistics are read before they are updated with the current batch (and updated only
in ``train()`` mode), so baselines never depend on the current samples and the estimate stays
unbiased for its target. Shapes: signals are ``[G, K, N]`` (G = 1, or the number of layers with
local signals). Targets: discrete generative models (``sbn.on(x)``, ``cat_vae.on(x)``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..targets import LayeredTarget
from . import layers as L
from .base import Estimate, Estimator, Option, score_box



def draw_log_densities(target: LayeredTarget, k: int):
    """``(hs, log_p layers, log_q layers)`` for ``k`` draws from $q$, ``[k, N]`` per layer."""
    _, hs, logits = L.draw(target, k)
    log_q = [L.log_prob(layer, lg, h) for layer, lg, h in zip(target.layers, logits, hs)]
    return hs, target.log_p_layers(hs), log_q


def why_not_generative(target) -> str | None:
    if not isinstance(target, LayeredTarget):
        return (f"it needs a discrete latent-variable model (sbn.on(x), cat_vae.on(x)), got a {target.kind} target"
                + ("; for a toy problem use score_function with a baseline" if target.kind == "problem" else ""))
    if not target.generative:
        return "it needs a generative model's log-densities, which this layered target does not define"
    if target.context is None:
        return "its input-dependent baseline needs data x, which this target does not have"
    return None


class BaselineState(nn.Module):
    """$b(x)$ (when used) and the running mean and variance of $\\ell - b(x)$ per group."""

    def __init__(self, x_dim: int, groups: int, hidden: int, input_baseline: bool):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, groups)) \
            if input_baseline else None
        self.register_buffer("running_mean", torch.zeros(groups))
        self.register_buffer("running_var", torch.zeros(groups))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def fold(self, residual: torch.Tensor, decay: float) -> None:
        """Fold the batch's mean and variance of $\\ell - b(x)$, ``[G, K', N]``, into the state."""
        mean = residual.mean((1, 2))
        var = residual.var((1, 2)) if residual[0].numel() > 1 else torch.zeros_like(mean)
        if self.count == 0:
            self.running_mean.copy_(mean), self.running_var.copy_(var)
        else:
            self.running_mean.mul_(decay).add_((1 - decay) * mean)
            self.running_var.mul_(decay).add_((1 - decay) * var)
        self.count += 1


class NVIL(Estimator):
    """NVIL on the ELBO with ``k`` independent samples per example (averaged).

    Example::

        >>> est = vt.estimators.get("nvil", local_signals=True)
        >>> history = vt.train.fit(est, model, x_train, steps=1000)    # model and baseline, once per step
    """

    name = "nvil"
    default_warm_up_steps = 200
    OPTIONS = {
        "constant_baseline": Option(True, "subtract a running mean c of the signal", kind="bool"),
        "input_baseline": Option(True, "subtract a learned baseline b(x)", kind="bool"),
        "normalize": Option(True, "divide by max(1, running sd of the signal)", kind="bool"),
        "local_signals": Option(False, "per-layer learning signals", kind="bool"),
        "decay": Option(0.8, "decay of the running statistics", kind="probability"),
        "hidden": Option(100, "hidden width of b(x)", kind="int", minimum=1),
        "lr": Option(1e-2, "Adam learning rate of warm_up", minimum=0.0),
    }

    @property
    def label(self) -> str:
        o = self.options
        parts = [name for flag, name in ((o["constant_baseline"], "c"), (o["input_baseline"], "b(x)"),
                                         (o["normalize"], "norm"), (o.get("local_signals"), "local")) if flag]
        return f"{self.name.replace('_', ' ')} ({', '.join(parts) or 'no baseline'})"

    def _why_not(self, target):
        return why_not_generative(target)

    def groups(self, target) -> int:
        return len(target.layers) if self.options.get("local_signals") else 1

    def baselines(self, target) -> BaselineState:
        """The baseline network and running statistics built for ``target``."""
        return self.state(target, lambda: BaselineState(target.context.shape[-1], self.groups(target),
                                                        self.options["hidden"], self.options["input_baseline"]))

    def scale(self, target) -> torch.Tensor:
        r"""$\max(1, \hat\sigma)$ per group, ``[G]``: what normalization divides the inference
        network's gradient by (ones when ``normalize`` is off or before any statistics)."""
        state = self.baselines(target)
        ones = torch.ones(self.groups(target), device=state.running_var.device, dtype=state.running_var.dtype)
        if not self.options["normalize"] or state.count == 0:
            return ones
        return state.running_var.sqrt().clamp_min(1.0)

    def terms(self, target, k):
        r"""``(value [N], pathwise [N], pathwise_phi [N], signals [G, K', N], log_q [G, K', N])``."""
        hs, log_p, log_q = draw_log_densities(target, k)
        value = (sum(log_p) - sum(log_q)).mean(0)
        if self.options["local_signals"]:
            signals = torch.stack([sum(log_p[l:]) - sum(log_q[l:]) for l in range(len(log_q))])
            scored = torch.stack(log_q)
        else:
            signals = (sum(log_p) - sum(log_q))[None]
            scored = sum(log_q)[None]
        # E_q[grad_phi log q] = 0: NVIL drops the phi pathwise term of the ELBO.
        return value, sum(log_p).mean(0), torch.zeros_like(value), signals, scored

    def estimate(self, target, k):
        state = self.baselines(target)
        x = target.context
        value, pathwise, pathwise_phi, signals, scored = self.terms(target, k)
        raw = signals.detach()
        groups = raw.shape[0]
        b = state.net(x).T[:, None, :] if state.net is not None else torch.zeros(groups, 1, x.shape[0], device=x.device)
        c = torch.zeros(groups, 1, 1, device=x.device, dtype=raw.dtype)
        if self.options["constant_baseline"] and state.count > 0:
            c = c + state.running_mean[:, None, None]
        scale = self.scale(target).to(raw.dtype)[:, None, None]
        centred = (raw - b.detach() - c) / scale
        score = (centred * score_box(scored)).sum(0).mean(0)           # [N]
        surrogate = (value.detach() + (pathwise - pathwise.detach()) + score
                     + (pathwise_phi - pathwise_phi.detach()) / scale[0, 0, 0])
        control_loss = ((raw - c - b) ** 2).sum(0).mean() if state.net is not None else None
        if self.training:
            state.fold(raw - b.detach(), self.options["decay"])
        return Estimate(surrogate, control_loss)
