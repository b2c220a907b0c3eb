"""Paper reproductions at a scale where each finding shows clearly (``make reproduce``).

Each module ``bench/reproduce/<name>.py`` runs one reproduction and writes
``bench/results/reproductions/<name>.json`` through :func:`bench.reproduce.common.write_result`;
the notebooks draw the stored JSON (:func:`vitools.plots.reproductions.load`) and assert the
finding on it. ``python -m bench.reproduce.<name> --help`` lists each one's options.
"""
