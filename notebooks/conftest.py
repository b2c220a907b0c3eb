"""nbval set-up for the workbook notebooks.

``make test`` runs ``pytest --nbval-lax`` over this folder (options in pyproject.toml): every
cell must run without error, so every ``assert`` in a notebook is a test; only cells marked
``# NBVAL_CHECK_OUTPUT`` also compare their stored output, after notebooks/sanitize.cfg
masks timings and addresses. Kernels inherit this environment: the notebooks run on the
device that ``VITOOLS_DEVICE`` names (default: CUDA when present, else CPU).
"""
import os

os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ.setdefault("TQDM_MININTERVAL", "5")
