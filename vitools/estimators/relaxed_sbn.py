r"""REBAR, RELAX, LAX, ARM, DisARM and the relaxations (Gumbel-Softmax, straight-through, GST, IGR)
on sigmoid belief nets.

The model-level side (``loss(model, x, k) -> [N]``, see :mod:`.amortized`) of the toy
estimators in :mod:`.control` and :mod:`.relaxed`. The objective is the ELBO with learning
signal $f(h) = \log p_\theta(x, h) - \log q_\phi(h \mid x)$; the model's $\theta$ gets the
pathwise term $\nabla_\theta \log p_\theta(x, h)$, and each stochastic layer $l$ of
$q(h \mid x) = \prod_l q(h_l \mid h_{l-1})$ gets the estimator's gradient with respect to its
logits $\ell_l = g_l(h_{l-1})$ (``[K, N, d_l]``), chained to $\phi_l$ by autograd
(:func:`vitools.estimators.base.linear_surrogate` style). The term
$\mathbb{E}_q[\nabla_\phi f] = -\mathbb{E}_q[\nabla_\phi \log q] = 0$ is dropped, as NVIL does.

All layers share one set of uniforms ``u`` (``[K, N, d_l]`` per layer):
$h_l = \mathbb{1}[u_l < \sigma(\ell_l)]$, i.e. noisy logits $z_l = \ell_l + \mathrm{logit}(1 - u_l)$,
$h_l = H(z_l)$.

* **REBAR / RELAX** (Tucker et al. 2017, arXiv:1703.07370, Sec. 3 and App.; Grathwohl et al.
  2018, arXiv:1711.00123, Sec. 3.3 and App.): for layer $l$, with $h_{<l}$ fixed,
  $\hat g_l = [f(h) - c(\tilde z_l)]\,(h_l - \sigma(\ell_l)) + \nabla_{\ell_l} c(z_l)
  - \nabla_{\ell_l} c(\tilde z_l)$, $\tilde z_l \sim p(z_l \mid h_l)$, where $c$ evaluates the
  *relaxed forward pass*: $\tilde h_l = \sigma_\lambda(z_l)$, then every later layer
  $\tilde h_j = \sigma_\lambda(g_j(\tilde h_{j-1}) + \mathrm{logit}(1 - u_j))$ with the same
  uniforms as the hard pass, and $c = \eta f(h_{<l}, \tilde h_{\ge l}) + r_{\rho,l}(\tilde h_l, x)$
  (+ a learned constant), Bernoulli log-densities evaluated at relaxed points. Given $h_{<l}$
  and $u_{>l}$, $c$ is a function of $z_l$ alone, so $\hat g_l$ is unbiased for every
  $(\eta, \lambda, \rho)$. These are trained by Adam on the mean $\sum_l \|\hat g_l\|^2$ (the
  second moment of the logit gradients, a cheap proxy of the $\phi$-gradient variance),
  differentiating $\hat g$ itself: one step per ``loss(..., update=True)`` call, on the
  same samples (as in the RELAX paper's Algorithm 2), or :func:`fit_control_variate`.
* **LAX** (Grathwohl et al. 2018, arXiv:1711.00123, Eq. 5): RELAX with the score of the
  continuous $z_l$ instead of the discrete $h_l$ and no conditional sample,
  $\hat g_l = [f(h) - c(z_l)]\,(1 - 2u_l) + \nabla_{\ell_l} c(z_l)$ ($1 - 2u_l =
  \nabla_{\ell_l} \log p(z_l \mid \ell_l)$ for logistic noise), with
  $c = r_{\rho,l}(\sigma_\lambda(z_l), x)$ (+ a learned constant, which here is a real
  baseline); trained like RELAX's. Unbiased for every $(\lambda, \rho)$ as $c$ depends on
  $\ell_l$ only through $z_l$; its variance is typically higher than RELAX's.
* **ARM / DisARM** (Yin & Zhou 2019, arXiv:1807.11143; Dong et al. 2020, arXiv:2006.10680,
  Sec. 5 for multi-layer nets): for layer $l$, the antithetic partner $\check h_l$ of $h_l$
  (from the same $u_l$) is propagated through the later layers with the same $u_{>l}$;
  the pair's signals give the layer's ARM/DisARM gradient. One extra pass per layer; the
  layer-1 partner is itself a draw from $q$ and joins the value and $\theta$ terms.
* **Relaxations** (biased): Gumbel-Softmax (Jang et al. 2017, arXiv:1611.01144; Maddison et al.
  2017, arXiv:1611.00712), straight-through Gumbel-Softmax, gapped straight-through (Fan et al.
  2022, arXiv:2206.07235) and IGR (Potapczynski et al. 2020, arXiv:1912.09588). Each is a *bit
  relaxation* ``relax(logits, u)`` of one layer, using the hard pass's uniforms; the relaxed
  forward pass applies it to every layer and is differentiated end to end. The value is the ELBO
  estimate at the hard sample; the straight-through variants also forward the hard bits.

Shapes: ``x`` ``[N, D]``; per-sample signals ``[K, N]``; the surrogate ``[N]``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from ..models.sbn import bernoulli_log_prob
from .base import descend


def is_sbn(model) -> bool:
    """Whether ``model`` is a layered Bernoulli model these estimators understand."""
    return all(hasattr(model, a) for a in ("encoders", "decoders", "latent", "log_p_layers",
                                           "log_q_layers", "check_data"))


def check_call(estimator, model, x, k) -> None:
    if not is_sbn(model):
        raise ValueError(f"model must be a sigmoid belief net for {estimator.name}, got "
                         f"{type(model).__name__}: it needs a sigmoid belief net (encoders, decoders, "
                         f"log_p_layers, log_q_layers)")
    checks.count("k", k)
    model.check_data(x)


class ModelSupport:
    """Mixin giving a toy-problem estimator the model-level protocol of :mod:`.amortized`:
    ``loss(model, x, k, update=True) -> [N]``; subclasses implement ``_loss``."""

    def check(self, model, x, k) -> None:
        check_call(self, model, x, k)

    def loss(self, model, x: torch.Tensor, k: int = 1, update: bool = True) -> torch.Tensor:
        """The per-example surrogate ``[N]`` of the ELBO (see the module docstring)."""
        self.check(model, x, k)
        return self._loss(model, x, k, update)

    def parameters(self, model=None) -> list[nn.Parameter]:
        """Trainable estimator parameters (none for ARM, DisARM and the relaxations)."""
        return []

    def modules(self) -> dict[str, nn.Module]:
        return {}


# ---------------------------------------------------------------------- hard passes
def draw(model, x: torch.Tensor, k: int):
    """``(u, hs, logits)``: uniforms, hard latents and the logits of each layer, ``[k, N, d_l]``
    each; ``logits[l]`` is differentiable in $\\phi_l$ only (the layer below is hard)."""
    us, hs, logits = [], [], []
    below = x
    for enc in model.encoders:
        lg = enc(below)
        lg = lg.expand(k, *lg.shape[-2:])
        u = _relaxed.uniform(lg.shape, lg)
        h = (u < torch.sigmoid(lg.detach())).to(lg.dtype)
        us.append(u), hs.append(h), logits.append(lg)
        below = h
    return us, hs, logits


def propagate(model, hs, start: int, value: torch.Tensor, us) -> list[torch.Tensor]:
    """Latents with layers ``< start`` from ``hs``, layer ``start`` = ``value`` and the layers
    above drawn from $q$ with the uniforms ``us`` (common random numbers)."""
    out = [*hs[:start], value]
    with torch.no_grad():
        for j in range(start + 1, len(hs)):
            out.append((us[j] < torch.sigmoid(model.encoders[j](out[-1]))).to(value.dtype))
    return out


def signal(model, x, hs) -> torch.Tensor:
    """$f(h) = \\log p(x, h) - \\log q(h \\mid x)$, ``[K, N]``."""
    return sum(model.log_p_layers(x, hs)) - sum(model.log_q_layers(x, hs))


def noise(u: torch.Tensor) -> torch.Tensor:
    """$\\mathrm{logit}(1 - u)$: $z = \\ell + $ this gives $H(z) = \\mathbb{1}[u < \\sigma(\\ell)]$."""
    return torch.log1p(-u) - torch.log(u)


def logistic_score(u: torch.Tensor) -> torch.Tensor:
    r"""$\nabla_\ell \log p(z \mid \ell)$ at $z = \ell + \mathrm{logit}(1 - u)$ (logistic density with
    location $\ell$): $\tanh((z - \ell)/2) = 1 - 2u$ (LAX's score, Grathwohl et al. 2018, Eq. 5)."""
    return 1 - 2 * u


def conditional_bits(hard, logits, v) -> torch.Tensor:
    """$\\tilde z \\sim p(z \\mid b)$ for logistic-noise bits, reparameterised by uniforms ``v``."""
    logit_v = torch.log(v) - torch.log1p(-v)
    ones = F.softplus(logit_v + F.softplus(logits))
    zeros = -F.softplus(logit_v + F.softplus(-logits))
    return torch.where(hard > 0, ones, zeros)


# ---------------------------------------------------------------------- relaxed passes
# A *bit relaxation* maps a layer's logits and its uniforms ``u`` (the hard pass's, so the
# relaxed and hard passes share their noise) to the value fed to the next layer.
def concrete_bits(logits, u, temperature):
    """Binary Concrete / Gumbel-Softmax (arXiv:1611.00712, arXiv:1611.01144): $\\sigma((\\ell + L)/\\tau)$."""
    return torch.sigmoid((logits + noise(u)) / temperature)


def straight_through_bits(logits, u, temperature):
    """Straight-through Gumbel-Softmax: forward $H(z)$, backward $\\sigma(z/\\tau)$, $z = \\ell + L$."""
    z = logits + noise(u)
    soft = torch.sigmoid(z / temperature)
    return (z > 0).to(z.dtype) + soft - soft.detach()


def gapped_straight_through_bits(logits, u, temperature, gap):
    """Gapped straight-through (Fan et al. 2022, arXiv:2206.07235): forward $H(z)$, backward
    $\\sigma(\\tilde\\ell/\\tau)$ at the gapped logit of :func:`vitools.estimators.relaxed.gapped_logits`."""
    hard = (logits + noise(u) > 0).to(logits.dtype)
    soft = torch.sigmoid(_relaxed.gapped_logits(logits, hard, gap, categorical=False) / temperature)
    return hard + soft - soft.detach()


def igr_bits(logits, u, temperature, sigma):
    """IGR for one bit (Potapczynski et al. 2020, arXiv:1912.09588): $\\sigma((\\ell + \\sigma\\varepsilon)/\\tau)$,
    $\\varepsilon = \\Phi^{-1}(1 - u)$ standard normal, increasing in the hard pass's logistic noise."""
    return torch.sigmoid((logits + sigma * torch.special.ndtri(1 - u)) / temperature)


def relaxed_signal(model, x, hs, us, start: int, logits_start, first, relax):
    """$f$ along a relaxed forward pass ``[K, N]``: layers ``< start`` hard from ``hs``, layer
    ``start`` equal to ``first`` (a relaxed value of the layer with logits ``logits_start``), and
    every later layer ``relax(logits, us[j])`` (a bit relaxation, see above) of its own logits
    given the relaxed layer below. The log-densities are Bernoulli ones at relaxed points."""
    layers = [*hs[:start], first]
    log_q = bernoulli_log_prob(logits_start, first)
    for j in range(start + 1, len(hs)):
        lg = model.encoders[j](layers[-1])
        h = relax(lg, us[j])
        log_q = log_q + bernoulli_log_prob(lg, h)
        layers.append(h)
    if start:                                                    # the hard layers below: constants
        log_q = log_q + sum(model.log_q_layers(x, hs[:start])).detach()
    return sum(model.log_p_layers(x, layers)) - log_q


def control_net(d_in: int, hidden: int) -> nn.Module:
    """RELAX's network $r_\\rho$: one tanh hidden layer and a scalar output initialised to zero, so
    that RELAX starts as REBAR."""
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    nn.init.zeros_(net[2].weight)
    nn.init.zeros_(net[2].bias)
    return net


class SBNControls(nn.Module):
    """RELAX's per-layer networks $r_{\\rho,l}(\\tilde h_l, x)$ (:func:`control_net` each)."""

    def __init__(self, x_dim: int, latent, hidden: int):
        super().__init__()
        self.nets = nn.ModuleList([control_net(d + x_dim, hidden) for d in latent])

    def forward(self, layer: int, soft: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        xs = x.expand(*soft.shape[:-1], x.shape[-1])
        return self.nets[layer](torch.cat([soft, xs], -1)).squeeze(-1)            # [K, N]


def relax_layer_grads(est, model, x, us, hs, logits, f, create_graph: bool = False) -> list[torch.Tensor]:
    r"""$\hat g_l$ for every layer, ``[K, N, d_l]`` each (differentiable in the control
    parameters when ``create_graph``; detach them for the model's surrogate).

    REBAR/RELAX (``est.conditional``) as in the module docstring; LAX (Grathwohl et al. 2018,
    arXiv:1711.00123, Eq. 5) otherwise: $\hat g_l = [f(h) - c(z_l)]\,\nabla_{\ell_l}\log p(z_l \mid \ell_l)
    + \nabla_{\ell_l} c(z_l)$, with the logistic score $\nabla_\ell \log p(z \mid \ell)
    = \tanh((z - \ell)/2) = 1 - 2u$ and $c$ a function of $z_l$ alone (no direct $\ell_l$
    dependence, or the score and pathwise terms would not cancel in expectation)."""
    if not est.conditional:
        return _lax_layer_grads(est, model, x, us, hs, logits, f, create_graph)
    temp = est.log_temperature.exp()
    grads = []
    for l in range(len(hs)):
        lg = logits[l].detach()
        v = _relaxed.uniform(lg.shape, lg)

        def difference(lv, l=l, v=v):                                         # c(z) - c(z~), and c(z~)
            c_tilde = _control_of_z(est, model, x, hs, us, l, lv, conditional_bits(hs[l], lv, v), temp)
            c_z = _control_of_z(est, model, x, hs, us, l, lv, lv + noise(us[l]), temp)
            return (c_z - c_tilde).sum(), c_tilde
        with torch.enable_grad():
            pathwise, c_tilde = _logit_grad(difference, lg, create_graph)
        score = hs[l] - torch.sigmoid(lg)                                    # grad of log q(h_l)
        grads.append((f.detach() - c_tilde).unsqueeze(-1) * score + pathwise)
    return grads


def _logit_grad(fn, logits, create_graph: bool):
    """``(d fn(logits)[0] / d logits, fn(logits)[1])``, differentiable in the control parameters
    only when ``create_graph``. Inside a ``torch.func`` transform (as in
    :func:`~vitools.estimators.amortized.model_grad_samples`) it uses ``torch.func.grad``, which
    composes with ``vmap`` where ``torch.autograd.grad`` crashes; elsewhere ``torch.autograd.grad``,
    which is about twice as fast here."""
    if torch._C._functorch.maybe_current_level() is not None:
        grad, aux = torch.func.grad(fn, has_aux=True)(logits)
    else:
        leaf = logits.detach().requires_grad_(True)
        value, aux = fn(leaf)
        (grad,) = torch.autograd.grad(value, leaf, create_graph=create_graph, allow_unused=True)
        grad = torch.zeros_like(leaf) if grad is None else grad
    if create_graph:
        return grad, aux
    return grad.detach(), aux.detach()


def _control_of_z(est, model, x, hs, us, l, lv, z, temp) -> torch.Tensor:
    r"""$c(z_l)$ ``[K, N]`` of layer ``l``: the (optional) scaled relaxed cost, the learned constant
    and the network $r_{\rho,l}(\sigma_\lambda(z_l), x)$."""
    soft = torch.sigmoid(z / temp)
    if est.use_relaxed_cost:
        relax = functools.partial(concrete_bits, temperature=temp)
        out = est.eta * relaxed_signal(model, x, hs, us, l, lv, soft, relax)
    else:                                                     # LAX: no relaxed pass needed
        out = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
    if est.use_baseline:
        out = out + est.baseline
    if est.use_network:
        out = out + est.sbn_controls(l, soft, x)
    return out


def _lax_layer_grads(est, model, x, us, hs, logits, f, create_graph):
    r"""LAX's $\hat g_l$ (see :func:`relax_layer_grads`), ``[K, N, d_l]`` each."""
    temp = est.log_temperature.exp()
    grads = []
    for l in range(len(hs)):
        lg = logits[l].detach()

        def control(lv, l=l):
            # the relaxed cost's log q is evaluated at the detached logits: c depends on l_l via z only
            c_z = _control_of_z(est, model, x, hs, us, l, lg, lv + noise(us[l]), temp)
            return c_z.sum(), c_z
        with torch.enable_grad():
            pathwise, c_z = _logit_grad(control, lg, create_graph)
        grads.append((f.detach() - c_z).unsqueeze(-1) * logistic_score(us[l]) + pathwise)
    return grads


def relax_loss(est, model, x, k, update):
    """REBAR/RELAX/LAX surrogate ``[N]`` for ``est`` (a :class:`vitools.estimators.control.RelaxFamily`);
    with ``update`` (under autograd) one Adam step on the control parameters first."""
    us, hs, logits = draw(model, x, k)
    f = signal(model, x, hs)                                                  # [K, N]
    log_p = sum(model.log_p_layers(x, hs))
    train = update and torch.is_grad_enabled()
    params = est.parameters(model)
    grads = relax_layer_grads(est, model, x, us, hs, logits, f, create_graph=train)
    if train:
        _control_step(est, params, grads)
    out = f.detach() + (log_p - log_p.detach())
    for lg, g in zip(logits, grads):
        out = out + ((lg - lg.detach()) * g.detach()).sum(-1)
    return out.mean(0)


def _control_step(est, params, grads) -> float:
    loss = sum(g.pow(2).sum(-1).mean() for g in grads)
    if est.sbn_optimizer is None:
        est.sbn_optimizer = torch.optim.Adam(params, lr=est.lr)
    return descend(est.sbn_optimizer, loss, params)


def fit_control_variate(est, model, x: torch.Tensor, k: int = 1, steps: int = 100,
                        batch_size: int = 100) -> list[float]:
    """Train REBAR/RELAX/LAX's control parameters for a *fixed* model on minibatches of ``x``
    (the model is not updated); returns the second moment $\\sum_l \\|\\hat g_l\\|^2$ per step."""
    check_call(est, model, x, k)
    steps = checks.count("steps", steps, minimum=0)
    batch_size = checks.count("batch_size", batch_size)
    params = est.parameters(model)
    history = []
    for _ in range(steps):
        index = torch.randint(x.shape[0], (min(batch_size, x.shape[0]),), device=x.device)
        xb = x[index]
        with torch.no_grad():
            us, hs, logits = draw(model, xb, k)
            f = signal(model, xb, hs)
        with torch.enable_grad():
            grads = relax_layer_grads(est, model, xb, us, hs, logits, f, create_graph=True)
            history.append(_control_step(est, params, grads))
    return history


# ---------------------------------------------------------------------- ARM / DisARM
def antithetic_pair(kind: str, u: torch.Tensor, logits: torch.Tensor):
    r"""``(b, b_check, w)`` from uniforms ``u``: the draw $b = \mathbb{1}[u < \sigma(\ell)]$, its
    antithetic partner $\check b$ and the weight with which $(f(b) - f(\check b))\,w$ is the
    gradient in ``logits`` (detached), all shaped like ``u``. ``kind="arm"`` (Yin & Zhou 2019):
    $\check b = \mathbb{1}[u > \sigma(-\ell)]$, $w = \tfrac12 - u$; ``"disarm"`` (Dong et al. 2020):
    $\check b = \mathbb{1}[1 - u < \sigma(\ell)]$, $w = \tfrac12(-1)^{\check b}
    \mathbb{1}[b \ne \check b]\,\sigma(|\ell|)$."""
    hard = (u < torch.sigmoid(logits)).to(u.dtype)
    if kind == "arm":
        partner = (u > torch.sigmoid(-logits)).to(u.dtype)
        return hard, partner, 0.5 - u
    partner = (1 - u < torch.sigmoid(logits)).to(u.dtype)
    weight = 0.5 * (1 - 2 * partner) * (hard != partner).to(u.dtype) * torch.sigmoid(logits.abs())
    return hard, partner, weight


def antithetic_loss(kind: str, model, x, k):
    """ARM (``kind="arm"``) or DisARM (``"disarm"``) surrogate ``[N]``, one partner pass per layer."""
    us, hs, logits = draw(model, x, k)
    f = signal(model, x, hs).detach()
    log_p = sum(model.log_p_layers(x, hs))
    out = torch.zeros_like(f)
    value, pathwise = f, log_p
    for l in range(len(hs)):
        lg = logits[l].detach()
        _, partner, weight = antithetic_pair(kind, us[l], lg)                 # h_l = 1[u_l < sigma]
        hs_partner = propagate(model, hs, l, partner, us)
        with torch.no_grad() if l else torch.enable_grad():
            f_partner = signal(model, x, hs_partner)
            if l == 0:                                                         # a second draw from q
                value = 0.5 * (f + f_partner.detach())
                pathwise = 0.5 * (log_p + sum(model.log_p_layers(x, hs_partner)))
        g = (f - f_partner.detach()).unsqueeze(-1) * weight                   # [K, N, d_l]
        out = out + ((logits[l] - lg) * g).sum(-1)
    return (value + (pathwise - pathwise.detach()) + out).mean(0)


# ---------------------------------------------------------------------- biased baselines
def relaxed_loss(relax, model, x, k):
    """Surrogate ``[N]`` of a relaxation (Gumbel-Softmax, straight-through, GST, IGR; biased): the
    value is the ELBO estimate at the hard sample, the gradient that of the ELBO along the relaxed
    forward pass in which every layer is ``relax(logits, u)`` (a bit relaxation, see above)."""
    us, hs, logits = draw(model, x, k)
    f = signal(model, x, hs).detach()
    f_rel = relaxed_signal(model, x, hs, us, 0, logits[0], relax(logits[0], us[0]), relax)
    return (f + f_rel - f_rel.detach()).mean(0)


from . import relaxed as _relaxed  # noqa: E402  (last: relaxed.py imports this module for ModelSupport)
