"""NVIL (Mnih & Gregor 2014, arXiv:1402.0030), the "effects of variance reduction" figure under the
paper's optimizer: :mod:`bench.reproduce.nvil` (SBN 200-200, the five variants, 3 seeds, 3,000
updates of batch 50 on binarized MNIST) with plain SGD instead of Adam, written as ``nvil_sgd``.

Learning rate 0.05 for the model's parameters (generative and inference networks) in every variant,
chosen at small scale (seed 0, 400 updates, L_100 on 100 test digits, full NVIL / no variance
reduction): 0.01 gives -257 / -289 (barely started), 0.03 -215 / -236, 0.1 -195 / -249, 0.3 diverges
(-370 / -770); at 1,500 updates 0.05 and 0.1 reach the same L_100 for the full NVIL (-170, -171),
and 0.05 keeps the unnormalized variants further from the instability that 0.3 shows. The input-
dependent baseline b(x) is the estimator's own network and is fitted as in the Adam run
(``vitools.train.fit`` steps it with Adam at NVIL's ``lr`` option, 0.01).

Run: ``python -m bench.reproduce.nvil_sgd`` (``make reproduce-nvil_sgd``); other flags as for
:mod:`bench.reproduce.nvil` (``--lr`` overrides the rate).
"""
from __future__ import annotations

import sys

from . import nvil

SETTINGS = ["--optimizer", "sgd", "--lr", "0.05"]


def main(argv=None):
    """:func:`bench.reproduce.nvil.main` with :data:`SETTINGS` first (later flags override them)."""
    args = sys.argv[1:] if argv is None else list(argv)
    nvil.main(SETTINGS + args, name="nvil_sgd")


if __name__ == "__main__":
    main()
