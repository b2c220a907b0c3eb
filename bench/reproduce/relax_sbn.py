"""REBAR (Tucker et al. 2017, arXiv:1703.07370) and RELAX (Grathwohl et al. 2018, arXiv:1711.00123):
training a sigmoid belief net on binarized digits with unbiased discrete gradient estimators.

A one-layer linear SBN with 200 latent bits (784-200; ``--nonlinear`` for the 784-200~200-200 net)
is trained with Adam by REINFORCE with a running-mean baseline (``nvil`` without its input-dependent
baseline and without variance normalisation), NVIL (Mnih & Gregor 2014, arXiv:1402.0030), ARM,
DisARM, REBAR and RELAX (their control parameters trained on their control loss alongside the
model, :func:`vitools.train.fit`). Curves: the held-out ELBO (``--n-valid`` validation digits, one
sample each) against updates and, stored beside it per run, against wall time. Final: every net
scored on the same test digits by the same tight estimate, L_K with K = ``--eval-k`` (default 1000),
with its standard error. The no-latent reference is independent pixels (training means), scored
exactly on the same test digits.

Data: the full fixed binarized MNIST from ``../shared/data`` when present, else the bundled 28x28
digits binarized once.

Every net starts from the data as in the papers (:meth:`SBN.init_from_data`; ``--init random`` without).

    python -m bench.reproduce.relax_sbn [--steps 1500] [--seeds 3] [--nonlinear] [--init data|random]
"""
from __future__ import annotations

import argparse

import torch

import vitools as vt
from vitools.models.sbn import SBN, evaluate_with_error, train_sbn

from .common import Timer, digits, run, write_result
from .nvil import ordering


METHODS = {
    "REINFORCE + baseline": ("nvil", {"input_baseline": False, "normalize": False}),
    "NVIL": ("nvil", {}),
    "ARM": ("arm", {}),
    "DisARM": ("disarm", {}),
    "REBAR": ("rebar", {}),
    "RELAX": ("relax", {}),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--nonlinear", action="store_true")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--name", default=None, help="result name (default relax_sbn or relax_sbn_nonlinear)")
    parser.add_argument("--init", choices=("data", "random"), default="data",
                        help="data: centred input and output biases at the pixel log-odds (SBN.init_from_data), "
                             "as in the papers; random: torch's default initialisation only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    timer = Timer()
    x_train, x_valid, x_test, source = digits("auto", n_valid=args.n_valid, n_test=args.n_test)
    ref_value = vt.models.IndependentBernoulli.fit(x_train).mean_log_prob(x_test)
    net = "nonlinear 784-200~200-200" if args.nonlinear else "linear 784-200"
    print(f"{source}, {net}: independent pixels {ref_value:.2f} nats on {len(x_test)} test digits", flush=True)
    runs = []
    for label in args.methods:
        name, options = METHODS[label]
        for seed in range(args.seeds):
            vt.config.seed_everything(seed)
            model = SBN(784, (200,), nonlinear=args.nonlinear)
            if args.init == "data":
                model.init_from_data(x_train)
            h = train_sbn(model, vt.estimators.get(name, **options), x_train, steps=args.steps,
                          batch_size=args.batch, lr=args.lr, x_valid=x_valid, eval_every=args.eval_every,
                          seed=seed, progress=False).as_arrays()
            tight, se = evaluate_with_error(model, x_test, k=args.eval_k)
            elbo = vt.models.sbn.evaluate(model, x_test, k=1)
            curve = list(zip(h["eval_steps"], h["valid_bound"]))
            r = run(label, seed, args.steps, curve, tight, standard_error=se, test_elbo=elbo,
                    wall=[[float(s), float(v)] for s, v in zip(h["eval_seconds"], h["valid_bound"])],
                    train_seconds=float(h["seconds"][-1]))
            runs.append(r)
            print(f"{label:22s} seed {seed}: L_{args.eval_k} {tight:8.2f} +- {se:.2f}  ELBO {elbo:8.2f}  "
                  f"({r['train_seconds']:.0f} s training)", flush=True)
    start = ("every net starts from the data (SBN.init_from_data: the inference net sees x minus the training "
             "means, the output biases start at their log-odds)" if args.init == "data" else
             "torch's default initialisation (no data-dependent start)")
    notes = (f"Data: {source}; {net} SBN, {start}; {args.steps} Adam updates (lr {args.lr}, batch {args.batch}) per run "
             "against the papers' millions (REBAR/RELAX train for 2M+ steps); final = L_K on the test digits "
             "(standard_error beside it), test_elbo = the one-sample ELBO on the same digits; 'wall' holds the "
             "validation ELBO against training seconds (one torch thread).")
    name = args.name or ("relax_sbn_nonlinear" if args.nonlinear else "relax_sbn")
    reference = {"label": "independent pixels", "value": ref_value}
    finding = ordering(runs, reference)
    path = write_result(
        name, "1711.00123", finding,
        f"held-out log p(x) in nats per digit, higher is better: curve = ELBO on {len(x_valid)} validation "
        f"digits, final = L_{args.eval_k} on {len(x_test)} test digits",
        reference, runs, timer.seconds, notes=notes)
    print(f"wrote {path} in {timer.seconds:.0f} s")


if __name__ == "__main__":
    main()
