"""Tests for vitools.data.music: bundled chorales, the canonical JSON, the pickle download."""
import functools
import http.server
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vitools.data import music

SHARED_JSON = Path(__file__).resolve().parents[2] / "shared" / "data" / music.JSON_FILE
TINY = {"train": [[(60, 64, 67), (62,), ()], [(21, 108)]], "valid": [[(55, 59)]], "test": [[(48,), (50, 53)]]}


def _expected_roll(piece):
    roll = np.zeros((len(piece), 88), dtype=np.float32)
    for t, pitches in enumerate(piece):
        for p in pitches:
            roll[t, p - 21] = 1
    return roll


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_bundled_chorales_are_binary_padded_and_split():
    sizes = {}
    for split in music.SPLITS:
        rolls = music.load_chorales(split=split, device="cpu")
        n, t_max, keys = rolls.x.shape
        assert keys == 88 and t_max == rolls.lengths.max()
        assert ((rolls.x == 0) | (rolls.x == 1)).all()
        assert torch.equal(rolls.mask.sum(1).long(), rolls.lengths)
        assert (rolls.x * (1 - rolls.mask[..., None])).sum() == 0         # padding is empty
        notes = rolls.x.sum(-1)[rolls.mask > 0]
        assert 2.5 < notes.mean() < 4.5                                   # four-part chorales
        sizes[split] = n
    assert sum(sizes.values()) == 433 and sizes["train"] > sizes["test"] > 50
    cropped = music.load_chorales(split="test", max_steps=16, device="cpu")
    assert cropped.x.shape[1] == 16 and cropped.lengths.max() == 16


def test_bundled_file_is_verified(tmp_path):
    with pytest.raises(ValueError, match="sha256 checksum mismatch"):
        music.read_bundled(music.BUNDLED_PATH, "sha256:" + "0" * 64)
    with pytest.raises(FileNotFoundError, match="build_chorales.py"):
        music.read_bundled(tmp_path / "missing.npz")


def test_json_format_of_the_shared_data_folder(tmp_path):
    (tmp_path / music.JSON_FILE).write_text(json.dumps({k: [[list(s) for s in p] for p in v] for k, v in TINY.items()}))
    rolls = music.load_chorales("jsb", "train", data_dir=tmp_path, download=False, device="cpu")
    assert rolls.lengths.tolist() == [3, 1]
    np.testing.assert_array_equal(rolls.x[0].numpy(), _expected_roll(TINY["train"][0]))
    np.testing.assert_array_equal(rolls.x[1, :1].numpy(), _expected_roll(TINY["train"][1]))


@pytest.mark.skipif(not SHARED_JSON.is_file(), reason="the project's shared data folder is not here")
def test_canonical_jsb_split_sizes():
    for split, n in (("train", 229), ("valid", 76), ("test", 77)):
        rolls = music.load_chorales("jsb", split, data_dir=SHARED_JSON.parent, download=False, device="cpu")
        assert rolls.x.shape[0] == n


def test_pickle_download_from_a_local_server(tmp_path, server):
    root, url = server
    # the real file is a Python 2 pickle of {split: [piece]}, a piece a list of tuples of pitches
    (root / "JSB%20Chorales.pickle".replace("%20", " ")).write_bytes(pickle.dumps(TINY, protocol=2))
    data_dir = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="download=False"):
        music.load_chorales("jsb", data_dir=data_dir, download=False)
    rolls = music.load_chorales("jsb", "test", data_dir=data_dir, base_url=url, device="cpu")
    assert rolls.lengths.tolist() == [2]
    np.testing.assert_array_equal(rolls.x[0].numpy(), _expected_roll(TINY["test"][0]))
    assert (data_dir / music.PICKLE_NAME).is_file()
    # cached: a second load needs no server
    assert music.load_chorales("jsb", "valid", data_dir=data_dir, download=False, device="cpu").x.shape == (1, 1, 88)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload, message", [
    (b"not a pickle", "not a readable pickle"),
    (pickle.dumps({"train": []}), "must hold a dict with keys"),
    (pickle.dumps({"train": [[(60,)]], "valid": [[(10,)]], "test": [[(60,)]]}), "pitches must be MIDI numbers"),
    (pickle.dumps(Evil()), "asks for builtins.print"),
])
def test_bad_downloads_are_refused_and_not_cached(tmp_path, server, payload, message):
    root, url = server
    (root / "JSB Chorales.pickle").write_bytes(payload)
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=message):
        music.load_chorales("jsb", data_dir=data_dir, base_url=url)
    assert not (data_dir / music.PICKLE_NAME).exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="source must be one of"):
        music.load_chorales("nottingham")
    with pytest.raises(ValueError, match="split must be one of"):
        music.load_chorales(split="dev")
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        music.load_chorales(max_steps=0)
    with pytest.raises(ValueError, match="base_url must be"):
        music.load_chorales("jsb", base_url="ftp://example.org/")
    with pytest.raises(ValueError, match="data_dir must be a path"):
        music.load_chorales("jsb", data_dir=3)
