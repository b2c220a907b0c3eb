"""Download once, verify, cache: the file layer under every vitools data set.

In the style of d2l's ``DATA_HUB``, a *name* maps to the addresses a file can be fetched
from and a checksum. :func:`fetch` returns the local path of a named file, downloading it
into the data directory the first time. Nothing half-written ever lands in the cache: a
download goes to a hidden temporary file beside its destination, is checked (length,
checksum, then the registered ``validate`` function, which parses the file and raises
``ValueError`` when its content is wrong) and only then moved into place with
``os.replace``. A file that fails is deleted and the error names the address, the file
and what was wrong. A download that breaks off keeps the bytes it received in a hidden
``.<name>.<address hash>.resume`` file beside the destination; the next fetch of the same
address resumes from there with an HTTP Range request (or starts again, if the server sends
the whole file).

The data directory is, in order: the ``data_dir`` argument, the ``VITOOLS_DATA_DIR``
environment variable, ``~/.cache/vitools``. Pointing it at a folder that already holds
the files (``data_dir="../shared/data"``) means nothing is downloaded.

Example (a data module registers its files once, at import)::

    from vitools.data import cache

    cache.register("music/jsb.pkl", urls=["https://example.org/jsb.pkl"],
                   checksum="sha256:<64 hex digits>", validate=read_pickle_or_raise_valueerror)
    path = cache.fetch("music/jsb.pkl")                  # ~/.cache/vitools/music/jsb.pkl
    path = cache.fetch("music/jsb.pkl", base_url="http://127.0.0.1:8000/")  # a mirror

Checksums are written ``"sha256:<hex>"`` or ``"md5:<hex>"`` (a bare 64-digit hex string
is taken as SHA-256); ``None`` where no published checksum is known, in which case the
``validate`` function is the only guard. A file already in the data directory is checked
against its checksum on every :func:`fetch`; ``validate`` runs on arrival, and the loader
that reads the file is expected to parse it with the same checks.

API: :func:`data_dir`, :func:`register` / :func:`resource` / ``REGISTRY``, :func:`fetch`,
:func:`download_file` (unregistered addresses), :func:`resumable_path`, :func:`sha256` / :func:`file_hash` /
:func:`verify`, :func:`atomic_path` (write anything atomically) and :func:`write_npz`
(a reproducible ``.npz``, atomically).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import io
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

ENV_DATA_DIR = "VITOOLS_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/vitools"
TIMEOUT_S = 60.0
CHUNK = 1 << 20
_HEX_LENGTH = {"sha256": 64, "md5": 32}
_URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class Resource:
    """One registered file: ``name`` is its path relative to the data directory."""

    name: str
    urls: tuple[str, ...]
    checksum: str | None = None          # "sha256:<hex>" / "md5:<hex>" / None
    validate: Callable[[Path], object] | None = None   # raises ValueError on bad content


REGISTRY: dict[str, Resource] = {}


# ---------------------------------------------------------------------------- locations

def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$VITOOLS_DATA_DIR``, else ``~/.cache/vitools``.

    The folder is not created here; a download creates it.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_DATA_DIR, "").strip() or DEFAULT_DATA_DIR
    elif not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir).strip():
        raise ValueError(f"data_dir must be a path (str or os.PathLike) or None, got {data_dir!r}")
    return Path(data_dir).expanduser().resolve()


_resolve_data_dir = data_dir   # fetch() and loaders take an argument of the same name


def check_base_url(base_url: str | None) -> str | None:
    """``None``, or an ``http``, ``https`` or ``file`` URL (a mirror's folder)."""
    if base_url is None:
        return None
    if not _is_url(base_url):
        raise ValueError(f"base_url must be an http(s):// or file:// URL or None, got {base_url!r}")
    return base_url


def _is_url(url) -> bool:
    return isinstance(url, str) and urllib.parse.urlparse(url).scheme in _URL_SCHEMES


# ----------------------------------------------------------------------------- checksums

def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file."""
    return file_hash(path, "sha256")


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """``"md5:ab.."`` -> ``("md5", "ab..")``; a bare 64-digit hex string is SHA-256."""
    if checksum is None:
        return None
    algorithm, _, digest = checksum.rpartition(":") if isinstance(checksum, str) else ("", "", "")
    algorithm = (algorithm or "sha256").lower()
    if (algorithm not in _HEX_LENGTH or len(digest) != _HEX_LENGTH[algorithm]
            or not re.fullmatch(r"[0-9a-fA-F]+", digest)):
        raise ValueError(f"checksum must be 'sha256:<64 hex>', 'md5:<32 hex>' or None, got {checksum!r}")
    return algorithm, digest.lower()


def verify(path: str | os.PathLike, checksum: str | None) -> None:
    """Raise ``ValueError`` when the file's digest differs from ``checksum`` (``None``: no check).

    The message gives both digests; callers add which file and address it was.
    """
    parsed = parse_checksum(checksum)
    if parsed is None:
        return
    algorithm, expected = parsed
    got = file_hash(path, algorithm)
    if got != expected:
        raise ValueError(f"{algorithm} checksum mismatch: expected {expected}, got {got}")


# ------------------------------------------------------------------------------ registry

def register(name: str, urls: str | Sequence[str], checksum: str | None = None,
             validate: Callable[[Path], object] | None = None) -> Resource:
    """Add (or replace) a named file. ``urls`` are tried in order (mirrors).

    ``name`` is a relative path inside the data directory; prefix it with a folder
    (``"mnist/..."``, ``"music/..."``) so that modules do not collide.
    """
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or name.startswith("/") or ".." in parts:
        raise ValueError(f"name must be a relative path inside the data directory, got {name!r}")
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    if not urls or not all(_is_url(u) for u in urls):
        raise ValueError(f"urls must be one or more http(s):// or file:// URLs, got {urls!r}")
    parse_checksum(checksum)
    REGISTRY[name] = Resource(name, urls, checksum, validate)
    return REGISTRY[name]


def resource(name: str) -> Resource:
    """The registered entry for ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"name must be a registered file, got {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def mirror_url(base_url: str, url: str) -> str:
    """The address of ``url``'s file name under another folder ``base_url``."""
    filename = PurePosixPath(urllib.parse.urlparse(url).path).name
    return urllib.parse.urljoin(base_url.rstrip("/") + "/", filename)


def fetch(name: str, data_dir: str | os.PathLike | None = None, base_url: str | None = None,
          download: bool = True, progress: bool = True) -> Path:
    """Local path of the registered file ``name``, downloading it on first use.

    A file already in the data directory is checked against the registered checksum
    (its content is parsed by the loader that uses it). ``base_url`` replaces the
    registered addresses by a mirror folder holding files of the same names.
    ``download=False`` turns a missing file into ``FileNotFoundError``.
    """
    entry = resource(name)
    base_url = check_base_url(base_url)
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    path = _resolve_data_dir(data_dir) / entry.name
    if path.is_file():
        try:
            verify(path, entry.checksum)
        except ValueError as err:
            raise ValueError(f"{path} (the cached copy of {name!r}) is corrupt: {err}; "
                             f"delete it to download it again") from None
        return path
    if not download:
        raise FileNotFoundError(f"{path} does not exist and download=False; "
                                f"place the file there or allow the download")
    urls = [mirror_url(base_url, entry.urls[0])] if base_url else list(entry.urls)
    return download_file(urls, path, entry.checksum, entry.validate, progress)


# ------------------------------------------------------------------------------ writing

class CacheNotWritable(PermissionError):
    """The data directory cannot be written; the message names it and ``VITOOLS_DATA_DIR``."""


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    On any exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as err:
        if not isinstance(err, PermissionError) and err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise CacheNotWritable(
            f"cannot write to the data directory {dest.parent} ({err.strerror or err}); pass data_dir= "
            f"or set {ENV_DATA_DIR} to a folder you can write to") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_bundled_npz(path: str | os.PathLike, expected_sha256: str, build_script: str) -> dict[str, np.ndarray]:
    """Every array of a bundled ``.npz`` file, after checking its sha256 against ``expected_sha256``
    (a mismatch names the file and the ``build_script`` that rebuilds it)."""
    got = sha256(path)
    if got != expected_sha256:
        raise ValueError(f"{path} has sha256 {got}, expected {expected_sha256}; restore it from git "
                         f"or rebuild it with `python {build_script}`")
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], compress: bool = True) -> Path:
    """Write ``arrays`` as a NumPy ``.npz``, atomically and byte-for-byte reproducibly.

    ``np.savez_compressed`` stamps each member with the current time; here every member
    gets a fixed date, so the same arrays give the same file (and the same sha256).
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=method) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9 if compress else None)
    return Path(path)


# ----------------------------------------------------------------------------- download

def download_file(urls: str | Sequence[str], dest: str | os.PathLike, checksum: str | None = None,
                  validate: Callable[[Path], object] | None = None, progress: bool = True) -> Path:
    """Download the first of ``urls`` that works into ``dest``, verified, atomically.

    Raises ``ValueError`` when every address served a file with the wrong checksum or
    content, ``OSError`` when at least one could not be downloaded at all; the message
    lists every address tried and why it failed.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    failures: list[tuple[str, Exception]] = []
    for url in urls:
        try:
            _download_one(url, dest, checksum, validate, progress)
            return dest
        except CacheNotWritable:
            raise                                        # no other address can help
        except (OSError, ValueError) as err:
            failures.append((url, err))
    reasons = "; ".join(str(err) for _, err in failures)
    kind = ValueError if all(isinstance(e, ValueError) for _, e in failures) else OSError
    raise kind(f"could not obtain {dest} (nothing was written): {reasons}")


def resumable_path(dest: Path, url: str) -> Path:
    """Where the bytes of an interrupted download of ``url`` into ``dest`` wait to be resumed: a
    hidden file beside ``dest``, named after the address so that no other address continues it."""
    return dest.parent / f".{dest.name}.{hashlib.sha256(url.encode()).hexdigest()[:12]}.resume"


def _claim(partial: Path, tmp: Path) -> int:
    """Move an interrupted download onto this download's own temporary file and return its length
    (0 when there is none). ``os.replace`` is atomic, so of two processes only one resumes it."""
    try:
        os.replace(partial, tmp)
    except FileNotFoundError:
        return 0
    return tmp.stat().st_size


def _resumed_at(response, offset: int) -> int:
    """The byte the server's answer starts at: ``offset`` for a 206 whose Content-Range starts there,
    0 for a server that ignored the Range request and sends the whole file again."""
    if not offset or response.status != 206:
        return 0
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if not match or int(match.group(1)) != offset:
        raise OSError(f"the server resumed at {response.headers.get('Content-Range')!r}, not at byte {offset}")
    return offset


def _download_one(url: str, dest: Path, checksum, validate, progress: bool) -> None:
    """One address. Bytes already received by an interrupted download of the same address are
    resumed with an HTTP Range request; an interruption keeps what has arrived for the next try."""
    partial = resumable_path(dest, url)
    with atomic_path(dest) as tmp:
        offset = _claim(partial, tmp)
        request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
        total = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                offset = _resumed_at(response, offset)
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else None
                with open(tmp, "ab" if offset else "wb") as out, \
                        tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=dest.name, disable=not progress, leave=False) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as err:
            if err.code != 416:                          # 416: the kept bytes do not fit the file any more
                _keep(tmp, partial)
            raise OSError(f"{url}: HTTP {err.code} {err.reason}") from None
        except BaseException as err:
            _keep(tmp, partial)
            if isinstance(err, urllib.error.URLError):
                raise OSError(f"{url}: {err.reason}") from None
            if isinstance(err, (http.client.HTTPException, TimeoutError)):
                raise OSError(f"{url}: the download broke off ({type(err).__name__}: {err}); "
                              f"a later fetch resumes it") from None
            raise
        size = tmp.stat().st_size
        if total is not None and size != total:
            _keep(tmp, partial)
            raise OSError(f"{url}: the download broke off after {size} of {total} bytes; a later fetch resumes it")
        try:
            verify(tmp, checksum)
            if validate is not None:
                validate(tmp)
        except ValueError as err:
            raise ValueError(f"{url} is not a valid {dest.name}: {err}") from None


def _keep(tmp: Path, partial: Path) -> None:
    """Keep the bytes received so far (if any) for a later fetch to resume."""
    with contextlib.suppress(OSError):
        if tmp.stat().st_size:
            os.replace(tmp, partial)
