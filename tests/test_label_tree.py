"""Label trees (vitools.models.label_tree): the leaves' probabilities sum to one, the O(log N) path
likelihood and its gradient equal the explicit normalised distribution over all paths, the
closed-form node gradient, the learned tree and the data generator, and bad inputs."""
from __future__ import annotations

import pytest
import torch

from vitools.models import label_tree as T


def _tree(items=11, users=3, dim=4, seed=0):
    torch.manual_seed(seed)
    model = T.LabelTree.balanced(users, items, dim, order=torch.randperm(items)).double()
    with torch.no_grad():
        model.node.normal_()
        model.node_bias.normal_()
    return model


@pytest.mark.parametrize("items", [2, 7, 16, 33])
def test_leaf_probabilities_sum_to_one(items):
    model = _tree(items)
    users = torch.arange(3)
    total = model.log_prob_all(users).exp().sum(-1)
    assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0), total
    assert model.depth == (items - 1).bit_length()                # balanced: ceil(log2 N)


def test_a_learned_unbalanced_tree_also_sums_to_one():
    tree = ((0, (1, 2)), ((3, (4, (5, 6))), 7))
    model = T.LabelTree(2, tree, 3).double()
    with torch.no_grad():
        model.node.normal_(), model.node_bias.normal_()
    assert torch.allclose(model.log_prob_all(torch.arange(2)).exp().sum(-1), torch.ones(2, dtype=torch.float64),
                          atol=1e-12, rtol=0)


def test_path_gradient_equals_the_explicit_softmax_over_paths():
    """log p(i|u) along one path against the log-softmax over every item's path score
    (sum of log-sigmoids), differentiated by autograd: values and gradients agree."""
    model = _tree(13)
    users, items = torch.tensor([0, 1, 2, 1]), torch.tensor([3, 0, 12, 7])
    path = model.log_prob(users, items).sum()
    g_path = torch.autograd.grad(path, list(model.parameters()))
    nodes, signs = model.path_nodes, model.path_signs               # every item's path, [N, D]
    scores = (model.user[users][:, None, None, :] * model.node[nodes][None]).sum(-1) + model.node_bias[nodes][None]
    path_scores = (torch.nn.functional.logsigmoid(signs * scores) * signs.abs()).sum(-1)    # [B, N]
    explicit = torch.log_softmax(path_scores, -1).gather(-1, items[:, None]).sum()
    g_explicit = torch.autograd.grad(explicit, list(model.parameters()))
    assert torch.allclose(path, explicit, atol=1e-12)
    for a, b in zip(g_path, g_explicit):
        assert torch.allclose(a, b, atol=1e-10)


def test_node_gradient_is_the_turn_minus_its_probability():
    """d log p(i|u) / d b_n = 1[turn left at n] - sigma(s_n) on the path, 0 elsewhere."""
    model = _tree(9)
    user, item = torch.tensor([1]), torch.tensor([5])
    (g,) = torch.autograd.grad(model.log_prob(user, item).sum(), [model.node_bias])
    nodes, signs = model.path_nodes[5], model.path_signs[5]
    s = model.scores(user, nodes[None])[0].detach()
    expected = torch.zeros_like(g)
    on = signs != 0
    expected[nodes[on]] = (signs[on] > 0).double() - torch.sigmoid(s[on])
    assert torch.allclose(g, expected, atol=1e-12)
    wrong = expected.clone()
    wrong[nodes[on]] = (signs[on] > 0).double() - 0.5            # power: ignoring sigma(s) is detectably wrong
    assert (g - wrong).abs().max() > 1e-3


def test_flat_softmax_sums_to_one_and_matches_its_gather():
    model = T.FlatSoftmax(3, 10, 4).double()
    with torch.no_grad():
        model.item.normal_()
    all_ = model.log_prob_all(torch.arange(3))
    assert torch.allclose(all_.exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(model.log_prob(torch.tensor([2]), torch.tensor([4])), all_[2, 4:5])


def test_split_tree_is_balanced_and_separates_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=torch.float64)
    emb = centres.repeat_interleave(4, 0) + 0.1 * torch.randn(16, 2, generator=gen, dtype=torch.float64)
    tree = T.split_tree(emb)
    model = T.LabelTree(1, tree, 2)
    assert model.depth == 4
    leaves = lambda node: [node] if isinstance(node, int) else leaves(node[0]) + leaves(node[1])  # noqa: E731
    quarters = [sorted(leaves(q)) for half in tree for q in half]
    assert sorted(quarters) == [list(range(4 * c, 4 * c + 4)) for c in range(4)], quarters


def test_simulated_feedback_is_seeded_and_split_per_user():
    a, b = T.simulate_feedback(users=20, events=10, seed=1), T.simulate_feedback(users=20, events=10, seed=1)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.items == 4 * 4 * 16 and len(a.train) == 20 * 8 and len(a.test) == 20 * 2
    assert not torch.equal(a.train, T.simulate_feedback(users=20, events=10, seed=2).train)


def test_a_fitted_tree_beats_popularity_on_held_out_events():
    d = T.simulate_feedback(users=60, genres=2, subgenres=2, per_subgenre=8, events=40, seed=0)
    torch.manual_seed(0)
    model = T.LabelTree.balanced(d.users, d.items, 4).double()
    T.fit_items(model, d.train, steps=300, lr=0.05)
    with torch.no_grad():
        held = model.log_prob(d.test[:, 0], d.test[:, 1]).mean().item()
    assert held > T.popularity_log_prob(d.train, d.test, d.items) + 0.3


@pytest.mark.parametrize("call,word", [
    (lambda: T.LabelTree(2, (0, 0), 2), "tree"), (lambda: T.LabelTree(2, 0, 2), "tree"),
    (lambda: T.LabelTree.balanced(2, 4, 2, order=[0, 1, 1, 3]), "order"),
    (lambda: T.LabelTree.balanced(2, 1, 2), "items"), (lambda: T.LabelTree.balanced(0, 4), "users"),
    (lambda: _tree(5).log_prob(torch.tensor([0]), torch.tensor([5])), "items"),
    (lambda: _tree(5).log_prob(torch.tensor([7]), torch.tensor([1])), "users"),
    (lambda: _tree(5).log_prob(torch.tensor([0.0]), torch.tensor([1])), "users"),
    (lambda: _tree(5).log_prob(torch.tensor([0, 1]), torch.tensor([1])), "users and items"),
    (lambda: T.FlatSoftmax(2, 1), "items"),
    (lambda: T.split_tree(torch.zeros(1, 2)), "embeddings"),
    (lambda: T.split_tree(torch.full((3, 2), float("nan"))), "embeddings"),
    (lambda: T.simulate_feedback(test_fraction=1.0), "test_fraction"),
    (lambda: T.popularity_log_prob(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.long), 4), "train"),
    (lambda: T.fit_items(T.FlatSoftmax(2, 4), torch.tensor([[0, 9]]), steps=1), "train items"),
])
def test_bad_inputs_raise_naming_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call()
