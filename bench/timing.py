"""Timing helpers shared by the benchmark scripts (run as `python bench/<name>.py`)."""

from __future__ import annotations

import resource
import time

import numpy as np


def median_seconds(function, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `function()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
