"""Faults of the download cache beyond a corrupt file, a 404 and a truncated gzip (those are in
tests/test_data.py): a download cut off and resumed later from where it broke off, a data
directory that cannot be written, and two processes filling the cache at once. Every test runs against a real HTTP
server on 127.0.0.1.

Tests run as root here, where ``chmod`` cannot make a folder unwritable; the unwritable cache is
made by failing the file system calls the cache makes (``mkdir`` / ``mkstemp``) with the errors
a read-only or foreign folder gives (EACCES, EROFS).
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from vitools.data import cache

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 4096                      # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
NAME = "tests/faults.bin"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name != Path(NAME).name)


@pytest.fixture
def registered():
    yield lambda base_url: cache.register(NAME, base_url + "faults.bin", checksum=DIGEST)
    cache.REGISTRY.pop(NAME, None)


@pytest.fixture
def server():
    """(state, base_url): serves PAYLOAD at /faults.bin in 64 KiB chunks ``state["delay"]`` seconds
    apart; while ``state["cut_after"]`` is set it closes the connection after sending that many
    bytes. It answers ``Range: bytes=N-`` with 206 from byte N (``state["ranges"]`` lists the Ns),
    or ignores it when ``state["honour_range"]`` is False. ``state["sent"]`` counts the bytes sent,
    ``state["most_at_once"]`` the largest number of downloads in flight together."""
    state = {"delay": 0.0, "cut_after": None, "active": 0, "most_at_once": 0, "requests": 0,
             "honour_range": True, "ranges": [], "sent": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != "/faults.bin":
                self.send_error(404)
                return
            with lock:
                state["requests"] += 1
                state["active"] += 1
                state["most_at_once"] = max(state["most_at_once"], state["active"])
            try:
                asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(asked.group(1)) if asked and state["honour_range"] else 0
                if asked:
                    state["ranges"].append(int(asked.group(1)))
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                limit = min(state["cut_after"], len(body)) if state["cut_after"] is not None else len(body)
                for first in range(0, limit, 65536):
                    chunk = body[first:min(first + 65536, limit)]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    state["sent"] += len(chunk)
                    time.sleep(state["delay"])
                if limit < len(body):
                    self.close_connection = True
            finally:
                with lock:
                    state["active"] -= 1

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def resumable(folder: Path, url: str) -> Path:
    return cache.resumable_path(folder / NAME, url + "faults.bin")


# ------------------------------------------------------------------ interrupted, then again

def test_interrupted_download_is_resumed_later_from_where_it_broke_off(server, registered, tmp_path):
    state, url = server
    registered(url)
    state["cut_after"] = 300_000
    with pytest.raises(OSError, match="broke off after 300000 of 1048576 bytes; a later fetch resumes it"):
        cache.fetch(NAME, data_dir=tmp_path, progress=False)
    assert not (tmp_path / NAME).exists()              # nothing half-written under the file's name
    kept = resumable(tmp_path, url)
    assert leftovers(tmp_path) == [kept.name] and kept.name.startswith(".")
    assert kept.read_bytes() == PAYLOAD[:300_000]
    state["cut_after"] = None                          # the connection is back
    path = cache.fetch(NAME, data_dir=tmp_path, progress=False)
    assert path == tmp_path / NAME and path.read_bytes() == PAYLOAD
    assert state["ranges"] == [300_000]                # asked only for the rest ...
    assert state["sent"] == len(PAYLOAD)               # ... and got only the rest: no byte twice
    assert leftovers(tmp_path) == [] and state["requests"] == 2
    assert cache.fetch(NAME, data_dir=tmp_path, progress=False) == path    # cached: no third request
    assert state["requests"] == 2


def test_a_download_cut_twice_resumes_twice(server, registered, tmp_path):
    state, url = server
    registered(url)
    state["cut_after"] = 200_000
    for received in (200_000, 400_000):
        with pytest.raises(OSError, match=f"broke off after {received} of 1048576 bytes"):
            cache.fetch(NAME, data_dir=tmp_path, progress=False)
    state["cut_after"] = None
    assert cache.fetch(NAME, data_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert state["ranges"] == [200_000, 400_000] and state["sent"] == len(PAYLOAD)


def test_a_server_that_ignores_the_range_request_sends_the_whole_file_again(server, registered, tmp_path):
    state, url = server
    registered(url)
    state["cut_after"], state["honour_range"] = 300_000, False
    with pytest.raises(OSError, match="broke off"):
        cache.fetch(NAME, data_dir=tmp_path, progress=False)
    state["cut_after"] = None
    assert cache.fetch(NAME, data_dir=tmp_path, progress=False).read_bytes() == PAYLOAD   # not 300,000 bytes twice
    assert state["ranges"] == [300_000] and state["sent"] == 300_000 + len(PAYLOAD)
    assert leftovers(tmp_path) == []


def test_kept_bytes_that_are_wrong_fail_the_checksum_and_are_discarded(server, registered, tmp_path):
    state, url = server
    registered(url)
    kept = resumable(tmp_path, url)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"\xff" * 300_000)                # not the file's first bytes
    with pytest.raises(ValueError, match="sha256"):
        cache.fetch(NAME, data_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == [] and not (tmp_path / NAME).exists()
    assert cache.fetch(NAME, data_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert state["ranges"] == [300_000]                # the second fetch started from byte 0


def test_download_cut_by_an_exception_mid_stream_keeps_what_arrived(server, registered, tmp_path, monkeypatch):
    """A KeyboardInterrupt (or any exception) while the bytes arrive keeps the bytes received, only
    under the hidden resumable name, and re-raises; the next fetch resumes from there."""
    state, url = server
    registered(url)
    real_urlopen = cache.urllib.request.urlopen

    def urlopen(*args, **kwargs):
        response = real_urlopen(*args, **kwargs)
        real_read, calls = response.read, {"n": 0}

        def read(*a):
            calls["n"] += 1
            if calls["n"] == 3:                     # two blocks written, then Ctrl-C
                raise KeyboardInterrupt
            return real_read(*a)

        response.read = read
        return response

    monkeypatch.setattr(cache, "CHUNK", 65536)
    monkeypatch.setattr(cache.urllib.request, "urlopen", urlopen)
    with pytest.raises(KeyboardInterrupt):
        cache.fetch(NAME, data_dir=tmp_path, progress=False)
    assert not (tmp_path / NAME).exists()
    assert leftovers(tmp_path) == [resumable(tmp_path, url).name]
    assert resumable(tmp_path, url).read_bytes() == PAYLOAD[:2 * 65536]
    monkeypatch.undo()
    assert cache.fetch(NAME, data_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert state["ranges"] == [2 * 65536] and leftovers(tmp_path) == []


# --------------------------------------------------------------------- unwritable directory

@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
@pytest.mark.parametrize("where", ["mkstemp", "mkdir"])
def test_unwritable_data_directory_is_a_clear_error_naming_it(server, registered, tmp_path, monkeypatch, code, where):
    state, url = server
    registered(url)
    folder = tmp_path / "readonly"

    def refuse(*args, **kwargs):
        raise (PermissionError if code == errno.EACCES else OSError)(code, os.strerror(code))

    if where == "mkstemp":
        monkeypatch.setattr(cache.tempfile, "mkstemp", refuse)
    else:
        monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(PermissionError) as err:
        cache.fetch(NAME, data_dir=folder, progress=False)
    message = str(err.value)
    assert str(folder) in message and "VITOOLS_DATA_DIR" in message and "data_dir=" in message
    assert os.strerror(code) in message
    assert state["requests"] <= 1                      # one refusal is enough: no retry per mirror
    monkeypatch.undo()
    assert cache.fetch(NAME, data_dir=folder, progress=False).read_bytes() == PAYLOAD


def test_unwritable_directory_through_the_environment_variable(server, registered, tmp_path, monkeypatch):
    state, url = server
    registered(url)
    monkeypatch.setenv("VITOOLS_DATA_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setattr(cache.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(PermissionError, match=r"env-cache.*VITOOLS_DATA_DIR"):
        cache.fetch(NAME, progress=False)


def test_other_os_errors_are_not_reported_as_permission_problems(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError) as err:
        with cache.atomic_path(tmp_path / "x.bin"):
            pass
    assert not isinstance(err.value, PermissionError) and err.value.errno == errno.ENOSPC


# ------------------------------------------------------------------- two processes at once

CHILD = """
import pathlib, sys, time
from vitools.data import cache
cache.register({name!r}, {url!r}, checksum={digest!r})
ready = pathlib.Path({barrier!r})
(ready / sys.argv[1]).touch()                     # both imported: start together
deadline = time.time() + 120
while len(list(ready.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.005)
path = cache.fetch({name!r}, data_dir={folder!r}, progress=False)
print(path)
"""


@pytest.mark.parametrize("kept", [0, 300_000], ids=["fresh", "with-an-interrupted-download-waiting"])
def test_two_processes_fill_the_cache_at_once_and_both_succeed(server, tmp_path, kept):
    """Each process writes its own temporary file; a waiting interrupted download is claimed by
    one of them (an atomic rename), and the other starts from byte 0."""
    state, url = server
    state["delay"] = 0.05                               # 16 chunks: ~0.8 s per download, so they overlap
    folder, barrier = tmp_path / "shared", tmp_path / "barrier"
    barrier.mkdir()
    if kept:
        resumable(folder, url).parent.mkdir(parents=True)
        resumable(folder, url).write_bytes(PAYLOAD[:kept])
    code = CHILD.format(name=NAME, url=url + "faults.bin", digest=DIGEST, barrier=str(barrier), folder=str(folder))
    env = dict(os.environ, OMP_NUM_THREADS="1", VITOOLS_THREADS="1", PYTHONPATH=str(ROOT))
    children = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env) for i in range(2)]
    seen = []                                           # every look at the file while they write
    while any(c.poll() is None for c in children):
        target = folder / NAME
        if target.exists():
            seen.append(target.read_bytes() == PAYLOAD)
        time.sleep(0.005)
    outs = [c.communicate(timeout=60) for c in children]
    for child, (out, err) in zip(children, outs):
        assert child.returncode == 0, err[-2000:]
        assert Path(out.strip()) == folder / NAME
    assert state["most_at_once"] == 2, state           # the two downloads did overlap
    assert (folder / NAME).read_bytes() == PAYLOAD
    assert all(seen), "a reader saw a half-written file"
    assert leftovers(folder) == []
    assert state["ranges"] == ([kept] if kept else [])   # one of them resumed, once
