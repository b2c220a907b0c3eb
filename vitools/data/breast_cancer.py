r"""The UCI Breast Cancer Wisconsin (Diagnostic) data: 569 tumours, 30 features, bundled offline.

The case study of Mohamed et al. 2020 (*Monte Carlo Gradient Estimation in Machine
Learning*, arXiv:1906.10652, Section 8.3): Bayesian logistic regression on this data set.
The file ``bundled/breast_cancer.npz`` (built by ``data/build_breast_cancer.py`` from the
csv inside the scikit-learn 1.5.2 wheel; provenance and licence in ``bundled/README.md``)
holds a fixed stratified split, 456 train and 113 test tumours; its sha256 is checked on
every load. No network, ever.

Labels: 1 benign, 0 malignant (scikit-learn's coding). Features are standardised with the
*training* split's mean and standard deviation, so the test split is scaled by the same
numbers. Example::

    >>> data = vt.data.load_breast_cancer()
    >>> data.x_train.shape, data.x_test.shape
    (torch.Size([456, 30]), torch.Size([113, 30]))
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import config
from . import cache

__all__ = ["BreastCancer", "load_breast_cancer", "BUNDLED_PATH", "BUNDLED_SHA256", "FEATURES"]

BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "breast_cancer.npz"
BUNDLED_SHA256 = "7317ff280d2c4b094f97ca43b01bfa1c011a71dfe3bc4ed860a27346136491b0"
FEATURES = 30
SIZES = {"train": 456, "test": 113}


class BreastCancer(NamedTuple):
    """Features ``[N, 30]`` and labels ``[N]`` (float 0/1, 1 benign) of both splits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _read(path: Path) -> dict[str, np.ndarray]:
    arrays = cache.read_bundled_npz(path, BUNDLED_SHA256, "data/build_breast_cancer.py")
    for split, n in SIZES.items():
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape != (n, FEATURES) or y.shape != (n,) or not np.isfinite(x).all() or not set(np.unique(y)) <= {0, 1}:
            raise ValueError(f"{path}: {split} split must hold finite [{n}, {FEATURES}] features and 0/1 labels")
    return arrays


def load_breast_cancer(standardize: bool = True, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> BreastCancer:
    """The bundled data as tensors on ``device`` (default :func:`vitools.config.device`).

    Args:
        standardize: subtract the training mean and divide by the training standard deviation
            (per feature, applied to both splits); else the raw features.
        dtype: floating dtype of features and labels (default float32).
        device: where the tensors go.
    """
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    if not BUNDLED_PATH.is_file():
        raise FileNotFoundError(f"{BUNDLED_PATH} is missing: it ships as package data of vitools")
    arrays = _read(BUNDLED_PATH)
    x_train, x_test = arrays["train_x"], arrays["test_x"]
    if standardize:
        mean, std = x_train.mean(0), x_train.std(0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    dev = config.device(device)

    def put(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=dev, dtype=dtype)

    return BreastCancer(put(x_train), put(arrays["train_y"]), put(x_test), put(arrays["test_y"]))

