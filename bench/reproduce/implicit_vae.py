"""Implicit reparameterization (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498): a VAE with Gamma
latents trained by implicit reparameterization gradients against the alternatives the paper names.

One Gamma VAE (:class:`vitools.models.gamma_vae.GammaVAE`: prior Gamma(1, 1) on 20 latents, tanh MLP
784-200-20, Bernoulli decoder, closed-form KL) on 28x28 binarized digits, trained on the same
minibatches, updates and number of draws (K = 2 per digit) by

* implicit reparameterization (``vt.implicit.Gamma.rsample``);
* RSVI, the rejection-sampler gradient (Naesseth et al. 2017) with shape augmentation B = 1 (the
  sampler of the ``rsvi`` estimator);
* the score function with the leave-one-out baseline;

and, for reference, a Gaussian VAE of the same size trained by the ordinary pathwise gradient.
Curves: the ELBO (10 draws) on 500 validation digits against updates; final score: L_1000 on the
same 500 test digits for every run, with its standard error. G-REP (Ruiz et al. 2016) is not run:
the library has no implementation of it.

Run: ``python -m bench.reproduce.implicit_vae`` (``make reproduce-implicit_vae``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import vitools as vt
from vitools.models.gamma_vae import GammaVAE

from .common import RESULTS, Timer, digits, fit_with_curve, held_out_bound, run, write_result
from .nvil import ordering, reference

METHODS = {"implicit (Gamma)": "implicit", "RSVI (Gamma, B=1)": "rsvi",
           "score + leave-one-out baseline (Gamma)": "score", "pathwise (Gaussian VAE)": "gaussian"}


def build(method: str, seed: int, hidden, latent: int):
    """``(model, loss(batch), valid_elbo(x))`` for one method."""
    if method == "gaussian":
        model = vt.models.GaussianVAE(784, hidden=hidden, latent_dim=latent, seed=seed)
        return model, lambda b, k: -model.elbo(b, k=k).mean(), lambda x: model.elbo(x, k=10).mean().item()
    model = GammaVAE(784, hidden=hidden, latent_dim=latent, seed=seed)
    return (model, lambda b, k: -model.surrogate(b, k=k, method=method).mean(),
            lambda x: model.elbo(x, k=10).mean().item())


def train_one(method, seed, x_train, x_valid, x_test, steps, batch_size, lr, k, hidden, latent,
              eval_points=6, eval_k=1000):
    model, loss, valid_elbo = build(method, seed, hidden, latent)
    curve, seconds = fit_with_curve(lambda b: loss(b, k), model, x_train, lambda: valid_elbo(x_valid), steps=steps,
                                    batch_size=batch_size, lr=lr, seed=seed, eval_points=eval_points)
    final, se, per_example = held_out_bound(model, x_test, eval_k, seed, batch_size=25)
    return curve, final, {"final_se": se, "per_example": per_example,
                          "valid_elbo": curve[-1][1], "train_seconds": round(seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only-seed", type=int, default=None,
                        help="run this one seed and write its part to --out (merge the parts with --merge)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="folders of per-seed parts to merge into one result")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[200])
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--data", default="binarized", choices=("binarized", "bundled"))
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods must be among {list(METHODS)}, got {unknown}")
    x_train, x_valid, x_test, data = digits(args.data, n_valid=args.n_valid, n_test=args.n_test)
    ref = reference(x_train, x_test)
    timer, runs = Timer(), []
    for seed in ([args.only_seed] if args.only_seed is not None else range(args.seeds)):
        for label in args.methods:
            curve, final, extra = train_one(METHODS[label], seed, x_train, x_valid, x_test, args.steps,
                                            args.batch_size, args.lr, args.k, tuple(args.hidden), args.latent,
                                            eval_k=args.eval_k)
            runs.append(run(label, seed, args.steps, curve, final, **extra))
            print(f"{label:40s} seed {seed}: valid ELBO {extra['valid_elbo']:8.2f}  L_{args.eval_k} {final:8.2f} "
                  f"+- {extra['final_se']:.2f}  ({extra['train_seconds']:.0f} s)", flush=True)
    load = " ".join(f"{v:.2f}" for v in __import__("os").getloadavg())
    notes = (f"{data}; every model 784-{'-'.join(map(str, args.hidden))}-{args.latent} (tanh MLPs, Bernoulli "
             f"decoder), Gamma(1, 1) prior and Gamma encoder (Gaussian VAE: N(0, I) prior), closed-form KL; Adam lr "
             f"{args.lr}, batch {args.batch_size}, K = {args.k} draws per digit, {args.steps} updates per run "
             f"(about {args.steps * args.batch_size / len(x_train):.0f} passes over the training digits), the same "
             f"minibatches for every method of a seed; curves: the 10-draw ELBO on {len(x_valid)} validation "
             f"digits; final: L_{args.eval_k} on the same {len(x_test)} test digits for every run. The paper's VAE experiments compare latent families trained with implicit gradients, not gradient "
             f"estimators, and have no number for this setting: no paper_value is given. "
             f"G-REP not run (no implementation in the library). Load average at the end: {load} (2 shared cores; "
             f"wall times are inflated).")
    path = write_result("implicit_vae", "1805.08498", ordering(runs, ref),
                        f"nats per digit, higher is better (curve: validation ELBO; final: test L_{args.eval_k})",
                        ref, runs, timer.seconds, notes=notes, results_dir=args.out)
    print(path)


def merge(parts, out: Path = RESULTS):
    """One result from per-seed parts (seeds run as separate processes side by side): the runs
    together, ``seconds`` the longest part's wall time (their CPU time is the sum, in the notes)."""
    import json

    results = [json.loads((Path(p) / "implicit_vae.json").read_text()) for p in parts]
    runs = [r for res in results for r in res["runs"]]
    first = results[0]
    seconds = max(res["seconds"] for res in results)
    notes = (first["notes"] + f" Seeds run as {len(results)} processes side by side; wall time of the longest "
             f"{seconds:.0f} s, sum over processes {sum(res['seconds'] for res in results):.0f} s; the parts: "
             + "; ".join(f"{res['command']} (commit {res['commit']}, {res['date']})" for res in results) + ".")
    path = write_result("implicit_vae", first["paper"], ordering(runs, first["reference"]), first["metric"],
                        first["reference"], sorted(runs, key=lambda r: r["seed"]), seconds,
                        notes=notes, results_dir=out)
    print(path)
    return path


if __name__ == "__main__":
    main()
