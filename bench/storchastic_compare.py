"""vitools against Storchastic (van Krieken, Tomczak & ten Teije 2021, arXiv:2104.00428) on the
Bernoulli toy E[(b - 0.45)^2] at logit 1 and on a sigmoid belief net (the REBAR/RELAX settings:
Tucker et al. 2017, arXiv:1703.07370; Grathwohl et al. 2018, arXiv:1711.00123; ARM,
arXiv:1807.11143; DisARM, arXiv:2006.10680; Gumbel-Softmax, arXiv:1611.01144).

Bernoulli toy. Side by side in one run, one gradient estimate (k = 1) per step, for REINFORCE,
Gumbel-Softmax (tau = 0.5, fixed), ARM, DisARM, REBAR and RELAX:

* ms per gradient step: build the distribution at a fresh scalar logit, sample, cost, backward
  (Storchastic: ``method(Bernoulli)``, ``storch.add_cost``,
  ``storch.backward(update_estimator_params=False)``; vitools, in ``eval()`` mode:
  ``est(problem.at(theta), 1).surrogate.sum().backward()``); best of 5 interleaved rounds (the
  libraries' steps in turn) of the median over ``--steps`` / 5 steps, control variates frozen;
* the mean, the bias z-score against the exact gradient p(1-p)(1-2t), and the variance of
  ``--n`` estimates (Storchastic: a loop of steps, since its estimators hold one graph per call;
  vitools: ``grad_samples``, vectorized, the estimator frozen). Control variates (REBAR/RELAX:
  temperature, eta, and RELAX's network) are first trained on the same terms in both
  libraries: ``--cv-steps`` Adam steps at learning rate ``--cv-lr`` on the second moment of
  single estimates at the logit (batch 1: Storchastic's step is one estimate at a scalar
  logit; vitools: ``est.warm_up(problem.at(theta[None]), 1, steps, lr)``, then
  ``grad_samples(..., warm_up=False)``, so nothing is reset or retrained).

Sigmoid belief net. One 1-layer linear SBN with 20 bits (``vitools.models.sbn.SBN(196, (20,))``
on the bundled 14x14 digits, 1000 training digits, pretrained by 300 DisARM steps), used by
both libraries: Storchastic's graph calls the same ``encoders[0]``, ``decoders[0]`` and
``prior_logits``, with the minibatch as a plate (``storch.denote_independent(x, 0, "data")``),
q(h|x) = Bernoulli(logits=enc(x)) sampled by ``storch.method.<Method>("h")`` and the cost
-(log p(x|h) + log p(h) - log q(h|x)) summed over pixels and bits. For REINFORCE (no
baseline in either library), Gumbel-Softmax (tau = 0.5), ARM, DisARM, REBAR and RELAX:

* ms per gradient step on a minibatch of 50 digits (forward, surrogate, backward; no optimizer
  step; control variates frozen: vitools ``est.eval()`` and ``est(model.on(x), 1).surrogate``, Storchastic
  ``storch.backward(update_estimator_params=False)``), best of 5 interleaved rounds of the
  median, every estimator and library on the same minibatches;
* the inference network's gradient variance per single-sample estimate (trace over
  ``encoders[0]``'s weight and bias), mean over 3 digits: vitools as batch means of ``m``
  copies of a digit (x m), Storchastic as a loop of ``--sbn-n`` single estimates on a batch of
  that one digit;
* the mean gradient against the exact ELBO gradient, computed here by enumerating the 2^20
  latent states per digit in chunks (``SBN.exact_elbo`` stops at 16 bits): the largest |bias z|
  over the encoder's 20 bias entries (= the logits' gradient) of the 3 digits, the relative error
  of the mean next to the error that noise alone gives, and the decoder-bias gradient's
  projection on its exact value (1 for a correct estimate of the generative gradient).
  REBAR/RELAX control parameters are trained first on equal terms: ``--sbn-cv-steps`` Adam steps
  at ``--cv-lr`` on the same sequence of minibatches of 50 digits in both libraries (Storchastic:
  ``storch.backward(update_estimator_params=True)`` and Adam on ``control_params``; vitools:
  ``est.warm_up(next minibatch target, 1, steps, lr)``), each on its own variance objective (the
  second moment of the logit gradient, averaged over the minibatch).

Storchastic is a bench-only dependency, never a project one. Install it without letting it
replace torch: ``.venv/bin/pip install --no-deps storchastic entmax`` (it also needs pyro-ppl,
pyro-api and opt_einsum; install them the same way if missing). Without it the script prints
why and exits cleanly. A Storchastic estimator that raises is reported as FAILED with its error.

    .venv/bin/python bench/storchastic_compare.py [--quick] [--n 4000] [--sbn-n 2000] [--cv-steps 500]
        [--sbn-cv-steps 300] [--cv-lr 0.01] [--threads 1] [--sbn-only]

Writes bench/results/storchastic.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vitools as vt  # noqa: E402
from vitools.diagnostics import grad_samples, summarize  # noqa: E402
from bench._timing import interleaved_ms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "storchastic.md"
TARGET, LOGIT, TAU = 0.45, 1.0, 0.5
# label, vitools (name, options), Storchastic factory name
LINE_UP = [
    ("REINFORCE", ("score_function", {}), "ScoreFunction"),
    (f"Gumbel-Softmax (tau={TAU})", ("gumbel_softmax", {"temperature": TAU}), "GumbelSoftmax"),
    ("ARM", ("arm", {}), "ARM"),
    ("DisARM", ("disarm", {}), "DisARM"),
    ("REBAR", ("rebar", {}), "REBAR"),
    ("RELAX", ("relax", {}), "RELAX"),
]


def storch_method(name):
    import storch.method as sm
    if name == "GumbelSoftmax":
        return sm.GumbelSoftmax("b", initial_temperature=TAU, min_temperature=TAU, annealing_rate=0.0)
    if name == "RELAX":
        return sm.RELAX("b", in_dim=1)
    return getattr(sm, name)("b")


def storch_step(method, update: bool = False):
    """One Storchastic gradient estimate at logit 1: returns (gradient, seconds). ``update``: also
    compute the gradient of its control parameters (training); otherwise they are frozen."""
    import storch
    start = time.perf_counter()
    theta = torch.tensor([LOGIT], requires_grad=True)
    b = method(torch.distributions.Bernoulli(logits=theta))
    storch.add_cost(((b.float() - TARGET) ** 2).sum(-1), "cost")   # .float(): DisARM samples are bool
    storch.backward(update_estimator_params=update)
    if not update:                                  # frozen: the queued (sample, cost) pairs would pile up
        getattr(method, "_estimation_pairs", []).clear()
    return theta.grad.detach().clone(), time.perf_counter() - start


def measure_storch(name, n, cv_steps, cv_lr):
    """``n`` Storchastic estimates after training its control parameters (if any) for ``cv_steps``
    Adam steps at ``cv_lr``, and a function making one more (frozen: no optimizer step)."""
    method = storch_method(name)
    params = list(getattr(method, "control_params", []))
    if params and cv_steps:
        opt = torch.optim.Adam(params, lr=cv_lr)
        for _ in range(cv_steps):                  # train temperature / eta / c_phi on the variance
            opt.zero_grad()
            storch_step(method, update=True)
            opt.step()
            opt.zero_grad()
    grads = []
    for _ in range(n):                              # Storchastic builds one graph per estimate
        grads.append(storch_step(method)[0])
    for p in params:
        p.grad = None
    return torch.cat(grads)[:, None], lambda: storch_step(method)


def measure_vitools(name, opts, problem, n, cv_steps, cv_lr):
    """Gradient estimates, a one-step function and whether the estimator had anything to train. Every
    estimator is warmed up the same way (one estimate per step at the logit, as Storchastic's
    training step); those without learned state return at once."""
    est = vt.estimators.get(name, **opts)
    theta = problem.init_params().detach()
    trained = bool(est.warm_up(problem.at(theta[None]), 1, steps=cv_steps, lr=cv_lr))
    g = grad_samples(est, problem, theta, n=n, seed=0, warm_up=False)     # frozen, not retrained
    est.eval()

    def step():
        est(problem.at(torch.tensor([LOGIT], requires_grad=True)), 1).surrogate.sum().backward()
    return g, step, trained


def row(label, lib, g, ms, exact):
    s = summarize(g, exact)
    return (label, lib, ms, float(s.mean.squeeze()), float(s.bias_z.squeeze()), float(s.variance.sum()))


def toy_section(args, version) -> list[str]:
    """The Bernoulli toy table and its notes."""
    n, steps, cv_steps = (600, 100, 100) if args.quick else (args.n, args.steps, args.cv_steps)
    cv_lr, per_round = args.cv_lr, max(1, steps // 5)
    torch.manual_seed(0)
    problem = vt.problems.BernoulliQuadratic(TARGET, init=LOGIT)
    exact = problem.exact_grad(problem.init_params())
    rows, extra = [], []
    for label, (name, opts), sname in LINE_UP:
        g_v, step_v, trained = measure_vitools(name, opts, problem, n, cv_steps, cv_lr)
        try:
            g_s, step_s = measure_storch(sname, n, cv_steps, cv_lr)
            contrast = measure_storch(sname, n, 0, cv_lr) if trained else None   # untrained, for contrast
            timed = [step_v, step_s] + ([contrast[1]] if contrast else [])
            ms = interleaved_ms(timed, per_round, rounds=5, warmup=3)            # side by side
        except Exception as err:                    # noqa: BLE001  (report what fails, never fake a row)
            rows.append(row(label, "vitools", g_v, interleaved_ms([step_v], per_round, rounds=5, warmup=3)[0], exact))
            rows.append((label, f"Storchastic `{sname}`: FAILED {type(err).__name__}: {err}", None, None, None, None))
            print(rows[-2:], flush=True)
            continue
        rows.append(row(label, "vitools", g_v, ms[0], exact))
        rows.append(row(label, f"Storchastic `{sname}`", g_s, ms[1], exact))
        if contrast:
            extra.append(row(label, f"Storchastic `{sname}`, control variate untrained", contrast[0], ms[2], exact))
        print(rows[-2:], extra[-1:] if contrast else "", flush=True)
    p = torch.sigmoid(torch.tensor(LOGIT))
    lines = [
        "# vitools and Storchastic on the Bernoulli toy", "",
        f"E[(b - {TARGET})^2] at logit {LOGIT}, exact gradient p(1-p)(1-2t) = {float(exact.squeeze()):.5f} "
        f"(p = {float(p):.3f}). {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, storchastic {version}, {time.strftime('%Y-%m-%d')}. One estimate (k = 1) per "
        f"step; ms / step = best of 5 interleaved rounds (each library's step in turn) of the median over "
        f"{per_round} steps (fresh scalar logit, sample, cost, backward; control variates frozen); mean, bias z and variance from n = {n} estimates (Storchastic: a loop of steps; vitools: "
        f"`grad_samples`, vectorized). Control-variate training, equal in both libraries: {cv_steps} Adam steps, "
        f"learning rate {cv_lr:g}, batch 1 (one estimate at the logit per step), on the second moment of the "
        "logit gradient (Storchastic: `storch.backward()` and Adam on `control_params`; vitools: "
        "`est.warm_up(problem.at(theta[None]), 1, steps, lr)`, then frozen). |bias z| > 4 flags a biased estimate.", "",
        "| estimator | library | ms / step | Storchastic / vitools time | mean gradient | bias z | variance | Storchastic / vitools variance |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(0, len(rows), 2):
        v, s = rows[i], rows[i + 1]
        lines.append(f"| {v[0]} | vitools | {v[2]:.2f} |  | {v[3]:.5f} | {v[4]:.1f} | {v[5]:.3g} |  |")
        if s[2] is None:
            lines.append(f"| {s[0]} | {s[1]} | | | | | | |")
        else:
            lines.append(f"| {s[0]} | {s[1]} | {s[2]:.2f} | {s[2] / v[2]:.1f}x | {s[3]:.5f} | {s[4]:.1f} | {s[5]:.3g} "
                         f"| {s[5] / v[5]:.3g} |")
    for s in extra:
        lines.append(f"| {s[0]} | {s[1]} | {s[2]:.2f} |  | {s[3]:.5f} | {s[4]:.1f} | {s[5]:.3g} |  |")
    lines += ["", "Notes:", "",
              "- Storchastic's DisARM is biased on this toy (|bias z| well above 4, variance about 13x vitools'); "
              "its source marks it `TODO: This doesn't follow the current implementation` (storch/method/arm.py). "
              "The cause is traced in the sigmoid belief net notes below.",
              "- Storchastic's REBAR with untrained control variates (temperature 1, eta 1) is biased here (its RELAX "
              "untrained shows no detected bias in this run); storch/method/relax.py carries `TODO: This doesn't "
              "work ...` in REBAR's `post_sample`. After training "
              "the control parameters on the gradient variance the bias is no longer detected, but REBAR's variance "
              "is REINFORCE's and RELAX's is far larger: neither reduces variance as vitools' do.",
              "- Storchastic installs with `--no-deps` next to torch 2.13 and every estimator here runs; its "
              "DisARM samples are bool tensors, so the cost casts them (`b.float()`).",
              "- Storchastic's Gumbel-Softmax is run at a fixed temperature (no annealing) to match vitools'.",
              "- Not measured: factorised Bernoulli and categorical problems (Storchastic's RELAX/REBAR accept "
              "`OneHotCategorical`, ARM/DisARM only Bernoulli).", ""]
    return lines


# ---------------------------------------------------------------------- sigmoid belief net
SBN_LATENT, SBN_BATCH = (20,), 50
# label, vitools (name, options), Storchastic variants (label, factory name, options; "detach": evaluate
# log q(h|x) in the cost at detached logits)
SBN_LINE_UP = [
    ("REINFORCE (no baseline)",
     ("nvil", {"constant_baseline": False, "input_baseline": False, "normalize": False}),
     [("`ScoreFunction`", "ScoreFunction", {})]),
    (f"Gumbel-Softmax (tau={TAU})", ("gumbel_softmax", {"temperature": TAU}),
     [("`GumbelSoftmax`", "GumbelSoftmax", {})]),
    ("ARM", ("arm", {}), [("`ARM`", "ARM", {}), ("`ARM`, cost's log q at detached logits", "ARM", {"detach": True})]),
    ("DisARM", ("disarm", {}), [("`DisARM`", "DisARM", {})]),
    ("REBAR", ("rebar", {}), [("`REBAR`", "REBAR", {})]),
    ("RELAX", ("relax", {}), [("`RELAX(in_dim=20)`", "RELAX", {}),
                              ("`RELAX(in_dim=20, rebar=True)`", "RELAX", {"rebar": True})]),
]


def sbn_storch_method(name, opts):
    import storch.method as sm
    opts = {k: v for k, v in opts.items() if k != "detach"}
    if name == "GumbelSoftmax":
        return sm.GumbelSoftmax("h", initial_temperature=TAU, min_temperature=TAU, annealing_rate=0.0)
    if name == "RELAX":
        return sm.RELAX("h", in_dim=SBN_LATENT[0], **opts)
    return getattr(sm, name)("h", **opts)


def sbn_storch_step(model, method, xb, update: bool = False, detach: bool = False) -> None:
    """One Storchastic gradient estimate of the negative ELBO on the minibatch ``xb`` (the minibatch
    is a plate, so the cost is averaged over it); gradients land in the model's ``.grad``.
    ``detach``: log q(h|x) in the cost at detached logits (drops its zero-mean pathwise term)."""
    import storch
    from vitools.models.sbn import bernoulli_log_prob

    enc, dec, prior = model.encoders[0], model.decoders[0], model.prior_logits

    @storch.deterministic
    def negative_elbo(x, h, logits):
        h = h.to(logits.dtype)                       # DisARM samples are bool
        log_q = bernoulli_log_prob(logits.detach() if detach else logits, h)
        return -(bernoulli_log_prob(dec(h), x) + bernoulli_log_prob(prior, h) - log_q)

    storch.reset()                                   # drop what a failed call may have left behind
    data = storch.denote_independent(xb, 0, "data")
    logits = enc(data)
    h = method(torch.distributions.Bernoulli(logits=logits))
    storch.add_cost(negative_elbo(data, h, logits), "negative_elbo")
    storch.backward(update_estimator_params=update)
    if not update:                                   # frozen: the queued (sample, cost) pairs would pile up
        method._estimation_pairs.clear()


def sbn_vitools_step(model, est, xb) -> None:
    """One frozen vitools estimate on ``xb`` (``est`` in ``eval()`` mode); gradients land in ``.grad``."""
    (-est(model.on(xb), 1).surrogate.mean()).backward()


def control_values(est) -> str:
    """The estimator's own scalar control parameters after training (``states.<target>.<name>``; not
    those of its networks), a log-temperature shown as the temperature."""
    out = []
    for name, p in est.named_parameters():
        if p.numel() == 1 and name.count(".") == 2:
            key, value = name.rsplit(".", 1)[-1], float(p.detach())
            if key.startswith("log_"):
                key, value = key[4:], float(p.detach().exp())
            out.append(f"{key} {value:.3f}")
    return ", ".join(out)


@torch.no_grad()
def sbn_exact(model, xd: torch.Tensor, chunk: int = 2**15):
    """Exact ELBO gradients for one digit ``xd`` ``[D]`` of a 1-layer SBN by enumerating all
    ``2**d`` states in chunks (float64): ``(d ELBO / d logits [d], d ELBO / d decoder bias [D])``.
    With $q(h) = \\prod_i \\mathrm{Bern}(h_i; \\sigma(\\ell_i))$, $\\nabla_\\ell \\mathcal{L} =
    \\sum_h q(h)\\,(h - \\sigma(\\ell))\\,f(h)$ ($f = \\log p(x, h) - \\log q(h)$; the term
    $-\\sum_h q(h) \\nabla_\\ell \\log q(h)$ is exactly 0) and $\\nabla_b \\mathcal{L} = \\sum_h
    q(h)\\,(x - \\sigma(W h + b))$."""
    from vitools.models.sbn import bernoulli_log_prob

    enc, dec = model.encoders[0], model.decoders[0]
    x = xd.double()
    logits = enc(xd[None].to(enc.weight.dtype))[0].double()
    weight, bias, prior = dec.weight.double(), dec.bias.double(), model.prior_logits.double()
    bits = logits.shape[0]
    shifts = torch.arange(bits)
    g_logits = torch.zeros(bits, dtype=torch.float64)
    g_bias = torch.zeros_like(x)
    for start in range(0, 2**bits, chunk):
        h = ((torch.arange(start, min(start + chunk, 2**bits))[:, None] >> shifts) & 1).double()
        out = h @ weight.T + bias
        log_q = bernoulli_log_prob(logits, h)
        q = log_q.exp()
        f = bernoulli_log_prob(out, x) + bernoulli_log_prob(prior, h) - log_q
        g_logits += ((q * f)[:, None] * (h - torch.sigmoid(logits))).sum(0)
        g_bias += (q[:, None] * (x - torch.sigmoid(out))).sum(0)
    return g_logits, g_bias


def sbn_summary(rows: torch.Tensor, m: int, exact, n_enc: int) -> dict:
    """Statistics of ``rows`` ``[B, P]``, each the mean of ``m`` independent ascent-direction
    estimates ``[encoder weight, encoder bias, decoder bias]`` for one digit."""
    rows = rows.double()
    g_logits, g_bias = exact
    d = g_logits.shape[0]
    mean, var_means = rows.mean(0), rows.var(0)
    mean_b, se_b = mean[n_enc - d:n_enc], (var_means[n_enc - d:n_enc] / rows.shape[0]).sqrt()
    mean_dec = mean[n_enc:]
    return {
        "variance": float(var_means[:n_enc].sum()) * m,
        "max_z": float(((mean_b - g_logits) / se_b).abs().max()),
        "rel_error": float((mean_b - g_logits).norm() / g_logits.norm()),
        "noise_floor": float(se_b.norm() / g_logits.norm()),
        "decoder": float(mean_dec @ g_bias / (g_bias @ g_bias)),
        "n": rows.shape[0] * m,
    }


def sbn_rows_vitools(model, est, xd, batches: int, m: int) -> torch.Tensor:
    params = [model.encoders[0].weight, model.encoders[0].bias, model.decoders[0].bias]
    rows = []
    for _ in range(batches):
        loss = est(model.on(xd[None].expand(m, xd.shape[0])), 1).surrogate.mean()     # est frozen (eval)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def sbn_rows_storch(model, method, xd, n: int, detach: bool = False) -> torch.Tensor:
    params = [model.encoders[0].weight, model.encoders[0].bias, model.decoders[0].bias]
    rows = []
    for _ in range(n):
        model.zero_grad(set_to_none=True)
        sbn_storch_step(model, method, xd[None], detach=detach)
        rows.append(-torch.cat([p.grad.detach().flatten() for p in params]))   # descent -> ascent
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def sbn_section(args) -> list[str]:
    """Step time, encoder-gradient variance and bias of each estimator, both libraries, one SBN."""
    from vitools.models import sbn

    quick = args.quick
    pre_steps, cv_steps = (100, 50) if quick else (300, args.sbn_cv_steps)
    cv_lr = args.cv_lr
    n_storch, (batches, m) = (300, (20, 50)) if quick else (args.sbn_n, (100, 100))
    digits, per_round = (1, 4) if quick else (3, 12)
    x = vt.data.small_digits("train", n=1000)
    vt.config.seed_everything(0)
    model = sbn.SBN(x.shape[1], SBN_LATENT)
    sbn.train_sbn(model, vt.estimators.get("disarm"), x, steps=pre_steps, batch_size=SBN_BATCH, lr=3e-3,
                  progress=False)
    elbo = sbn.evaluate(model, x)
    # control-variate training: the same minibatches, steps, optimizer and learning rate in both libraries
    gen = torch.Generator().manual_seed(2)
    cv_index = [torch.randint(x.shape[0], (SBN_BATCH,), generator=gen) for _ in range(max(cv_steps, 1))]
    n_enc = sum(p.numel() for p in model.encoders[0].parameters())
    errors = {}                                      # (label, library) -> error text
    trained = []                                     # control parameters after training
    runs = []                                        # [label, library, kind, estimator or method]
    for label, (name, opts), variants in SBN_LINE_UP:
        est = vt.estimators.get(name, **opts)
        minibatches = iter(cv_index)
        if est.warm_up(lambda: model.on(x[next(minibatches)]), 1, steps=cv_steps, lr=cv_lr):
            trained.append(f"{label} vitools: {control_values(est)}")
        est.eval()                                   # frozen from here on
        runs.append([label, "vitools", "vitools", est])
        for lib, sname, sopts in variants:
            lib = f"Storchastic {lib}"
            try:
                method = sbn_storch_method(sname, sopts)
                params = list(getattr(method, "control_params", []))
                if params and cv_steps:              # train temperature / eta / c_phi on the variance
                    opt = torch.optim.Adam(params, lr=cv_lr)
                    for index in cv_index[:cv_steps]:
                        sbn_storch_step(model, method, x[index], update=True, detach=sopts.get("detach", False))
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    model.zero_grad(set_to_none=True)
                    trained.append(f"{label} {lib}: temperature {float(method.temperature):.3f}, "
                                   f"eta {float(method.eta):.3f}")
                runs.append([label, lib, "storch", (method, sopts.get("detach", False))])
            except Exception as err:                 # noqa: BLE001  (report what fails, never fake a row)
                errors[(label, lib)] = f"{type(err).__name__}: {err}"
                runs.append([label, lib, "failed", None])
    # time per step: interleaved rounds on the same minibatches, best round's median
    gen = torch.Generator().manual_seed(1)
    batches_t = [x[torch.randint(x.shape[0], (SBN_BATCH,), generator=gen)] for _ in range(per_round + 1)]
    best = {}
    for _ in range(5):
        for label, lib, kind, obj in runs:
            if kind == "failed" or (label, lib, "time") in errors:
                continue
            times = []
            try:
                for xb in batches_t:
                    model.zero_grad(set_to_none=True)
                    start = time.perf_counter()
                    if kind == "vitools":
                        sbn_vitools_step(model, obj, xb)
                    else:
                        sbn_storch_step(model, obj[0], xb, detach=obj[1])
                    times.append(1000 * (time.perf_counter() - start))
            except Exception as err:                 # noqa: BLE001
                errors[(label, lib, "time")] = f"{type(err).__name__}: {err}"
                continue
            best[(label, lib)] = min(best.get((label, lib), float("inf")), statistics.median(times[1:]))
    model.zero_grad(set_to_none=True)
    # variance, bias: per digit, against the exact gradient
    exact = [sbn_exact(model, x[i]) for i in range(digits)]
    results = {}
    for label, lib, kind, obj in runs:
        if kind == "failed":
            continue
        start = time.perf_counter()
        try:
            stats = []
            for i in range(digits):
                if kind == "vitools":
                    rows, mm = sbn_rows_vitools(model, obj, x[i], batches, m), m
                else:
                    rows, mm = sbn_rows_storch(model, obj[0], x[i], n_storch, detach=obj[1]), 1
                stats.append(sbn_summary(rows, mm, exact[i], n_enc))
        except Exception as err:                     # noqa: BLE001
            errors[(label, lib)] = f"{type(err).__name__}: {err}"
            continue
        results[(label, lib)] = {
            "variance": statistics.mean(s["variance"] for s in stats),
            "max_z": max(s["max_z"] for s in stats),
            "rel_error": statistics.mean(s["rel_error"] for s in stats),
            "noise_floor": statistics.mean(s["noise_floor"] for s in stats),
            "decoder": statistics.mean(s["decoder"] for s in stats),
            "n": stats[0]["n"], "seconds": time.perf_counter() - start,
        }
        print(label, lib, best.get((label, lib)), results[(label, lib)], flush=True)
    lines = [
        "## Sigmoid belief net", "",
        f"1-layer linear SBN, {SBN_LATENT[0]} bits, 14x14 bundled digits (1000 training digits), pretrained by "
        f"{pre_steps} DisARM steps (train ELBO {elbo:.1f}); both libraries run on the same model objects. "
        f"{torch.get_num_threads()} thread(s), {time.strftime('%Y-%m-%d')}. "
        f"ms / step: one k = 1 estimate on a minibatch of {SBN_BATCH} digits (forward, surrogate, backward, no "
        f"optimizer step, control variates frozen), best of 5 interleaved rounds of the median over {per_round} "
        "steps on the same minibatches. Encoder gradient variance: trace over the encoder's weight and bias per "
        f"single-sample estimate, mean over {digits} digit(s) (vitools: {batches} batch means of {m} copies of the "
        f"digit, x {m}; Storchastic: {n_storch} single estimates on that digit). Bias: against the exact ELBO "
        f"gradient by enumerating 2^{SBN_LATENT[0]} states per digit; max |bias z| over the encoder's "
        f"{SBN_LATENT[0]} bias entries (the logits' gradient) of {digits} digit(s), |z| > 4 flags a biased "
        "estimate; relative error of the mean logit gradient ||mean - exact|| / ||exact|| next to the error noise "
        "alone gives (its standard error's norm / ||exact||): where the latter is near or above 1 the test cannot "
        "see a bias as large as the gradient. Decoder bias gradient: the projection of the mean on the exact "
        "gradient, mean(g).g / g.g (1 when correct). Control-variate training, equal in both libraries: "
        f"{cv_steps} Adam steps, learning rate {cv_lr:g}, on the same {cv_steps} minibatches of {SBN_BATCH} digits, "
        "each library on its second moment of the logit gradient (Storchastic: "
        "`storch.backward(update_estimator_params=True)` and Adam on `control_params`; vitools: "
        "`est.warm_up(next minibatch, 1, steps, lr)`).", "",
        "| estimator | library | ms / step | Storchastic / vitools time | encoder gradient variance | "
        "Storchastic / vitools variance | max abs bias z | rel. error of mean (noise alone) | "
        "decoder gradient / exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    footnotes = []
    for label, lib, kind, _ in runs:
        ms, res = best.get((label, lib)), results.get((label, lib))
        ref_ms, ref = best.get((label, "vitools")), results.get((label, "vitools"))
        failure = errors.get((label, lib)) or errors.get((label, lib, "time"))
        if failure:
            footnotes.append(f"{len(footnotes) + 1}. {label}, {lib}: "
                             f"{'FAILED at batch ' + str(SBN_BATCH) if (label, lib, 'time') in errors else 'FAILED'}: "
                             f"`{failure[:300]}`")
        mark = f" (FAILED, note {len(footnotes)})" if failure else ""
        cells = [label, lib + mark]
        cells.append(f"{ms:.1f}" if ms is not None else "FAILED")
        cells.append(f"{ms / ref_ms:.1f}x" if lib != "vitools" and ms is not None and ref_ms else "")
        if res is None:
            cells += ["FAILED", "", "", "", ""]
        else:
            cells += [f"{res['variance']:.3g}",
                      f"{res['variance'] / ref['variance']:.3g}" if lib != "vitools" and ref else "",
                      f"{res['max_z']:.1f}", f"{res['rel_error']:.2f} ({res['noise_floor']:.2f})",
                      f"{res['decoder']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Control parameters after training: " + "; ".join(trained) + ".", ""]
    if footnotes:
        lines += ["Failures:", ""] + footnotes + [""]
    lines += ["Notes:", "", *SBN_NOTES, ""]
    return lines


SBN_NOTES = [
    "- Storchastic's `DisARM` raises on a minibatch plate of more than one digit: its `comp_estimator` indexes "
    "with `(None,) * plate_index + (slice(n),)`, which inserts new axes instead of selecting along the sample "
    "plate (storch/method/arm.py). With one digit (no data dimension) it runs, which is how its variance and "
    "bias are measured. As on the toy, it registers no plate weighting (`plate_weighting` is defined but never "
    "passed to `set_mc_weighting_function`), so the antithetic sample counts as a second draw in the cost, and "
    "its control variate f(b~) is added without `1 - magic_box`: the estimate multiplies the DisARM weight by "
    "(f(b) + f(b~)) / 4 instead of (f(b) - f(b~)) / 2. Those weights average to zero, which is the toy's bias "
    "(mean near 0); here the variance is far above vitools' DisARM and the noise is larger than the gradient, "
    "so the z-test cannot see that bias on the encoder. Its generative gradient is visibly wrong: the cost at "
    "b~ enters once as a sample (weight 1/2) and once more, not detached, as the control variate, so the "
    "pathwise gradient is counted 1.5 times (the decoder column).",
    "- Storchastic's `ARM` does not sum its logistic log-density over the event dimension (20 bits), so "
    "`magic_box(L) * cost` counts the cost 20 times in the surrogate: every pathwise gradient of the cost is "
    "multiplied by 20. The generative parameters get 20x their gradient (the decoder column), and the "
    "encoder gets 20x the zero-mean term -d log q(h|x) / d phi of the cost, which is its extra variance: "
    "with log q(h|x) at detached logits in the cost (the row marked so) its encoder variance is vitools' ARM's, "
    "while its decoder gradient stays 20x.",
    "- Storchastic's `REBAR` trains eta to about 0 (the relaxed control switched off) and its variance is "
    "REINFORCE's, as on the toy. Its `RELAX` is a learned network of the relaxed sample alone (no relaxed cost, "
    "no x input; vitools' RELAX is eta f(relaxed) + r(relaxed, x)) and after training its variance is "
    "REINFORCE's too. `rebar=True` (REBAR plus the network, the closer match to vitools' RELAX) is listed as "
    "well; it raises on a minibatch plate (see Failures).",
    "- The cost is what a Storchastic user writes: log q(h|x) at the encoder's live logits, so its "
    "zero-mean pathwise term -d log q / d phi is part of every Storchastic estimate; vitools' SBN estimators "
    "drop that term (its expectation is exactly 0). REINFORCE has no baseline in either library (bench/relaxed.py's "
    "reference adds a running mean).",
    "- Gumbel-Softmax is biased in both libraries by the same amount (the same relaxed estimator: equal "
    "relative error of the mean and equal variance); its |bias z| differs only through the number of estimates.",
    "- Storchastic's REBAR and RELAX backward passes build a double-backward graph (`create_graph=True`) even "
    "with their control parameters frozen; vitools' estimators in `eval()` mode do not.",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--cv-steps", type=int, default=500)
    parser.add_argument("--sbn-n", type=int, default=2000, help="Storchastic single estimates per digit (SBN)")
    parser.add_argument("--sbn-cv-steps", type=int, default=300)
    parser.add_argument("--cv-lr", type=float, default=1e-2,
                        help="Adam learning rate of the control-variate training, both libraries")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sbn-only", action="store_true",
                        help="keep the toy section already in the results file; measure the SBN section only")
    args = parser.parse_args()
    try:
        import storch
        version = getattr(storch, "__version__", None)
        if version is None:
            from importlib.metadata import version as _v
            version = _v("storchastic")
    except Exception as err:                        # noqa: BLE001  (any import failure means: skip)
        print(f"Storchastic is not available ({type(err).__name__}: {err}); skipping. Install it into the "
              "bench environment with `.venv/bin/pip install --no-deps storchastic entmax` (see the docstring).")
        return
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)       # create_graph=True reference-cycle notes
    start = time.perf_counter()
    if args.sbn_only and RESULTS.exists():
        lines = [RESULTS.read_text().split("\n## Sigmoid belief net")[0].rstrip("\n"), ""]
    else:
        lines = toy_section(args, version)
    lines += sbn_section(args)
    lines += [f"Run time of the whole script: {time.perf_counter() - start:.0f} s"
              f"{' (quick)' if args.quick else ''}.", ""]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
