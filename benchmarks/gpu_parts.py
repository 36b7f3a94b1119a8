"""Each operation of a forward+backward timed alone, on CuPy and torch, to say where time goes.

    python benchmarks/gpu_parts.py [--shapes 2048x2048x2048,4096x768x768] [--rounds 15]

For every backend (CuPy on the GPU; torch on CUDA, or on the CPU where there is no GPU),
dtype (float32, float64) and shape M x K x N: the forward product ``x @ w.T``, the bias
add ``out += b``, torch's fused ``addmm(b, x, w.T)``, ``dX = g @ w``, ``dW = g.T @ x``,
and two ways to ``db``: ``g.sum(0)`` and the product ``ones @ g``. Each figure is the
median over rounds of one call's time, every operation timed in each round (round-robin),
with CUDA events on a GPU (``time.perf_counter`` on the CPU). TF32 is off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
CALLS = 5  # calls per timed block


def _timer(library: str, gpu: bool) -> Callable[[Callable[[], Any]], float]:
    """Seconds per call of fn, over CALLS calls: CUDA events on a GPU (the device drained
    before the clock is read), the wall clock on the CPU."""
    if library == "cupy":
        import cupy

        def event() -> Any:
            return cupy.cuda.Event()

        def elapsed_ms(start: Any, end: Any) -> float:
            return float(cupy.cuda.get_elapsed_time(start, end))
    elif gpu:
        import torch

        def event() -> Any:
            return torch.cuda.Event(enable_timing=True)

        def elapsed_ms(start: Any, end: Any) -> float:
            return float(start.elapsed_time(end))
    else:

        def block(fn: Callable[[], Any]) -> float:
            t0 = time.perf_counter()
            for _ in range(CALLS):
                fn()
            return (time.perf_counter() - t0) / CALLS

        return block

    def timed(fn: Callable[[], Any]) -> float:
        start, end = event(), event()
        start.record()
        for _ in range(CALLS):
            fn()
        end.record()
        end.synchronize()
        return elapsed_ms(start, end) / 1e3 / CALLS

    return timed


def _operations(library: str, gpu: bool, dtype: str, m: int, k: int, n: int) -> dict[str, Callable[[], Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    host = {
        "x": rng.standard_normal((m, k)),
        "w": rng.standard_normal((n, k)),
        "b": rng.standard_normal(n),
        "g": rng.standard_normal((m, n)),
    }
    if library == "cupy":
        import cupy as xp

        a = {key: xp.asarray(v, dtype=dtype) for key, v in host.items()}
        ones = xp.ones(m, dtype=dtype)
        fused = None
    else:
        import torch as xp

        where = "cuda" if gpu else "cpu"
        a = {key: xp.asarray(v, dtype=getattr(xp, dtype), device=where) for key, v in host.items()}
        ones = xp.ones(m, dtype=getattr(xp, dtype), device=where)
        fused = xp.addmm
    x, w, b, g = a["x"], a["w"], a["b"], a["g"]
    out = x @ w.T
    ops: dict[str, Callable[[], Any]] = {
        "x @ w.T": lambda: x @ w.T,
        "out += b": lambda: out.__iadd__(b),
        "g @ w": lambda: g @ w,
        "g.T @ x": lambda: g.T @ x,
        "g.sum(0)": lambda: g.sum(0),
        "ones @ g": lambda: ones @ g,
    }
    if fused is not None:
        ops["addmm(b, x, w.T)"] = lambda: fused(b, x, w.T)
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="2048x2048x2048,4096x768x768", help="comma-separated MxKxN")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--backends", default="cupy,torch")
    args = parser.parse_args()
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
    print("| backend | dtype | M x K x N | " + " | ".join(["operation", "us (median)"]) + " |")
    print("|---|---|---|---|---|")
    for library in args.backends.split(","):
        try:
            if library == "cupy":
                import cupy

                cupy.cuda.runtime.getDeviceCount()
                gpu = True
            else:
                import torch

                gpu = torch.cuda.is_available()
                if gpu:
                    torch.backends.cuda.matmul.allow_tf32 = False
        except Exception as exc:  # one line per library that cannot run
            print(f"{library}: cannot run here ({exc!r})")
            continue
        name = f"{library}:{'cuda' if gpu else 'cpu'}"
        block = _timer(library, gpu)
        for dtype in ("float32", "float64"):
            for m, k, n in shapes:
                ops = _operations(library, gpu, dtype, m, k, n)
                for fn in ops.values():  # warm-up: kernels compiled, handles made
                    block(fn)
                times: dict[str, list[float]] = {key: [] for key in ops}
                for _ in range(args.rounds):
                    for key, fn in ops.items():
                        times[key].append(block(fn))
                for key, samples in times.items():
                    print(f"| {name} | {dtype} | {m}x{k}x{n} | {key} | {statistics.median(samples) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
