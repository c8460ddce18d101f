"""Timing shared by the benchmarks: wall-clock and process CPU seconds, and warmed-up medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()`` (CUDA work synchronised on both ends)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls after one warm-up call."""
    fn()
    return statistics.median(timed(fn)[0] for _ in range(repeats))
