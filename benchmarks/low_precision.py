"""16-bit floats beside float32: time of a forward+backward and error against float64.

For each backend and shape, float16 and bfloat16 (where the backend has them) and float32
run the same forward+backward (``affine_vjp``, then its ``vjp``; under ``jax.jit`` on
JAX), timed round-robin in the same rounds (xaffine's own timing loop), so each 16-bit
time is a median of paired per-round ratios to float32. The error is the largest
``|result - reference| / max|reference|`` over the output and the three gradients, where the
reference is float64 NumPy on the very inputs the backend got (rounded to its dtype), so it
measures the arithmetic, not the rounding of the inputs. Bias gradients of 16-bit layers
are summed in float32 (see the docs' "Dtypes" section); the products accumulate as the
library does.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/low_precision.py                       # numpy, torch, jax
    PYTHONPATH=$PWD python benchmarks/low_precision.py --backends torch --shapes small
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import numpy as np

from xaffine import affine_vjp
from xaffine._backends import BackendUnavailable, dtype_name, find_backend, to_numpy, transfer
from xaffine._reference import backward, forward, inputs
from xaffine.cli._timing import round_robin
from xaffine.cli.bench import SHAPES
from xaffine.cli.check import _relative

DTYPES = ("float16", "bfloat16", "float32")


def _step(library: str) -> Any:
    def step(x: Any, w: Any, b: Any, g: Any) -> Any:
        out, vjp = affine_vjp(x, w, b)
        return out, *vjp(g)

    if library == "jax":
        import jax

        return jax.jit(step)
    return step


def _error(results: Any, args: tuple[Any, ...]) -> float:
    """The largest relative error of the output and gradients against float64 NumPy (``xaffine check``'s measure)."""
    x, w, b, g = (to_numpy(a).astype(np.float64) for a in args)
    references = (forward(x, w, b), *backward(g, x, w, b))
    return max(_relative(got, want) for got, want in zip(results, references, strict=True))


def measure(backend: str, shape: str, rounds: int, min_time: float) -> list[dict[str, Any]]:
    row = find_backend(backend)
    _, xp, device, _ = row.load(exact=True)
    lead, k, n = SHAPES[shape]
    host = inputs((*lead, k), n, "float64", seed=0)
    step = _step(row.library)
    cases: dict[str, tuple[Any, ...]] = {}
    for name in DTYPES:
        if hasattr(xp, name):
            dtype = getattr(xp, name)
            cases[name] = tuple(transfer(a, xp, device, dtype) for a in (host.x, host.weight, host.bias, host.grad))
    variants = {name: (lambda args=args: step(*args), row.wait) for name, args in cases.items()}
    samples = round_robin(variants, rounds=rounds, min_time=min_time)
    rows = []
    for name, args in cases.items():
        ratio = statistics.median(a / b for a, b in zip(samples[name], samples["float32"], strict=True))
        rows.append(
            {
                "backend": backend,
                "shape": shape,
                "dtype": dtype_name(args[0].dtype),
                "seconds": statistics.median(samples[name]),
                "vs_float32": ratio,
                "error": _error(step(*args), args),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--backends", default="numpy,torch,jax", help="comma list (default: numpy,torch,jax)")
    parser.add_argument("--shapes", default="small,medium", help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args(argv)
    print("| backend | shape | dtype | time | / float32 | max error / max |reference| |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for shape in args.shapes.split(","):
            try:
                rows = measure(backend, shape, args.rounds, args.min_time)
            except BackendUnavailable as exc:
                print(f"| {backend} | {shape} | - | not usable here: {exc.reason} | | |")
                continue
            for r in rows:
                us = r["seconds"] * 1e6
                when = f"{us:.1f} us" if us < 1000 else f"{us / 1000:.2f} ms"
                cells = [r["backend"], r["shape"], r["dtype"], when, f"{r['vs_float32']:.2f}", f"{r['error']:.1e}"]
                print("| " + " | ".join(cells) + " |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
