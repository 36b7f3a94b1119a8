"""Shared test data: seeded host inputs, float64 references, per-dtype tolerances."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from xaffine import _backends, _validate
from xaffine._backends import HOST_DTYPES, backend_of, namespace, to_numpy
from xaffine._backends import device_of as device
from xaffine._reference import Inputs, inputs, random, wide
from xaffine._reference import backward as reference_backward
from xaffine._reference import forward as reference_forward

__all__ = [
    "DTYPES",
    "ROOT",
    "Inputs",
    "assert_close",
    "assert_matches",
    "host_random",
    "inputs",
    "make_inputs",
    "noxfile_tables",
    "reference_backward",
    "reference_forward",
    "tolerances",
    "wide",
    "xp_of",
]

DTYPES = HOST_DTYPES  # every dtype the float64 NumPy reference can hold


def xp_of(*arrays: Any) -> Any:
    """The namespace xaffine computes in for these arrays: its table's (MLX's adapted one),
    else array-api-compat's."""
    row = backend_of(arrays[0])
    return namespace(row.module) if row is not None else array_namespace(*arrays)


def patch_row(monkeypatch: Any, a: Any, **fields: Any) -> Any:
    """Replace `fields` of the backend row of array `a`'s library for one test: how tests
    count or plant calls of the fast paths the core reads through the row. The memo of
    checked signatures starts empty, so that the next call reads the new row."""
    row = backend_of(a)
    monkeypatch.setitem(_backends._BY_LIBRARY, row.library, dataclasses.replace(row, **fields))
    monkeypatch.setattr(_validate, "_SIGNATURES", {})
    return row


def host_random(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Seeded host data in `dtype`: every backend sees the same numbers."""
    return random(shape, dtype, seed)


def make_inputs(
    backend: Any, x_shape: tuple[int, ...], n: int | None, dtype: str = "float64", bias: str = "array", seed: int = 0
) -> tuple[Inputs, Inputs]:
    """Seeded host inputs and their copies on `backend` (a Python-number bias stays a number)."""
    host = inputs(x_shape, n, dtype, bias=bias, seed=seed)
    moved = Inputs(*(v if v is None or isinstance(v, float) else backend.asarray(v) for v in host))
    return host, moved


def tolerances(dtype: str, k: int, reference: np.ndarray) -> tuple[float, float]:
    """rtol about 4 sqrt(eps); atol growing with the contraction length `k`."""
    eps = float(np.finfo(dtype).eps)
    scale = float(np.max(np.abs(reference))) if reference.size else 1.0
    return 4.0 * math.sqrt(eps), 8.0 * eps * math.sqrt(max(k, 1)) * max(scale, 1.0)


def assert_close(actual: np.ndarray, reference: np.ndarray, dtype: str, k: int) -> None:
    """Host array `actual` has `dtype`, the reference's shape, and its values within `tolerances`."""
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}; expected {dtype}"
    assert actual.shape == np.shape(reference), f"shape {actual.shape}; expected {np.shape(reference)}"
    rtol, atol = tolerances(dtype, k, np.asarray(reference))
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


def assert_matches(actual: Any, reference: np.ndarray, backend: Any, dtype: str, k: int) -> None:
    """`actual` equals the float64 `reference` in namespace, dtype, shape, device and value.

    Values are compared on the host through xaffine's ``to_numpy``, which reads every
    backend's arrays (NumPy's ``asarray`` cannot read ndonnx's or pydata/sparse's).
    """
    desired = backend.xp.asarray(np.asarray(reference).astype(dtype), device=backend.device)
    found = array_namespace(actual)
    assert found == backend.xp, f"the result's namespace is {found.__name__}; expected {backend.xp.__name__}"
    assert actual.dtype == desired.dtype, f"dtype {actual.dtype}; expected {desired.dtype}"
    assert tuple(actual.shape) == tuple(desired.shape), f"shape {actual.shape}; expected {desired.shape}"
    assert device(actual) == device(desired), f"device {device(actual)}; expected {device(desired)}"
    host = to_numpy(actual)
    assert_close(host, np.asarray(reference).astype(host.dtype), str(host.dtype), k)


ROOT = Path(__file__).parents[1]


def noxfile_tables() -> tuple[dict[str, Any], tuple[str, ...]]:
    """BACKENDS and GPU from noxfile.py, read without importing nox."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    found: dict[str, Any] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in ("BACKENDS", "GPU"):
            found[target.id] = ast.literal_eval(node.value)
    return found["BACKENDS"], found["GPU"]
