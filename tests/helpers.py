"""Shared test data: seeded host inputs, float64 references, per-dtype tolerances."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_extra.testing import assert_close

from xaffine._reference import backward as reference_backward
from xaffine._reference import forward as reference_forward
from xaffine._reference import wide

__all__ = ["DTYPES", "assert_matches", "host_random", "reference_backward", "reference_forward", "tolerances", "wide"]

DTYPES = ("float32", "float64", "complex64", "complex128", "float16")


def host_random(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Seeded host data in `dtype`: every backend sees the same numbers."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    if "complex" in dtype:
        data = data + 1j * rng.standard_normal(shape)
    return data.astype(dtype)


def tolerances(dtype: str, k: int, reference: np.ndarray) -> tuple[float, float]:
    """rtol about 4 sqrt(eps); atol growing with the contraction length `k`."""
    eps = float(np.finfo(dtype).eps)
    scale = float(np.max(np.abs(reference))) if reference.size else 1.0
    return 4.0 * math.sqrt(eps), 8.0 * eps * math.sqrt(max(k, 1)) * max(scale, 1.0)


def assert_matches(actual: Any, reference: np.ndarray, backend: Any, dtype: str, k: int) -> None:
    """`actual` equals the float64 `reference` in namespace, dtype, shape, device and value."""
    desired = backend.xp.asarray(np.asarray(reference).astype(dtype), device=backend.device)
    rtol, atol = tolerances(dtype, k, np.asarray(reference))
    assert_close(actual, desired, rtol=rtol, atol=atol, xp=backend.xp)
