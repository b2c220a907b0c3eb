"""Step timing shared by the benchmark scripts (not a benchmark itself: ``python -m bench``
skips files whose name starts with ``_``)."""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable


def interleaved_ms(steps: list[Callable[[], object]], per_round: int, rounds: int = 5,
                   warmup: int = 0) -> list[float]:
    """Milliseconds per call of each of ``steps``: the median of ``per_round`` timed calls, in
    ``rounds`` interleaved rounds (every step takes its turn in each round, so load from other
    processes hits all of them alike), the best round kept. In every round each step first
    makes ``warmup`` untimed calls."""
    best = [math.inf] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            for _ in range(warmup):
                step()
            times = []
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times.append(1000 * (time.perf_counter() - start))
            best[i] = min(best[i], statistics.median(times))
    return best
