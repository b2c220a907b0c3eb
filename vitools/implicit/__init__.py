r"""Implicit reparameterization gradients: Gamma, Beta, Dirichlet and von Mises.

Figurnov, Mohamed & Mnih 2018, *Implicit Reparameterization Gradients* (arXiv:1805.08498):
$dz/d\theta = -(\partial F(z \mid \theta)/\partial\theta) / q(z \mid \theta)$ needs a sampler
and a differentiable CDF, never an inverse CDF.

* :mod:`~vitools.implicit.core`: the autograd Function and the CDF-to-gradient helper;
* :mod:`~vitools.implicit.gamma`: Gamma (shape, rate) with $\partial_\alpha P(\alpha, z)$ in
  float64 from a series / continued fraction (small shapes) or Temme's uniform asymptotic
  expansion (:mod:`~vitools.implicit.gamma_asymptotic`, shapes >= 10), fixed term counts;
* :mod:`~vitools.implicit.beta`: Dirichlet and Beta through Gammas, Beta through its CDF;
* :mod:`~vitools.implicit.von_mises`: ``VonMises.rsample`` (Best-Fisher sampler, Hill's CDF);
* :mod:`~vitools.implicit.native`: the compiled CPU kernels of the Gamma and Beta sample-gradients
  (built on first use; ``VITOOLS_NATIVE=off`` keeps the torch-operations path);
* :mod:`~vitools.implicit.alternatives`: finite differences, approximate inverse CDF, RSVI;
* :mod:`~vitools.implicit.problems`: toy problems with exact gradients;
* :mod:`~vitools.implicit.examples`: conjugate VI models with exact posteriors, and ``fit``;
* :mod:`~vitools.implicit.accuracy`: errors against mpmath references, timings, tables.

The distributions subclass ``torch.distributions`` ones, so they compose with the rest of
torch (``log_prob``, KL, ``Independent``) and with ``vt.estimators.get("pathwise")``.

Example::

    >>> kappa = torch.tensor(2.0, requires_grad=True)
    >>> z = vt.implicit.VonMises(torch.tensor(0.0), kappa).rsample((10_000,))
    >>> torch.cos(z).mean().backward()      # kappa.grad ~ A'(2) = 0.164
"""
from .core import ImplicitReparam, cdf_sample_grad, from_cdf, implicit_sample, invert_cdf
from .gamma import Gamma, gamma_icdf, rsample_standard_gamma, standard_gamma_grad
from .beta import Beta, Dirichlet, beta_log_prob, betainc, rsample_beta, rsample_dirichlet
from .von_mises import VonMises, rsample_centred, sample_centred, von_mises_cdf, von_mises_log_prob
from .alternatives import approx_inverse_gamma_grad, finite_difference_grad, rsvi_gamma
from .problems import BetaMean, GammaLog, VonMisesCos, bessel_ratio
from . import accuracy, examples, native

__all__ = [
    "ImplicitReparam", "implicit_sample", "cdf_sample_grad", "from_cdf", "invert_cdf",
    "Gamma", "gamma_icdf", "rsample_standard_gamma", "standard_gamma_grad",
    "Beta", "Dirichlet", "betainc", "beta_log_prob", "rsample_beta", "rsample_dirichlet",
    "VonMises", "von_mises_cdf", "von_mises_log_prob", "sample_centred", "rsample_centred",
    "finite_difference_grad", "approx_inverse_gamma_grad", "rsvi_gamma",
    "GammaLog", "BetaMean", "VonMisesCos", "bessel_ratio", "accuracy", "examples",
]
