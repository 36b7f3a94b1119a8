"""``xaffine check``: does the layer work here, on every array library, and are its gradients right?"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import _reference
from .._backends import Backend, BackendUnavailable, device_name, to_numpy
from .._core import affine_backward, affine_jvp, affine_vjp
from ..testing import check_adjoint, check_vjp
from ._shared import (
    DTYPES,
    Progress,
    backend_list,
    dtype_list,
    host_inputs,
    human_stream,
    output_path,
    table,
    user_backends,
    write_json,
)
from ._timing import median_seconds

__all__ = ["CheckResult", "NotChecked", "add_parser", "check", "run"]

# x of shape (4, 16, 32): two leading axes; weight (8, 32); bias (8,).
LEAD, K, N = (4, 16), 32, 8
_GRADS = ("out", "x", "weight", "bias")
# The time column: median of this many samples, each at least this long, after a warm-up.
TIMING_ROUNDS, TIMING_MIN_TIME = 7, 0.01


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
class NotChecked:
    """A backend (every dtype, `dtype` empty) or one dtype of it that could not be checked here, and why."""

    backend: str
    dtype: str
    kind: str
    reason: str
    install: str


def _relative(actual: Any, reference: np.ndarray[Any, Any]) -> float:
    got = to_numpy(actual).astype(reference.dtype)
    scale = float(np.max(np.abs(reference))) if reference.size else 1.0
    return float(np.max(np.abs(got - reference))) / max(scale, np.finfo(np.float64).tiny)


def _forward(x: Any, w: Any, b: Any) -> Any:
    return affine_vjp(x, w, b)[0]


def _backward(ct: Any, x: Any, w: Any, b: Any) -> Any:
    return tuple(affine_backward(ct, x, w, b))


def _jvp(t: Any, x: Any, w: Any, b: Any) -> Any:
    return affine_jvp(x, w, b, t)[1]


def _check_one(backend: Backend, xp: Any, device: Any, dtype: str) -> CheckResult:
    result = CheckResult(backend.name, device_name(device), dtype)
    host = host_inputs(LEAD, K, N, dtype)
    x, w, b, g = (xp.asarray(host[k], device=device) for k in ("x", "w", "b", "g"))
    out, vjp = affine_vjp(x, w, b)
    grads = vjp(g)
    references = (_reference.forward(host["x"], host["w"], host["b"]), *_reference.backward(*(host[k] for k in "gxwb")))
    for name, actual, ref in zip(_GRADS, (out, *grads), references, strict=True):
        if ref is not None:
            result.errors[name] = _relative(actual, ref)
    result.tolerance = 4.0 * math.sqrt(float(np.finfo(dtype).eps))

    def adjoint() -> None:
        check_adjoint(_jvp, _backward, (x, w, b))

    def finite_differences() -> None:
        check_vjp(_forward, _backward, (x, w, b))

    for attr, gradient_check in (("adjoint", adjoint), ("finite_differences", finite_differences)):
        try:
            gradient_check()
        except AssertionError as exc:
            setattr(result, attr, f"FAILED: {str(exc).splitlines()[0]}")
        else:
            setattr(result, attr, "passed")

    def step() -> Any:
        out, vjp = affine_vjp(x, w, b)
        return out, vjp(g)

    result.seconds = median_seconds(step, backend.wait, rounds=TIMING_ROUNDS, min_time=TIMING_MIN_TIME)
    return result


def check(
    backends: Sequence[Backend] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    progress: Callable[[str], None] | None = None,
) -> tuple[list[CheckResult], list[NotChecked]]:
    """Check every usable backend (or those given) in every dtype it has.

    Returns the results and what could not be checked (a backend that cannot run here,
    a dtype a backend lacks), each with the reason.
    """
    chosen = user_backends() if backends is None else list(backends)
    results, not_checked = [], []
    for backend in chosen:
        try:
            _, xp, device, _ = backend.load(exact=True)
        except BackendUnavailable as exc:
            not_checked.append(NotChecked(backend.name, "", exc.kind, exc.reason, backend.install))
            continue
        for dtype in dtypes:
            if not hasattr(xp, dtype):
                reason = f"{backend.module}'s Array API namespace has no {dtype}"
                not_checked.append(NotChecked(backend.name, dtype, "no such dtype", reason, ""))
                continue
            if progress is not None:
                progress(f"{backend.name} {dtype}")
            results.append(_check_one(backend, xp, device, dtype))
    return results, not_checked


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check forward, backward and gradients on every usable backend",
        description=(
            "For every usable backend x device x dtype: forward and backward on seeded random data against "
            "a float64 NumPy reference, the adjoint (dot-product) test and a float64 finite-difference "
            f"check, and the median time of a forward+backward ({TIMING_ROUNDS} samples after a warm-up). "
            "Exit status 0 only when everything that could run passed."
        ),
    )
    parser.add_argument(
        "--backends", metavar="LIST", type=backend_list, help="comma list, e.g. numpy,torch,torch:cuda (default: all)"
    )
    parser.add_argument(
        "--dtypes",
        metavar="LIST",
        type=dtype_list,
        help=f"comma list of {', '.join(DTYPES)} (default: float32,float64)",
    )
    parser.add_argument("--complex", action="store_true", help="also complex64 and complex128")
    parser.add_argument("--float16", action="store_true", help="also float16")
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=output_path,
        help="also write the results as JSON to PATH ('-': stdout, the table then goes to stderr)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dtypes = list(args.dtypes or ["float32", "float64"])
    dtypes += ["complex64", "complex128"] if args.complex else []
    dtypes += ["float16"] if args.float16 else []
    dtypes = list(dict.fromkeys(dtypes))
    out = human_stream(args.json)
    with Progress(len(args.backends or user_backends()) * len(dtypes)) as progress:
        results, not_checked = check(args.backends, dtypes, progress=progress)
    rows = [
        ["backend", "device", "dtype", "err out", "err dx", "err dW", "err db", "adjoint", "finite diff", "fwd+bwd"]
    ]
    for r in results:
        errors = [f"{r.errors.get(k, math.nan):.1e}" for k in _GRADS]
        adjoint = "ok" if r.adjoint == "passed" else "FAIL"
        fd = "ok" if r.finite_differences == "passed" else "FAIL"
        rows.append([r.backend, r.device, r.dtype, *errors, adjoint, fd, f"{r.seconds * 1e6:.0f} us"])
    if results:
        print(table(rows), file=out)
        print("errors: max |result - float64 reference| / max |reference|; passing needs each <= 4 sqrt(eps)", file=out)
        print(f"fwd+bwd: median of {TIMING_ROUNDS} samples after a warm-up", file=out)
    for r in results:
        for name, text in (("adjoint", r.adjoint), ("finite differences", r.finite_differences)):
            if text != "passed":
                print(f"{r.backend} {r.dtype} {name}: {text}", file=out)
    if not_checked:
        print("\nnot usable here:", file=out)
        for u in not_checked:
            print(f"  {f'{u.backend} {u.dtype}'.strip():<26} {u.kind}: {u.reason}", file=out)
            if u.install:
                print(f"  {'':<26} install: {u.install}", file=out)
    failed = [r for r in results if not r.passed]
    if args.json:
        write_json(
            args.json,
            {
                "passed": bool(results) and not failed,
                "results": [asdict(r) | {"passed": r.passed} for r in results],
                "unavailable": [asdict(u) for u in not_checked],
            },
        )
    if not results:
        print("nothing was checked (see 'not usable here' for why)", file=sys.stderr)
        return 1
    if failed:
        which = ", ".join(f"{r.backend} {r.dtype}" for r in failed)
        print(f"\nFAILED: {len(failed)} of {len(results)} checks ({which})", file=out)
        return 1
    print(f"\nall {len(results)} checks passed on {', '.join(sorted({r.backend for r in results}))}", file=out)
    return 0
