"""Helpers shared by the estimator tests: a tiny sigmoid belief net with random weights, small
enough to enumerate, exact gradients and z-scores for ``model_grad_samples``, and the discrete
toy problems of the relaxation and control-variate tests."""
import torch

import vitools as vt
from vitools.models.sbn import SBN

X = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])


def tiny(latent=(2, 1), seed=0):
    """``SBN(5, latent)`` with standard-normal weights drawn with ``seed``."""
    torch.manual_seed(seed)
    model = SBN(5, latent)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def exact_grads(model, objective):
    """``{"model.<name>": gradient of objective.sum()}``, named as in ``model_grad_samples``."""
    names, params = zip(*model.named_parameters())
    return {"model." + n: g for n, g in zip(names, torch.autograd.grad(objective.sum(), params))}


def max_abs_z(samples, exact):
    """The largest |bias z-score| of gradient samples ``{name: [n, ...]}`` against ``exact``."""
    return max(vt.diagnostics.summarize(samples[n].flatten(1), exact[n].flatten()).bias_z.abs().max().item()
               for n in exact)


def discrete_problems():
    """A Bernoulli bit, four independent bits and a four-class categorical, each with exact gradients."""
    return {
        "bernoulli": vt.problems.BernoulliQuadratic(0.45, init=1.0),
        "bits": vt.problems.FactorisedBernoulli.random(4, seed=1, logits=[0.5, -1.0, 0.3, 1.2]),
        "categorical": vt.problems.CategoricalCost(logits=[0.2, -0.5, 1.0, 0.1]),
    }
