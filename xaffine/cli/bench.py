"""``xaffine bench``: forward+backward against the three-product bound, hand-written code and PyTorch.

The bound is the three raw matrix products a forward+backward cannot avoid
(``X W^T``, ``dA W``, ``dA^T X``) on the same backend and device. The hand-written
variant is the same work as xaffine's written directly in that library, with no checks:
``out = x @ w.T; out += b; dx = g @ w; dw = g.T @ x; db = g.sum(0)`` (leading axes
flattened by a reshape when there is more than one; conjugates for complex dtypes;
under ``jax.jit`` on JAX). Variants are timed round-robin by the shared timing loop,
each round in a rotated order, so slow and fast stretches of a noisy machine fall on
all of them; each round gives one ratio, and the report quotes the median ratio over
rounds. Device work is waited for before a clock is read.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._backends import Backend, BackendUnavailable, device_name, find_backend
from .._core import affine_vjp
from .._typing import Array, Device, Namespace
from ._shared import (
    DTYPES,
    Progress,
    backend_list,
    dtype_list,
    host_inputs,
    human_stream,
    output_path,
    positive_int,
    seconds,
    write_json,
)
from ._shared import table as render_table
from ._timing import Variant, round_robin

__all__ = ["SHAPES", "BenchResult", "add_parser", "bench", "parse_shape", "run"]

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
    graphs: str | None = None
    """With ``compiled``: whether the compiler captured the same operations for xaffine as for
    the hand-written code, or how they differ."""

    def gflops(self) -> float:
        return self.flops / self.times["xaffine"] / 1e9


def _flatten(a: Array, xp: Namespace) -> Array:
    return xp.reshape(a, (math.prod(a.shape[:-1]), a.shape[-1]))


def _hand_written(row: Backend, xp: Namespace, lead: tuple[int, ...], k: int, n: int, complex_: bool) -> Any:
    """Forward+backward written directly in the library: what a user would write without xaffine."""
    m, flatten = math.prod(lead), len(lead) > 1
    if row.library == "array_api_strict":
        # array-api-strict has no methods beyond the operators: its functions are the library.
        def strict(x: Any, w: Any, b: Any, g: Any) -> Any:
            if flatten:
                x, g = xp.reshape(x, (m, k)), xp.reshape(g, (m, n))
            out = x @ w.T
            out += b
            wc, xc = (xp.conj(w), xp.conj(x)) if complex_ else (w, x)
            dx = g @ wc
            dw = g.T @ xc
            db = xp.sum(g, axis=0)
            if flatten:
                out, dx = xp.reshape(out, (*lead, n)), xp.reshape(dx, (*lead, k))
            return out, (dx, dw, db)

        return strict

    def hand(x: Any, w: Any, b: Any, g: Any) -> Any:
        if flatten:
            x, g = x.reshape(m, k), g.reshape(m, n)
        out = x @ w.T
        out += b
        wc, xc = (w.conj(), x.conj()) if complex_ else (w, x)
        dx = g @ wc
        dw = g.T @ xc
        db = g.sum(0)
        if flatten:
            out, dx = out.reshape(*lead, n), dx.reshape(*lead, k)
        return out, (dx, dw, db)

    return hand


def _variants(
    row: Backend,
    xp: Namespace,
    device: Device,
    host: dict[str, np.ndarray[Any, Any]],
    lead: tuple[int, ...],
    with_torch: bool,
    with_jax: bool,
    compiled: bool = False,
) -> tuple[dict[str, Variant], str | None]:
    x, w, b, g = (xp.asarray(host[key], device=device) for key in ("x", "w", "b", "g"))
    x2, g2 = _flatten(x, xp), _flatten(g, xp)
    n, k = host["w"].shape

    def layer(x: Array, w: Array, b: Array, g: Array) -> Any:
        out, vjp = affine_vjp(x, w, b)
        return out, vjp(g)

    def products(x2: Array, w: Array, g2: Array) -> Any:
        return x2 @ w.T, g2 @ w, g2.T @ x2

    hand = _hand_written(row, xp, lead, k, n, "complex" in host["x"].dtype.name)
    if row.compiler == "jax.jit":
        # JAX code runs under jax.jit; eager JAX would time a dispatch per operation.
        import jax

        layer, products, hand = jax.jit(layer), jax.jit(products), jax.jit(hand)

    variants: dict[str, Variant] = {
        "xaffine": (lambda: layer(x, w, b, g), row.wait),
        "bound": (lambda: products(x2, w, g2), row.wait),
        "hand": (lambda: hand(x, w, b, g), row.wait),
    }
    if with_torch:
        variants["torch"] = (_torch_variant(row.gpu, host), find_backend("torch:cuda" if row.gpu else "torch").wait)
    if with_jax:
        variants["jax"] = (_jax_variant(row.gpu, host), find_backend("jax").wait)
    graphs = None
    if compiled:
        more, graphs = _compiled_variants(row, layer, hand, (x, w, b, g))
        variants.update(more)
    return variants, graphs


def _compiled_variants(
    row: Backend, layer: Callable[..., Any], hand: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[dict[str, Variant], str]:
    """xaffine and the hand-written code under the same compiler, and how their graphs compare.

    torch: ``torch.compile(fullgraph=True)`` with inductor, and with ``mode="reduce-overhead"``
    (CUDA graphs) on a GPU; compared are dynamo's graphs and the number of guards each call
    checks. JAX: both already run under ``jax.jit``; compared here are their jaxprs.
    """
    if row.compiler == "jax.jit":
        import jax

        ours, theirs = (_primitives(jax.make_jaxpr(f)(*args).jaxpr) for f in (layer, hand))
        return {}, _compare(ours, theirs)
    import torch

    seen: dict[str, tuple[list[str], int]] = {}
    for name, fn in (("xaffine", layer), ("hand", hand)):
        explained = torch._dynamo.explain(fn)(*args)
        nodes = [n for gm in explained.graphs for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
        seen[name] = ([getattr(n.target, "__name__", str(n.target)) for n in nodes], len(explained.out_guards))
    mode = "reduce-overhead" if row.gpu else None
    ours_c, hand_c = (torch.compile(f, fullgraph=True, mode=mode) for f in (layer, hand))
    variants: dict[str, Variant] = {
        "xaffine compiled": (lambda: ours_c(*args), row.wait),
        "hand compiled": (lambda: hand_c(*args), row.wait),
    }
    (ours, our_guards), (theirs, their_guards) = seen["xaffine"], seen["hand"]
    # Each call of compiled code first checks its guards: what the traced Python read.
    return variants, f"{_compare(ours, theirs)}; guards: xaffine {our_guards}, hand {their_guards}"


def _primitives(jaxpr: Any) -> list[str]:
    """The primitives of a jaxpr, those of nested jitted calls in their place."""
    names = []
    for e in jaxpr.eqns:
        inner = e.params.get("jaxpr")
        names += _primitives(getattr(inner, "jaxpr", inner)) if inner is not None else [str(e.primitive)]
    return names


def _compare(ours: list[str], theirs: list[str]) -> str:
    if sorted(ours) == sorted(theirs):
        return f"same {len(ours)} operations"
    return f"xaffine {len(ours)} operations ({', '.join(ours)}); hand {len(theirs)} ({', '.join(theirs)})"


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


def bench(
    backends: Sequence[str | Backend] = ("numpy",),
    dtypes: Sequence[str] = ("float32", "float64"),
    shapes: Sequence[str] = tuple(SHAPES),
    *,
    rounds: int = 15,
    min_time: float = 0.05,
    torch: bool = True,
    jax: bool = False,
    compiled: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time forward+backward of every backend x dtype x shape; see the module docstring.

    `compiled` (torch and JAX backends) adds xaffine against the hand-written code under
    the same compiler: ``torch.compile`` (the ratio ``compiled xaffine/hand``), or, for
    JAX, whose variants already run under ``jax.jit``, the comparison of the two jaxprs.

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
    for name in backends:
        row = find_backend(name) if isinstance(name, str) else name
        _, xp, device, _ = row.load(exact=True)
        for dtype in dtypes:
            for shape_name, (lead, k, n) in parsed:
                if progress is not None:
                    progress(f"{row.name} {dtype} {shape_name}")
                host = host_inputs(lead, k, n, dtype, seed)
                variants, graphs = _variants(
                    row, xp, device, host, lead, with_torch, jax, compiled and bool(row.compiler)
                )
                result = BenchResult(
                    row.name, device_name(device), dtype, shape_name, [*lead, k, n], 6 * math.prod(lead) * k * n
                )
                samples = round_robin(variants, rounds=rounds, min_time=min_time)
                result.times = {key: statistics.median(v) for key, v in samples.items()}
                result.ratios = {
                    f"xaffine/{key}": _paired(samples["xaffine"], v)
                    for key, v in samples.items()
                    if key != "xaffine" and " compiled" not in key
                }
                if "xaffine compiled" in samples:
                    result.ratios["compiled xaffine/hand"] = _paired(
                        samples["xaffine compiled"], samples["hand compiled"]
                    )
                    if row.gpu:
                        result.ratios["compiled xaffine/eager"] = _paired(
                            samples["xaffine compiled"], samples["xaffine"]
                        )
                elif graphs is not None:  # JAX: xaffine/hand is already both under jax.jit
                    result.ratios["compiled xaffine/hand"] = result.ratios["xaffine/hand"]
                result.graphs = graphs
                if row.module == "numpy":
                    result.peak_memory_ratio = _peak_memory_ratio(variants["xaffine"][0])
                results.append(result)
    return results


def _paired(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(a / c for a, c in zip(ours, theirs, strict=True))


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import os

    import array_api_compat

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus"] = str(len(os.sched_getaffinity(0)))
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
    head = ["backend", "dtype", "shape", "xaffine us", "bound us", "hand us", *refs, "GFLOP/s", "peak mem/outputs"]
    rows = [head]
    for r in results:
        rows.append(
            [
                r.backend,
                r.dtype,
                r.shape,
                *(f"{r.times[key] * 1e6:.1f}" for key in ("xaffine", "bound", "hand")),
                *(f"{r.ratios[k]:.2f}" if k in r.ratios else "-" for k in refs),
                f"{r.gflops():.1f}",
                "-" if r.peak_memory_ratio is None else f"{r.peak_memory_ratio:.2f}",
            ]
        )
    return render_table(rows, align="right")


def plot(results: list[BenchResult], path: str) -> None:
    """Time per shape for xaffine, the bound, hand-written code and torch: one line each per backend and dtype."""
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
        for key, style in (("xaffine", "-o"), ("bound", "--"), ("hand", "-x"), ("torch", ":"), ("jax", "-.")):
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


# -- the command ------------------------------------------------------------------


def _shape(text: str) -> str:
    try:
        return parse_shape(text)[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _plot_path(text: str) -> str:
    path = output_path(text)
    if path == "-":
        msg = "a plot goes to a file; give a path such as bench.png"
        raise argparse.ArgumentTypeError(msg)
    if not _importable("matplotlib"):
        msg = "needs matplotlib: pip install 'xaffine[plot]'"
        raise argparse.ArgumentTypeError(msg)
    return path


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time forward+backward against the matrix-product bound, hand-written code and PyTorch",
        description=(
            "Time xaffine's forward+backward (affine_vjp, then its vjp) against, in the same run, the three raw "
            "matrix products on the same backend (the bound), the same work hand-written in that library, "
            "torch.nn.functional.linear + autograd, and optionally jax.jit of jax.vjp. Reports median times "
            "and the median of per-round paired ratios."
        ),
    )
    parser.add_argument("--backends", metavar="LIST", type=backend_list, help="comma list (default: numpy)")
    parser.add_argument(
        "--dtypes",
        metavar="LIST",
        type=dtype_list,
        help=f"comma list of {', '.join(DTYPES)} (default: float32,float64)",
    )
    parser.add_argument(
        "--shape",
        action="append",
        type=_shape,
        help="single, small, medium, large, seq, or MxKxN with leading axes, e.g. 8x512x768x768; repeatable "
        "(default: the five named shapes)",
    )
    parser.add_argument("--rounds", type=positive_int, default=15, help="round-robin rounds (default: 15)")
    parser.add_argument(
        "--min-time", type=seconds, default=0.05, help="seconds per timed sample, at most 3600 (default: 0.05)"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch reference")
    parser.add_argument("--jax", action="store_true", help="add jax.jit(jax.vjp) as a reference")
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="torch and JAX backends: xaffine against the hand-written code under the same compiler "
        "(torch.compile, with mode='reduce-overhead' on a GPU; jax.jit), and whether their graphs have the "
        "same operations",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=output_path,
        help="write the results as JSON to PATH ('-': stdout, the table then goes to stderr)",
    )
    parser.add_argument(
        "--plot", metavar="PATH", type=_plot_path, help="write a plot of time against size (needs matplotlib)"
    )
    parser.set_defaults(run=run)


def _memory() -> int | None:
    """The machine's physical memory in bytes, where the system says."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(shapes: Sequence[str], dtypes: Sequence[str]) -> None:
    """Refuse, before any work, a shape whose arrays alone would not fit in memory.

    One forward+backward holds x, dA, the output and dX (each rows x features), W and dW,
    b and db, and the bound's and the hand-written variant's copies of the results: about
    three times the inputs and outputs.
    """
    memory = _memory()
    if memory is None:
        return
    itemsize = max(np.dtype(d).itemsize for d in dtypes)
    for text in shapes:
        _, (lead, k, n) = parse_shape(text)
        rows = math.prod(lead)
        needed = 3 * itemsize * (2 * rows * k + 2 * rows * n + 2 * n * k + 2 * n)
        if needed > memory:
            msg = (
                f"--shape {text} needs about {needed / 2**30:.3g} GiB ({', '.join(dtypes)}) and this machine "
                f"has {memory / 2**30:.3g} GiB of memory; choose a smaller shape"
            )
            raise ValueError(msg)


def run(args: argparse.Namespace) -> int:
    shapes = args.shape or list(SHAPES)
    backends: list[Backend] = args.backends or [find_backend("numpy")]
    dtypes = args.dtypes or ["float32", "float64"]
    # Everything that can be known before timing is checked before timing.
    for row in backends:
        try:
            _, xp, _, _ = row.load(exact=True)
        except BackendUnavailable as exc:
            msg = f"backend {row.name} cannot run here: {exc.reason} (install: {row.install})"
            raise ValueError(msg) from exc
        missing = [d for d in dtypes if not hasattr(xp, d)]
        if missing:
            msg = f"backend {row.name} has no {', '.join(missing)} in its Array API namespace"
            raise ValueError(msg)
    _check_memory(shapes, dtypes)
    if args.jax and not _importable("jax"):
        msg = "--jax needs JAX: pip install jax"
        raise ImportError(msg)
    out = human_stream(args.json)
    with Progress(len(shapes) * len(backends) * len(dtypes)) as progress:
        results = bench(
            backends,
            dtypes,
            shapes,
            rounds=args.rounds,
            min_time=args.min_time,
            torch=not args.no_torch,
            jax=args.jax,
            compiled=args.compiled,
            progress=progress,
        )
    print(table(results), file=out)
    for r in results:
        if r.graphs is not None:
            print(f"graphs, {r.backend} {r.dtype} {r.shape}: {r.graphs}", file=out)
    print("ratios: median over rounds of (xaffine time / other time), variants timed round-robin", file=out)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), file=out)
    if args.json:
        write_json(args.json, as_json(results))
    if args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}", file=out)
    return 0
