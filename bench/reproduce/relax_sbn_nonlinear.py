"""REBAR (arXiv:1703.07370) and RELAX (arXiv:1711.00123) on the nonlinear sigmoid belief net:
:mod:`bench.reproduce.relax_sbn` with ``--nonlinear`` (784-200 with two deterministic tanh layers of
200 units inside each of q(h|x) and p(x|h), the papers' nonlinear model), written as
``relax_sbn_nonlinear``: REINFORCE with a baseline, NVIL, ARM, DisARM, REBAR and RELAX, 3 seeds, the
held-out ELBO against updates and wall time, L_1000 on the test digits at the end.

Run: ``python -m bench.reproduce.relax_sbn_nonlinear`` (``make reproduce-relax_sbn_nonlinear``);
other flags as for :mod:`bench.reproduce.relax_sbn`.
"""
from __future__ import annotations

import sys

from . import relax_sbn


def main(argv=None):
    """:func:`bench.reproduce.relax_sbn.main` with ``--nonlinear``."""
    args = sys.argv[1:] if argv is None else list(argv)
    relax_sbn.main(["--nonlinear", *args])


if __name__ == "__main__":
    main()
