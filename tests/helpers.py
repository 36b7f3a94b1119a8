"""Shared test data: seeded host inputs, float64 references, per-dtype tolerances."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_extra.testing import assert_close

DTYPES = ("float32", "float64", "complex64", "complex128", "float16")


def host_random(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Seeded host data in `dtype`: every backend sees the same numbers."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    if "complex" in dtype:
        data = data + 1j * rng.standard_normal(shape)
    return data.astype(dtype)


def wide(a: Any) -> Any:
    """The float64 / complex128 version of host data (numbers stay numbers)."""
    if a is None or isinstance(a, (int, float, complex)):
        return a
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def reference_forward(x: np.ndarray, w: np.ndarray, b: Any) -> np.ndarray:
    x, w, b = wide(x), wide(w), wide(b)
    out = x @ (w.T if w.ndim == 2 else w)
    return out if b is None else out + b


def reference_backward(g: np.ndarray, x: np.ndarray, w: np.ndarray, b: Any) -> tuple[Any, Any, Any]:
    g, x, w = wide(g), wide(x), wide(w)
    x2 = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
    if w.ndim == 2:
        dx = g @ w.conj()
        dw = g.reshape(x2.shape[0], w.shape[0]).T @ x2.conj()
        db = None if b is None else g.reshape(-1, w.shape[0]).sum(axis=0)
    else:
        dx = g[..., None] * w.conj()
        dw = g.reshape(-1) @ x2.conj()
        db = None if b is None else np.asarray(g.sum())
    return dx, dw, db


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
