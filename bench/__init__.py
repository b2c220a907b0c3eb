"""Benchmarks and paper-scale runs. ``python -m bench`` runs them all at their default
(CPU-sized) settings; each writes a Markdown table to bench/results/."""
