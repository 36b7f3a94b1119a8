"""``xaffine bench``: forward+backward against the three-product bound and PyTorch.

The bound is the three raw matrix products a forward+backward cannot avoid
(``X W^T``, ``dA W``, ``dA^T X``) on the same backend and device. Variants are timed
round-robin, each round in a rotated order, so slow and fast stretches of a noisy
machine fall on all of them; each round gives one ratio, and the report quotes the
median ratio over rounds. Device work is synchronised before a clock is read.
"""

from __future__ import annotations

import gc
import math
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._backends import find_backend
from ._core import affine_vjp
from ._typing import Array, Device, Namespace

__all__ = ["SHAPES", "BenchResult", "parse_shape", "run"]

# name -> (leading axes of X, in_features k, out_features n)
SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "single": ((1,), 64, 64),
    "small": ((32,), 128, 128),
    "medium": ((256,), 1024, 1024),
    "large": ((2048,), 2048, 2048),
    "seq": ((8, 512), 768, 768),
}


def parse_shape(text: str) -> tuple[str, tuple[tuple[int, ...], int, int]]:
    """A named shape, or ``AxBx...xKxN``: leading axes of X, then in and out features.

    Raises
    ------
    ValueError
        For anything else.
    """
    if text in SHAPES:
        return text, SHAPES[text]
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) < 3 or min(dims) < 1:
        msg = (
            f"a shape is one of {sorted(SHAPES)} or MxKxN (more leading axes allowed, e.g. 8x512x768x768); got {text!r}"
        )
        raise ValueError(msg)
    return text, (dims[:-2], dims[-2], dims[-1])


@dataclass
class BenchResult:
    """One backend x dtype x shape: median times (seconds) and median paired ratios."""

    backend: str
    device: str
    dtype: str
    shape: str
    dims: list[int]
    flops: int
    times: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    peak_memory_ratio: float | None = None

    def gflops(self) -> float:
        return self.flops / self.times["xaffine"] / 1e9


def _flatten(a: Array, xp: Namespace) -> Array:
    return xp.reshape(a, (math.prod(a.shape[:-1]), a.shape[-1]))


Variant = tuple[Callable[[], Any], Callable[[Any], Any]]  # (call, wait for its result)


def _variants(
    name: str, xp: Namespace, device: Device, host: dict[str, np.ndarray[Any, Any]], with_torch: bool, with_jax: bool
) -> dict[str, Variant]:
    x, w, b, g = (xp.asarray(host[key], device=device) for key in ("x", "w", "b", "g"))
    x2, g2 = _flatten(x, xp), _flatten(g, xp)

    def layer(x: Array, w: Array, b: Array, g: Array) -> Any:
        out, vjp = affine_vjp(x, w, b)
        return out, vjp(g)

    def products(x2: Array, w: Array, g2: Array) -> Any:
        return x2 @ w.T, g2 @ w, g2.T @ x2

    if find_backend(name).module == "jax":
        # JAX code runs under jax.jit; eager JAX would time a dispatch per operation.
        import jax

        layer, products = jax.jit(layer), jax.jit(products)

    def ours() -> Any:
        return layer(x, w, b, g)

    def bound() -> Any:
        return products(x2, w, g2)

    sync = find_backend(name).wait
    variants: dict[str, Variant] = {"xaffine": (ours, sync), "bound": (bound, sync)}
    on_gpu = find_backend(name).gpu
    if with_torch:
        variants["torch"] = (_torch_variant(on_gpu, host), find_backend("torch:cuda" if on_gpu else "torch").wait)
    if with_jax:
        variants["jax"] = (_jax_variant(on_gpu, host), find_backend("jax").wait)
    return variants


def _torch_variant(on_gpu: bool, host: dict[str, np.ndarray[Any, Any]]) -> Callable[[], Any]:
    import torch

    where = "cuda" if on_gpu else "cpu"
    x, w, b, g = (torch.from_numpy(host[k]).to(where) for k in ("x", "w", "b", "g"))
    for t in (x, w, b):
        t.requires_grad_(True)

    def run() -> Any:
        x.grad = w.grad = b.grad = None
        out = torch.nn.functional.linear(x, w, b)
        out.backward(g)  # type: ignore[no-untyped-call]
        return out

    return run


def _jax_variant(on_gpu: bool, host: dict[str, np.ndarray[Any, Any]]) -> Callable[[], Any]:
    import jax

    device = jax.devices("gpu" if on_gpu else "cpu")[0]
    x, w, b, g = (jax.device_put(host[k], device) for k in ("x", "w", "b", "g"))

    def step(x: Any, w: Any, b: Any, g: Any) -> Any:
        out, pullback = jax.vjp(lambda x, w, b: x @ w.T + b, x, w, b)
        return out, pullback(g)

    jitted = jax.jit(step)
    return lambda: jitted(x, w, b, g)


def _calibrate(fn: Callable[[], Any], sync: Callable[[Any], Any], min_time: float) -> int:
    """How many calls make one sample last at least `min_time` seconds (after a warm-up)."""
    for _ in range(3):  # first calls pay for compilation, caches, thread pools
        sync(fn())
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            result = fn()
        sync(result)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.2))


def _sample(fn: Callable[[], Any], sync: Callable[[Any], Any], number: int) -> float:
    # Let the previous variant's spinning worker threads (OpenBLAS, OpenMP) go idle.
    time.sleep(0.005)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            result = fn()
        sync(result)
        return (time.perf_counter() - start) / number
    finally:
        if gc_was:
            gc.enable()


def _peak_memory_ratio(fn: Callable[[], Any]) -> float:
    """NumPy: peak bytes allocated during one call over the bytes of what it returns."""
    gc.collect()
    tracemalloc.start()
    try:
        out, grads = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = sum(int(a.nbytes) for a in (out, *grads) if a is not None)
    return peak / returned


def run(
    backends: Sequence[str] = ("numpy",),
    dtypes: Sequence[str] = ("float32", "float64"),
    shapes: Sequence[str] = tuple(SHAPES),
    *,
    rounds: int = 15,
    min_time: float = 0.05,
    torch: bool = True,
    jax: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time forward+backward of every backend x dtype x shape; see the module docstring.

    Raises
    ------
    ValueError
        For an unknown backend or shape name.
    xaffine._backends.BackendUnavailable
        For a backend that cannot run here.
    """
    parsed = [parse_shape(s) for s in shapes]
    with_torch = torch and _importable("torch")
    results = []
    for backend_name in backends:
        backend = find_backend(backend_name)
        _, xp, device, _ = backend.load(exact=True)
        for dtype in dtypes:
            for shape_name, (lead, k, n) in parsed:
                if progress is not None:
                    progress(f"{backend.name} {dtype} {shape_name}")
                rng = np.random.default_rng(seed)
                host = {
                    "x": rng.standard_normal((*lead, k)).astype(dtype),
                    "w": rng.standard_normal((n, k)).astype(dtype),
                    "b": rng.standard_normal(n).astype(dtype),
                    "g": rng.standard_normal((*lead, n)).astype(dtype),
                }
                variants = _variants(backend.name, xp, device, host, with_torch, jax)
                m = math.prod(lead)
                result = BenchResult(backend.name, str(device), dtype, shape_name, [*lead, k, n], 6 * m * k * n)
                numbers = {key: _calibrate(fn, sync, min_time) for key, (fn, sync) in variants.items()}
                samples: dict[str, list[float]] = {key: [] for key in variants}
                order = list(variants)
                for r in range(rounds):
                    for key in order[r % len(order) :] + order[: r % len(order)]:
                        samples[key].append(_sample(*variants[key], numbers[key]))
                result.times = {key: statistics.median(v) for key, v in samples.items()}
                result.ratios = {
                    f"xaffine/{key}": statistics.median(a / c for a, c in zip(samples["xaffine"], v, strict=True))
                    for key, v in samples.items()
                    if key != "xaffine"
                }
                if backend.module == "numpy":
                    result.peak_memory_ratio = _peak_memory_ratio(variants["xaffine"][0])
                results.append(result)
    return results


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import array_api_compat

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        import os

        info["cpus"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        pass
    if _importable("torch"):
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    return info


def as_json(results: list[BenchResult]) -> dict[str, Any]:
    return {"machine": machine(), "results": [asdict(r) | {"gflops": r.gflops()} for r in results]}


def table(results: list[BenchResult]) -> str:
    """A table for people: times in microseconds, ratios as medians of paired rounds."""
    refs = sorted({k for r in results for k in r.ratios})
    head = ["backend", "dtype", "shape", "xaffine us", "bound us", *refs, "GFLOP/s", "peak mem/outputs"]
    rows = [head]
    for r in results:
        rows.append(
            [
                r.backend,
                r.dtype,
                r.shape,
                f"{r.times['xaffine'] * 1e6:.1f}",
                f"{r.times['bound'] * 1e6:.1f}",
                *(f"{r.ratios[k]:.2f}" if k in r.ratios else "-" for k in refs),
                f"{r.gflops():.1f}",
                "-" if r.peak_memory_ratio is None else f"{r.peak_memory_ratio:.2f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot(results: list[BenchResult], path: str) -> None:
    """Time per shape for xaffine, the bound and torch: one line each per backend and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[tuple[str, str], list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.backend, r.dtype), []).append(r)
    for (backend, dtype), rs in groups.items():
        rs = sorted(rs, key=lambda r: r.flops)
        flops = [r.flops for r in rs]
        for key, style in (("xaffine", "-o"), ("bound", "--"), ("torch", ":"), ("jax", "-.")):
            if all(key in r.times for r in rs):
                ax.plot(flops, [r.times[key] for r in rs], style, label=f"{backend} {dtype} {key}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("floating-point operations of a forward+backward (6 m k n)")
    ax.set_ylabel("seconds (median)")
    ax.set_title("xaffine forward+backward against the three-product bound")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class ScalingRow:
    """Dask (threads) against NumPy on the same batch, `factor` times the base batch."""

    factor: int
    rows: int
    chunks: int
    numpy_seconds: float
    dask_seconds: float
    dask_over_numpy: float
    growth: float  # dask time / (factor x dask time at factor 1): 1.0 is linear


def dask_scaling(
    *,
    rows: int = 16384,
    k: int = 256,
    n: int = 256,
    factors: Sequence[int] = (1, 4, 16),
    dtype: str = "float32",
    workers: int = 2,
    rounds: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[ScalingRow]:
    """Forward+backward (computed) on Dask's threaded scheduler against NumPy, as the batch grows.

    The Dask batch is chunked `rows` samples per chunk, so a batch `factor` times larger
    has `factor` chunks.
    """
    import dask.array as da
    from dask.base import compute

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    table_rows: list[ScalingRow] = []
    base = math.nan
    for factor in factors:
        if progress is not None:
            progress(f"dask x{factor}")
        m = rows * factor
        x = rng.standard_normal((m, k)).astype(dtype)
        g = rng.standard_normal((m, n)).astype(dtype)
        xd = da.from_array(x, chunks=(rows, k))  # type: ignore[no-untyped-call]
        gd = da.from_array(g, chunks=(rows, n))  # type: ignore[no-untyped-call]

        def on_numpy(x: Any = x, g: Any = g) -> Any:
            out, vjp = affine_vjp(x, w, b)
            return out, vjp(g)

        def on_dask(xd: Any = xd, gd: Any = gd) -> Any:
            out, vjp = affine_vjp(xd, w, b)
            return compute(out, *vjp(gd), scheduler="threads", num_workers=workers)  # type: ignore[no-untyped-call]

        samples: dict[str, list[float]] = {"numpy": [], "dask": []}
        variants = {"numpy": on_numpy, "dask": on_dask}
        on_numpy()
        on_dask()
        for r in range(rounds):
            for key in ["numpy", "dask"] if r % 2 == 0 else ["dask", "numpy"]:
                samples[key].append(_sample(variants[key], lambda result: result, 1))
        t_numpy, t_dask = statistics.median(samples["numpy"]), statistics.median(samples["dask"])
        ratio = statistics.median(d / p for d, p in zip(samples["dask"], samples["numpy"], strict=True))
        if factor == factors[0]:
            base = t_dask / factor
        table_rows.append(ScalingRow(factor, m, factor, t_numpy, t_dask, ratio, t_dask / (factor * base)))
    return table_rows


def scaling_table(rows: list[ScalingRow]) -> str:
    head = ["batch", "rows", "chunks", "numpy s", "dask s", "dask/numpy", "growth vs linear"]
    body = [
        [
            f"{r.factor}x",
            str(r.rows),
            str(r.chunks),
            f"{r.numpy_seconds:.3f}",
            f"{r.dask_seconds:.3f}",
            f"{r.dask_over_numpy:.2f}",
            f"{r.growth:.2f}",
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
