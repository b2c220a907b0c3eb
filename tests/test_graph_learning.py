"""Score-based graph learning (vitools.models.graph_learning): the node-level score-function
estimators against the exact gradient on a tiny graph (every row's graphs enumerated), a power
check on a wrong variant, the layered target under the registered estimators, and bad inputs."""
from __future__ import annotations

import pytest
import torch

import vitools as vt
from vitools.models import graph_learning as G


def _tiny(graph="bernoulli", seed=0):
    torch.manual_seed(seed)
    data = G.simulate_var(nodes=4, parents=1, steps=60, seed=seed)
    model = G.GraphVAR(4, graph=graph, neighbours=2 if graph == "topk" else 1, penalty=0.05).double()
    with torch.no_grad():
        model.theta.copy_(0.8 * torch.randn(4, 3, dtype=torch.float64))
        model.weight.copy_(0.5 * torch.randn(4, 3, dtype=torch.float64))
        model.own.fill_(0.2)
    return model, data.x.double()


def _exact_grad(model, x):
    model.zero_grad()
    model.exact(x).backward()
    return model.theta.grad.clone()


def _grads(model, x, objective, n):
    out = []
    for _ in range(n):
        model.zero_grad()
        objective(model, x).backward()
        out.append(model.theta.grad.clone())
    return torch.stack(out)


def _z(samples, exact):
    se = samples.std(0) / samples.shape[0] ** 0.5
    return ((samples.mean(0) - exact) / se).abs()


@pytest.mark.parametrize("graph,baseline,local", [
    ("bernoulli", "mode", True), ("bernoulli", "leave_one_out", True), ("bernoulli", "none", False),
    ("topk", "mode", True), ("topk", "leave_one_out", True)])
def test_score_estimators_match_the_enumerated_gradient(graph, baseline, local):
    model, x = _tiny(graph)
    exact = _exact_grad(model, x)
    torch.manual_seed(1)
    g = _grads(model, x, lambda m, x: G.score_objective(m, x, 4, baseline, local=local), 1500)
    z = _z(g, exact)
    assert z.max() < 4, (z, exact)
    assert exact.abs().max() > 0.01          # not a vanishing gradient


def test_registered_rloo_on_the_layered_target_matches_the_enumerated_gradient():
    model, x = _tiny()
    exact = _exact_grad(model, x)
    est = vt.estimators.get("rloo")
    torch.manual_seed(2)
    g = _grads(model, x, lambda m, x: est(m.on(x), 4).surrogate.sum(), 1500)
    assert _z(g, exact).max() < 4
    gw = []
    for _ in range(400):                     # the forecaster's weights: pathwise at the sampled graphs
        model.zero_grad()
        est(model.on(x), 4).surrogate.sum().backward()
        gw.append(model.weight.grad.clone())
    model.zero_grad()
    model.exact(x).backward()
    assert _z(torch.stack(gw), model.weight.grad).max() < 4


def test_a_wrong_score_fails_by_a_wide_margin():
    """Power check: the score taken as A instead of A - sigma(theta) (a baseline that depends on the
    sample) is biased, and the same test rejects it."""
    model, x = _tiny()
    exact = _exact_grad(model, x)

    def wrong(m, x):
        a, _ = m.sample(4)
        cost = m.cost(a, x)
        fake_log_q = (a * m.theta).sum(-1)
        return -(cost + cost.detach() * (fake_log_q - fake_log_q.detach())).mean(0).sum()

    torch.manual_seed(3)
    assert _z(_grads(model, x, wrong, 1500), exact).max() > 20


def test_local_cost_and_mode_baseline_reduce_variance():
    model, x = _tiny()
    torch.manual_seed(4)
    var = {name: _grads(model, x, lambda m, x, b=b, l=l: G.score_objective(m, x, 4, b, local=l), 400).var(0).sum()
           for name, (b, l) in {"global": ("none", False), "local": ("none", True), "mode": ("mode", True)}.items()}
    assert var["local"] < var["global"] and var["mode"] < var["local"], var


def test_gumbel_softmax_runs_on_the_target_and_is_biased_but_close():
    model, x = _tiny()
    exact = _exact_grad(model, x)
    est = vt.estimators.get("gumbel_softmax", temperature=0.5)
    torch.manual_seed(5)
    g = _grads(model, x, lambda m, x: est(m.on(x), 4).surrogate.sum(), 400)
    cos = torch.nn.functional.cosine_similarity(g.mean(0).flatten(), exact.flatten(), 0)
    assert cos > 0.5, cos


def test_the_target_is_the_exact_objective_in_expectation():
    model, x = _tiny()
    est = vt.estimators.get("score_function")
    torch.manual_seed(6)
    values = torch.stack([est(model.on(x, local=False), 200).surrogate.detach() for _ in range(20)])
    assert abs(values.mean() - model.exact(x).detach()) < 4 * values.std() / 20 ** 0.5 + 1e-9


def test_topk_probabilities_and_mode():
    model, _ = _tiny("topk")
    p = model.probabilities()
    assert torch.allclose(p.sum(-1), torch.full((4,), 2.0, dtype=torch.float64))
    assert (model.mode().sum(-1) == 2).all()
    a, log_q = model.sample(5)
    assert (a.sum(-1) == 2).all() and log_q.shape == (5, 4)


def test_simulated_var_is_sparse_stationary_and_seeded():
    d = G.simulate_var(nodes=6, parents=2, steps=300, seed=3)
    assert (d.adjacency.sum(1) == 2).all() and (d.adjacency.diag() == 0).all()
    assert torch.linalg.eigvals(d.coefficients).abs().max() <= 0.9 + 1e-9
    assert torch.equal(d.x, G.simulate_var(nodes=6, parents=2, steps=300, seed=3).x)


def test_edge_f1_and_references():
    t = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    assert G.edge_f1(t, t) == 1.0
    assert G.edge_f1(torch.ones(3, 3, dtype=torch.float64) - torch.eye(3, dtype=torch.float64), t) == pytest.approx(2 * 3 / (2 * 3 + 3))
    d = G.simulate_var(nodes=5, parents=1, steps=800, seed=1)
    oracle = G.least_squares_forecast(d.x[:400], d.x[400:], d.adjacency)
    ar = G.least_squares_forecast(d.x[:400], d.x[400:], torch.zeros(5, 5, dtype=torch.float64))
    assert oracle < ar


@pytest.mark.parametrize("call,word", [
    (lambda: G.GraphVAR(2), "nodes"), (lambda: G.GraphVAR(5, graph="dense"), "graph"),
    (lambda: G.GraphVAR(5, neighbours=4), "neighbours"), (lambda: G.GraphVAR(5, penalty=-1.0), "penalty"),
    (lambda: G.simulate_var(nodes=4, parents=4), "parents"), (lambda: G.simulate_var(noise=0.0), "noise"),
    (lambda: G.GraphVAR(4).cost(torch.zeros(4, 3), torch.zeros(10, 5)), "x"),
    (lambda: G.GraphVAR(4, graph="topk").on(torch.zeros(10, 4)), "graph"),
    (lambda: G.score_objective(G.GraphVAR(4), torch.zeros(10, 4), 1, "leave_one_out"), "k"),
    (lambda: G.score_objective(G.GraphVAR(4), torch.zeros(10, 4), 4, "average"), "baseline"),
    (lambda: G.edge_f1(torch.zeros(3, 3), torch.zeros(4, 4)), "predicted and true"),
    (lambda: G.edge_f1(torch.full((3, 3), 0.5), torch.zeros(3, 3)), "predicted"),
    (lambda: G.fit_graph(G.GraphVAR(4), torch.zeros(10, 4), None), "objective"),
    (lambda: G.GraphVAR(4).cost(torch.zeros(4, 3), torch.full((10, 4), float("nan"))), "x"),
])
def test_bad_inputs_raise_naming_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_estimators_see_the_target_as_discrete():
    target = G.GraphVAR(4).on(torch.zeros(10, 4))
    assert vt.estimators.get("rloo").applies_to(target)
    assert vt.estimators.get("gumbel_softmax").applies_to(target)
    assert not vt.estimators.get("pathwise").applies_to(target)
