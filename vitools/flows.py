r"""Normalizing flows: richer posteriors by invertible maps with cheap log-determinants.

A flow pushes a base draw $z_0 \sim q_0$ through invertible maps $z_K = f_K \circ \cdots \circ
f_1(z_0)$; by the change of variables

$$\log q_K(z_K) = \log q_0(z_0) - \sum_{k=1}^K \log\Big|\det \frac{\partial f_k}{\partial z_{k-1}}\Big|.$$

Layers (each an ``nn.Module`` mapping ``z [..., d]`` to ``(f(z), log|det J| [...])``):

* :class:`Planar` $f(z) = z + \hat u\, \tanh(w^\top z + b)$, $\log|\det J| = \log|1 + \hat u^\top
  \psi(z)|$ with $\psi = \tanh'(w^\top z + b)\, w$, and $\hat u = u + (m(w^\top u) - w^\top u)
  w / \lVert w\rVert^2$, $m(a) = -1 + \log(1 + e^a)$, so that $w^\top \hat u \ge -1$ and $f$ is
  invertible (Rezende & Mohamed 2015, *Variational Inference with Normalizing Flows*,
  arXiv:1505.05770, Section 4.1 and Appendix A.1);
* :class:`Radial` $f(z) = z + \beta h(\alpha, r)(z - z_0)$, $r = \lVert z - z_0\rVert$, $h = 1/(\alpha
  + r)$, $\log|\det J| = (d - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r)$, with $\alpha > 0$
  and $\beta \ge -\alpha$ (same paper, Section 4.1 and Appendix A.2);
* :class:`AffineCoupling` (RealNVP, Dinh, Sohl-Dickstein & Bengio 2017, arXiv:1605.08803): the
  coordinates outside a binary mask $m$ are scaled and shifted by functions of those inside,
  $y = m \odot z + (1 - m) \odot (z\, e^{s(m \odot z)} + t(m \odot z))$, $\log|\det J| = \sum (1 - m)
  \odot s$; exactly invertible.

:class:`FlowDistribution` is a ``torch.distributions.Distribution`` over the flowed variable:
``rsample`` (reparameterized through the base's ``rsample``), ``sample``, ``log_prob``, and
``rsample_and_log_prob`` (one pass, as training needs). Planar and radial maps have no closed
inverse: ``log_prob`` of the value last returned by ``rsample`` reads the cached base density
(as ``torch.distributions`` transforms with ``cache_size=1`` do); a flow of coupling layers only
inverts any value. Also the four 2-D test densities $p(z) \propto e^{-U(z)}$ of Rezende & Mohamed's
Table 1 (:func:`potential`) and their normalisers by quadrature (:func:`log_normalizer`), so that
$\mathrm{KL}(q\,\Vert\, p)$ of a fitted flow is known exactly up to Monte Carlo error.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from . import checks

__all__ = ["Planar", "Radial", "AffineCoupling", "FlowDistribution", "FlowPosterior", "flow", "potential", "POTENTIALS",
           "log_normalizer", "reverse_kl"]


class Planar(nn.Module):
    """$f(z) = z + \\hat u \\tanh(w^\\top z + b)$, invertible by the constraint on $\\hat u$."""

    invertible = False                                    # invertible, but with no closed-form inverse

    def __init__(self, dim: int, init_scale: float = 0.01):
        super().__init__()
        self.dim = checks.count("dim", dim)
        checks.positive("init_scale", init_scale)
        self.u = nn.Parameter(init_scale * torch.randn(dim))
        self.w = nn.Parameter(init_scale * torch.randn(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        return planar_u_hat(self.u, self.w)

    def forward(self, z: torch.Tensor):
        return planar_map(z, self.u, self.w, self.b)


def planar_u_hat(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """$\\hat u = u + (m(w^\\top u) - w^\\top u)\\, w / \\lVert w\\rVert^2$ over the last dimension
    (``u``, ``w`` ``[..., d]``), so that $w^\\top \\hat u \\ge -1$."""
    wu = (w * u).sum(-1, keepdim=True)
    return u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-12)


def planar_map(z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """One planar step $(f(z), \\log|\\det J|)$ with parameters ``u``, ``w`` ``[..., d]`` and ``b``
    ``[...]`` that broadcast against ``z`` ``[..., d]``: shared (a :class:`Planar` layer) or one set
    per example (an amortized posterior, Rezende & Mohamed's Section 4.2)."""
    u = planar_u_hat(u, w)
    a = (z * w).sum(-1) + b                                             # [...]
    y = z + u * torch.tanh(a)[..., None]
    psi_u = (1 - torch.tanh(a) ** 2) * (w * u).sum(-1)                  # psi(z)^T u_hat >= -1
    return y, torch.log((1 + psi_u).abs().clamp_min(1e-12))


class PlanarStep:
    """A planar step with given (e.g. encoder-produced) parameters ``u``, ``w`` ``[N, d]``, ``b``
    ``[N]``: a layer for :class:`FlowDistribution` over an amortized base of batch ``[N]``."""

    invertible = False

    def __init__(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        self.u, self.w, self.b, self.dim = u, w, b, u.shape[-1]

    def __call__(self, z: torch.Tensor):
        return planar_map(z, self.u, self.w, self.b)


class Radial(nn.Module):
    """$f(z) = z + \\beta h(\\alpha, r)(z - z_0)$ with $\\alpha = \\mathrm{softplus}(a) > 0$ and
    $\\beta = -\\alpha + \\mathrm{softplus}(b) \\ge -\\alpha$."""

    invertible = False

    def __init__(self, dim: int, init_scale: float = 0.01):
        super().__init__()
        self.dim = checks.count("dim", dim)
        checks.positive("init_scale", init_scale)
        self.z0 = nn.Parameter(init_scale * torch.randn(dim))
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.full((), -4.0))                      # beta near -alpha + 0.02

    def forward(self, z: torch.Tensor):
        alpha = F.softplus(self.a)
        beta = -alpha + F.softplus(self.b)
        diff = z - self.z0
        r = diff.norm(dim=-1)
        h = 1 / (alpha + r)
        bh = beta * h
        y = z + bh[..., None] * diff
        log_det = (self.dim - 1) * torch.log1p(bh) + torch.log1p(bh - beta * h ** 2 * r)
        return y, log_det


class AffineCoupling(nn.Module):
    """RealNVP's affine coupling: the unmasked coordinates scaled by $e^{s}$ and shifted by $t$,
    both functions of the masked ones (an MLP with ``hidden`` units; $s$ squashed by tanh).
    The last layer starts at zero, so the layer starts as the identity."""

    invertible = True

    def __init__(self, dim: int, mask: Sequence[int] | torch.Tensor, hidden: int = 64):
        super().__init__()
        self.dim = checks.count("dim", dim, minimum=2)
        hidden = checks.count("hidden", hidden)
        mask = torch.as_tensor(mask, dtype=torch.get_default_dtype()).flatten()
        if mask.shape != (dim,) or not bool(((mask == 0) | (mask == 1)).all()) or mask.sum() in (0, dim):
            raise ValueError(f"mask must be {dim} zeros and ones with both present, got {mask.tolist()}")
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, z_masked):
        s, t = self.net(z_masked).chunk(2, dim=-1)
        keep = 1 - self.mask
        return torch.tanh(s) * keep, t * keep

    def forward(self, z: torch.Tensor):
        s, t = self._st(z * self.mask)
        return z * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y: torch.Tensor):
        s, t = self._st(y * self.mask)                                # masked part is unchanged
        return (y - t) * torch.exp(-s), -s.sum(-1)


def flow(kind: str, dim: int, length: int, hidden: int = 64) -> nn.ModuleList:
    """``length`` layers of ``kind`` (``"planar"``, ``"radial"`` or ``"coupling"``, the last with
    alternating masks)."""
    checks.choice("kind", kind, ("planar", "radial", "coupling"))
    length = checks.count("length", length, minimum=0)
    if kind == "planar":
        return nn.ModuleList(Planar(dim) for _ in range(length))
    if kind == "radial":
        return nn.ModuleList(Radial(dim) for _ in range(length))
    masks = [(torch.arange(dim) + i) % 2 for i in range(length)]
    return nn.ModuleList(AffineCoupling(dim, m, hidden) for m in masks)


class FlowDistribution(D.Distribution):
    """The law of $f_K \\circ\\cdots\\circ f_1(z_0)$, $z_0 \\sim$ ``base`` (event shape ``[d]``).

    ``base`` must have ``rsample``; its batch shape (e.g. ``[N]`` for an amortized encoder's
    Gaussian) is kept, and the layers' parameters are shared across it."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, base: D.Distribution, layers: Sequence[nn.Module], validate_args=None):
        if not isinstance(base, D.Distribution) or len(base.event_shape) != 1 or not base.has_rsample:
            raise ValueError(f"base must be a distribution with event shape [d] and rsample, got {base!r}")
        self.base, self.layers = base, list(layers)
        for i, layer in enumerate(self.layers):
            if getattr(layer, "dim", base.event_shape[0]) != base.event_shape[0]:
                raise ValueError(f"layers[{i}] acts on dimension {layer.dim}, but base has event shape "
                                 f"{tuple(base.event_shape)}")
        self._cache = None
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return D.constraints.real_vector

    def _push(self, z0):
        z, log_q = z0, self.base.log_prob(z0)
        for layer in self.layers:
            z, log_det = layer(z)
            log_q = log_q - log_det
        return z, log_q

    def rsample_and_log_prob(self, sample_shape=torch.Size()):
        """A reparameterized draw ``[*sample_shape, *batch, d]`` and its log-density ``[*sample, *batch]``."""
        z, log_q = self._push(self.base.rsample(sample_shape))
        self._cache = (z, log_q)
        return z, log_q

    def rsample(self, sample_shape=torch.Size()):
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value):
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        if not all(getattr(layer, "invertible", False) for layer in self.layers):
            raise ValueError("value must be the tensor last returned by rsample(): planar and radial layers "
                             "have no closed-form inverse (use rsample_and_log_prob, or coupling layers)")
        z, log_det = value, torch.zeros(value.shape[:-1], device=value.device, dtype=value.dtype)
        for layer in reversed(self.layers):
            z, inv_log_det = layer.inverse(z)
            log_det = log_det + inv_log_det
        return self.base.log_prob(z) + log_det

    def expand(self, batch_shape, _instance=None):
        return FlowDistribution(self.base.expand(batch_shape), self.layers)


class FlowPosterior(nn.Module):
    """A trainable flow posterior: a diagonal Gaussian base (``loc``, ``log_scale``) and ``length``
    layers of ``kind``; ``length=0`` is the diagonal Gaussian itself. ``distribution()`` gives the
    :class:`FlowDistribution` at the current parameters."""

    def __init__(self, dim: int, kind: str = "planar", length: int = 8, hidden: int = 64):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(checks.count("dim", dim)))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.layers = flow(kind, dim, length, hidden)
        self.kind = kind if length else "diagonal Gaussian"

    def distribution(self) -> FlowDistribution:
        base = D.Independent(D.Normal(self.loc, self.log_scale.exp()), 1)
        return FlowDistribution(base, self.layers)


# ----------------------------------------------------------------------- 2-D test densities
def _w1(z):
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _u1(z):
    r = z.norm(dim=-1)
    modes = torch.stack([-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2])
    return 0.5 * ((r - 2) / 0.4) ** 2 - torch.logsumexp(modes, 0)


def _envelope(z):
    return 0.5 * (z[..., 0] / ENVELOPE) ** 2


def _u2(z):
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2 + _envelope(z)


def _u3(z):
    w2 = 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w2) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b]), 0) + _envelope(z)


def _u4(z):
    w3 = 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w3) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b]), 0) + _envelope(z)


ENVELOPE = 2.5                                # scale of the Gaussian envelope in z_1 of U_2..U_4
POTENTIALS = {"ring": _u1, "wave": _u2, "wave_split": _u3, "wave_step": _u4}


def potential(name: str, z: torch.Tensor) -> torch.Tensor:
    """$U(z)$ of Rezende & Mohamed's Table 1 (``"ring"`` $U_1$, ``"wave"`` $U_2$, ``"wave_split"``
    $U_3$, ``"wave_step"`` $U_4$) at ``z`` ``[..., 2]`` -> ``[...]``; the density is $\\propto e^{-U}$.

    The paper's $U_2, U_3, U_4$ depend on $z_1$ only through the wave, so $e^{-U}$ has infinite
    mass along $z_1$ (the paper draws them on $[-4, 4]^2$); here they carry a Gaussian envelope
    $\\tfrac12 (z_1 / 2.5)^2$ so that each is a proper density with a known normaliser."""
    checks.choice("name", name, tuple(POTENTIALS))
    if z.shape[-1:] != (2,):
        raise ValueError(f"z must have a last dimension of 2, got shape {tuple(z.shape)}")
    return POTENTIALS[name](z)


def log_normalizer(name: str, radius: float = 10.0, points: int = 1001) -> float:
    """$\\log \\int e^{-U(z)}\\,dz$ by the midpoint rule on ``[-radius, radius]^2`` in float64
    (with the envelope, the mass outside $[-10, 10]^2$ is below $10^{-4}$ of the total)."""
    checks.positive("radius", radius)
    points = checks.count("points", points, minimum=3)
    step = 2 * radius / points
    grid = -radius + step * (torch.arange(points, dtype=torch.float64) + 0.5)
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
    return float(torch.logsumexp(-potential(name, z).flatten(), 0) + 2 * math.log(step))


def reverse_kl(q: FlowDistribution | D.Distribution, name: str, k: int = 256) -> torch.Tensor:
    r"""$\mathbb{E}_q[\log q(z) + U(z)]$ from ``k`` reparameterized draws, a scalar: the loss that
    fits $q$ to $e^{-U}/Z$ (it equals $\mathrm{KL}(q\,\Vert\,p) - \log Z$)."""
    k = checks.count("k", k)
    if isinstance(q, FlowDistribution):
        z, log_q = q.rsample_and_log_prob((k,))
    else:
        z = q.rsample((k,))
        log_q = q.log_prob(z)
    return (log_q + potential(name, z)).mean()
