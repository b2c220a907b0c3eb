"""Benchmarks for vitools.smc (Maddison et al. 2017, FIVO, arXiv:1705.09279).

1. Particle-filter throughput (particle-steps per second): the vectorized filter of
   vitools.smc against a per-particle Python loop doing the same work, side by side.
2. A VRNN on JSB Chorales (the canonical split, from ``--data-dir``, default ../shared/data)
   trained with ELBO, IWAE and FIVO; per-time-step bounds on the test pieces.

    .venv/bin/python bench/smc.py [--quick] [--data-dir ../shared/data] [--updates N]

Writes bench/results/smc.md. Timings are wall-clock on whatever machine runs it.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitools import config, smc  # noqa: E402
from vitools.data import music  # noqa: E402
from vitools.models.ssm import LinearGaussianSSM  # noqa: E402
from vitools.models.vrnn import VRNN  # noqa: E402


def loop_filter(model, x, k):
    """The same bootstrap filter, one particle at a time (the baseline being measured)."""
    states = [model.initial_state(x, 1) for _ in range(k)]
    log_w = [x.new_zeros(1, 1) for _ in range(k)]
    log_z = x.new_zeros(())
    for t in range(x.shape[1]):
        for j in range(k):
            states[j], alpha = model.step(states[j], t, x)
            log_w[j] = log_w[j] + alpha
        w = torch.cat(log_w).flatten()
        step_z = torch.logsumexp(w, 0) - math.log(k)
        if t < x.shape[1] - 1:
            log_z = log_z + step_z
            ancestors = torch.multinomial(torch.softmax(w, 0), k, replacement=True).tolist()
            states = [states[a] for a in ancestors]
            log_w = [x.new_zeros(1, 1) for _ in range(k)]
        else:
            log_z = log_z + step_z
    return log_z


def throughput(quick: bool):
    ssm = LinearGaussianSSM.scalar()
    steps = 20 if quick else 50
    _, x = ssm.sample(1, steps, seed=0)
    model = ssm.with_proposal(ssm.prior_proposal(steps))
    rows = []
    for k in ((16, 128) if quick else (16, 128, 1024)):
        t0 = time.perf_counter()
        smc.fivo(model, x, k, seed=0)
        vec = time.perf_counter() - t0
        t0 = time.perf_counter()
        with config.seeded(0):
            loop_filter(model, x, k)
        loop = time.perf_counter() - t0
        rows.append((k, steps, k * steps / vec, k * steps / loop, loop / vec))
    return rows


def vrnn_run(data_dir, quick: bool, updates: int, hidden: int, latent: int, max_steps: int | None):
    train = music.load_chorales("jsb", "train", data_dir=data_dir, download=False, max_steps=max_steps)
    test = music.load_chorales("jsb", "test", data_dir=data_dir, download=False, max_steps=max_steps)
    mean = train.x[train.mask > 0].mean(0)
    rows = []
    for name in ("elbo", "iwae", "fivo"):
        torch.manual_seed(0)
        model = VRNN(hidden=hidden, latent=latent, data_mean=mean)
        t0 = time.perf_counter()
        smc.fit(model, model.parameters(), train.x, train.mask, name=name, num_particles=4, steps=updates,
                lr=3e-3, batch_size=4 if quick else 16, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            bounds = {n: smc.per_step(smc.bound(n, model, test.x, 4, test.mask, seed=1)).item()
                      for n in ("elbo", "iwae", "fivo")}
        rows.append((name, seconds, bounds))
    return rows, train, test


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny ops: 1 is fastest)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "smc.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    updates = args.updates or (5 if args.quick else 150)
    hidden = args.hidden or (16 if args.quick else 64)
    latent = hidden // 2
    lines = ["# Particle filters and FIVO (bench/smc.py)", "",
             f"Device {config.device()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads{' (--quick)' if args.quick else ''}.", "",
             "## Particle-filter throughput (bootstrap filter, 1-D linear Gaussian model, multinomial resampling)", "",
             "| K | T | vectorized (particle-steps/s) | per-particle loop (particle-steps/s) | speed-up |",
             "|---:|---:|---:|---:|---:|"]
    for k, steps, vec, loop, ratio in throughput(args.quick):
        lines.append(f"| {k} | {steps} | {vec:,.0f} | {loop:,.0f} | {ratio:.0f}x |")
    rows, train, test = vrnn_run(args.data_dir, args.quick, updates, hidden, latent, args.max_steps)
    lines += ["", "## VRNN on JSB Chorales (canonical split), per-time-step test bounds (nats, K = 4)", "",
              f"{train.x.shape[0]} training / {test.x.shape[0]} test pieces, up to {train.x.shape[1]} steps; "
              f"hidden {hidden}, latent {latent}, {updates} Adam updates (lr 3e-3, batch {4 if args.quick else 16}, "
              "4 particles) per objective. The FIVO paper trains to convergence, far longer than this; "
              "these are small-scale numbers, not the paper's.", "",
              "| trained with | train time (s) | test ELBO | test IWAE | test FIVO |", "|---|---:|---:|---:|---:|"]
    for name, seconds, b in rows:
        lines.append(f"| {name.upper()} | {seconds:.0f} | {b['elbo']:.3f} | {b['iwae']:.3f} | {b['fivo']:.3f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
