"""``xaffine check``: does the layer work here, on every array library, and are its gradients right?"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _reference
from ._backends import BACKENDS, Backend, BackendUnavailable, find_backend, to_numpy
from ._core import affine_backward, affine_jvp, affine_vjp
from .testing import check_adjoint, check_vjp

__all__ = ["CheckResult", "Unavailable", "run", "user_backends"]

# x of shape (4, 16, 32): two leading axes; weight (8, 32); bias (8,).
_LEAD, _K, _N = (4, 16), 32, 8
_GRADS = ("out", "x", "weight", "bias")


def user_backends() -> list[Backend]:
    """The backends ``check`` and ``info`` report (the test-only variants left out)."""
    return [b for b in BACKENDS if not b.testing_only]


@dataclass
class CheckResult:
    """One backend x dtype: errors against float64, the two gradient checks, a timing."""

    backend: str
    device: str
    dtype: str
    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0
    adjoint: str = "not run"
    finite_differences: str = "not run"
    seconds: float = math.nan

    @property
    def passed(self) -> bool:
        return (
            all(e <= self.tolerance for e in self.errors.values())
            and len(self.errors) == len(_GRADS)
            and self.adjoint == "passed"
            and self.finite_differences == "passed"
        )


@dataclass
class Unavailable:
    backend: str
    kind: str
    reason: str
    install: str


def _relative(actual: Any, reference: np.ndarray[Any, Any]) -> float:
    got = to_numpy(actual).astype(reference.dtype)
    scale = float(np.max(np.abs(reference))) if reference.size else 1.0
    return float(np.max(np.abs(got - reference))) / max(scale, np.finfo(np.float64).tiny)


def _check_one(backend: Backend, xp: Any, device: Any, dtype: str) -> CheckResult:
    result = CheckResult(backend.name, str(device), dtype)
    rng = np.random.default_rng(0)
    host = {
        "x": rng.standard_normal((*_LEAD, _K)),
        "w": rng.standard_normal((_N, _K)),
        "b": rng.standard_normal(_N),
        "g": rng.standard_normal((*_LEAD, _N)),
    }
    if "complex" in dtype:
        host = {k: v + 1j * rng.standard_normal(v.shape) for k, v in host.items()}
    host = {k: v.astype(dtype) for k, v in host.items()}
    x, w, b, g = (xp.asarray(host[k], device=device) for k in ("x", "w", "b", "g"))
    out, vjp = affine_vjp(x, w, b)
    grads = vjp(g)
    references = (_reference.forward(host["x"], host["w"], host["b"]), *_reference.backward(*(host[k] for k in "gxwb")))
    for name, actual, ref in zip(_GRADS, (out, *grads), references, strict=True):
        if ref is not None:
            result.errors[name] = _relative(actual, ref)
    result.tolerance = 4.0 * math.sqrt(float(np.finfo(dtype).eps))

    def backward(ct: Any, x: Any, w: Any, b: Any) -> Any:
        return tuple(affine_backward(ct, x, w, b))

    def jvp(t: Any, x: Any, w: Any, b: Any) -> Any:
        return affine_jvp(x, w, b, t)[1]

    def adjoint() -> None:
        check_adjoint(jvp, backward, (x, w, b))

    def finite_differences() -> None:
        check_vjp(_forward, backward, (x, w, b))

    for attr, check in (("adjoint", adjoint), ("finite_differences", finite_differences)):
        try:
            check()
        except AssertionError as exc:
            setattr(result, attr, f"FAILED: {str(exc).splitlines()[0]}")
        else:
            setattr(result, attr, "passed")

    sync = backend.wait
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        out, vjp = affine_vjp(x, w, b)
        sync((out, vjp(g)))
        samples.append(time.perf_counter() - start)
    result.seconds = statistics.median(samples[2:])
    return result


def _forward(x: Any, w: Any, b: Any) -> Any:
    return affine_vjp(x, w, b)[0]


def run(
    backends: Sequence[str] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    progress: Callable[[str], None] | None = None,
) -> tuple[list[CheckResult], list[Unavailable]]:
    """Check every usable backend (or those named) in every dtype.

    Raises
    ------
    ValueError
        For an unknown backend name.
    """
    chosen = user_backends() if backends is None else [find_backend(n) for n in backends]
    results, unavailable = [], []
    for backend in chosen:
        try:
            _, xp, device, _ = backend.load(exact=True)
        except BackendUnavailable as exc:
            unavailable.append(Unavailable(backend.name, exc.kind, exc.reason, backend.install))
            continue
        for dtype in dtypes:
            if not hasattr(xp, dtype):
                continue
            if progress is not None:
                progress(f"{backend.name} {dtype}")
            results.append(_check_one(backend, xp, device, dtype))
    return results, unavailable
