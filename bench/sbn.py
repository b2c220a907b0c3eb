"""Benchmarks for sigmoid belief nets (NVIL, arXiv:1402.0030; VIMCO, arXiv:1602.06725).

1. Step time: one training step (forward, backward, Adam) of vitools' NVIL and VIMCO,
   vectorized over K and the batch, against Pyro's ``TraceGraph_ELBO`` with an NVIL-style
   neural baseline (``infer={"baseline": {"nn_baseline": ...}}``) on the same SBN and batch,
   measured side by side in one run. Pyro is a bench-only tool: when it is not importable the
   comparison is skipped with a message.
2. Paper-scale run (``--data-dir`` holding binarized_mnist.npz): SBN 200-200 and 200-200-200
   on binarized MNIST with NVIL (K=1), NVIL on the K-sample bound and VIMCO (K=5, 50),
   reporting the test K-sample bound; ``--steps`` sets the scale (the papers train for
   millions of updates: say which scale a table reports).

    .venv/bin/python bench/sbn.py [--quick] [--data-dir ../shared/data] [--steps 300]

Writes bench/results/sbn.md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vitools as vt  # noqa: E402
from vitools.models import sbn  # noqa: E402
from bench._timing import interleaved_ms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sbn.md"


def time_steps(step, repeats: int, warmup: int = 5) -> float:
    """Median wall-clock milliseconds of ``step()`` over ``repeats`` calls."""
    return interleaved_ms([step], repeats, rounds=1, warmup=warmup)[0]


FIT_STEPS = 5                      # training steps per timed vt.train.fit call


def vitools_step(model, est, x, k):
    """``FIT_STEPS`` training steps of ``vt.train.fit`` on the whole batch ``x`` (surrogate, backward,
    Adam on the model, one Adam step on the estimator's control loss); time it and divide."""
    est.warm_up(model.on(x), k)       # the estimator's default warm-up (nothing for VIMCO)

    def step():
        vt.train.fit(est, model, x, steps=FIT_STEPS, batch_size=x.shape[0], lr=1e-4, k=k, seed=None,
                     progress=False)
    return step


def pyro_step(model, x):
    """Pyro's TraceGraph_ELBO on the same one-layer SBN, with an NVIL-style baseline b(x)."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, TraceGraph_ELBO

    pyro.clear_param_store()
    baseline = nn.Sequential(nn.Linear(model.x_dim, 100), nn.Tanh(), nn.Linear(100, 1), nn.Flatten(0))

    def p(xb):
        pyro.module("decoders", model.decoders)
        prior = pyro.param("prior_logits", model.prior_logits.detach().clone())
        with pyro.plate("data", xb.shape[0]):
            h = pyro.sample("h", dist.Bernoulli(logits=prior.expand(xb.shape[0], -1)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=model.decoders[0](h)).to_event(1), obs=xb)

    def q(xb):
        pyro.module("encoders", model.encoders)
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("h", dist.Bernoulli(logits=model.encoders[0](xb)).to_event(1),
                        infer={"baseline": {"nn_baseline": baseline, "nn_baseline_input": xb}})

    svi = SVI(p, q, pyro.optim.Adam({"lr": 1e-4}), loss=TraceGraph_ELBO())
    return lambda: svi.step(x)


def step_times(quick: bool, threads: int) -> list[str]:
    torch.set_num_threads(threads)
    x = vt.data.load_mnist("bundled", split="train", binarize="fixed", seed=0)[:100]     # [100, 784]
    model = sbn.SBN(784, (200,))
    repeats = 20 if quick else 100
    rows = []
    runs = [("vitools NVIL (c, b(x), norm), K=1", lambda: vitools_step(model, vt.estimators.get("nvil"), x, 1)),
            ("vitools VIMCO, K=5", lambda: vitools_step(model, vt.estimators.get("vimco"), x, 5)),
            ("vitools VIMCO, K=50", lambda: vitools_step(model, vt.estimators.get("vimco"), x, 50))]
    results = {}
    for label, make in runs:
        results[label] = time_steps(make(), max(2, repeats // FIT_STEPS), warmup=1) / FIT_STEPS
    try:
        import pyro  # noqa: F401
        results["Pyro TraceGraph_ELBO + nn_baseline, K=1"] = time_steps(pyro_step(model, x), repeats)
        pyro_note = f"Pyro {pyro.__version__}"
    except ImportError:
        pyro_note = "Pyro is not importable: comparison skipped (pip install pyro-ppl into the bench env)"
        print(pyro_note)
    reference = results["vitools NVIL (c, b(x), norm), K=1"]
    rows.append(f"Step time, SBN 784-200, batch 100 bundled digits, CPU, {threads} thread(s); vitools: median "
                f"of {max(2, repeats // FIT_STEPS)} `vt.train.fit` calls of {FIT_STEPS} steps each, divided by "
                f"{FIT_STEPS}; Pyro: median of {repeats} `svi.step` calls; {pyro_note}.\n")
    rows.append("| estimator | ms / step | ratio to vitools NVIL |")
    rows.append("|---|---:|---:|")
    for label, ms in results.items():
        rows.append(f"| {label} | {ms:.2f} | {ms / reference:.2f} |")
    return rows


def paper_scale(data_dir: str, steps: int, quick: bool, threads: int) -> list[str]:
    torch.set_num_threads(threads)
    x_train = vt.data.load_mnist("binarized", split="train", data_dir=data_dir)
    x_test = vt.data.load_mnist("binarized", split="test", data_dir=data_dir)[: 500 if quick else 1000]
    runs = [("nvil", 1), ("nvil_multisample", 5), ("vimco", 5), ("nvil_multisample", 50), ("vimco", 50)]
    archs = [(200, 200), (200, 200, 200)]
    rows = [f"Binarized MNIST (Larochelle & Murray), {x_train.shape[0]} training digits, {steps} Adam "
            f"updates (lr 3e-4, batch 50) per run on a CPU: a tiny fraction of the papers' training, "
            f"so compare rows with each other, not with the papers. Test bound: the K-sample bound "
            f"at the training K on the first {x_test.shape[0]} test digits.\n",
            "| SBN | estimator | K | test bound (nats) | minutes |", "|---|---|---:|---:|---:|"]
    for arch in archs:
        for name, k in runs:
            torch.manual_seed(0)
            model = sbn.SBN(784, arch)
            est = vt.estimators.get(name)
            start = time.perf_counter()
            sbn.train_sbn(model, est, x_train, k=k, steps=steps, batch_size=50, lr=3e-4, progress=False)
            bound = sbn.evaluate(model, x_test, k=k)
            minutes = (time.perf_counter() - start) / 60
            rows.append(f"| {'-'.join(map(str, arch))} | {name} | {k} | {bound:.2f} | {minutes:.1f} |")
            print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz (paper-scale run)")
    parser.add_argument("--steps", type=int, default=None, help="updates per paper-scale run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared CPU)")
    args = parser.parse_args()
    lines = ["# Sigmoid belief nets: NVIL and VIMCO", "",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"device {vt.config.device()}.", "", "## Step time", ""]
    lines += step_times(args.quick, args.threads)
    if args.data_dir is not None:
        steps = args.steps or (100 if args.quick else 1000)
        lines += ["", "## Paper-scale run (reduced)", ""]
        lines += paper_scale(args.data_dir, steps, args.quick, args.threads)
    else:
        lines += ["", "Paper-scale run skipped: pass --data-dir with binarized_mnist.npz."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
