"""Variational memory addressing (Bornschein, Mnih, Zoran & Rezende 2017, arXiv:1709.07116):
generative few-shot learning on digits of classes held out of training.

A MemoryVAE (latent z of 2 dimensions, hidden width 100, uniform prior over the memory's slots) is trained on
episodes of the digits 0-6 (memories of 2 classes x 4 exemplars, the batch's digits from those
classes), its discrete address trained by VIMCO (K=5, as the paper), RLOO (K=5), Gumbel-Softmax
(K=5 relaxed samples, tau=0.5) or the exact sum over the 8 slots; a plain Gaussian VAE with the same
z size, hidden width and number of updates is trained on the same digits. Scored on test digits of
the held-out classes 7, 8, 9: log p(x | M) exact over the addresses with 1000 importance samples of
z per slot, with a memory of 4 exemplars of the digit's class (right), of another held-out class
(wrong) or one blank exemplar (empty); the plain VAE's L_1000 on the same digits. The address
posterior's entropy and KL(q(a | x, M) || p(a)) with the right memory, and the mass it puts on the
right class's exemplars in a two-class memory. Curves: the right-memory log-likelihood (k=50) on
10 digits per held-out class during training.

Run: ``python -m bench.reproduce.memory_addressing`` (``make reproduce-memory_addressing``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import vitools as vt
from vitools import few_shot
from vitools.models.memory import MemoryVAE

from .common import RESULTS, Timer, run, write_result

PLAIN = "plain VAE"


def model_for(seed: int, latent_dim: int, hidden: int) -> MemoryVAE:
    return MemoryVAE(latent_dim=latent_dim, hidden=hidden, seed=seed)


def train_memory(label, seed, experiment, args):
    name, k = few_shot.METHODS[label]
    model = model_for(seed, args.latent_dim, args.hidden)
    eval_fn = lambda: {"right": experiment.scores(model, k=50, rows=10)["right"].mean().item()}   # noqa: E731
    timer = Timer()
    history = experiment.train(model, name, steps=args.steps, batch_size=args.batch_size, lr=args.lr, k=k,
                               seed=seed, eval_fn=eval_fn, eval_every=max(1, args.steps // 5))
    seconds = timer.seconds
    scores = experiment.scores(model, k=args.eval_k)
    report = experiment.address_report(model)
    extra = {f"{key}_{stat}": value for key, s in scores.items()
             for stat, value in (("mean", s.mean().item()), ("se", (s.std() / len(s) ** 0.5).item()))}
    extra.update(report)
    extra["right_minus_wrong_se"] = ((scores["right"] - scores["wrong"]).std() / len(scores["right"]) ** 0.5).item()
    extra["train_seconds"] = round(seconds, 1)
    curve = list(zip(history.eval_steps, history.evals["right"]))
    return curve, extra["right_mean"], extra


def train_plain(seed, experiment, args):
    vae = vt.models.GaussianVAE(latent_dim=args.latent_dim, hidden=args.hidden, activation="relu", seed=seed)
    rows = torch.cat([torch.nonzero(experiment.y_eval == c).flatten()[:10] for c in experiment.held_out])
    eval_fn = lambda: {"right": vt.models.sbn.evaluate(vae, experiment.x_eval[rows], k=50)}   # noqa: E731
    timer = Timer()
    history = vt.train.fit(lambda x: -vae.elbo(x).mean(), vae, experiment.x_train, steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, seed=seed, eval_fn=eval_fn,
                           eval_every=max(1, args.steps // 5), progress=False)
    seconds = timer.seconds
    values = experiment.plain_vae_scores(vae, k=args.eval_k)
    extra = {"right_mean": values.mean().item(), "right_se": (values.std() / len(values) ** 0.5).item(),
             "train_seconds": round(seconds, 1)}
    return list(zip(history.eval_steps, history.evals["right"])), extra["right_mean"], extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--n-eval", type=int, default=15, help="test digits per held-out class")
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--methods", nargs="+", default=list(few_shot.METHODS))
    parser.add_argument("--only-seed", type=int, default=None, help="run this seed alone (a part, for --merge)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine the runs of parts written with --only-seed into one result")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    timer, runs, seconds = Timer(), [], 0.0
    if args.merge:
        for part in args.merge:
            loaded = vt.plots.reproductions.load("memory_addressing", part)
            runs += loaded["runs"]
            seconds += loaded["seconds"]
    seeds = [] if args.merge else [args.only_seed] if args.only_seed is not None else range(args.seeds)
    for seed in seeds:
        experiment = few_shot.FewShotExperiment(n_eval=args.n_eval, seed=seed)
        for label in [*args.methods, PLAIN]:
            with vt.config.seeded(seed):
                if label == PLAIN:
                    curve, final, extra = train_plain(seed, experiment, args)
                else:
                    curve, final, extra = train_memory(label, seed, experiment, args)
            runs.append(run(label, seed, args.steps, curve, final, **extra))
            shown = " ".join(f"{key} {extra[key]:.2f}" for key in ("right_mean", "wrong_mean", "empty_mean", "kl",
                                                                    "entropy", "right_mass") if key in extra)
            print(f"{label:22s} seed {seed}: {shown} ({extra['train_seconds']:.0f} s)", flush=True)
    experiment = few_shot.FewShotExperiment(n_eval=args.n_eval, seed=0)
    reference = vt.models.IndependentBernoulli.fit(experiment.x_train).log_prob(experiment.x_eval).mean().item()
    finding = ("A memory of four exemplars of a class never seen in training raises the log-likelihood of that "
               "class's digits above a wrong-class memory, an empty memory and a plain VAE of the same latent "
               "size; the address posterior puts most of its mass on the right class's exemplars.")
    notes = (f"bundled 28x28 digits (fixed binarization; the shared binarized MNIST has no labels): train classes "
             f"0-6 ({experiment.x_train.shape[0]} digits), held out 7, 8, 9 ({args.n_eval} test digits each, "
             f"memories from their training-split digits); MemoryVAE latent {args.latent_dim}, hidden {args.hidden}, "
             f"Adam lr {args.lr}, batch {args.batch_size}, {args.steps} episodes per run (far fewer than the "
             f"paper's, on Omniglot/MNIST at full scale); final: right-memory log p(x|M), k={args.eval_k} "
             f"z-samples per slot (plain VAE: L_{args.eval_k}); extra keys per run: wrong_mean, empty_mean and "
             f"standard errors over digits, entropy and kl of q(a|x,M) in nats, right_mass in a 2-class memory.")
    path = write_result("memory_addressing", "1709.07116", finding,
                        "nats per held-out-class digit, higher is better (curve: right-memory log p(x|M), k=50, "
                        "30 digits; final: k=1000 on every scored held-out test digit)",
                        {"label": "independent pixels", "value": reference}, runs, seconds + timer.seconds, notes=notes,
                        results_dir=args.out)
    print(path)


if __name__ == "__main__":
    main()
