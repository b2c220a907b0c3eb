"""Data sets for the workbook: bundled, downloaded once into a verified cache, or read
from a data directory.

* :func:`load_mnist` -- MNIST images ``[N, 784]`` float32 on :func:`vitools.config.device`:
  the bundled 5,000-digit subset (offline), the fixed Larochelle-Murray binarization used
  by VIMCO, REBAR and RELAX, or the original 60k/10k greyscale set (see :mod:`.mnist`).
* :func:`binarize` -- dynamic, fixed or threshold binarization of intensities in [0, 1].
* :func:`small_digits` -- the bundled digits pooled to 14x14 (:func:`downsample`) and
  binarized once, for models that must train in notebook time.
* :func:`load_chorales` -- polyphonic music as 88-key piano rolls: bundled Bach chorales
  (offline) or the canonical JSB Chorales split (see :mod:`.music`).
* :func:`load_breast_cancer` -- the UCI breast-cancer data (569 x 30), bundled, split and
  standardised, for Bayesian logistic regression (see :mod:`.breast_cancer`).
* :mod:`.cache` -- the generic layer: :func:`data_dir`, :func:`register`, :func:`fetch`,
  :func:`sha256`, atomic writes; later data modules register their own files there.

The data directory is the ``data_dir=`` argument, else ``$VITOOLS_DATA_DIR``, else
``~/.cache/vitools``. Example::

    >>> import vitools as vt
    >>> x = vt.data.load_mnist("binarized", split="test", data_dir="../shared/data")
    >>> x.shape
    torch.Size([10000, 784])
"""
from . import breast_cancer, cache, mnist, music
from .breast_cancer import load_breast_cancer
from .cache import data_dir, fetch, register, sha256
from .mnist import binarize, downsample, load_mnist, small_digits
from .music import load_chorales

__all__ = ["breast_cancer", "load_breast_cancer", "cache", "mnist", "music", "data_dir", "fetch", "register", "sha256", "binarize", "downsample",
           "load_mnist", "small_digits", "load_chorales"]
