"""Normalizing flows: log-determinants against autograd Jacobians, invertibility, densities that
integrate to one, the 2-D test potentials, argument checks."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vitools import flows


def _randomise(layer, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


def _layers(dim):
    return [("planar", _randomise(flows.Planar(dim).double(), 0)),
            ("radial", _randomise(flows.Radial(dim).double(), 1)),
            ("coupling", _randomise(flows.AffineCoupling(dim, torch.arange(dim) % 2, hidden=8).double(), 2))]


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_log_det_matches_autograd_jacobian(dim, which):
    name, layer = _layers(dim)[which]
    z = torch.randn(6, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, log_det = layer(z)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], z[i])
        sign, want = torch.linalg.slogdet(jac)
        assert sign > 0 or name != "coupling"
        assert torch.allclose(log_det[i], want, atol=1e-10), (name, i)


def test_per_example_planar_steps_match_shared_layers_and_their_jacobians():
    """PlanarStep (parameters per example, as an amortized posterior's encoder gives them) is the
    shared Planar layer row by row, and its log-determinant is the autograd Jacobian's."""
    g = torch.Generator().manual_seed(5)
    u, w = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    step = flows.PlanarStep(u, w, b)
    z = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)                 # [K, N, d]
    y, log_det = step(z)
    assert y.shape == (5, 4, 3) and log_det.shape == (5, 4)
    for n in range(4):
        layer = flows.Planar(3).double()
        with torch.no_grad():
            layer.u.copy_(u[n]), layer.w.copy_(w[n]), layer.b.copy_(b[n])
        y_n, ld_n = layer(z[:, n])
        assert torch.allclose(y_n, y[:, n]) and torch.allclose(ld_n, log_det[:, n])
        jac = torch.autograd.functional.jacobian(lambda v: flows.planar_map(v, u[n], w[n], b[n])[0], z[0, n])
        assert torch.allclose(log_det[0, n], torch.linalg.slogdet(jac)[1], atol=1e-10)


def test_a_wrong_log_det_fails_the_jacobian_check():
    """Power check: dropping the (d - 1) term of the radial flow is caught by the same comparison."""
    layer = _layers(3)[1][1]
    z = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], z)
    _, log_det = layer(z)
    alpha = torch.nn.functional.softplus(layer.a)
    beta = -alpha + torch.nn.functional.softplus(layer.b)
    bh = beta / (alpha + (z - layer.z0).norm())
    assert abs(float((log_det - 2 * torch.log1p(bh) - torch.linalg.slogdet(jac)[1]).detach())) > 1e-3


def test_planar_constraint_keeps_it_invertible():
    layer = flows.Planar(3).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, 0.0, 0.0]))
        layer.u.copy_(torch.tensor([-5.0, 1.0, 0.0]))        # w^T u = -5 < -1 before the constraint
    assert float((layer.w @ layer.u_hat()).detach()) >= -1
    z = torch.randn(1000, 3, dtype=torch.float64)
    assert torch.isfinite(layer(z)[1]).all()


def test_coupling_inverts_exactly():
    layer = _layers(4)[2][1]
    z = torch.randn(50, 4, dtype=torch.float64)
    y, log_det = layer(z)
    back, inv_log_det = layer.inverse(y)
    assert torch.allclose(back, z, atol=1e-12) and torch.allclose(inv_log_det, -log_det, atol=1e-12)
    assert not torch.allclose(y, z)


def test_coupling_flow_density_integrates_to_one():
    layers = [_randomise(m.double(), 10 + i, 0.5) for i, m in enumerate(flows.flow("coupling", 2, 3, hidden=8))]
    base = D.Independent(D.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    q = flows.FlowDistribution(base, layers)
    step = 0.04
    grid = -8 + step * (torch.arange(400, dtype=torch.float64) + 0.5)
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    mass = float(q.log_prob(z).detach().exp().sum() * step**2)
    assert abs(mass - 1) < 1e-3
    x = q.sample((7,))
    assert torch.allclose(q.log_prob(x.clone()), q.log_prob(x), atol=1e-12)


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_planar_and_radial_densities_are_normalised(kind):
    """With z ~ q, E[g(z) / q(z)] = 1 for any normalised g: a wrong log q moves it off 1. g is narrower
    than q (planar and radial maps move points by a bounded amount), so the ratio has finite variance."""
    torch.manual_seed(0)
    layers = [_randomise(m.double(), 20 + i, 0.7) for i, m in enumerate(flows.flow(kind, 2, 4))]
    base = D.Independent(D.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    q = flows.FlowDistribution(base, layers)
    g = D.Independent(D.Normal(torch.zeros(2, dtype=torch.float64), 0.7 * torch.ones(2, dtype=torch.float64)), 1)
    with torch.no_grad():
        z, log_q = q.rsample_and_log_prob((200_000,))
    assert torch.equal(q.log_prob(z), log_q)                 # the cached draw
    ratio = (g.log_prob(z) - log_q).exp()
    zscore = (ratio.mean() - 1) / (ratio.std() / math.sqrt(len(ratio)))
    assert abs(float(zscore)) < 4
    wrong = (g.log_prob(z) - base.log_prob(z)).exp()        # forgetting the log-determinants
    assert abs(float(wrong.mean()) - 1) > 20 * float(ratio.std() / math.sqrt(len(ratio)))
    with pytest.raises(ValueError, match="rsample"):
        q.log_prob(z.clone())


def test_rsample_is_reparameterized_and_keeps_batch_shape():
    base = D.Independent(D.Normal(torch.zeros(5, 3, requires_grad=True), torch.ones(5, 3)), 1)
    q = flows.FlowDistribution(base, flows.flow("planar", 3, 2))
    z = q.rsample((4,))
    assert z.shape == (4, 5, 3) and q.batch_shape == (5,) and q.event_shape == (3,)
    z.sum().backward()
    assert base.base_dist.loc.grad is not None and q.log_prob(z).shape == (4, 5)


def test_potentials_and_their_normalisers():
    for name in flows.POTENTIALS:
        value = flows.log_normalizer(name)
        assert abs(flows.log_normalizer(name, points=2001) - value) < 1e-4 and math.isfinite(value)
        assert abs(flows.log_normalizer(name, radius=14.0, points=1401) - value) < 1e-4
    # the box matters: [-6, 6]^2 misses part of the envelope's tails
    assert flows.log_normalizer("wave", radius=6.0, points=601) < flows.log_normalizer("wave") - 1e-3
    z = torch.zeros(3, 2)
    assert flows.potential("wave", z).shape == (3,)
    # U_2 at z1 = 0: a Gaussian in z2 of scale 0.4 around 0
    assert torch.allclose(flows.potential("wave", torch.tensor([[0.0, 0.4]])), torch.tensor([0.5]))


def test_argument_checks():
    with pytest.raises(ValueError, match="kind"):
        flows.flow("maf", 2, 3)
    with pytest.raises(ValueError, match="length"):
        flows.flow("planar", 2, -1)
    with pytest.raises(ValueError, match="mask"):
        flows.AffineCoupling(3, [1, 1, 1])
    with pytest.raises(ValueError, match="dim"):
        flows.Planar(0)
    with pytest.raises(ValueError, match="name"):
        flows.potential("banana", torch.zeros(2))
    with pytest.raises(ValueError, match="z"):
        flows.potential("ring", torch.zeros(3))
    with pytest.raises(ValueError, match="base"):
        flows.FlowDistribution(D.Normal(0.0, 1.0), [])
    base = D.Independent(D.Normal(torch.zeros(2), torch.ones(2)), 1)
    with pytest.raises(ValueError, match="layers"):
        flows.FlowDistribution(base, [flows.Planar(3)])
    with pytest.raises(ValueError, match="k"):
        flows.reverse_kl(flows.FlowDistribution(base, []), "ring", k=0)


def test_flow_posterior_fits_a_potential_better_than_a_gaussian():
    """Reverse KL to the 'wave' density: 8 planar layers end well below the diagonal Gaussian."""
    torch.manual_seed(0)
    results = {}
    for kind, length in (("planar", 8), ("planar", 0)):
        q = flows.FlowPosterior(2, kind, length)
        opt = torch.optim.Adam(q.parameters(), lr=0.02)
        for _ in range(600):
            opt.zero_grad()
            loss = flows.reverse_kl(q.distribution(), "wave", k=128)
            loss.backward()
            opt.step()
        with torch.no_grad():
            results[q.kind] = float(flows.reverse_kl(q.distribution(), "wave", k=20_000)) + flows.log_normalizer("wave")
    assert results["diagonal Gaussian"] > 0 and results["planar"] > -0.05
    assert results["planar"] < results["diagonal Gaussian"] - 0.3
