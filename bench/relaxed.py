"""Benchmarks for relaxed and relaxation-based estimators (Concrete/Gumbel-Softmax,
arXiv:1611.00712 / arXiv:1611.01144; REBAR, arXiv:1703.07370; RELAX/LAX, arXiv:1711.00123;
ARM, arXiv:1807.11143; DisARM, arXiv:2006.10680; GST, arXiv:2206.07235; IGR, arXiv:1912.09588).

On the toy problems (the Bernoulli toy E[(b - 0.45)^2] at logit 1, a 4-bit factorised
Bernoulli with a random cost table, a 4-class categorical), side by side in one run:

* time per gradient step (one k=1 surrogate + backward on a batch of ``--batch`` replicas,
  control variates frozen), relative to REINFORCE on the same problem;
* gradient variance per estimate (trace, ``grad_samples`` with n estimates; it first warms up
  each estimator's learned state at theta with ``est.warm_up`` and then freezes it), and the
  variance at equal wall time:
  variance x (time per step / REINFORCE's time per step);
* the bias z-score against the exact gradient (biased estimators show it).

On a sigmoid belief net (1-layer linear, 20 bits, 14x14 bundled digits, and 2-layer 20-20),
the same estimators on ``model.on(x)``: time per training step (``vt.train.fit``: surrogate,
backward, Adam on the model and, for estimators with learned state, one Adam step on their
control loss) relative to REINFORCE with a running-mean baseline (``nvil`` with the constant
baseline only), and the inference network's gradient variance per estimate (batch means of
estimates for one digit, every estimator first warmed up by ``est.warm_up`` on minibatches of
50 with the model fixed, then frozen) and at equal wall time.

``--paper-scale --data-dir DIR``: the RELAX paper's SBN settings (Grathwohl et al. 2018,
Table 1: linear 1-layer 200 bits, nonlinear 1-layer 200 bits with two tanh hidden layers of
200) on the full binarized MNIST (50k train / 10k test), trained for ``--steps`` Adam steps
(the paper trains for millions: the table says which scale it reports); test ELBO (k=1).

    .venv/bin/python bench/relaxed.py [--quick] [--n 20000] [--threads 2] [--paper-scale --data-dir ../shared/data --steps 2000]

Writes bench/results/relaxed.md. The side-by-side run with Storchastic is bench/storchastic_compare.py.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vitools as vt  # noqa: E402
from vitools.diagnostics import grad_samples, summarize  # noqa: E402
from vitools.models import sbn  # noqa: E402
from bench._timing import interleaved_ms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "relaxed.md"
FIT_STEPS = 4                                          # training steps per timed vt.train.fit call (SBN)
SBN_LINE_UP = [
    ("REINFORCE + c", "nvil", {"input_baseline": False, "normalize": False}), ("ARM", "arm", {}),
    ("DisARM", "disarm", {}), ("REBAR", "rebar", {}), ("RELAX", "relax", {}), ("LAX", "lax", {}),
    ("Gumbel-Softmax (biased)", "gumbel_softmax", {}), ("straight-through (biased)", "straight_through", {}),
    ("GST (biased)", "gapped_straight_through", {}), ("IGR (biased)", "igr", {}),
]
LINE_UP = [
    ("score_function", {}), ("score_function", {"baseline": "moving_average"}),
    ("gumbel_softmax", {"temperature": 0.5}), ("straight_through", {"temperature": 0.5}),
    ("gapped_straight_through", {"temperature": 0.5}), ("igr", {"temperature": 0.5}),
    ("rebar", {}), ("relax", {}), ("lax", {}), ("arm", {}), ("disarm", {}),
]


def problems():
    return {
        "Bernoulli toy t=0.45, logit 1": vt.problems.BernoulliQuadratic(0.45, init=1.0),
        "4 bits, random table": vt.problems.FactorisedBernoulli.random(4, seed=1, logits=[0.5, -1.0, 0.3, 1.2]),
        "categorical, 4 classes": vt.problems.CategoricalCost(logits=[0.2, -0.5, 1.0, 0.1]),
    }


def step_ms(estimators, problem, theta, batch, repeats, rounds: int = 5):
    """Median milliseconds per step of each estimator, timed in interleaved rounds so that
    load from other processes hits every estimator alike; the best round's median is kept."""
    replicated = theta.detach().expand(batch, *theta.shape).clone().requires_grad_(True)

    def step(est):
        replicated.grad = None
        est(problem.at(replicated), 1).surrogate.sum().backward()
    for est in estimators:
        est.eval()                                     # frozen: no control loss, no state change
        for _ in range(3):
            step(est)
    return interleaved_ms([lambda est=est: step(est) for est in estimators], max(1, repeats // rounds), rounds)


def phi_variance(est, model, x, batches: int, m: int) -> float:
    """Trace of the inference network's gradient variance per estimate for one example ``x``
    ``[1, D]``: ``m`` x the variance of ``batches`` means of ``m`` estimates (state frozen)."""
    params = model.inference_parameters()
    rows = []
    est.eval()
    for _ in range(batches):
        loss = est(model.on(x.expand(m, x.shape[1])), 1).surrogate.mean()
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return float(torch.stack(rows).double().var(0).sum()) * m


def sbn_section(latent, quick: bool) -> list[str]:
    """Step time and encoder-gradient variance of each estimator on a trained SBN."""
    x = vt.data.small_digits("train", n=1000)
    vt.config.seed_everything(0)
    model = sbn.SBN(x.shape[1], latent)
    pre_steps, cv_steps = (100, 20) if quick else (300, 100)
    sbn.train_sbn(model, vt.estimators.get("disarm"), x, steps=pre_steps, batch_size=50, lr=3e-3, progress=False)
    batches, m, steps = (20, 50, 10) if quick else (100, 100, 40)
    runs = []                                          # (label, estimator, model copy)
    for label, name, opts in SBN_LINE_UP:
        est = vt.estimators.get(name, **opts)
        est.warm_up(vt.train.batches(model, x, 50), 1, steps=cv_steps)     # returns at once without state
        copy = sbn.SBN(x.shape[1], latent)
        copy.load_state_dict(model.state_dict())
        runs.append((label, est, copy))

    def step(est, copy):                               # FIT_STEPS training steps of vt.train.fit
        vt.train.fit(est, copy, x, steps=FIT_STEPS, batch_size=50, lr=1e-4, seed=None, progress=False)
    best = interleaved_ms([lambda run=run: step(*run[1:]) for run in runs], max(2, steps // (5 * FIT_STEPS)),
                          warmup=1)
    best = [ms / FIT_STEPS for ms in best]
    out = []
    for (label, est, _), ms in zip(runs, best):
        var = statistics.mean(phi_variance(est, model, x[i:i + 1], batches, m) for i in range(3))
        out.append((label, ms, ms / best[0], var))
        print(latent, out[-1], flush=True)
    base_var = out[0][3]
    lines = [f"## SBN {'-'.join(map(str, latent))} (linear, 14x14 bundled digits, trained {pre_steps} DisARM steps)", "",
             "| estimator | ms / step | time vs REINFORCE | encoder gradient variance | vs REINFORCE | at equal time vs REINFORCE |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {l} | {ms:.1f} | {r:.1f}x | {v:.3g} | {v / base_var:.3g} | {v * r / base_var:.3g} |"
              for l, ms, r, v in out]
    return lines + [""]


def independent_pixels_line(x_train, x_test) -> str:
    """The test log-likelihood of independent pixels at their training means: an SBN whose ELBO is
    not above it has learned nothing from its latents."""
    p = x_train.double().mean(0).clamp(1e-3, 1 - 1e-3)
    x = x_test.double()
    log_lik = float((x * p.log() + (1 - x) * (1 - p).log()).sum(1).mean())
    return (f"Reference: independent pixels at their training means give {log_lik:.1f} nats per test digit; "
            "an ELBO at or below it means the latents are not used yet.")


def paper_scale(data_dir, steps: int) -> list[str]:
    x_train = vt.data.load_mnist("binarized", split="train", data_dir=data_dir, binarize="fixed")   # already 0/1
    x_test = vt.data.load_mnist("binarized", split="test", data_dir=data_dir, binarize="fixed")   # already 0/1
    lines = [f"## Paper scale: binarized MNIST, {steps} steps of batch 24 (Adam 3e-4)", "",
             f"The RELAX paper (Table 1) trains for up to 2M steps; this is {steps} steps on {torch.get_num_threads()} CPU "
             "threads, so the bounds are far from the paper's and only "
             "the ordering is comparable; train time is wall clock on a shared CPU (noisy: compare the "
             "interleaved step times above).", "",
             independent_pixels_line(x_train, x_test), "",
             "| SBN | estimator | test ELBO (k=1) | train time (s) |", "|---|---|---:|---:|"]
    for kind, nonlinear in (("linear 200", False), ("nonlinear 200", True)):
        for label, name, opts in SBN_LINE_UP[:5]:
            vt.config.seed_everything(0)
            model = sbn.SBN(784, (200,), nonlinear=nonlinear, hidden=200)
            start = time.perf_counter()
            sbn.train_sbn(model, vt.estimators.get(name, **opts), x_train, steps=steps, batch_size=24, lr=3e-4,
                          progress=False)
            seconds = time.perf_counter() - start
            bound = sbn.evaluate(model, x_test, k=1)
            lines.append(f"| {kind} | {label} | {bound:.1f} | {seconds:.0f} |")
            print(lines[-1], flush=True)
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paper-scale", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--skip-toy", action="store_true",
                        help="keep the toy tables already in the results file; measure the SBN ones only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, repeats = (2000, 20) if args.quick else (args.n, 100)
    lines = ["# Relaxed and relaxation-based estimators on the toy problems", "",
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"device {vt.config.device()}, {time.strftime('%Y-%m-%d')}; n = {n} estimates per variance, "
             f"step time = best of 5 interleaved rounds of the median over {repeats // 5} steps of a batch of {args.batch} k=1 estimates "
             "(control variates frozen; their training cost is in the last column).", ""]
    kept_paper_scale = []
    if args.skip_toy and RESULTS.exists():             # keep the toy part (and paper-scale part) of the last full run
        previous = RESULTS.read_text()
        lines = [previous.split("\n## SBN")[0].rstrip("\n"), ""]
        if not args.paper_scale and "\n## Paper scale" in previous:
            kept_paper_scale = ["## Paper scale" + previous.split("\n## Paper scale", 1)[1].rstrip("\n"), ""]
    for pname, problem in ({} if args.skip_toy else problems()).items():
        theta = problem.init_params()
        exact = problem.exact_grad(theta)
        measured = []
        for name, opts in LINE_UP:
            est = vt.estimators.get(name, **opts)
            if not est.applies_to(problem):
                continue
            start = time.perf_counter()
            s = summarize(grad_samples(est, problem, theta, n=n, seed=0), exact)
            measured.append((est, s, time.perf_counter() - start))
        times = step_ms([m[0] for m in measured], problem, theta, args.batch, repeats)
        rows = []
        for (est, s, total_s), ms in zip(measured, times):
            var = float(s.variance.sum())
            rows.append((est.label, ms, ms / times[0], var, var * ms / times[0], float(s.bias_z.abs().max()), total_s))
            print(pname, rows[-1], flush=True)
        lines += [f"## {pname}", "",
                  "| estimator | ms / step | time vs REINFORCE | variance (trace) | variance at equal time | max abs bias z | warm-up + measure (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.1f}x | {r[3]:.3g} | {r[4]:.3g} | {r[5]:.1f} | {r[6]:.1f} |" for r in rows]
        lines.append("")
    if not args.skip_toy:
        lines += ["Biased estimators (Gumbel-Softmax, straight-through, GST, IGR) show |bias z| well above 4; "
                  "ARM and DisARM use two cost evaluations per estimate.", ""]
    lines += ["Storchastic, side by side on the toy and on an SBN: bench/results/storchastic.md.", ""]
    for latent in ((20,), (20, 20)):
        lines += sbn_section(latent, args.quick)
    lines += ["Encoder gradient variance: trace over the inference network's parameters per single-sample "
              f"estimate, mean over 3 digits; every estimator first warmed up by `est.warm_up` for "
              f"{20 if args.quick else 100} steps on minibatches of 50 at the fixed net (those without learned state "
              "have nothing to fit), then frozen. Step time: `vt.train.fit` (batch 50, k=1, Adam on the model and, "
              f"where the estimator has learned state, one Adam step on its control loss), {FIT_STEPS} steps per timed "
              "call, best of 5 interleaved rounds of the median, divided by the steps.", "",
              "LAX is unbiased here but noisier than REINFORCE with a constant baseline: it weights the residual "
              "f - c(z) by the score of the continuous z, 1 - 2u, whose variance is 1/3 for every unit however "
              "saturated, where the Bernoulli score h - sigmoid(logit) of REINFORCE, REBAR and RELAX has variance "
              "p(1 - p) (0.0099 at p = 0.99). Its learned control would have to absorb the noise of every other "
              "unit to make up for that. REBAR and RELAX keep the Bernoulli score and stay unbiased through the "
              "conditional sample z~ | h.", ""]
    lines += kept_paper_scale
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines))            # written now and again after the paper-scale run
    if args.paper_scale:
        if args.data_dir is None:
            parser.error("--paper-scale needs --data-dir (holding binarized_mnist.npz)")
        lines += paper_scale(args.data_dir, args.steps)
        RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
