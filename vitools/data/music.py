"""Polyphonic music as 88-key piano rolls, for the VRNN of the FIVO notebook.

Maddison et al. 2017 (FIVO, arXiv:1705.09279) evaluate on the four polyphonic-music sets
of Boulanger-Lewandowski et al. 2012 (arXiv:1206.6392); the smallest is JSB Chorales.
:func:`load_chorales` returns ``x [N, T_max, 88]`` (float32 of 0/1, zero-padded), the
``mask [N, T_max]`` and the ``lengths [N]`` on :func:`vitools.config.device`. Column ``k``
is MIDI pitch ``21 + k``; one step is one quarter note.

``source="bundled"``
    Offline: Bach chorales from the music21 corpus, converted by ``data/build_chorales.py``
    and shipped as ``vitools/data/bundled/chorales_quarter.npz`` (433 pieces, fixed 60/20/20 split;
    see vitools/data/bundled/README.md). The file's sha256 is checked on every load. Not the canonical split.
``source="jsb"``
    The canonical JSB Chorales split (229 train / 76 valid / 77 test). Read from
    ``jsb-chorales-quarter.json`` in the data directory when it is there (keys train /
    valid / test, a piece a list of steps, a step a list of MIDI pitches), else from the
    original pickle ``JSB Chorales.pickle`` (the file the FIVO repository's README points
    to; the same structure, pickled by Python 2), downloaded once through
    :mod:`vitools.data.cache`. The pickle is read with an unpickler that only accepts
    lists, tuples, dicts, sets and numbers, so a tampered file cannot run code.

Example::

    >>> music = vt.data.music.load_chorales(split="test")          # bundled, offline
    >>> music.x.shape, music.lengths[:3]
    >>> jsb = vt.data.music.load_chorales("jsb", data_dir="../shared/data")
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import checks, config
from ..smc import pad_sequences
from . import cache

LOWEST, KEYS = 21, 88
SPLITS = ("train", "valid", "test")
BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "chorales_quarter.npz"   # package data
BUNDLED_SHA256 = "8ff9e3294f96911a6d6329c0d8c664a713a45605037e52e7702a4836b4a41014"
JSON_FILE = "jsb-chorales-quarter.json"
PICKLE_NAME = "music/jsb_chorales.pickle"
PICKLE_URL = "http://www-etud.iro.umontreal.ca/~boulanni/JSB%20Chorales.pickle"


class PianoRolls(NamedTuple):
    x: torch.Tensor          # [N, T_max, 88] float32 of 0/1, zero after each piece's end
    mask: torch.Tensor       # [N, T_max] float32: 1 on the steps of the piece
    lengths: torch.Tensor    # [N] long


def piano_roll(steps) -> np.ndarray:
    """One piece as a list of steps (each a list of MIDI pitches 21..108) -> uint8 ``[T, 88]``."""
    roll = np.zeros((len(steps), KEYS), dtype=np.uint8)
    for t, pitches in enumerate(steps):
        keys = np.asarray(list(pitches), dtype=np.int64) - LOWEST
        if keys.size and (keys.min() < 0 or keys.max() >= KEYS):
            raise ValueError(f"pitches must be MIDI numbers in 21..108, got {sorted(pitches)} at step {t}")
        roll[t, keys] = 1
    return roll


class _SafeUnpickler(pickle.Unpickler):
    """Only containers and numbers: a pickle that asks for anything else is refused."""

    ALLOWED = {("builtins", n) for n in ("list", "tuple", "dict", "set", "frozenset", "int", "float")} | \
              {("__builtin__", n) for n in ("list", "tuple", "dict", "set", "frozenset", "int", "float")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module.replace("__builtin__", "builtins"), name)
        raise ValueError(f"the pickle asks for {module}.{name}, which a piano-roll file never needs")


def _check_pieces(data, where) -> dict[str, list[np.ndarray]]:
    """Structure {split: [piece]}, a piece a list of steps of pitches -> {split: [uint8 [T, 88]]}."""
    if not isinstance(data, dict) or not set(SPLITS) <= set(data):
        raise ValueError(f"{where} must hold a dict with keys {SPLITS}, got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    out = {}
    for split in SPLITS:
        pieces = data[split]
        if not isinstance(pieces, (list, tuple)) or not pieces or not all(len(p) for p in pieces):
            raise ValueError(f"{where}[{split!r}] must be a non-empty list of non-empty pieces")
        out[split] = [piano_roll(piece) for piece in pieces]
    return out


def read_pickle(path) -> dict[str, list[np.ndarray]]:
    """Parse a Boulanger-Lewandowski pickle (Python 2 or 3) safely; raises ValueError if wrong."""
    try:
        data = _SafeUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path} is not a readable pickle: {err}") from None
    return _check_pieces(data, str(path))


def read_json(path) -> dict[str, list[np.ndarray]]:
    """Parse ``jsb-chorales-quarter.json`` (the format of the project's shared data folder)."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return _check_pieces(data, str(path))


def read_bundled(path=BUNDLED_PATH, checksum: str | None = BUNDLED_SHA256) -> dict[str, list[np.ndarray]]:
    """The bundled npz (written by data/build_chorales.py), checked against its sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with data/build_chorales.py")
    cache.verify(path, checksum)
    with np.load(path, allow_pickle=False) as archive:
        out = {}
        for split in SPLITS:
            rolls = np.unpackbits(archive[f"{split}_rolls"], axis=1)[:, :KEYS]
            out[split] = np.split(rolls, np.cumsum(archive[f"{split}_lengths"])[:-1])
    return out


cache.register(PICKLE_NAME, PICKLE_URL, checksum=None, validate=read_pickle)


def load_chorales(source: str = "bundled", split: str = "train", data_dir=None, download: bool = True,
                  base_url: str | None = None, max_steps: int | None = None, device=None) -> PianoRolls:
    """Piano rolls of one split, padded: see the module docstring.

    ``max_steps`` crops every piece to its first ``max_steps`` quarter notes (CPU-sized runs).
    ``data_dir``, ``download``, ``base_url`` only matter for ``source="jsb"``.
    """
    checks.choice("source", source, ("bundled", "jsb"))
    checks.choice("split", split, SPLITS)
    if max_steps is not None:
        max_steps = checks.count("max_steps", max_steps)
    base_url = cache.check_base_url(base_url)
    dev = config.device(device)
    if source == "bundled":
        pieces = read_bundled()[split]
    else:
        json_path = cache.data_dir(data_dir) / JSON_FILE
        if json_path.is_file():
            pieces = read_json(json_path)[split]
        else:
            pieces = read_pickle(cache.fetch(PICKLE_NAME, data_dir, base_url, download))[split]
    if max_steps is not None:
        pieces = [p[:max_steps] for p in pieces]
    x, mask = pad_sequences([torch.from_numpy(p).float() for p in pieces])
    lengths = torch.tensor([len(p) for p in pieces])
    return PianoRolls(x.to(dev), mask.to(dev), lengths.to(dev))
