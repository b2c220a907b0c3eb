"""Models of the workbook: one module per model family, each re-exported here.

* :mod:`.vae` -- the Bernoulli-decoder Gaussian VAE (Kingma & Welling 2014, arXiv:1312.6114)
  and quadrature ground truth for tiny ones.
* :mod:`.sbn` -- sigmoid belief networks with exact enumeration for small ones (Neal 1992;
  Mnih & Gregor 2014, arXiv:1402.0030).
* :mod:`.categorical_vae` -- a VAE with categorical latents trained through Gumbel-Softmax
  relaxations (Jang et al. 2017, arXiv:1611.01144; Maddison et al. 2017, arXiv:1611.00712).
* :mod:`.ssm` -- linear Gaussian state-space models with the Kalman filter and exact proposals.
* :mod:`.vrnn` -- the variational RNN (Chung et al. 2015, arXiv:1506.02216) used by FIVO.
* :mod:`.graph_learning` -- score-based graph learning for forecasting (Cini et al. 2023, arXiv:2205.13492).
* :mod:`.label_tree` -- label trees: a distribution over items as binary choices (Mnih & Hinton 2008).
* :mod:`.gamma_vae` -- a VAE with Gamma latents trained by implicit reparameterization, RSVI or
  the score function (Figurnov et al. 2018, arXiv:1805.08498; Naesseth et al. 2017).
* :mod:`.memory` -- variational memory addressing: a discrete address into a memory of exemplars
  (Bornschein et al. 2017, arXiv:1709.07116); :mod:`.memory_episodes` its few-shot episodes.
* :mod:`.reference` -- independent Bernoulli units (pixels, keys): the no-latent reference.
"""
from . import categorical_vae, reference, sbn, ssm, vae, vrnn
from . import graph_learning, label_tree
from .graph_learning import GraphVAR
from .label_tree import FlatSoftmax, LabelTree
from .categorical_vae import CategoricalVAE, DiscreteBounds
from .reference import IndependentBernoulli
from .sbn import SBN
from .ssm import LearnableProposal, LinearGaussianProposal, LinearGaussianSSM
from .vrnn import VRNN
from .vae import ExactBounds, GaussianVAE, exact_bounds, expected_elbo
from . import gamma_vae, memory, memory_episodes
from .gamma_vae import GammaVAE
from .memory import MemoryVAE

__all__ = ["GaussianVAE", "ExactBounds", "exact_bounds", "expected_elbo", "SBN", "LinearGaussianSSM",
           "LinearGaussianProposal", "LearnableProposal", "VRNN", "CategoricalVAE", "DiscreteBounds",
           "IndependentBernoulli", "MemoryVAE", "memory", "memory_episodes", "categorical_vae", "reference", "sbn", "ssm", "vae", "vrnn",
           "GraphVAR", "LabelTree", "FlatSoftmax", "graph_learning", "label_tree", "GammaVAE", "gamma_vae"]
