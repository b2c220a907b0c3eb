"""Tests for vitools.data: the bundled subset, binarizations, the data directory, and the
download path against a real HTTP server on 127.0.0.1 serving small files in the real
formats (.amat text, gzipped idx-ubyte). Nothing here touches the internet."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import struct
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import vitools.config as config
from vitools.data import cache, mnist
from vitools.data import binarize, downsample, load_mnist, small_digits

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------ helpers

def files_in(folder: Path) -> list[str]:
    """Every file (hidden temporary ones included) below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def write_amat(path: Path, x: np.ndarray) -> Path:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in x))
    return path


def write_idx(path: Path, array: np.ndarray, magic: int, dims=None) -> Path:
    dims = array.shape if dims is None else dims
    header = struct.pack(f">{1 + len(dims)}I", magic, *dims)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))
    return path


def trust(monkeypatch, name: str, path: Path) -> None:
    """Register the synthetic file's sha256 in place of the real published checksum."""
    entry = cache.REGISTRY[name]
    monkeypatch.setitem(cache.REGISTRY, name, dataclasses.replace(entry, checksum="sha256:" + cache.sha256(path)))


def binary_images(n: int) -> np.ndarray:
    return (RNG.random((n, 784)) < 0.3).astype(np.uint8)


def write_packed_npz(path: Path, sizes=(6, 3, 2)) -> dict[str, np.ndarray]:
    x = dict(zip(("train", "valid", "test"), (binary_images(n) for n in sizes)))
    np.savez_compressed(path, **{k: np.packbits(v, axis=1) for k, v in x.items()})
    return x


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path):
    """(folder, base_url): a real HTTP server on an ephemeral port serving ``folder``.

    ``<base_url>short/<file>`` announces 100 bytes more than it sends (a cut connection).
    """
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            if not self.path.startswith("/short/"):
                return super().do_GET()
            body = (root / self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("vitools.data tried to use the network")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ----------------------------------------------------------------------- bundled subset

def test_bundled_loads_offline_with_shapes_range_and_balanced_labels(offline):
    for split, n in (("train", 4000), ("test", 1000)):
        x, y = load_mnist(split=split, binarize=None, return_labels=True)
        assert x.shape == (n, 784) and x.dtype == torch.float32 and x.device == config.device()
        assert 0 <= x.min() and x.max() == 1 and 0.1 < x.mean() < 0.16
        assert ((x > 0) & (x < 1)).any(), "greyscale, not already binary"
        assert y.dtype == torch.int64 and torch.equal(torch.bincount(y, minlength=10), torch.full((10,), n // 10))
        assert torch.equal(y[:10].cpu(), torch.arange(10)), "interleaved by class"
    assert load_mnist().shape == (4000, 784)


def test_bundled_file_matches_its_recorded_sha256():
    assert cache.sha256(mnist.BUNDLED_PATH) == mnist.BUNDLED_SHA256
    assert mnist.BUNDLED_SHA256 in mnist.BUNDLED_PATH.with_name("README.md").read_text()
    assert mnist.BUNDLED_PATH.stat().st_size < 2 * 2**20


def test_dynamic_binarization_is_seeded_and_unbiased():
    grey = load_mnist(split="test", binarize=None)
    a, b, c = (load_mnist(split="test", binarize="dynamic", seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a == 0) | (a == 1)).all()
    assert not torch.equal(load_mnist(split="test", seed=None), load_mnist(split="test", seed=None))
    assert abs(a.mean() - grey.mean()) < 0.002       # E[bernoulli(p)] = p; sd of the mean 4e-4
    assert torch.equal(a[grey == 0], grey[grey == 0]) and torch.equal(a[grey == 1], grey[grey == 1])
    assert torch.equal(binarize(grey, "dynamic", seed=0), a)


def test_fixed_binarization_is_identical_across_calls_and_threshold_cuts_at_half():
    fixed = load_mnist(split="test", binarize="fixed", seed=3)
    assert torch.equal(fixed, load_mnist(split="test", binarize="fixed", seed=3))
    assert not torch.equal(fixed, load_mnist(split="test", binarize="fixed", seed=4))
    grey = load_mnist(split="test", binarize=None)
    assert torch.equal(load_mnist(split="test", binarize="threshold"), (grey > 0.5).float())
    assert torch.equal(binarize(grey, "fixed", seed=3), fixed)
    assert binarize(grey, None) is grey


def test_downsample_averages_blocks():
    x = torch.zeros(2, 784)
    x[0, :28] = 1.0                                 # first image row
    small = downsample(x, 14)
    assert small.shape == (2, 196)
    assert torch.allclose(small[0, :14], torch.full((14,), 0.5)) and small[1].sum() == 0
    with pytest.raises(ValueError, match="size must divide 28"):
        downsample(torch.zeros(1, 784), 5)
    with pytest.raises(ValueError, match="x must lie in"):
        downsample(torch.full((1, 784), 2.0), 14)


def test_small_digits_are_binary_pooled_and_fixed():
    a = small_digits("test", size=14, n=50, seed=0)
    b = small_digits("test", size=14, n=50, seed=0)
    assert a.shape == (50, 196) and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and 0.05 < a.mean() < 0.4


# ---------------------------------------------------------------- data directory, npz

def test_binarized_from_data_dir_argument_and_environment(tmp_path, monkeypatch, offline):
    x = write_packed_npz(tmp_path / mnist.BINARIZED_FILE)
    for split in ("train", "valid", "test"):
        got = load_mnist("binarized", split=split, data_dir=tmp_path)
        assert got.dtype == torch.float32 and torch.equal(got.cpu(), torch.from_numpy(x[split]).float())
    monkeypatch.setenv(cache.ENV_DATA_DIR, str(tmp_path))
    assert cache.data_dir() == tmp_path.resolve()
    assert torch.equal(load_mnist("binarized", split="valid").cpu(), torch.from_numpy(x["valid"]).float())
    for method in ("fixed", "threshold"):     # already binary: every binarization is the identity
        assert torch.equal(load_mnist("binarized", binarize=method).cpu(), torch.from_numpy(x["train"]).float())


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_DATA_DIR, str(tmp_path / "env"))
    assert cache.data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache.data_dir() == tmp_path / "env"
    monkeypatch.delenv(cache.ENV_DATA_DIR)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.data_dir() == tmp_path / ".cache" / "vitools"


@pytest.mark.skipif(not SHARED_NPZ.exists(), reason="the project's shared reference data is not beside the repo")
def test_real_shared_binarized_mnist():
    assert cache.sha256(SHARED_NPZ) == "50de2c8299a5a297789293ab2c30f6fc3cb8c359a15e5e88d5501aa18ebb8fa5"
    x = load_mnist("binarized", data_dir=SHARED_NPZ.parent, download=False)
    assert x.shape == (50000, 784) and abs(x.mean().item() - 0.1306) < 5e-4
    for split in ("valid", "test"):
        assert load_mnist("binarized", split=split, data_dir=SHARED_NPZ.parent).shape == (10000, 784)


@pytest.mark.parametrize("arrays, reason", [
    ({"train": np.zeros((4, 97), np.uint8), "valid": np.zeros((1, 98), np.uint8), "test": np.zeros((1, 98), np.uint8)}, "shape"),
    ({"train": np.full((4, 784), 2, np.uint8), "valid": np.zeros((1, 98), np.uint8), "test": np.zeros((1, 98), np.uint8)}, "0..1"),
    ({"train": np.zeros((4, 784), np.float32), "valid": np.zeros((1, 98), np.uint8), "test": np.zeros((1, 98), np.uint8)}, "integers"),
    ({"train": np.zeros((4, 98), np.uint8)}, "keys train, valid, test"),
])
def test_bad_npz_in_data_dir_is_named_and_left_alone(tmp_path, arrays, reason):
    path = tmp_path / mnist.BINARIZED_FILE
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=reason) as err:
        load_mnist("binarized", data_dir=tmp_path, download=False)
    assert str(path) in str(err.value) and path.exists()


def test_missing_file_without_download_is_file_not_found(cache_dir):
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_mnist("binarized", data_dir=cache_dir, download=False)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_mnist("raw", data_dir=cache_dir, download=False)
    assert files_in(cache_dir) == []


# ------------------------------------------------------------- download: binarized .amat

def serve_amat(root: Path, sizes=(8, 3, 2)) -> dict[str, np.ndarray]:
    x = dict(zip(("train", "valid", "test"), (binary_images(n) for n in sizes)))
    for split, images in x.items():
        write_amat(root / f"binarized_mnist_{split}.amat", images)
    return x


def test_binarized_downloads_amat_converts_to_packed_npz_and_caches(server, cache_dir, monkeypatch):
    root, url = server
    x = serve_amat(root)
    for split in x:
        trust(monkeypatch, mnist.amat_name(split), root / f"binarized_mnist_{split}.amat")
    got = load_mnist("binarized", split="valid", data_dir=cache_dir, base_url=url)
    assert torch.equal(got.cpu(), torch.from_numpy(x["valid"]).float())
    assert files_in(cache_dir) == [mnist.BINARIZED_FILE], "npz kept, .amat and temporary files gone"
    with np.load(cache_dir / mnist.BINARIZED_FILE) as npz:
        assert sorted(npz.files) == ["test", "train", "valid"]
        assert npz["train"].dtype == np.uint8 and npz["train"].shape == (8, 98)
    for path in root.iterdir():
        path.unlink()                            # the cache alone must serve the next call
    assert torch.equal(load_mnist("binarized", data_dir=cache_dir, download=False).cpu(),
                       torch.from_numpy(x["train"]).float())


def test_binarized_download_with_wrong_checksum_leaves_nothing(server, cache_dir):
    root, url = server
    serve_amat(root)                             # real published checksums: these files fail
    with pytest.raises(ValueError, match="sha256 checksum mismatch") as err:
        load_mnist("binarized", data_dir=cache_dir, base_url=url)
    assert f"{url}binarized_mnist_train.amat" in str(err.value)
    assert files_in(cache_dir) == []


@pytest.mark.parametrize("corrupt, reason", [
    (lambda x: "\n".join(" ".join(map(str, r[:-1])) for r in x) + "\n", r"shape \[N, 784\]"),
    (lambda x: "2 " + "\n".join(" ".join(map(str, r)) for r in x)[2:] + "\n", r"0\.\.1"),
    (lambda x: "0 x" + "\n".join(" ".join(map(str, r)) for r in x)[3:] + "\n", "0/1 integers"),
])
def test_binarized_download_with_bad_content_leaves_nothing(server, cache_dir, monkeypatch, corrupt, reason):
    root, url = server
    serve_amat(root)
    bad = root / "binarized_mnist_train.amat"
    bad.write_text(corrupt(binary_images(4)))
    trust(monkeypatch, mnist.amat_name("train"), bad)
    with pytest.raises(ValueError, match=reason) as err:
        load_mnist("binarized", data_dir=cache_dir, base_url=url)
    assert "binarized_mnist_train.amat" in str(err.value)
    assert files_in(cache_dir) == []


def test_http_404_is_an_os_error_naming_the_url(server, cache_dir):
    _, url = server                              # serves nothing
    with pytest.raises(OSError, match="HTTP 404") as err:
        load_mnist("raw", data_dir=cache_dir, base_url=url)
    assert f"{url}train-images-idx3-ubyte.gz" in str(err.value)
    assert files_in(cache_dir) == []


# ------------------------------------------------------------------ download: raw idx

def serve_raw(root: Path, n_train=12, n_test=5):
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = RNG.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = RNG.integers(0, 10, n).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
        data[split] = images.reshape(n, 784), labels
    return data


def trust_raw(monkeypatch, root: Path) -> None:
    for split, kind in mnist.RAW_FILES:
        trust(monkeypatch, mnist.raw_name(split, kind), root / mnist.RAW_FILES[split, kind][0])


def test_raw_downloads_idx_files_with_labels(server, cache_dir, monkeypatch):
    root, url = server
    data = serve_raw(root)
    trust_raw(monkeypatch, root)
    for split, (images, labels) in data.items():
        x, y = load_mnist("raw", split=split, binarize=None, data_dir=cache_dir, base_url=url, return_labels=True)
        assert x.shape == (len(images), 784) and x.dtype == torch.float32
        assert torch.allclose(x.cpu(), torch.from_numpy(images).float() / 255)
        assert torch.equal(y.cpu(), torch.from_numpy(labels).long())
    assert files_in(cache_dir) == sorted(f"mnist/{name}" for name, _ in mnist.RAW_FILES.values())
    assert load_mnist("raw", data_dir=cache_dir, download=False).shape == (12, 784)


def test_raw_download_checked_against_the_published_md5(server, cache_dir):
    root, url = server
    serve_raw(root)                              # real checksums: the synthetic files fail
    with pytest.raises(ValueError, match="md5 checksum mismatch") as err:
        load_mnist("raw", data_dir=cache_dir, base_url=url)
    assert "train-images-idx3-ubyte.gz" in str(err.value)
    assert files_in(cache_dir) == []


@pytest.mark.parametrize("name, make, reason", [
    ("train-images-idx3-ubyte.gz", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "gzip"),
    ("train-images-idx3-ubyte.gz", lambda p: write_idx(p, np.zeros((3, 28, 28)), 2049), "magic number 2049"),
    ("train-images-idx3-ubyte.gz", lambda p: write_idx(p, np.zeros((3, 28, 27)), 2051), "28x28"),
    ("train-images-idx3-ubyte.gz", lambda p: write_idx(p, np.zeros((2, 28, 28)), 2051, dims=(3, 28, 28)), "bytes of data"),
    ("train-labels-idx1-ubyte.gz", lambda p: write_idx(p, np.full(12, 12), 2049), r"0\.\.9"),
])
def test_raw_download_with_bad_content_leaves_nothing(server, cache_dir, monkeypatch, name, make, reason):
    root, url = server
    serve_raw(root)
    make(root / name)
    trust_raw(monkeypatch, root)
    with pytest.raises(ValueError, match=reason) as err:
        load_mnist("raw", data_dir=cache_dir, base_url=url)
    assert name in str(err.value)
    assert not any(f.endswith(name) or f.endswith(".part") for f in files_in(cache_dir))


def test_raw_images_and_labels_must_agree_in_count(server, cache_dir, monkeypatch):
    root, url = server
    serve_raw(root)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(11), 2049)
    trust_raw(monkeypatch, root)
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        load_mnist("raw", data_dir=cache_dir, base_url=url)


# ----------------------------------------------------------------------- generic cache

def test_generic_register_fetch_and_corrupt_cache(server, cache_dir, monkeypatch):
    root, url = server
    monkeypatch.setattr(cache, "REGISTRY", dict(cache.REGISTRY))
    (root / "notes.txt").write_text("hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    cache.register("test/notes.txt", "https://example.invalid/data/notes.txt", checksum=f"md5:{md5}")
    path = cache.fetch("test/notes.txt", cache_dir, base_url=url, progress=False)
    assert path == cache_dir / "test" / "notes.txt" and path.read_text() == "hello"
    assert cache.fetch("test/notes.txt", cache_dir, download=False) == path
    path.write_text("tampered")
    with pytest.raises(ValueError, match="corrupt.*md5 checksum mismatch"):
        cache.fetch("test/notes.txt", cache_dir, download=False)


def test_download_cut_short_leaves_no_file_under_its_name(server, cache_dir):
    """Only the hidden resumable part stays (tests/test_data_faults.py resumes it)."""
    root, url = server
    (root / "big.bin").write_bytes(bytes(5000))
    with pytest.raises(OSError, match="broke off"):
        cache.download_file(f"{url}short/big.bin", cache_dir / "big.bin", progress=False)
    assert files_in(cache_dir) == [cache.resumable_path(cache_dir / "big.bin", f"{url}short/big.bin").name]


def test_mirrors_are_tried_in_order(server, cache_dir):
    root, url = server
    (root / "a.txt").write_text("a")
    path = cache.download_file([f"{url}missing/a.txt", f"{url}a.txt"], cache_dir / "a.txt", progress=False)
    assert path.read_text() == "a"


def test_checksum_helpers():
    data = Path(__file__).read_bytes()
    assert cache.sha256(__file__) == hashlib.sha256(data).hexdigest()
    for checksum in (hashlib.sha256(data).hexdigest(), "sha256:" + hashlib.sha256(data).hexdigest(),
                     "md5:" + hashlib.md5(data).hexdigest().upper(), None):
        cache.verify(__file__, checksum)
    with pytest.raises(ValueError, match="checksum mismatch"):
        cache.verify(__file__, "md5:" + "0" * 32)
    with pytest.raises(ValueError, match="checksum must be"):
        cache.verify(__file__, "sha1:" + "0" * 40)


def test_write_npz_is_reproducible_and_atomic(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.uint8), "b": np.eye(3)}
    cache.write_npz(tmp_path / "one.npz", arrays)
    cache.write_npz(tmp_path / "two.npz", arrays)
    assert cache.sha256(tmp_path / "one.npz") == cache.sha256(tmp_path / "two.npz")
    with np.load(tmp_path / "one.npz") as npz:
        assert np.array_equal(npz["b"], np.eye(3))
    with pytest.raises(RuntimeError), cache.atomic_path(tmp_path / "three.npz") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert files_in(tmp_path) == ["one.npz", "two.npz"]


@pytest.mark.parametrize("kwargs, arg", [
    ({"name": "../outside"}, "name"),
    ({"urls": "ftp://example.org/x"}, "urls"),
    ({"checksum": "abc"}, "checksum"),
])
def test_register_rejects_bad_entries(kwargs, arg):
    entry = {"name": "test/x", "urls": "https://example.org/x", **kwargs}
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        cache.register(**entry)
    assert "test/x" not in cache.REGISTRY


# ----------------------------------------------------------------------- argument checks

@pytest.mark.parametrize("kwargs, arg", [
    ({"source": "cifar"}, "source"),
    ({"source": ["bundled"]}, "source"),
    ({"split": "valid"}, "split"),
    ({"source": "raw", "split": "dev"}, "split"),
    ({"binarize": "stochastic"}, "binarize"),
    ({"binarize": True}, "binarize"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"binarize": "fixed", "seed": None}, "seed"),
    ({"data_dir": 123}, "data_dir"),
    ({"data_dir": ""}, "data_dir"),
    ({"download": "yes"}, "download"),
    ({"return_labels": 1}, "return_labels"),
    ({"base_url": "ftp://example.org/"}, "base_url"),
    ({"base_url": 5}, "base_url"),
    ({"device": "gpu0"}, "device"),
    ({"source": "binarized", "binarize": None}, "binarize"),
    ({"source": "binarized", "return_labels": True}, "return_labels"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b") as err:
        load_mnist(**kwargs)
    assert repr(kwargs[arg] if arg in kwargs else None) in str(err.value)


@pytest.mark.parametrize("x, kwargs, arg", [
    ([0.5], {}, "x"),
    (torch.tensor([0.5, 1.5]), {}, "x"),
    (torch.tensor([0, 1]), {}, "x"),
    (torch.tensor([0.5]), {"method": "coin"}, "method"),
    (torch.tensor([0.5]), {"method": "fixed"}, "seed"),
])
def test_binarize_checks_its_arguments(x, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        binarize(x, **kwargs)
