"""Accuracy and speed of implicit reparameterization gradients (Figurnov, Mohamed & Mnih 2018,
arXiv:1805.08498, Tables 1-2), side by side in one run; writes bench/results/implicit.md.

    .venv/bin/python bench/implicit.py [--quick] [--threads 1] [--out bench/results/implicit.md]

Accuracy: the relative error of each method's sample-gradient dz/dtheta against an mpmath
reference at 40 digits (vitools.implicit.accuracy), over shapes / concentrations from 1e-2
to 1e3, in float32 and float64. Speed: time per million sample-gradients, best of 5, each method
and torch's built-in run alternately in the same loop (side by side); on a CPU the process's CPU
time (one thread; a shared machine's other load then costs little), on a GPU wall time. The Gamma
rows use one million shapes log-uniform in [1e-2, 1e3] (--quick: 20 000); vitools' sample-gradient
is timed twice beside torch's, through its compiled CPU kernel and through its torch-operations
path (VITOOLS_NATIVE=off, what CUDA tensors take), also per shape from 1e-3 to 1e4.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vitools as vt  # noqa: E402
from vitools.implicit import accuracy as acc  # noqa: E402
from vitools.implicit import native  # noqa: E402

FMT = {"mean": ".1e", "max": ".1e"}
OURS, THEIRS = "s/1e6 (this row)", "s/1e6 (torch)"
KERNEL, OPS = "compiled kernel", "torch operations (VITOOLS_NATIVE=off)"


def gamma_accuracy(shapes, n):
    rows, per_shape = [], {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        errors = {a: acc.gamma_relative_errors(a, n=n, dtype=dtype, seed=0) for a in shapes}
        rows += acc.summary_rows(errors, name)
        per_shape[name] = errors
    return rows, per_shape


def per_shape_table(errors, shapes):
    methods = [m for m in next(iter(errors.values())) if m != "z"]
    rows = [{"alpha": f"{a:g}", **{m: f"{errors[a][m].max().item():.1e}" for m in methods}} for a in shapes]
    return acc.markdown_table(rows, ["alpha", *methods])


def von_mises_accuracy(kappas, n):
    rows = []
    for k in kappas:
        row = {"kappa": f"{k:g}"}
        for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            e = acc.von_mises_relative_errors(k, n=n, dtype=dtype, seed=0)
            row[f"{name} mean"], row[f"{name} max"] = f"{e.mean().item():.1e}", f"{e.max().item():.1e}"
        rows.append(row)
    return acc.markdown_table(rows, ["kappa", "float64 mean", "float64 max", "float32 mean", "float32 max"])


def von_mises_tails(kappas, levels):
    """Max relative error of dtheta/dkappa (float64) at angles at the given CDF levels, both tails."""
    rows = []
    for k in kappas:
        kk = torch.tensor(k, dtype=torch.float64)
        row = {"kappa": f"{k:g}"}
        for u in levels:
            uu = torch.tensor([u, 1 - u], dtype=torch.float64)
            theta = vt.implicit.invert_cdf(lambda t: vt.implicit.von_mises_cdf(t, kk), uu, -3.141592653589793,
                                           3.141592653589793, iterations=80)
            ref = acc.von_mises_reference_grad(theta, kk.expand(2))
            ours = vt.implicit.von_mises.von_mises_sample_grad(theta, kk.expand(2))
            row[f"{u:g} / 1-{u:g}"] = f"{((ours - ref) / ref).abs().max().item():.1e}"
        rows.append(row)
    return acc.markdown_table(rows, ["kappa", *[f"{u:g} / 1-{u:g}" for u in levels]])


def torch_operations(fn):
    """``fn`` run on the torch-operations path (``VITOOLS_NATIVE=off``: no compiled kernel)."""
    def run():
        with native.use("off"):
            return fn()
    return run


def side_by_side(fns, n, repeats=5):
    """Best-of-``repeats`` seconds per 10^6 samples of each function in ``fns`` (each handles ``n``
    samples), the functions run in turn within each repeat; CPU time of the process on a CPU."""
    cuda = torch.cuda.is_available() and vt.config.device().type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if cuda:
                torch.cuda.synchronize()
            start = clock()
            fn()
            if cuda:
                torch.cuda.synchronize()
            best[i] = min(best[i], clock() - start)
    return [b * 1e6 / n for b in best]


def _end_to_end(make, params):
    def run():
        leaves = [p.clone().requires_grad_(True) for p in params]
        make(*leaves).rsample().sum().backward()
    return run


def speed(n, n_gamma, device):
    """A table of seconds per 10^6 sample-gradients: this row's method, torch's, and their ratio."""
    gen = torch.Generator().manual_seed(0)
    alpha = (10 ** (torch.rand(n_gamma, generator=gen, dtype=torch.float64) * 5 - 2)).to(device)
    z = torch._standard_gamma(alpha)
    rows = []
    for dtype in (torch.float64, torch.float32):                 # float32 in float32 end to end
        zz, aa = z.to(dtype), alpha.to(dtype)
        builtin = lambda: acc.GAMMA_METHODS["torch built-in"](zz, aa)   # noqa: E731
        ours = lambda: acc.GAMMA_METHODS["vitools implicit"](zz, aa)    # noqa: E731
        t_kernel, t_ops, theirs = side_by_side([ours, torch_operations(ours), builtin], n_gamma)
        rows += [{"task": f"Gamma dz/dalpha: vitools implicit, {KERNEL} ({str(dtype)[6:]})", OURS: t_kernel,
                  THEIRS: theirs},
                 {"task": f"Gamma dz/dalpha: vitools implicit, {OPS} ({str(dtype)[6:]})", OURS: t_ops, THEIRS: theirs}]
        for name in ("approx. inverse CDF", "finite differences"):
            if name == "finite differences":
                m = max(1000, n // 20)
                t, theirs = acc.seconds_per_million(lambda: acc.GAMMA_METHODS[name](zz[:m], aa[:m]), m), \
                    side_by_side([builtin], n_gamma)[0]
            else:
                t, theirs = side_by_side([lambda name=name: acc.GAMMA_METHODS[name](zz, aa), builtin], n_gamma)
            rows.append({"task": f"Gamma dz/dalpha: {name} ({str(dtype)[6:]})", OURS: t, THEIRS: theirs})
    alpha, z = alpha[:n], z[:n]
    a32 = alpha.float()
    one = torch.ones_like(a32)
    ab = (a32.clamp(0.05, 100), a32.flip(0).clamp(0.05, 100))
    conc = a32.clamp(0.05, 100).reshape(-1, 4)
    small = n // 10                               # the autograd-through-CDF route is slow: fewer samples
    pairs = [
        ("Gamma(alpha, 1) rsample + backward", _end_to_end(vt.implicit.Gamma, [a32, one]),
         _end_to_end(torch.distributions.Gamma, [a32, one]), n),
        ("RSVI Gamma (B=1) rsample + backward, vs torch Gamma",
         lambda: vt.implicit.rsvi_gamma(a32.clone().requires_grad_(True), boost=1)[0].sum().backward(),
         _end_to_end(torch.distributions.Gamma, [a32, one]), n),
        ("Beta(a, b) via Gammas rsample + backward", _end_to_end(lambda a, b: vt.implicit.Beta(a, b), list(ab)),
         _end_to_end(torch.distributions.Beta, list(ab)), n),
        ("Beta(a, b) via its CDF rsample + backward",
         _end_to_end(lambda a, b: vt.implicit.Beta(a, b, method="cdf"), [v[:small] for v in ab]),
         _end_to_end(torch.distributions.Beta, [v[:small] for v in ab]), small),
        ("Dirichlet(4 components) rsample + backward, per component", _end_to_end(vt.implicit.Dirichlet, [conc]),
         _end_to_end(torch.distributions.Dirichlet, [conc]), n),
        ("VonMises(0, kappa) rsample + backward (torch: sample only, it has no rsample)",
         _end_to_end(vt.implicit.VonMises, [torch.zeros_like(a32), a32]),
         lambda: torch.distributions.VonMises(torch.zeros_like(a32), a32).sample(), n),
    ]
    for task, ours, theirs, m in pairs:
        t_ours, t_theirs = side_by_side([ours, theirs], m, repeats=3)
        rows.append({"task": task, OURS: t_ours, THEIRS: t_theirs})
    for r in rows:
        r["ratio"] = r[OURS] / r[THEIRS]
    return acc.markdown_table(rows, ["task", OURS, THEIRS, "ratio"], {OURS: ".3f", THEIRS: ".3f", "ratio": ".1f"})


def estimator_variance(n):
    """d/dalpha E[log x] for Gamma(alpha, 1): bias z-score and variance of each estimator."""
    rows = []
    estimators = [("pathwise (vitools implicit)", vt.estimators.get("pathwise")),
                  ("RSVI B=0", vt.estimators.get("rsvi", boost=0)),
                  ("RSVI B=1", vt.estimators.get("rsvi", boost=1)),
                  ("RSVI B=3", vt.estimators.get("rsvi", boost=3)),
                  ("RSVI B=1, no correction", vt.estimators.get("rsvi", boost=1, correction=False)),
                  ("score function", vt.estimators.get("score_function"))]
    for a in (0.5, 2.0, 10.0):
        problem = vt.implicit.GammaLog(alpha=a, rate=1.0)
        theta = problem.init_params()
        exact = problem.exact_grad(theta)
        for label, est in estimators:
            s = vt.diagnostics.summarize(vt.diagnostics.grad_samples(est, problem, theta, n=n, seed=0), exact)
            rows.append({"alpha": f"{a:g}", "estimator": label, "mean": s.mean[0].item(),
                         "exact": exact[0].item(), "bias z": s.bias_z[0].item(), "variance": s.variance[0].item()})
    return acc.markdown_table(rows, ["alpha", "estimator", "mean", "exact", "bias z", "variance"],
                              {"mean": ".4f", "exact": ".4f", "bias z": ".1f", "variance": ".3g"})


def small_concentrations(n):
    """Beta(a, b) and Dirichlet(c, c, c) at concentration 1e-3: d/da E[x] (d/dc_0 E[x_0]) from n
    pathwise samples against the exact value, vitools and torch, float32 and float64."""
    rows = []
    for dtype in (torch.float32, torch.float64):
        cases = [("Beta(1e-3, 1e-3)", (1e-3, 1e-3)), ("Beta(1e-3, 1)", (1e-3, 1.0))]
        for label, (av, bv) in cases:
            for name, make in (("vitools (Gammas)", vt.implicit.Beta), ("torch", torch.distributions.Beta)):
                a = torch.full((n,), av, dtype=dtype, requires_grad=True)
                b = torch.full((n,), bv, dtype=dtype)
                with vt.config.seeded(0):
                    x = make(a, b).rsample()
                (g,) = torch.autograd.grad(x.sum(), a)
                rows.append(_small_row(label, name, dtype, x, g.double(), bv / (av + bv) ** 2))
        for name, make in (("vitools (Gammas)", vt.implicit.Dirichlet), ("torch", torch.distributions.Dirichlet)):
            c = torch.full((n, 3), 1e-3, dtype=dtype, requires_grad=True)
            with vt.config.seeded(0):
                x = make(c).rsample()
            (g,) = torch.autograd.grad(x[:, 0].sum(), c)
            rows.append(_small_row("Dirichlet(1e-3 x 3), x_0", name, dtype, x, g[:, 0].double(), 2e-3 / 3e-3 ** 2))
    return acc.markdown_table(rows, ["distribution", "method", "dtype", "mean gradient", "exact", "bias z",
                                     "non-finite", "NaN samples"],
                              {"mean gradient": ".4g", "exact": ".4g", "bias z": ".1f"})


def _small_row(label, name, dtype, x, g, exact):
    finite = torch.isfinite(g)
    gf = g[finite]
    z = (gf.mean() - exact) / (gf.std() / math.sqrt(max(gf.numel(), 1)))
    return {"distribution": label, "method": name, "dtype": str(dtype)[6:], "mean gradient": gf.mean().item(),
            "exact": exact, "bias z": z.item(), "non-finite": int((~finite).sum()),
            "NaN samples": int(torch.isnan(x).sum())}


def speed_by_shape(shapes, n, device):
    """Per shape: vitools' compiled kernel, its torch-operations path and torch's built-in, side by side."""
    rows = []
    for a in shapes:
        row = {"alpha": f"{a:g}"}
        for dtype in (torch.float64, torch.float32):
            alpha = torch.full((n,), a, dtype=dtype, device=device)
            z = torch._standard_gamma(alpha)
            ours = lambda: vt.implicit.standard_gamma_grad(z, alpha)   # noqa: E731
            kernel, ops, builtin = side_by_side([ours, torch_operations(ours),
                                                 lambda: torch._standard_gamma_grad(alpha, z)], n)
            name = str(dtype)[6:]
            row.update({f"kernel {name}": kernel, f"torch ops {name}": ops, f"built-in {name}": builtin,
                        f"ratio kernel {name}": kernel / builtin, f"ratio ops {name}": ops / builtin})
        rows.append(row)
    cols = [f"{w} {d}" for d in ("float64", "float32")
            for w in ("kernel", "torch ops", "built-in", "ratio kernel", "ratio ops")]
    return acc.markdown_table(rows, ["alpha", *cols], {c: ".1f" if c.startswith("ratio") else ".3f" for c in cols})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "implicit.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = vt.config.device()
    shapes = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0] if args.quick else \
        [1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
    n_acc = 5 if args.quick else 20
    n_speed = 20_000 if args.quick else 200_000
    n_gamma = 20_000 if args.quick else 1_000_000

    info = native.status()
    kernels = f"mode {info['mode']}, compiler {info['compiler']}, gamma_grad {info['kernels'].get('gamma_grad')}"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows, per_shape = gamma_accuracy(shapes, n_acc)
    lines = [
        "# Implicit reparameterization: accuracy and speed",
        "",
        f"Generated by `bench/implicit.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
        f"device {device}, {torch.get_num_threads()} CPU thread(s), {platform.processor() or platform.machine()}, "
        f"compiled kernels: {kernels}; load average before the run {load}.",
        "Reference: mpmath at 40 digits. Relative error |method - ref| / |ref| of the sample-gradient "
        "dz/dtheta at Gamma / von Mises samples drawn in the given dtype.",
        "",
        f"## Gamma dz/dalpha: relative error over shapes {shapes[0]:g}..{shapes[-1]:g} "
        f"({len(shapes)} shapes x {n_acc} samples)",
        "",
        acc.markdown_table(rows, ["method", "dtype", "mean", "max"], FMT),
        "",
        "### Max relative error per shape, float64",
        "",
        per_shape_table(per_shape["float64"], shapes),
        "",
        "### Max relative error per shape, float32",
        "",
        per_shape_table(per_shape["float32"], shapes),
        "",
        f"## von Mises dtheta/dkappa: relative error ({n_acc // 2} samples per concentration)",
        "",
        von_mises_accuracy(shapes, max(2, n_acc // 2)),
        "",
        "### von Mises dtheta/dkappa in the tails: max relative error (float64) at CDF levels u and 1 - u",
        "",
        von_mises_tails([1e-4, 1.0, 10.49, 10.51, 11.0, 100.0, 1e4], [1e-3, 1e-4, 1e-6, 1e-8]),
        "",
        f"## Speed: seconds per million sample-gradients (Gamma dz/dalpha: {n_gamma} samples, the others "
        f"{n_speed}; shapes / concentrations log-uniform in [1e-2, 1e3]; best of 5 (end to end: 3), each "
        f"row's two columns timed alternately in one loop; {'wall' if device.type == 'cuda' else 'CPU'} "
        "time; float32 unless marked)",
        "",
    ]
    lines += [speed(n_speed, n_gamma, device), "",
              "ratio = this row / torch. The eight `Gamma dz/dalpha` rows time the sample-gradient alone at "
              "given samples against torch's built-in `_standard_gamma_grad` (finite differences on 1/20 of "
              "the samples); vitools' compiled kernel, its torch-operations path and the built-in are timed in "
              "one loop. The others time sampling plus backward against the torch distribution.", "",
              f"### Gamma dz/dalpha time by shape (s/1e6, {n_speed} samples each, side by side)", "",
              "kernel: `vitools.implicit.standard_gamma_grad` through its compiled CPU kernel "
              "(`vitools/implicit/native/gamma_grad.c`); torch ops: the same function with "
              "`VITOOLS_NATIVE=off` (the torch-operations path CUDA tensors take); built-in: "
              "`torch._standard_gamma_grad`; ratios against the built-in.", "",
              speed_by_shape([1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4], n_speed, device), "",
              f"## Small concentrations: d/da E[x] at 1e-3 ({n_speed} samples; pytorch issues 127387, 76030)", "",
              small_concentrations(n_speed), "",
              "bias z = (mean - exact) / standard error over the finite gradients.", "",
              f"## Gradient estimators for d/dalpha E[log x], x ~ Gamma(alpha, 1) ({n_speed // 2} estimates, k=1)",
              "", estimator_variance(n_speed // 2), ""]
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
