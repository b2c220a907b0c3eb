r"""Unbiased gradients for discrete latents with relaxation-based control variates, and ARM/DisARM.

For $b = H(z)$ with $z = \ell + $ noise (logistic for bits, Gumbel for classes) and any
control variate $c_\phi$, RELAX (Grathwohl et al. 2018, arXiv:1711.00123, Eq. 8) is

$$\hat g = \big[f(b) - c_\phi(\tilde z)\big]\nabla_\theta \log q(b)
          + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z),$$

where $\tilde z \sim p(z \mid b)$ is reparameterised by fresh uniforms $v$ (bits:
$\tilde z = \mathrm{softplus}(\mathrm{logit}\,v + \mathrm{softplus}(\ell))$ if $b = 1$, else
$-\mathrm{softplus}(\mathrm{logit}\,v + \mathrm{softplus}(-\ell))$; classes: the truncated
Gumbels of Tucker et al. 2017, arXiv:1703.07370, Appendix). It is unbiased for every fixed
$\phi$. REBAR takes $c_\phi(z) = \eta\, f(\sigma_\lambda(z))$, the relaxed cost at temperature
$\lambda$ (see :func:`vitools.estimators.relaxed.relaxed_cost` for which relaxation of $f$);
RELAX adds a learned network $r_\rho(\sigma_\lambda(z))$; LAX (ibid., Eq. 5) uses the score of
the continuous $z$ instead: $[f(H(z)) - c_\phi(z)]\nabla\log p(z) + \nabla c_\phi(z)$.
With ``baseline=True`` (default) $c_\phi$ also holds a learned constant, as a baseline (it
cancels in the two pathwise terms); ``baseline=False`` gives the papers' plain control variates.
The control parameters $\phi = (\eta, \log\lambda, \rho, \text{baseline})$ are trained to minimise
$\mathbb{E}\|\hat g\|^2$ (= variance + a constant) by differentiating $\hat g$ itself
(``create_graph=True``): :meth:`RelaxFamily.step_control_variate`, run by ``prepare``.

ARM (Yin & Zhou 2019, arXiv:1807.11143) and DisARM (Dong, Mnih & Tucker 2020,
arXiv:2006.10680) use an antithetic pair of Bernoulli vectors from one uniform vector $u$
and need no relaxation; a sample of ``k`` means ``k`` pairs (``2k`` cost evaluations).

REBAR, RELAX, LAX, ARM and DisARM also train sigmoid belief nets: ``est.loss(model, x, k)``, the
multi-layer treatment of :mod:`.relaxed_sbn`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, config
from . import register
from .base import Estimator, descend, linear_surrogate, score_box
from . import relaxed_sbn
from .relaxed import Latent, uniform, why_no_relaxation, why_not_discrete
from .relaxed_sbn import ModelSupport, is_sbn


def conditional_noisy_logits(latent: Latent, hard: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""$\tilde z \sim p(z \mid b)$ reparameterised in ``logits`` by fresh uniforms, ``[k, *batch, D]``."""
    v = uniform(hard.shape, logits.detach())
    if latent.kind == "bernoulli":
        return relaxed_sbn.conditional_bits(hard, logits, v)
    log_p = torch.log_softmax(logits, -1)
    neg_log_v = -torch.log(v)                                           # Exponential(1)
    top = (neg_log_v * hard).sum(-1, keepdim=True)                      # -log v_b
    others = -torch.log(neg_log_v * torch.exp(-log_p) + top)            # truncated below the top
    return torch.where(hard > 0, -torch.log(top), others)


class RelaxFamily(ModelSupport, Estimator):
    """Shared machinery of ``rebar``, ``relax`` and ``lax``: control parameters, their training.

    On a sigmoid belief net (REBAR, RELAX, LAX): ``loss(model, x, k, update=True)`` takes one Adam
    step on the control parameters (``parameters(model)``, learning rate ``lr``) per call with
    ``update=True`` under autograd (their own step: the surrogate's gradient does not reach them);
    :meth:`fit_control_variate` trains them for a fixed model.
    """

    use_network = True
    use_relaxed_cost = True
    conditional = True

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, baseline: bool = True, hidden: int = 16,
                 lr: float = 0.03, train_steps: int = 100, train_batch: int = 128):
        checks.positive("temperature", temperature)
        checks.finite("eta", eta)
        self.hidden = checks.count("hidden", hidden)
        checks.positive("lr", lr)
        self.train_steps = checks.count("train_steps", train_steps, minimum=0)
        self.train_batch = checks.count("train_batch", train_batch, minimum=2)
        if not isinstance(baseline, bool):
            raise ValueError(f"baseline must be True or False, got {baseline!r}")
        self.use_baseline = baseline
        super().__init__(temperature=float(temperature), eta=float(eta), baseline=baseline)
        self.init_temperature, self.init_eta, self.lr = float(temperature), float(eta), float(lr)
        self.reset()

    def reset(self):
        self.eta = nn.Parameter(torch.tensor(self.init_eta))
        self.log_temperature = nn.Parameter(torch.tensor(self.init_temperature).log())
        self.baseline = nn.Parameter(torch.tensor(0.0))
        self.net: nn.Module | None = None
        self.optimizer = None
        self.sbn_controls: nn.Module | None = None
        self.sbn_optimizer = None

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    @property
    def label(self) -> str:
        return self.name.upper()

    def parameters(self, model=None) -> list[torch.Tensor]:
        """The control-variate parameters $\\phi$ (built for the problem at first use); with a
        sigmoid belief net ``model``, those of the model-level estimator (per-layer networks)."""
        params = [self.eta, self.log_temperature] if self.use_relaxed_cost else [self.log_temperature]
        params = params + ([self.baseline] if self.use_baseline else [])
        if model is not None:
            self.check(model, torch.zeros(1, model.x_dim, device=model.prior_logits.device), 1)
            device = next(model.parameters()).device
            for p in (self.eta, self.log_temperature, self.baseline):
                if p.device != device:                   # (assigning .data inside torch.func crashes)
                    p.data = p.data.to(device)
            if self.use_network and self.sbn_controls is None:
                self.sbn_controls = relaxed_sbn.SBNControls(model.x_dim, model.latent, self.hidden).to(device)
            return params + (list(self.sbn_controls.parameters()) if self.use_network else [])
        return params + (list(self.net.parameters()) if self.net is not None else [])

    def modules(self):
        return {"sbn_controls": self.sbn_controls} if self.sbn_controls is not None else {}

    def _loss(self, model, x, k, update):
        self.parameters(model)
        return relaxed_sbn.relax_loss(self, model, x, k, update)

    def fit_control_variate(self, model, x, k: int = 1, steps: int | None = None,
                            batch_size: int = 100) -> list[float]:
        """Train the control parameters for a fixed sigmoid belief net (``steps`` defaults to
        ``train_steps``); see :func:`vitools.estimators.relaxed_sbn.fit_control_variate`."""
        steps = self.train_steps if steps is None else steps
        return relaxed_sbn.fit_control_variate(self, model, x, k, steps, batch_size)

    def why_not(self, problem):
        if is_sbn(problem):
            return None
        if self.use_relaxed_cost:
            return why_no_relaxation(problem)
        return why_not_discrete(problem)

    def _build(self, latent):
        device, dtype = latent.logits.device, latent.logits.dtype
        for p in (self.eta, self.log_temperature, self.baseline):
            p.data = p.data.to(device=device, dtype=dtype)
        if self.use_network and self.net is None:
            self.net = relaxed_sbn.control_net(latent.logits.shape[-1], self.hidden).to(device=device, dtype=dtype)

    def control(self, latent, z):
        """$c_\\phi(z)$, ``[k, *batch]``."""
        temp = self.log_temperature.exp()
        soft = latent.soft_from(z, temp)
        out = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
        if self.use_baseline:
            out = out + self.baseline
        if self.use_relaxed_cost:
            out = out + self.eta * latent.relaxed_cost(soft)
        if self.use_network:
            out = out + self.net(soft).squeeze(-1)
        return out

    def surrogate(self, problem, theta, k=1):
        latent = Latent(problem, theta)
        self._build(latent)
        logits = latent.logits                                     # [*batch, D]
        z = latent.noisy_logits(k)                                 # [k, *batch, D], depends on theta
        z_fixed = z.detach()                                       # same value, no theta-gradient
        hard = latent.hard_from(z.detach())
        f = latent.cost(hard)                                      # [k, *batch]
        pathwise = self.control(latent, z) - self.control(latent, z_fixed)   # zero value
        if self.conditional:
            z_tilde = conditional_noisy_logits(latent, hard, logits)
            z_tilde_fixed = z_tilde.detach()
            signal = f.detach() - self.control(latent, z_tilde_fixed)
            score = score_box(latent.log_prob(hard))
            pathwise = pathwise - (self.control(latent, z_tilde) - self.control(latent, z_tilde_fixed))
        else:
            signal = f.detach() - self.control(latent, z_fixed)
            score = score_box(_noise_log_density(latent, z.detach(), logits))
        return (f + signal * score + pathwise).mean(0)

    def step_control_variate(self, problem, theta, k: int = 1, batch: int | None = None) -> float:
        r"""One Adam step on $\phi$ minimising the mean $\|\hat g\|^2$ over ``batch`` estimates at
        ``theta`` (detached); returns that mean. Call it beside each training step of $\theta$."""
        batch = self.train_batch if batch is None else checks.count("batch", batch, minimum=2)
        replicated = theta.detach().expand(batch, *theta.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            surrogate = self(problem, replicated, k)
            params = self.parameters()
            if self.optimizer is None:
                self.optimizer = torch.optim.Adam(params, lr=self.lr)
            (grad,) = torch.autograd.grad(surrogate.sum(), replicated, create_graph=True)
            loss = grad.pow(2).flatten(1).sum(1).mean()
            return descend(self.optimizer, loss, params)

    def prepare(self, problem, theta, k):
        """Start afresh and train $\\phi$ for ``train_steps`` steps at fixed ``theta``; then it is frozen."""
        self.reset()
        for _ in range(self.train_steps):
            self.step_control_variate(problem, theta, k)


def _noise_log_density(latent, z, logits):
    """$\\log p(z \\mid \\ell)$ of the noisy logits: logistic or Gumbel with location $\\ell$, ``[k, *batch]``."""
    u = z - logits
    if latent.kind == "bernoulli":
        return (-u - 2 * F.softplus(-u)).sum(-1)
    u = z - torch.log_softmax(logits, -1)
    return (-u - torch.exp(-u)).sum(-1)


@register
class REBAR(RelaxFamily):
    r"""REBAR (Tucker et al. 2017, arXiv:1703.07370): $c = \eta f(\sigma_\lambda(z))$, $\eta$ and $\lambda$ tuned."""

    name = "rebar"
    use_network = False


@register
class RELAX(RelaxFamily):
    r"""RELAX (Grathwohl et al. 2018): $c = \eta f(\sigma_\lambda(z)) + r_\rho(\sigma_\lambda(z))$, all tuned."""

    name = "relax"


@register
class LAX(RelaxFamily):
    r"""LAX on $f \circ H$ (Grathwohl et al. 2018, arXiv:1711.00123, Eq. 5): a learned network
    $c_\rho(\sigma_\lambda(z))$ and the score of the continuous noisy logits $z$; no conditional
    sample, no relaxed cost needed. Also on sigmoid belief nets (per-layer networks, see
    :mod:`.relaxed_sbn`)."""

    name = "lax"
    use_relaxed_cost = False
    conditional = False


class _Antithetic(ModelSupport, Estimator):
    def _loss(self, model, x, k, update):
        return relaxed_sbn.antithetic_loss(self.name, model, x, k)

    def why_not(self, problem):
        if is_sbn(problem):
            return None
        reason = why_not_discrete(problem)
        if reason is None and Latent(problem, problem.init_params().detach()).kind != "bernoulli":
            return "it is defined for Bernoulli (binary) latents only"
        return reason

    def surrogate(self, problem, theta, k=1):
        latent = Latent(problem, theta)
        if latent.kind != "bernoulli":
            raise ValueError(f"problem must have Bernoulli latents for {self.name}, got {latent.kind}")
        logits = latent.logits                                           # [*batch, D]
        u = uniform((k, *logits.shape), logits)                          # [k, *batch, D]
        with torch.no_grad():
            hard, partner, weight = relaxed_sbn.antithetic_pair(self.name, u, logits.detach())
            f, f_partner = latent.cost(hard), latent.cost(partner)
        value = 0.5 * (f + f_partner).mean(0)                            # [*batch]
        grad = ((f - f_partner).unsqueeze(-1) * weight).mean(0)
        return linear_surrogate(value, [logits], [grad])


@register
class ARM(_Antithetic):
    r"""ARM: $\hat g_d = [f(\mathbb{1}[u > \sigma(-\ell)]) - f(\mathbb{1}[u < \sigma(\ell)])](u_d - \tfrac12)$."""

    name = "arm"


@register
class DisARM(_Antithetic):
    r"""DisARM: $\hat g_d = \tfrac12[f(b) - f(\tilde b)](-1)^{\tilde b_d}\mathbb{1}[b_d \ne \tilde b_d]\sigma(|\ell_d|)$,
    $b = \mathbb{1}[u < \sigma(\ell)]$, $\tilde b = \mathbb{1}[1 - u < \sigma(\ell)]$."""

    name = "disarm"


def fit_toy(estimator, problem, steps: int = 300, lr: float = 0.05, k: int = 1, record_every: int = 10,
            variance_n: int = 200, control_batch: int = 16, seed: int = 0) -> dict:
    r"""Minimise $\mathbb{E}_{q_\theta}[f]$ over $\theta$ with Adam, as in the REBAR/RELAX toy figures.

    Each step takes one ``k``-sample estimate; estimators with trained control variates also
    take one :meth:`RelaxFamily.step_control_variate` step on ``control_batch`` estimates.
    Every ``record_every`` steps the variance of the estimate at the current $\theta$ is
    measured from ``variance_n`` fresh estimates (control variates frozen meanwhile).
    Returns ``{"steps", "theta" [S, P], "log10_variance" [S], "exact_value" [S]}``.
    """
    checks.count("steps", steps)
    checks.positive("lr", lr)
    checks.count("record_every", record_every)
    checks.count("variance_n", variance_n, minimum=2)
    checks.count("control_batch", control_batch, minimum=2)
    estimator.reset()
    history = {"steps": [], "theta": [], "log10_variance": [], "exact_value": []}
    with config.seeded(seed):
        theta = problem.init_params()
        optimizer = torch.optim.Adam([theta], lr=lr)
        for step in range(steps):
            if step % record_every == 0:
                replicated = theta.detach().expand(variance_n, *theta.shape).clone().requires_grad_(True)
                (g,) = torch.autograd.grad(estimator(problem, replicated, k).sum(), replicated)
                history["steps"].append(step)
                history["theta"].append(theta.detach().clone())
                history["log10_variance"].append(float(g.var(0).sum().clamp_min(1e-30).log10()))
                history["exact_value"].append(float(problem.exact_value(theta.detach())))
            optimizer.zero_grad()
            estimator(problem, theta, k).sum().backward()
            optimizer.step()
            if hasattr(estimator, "step_control_variate"):
                estimator.step_control_variate(problem, theta, k, batch=control_batch)
    history["steps"] = torch.tensor(history["steps"])
    history["theta"] = torch.stack(history["theta"])
    history["log10_variance"] = torch.tensor(history["log10_variance"])
    history["exact_value"] = torch.tensor(history["exact_value"])
    return history
