"""Tests for vitools.train: the fit loop, its history, minibatching, seeding and checks."""
import numpy as np
import pytest
import torch

from vitools.train import History, fit

CPU = torch.device("cpu")


def regression(n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    y = x @ torch.tensor([1.5, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=gen)
    return x, y


def test_fit_reaches_the_least_squares_solution():
    x, y = regression()
    w = torch.zeros(3, requires_grad=True)
    history = fit(lambda b: ((b[0] @ w - b[1]) ** 2).mean(), w, (x, y), steps=600, batch_size=50,
                  lr=0.05, progress=False, device=CPU)
    exact = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    assert torch.allclose(w.detach(), exact, atol=0.05)
    loss = history.as_arrays()["loss"]
    assert loss[-50:].mean() < 0.05 * loss[:10].mean()


def test_history_records_steps_seconds_and_evaluations():
    x, y = regression()
    w = torch.zeros(3, requires_grad=True)
    history = fit(lambda b: ((b[0] @ w - b[1]) ** 2).mean(), w, (x, y), steps=45, batch_size=20,
                  eval_every=20, log_every=7, progress=False, device=CPU,
                  eval_fn=lambda: {"mse": ((x @ w - y) ** 2).mean(), "norm": w.norm()})
    a = history.as_arrays()
    assert a["steps"].tolist() == list(range(1, 46))
    assert a["loss"].shape == a["seconds"].shape == (45,)
    assert np.all(np.diff(a["seconds"]) >= 0)
    assert a["eval_steps"].tolist() == [0, 20, 40, 45]
    assert a["mse"].shape == a["norm"].shape == a["eval_seconds"].shape == (4,)
    assert a["mse"][-1] < a["mse"][0] and a["norm"][0] == 0
    assert "45 steps" in repr(history)


def test_scalar_eval_is_named_eval_and_runs_without_grad():
    w = torch.zeros(2, requires_grad=True)
    seen = []

    def eval_fn():
        seen.append(torch.is_grad_enabled())
        return (w**2).sum()

    history = fit(lambda: ((w - 1) ** 2).sum(), w, None, steps=10, eval_fn=eval_fn, progress=False)
    assert history.eval_steps == list(range(11))                 # default eval_every = steps // 10 = 1
    assert history.as_arrays()["eval"].shape == (11,)
    assert seen and not any(seen)


def test_minibatches_cover_each_epoch_once_and_move_to_device():
    data = torch.arange(12.0)[:, None]
    w = torch.zeros(1, requires_grad=True)
    seen = []

    def loss_fn(batch):
        seen.append(batch[:, 0].long().tolist())
        assert batch.device.type == "cpu"
        return (w * batch).sum()

    fit(loss_fn, w, data, steps=9, batch_size=4, progress=False, device=CPU, optimizer="sgd", lr=0.1)
    assert all(len(b) == 4 for b in seen)
    for epoch in range(3):
        assert sorted(sum(seen[3 * epoch:3 * epoch + 3], [])) == list(range(12))
    assert seen[:3] != seen[3:6]                                # reshuffled every epoch


def test_batch_size_larger_than_data_uses_everything():
    data = torch.arange(5.0)[:, None]
    w = torch.zeros(1, requires_grad=True)
    sizes = []
    fit(lambda b: (sizes.append(len(b)) or (w * b).sum()), w, data, steps=3, batch_size=100, progress=False)
    assert sizes == [5, 5, 5]


def noisy_problem():
    w = torch.zeros(4, requires_grad=True)
    return w, (lambda b: ((b @ w - torch.randn(b.shape[0])) ** 2).mean())


def test_seed_reproduces_and_restores_global_state():
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    runs = []
    for seed in (3, 3, 4):
        w, loss_fn = noisy_problem()
        torch.manual_seed(123)
        runs.append((fit(loss_fn, w, data, steps=20, batch_size=8, seed=seed, progress=False).loss, w.detach()))
        after = torch.rand(1)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(1))                # the caller's generator is untouched
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_progress_bar_on_and_off(capsys, monkeypatch):
    monkeypatch.setenv("VITOOLS_PROGRESS", "1")             # make test switches bars off
    w = torch.zeros(1, requires_grad=True)
    fit(lambda: (w - 1).pow(2).sum(), w, steps=5, progress=False, desc="quiet-run")
    assert "quiet-run" not in capsys.readouterr().err
    fit(lambda: (w - 1).pow(2).sum(), w, steps=5, progress=True, desc="loud-run", log_every=1)
    err = capsys.readouterr().err
    assert "loud-run" in err and "loss=" in err


def test_optimizer_instance_continues_a_run():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    fit(lambda: (w - 1).pow(2).sum(), w, steps=5, optimizer=opt, progress=False)
    first = w.item()
    fit(lambda: (w - 1).pow(2).sum(), w, steps=5, optimizer=opt, progress=False)
    assert 0 < first < w.item() < 1
    assert abs(w.item() - (1 - 0.8**10)) < 1e-5                # ten exact gradient-descent steps


def test_module_parameters_are_trained():
    net = torch.nn.Linear(3, 1)
    x, y = regression()
    history = fit(lambda b: ((net(b[0])[:, 0] - b[1]) ** 2).mean(), net, (x, y), steps=300, lr=0.05,
                  progress=False)
    assert history.loss[-1] < 0.1


def test_nan_loss_raises_with_the_step():
    w = torch.ones(1, requires_grad=True)
    steps = iter(range(1, 100))

    def loss_fn():
        return w.sum() * (float("nan") if next(steps) == 3 else 1.0)

    with pytest.raises(FloatingPointError, match="nan at step 3"):
        fit(loss_fn, w, steps=10, log_every=5, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(loss_fn=3), "loss_fn must be callable"),
    (dict(steps=0), "steps must be an integer >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(lr="fast"), "lr must be a positive number"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(eval_every=0), "eval_every must be an integer >= 1, got 0"),
    (dict(log_every=0), "log_every must be an integer >= 1, got 0"),
    (dict(eval_fn="mse"), "eval_fn must be callable or None"),
    (dict(progress="yes"), "progress must be True or False"),
    (dict(seed=-2), "seed must be a non-negative integer"),
    (dict(params_or_module=[]), "params_or_module must hold at least one parameter"),
    (dict(params_or_module=5), "params_or_module must be a torch.nn.Module"),
    (dict(params_or_module=[torch.zeros(2)]), "leaf tensors with requires_grad=True"),
    (dict(data=(torch.zeros(4, 1), torch.zeros(5))), "data must share a non-empty first dimension"),
    (dict(data=torch.zeros(0, 2)), "data must share a non-empty first dimension"),
    (dict(data=torch.tensor(1.0)), "data must be a tensor"),
    (dict(data=torch.tensor([[0.0], [float("nan")]])), "data must be finite"),
])
def test_argument_checks(kwargs, match):
    w = torch.zeros(1, requires_grad=True)
    args = dict(loss_fn=lambda b: (w * b).sum(), params_or_module=w, data=torch.ones(4, 1), steps=2,
                progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit(**args)


@pytest.mark.parametrize("loss_fn,match", [
    (lambda w: lambda: w * 2, r"got shape \(2,\)"),
    (lambda w: lambda: torch.tensor(1.0), "requires_grad=False"),
    (lambda w: lambda: 1.0, "got 1.0"),
])
def test_loss_fn_must_return_a_differentiable_scalar(loss_fn, match):
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        fit(loss_fn(w), w, steps=2, progress=False)


@pytest.mark.parametrize("result,match", [
    ({"loss": 1.0}, "must not be one of"), (torch.zeros(3), "eval_fn must return numbers"),
])
def test_eval_fn_results_are_checked(result, match):
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        fit(lambda: (w**2).sum(), w, steps=2, eval_fn=lambda: result, progress=False)


def test_history_as_arrays_on_an_empty_history():
    a = History().as_arrays()
    assert a["loss"].shape == (0,) and a["steps"].dtype.kind == "i"
