"""Build ``data/chorales_quarter.npz``: Bach chorales as 88-key quarter-note piano rolls.

The workbook's offline polyphonic-music set (used by :mod:`vitools.data.music` as
``source="bundled"``). The chorales come from the corpus that the ``music21`` package
(BSD-3 licence; the Bach scores themselves are public domain) ships inside its wheel.
music21 is *not* a dependency of vitools: this script installs it into a temporary
folder, converts the chorales and writes a small compressed npz. Run it once::

    .venv/bin/python data/build_chorales.py            # pip-installs music21 to a temp dir
    .venv/bin/python data/build_chorales.py --music21 /path/with/music21   # already there

Conversion (the resolution of Boulanger-Lewandowski et al. 2012, arXiv:1206.6392):
each chorale is sampled on a quarter-note grid; step ``t`` holds every pitch sounding at
offset ``t`` (onset <= t < onset + duration), in any part. Keys are MIDI 21..108, so
column ``p - 21`` is MIDI pitch ``p``. Pieces stay in their original keys. Chorales that
music21 cannot parse, or that are shorter than 8 steps, are skipped. The split is fixed:
pieces sorted by corpus path, shuffled with ``numpy.random.default_rng(0)``, then 60% /
20% / 20% train / valid / test.

Stored arrays (for split in train, valid, test):
``{split}_rolls``   uint8 ``[sum of lengths, 11]``: the binary rolls ``[T, 88]`` of all
                    pieces, concatenated in time, bit-packed along the key axis;
``{split}_lengths`` int32 ``[N]``: the number of quarter-note steps of each piece;
``{split}_names``   unicode ``[N]``: the corpus path of each piece.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitools.data import cache  # noqa: E402
from vitools.data.music import BUNDLED_PATH as OUT, KEYS, LOWEST  # noqa: E402

MIN_STEPS = 8
SPLITS = (("train", 0.6), ("valid", 0.2), ("test", 0.2))


def piano_roll(score) -> np.ndarray:
    """Binary ``[T, 88]`` roll sampled at integer quarter-note offsets."""
    length = int(math.ceil(float(score.highestTime)))
    roll = np.zeros((length, KEYS), dtype=np.uint8)
    for element in score.flatten().notes:
        start = float(element.offset)
        end = start + float(element.quarterLength)
        steps = np.arange(math.ceil(start), math.ceil(end))       # grid points in [start, end)
        steps = steps[steps < length]
        for pitch in element.pitches:
            key = int(pitch.midi) - LOWEST
            if 0 <= key < KEYS:
                roll[steps, key] = 1
    return roll


def build(out: Path) -> None:
    from music21 import corpus
    paths = sorted(str(p) for p in corpus.getComposer("bach"))
    pieces, names = [], []
    for path in paths:
        try:
            roll = piano_roll(corpus.parse(path))
        except Exception as err:       # music21 raises many kinds; skip what it cannot read
            print(f"skip {path}: {type(err).__name__}")
            continue
        if roll.shape[0] >= MIN_STEPS and roll.any():
            pieces.append(roll)
            names.append(path.split("corpus/", 1)[-1])
    order = np.random.default_rng(0).permutation(len(pieces))
    arrays, start = {}, 0
    for index, (split, share) in enumerate(SPLITS):
        stop = len(pieces) if index == len(SPLITS) - 1 else start + int(round(share * len(pieces)))
        chosen = sorted(order[start:stop])
        start = stop
        arrays[f"{split}_rolls"] = np.packbits(np.concatenate([pieces[i] for i in chosen]), axis=1)
        arrays[f"{split}_lengths"] = np.array([len(pieces[i]) for i in chosen], dtype=np.int32)
        arrays[f"{split}_names"] = np.array([names[i] for i in chosen])
        print(f"{split}: {len(chosen)} pieces, {arrays[f'{split}_lengths'].sum()} steps")
    cache.write_npz(out, arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes), sha256 {cache.sha256(out)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music21", help="a folder where music21 is already importable from")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    folder = args.music21
    if folder is None:
        folder = tempfile.mkdtemp(prefix="music21-")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", folder,
                        "music21"], check=True)
    sys.path.insert(0, folder)
    build(Path(args.out))


if __name__ == "__main__":
    main()
