"""Every discrete gradient estimator in the registry, side by side in one run, at equal function
evaluations: gradient variance (and, for biased ones, squared bias and MSE against the exact
gradient) and time per step relative to REINFORCE.

Settings:

* the wide quadratic toy of Titsias & Shi (2022, arXiv:2111.05300, Section 5.1): $D = 200$
  independent bits $b_d \\sim \\mathrm{Bern}(\\sigma(\\theta_d))$, $f(b) = \\frac1D\\sum_d (b_d - 0.499)^2$,
  at $\\theta = 0$; the exact gradient is $\\frac1D\\sigma'(\\theta_d)(1 - 2 \\cdot 0.499)$ per logit;
* the 784-200 linear sigmoid belief net on binarized MNIST (``--data auto``: the full data in
  ../shared/data, else the bundled 28x28 digits), first trained ``--pretrain`` DisARM steps; the
  inference network's gradient variance per estimate of the ELBO (trace, mean over 3 digits).

Equal function evaluations: each estimator draws the ``k`` that spends ``--evals`` (default 6)
evaluations of $f$ per estimate: 1 per sample for the score-function family, the relaxations,
Gumbel-Rao, ReinMax, AIMLE, LAX (Double CV and RODEO add one backward pass, no evaluation); 2 per
sample for ARM and DisARM (antithetic pairs); 3 per sample for REBAR and RELAX (the hard sample and
two relaxed points). The measure-valued estimator needs $2D$ = 400 per draw on the toy: its row is
its one-draw variance scaled to ``--evals`` (variance x 400 / evals), marked as such. Estimators
with learned state are warmed up with ``est.warm_up`` (the toy: ``grad_samples``' own warm-up, 500
steps for Double CV, whose coefficient needs them; the SBN: ``--cv-steps`` steps on minibatches of
50), then frozen; a second Double CV row keeps its coefficient at the Taylor choice 1. Step time: toy, one surrogate +
backward for a batch of 64 replicas; SBN, one ``vt.train.fit`` step (batch 50, Adam on the model
and on the control loss); best of 5 interleaved rounds of the median (bench/_timing.py). Estimators
the registry holds that do not apply to a setting are listed with their ``why_not``.

    .venv/bin/python bench/discrete.py [--quick] [--evals 6] [--n 2000] [--threads 1]

Writes bench/results/discrete.md and the same numbers as bench/results/discrete.json (notebook 08 reads them).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributions as D

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vitools as vt  # noqa: E402
from vitools.diagnostics import grad_samples  # noqa: E402
from vitools.models import sbn  # noqa: E402
from bench._timing import interleaved_ms  # noqa: E402
from bench.reproduce.common import digits  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "discrete.md"
DATA = RESULTS.with_suffix(".json")            # the same numbers for notebook 08's table

# registry name -> evaluations of f per sample; names absent here are not discrete-latent estimators
EVALS = {"score_function": 1, "rloo": 1, "double_cv": 1, "rodeo": 1, "unordered_set": 1, "nvil": 1,
         "nvil_multisample": 1, "vimco": 1, "rws": 1, "arm": 2, "disarm": 2, "rebar": 3, "relax": 3, "lax": 1,
         "gumbel_softmax": 1, "straight_through": 1, "gapped_straight_through": 1, "igr": 1,
         "gumbel_rao": 1, "reinmax": 1, "aimle": 1, "measure_valued": None}
LINE_UP = [("REINFORCE", "score_function", {}),
           ("REINFORCE + moving average", "score_function", {"baseline": "moving_average"}),
           ("REINFORCE + baseline", "nvil", {"input_baseline": False, "normalize": False}),
           ("NVIL", "nvil", {}), ("RLOO", "rloo", {}), ("Double CV", "double_cv", {"train_steps": 500}),
           ("Double CV, alpha = 1 fixed", "double_cv", {"train_steps": 0}), ("RODEO", "rodeo", {}),
           ("unordered set", "unordered_set", {}), ("VIMCO (L_K objective)", "vimco", {}),
           ("NVIL multi-sample (L_K objective)", "nvil_multisample", {}), ("RWS (wake-sleep objective)", "rws", {}),
           ("ARM", "arm", {}), ("DisARM", "disarm", {}), ("REBAR", "rebar", {}), ("RELAX", "relax", {}),
           ("LAX", "lax", {}), ("measure-valued", "measure_valued", {}),
           ("Gumbel-Softmax", "gumbel_softmax", {}), ("straight-through", "straight_through", {}),
           ("GST", "gapped_straight_through", {}), ("IGR", "igr", {}), ("Gumbel-Rao", "gumbel_rao", {}),
           ("ReinMax", "reinmax", {}), ("AIMLE", "aimle", {}), ("I-MLE", "aimle", {"adaptive": False, "symmetric": False})]


class WideQuadratic(vt.problems.Problem):
    r"""Titsias & Shi's toy: $\mathbb{E}[\frac1D\sum_d (b_d - t)^2]$, $b_d \sim \mathrm{Bern}(\sigma(\theta_d))$."""

    name = "wide_quadratic"
    cost_label = "mean_d (b_d - t)^2"

    def __init__(self, dim: int = 200, target: float = 0.499):
        self.target = float(target)
        self.param_names = tuple(f"logit_{d}" for d in range(dim))
        super().__init__([0.0] * dim)

    def distribution(self, theta):
        self._check_theta(theta)
        return D.Independent(D.Bernoulli(logits=theta), 1)

    def cost(self, z):
        return ((z - self.target) ** 2).mean(-1)

    def exact_value(self, theta):
        p = torch.sigmoid(theta)
        return (p * (1 - self.target) ** 2 + (1 - p) * self.target ** 2).mean(-1)

    def describe(self):
        return f"D={len(self.param_names)}, t={self.target:g}"


def samples(name: str, evals: int, dim: int):
    """``(k, scale)``: samples per estimate at ``evals`` evaluations and the variance scale (1 unless the
    estimator cannot spend that few)."""
    per = EVALS[name] if EVALS[name] is not None else 2 * dim
    if per > evals:
        return 1, per / evals
    return evals // per, 1.0


def not_applicable(estimators, target) -> list[str]:
    return [f"- {label} (`{est.name}`): {est.why_not(target)}" for label, est in estimators if not est.applies_to(target)]


def toy_section(evals: int, n: int, repeats: int, store: dict) -> list[str]:
    problem = WideQuadratic()
    theta = problem.init_params()
    exact = problem.exact_grad(theta)
    built = [(label, vt.estimators.get(name, **opts)) for label, name, opts in LINE_UP]
    rows, ests = [], []
    for label, est in built:
        if not est.applies_to(problem):
            continue
        k, scale = samples(est.name, evals, len(theta))
        k = max(k, est.min_k)
        g = grad_samples(est, problem, theta, n=n, k=k, seed=0).double()
        var = float(g.var(0).mean()) * scale
        bias2 = float(((g.mean(0) - exact) ** 2).mean())
        z = float(((g.mean(0) - exact) / (g.std(0) / n ** 0.5)).abs().max())
        rows.append([label, est, k, scale, var, bias2, z])
        ests.append((est, k))
        print("toy", label, k, var, bias2, z, flush=True)
    replicated = theta.detach().expand(64, *theta.shape).clone().requires_grad_(True)

    def step(est, k):
        replicated.grad = None
        est(problem.at(replicated), k).surrogate.sum().backward()
    for est, k in ests:
        est.eval()
        for _ in range(3):
            step(est, k)
    ms = interleaved_ms([lambda e=e, k=k: step(e, k) for e, k in ests], max(1, repeats // 5))
    base_var, base_ms = rows[0][4], ms[0]
    lines = [f"## Wide quadratic toy ({problem.describe()}, theta = 0; exact gradient {float(exact[0]):.3g} per logit)", "",
             f"{evals} evaluations of f per estimate; variance = mean over the 200 logits of the per-estimate "
             f"variance, {n} estimates; squared bias = mean over logits of (mean estimate - exact)^2; "
             "max |z| = the largest bias z-score over the logits.", "",
             "| estimator | unbiased | k | variance per logit | vs REINFORCE | squared bias | MSE vs REINFORCE's | "
             "max abs z | ms / step | time vs REINFORCE |",
             "|---|:-:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (label, est, k, scale, var, bias2, z), t in zip(rows, ms):
        store.setdefault(label, {"name": est.name, "unbiased": est.unbiased})["toy"] = {
            "k": k, "variance": var, "variance_vs_reinforce": var / base_var, "squared_bias": bias2,
            "mse_vs_reinforce": (var + bias2) / base_var, "max_abs_z": z, "ms": t, "time_vs_reinforce": t / base_ms}
        note = f" (x{scale:.0f}: {EVALS.get(est.name) or 2 * len(theta)} evaluations per draw)" if scale != 1 else ""
        lines.append(f"| {label}{note} | {'yes' if est.unbiased else 'no'} | {k} | {var:.3g} | {var / base_var:.3g} | "
                     f"{bias2:.2g} | {(var + bias2) / base_var:.3g} | {z:.1f} | {t:.2f} | {t / base_ms:.1f}x |")
    lines += ["", "Registered discrete estimators that do not apply to this toy:", ""]
    lines += not_applicable(built, problem) + [""]
    return lines


def phi_variance(est, model, x, k: int, batches: int, m: int) -> float:
    """Trace of the inference network's gradient variance per estimate for one digit ``x`` ``[1, 784]``:
    ``m`` x the variance of ``batches`` means of ``m`` estimates (state frozen)."""
    params = model.inference_parameters()
    rows = []
    est.eval()
    for _ in range(batches):
        loss = est(model.on(x.expand(m, x.shape[1])), k).surrogate.mean()
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return float(torch.stack(rows).double().var(0).sum()) * m


def sbn_section(evals: int, pretrain: int, cv_steps: int, batches: int, m: int, timed_steps: int,
                store: dict) -> list[str]:
    x_train, _, x_test, source = digits("auto", n_valid=10, n_test=100)
    vt.config.seed_everything(0)
    model = sbn.SBN(784, (200,))
    sbn.train_sbn(model, vt.estimators.get("disarm"), x_train, steps=pretrain, batch_size=50, lr=3e-3, progress=False)
    pre_score = sbn.evaluate(model, x_test, k=1)
    built = [(label, vt.estimators.get(name, **opts)) for label, name, opts in LINE_UP]
    runs = []
    for label, est in built:
        if not est.applies_to(model.on(x_train[:2])):
            continue
        k = max(samples(est.name, evals, 200)[0], est.min_k)
        if est.options.get("train_steps", None) != 0:                   # the fixed-alpha row stays at alpha = 1
            est.warm_up(vt.train.batches(model, x_train, 50), k, steps=cv_steps)
        copy = sbn.SBN(784, (200,))
        copy.load_state_dict(model.state_dict())
        runs.append((label, est, k, copy))

    def step(est, k, copy):
        vt.train.fit(est, copy, x_train, steps=1, batch_size=50, lr=1e-5, k=k, seed=None, progress=False)
    ms = interleaved_ms([lambda r=r: step(*r[1:]) for r in runs], max(2, timed_steps // 5), warmup=1)
    out = []
    for (label, est, k, _), t in zip(runs, ms):
        start = time.perf_counter()
        var = statistics.mean(phi_variance(est, model, x_test[i:i + 1], k, batches, m) for i in range(3))
        out.append((label, est, k, var, t))
        print("sbn", label, k, var, t, f"{time.perf_counter() - start:.1f} s", flush=True)
    base_var, base_ms = out[0][3], out[0][4]
    lines = [f"## SBN 784-200 (linear; {source}; {pretrain} DisARM steps first: test ELBO {pre_score:.1f})", "",
             f"{evals} evaluations of f per digit per estimate; inference-network gradient variance per estimate "
             f"(trace; {batches} batch means of {m} estimates, mean over 3 test digits); step time = one "
             "`vt.train.fit` step of batch 50.", "",
             "| estimator | unbiased | k | encoder gradient variance | vs REINFORCE | ms / step | time vs REINFORCE | "
             "variance at equal time vs REINFORCE |",
             "|---|:-:|---:|---:|---:|---:|---:|---:|"]
    for label, est, k, var, t in out:
        store.setdefault(label, {"name": est.name, "unbiased": est.unbiased})["sbn"] = {
            "k": k, "variance": var, "variance_vs_reinforce": var / base_var, "ms": t, "time_vs_reinforce": t / base_ms}
        lines.append(f"| {label} | {'yes' if est.unbiased else 'no'} | {k} | {var:.3g} | {var / base_var:.3g} | "
                     f"{t:.1f} | {t / base_ms:.1f}x | {var * t / (base_var * base_ms):.3g} |")
    lines += ["", "Registered discrete estimators that do not apply to this SBN:", ""]
    lines += not_applicable(built, model.on(x_train[:2])) + [""]
    lines += ["NVIL divides its centred signal by a running standard deviation (variance normalisation), so its "
              "estimate is of a rescaled gradient and its variance is not comparable with the others'.",
              "VIMCO and the multi-sample NVIL estimate the gradient of the K-sample bound L_K and RWS that of "
              "reweighted wake-sleep, not the ELBO's: their variance is of a different quantity (listed for cost).",
              "Biased estimators (no) estimate a different vector; their bias is in the toy table.", ""]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--evals", type=int, default=6)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrain", type=int, default=500)
    parser.add_argument("--cv-steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    quick = args.quick
    lines = ["# Discrete estimators at equal function evaluations", "",
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
             f"device {vt.config.device()}, {time.strftime('%Y-%m-%d')}; a shared 2-core machine under load from other "
             "processes: step times are noisy (interleaved rounds spread the load across estimators alike).", ""]
    store: dict = {}
    lines += toy_section(args.evals, 500 if quick else args.n, 20 if quick else 100, store)
    lines += sbn_section(args.evals, 50 if quick else args.pretrain, 10 if quick else args.cv_steps,
                         5 if quick else 30, 20 if quick else 50, 10 if quick else 40, store)
    lines.append(f"Measured in one run of {time.perf_counter() - start:.0f} s: "
                 f"`.venv/bin/python bench/discrete.py{' --quick' if quick else ''}`.")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    DATA.write_text(json.dumps({"evals": args.evals, "quick": quick, "date": time.strftime("%Y-%m-%d"),
                                "command": f"python bench/discrete.py{' --quick' if quick else ''}",
                                "estimators": store}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
