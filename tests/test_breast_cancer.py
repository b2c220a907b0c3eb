"""The bundled UCI breast-cancer data: integrity, split, standardisation, argument checks."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vitools.data import breast_cancer, cache, load_breast_cancer

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_file_matches_its_recorded_sha256():
    assert cache.sha256(breast_cancer.BUNDLED_PATH) == breast_cancer.BUNDLED_SHA256
    assert breast_cancer.BUNDLED_SHA256 in breast_cancer.BUNDLED_PATH.with_name("README.md").read_text()


def test_shapes_labels_and_split():
    data = load_breast_cancer(device="cpu")
    assert data.x_train.shape == (456, 30) and data.x_test.shape == (113, 30)
    assert data.y_train.shape == (456,) and data.y_test.shape == (113,)
    assert data.x_train.dtype == torch.float32
    counts = [int(data.y_train.sum()), int(data.y_test.sum())]
    assert counts == [286, 71]                 # benign; 357 in all, as in the UCI description
    assert 456 - counts[0] + 113 - counts[1] == 212


def test_standardised_with_the_training_statistics():
    raw = load_breast_cancer(standardize=False, dtype=torch.float64, device="cpu")
    std = load_breast_cancer(dtype=torch.float64, device="cpu")
    assert torch.allclose(std.x_train.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(std.x_train.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-10)
    mean, scale = raw.x_train.mean(0), raw.x_train.std(0, unbiased=False)
    assert torch.allclose(std.x_test, (raw.x_test - mean) / scale, atol=1e-10)
    assert not torch.allclose(std.x_test.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-3)
    # first row of the UCI file: radius 17.99, texture 10.38, malignant
    assert raw.x_train[0, :2].tolist() == [17.99, 10.38] and raw.y_train[0] == 0


def test_features_predict_the_labels():
    """Least squares on the training split classifies > 90% of the test tumours (features and
    labels are aligned; a shuffled label column gives about 63%, the benign rate)."""
    data = load_breast_cancer(dtype=torch.float64, device="cpu")
    design = torch.cat([data.x_train, torch.ones(456, 1, dtype=torch.float64)], 1)
    w = torch.linalg.lstsq(design, 2 * data.y_train[:, None] - 1).solution
    pred = torch.cat([data.x_test, torch.ones(113, 1, dtype=torch.float64)], 1) @ w
    accuracy = ((pred[:, 0] > 0).double() == data.y_test).double().mean()
    assert accuracy > 0.9
    shuffled = data.y_train[torch.randperm(456, generator=torch.Generator().manual_seed(0))]
    w = torch.linalg.lstsq(design, 2 * shuffled[:, None] - 1).solution
    pred = torch.cat([data.x_test, torch.ones(113, 1, dtype=torch.float64)], 1) @ w
    assert ((pred[:, 0] > 0).double() == data.y_test).double().mean() < 0.8


def test_tampered_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "breast_cancer.npz"
    shutil.copy(breast_cancer.BUNDLED_PATH, bad)
    with bad.open("ab") as handle:
        handle.write(b"\0")
    monkeypatch.setattr(breast_cancer, "BUNDLED_PATH", bad)
    with pytest.raises(ValueError, match="sha256"):
        load_breast_cancer()
    monkeypatch.setattr(breast_cancer, "BUNDLED_PATH", tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_breast_cancer()


@pytest.mark.parametrize("kwargs, name", [({"standardize": 1}, "standardize"), ({"dtype": torch.int64}, "dtype"),
                                          ({"dtype": "float32"}, "dtype")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_breast_cancer(**kwargs)


def test_build_script_split_is_stratified_and_fixed():
    sys.path.insert(0, str(ROOT / "data"))
    try:
        import build_breast_cancer as build
    finally:
        sys.path.pop(0)
    y = np.array([0] * 10 + [1] * 5, dtype=np.uint8)
    x = np.arange(15 * 30, dtype=np.float64).reshape(15, 30)
    out = build.split(x, y)
    assert out["test_y"].tolist() == [0, 0, 1] and out["test_x"][:, 0].tolist() == [4 * 30, 9 * 30, 14 * 30]
    with pytest.raises(SystemExit, match="sha256"):
        build.read_csv(b"569,30,malignant,benign\n")
    with np.load(breast_cancer.BUNDLED_PATH) as npz:              # the bundled file is that split
        total = np.concatenate([npz["train_y"], npz["test_y"]])
        assert np.bincount(total).tolist() == [212, 357]
