"""The nonlinear SBN of :mod:`bench.reproduce.relax_sbn_nonlinear` started from torch's default
initialisation instead of the data (no centred input, output biases at random), written as
``relax_sbn_nonlinear_random_init``: the same six estimators, seeds, updates and evaluation, to show
what the papers' data-dependent start (:meth:`vitools.models.sbn.SBN.init_from_data`) buys.

Run: ``python -m bench.reproduce.relax_sbn_nonlinear_random_init``
(``make reproduce-relax_sbn_nonlinear_random_init``); other flags as for :mod:`bench.reproduce.relax_sbn`.
"""
from __future__ import annotations

import sys

from . import relax_sbn


def main(argv=None):
    """:func:`bench.reproduce.relax_sbn.main` with ``--nonlinear --init random``."""
    args = sys.argv[1:] if argv is None else list(argv)
    relax_sbn.main(["--nonlinear", "--init", "random", "--name", "relax_sbn_nonlinear_random_init", *args])


if __name__ == "__main__":
    main()
