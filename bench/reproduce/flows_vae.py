"""Normalizing-flow posteriors in the VAE (Rezende & Mohamed 2015, arXiv:1505.05770, Section 6.2).

A Gaussian VAE with a Bernoulli decoder (tanh MLPs) on 28x28 binarized digits, its posterior
either the diagonal Gaussian or that Gaussian pushed through L amortized planar steps (the encoder
outputs each step's u, w, b per digit; same hidden layers, same decoder, same updates, minibatch,
learning rate and seeds). Trained on the one-sample ELBO by the ``pathwise`` estimator. Curves: the
ELBO on the validation digits against updates; final scores on the same held-out test digits for
every run: the ELBO (mean of 100 draws per digit) and L_1000, each with its standard error; the
no-latent reference is independent pixels.

Run: ``python -m bench.reproduce.flows_vae`` (``make reproduce-flows_vae``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import vitools as vt
from vitools.models import sbn

from .common import RESULTS, Timer, digits, fit_with_curve, run, write_result
from .nvil import ordering, reference

LENGTHS = (0, 10)
# Rezende & Mohamed 2015, Table 2 (MNIST, 40 latent units): the bound on -log p(x) per posterior.
PAPER = {"diagonal Gaussian": 89.9, "planar flow (L=10)": 87.5, "planar flow (L=20)": 86.5,
         "planar flow (L=40)": 85.7, "planar flow (L=80)": 85.1}


def label(length: int) -> str:
    return "diagonal Gaussian" if length == 0 else f"planar flow (L={length})"


def build(length: int, seed: int, hidden, latent_dim: int):
    flow = dict(flow="planar", flow_length=length) if length else {}
    return vt.models.GaussianVAE(784, hidden=hidden, latent_dim=latent_dim, seed=seed, **flow)


def scores(model, x, eval_k: int, seed: int) -> dict:
    """ELBO (100 draws per digit) and L_eval_k on ``x``, each as mean and standard error."""
    with torch.no_grad(), vt.config.seeded(10_000 + seed):
        elbo = torch.cat([model.elbo(xb, k=100) for xb in x.split(50)]).double()
        bound = sbn.bound_per_example(model, x, k=eval_k, batch_size=20).double()
    n = len(x) ** 0.5
    return {"elbo": elbo.mean().item(), "elbo_se": (elbo.std() / n).item(),
            "bound": bound.mean().item(), "bound_se": (bound.std() / n).item(),
            "per_example": [round(v, 2) for v in bound.tolist()],
            "per_example_elbo": [round(v, 2) for v in elbo.tolist()]}


def train_one(length, seed, x_train, x_valid, x_test, steps, batch_size, lr, hidden, latent_dim,
              eval_points=8, eval_k=1000):
    model = build(length, seed, hidden, latent_dim)
    est = vt.estimators.get("pathwise")
    curve, seconds = fit_with_curve(est, model, x_train, lambda: model.elbo(x_valid, k=1).mean().item(), steps=steps,
                                    batch_size=batch_size, lr=lr, seed=seed, eval_points=eval_points, k=1)
    s = scores(model, x_test, eval_k, seed)
    return curve, s["bound"], {"flow_length": length, "final_se": s["bound_se"], "elbo": s["elbo"],
                               "elbo_se": s["elbo_se"], "per_example": s["per_example"],
                               "per_example_elbo": s["per_example_elbo"], "train_seconds": round(seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[200])
    parser.add_argument("--latent", type=int, default=40)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--data", default="binarized", choices=("binarized", "bundled"))
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    x_train, x_valid, x_test, data = digits(args.data, n_valid=args.n_valid, n_test=args.n_test)
    timer, runs = Timer(), []
    for seed in range(args.seeds):
        for length in args.lengths:
            curve, final, extra = train_one(length, seed, x_train, x_valid, x_test, args.steps, args.batch_size,
                                            args.lr, tuple(args.hidden), args.latent, eval_k=args.eval_k)
            runs.append(run(label(length), seed, args.steps, curve, final, **extra))
            print(f"{label(length):20s} seed {seed}: test ELBO {extra['elbo']:8.2f} +- {extra['elbo_se']:.2f}  "
                  f"L_{args.eval_k} {final:8.2f} +- {extra['final_se']:.2f}  ({extra['train_seconds']:.0f} s)", flush=True)
    ref = reference(x_train, x_test)
    finding = ordering(runs, ref)
    notes = (f"{data}; VAE 784-{'-'.join(map(str, args.hidden))}-{args.latent} (tanh), one-sample ELBO by the "
             f"pathwise estimator, Adam lr {args.lr}, batch {args.batch_size}, {args.steps} updates per run (the "
             f"paper: 500,000 updates of minibatch 100 with RMSprop and an annealed free energy, 40 latent units); "
             f"curves: validation ELBO (one draw per digit); final: test L_{args.eval_k} (final_se its standard error) "
             f"and test ELBO (elbo, elbo_se; 100 draws per digit) on the same test digits for every run. "
             f"paper_value: minus Table 2's bound on -log p(x).")
    path = write_result("flows_vae", "1505.05770", finding,
                        f"nats per digit, higher is better (curve: validation ELBO; final: test L_{args.eval_k})",
                        ref, runs, timer.seconds,
                        paper_value={m: -v for m, v in PAPER.items() if m in {label(n) for n in args.lengths}},
                        notes=notes, results_dir=args.out)
    print(path)


if __name__ == "__main__":
    main()
