"""A tiny sigmoid belief net with random weights, small enough to enumerate, shared by the
SBN estimator tests."""
import torch

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
