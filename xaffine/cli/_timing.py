"""The one timing loop: variants timed round-robin, device work waited for before the clock is read.

Each variant is first called a few times (compilation, caches, thread pools), then
calibrated so one sample lasts at least `min_time` seconds. Each round samples every
variant once, in an order rotated by one from the round before, so the slow and fast
stretches of a noisy machine fall on all of them; paired per-round ratios then compare
variants, and medians summarise them.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["Variant", "median_seconds", "round_robin"]

Variant = tuple[Callable[[], object], Callable[[object], object]]
"""A call to time and how to wait for its result's device work (the backend row's ``wait``)."""

WARM_UP = 3
MAX_CALLS = 1 << 20
"""The most calls one sample makes, however short a call."""


def _calibrate(fn: Callable[[], object], wait: Callable[[object], object], min_time: float) -> int:
    """How many calls make one sample last at least `min_time` seconds (after a warm-up)."""
    for _ in range(WARM_UP):
        wait(fn())
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            result = fn()
        wait(result)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= MAX_CALLS:
            return number
        # In floats, capped: a huge min_time must not overflow int().
        number = min(MAX_CALLS, max(number * 2, int(min(number * min_time / max(elapsed, 1e-9) * 1.2, MAX_CALLS))))


def _sample(fn: Callable[[], object], wait: Callable[[object], object], number: int) -> float:
    """Seconds per call over `number` calls, the garbage collector off."""
    # Let the previous variant's spinning worker threads (OpenBLAS, OpenMP) go idle.
    time.sleep(0.005)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            result = fn()
        wait(result)
        return (time.perf_counter() - start) / number
    finally:
        if gc_was:
            gc.enable()


def round_robin(variants: Mapping[str, Variant], *, rounds: int, min_time: float) -> dict[str, list[float]]:
    """Seconds per call of each variant, one sample per round, rounds in rotated order."""
    numbers = {key: _calibrate(fn, wait, min_time) for key, (fn, wait) in variants.items()}
    samples: dict[str, list[float]] = {key: [] for key in variants}
    order = list(variants)
    for r in range(rounds):
        for key in order[r % len(order) :] + order[: r % len(order)]:
            samples[key].append(_sample(*variants[key], numbers[key]))
    return samples


def median_seconds(
    fn: Callable[[], object], wait: Callable[[object], object], *, rounds: int, min_time: float
) -> float:
    """Median seconds per call of one variant (``round_robin`` with one variant)."""
    return statistics.median(round_robin({"fn": (fn, wait)}, rounds=rounds, min_time=min_time)["fn"])
