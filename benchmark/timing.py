"""The one timer of the benchmarks and the dry-run: seconds per call, device synchronised."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device) -> None:
    """Wait for the device: on CUDA, kernels launch asynchronously and a clock read alone lies."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def per_call(fn: Callable[[], object], device, *, warmup: int = 0, repeats: int = 1,
             calls: int = 1, min_time: float | None = None) -> float:
    """Median over `repeats` timings of `calls` calls of `fn`, per call, after `warmup` calls.

    `min_time`: choose `calls` so one timing lasts about that long (calibrated on one call), so
    sub-millisecond calls are not timed at the clock's resolution.
    """
    for _ in range(warmup):
        fn()
    if min_time is not None:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        calls = max(1, int(min_time / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)
