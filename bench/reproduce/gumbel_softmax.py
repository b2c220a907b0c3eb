"""Gumbel-Softmax (Jang, Gu & Poole 2017, arXiv:1611.01144), Table 1's VAE columns: a categorical VAE
(20 latents of 10 classes, uniform prior, Bernoulli decoder, one hidden layer of 256) on 28x28 binarized
digits, trained by

- the score function with a leave-one-out baseline on the discrete ELBO (k = 2 draws per digit; the
  exact KL is differentiated in closed form), the paper's "SF";
- plain straight-through (Bengio et al. 2013): hard code forward, softmax probabilities backward ("ST");
- Gumbel-Softmax on the relaxed reconstruction with the exact categorical KL ("GS");
- straight-through Gumbel-Softmax ("ST-GS");
- gapped straight-through (Fan et al. 2022, arXiv:2206.07235) and IGR (Potapczynski et al. 2020,
  arXiv:1912.09588), with the same schedule;

with the paper's annealing tau = max(0.5, exp(-r t)), updated every 500 steps (r rescaled so that tau
reaches 0.5 at two thirds of the run). Every model is scored on the same held-out digits by the same
tight estimate: the importance-sampled bound L_K (K = ``--eval-k``, default 1000, proposals from q;
:func:`vitools.models.sbn.evaluate_with_error`) with its standard error; the curves are the held-out
discrete ELBO (exact KL, 10 codes per digit). The no-latent reference is independent pixels fitted
to the training digits, scored exactly on the same held-out digits.

Data: the full fixed binarized MNIST from ``../shared/data`` when present, else the bundled 28x28
digits binarized once.

    python -m bench.reproduce.gumbel_softmax [--steps 1200] [--seeds 3]
"""
from __future__ import annotations

import argparse
import math

import torch

import vitools as vt
from vitools.models.categorical_vae import CategoricalVAE
from vitools.models.sbn import evaluate_with_error

from .common import Timer, digits, run, write_result

METHODS = ("score function (leave-one-out)", "straight-through", "Gumbel-Softmax", "ST Gumbel-Softmax", "GST", "IGR")
ESTIMATORS = {"Gumbel-Softmax": "gumbel_softmax", "ST Gumbel-Softmax": "straight_through",
              "GST": "gapped_straight_through", "IGR": "igr"}


def temperature(step: int, rate: float, every: int = 500, floor: float = 0.5) -> float:
    """The paper's schedule: tau = max(floor, exp(-rate * t)) with t held for ``every`` steps."""
    return max(floor, math.exp(-rate * (step // every) * every))


def objective(method: str, vae: CategoricalVAE, x: torch.Tensor, tau: float) -> torch.Tensor:
    """The per-digit training surrogate, ``[N]`` (its gradient is the method's gradient estimate)."""
    if method == "straight-through":             # Bengio et al.: forward the exact sample, backward softmax(l)
        log_q = vae.encode(x)
        probs = log_q.exp()
        hard = torch.distributions.OneHotCategorical(logits=log_q.detach()).sample()
        return vae.decode(hard + probs - probs.detach()).log_prob(x) - vae.kl(log_q)
    if method.startswith("score function"):
        return vt.estimators.get("score_function", baseline="leave_one_out")(vae.on(x), 2).surrogate
    return vt.estimators.get(ESTIMATORS[method], temperature=tau)(vae.on(x), 1).surrogate


def train(method: str, seed: int, data, args) -> dict:
    x_train, x_valid, x_test = data
    vae = CategoricalVAE(784, hidden=(256,), num_latents=20, num_classes=10, seed=seed, device="cpu")
    opt = torch.optim.Adam(vae.parameters(), lr=args.lr)
    rate = math.log(2.0) / (2 * args.steps / 3)
    gen = torch.Generator().manual_seed(seed)
    curve, timer = [], Timer()
    torch.manual_seed(seed)
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            with torch.no_grad():
                curve.append((step, float(vae.discrete_elbo(x_valid, k=10).mean())))
        if step == args.steps:
            break
        xb = x_train[torch.randint(len(x_train), (args.batch,), generator=gen)]
        loss = -objective(method, vae, xb, temperature(step, rate)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_seconds = timer.seconds
    with torch.no_grad():
        tight, se = evaluate_with_error(vae, x_test, k=args.eval_k)
        elbo = float(vae.discrete_elbo(x_test, k=10).mean())
        kl = float(vae.kl(vae.encode(x_test)).mean())
    return run(method, seed, args.steps, curve, tight, standard_error=se, test_elbo=elbo, kl=kl,
               seconds=timer.seconds, train_seconds=train_seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    timer = Timer()
    x_train, x_valid, x_test, source = digits("auto", n_valid=args.n_valid, n_test=args.n_test)
    reference = vt.models.IndependentBernoulli.fit(x_train)
    ref_value = reference.mean_log_prob(x_test)
    print(f"{source}: independent pixels {ref_value:.2f} nats on {len(x_test)} test digits", flush=True)
    runs = []
    for method in args.methods:
        for seed in range(args.seeds):
            r = train(method, seed, (x_train, x_valid, x_test), args)
            runs.append(r)
            print(f"{method:32s} seed {seed}: L_{args.eval_k} {r['final']:8.2f} +- {r['standard_error']:.2f}  "
                  f"ELBO {r['test_elbo']:8.2f}  KL {r['kl']:5.1f} of {20 * math.log(10):.1f}  "
                  f"({r['seconds']:.0f} s)", flush=True)
    notes = (f"Data: {source}; {args.steps} Adam updates (lr {args.lr}, batch {args.batch}) per run, far fewer "
             f"than the paper's training to convergence; tau annealed 1 -> 0.5 by the paper's max(0.5, exp(-r t)) "
             f"schedule (N = 500, r rescaled to the run). Final = L_{args.eval_k} on {len(x_test)} test digits "
             f"(its standard error in standard_error); test_elbo = discrete ELBO (exact KL); kl = the exact "
             f"KL(q || uniform) in nats (at most {20 * math.log(10):.1f}). The paper's Table 1 reports negative "
             "ELBOs of a larger model after full training; they are not comparable number for number.")
    path = write_result(
        "gumbel_softmax", "1611.01144",
        "On a 20x10 categorical VAE every estimator beats independent pixels; the relaxed and straight-through "
        "estimators train faster per update than the score function with a leave-one-out baseline.",
        f"held-out log p(x) in nats per digit, higher is better: curve = discrete ELBO on {len(x_valid)} "
        f"validation digits, final = L_{args.eval_k} on {len(x_test)} test digits",
        {"label": "independent pixels", "value": ref_value}, runs, timer.seconds, notes=notes)
    print(f"wrote {path} in {timer.seconds:.0f} s")


if __name__ == "__main__":
    main()
