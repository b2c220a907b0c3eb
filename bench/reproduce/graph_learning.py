"""Score-based graph learning on a simulated sparse VAR (Cini, Zambon & Alippi 2023, arXiv:2205.13492).

Data: ``vitools.models.graph_learning.simulate_var`` with N = 20 nodes, 2 parents each, unit noise;
``--train`` steps to train on and the next 1,000 to test on; the data seed is the run's seed, so the
3 seeds are 3 different true graphs. Model: the graph-filtered linear VAR with a Bernoulli graph
(edge penalty 0.05) or a k = 2 subset graph per node, trained by Adam (lr 0.1, k = 8 graphs per
step) through each estimator. Recorded every ``--record-every`` steps: the F1 of the mode graph
against the true edges; at the end the held-out one-step mean squared error at the mode graph,
beside the least-squares dense VAR, per-node AR(1) and the oracle (true graph) VAR.

    python -m bench.reproduce.graph_learning [--steps 600] [--seeds 3]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import vitools as vt
from vitools.models import graph_learning as G

from .common import Timer, run, write_result

NODES, PARENTS, PENALTY, K = 20, 2, 0.05, 8


def methods():
    rloo, gs = vt.estimators.get("rloo"), vt.estimators.get("gumbel_softmax", temperature=0.5)
    return {
        "score + mode baseline": ("bernoulli", lambda m, x: G.score_objective(m, x, K, "mode")),
        "RLOO": ("bernoulli", lambda m, x: rloo(m.on(x), K).surrogate.sum()),
        "Gumbel-Softmax": ("bernoulli", lambda m, x: gs(m.on(x), K).surrogate.sum()),
        "score function": ("bernoulli", lambda m, x: G.score_objective(m, x, K, "none")),
        "whole-cost score function": ("bernoulli", lambda m, x: G.score_objective(m, x, K, "none", local=False)),
        "top-k + mode baseline": ("topk", lambda m, x: G.score_objective(m, x, K, "mode")),
        "top-k RLOO": ("topk", lambda m, x: G.score_objective(m, x, K, "leave_one_out")),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--record-every", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    timer = Timer()
    runs, refs = [], {"dense VAR": [], "per-node AR(1)": [], "oracle VAR": [], "dense VAR F1": []}
    for seed in range(args.seeds):
        data = G.simulate_var(NODES, PARENTS, args.train + 1000, seed=seed)
        train, test = data.x[:args.train], data.x[args.train:]
        refs["dense VAR"].append(G.least_squares_forecast(train, test))
        refs["per-node AR(1)"].append(G.least_squares_forecast(train, test, torch.zeros(NODES, NODES)))
        refs["oracle VAR"].append(G.least_squares_forecast(train, test, data.adjacency))
        refs["dense VAR F1"].append(G.edge_f1(1 - torch.eye(NODES, dtype=torch.float64), data.adjacency))
        for label, (graph, objective) in methods().items():
            torch.manual_seed(seed)
            model = G.GraphVAR(NODES, graph=graph, neighbours=PARENTS, penalty=PENALTY)
            t0 = Timer()
            h = G.fit_graph(model, train, objective, steps=args.steps, lr=0.1, seed=seed,
                            record_every=args.record_every, true=data.adjacency)
            mse = model.forecast_error(test)
            runs.append(run(label, seed, args.steps, list(zip(h["step"], h["f1"])), h["f1"][-1],
                            test_mse=mse, seconds=t0.seconds, edges=int(model.mode().sum())))
            print(f"seed {seed} {label:28s} F1 {h['f1'][-1]:.3f}  test MSE {mse:.4f}  ({t0.seconds:.1f} s)", flush=True)
    reference = {k: float(np.mean(v)) for k, v in refs.items()}
    notes = ("Held-out one-step MSE of the references (mean over seeds): "
             + ", ".join(f"{k} {v:.4f}" for k, v in reference.items() if "F1" not in k)
             + "; each run's test_mse is at its mode graph. Noise variance 1.0 is the floor. "
             "The paper reports F1 on its own synthetic graphs (GPVAR); we do not quote it as comparable.")
    path = write_result(
        "graph_learning", "2205.13492",
        "The node-level score-function estimators (mode baseline, RLOO) and the Gumbel-Softmax relaxation recover "
        "the true sparse graph (F1 near 1) and forecast at the oracle's error, below the dense VAR's; without a "
        "baseline the score function keeps many false edges.",
        "F1 of the mode graph against the true edges (higher is better)",
        {"label": "dense VAR (every edge)", "value": reference["dense VAR F1"]}, runs, timer.seconds, notes=notes)
    data = json.loads(path.read_text())
    data["forecast_references"] = {"per_seed": refs, "mean": reference}
    path.write_text(json.dumps(data, indent=1))
    print(notes)
    print(f"wrote {path} in {timer.seconds:.0f} s")


if __name__ == "__main__":
    main()
