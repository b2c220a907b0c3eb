"""Tests for vitools.models.memory (variational memory addressing, Bornschein et al. 2017) and its
few-shot episodes: the exact sum over addresses against quadrature, the address estimators' gradients
against the exact gradient (VIMCO on L_K, RLOO on the ELBO, with a power check), the relaxation's
measured bias, shapes and checks."""
import math

import pytest
import torch

import vitools as vt
from vitools import diagnostics as dg
from vitools.estimators import layers as L
from vitools.estimators.base import Estimate
from vitools.estimators.multisample import VIMCO, _log_weights
from vitools.models.sbn import iwae_bound
from vitools.estimators.rloo import RLOO, per_sample
from vitools.models.memory import MemoryVAE
from vitools.models.memory_episodes import FewShotEpisodes

CPU = torch.device("cpu")
X = torch.tensor([[0, 1, 1, 0, 0, 1.], [1, 1, 0, 0, 1, 0.]], dtype=torch.float64)
M = torch.tensor([[0, 1, 1, 0, 1, 1.], [1, 0, 0, 0, 1, 0.], [1, 1, 1, 1, 0, 0.]], dtype=torch.float64)
ADDRESS = ("query.", "key.")        # parameters that move q(a | x, M) and nothing else


def tiny(seed=0, prior="uniform", latent_dim=1):
    """A float64 model of 6 pixels, small enough for exact sums over address tuples."""
    with vt.config.seeded(seed):
        model = MemoryVAE(input_dim=6, latent_dim=latent_dim, hidden=5, embed_dim=3, key_dim=2, prior=prior,
                          seed=seed, device=CPU).double()
        model.dec_m.weight.data.mul_(30.0)          # exemplars that matter: the address's signal is large
    return model


def address_params(model):
    return {name: p for name, p in model.named_parameters() if name.startswith(ADDRESS)}


def exact_gradient(model, k, batches=8, z_samples=20000, seed=1):
    """Gradient of the address-summed L_k w.r.t. the address parameters: (mean, standard error)
    over ``batches`` independent z-draws (the sum over addresses is exact)."""
    params = address_params(model)
    rows = []
    with vt.config.seeded(seed):
        for _ in range(batches):
            bound = model.address_marginal_bound(X, M, k=k, z_samples=z_samples).sum()
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(bound, list(params.values()))]))
    rows = torch.stack(rows)
    return rows.mean(0), rows.std(0) / math.sqrt(batches)


def estimated_gradient(est, model, k, n=20000):
    samples = dg.grad_samples(est, model.on(X, M), n=n, k=k, seed=0)
    g = torch.cat([samples[f"model.{name}"].flatten(1) for name in address_params(model)], 1)   # [n, P]
    return g.mean(0), g.std(0) / math.sqrt(n), g


def worst_z(est_mean, est_se, ref_mean, ref_se):
    """The largest |z| over coordinates; a coordinate with no spread at all (a dead unit) must agree exactly."""
    se = (est_se**2 + ref_se**2).sqrt()
    live = se > 1e-12
    assert ((est_mean - ref_mean)[~live].abs() < 1e-12).all()
    return ((est_mean - ref_mean)[live] / se[live]).abs().max().item()


class NoScoreTerm(VIMCO):
    """A wrong VIMCO: the K-sample bound differentiated as if the addresses were fixed (no score term)."""

    name = "vimco_wrong"

    def estimate(self, target, k):
        log_w, _, _ = _log_weights(target, k)
        return Estimate(iwae_bound(log_w))


class MeanBaseline(RLOO):
    """A wrong RLOO: the baseline is the mean of all K signals, own sample included (biased by (K-1)/K)."""

    name = "rloo_wrong"

    def estimate(self, target, k):
        target = L.as_layers(target)
        us, hs, logits = L.draw(target, k)
        f = L.signal(target, hs, logits).detach()
        grads = [per_sample(f - f.mean(0, keepdim=True), layer) * L.score(layer, lg.detach(), h)
                 for layer, lg, h in zip(target.layers, logits, hs)]
        return Estimate(L.assemble(target, f, target.signal(hs, relaxed=False), logits, grads))


# ----------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("prior", ["uniform", "learned"])
def test_log_likelihood_sums_addresses_exactly_against_quadrature(prior):
    model = tiny(prior=prior)
    grid = torch.linspace(-9, 9, 4001, dtype=torch.float64)
    with torch.no_grad():
        emb = model.embed(M)                                                    # [S, e]
        logits = model.dec_out(torch.relu(model.dec_z(grid[:, None, None]) + model.dec_m(emb)))   # [G, S, D]
        log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, :, None].expand(-1, -1, 2, -1), X.expand(4001, 3, 2, 6), reduction="none").sum(-1)   # [G, S, N]
        log_pz = -0.5 * grid**2 - 0.5 * math.log(2 * math.pi)
        per_slot = torch.logsumexp(log_lik + log_pz[:, None, None], 0) + math.log(grid[1] - grid[0])  # [S, N]
        exact = torch.logsumexp(per_slot.T + model.log_prior(M, n=2), -1)
        with vt.config.seeded(0):
            estimate = model.log_likelihood(X, M, k=20000, chunk=2000)
        elbo = model.address_marginal_bound(X, M, k=1, z_samples=4000)
    assert torch.allclose(estimate, exact, atol=0.03), (estimate, exact)
    assert (elbo < exact - 1e-3).all()                                        # the ELBO is a strict lower bound
    assert model.log_prior(M, n=2).exp().sum(-1).sub(1).abs().max() < 1e-12


def test_bound_over_address_tuples_tightens_with_k():
    model = tiny()
    with torch.no_grad(), vt.config.seeded(0):
        bounds = [model.address_marginal_bound(X, M, k=k, z_samples=3000).mean().item() for k in (1, 2, 3)]
        log_px = model.log_likelihood(X, M, k=4000).mean().item()
    assert bounds[0] < bounds[1] - 0.01 < bounds[2] - 0.02 < log_px, (bounds, log_px)


def test_exact_sum_is_the_expectation_of_the_target():
    """The target's ELBO estimate (exact KL plus one sampled address and z) averages to the sum over slots."""
    model = tiny()
    est = vt.estimators.get("rloo")
    with torch.no_grad(), vt.config.seeded(0):
        values = est(model.on(X.repeat(4000, 1), M), 2).surrogate.reshape(4000, 2)    # [n, N], one call
        exact = model.address_marginal_bound(X, M, k=1, z_samples=20000)
    z = (values.mean(0) - exact) / (values.std(0) / math.sqrt(4000))
    assert z.abs().max() < 4, z


# ----------------------------------------------------------------------------- estimators vs exact
def test_vimco_address_gradient_matches_the_exact_k_sample_bound_gradient():
    model = tiny()
    ref, ref_se = exact_gradient(model, k=3)
    mean, se, _ = estimated_gradient(vt.estimators.get("vimco"), model, k=3)
    assert worst_z(mean, se, ref, ref_se) < 4
    wrong, wrong_se, _ = estimated_gradient(NoScoreTerm(), model, k=3)      # power: a wrong variant fails
    assert worst_z(wrong, wrong_se, ref, ref_se) > 8


def test_rloo_address_gradient_matches_the_exact_elbo_gradient_and_a_wrong_baseline_fails():
    model = tiny()
    ref, ref_se = exact_gradient(model, k=1)
    mean, se, _ = estimated_gradient(vt.estimators.get("rloo"), model, k=2)
    assert worst_z(mean, se, ref, ref_se) < 4
    wrong, wrong_se, _ = estimated_gradient(MeanBaseline(), model, k=2)
    assert worst_z(wrong, wrong_se, ref, ref_se) > 8


@pytest.mark.parametrize("name", ["gumbel_softmax", "straight_through"])
def test_relaxations_of_the_address_are_flagged_and_their_bias_is_measured(name):
    model = tiny()
    est = vt.estimators.get(name)
    assert est.unbiased is False and est.why_not(model.on(X, M)) is None
    ref, ref_se = exact_gradient(model, k=1)
    mean, se, g = estimated_gradient(est, model, k=2)
    bias = mean - ref
    mse = ((g - ref) ** 2).sum(1).mean().item()
    print(f"{name}: |bias| {bias.norm().item():.4f} (|exact| {ref.norm().item():.4f}), MSE {mse:.4f}")
    assert worst_z(mean, se, ref, ref_se) > 6                 # biased, and the test can see it
    assert mse > bias.pow(2).sum().item()


# ----------------------------------------------------------------------------- protocol, shapes, checks
def test_target_protocol_and_shapes():
    model = tiny()
    target = model.on(X, M)
    assert target.layers[0].shape == (1, 3) and target.generative and target.context is X
    for name in ("vimco", "rloo", "gumbel_softmax", "nvil"):
        assert vt.estimators.get(name).applies_to(model), name
    assert model.address_logits(X, M).shape == (2, 3)
    assert model.address_logits(X, M.expand(2, 3, 6)).shape == (2, 3)        # one memory per example
    stats = model.address_statistics(X, M)
    assert (stats["kl"] >= -1e-12).all() and (stats["kl"] <= math.log(3) + 1e-9).all()
    assert torch.allclose(stats["entropy"] + stats["kl"], torch.full((2,), math.log(3), dtype=torch.float64))
    pictures = model.generate(M, 5, slots=torch.tensor([0, 1, 2, 0, 1]))
    assert pictures.shape == (5, 6) and ((pictures > 0) & (pictures < 1)).all()
    assert model.log_likelihood(X, torch.zeros(1, 6), k=10).shape == (2,)     # an empty (blank) memory


def test_training_uses_the_memory():
    """Exact-sum training on episodes of random patterns (too many for a one-dimensional z to
    memorise): the right memory beats a wrong one and the lookup finds the right slot."""
    gen = torch.Generator().manual_seed(0)
    patterns = torch.randint(2, (32, 16), generator=gen).float()
    model = MemoryVAE(input_dim=16, latent_dim=1, hidden=32, embed_dim=8, key_dim=8, seed=0, device=CPU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def episode(n=64):
        i, j = torch.randint(32, (n,), generator=gen), torch.randint(32, (n,), generator=gen)
        swap = torch.rand(n, generator=gen) < 0.5
        first, second = torch.where(swap, j, i), torch.where(swap, i, j)
        return patterns[i], torch.stack([patterns[first], patterns[second]], 1), i, j
    with vt.config.seeded(0):
        for _ in range(300):
            x, memory, _, _ = episode()
            loss = -model.address_marginal_bound(x, memory).mean()
            opt.zero_grad(), loss.backward(), opt.step()
        x, _, i, j = episode(200)
        keep = (patterns[i] != patterns[j]).any(1)
        right = model.log_likelihood(x, patterns[i][:, None], k=100)[keep]
        wrong = model.log_likelihood(x, patterns[j][:, None], k=100)[keep]
        q = model.address_statistics(x, torch.stack([patterns[i], patterns[j]], 1))["log_q"].exp()[keep, 0]
    assert right.mean() > wrong.mean() + 3.0, (right.mean(), wrong.mean())
    assert q.mean() > 0.9, q.mean()


@pytest.mark.parametrize("call,word", [
    (lambda m: m.on(X, M[:1]), "2 slots"),
    (lambda m: m.on(X, torch.zeros(3, 5)), "memory"),
    (lambda m: m.on(X, torch.zeros(3, 3, 6)), "one row per example"),
    (lambda m: m.on(X, M * 2), "memory"),
    (lambda m: m.address_marginal_bound(X, M, k=9), "max_tuples"),
    (lambda m: m.address_marginal_bound(X, M, z_samples=0), "z_samples"),
    (lambda m: m.log_likelihood(X, M, k=0), "k"),
    (lambda m: m.generate(M, 2, slots=torch.tensor([0, 3])), "slots"),
    (lambda m: m.generate(M.expand(2, 3, 6), 2), "memory"),
    (lambda m: MemoryVAE(prior="junk"), "prior"),
])
def test_bad_input_names_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call(tiny())


def test_float32_model_casts_float64_and_integer_data():
    model = MemoryVAE(input_dim=6, latent_dim=2, hidden=4, embed_dim=3, key_dim=2, seed=0, device=CPU)
    out = model.log_likelihood(X, M.long(), k=5)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- episodes
def test_episodes_draw_disjoint_memories_from_the_chosen_classes():
    x = torch.arange(60, dtype=torch.float32)[:, None].repeat(1, 3) / 60
    labels = torch.arange(60) % 4
    episodes = FewShotEpisodes(x, labels, classes=(0, 1, 2), ways=2, shots=3, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        batch, memory = episodes.sample(7)
        assert batch.shape == (7, 3) and memory.shape == (6, 3) and episodes.slots == 6
        ids, mem_ids = (batch[:, 0] * 60).round().long(), (memory[:, 0] * 60).round().long()
        assert not set(ids.tolist()) & set(mem_ids.tolist())
        assert set((ids % 4).tolist()) == set((mem_ids % 4).tolist()) and 3 not in set((ids % 4).tolist())
    assert (episodes.memory(1, shots=5)[:, 0] * 60).round().long().remainder(4).eq(1).all()
    for kwargs, word in [(dict(ways=4), "ways"), (dict(shots=15), "shots"), (dict(classes=(0, 0)), "classes")]:
        with pytest.raises(ValueError, match=word):
            FewShotEpisodes(x, labels, **{"classes": (0, 1, 2), **kwargs})
    with pytest.raises(ValueError, match="labels"):
        FewShotEpisodes(x, labels.float(), classes=(0, 1))
    with pytest.raises(ValueError, match="cls"):
        episodes.memory(3)


def test_slot_log_weights_are_what_log_likelihood_sums():
    model = tiny()
    with vt.config.seeded(3):
        log_w = model.slot_log_weights(X, M, k=50)                              # [k, S, N]
    with vt.config.seeded(3):
        theirs = model.log_likelihood(X, M, k=50)
    mine = torch.logsumexp(torch.logsumexp(log_w, 0) - math.log(50) - math.log(3), 0)
    assert log_w.shape == (50, 3, 2) and torch.allclose(mine, theirs, atol=1e-10)


# ----------------------------------------------------------------------------- the few-shot experiment
def test_few_shot_experiment_splits_by_class_and_runs_every_method():
    from vitools import few_shot

    ex = few_shot.FewShotExperiment(held_out=(7, 8, 9), n_eval=3, shots=2, seed=0)
    assert not set(ex.y_train.tolist()) & {7, 8, 9} and set(ex.y_pool.tolist()) == {7, 8, 9}
    assert ex.x_eval.shape == (9, 784) and sorted(ex.memories) == [7, 8, 9] and ex.memories[7].shape == (2, 784)
    pool_rows = {tuple(r) for r in ex.x_pool[ex.y_pool == 8].round().int().tolist()}
    assert all(tuple(r) in pool_rows for r in ex.memories[8].round().int().tolist())
    for label, (name, k) in few_shot.METHODS.items():
        model = MemoryVAE(latent_dim=2, hidden=8, embed_dim=4, key_dim=4, seed=0)
        history = ex.train(model, name, steps=3, k=k)
        assert len(history.loss) == 3 and all(math.isfinite(v) for v in history.loss), label
    scores = ex.scores(model, k=5)
    assert sorted(scores) == ["empty", "right", "wrong"] and all(s.shape == (9,) for s in scores.values())
    report = ex.address_report(model)
    assert 0 <= report["right_mass"] <= 1 and 0 <= report["kl"] <= math.log(2) + 1e-6
    vae = vt.models.GaussianVAE(latent_dim=2, hidden=8, seed=0)
    assert ex.plain_vae_scores(vae, k=5, rows=2).shape == (6,)
    with pytest.raises(ValueError, match="held_out"):
        few_shot.FewShotExperiment(held_out=(7, 7))
