"""Models of the workbook: one module per model family, each re-exported here.

* :mod:`.vae` -- the Bernoulli-decoder Gaussian VAE (Kingma & Welling 2014, arXiv:1312.6114)
  and quadrature ground truth for tiny ones.
* :mod:`.sbn` -- sigmoid belief networks with exact enumeration for small ones (Neal 1992;
  Mnih & Gregor 2014, arXiv:1402.0030).
"""
from . import sbn, vae
from .sbn import SBN
from .vae import ExactBounds, GaussianVAE, exact_bounds, expected_elbo

__all__ = ["GaussianVAE", "ExactBounds", "exact_bounds", "expected_elbo", "SBN", "sbn", "vae"]
