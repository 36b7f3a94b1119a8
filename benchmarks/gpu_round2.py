"""GPU round two (issue 26): where CuPy loses time, host-bound shapes, 16-bit accumulation.

    python benchmarks/gpu_round2.py STEP [--json PATH] [--rounds N] [--budget S] [--stand-in] [--scale S]
    python benchmarks/gpu_round2.py report RUN [--out FILE]

benchmarks/gpu_round2.sh runs each step under its own time limit; the steps, numbered as
in the issue:

- ``bias-grad`` (2): CuPy's routes to ``db``, the sum of ``g`` over its rows: ``g.sum(0)``
  as CuPy is set up, the same with CuPy's accelerators set to ``cub,cutensor`` (what
  ``CUPY_ACCELERATORS=cub,cutensor`` sets at import) and to none, cuBLAS's product
  ``ones @ g``, a ``cupy.ReductionKernel`` and a two-pass compensated column sum
  (``cupy.RawKernel``). Each is checked against a float64 reference on three float32
  columns (2**25 ones; ``[2**24, 1, 1, ...]``; random data); a route may be picked only if
  on each it is never less accurate than ``g.sum(0)`` (its error at most twice that of
  ``g.sum(0)``, or within 8 float32 epsilons of the sum: summation order alone moves
  the error of random data that much); the pick is the fastest such route.
- ``bias-add`` (3): CuPy's routes to ``out += b`` (the operator, an ``ElementwiseKernel``,
  a row-per-block ``RawKernel``), and for the whole forward: the product then the add,
  against cuBLAS's gemm with ``beta=1`` on an output filled with the bias; then one
  forward+backward composed of the picked routes against xaffine as it is, the three
  products alone (the bound) and torch's ``F.linear`` + autograd, at 2048^3 and
  8x512x768x768.
- ``nvmath`` (4): nvmath-python's cuBLASLt epilogues: ``BIAS`` for the forward,
  ``BGRADB`` (and ``BGRADA``) for ``dW`` with ``db`` in one call, against the separate
  calls. Skipped with the import error where nvmath-python is absent.
- ``graph`` (5): one forward+backward of xaffine captured as a CUDA graph (CuPy stream
  capture and ``torch.cuda.CUDAGraph``, static buffers) against eager xaffine and the
  three products alone, at 32x128x128 and 256x1024x1024.
- ``compile`` (5): ``torch.compile(mode="reduce-overhead")`` of xaffine's forward+backward
  and of the same written by hand, against eager, at the same shapes; compile times and
  graph breaks recorded.
- ``low-precision`` (6): float16 and bfloat16 on torch:cuda or jax:gpu: errors of a
  forward+backward against float64, and whether the matrix product accumulates in
  float32: sums of 2**14 positive terms whose 16-bit running sum would be many units in
  the last place off.

Every timing is a median over paired rounds (each round times every variant once, in an
order rotated from the round before) of one call's time, CALLS calls per timed block,
with CUDA events on a GPU. TF32 is off: ``NVIDIA_TF32_OVERRIDE=0``, torch's
``allow_tf32`` False, JAX's matmul precision "highest".

A step that cannot run prints ``skipped: REASON`` as its last line and exits with status
3; a part of a step that cannot run is a row or note that says why. Each step writes its
tables to JSON as it goes (``--json``), so a step stopped at its limit keeps what it did.
``--stand-in`` runs the code paths on the CPU (NumPy in place of CuPy, torch and JAX on
the CPU) at sizes divided by ``--scale``: a rehearsal; every table it makes says so and
holds no GPU figure. ``report`` turns a run's folder (or its ``logs.tar``) into the
Markdown section for benchmarks/gpu_results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import statistics
import sys
import tarfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np

SKIPPED = 3
CALLS = 5
F32_EPS = float(np.finfo(np.float32).eps)
BIG_SHAPES = ((2048, 2048, 2048), (4096, 768, 768))  # 2048^3 and seq (8x512 rows, 768x768)
HOST_BOUND = ((32, 128, 128), (256, 1024, 1024))
STEPS = ("bias-grad", "bias-add", "nvmath", "graph", "compile", "low-precision")


class Skip(Exception):
    """This step (or part of it) cannot run here; the message says why."""


# -- what a step records: tables and notes, saved as JSON as they come ---------------------


class Record:
    def __init__(self, step: str, path: str | None, stand_in: bool) -> None:
        self.data: dict[str, Any] = {"step": step, "stand_in": stand_in, "device": "", "tables": [], "notes": []}
        self.path = path
        self.save()

    def device(self, text: str) -> None:
        self.data["device"] = text
        print(f"device: {text}")
        self.save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        print(f"note: {text}")
        self.save()

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        rows = [[_cell(v) for v in row] for row in rows]
        self.data["tables"].append({"title": title, "columns": columns, "rows": rows})
        print(f"\n{title}\n")
        print("\n".join(_markdown(columns, rows)))
        self.save()

    def save(self) -> None:
        if self.path:
            Path(self.path).write_text(json.dumps(self.data, indent=1) + "\n")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def _markdown(columns: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text[:300]


# -- timing: CUDA events on a GPU, the wall clock on the CPU --------------------------------


class Timer:
    """Seconds per call of fn, over CALLS calls in one timed block."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "cupy", "torch-cuda" or "cpu"

    def block(self, fn: Callable[[], Any]) -> float:
        if self.kind == "cpu":
            start = time.perf_counter()
            for _ in range(CALLS):
                fn()
            return (time.perf_counter() - start) / CALLS
        if self.kind == "cupy":
            import cupy

            begin, end = cupy.cuda.Event(), cupy.cuda.Event()
            begin.record()
            for _ in range(CALLS):
                fn()
            end.record()
            end.synchronize()
            return float(cupy.cuda.get_elapsed_time(begin, end)) / 1e3 / CALLS
        import torch

        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(CALLS):
            fn()
        end.record()
        end.synchronize()
        return float(begin.elapsed_time(end)) / 1e3 / CALLS


def paired(ops: dict[str, Callable[[], Any]], timer: Timer, rounds: int, base: str) -> dict[str, tuple[float, float]]:
    """Median seconds per call of each op and its median paired ratio to `base`."""
    for fn in ops.values():  # warm-up: kernels compiled, plans and handles made
        fn()
        timer.block(fn)
    names = list(ops)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(timer.block(ops[name]))
    return {
        name: (
            statistics.median(s),
            statistics.median(a / b for a, b in zip(s, samples[base], strict=True)),
        )
        for name, s in samples.items()
    }


def _relative(got: Any, ref: np.ndarray[Any, Any]) -> float:
    got = np.asarray(got, dtype=np.float64)
    return float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), 1e-300)


# -- the libraries: CuPy on a GPU, NumPy standing in for it on the CPU ---------------------


def _cupy(stand_in: bool) -> tuple[Any, Timer, Callable[[Any], np.ndarray[Any, Any]], str]:
    """(xp, timer, to_host, device) for CuPy, or NumPy with --stand-in."""
    if stand_in:
        return np, Timer("cpu"), np.asarray, f"NumPy {np.__version__} standing in for CuPy on the CPU"
    try:
        import cupy

        (cupy.zeros(1) + 1).get()
    except Exception as exc:
        msg = f"no usable CuPy GPU ({_why(exc)})"
        raise Skip(msg) from exc
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return cupy, Timer("cupy"), cupy.asnumpy, f"{name}, CuPy {cupy.__version__}"


def _torch_cuda(stand_in: bool) -> tuple[Any, Any, Timer, str]:
    """(torch, device, timer, description), TF32 off; the CPU with --stand-in."""
    try:
        import torch
    except ImportError as exc:
        msg = f"torch is not importable ({_why(exc)})"
        raise Skip(msg) from exc
    if stand_in:
        return torch, torch.device("cpu"), Timer("cpu"), f"torch {torch.__version__} on the CPU (stand-in)"
    if not torch.cuda.is_available():
        msg = "torch.cuda.is_available() is False"
        raise Skip(msg)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return (
        torch,
        torch.device("cuda"),
        Timer("torch-cuda"),
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
    )


@contextlib.contextmanager
def _accelerators(names: list[str]) -> Iterator[None]:
    """CuPy's reduction and routine accelerators set to `names` (what CUPY_ACCELERATORS sets at import)."""
    from cupy._core import _accelerator as acc

    saved = acc.get_reduction_accelerators(), acc.get_routine_accelerators()
    acc.set_reduction_accelerators(names)
    acc.set_routine_accelerators(names)
    try:
        yield
    finally:
        acc.set_reduction_accelerators(saved[0])
        acc.set_routine_accelerators(saved[1])


_COLUMN_SUM = r"""
extern "C" __global__ void column_sum(const {t}* g, {t}* out, long long m, long long n, long long rows) {{
    // Rows [chunk * rows, chunk * rows + rows) of column j, summed with Kahan's compensation;
    // threads of a block read consecutive columns of a row (coalesced).
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    long long start = (long long)blockIdx.y * rows;
    long long stop = start + rows < m ? start + rows : m;
    {t} s = 0, c = 0;
    for (long long i = start; i < stop; ++i) {{
        {t} y = g[i * n + j] - c;
        {t} t = s + y;
        c = (t - s) - y;
        s = t;
    }}
    out[(long long)blockIdx.y * n + j] = s;
}}
"""

_BIAS_ROWS = r"""
extern "C" __global__ void bias_rows({t}* out, const {t}* b, long long m, long long n) {{
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    {t} v = b[j];
    for (long long i = blockIdx.y; i < m; i += gridDim.y) out[i * n + j] += v;
}}
"""


def _ctype(dtype: Any) -> str:
    return {"float32": "float", "float64": "double"}[np.dtype(dtype).name]


def _sum_routes(xp: Any, stand_in: bool) -> dict[str, Callable[[Any], Callable[[], Any]] | str]:
    """Route name -> a maker of the route for one `g`, or why it cannot run here."""

    def plain(g: Any) -> Callable[[], Any]:
        return lambda: g.sum(0)

    def ones(g: Any) -> Callable[[], Any]:
        row = xp.ones(g.shape[0], dtype=g.dtype)
        return lambda: row @ g

    if stand_in:
        why = "CuPy only (not in the NumPy stand-in)"
        return {
            "g.sum(0)": plain,
            "g.sum(0), accelerators cub,cutensor": why,
            "g.sum(0), no accelerators": why,
            "ones @ g": ones,
            "cupy.ReductionKernel": why,
            "two-pass compensated RawKernel": why,
        }
    import cupy

    def accelerated(names: list[str]) -> Callable[[Any], Callable[[], Any]]:
        def make(g: Any) -> Callable[[], Any]:
            def run() -> Any:
                with _accelerators(names):
                    return g.sum(0)

            return run

        return make

    reduction = cupy.ReductionKernel("T x", "T y", "x", "a + b", "y = a", "0", "xaffine_column_sum")

    def reduction_kernel(g: Any) -> Callable[[], Any]:
        return lambda: reduction(g, axis=0)

    kernels: dict[str, Any] = {}

    def two_pass(g: Any) -> Callable[[], Any]:
        t = _ctype(g.dtype)
        if t not in kernels:
            kernels[t] = cupy.RawKernel(_COLUMN_SUM.format(t=t), "column_sum")
        kernel = kernels[t]
        m, n = g.shape
        blocks = -(-n // 256)
        # About eight blocks per multiprocessor, at least 16 rows per thread.
        sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
        chunks = max(1, min(-(-m // 16), -(-8 * sms // blocks)))
        rows = -(-m // chunks)
        chunks = -(-m // rows)
        partial = cupy.empty((chunks, n), dtype=g.dtype)
        out = cupy.empty(n, dtype=g.dtype)

        def run() -> Any:
            kernel((blocks, chunks), (256,), (g, partial, np.int64(m), np.int64(n), np.int64(rows)))
            kernel((blocks, 1), (256,), (partial, out, np.int64(chunks), np.int64(n), np.int64(chunks)))
            return out

        return run

    return {
        "g.sum(0)": plain,
        "g.sum(0), accelerators cub,cutensor": accelerated(["cub", "cutensor"]),
        "g.sum(0), no accelerators": accelerated([]),
        "ones @ g": ones,
        "cupy.ReductionKernel": reduction_kernel,
        "two-pass compensated RawKernel": two_pass,
    }


def _add_routes(xp: Any, stand_in: bool) -> dict[str, Callable[[Any, Any], Callable[[], Any]] | str]:
    """Route name -> a maker of ``out += b`` for one (out, b), or why it cannot run here."""

    def operator(out: Any, b: Any) -> Callable[[], Any]:
        return lambda: out.__iadd__(b)

    if stand_in:
        why = "CuPy only (not in the NumPy stand-in)"
        return {"out += b": operator, "ElementwiseKernel": why, "RawKernel, rows over blocks": why}
    import cupy

    elementwise = cupy.ElementwiseKernel("T b", "T y", "y += b", "xaffine_bias_add")
    kernels: dict[str, Any] = {}

    def by_elementwise(out: Any, b: Any) -> Callable[[], Any]:
        return lambda: elementwise(b, out)

    def by_rows(out: Any, b: Any) -> Callable[[], Any]:
        t = _ctype(out.dtype)
        if t not in kernels:
            kernels[t] = cupy.RawKernel(_BIAS_ROWS.format(t=t), "bias_rows")
        kernel, (m, n) = kernels[t], out.shape
        grid = (-(-n // 256), min(m, 1024))
        return lambda: kernel(grid, (256,), (out, b, np.int64(m), np.int64(n)))

    return {"out += b": operator, "ElementwiseKernel": by_elementwise, "RawKernel, rows over blocks": by_rows}


def _scaled(shape: tuple[int, ...], scale: int) -> tuple[int, ...]:
    return tuple(max(2, d // scale) for d in shape)


def _host(shape: tuple[int, ...], seed: int, dtype: str = "float32") -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- step 2: the bias gradient ----------------------------------------------------------


CASES = ("2**25 ones", "[2**24, 1, 1, ...]", "random")


def _accuracy_cases(scale: int) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The float32 columns the routes are checked on, one at a time (the first is 256 MB)."""
    yield CASES[0], np.ones((2**25 // scale, 2), dtype=np.float32)
    spike = np.ones((2**22 // scale, 2), dtype=np.float32)
    spike[0] = 2.0**24
    yield CASES[1], spike
    yield CASES[2], _host((4096 // scale, 2048 // scale), 7)


def step_bias_grad(args: argparse.Namespace, rec: Record) -> None:
    xp, timer, host, device = _cupy(args.stand_in)
    rec.device(device)
    if not args.stand_in:
        from cupy._core import _accelerator as acc

        rec.note(
            f"CUPY_ACCELERATORS={os.environ.get('CUPY_ACCELERATORS', '(unset)')}; accelerators at import: "
            f"reduction {acc.get_reduction_accelerators()}, routine {acc.get_routine_accelerators()} "
            "(1 cub, 2 cutensor)"
        )
        try:
            from cupy_backends.cuda.libs import cutensor

            rec.note(f"cuTENSOR {cutensor.get_version()} loaded")
        except Exception as exc:
            rec.note(f"cuTENSOR not loadable, so the cutensor accelerator does nothing: {_why(exc)}")
    routes = _sum_routes(xp, args.stand_in)
    makers = {name: r for name, r in routes.items() if not isinstance(r, str)}
    for name, why in routes.items():
        if isinstance(why, str):
            rec.note(f"route {name}: skipped, {why}")

    # Accuracy: error against float64 on the host, each route against g.sum(0).
    errors: dict[str, dict[str, float]] = {name: {} for name in makers}
    for case, data in _accuracy_cases(args.scale):
        ref = data.astype(np.float64).sum(0)
        g = xp.asarray(data)
        for name, make in makers.items():
            try:
                errors[name][case] = _relative(host(make(g)()), ref)
            except Exception as exc:
                rec.note(f"route {name} on {case}: failed, {_why(exc)}")
                errors[name][case] = float("nan")
        del g
    cases = list(CASES)
    eligible = []
    rows = []
    for name, errs in errors.items():
        ok = all(
            errs[c] <= max(2 * errors["g.sum(0)"][c], 8 * F32_EPS) and not math.isnan(errs[c])
            for c in cases
            if c in errs
        ) and len(errs) == len(cases)
        if ok:
            eligible.append(name)
        rows.append([name, *(errs.get(c, float("nan")) for c in cases), "yes" if ok else "no"])
    rec.table(
        "Bias gradient, float32 accuracy: max |sum - float64 sum| / max |float64 sum| (columns of "
        f"{2**25 // args.scale}x2 ones, {2**22 // args.scale}x2 [2**24, 1, ...], random "
        f"{4096 // args.scale}x{2048 // args.scale})",
        ["route", *cases, "never less accurate than g.sum(0)"],
        rows,
    )

    picks = {}
    shapes = [(m, n, "float32") for m, _, n in BIG_SHAPES] + [(BIG_SHAPES[0][0], BIG_SHAPES[0][2], "float64")]
    rows = []
    for m, n, dtype in shapes:
        m, n = _scaled((m, n), args.scale)
        g = xp.asarray(_host((m, n), 3, dtype))
        ref = host(g).astype(np.float64).sum(0)
        ops = {}
        for name, make in makers.items():
            try:
                fn = make(g)
                fn()
                ops[name] = fn
            except Exception as exc:
                rec.note(f"route {name} at {m}x{n} {dtype}: failed, {_why(exc)}")
        times = paired(ops, timer, args.rounds, "g.sum(0)")
        fastest = min((n_ for n_ in ops if n_ in eligible), key=lambda n_: times[n_][0], default="g.sum(0)")
        picks[f"{m}x{n} {dtype}"] = fastest
        for name, (seconds, ratio) in times.items():
            err = _relative(host(ops[name]()), ref)
            rows.append([f"{m}x{n}", dtype, name, seconds * 1e6, ratio, err, "pick" if name == fastest else ""])
        del g
    rec.table(
        f"Bias gradient, time: median over {args.rounds} paired rounds of one call (us), ratio to g.sum(0)",
        ["g (rows x cols)", "dtype", "route", "us", "/ g.sum(0)", "error", ""],
        rows,
    )
    rec.data["picks"] = picks
    rec.note(f"picks (fastest route never less accurate than g.sum(0)): {picks}")


# -- step 3: the bias add, and one forward+backward of the picked routes ------------------


def _load_picks(path: str | None) -> dict[str, str]:
    if not path or not Path(path).exists():
        return {}
    try:
        return dict(json.loads(Path(path).read_text()).get("picks", {}))
    except ValueError:
        return {}


def step_bias_add(args: argparse.Namespace, rec: Record) -> None:
    xp, timer, host, device = _cupy(args.stand_in)
    rec.device(device)
    routes = _add_routes(xp, args.stand_in)
    makers = {name: r for name, r in routes.items() if not isinstance(r, str)}
    for name, why in routes.items():
        if isinstance(why, str):
            rec.note(f"route {name}: skipped, {why}")
    if args.stand_in:
        rec.note("forward by gemm with beta=1: skipped, cuBLAS only (not in the NumPy stand-in)")
    rows, add_picks = [], {}
    for shape, dtype in [*((s, "float32") for s in BIG_SHAPES), (BIG_SHAPES[0], "float64")]:
        m, k, n = _scaled(shape, args.scale)
        x, w, b = (xp.asarray(_host(s, i, dtype)) for i, s in enumerate(((m, k), (n, k), (n,))))
        product = x @ w.T
        ref = host(product).astype(np.float64) + host(b).astype(np.float64)
        out = xp.empty_like(product)
        errors, ops = {}, {}
        for name, make in makers.items():
            try:
                out[...] = product
                fn = make(out, b)
                fn()
                errors[name] = _relative(host(out), ref)
                ops[name] = fn
            except Exception as exc:
                rec.note(f"route {name} at {m}x{n} {dtype}: failed, {_why(exc)}")
        # Whole forwards: the product then the add, against a fill then gemm with beta=1.
        ops["forward: x @ w.T alone"] = lambda x=x, w=w: x @ w.T
        ops["forward: x @ w.T, then out += b"] = lambda x=x, w=w, b=b: (x @ w.T).__iadd__(b)
        if not args.stand_in:
            import cupy.cublas

            def fill_gemm(x: Any = x, w: Any = w, b: Any = b, out: Any = out) -> Any:
                out[...] = b
                return cupy.cublas.gemm("N", "T", x, w, out=out, alpha=1.0, beta=1.0)

            try:
                errors["forward: out[...] = b, gemm beta=1"] = _relative(host(fill_gemm()), ref)
                ops["forward: out[...] = b, gemm beta=1"] = fill_gemm
            except Exception as exc:
                rec.note(f"gemm with beta=1 at {m}x{k}x{n} {dtype}: failed, {_why(exc)}")
        errors["forward: x @ w.T, then out += b"] = _relative(host(ops["forward: x @ w.T, then out += b"]()), ref)
        times = paired(ops, timer, args.rounds, "out += b")
        alone = [name for name in makers if name in ops]
        pick = min(
            (a for a in alone if errors[a] <= max(2 * errors["out += b"], 8 * F32_EPS)),
            key=lambda a: times[a][0],
            default="out += b",
        )
        add_picks[f"{m}x{n} {dtype}"] = pick
        for name, (seconds, ratio) in times.items():
            mark = "pick" if name == pick else ""
            rows.append([f"{m}x{k}x{n}", dtype, name, seconds * 1e6, ratio, errors.get(name, float("nan")), mark])
    rec.table(
        f"Bias add, time: median over {args.rounds} paired rounds of one call (us), ratio to out += b",
        ["M x K x N", "dtype", "route", "us", "/ out += b", "error", ""],
        rows,
    )
    rec.data["picks"] = add_picks
    _composed(args, rec, (xp, timer, host), _load_picks(args.bias_grad_json), add_picks)


def _composed(
    args: argparse.Namespace,
    rec: Record,
    library: tuple[Any, Timer, Callable[[Any], Any]],
    sum_picks: dict[str, str],
    add_picks: dict[str, str],
) -> None:
    """One forward+backward of the picked routes against xaffine, the bound and torch."""
    from xaffine import affine_vjp

    xp, timer, host = library
    sums = {n: r for n, r in _sum_routes(xp, args.stand_in).items() if not isinstance(r, str)}
    adds = {n: r for n, r in _add_routes(xp, args.stand_in).items() if not isinstance(r, str)}
    torch_step = None
    if not args.stand_in:
        with contextlib.suppress(Skip):
            torch, tdev, _, _ = _torch_cuda(False)
            torch_step = (torch, tdev)
    if torch_step is None:
        rec.note("torch's F.linear + autograd: left out (no torch on CUDA in this run)")
    rows = []
    for m, k, n in BIG_SHAPES:
        m, k, n = _scaled((m, k, n), args.scale)
        key = f"{m}x{n} float32"
        sum_pick = sum_picks.get(key, "g.sum(0)") if sum_picks.get(key, "g.sum(0)") in sums else "g.sum(0)"
        add_pick = add_picks.get(key, "out += b") if add_picks.get(key, "out += b") in adds else "out += b"
        hx, hw, hb, hg = (_host(s, 10 + i) for i, s in enumerate(((m, k), (n, k), (n,), (m, n))))
        x, w, b, g = (xp.asarray(a) for a in (hx, hw, hb, hg))
        out = xp.empty((m, n), dtype=x.dtype)
        add, db = adds[add_pick](out, b), sums[sum_pick](g)

        def composed(x: Any = x, w: Any = w, g: Any = g, out: Any = out, add: Any = add, db: Any = db) -> Any:
            if args.stand_in:
                np.matmul(x, w.T, out=out)
            else:
                import cupy.cublas

                cupy.cublas.gemm("N", "T", x, w, out=out)
            add()
            return out, g @ w, g.T @ x, db()

        def layer(x: Any = x, w: Any = w, b: Any = b, g: Any = g) -> Any:
            out, vjp = affine_vjp(x, w, b)
            return out, *vjp(g)

        ops = {
            "bound: the three products": lambda x=x, w=w, g=g: (x @ w.T, g @ w, g.T @ x),
            "xaffine as it is": layer,
            f"composed: {add_pick}, {sum_pick}": composed,
        }
        want64 = [a.astype(np.float64) for a in (hx, hw, hb, hg)]
        ref = (
            want64[0] @ want64[1].T + want64[2],
            want64[3] @ want64[1],
            want64[3].T @ want64[0],
            want64[3].sum(0),
        )
        errors = {
            name: max(_relative(host(got), r) for got, r in zip(fn(), ref, strict=True))
            for name, fn in ops.items()
            if not name.startswith("bound")
        }
        if torch_step is not None:
            torch, tdev = torch_step
            tx, tw, tb = (torch.from_numpy(a).to(tdev).requires_grad_(True) for a in (hx, hw, hb))
            tg = torch.from_numpy(hg).to(tdev)

            def linear(tx: Any = tx, tw: Any = tw, tb: Any = tb, tg: Any = tg, torch: Any = torch) -> Any:
                tx.grad = tw.grad = tb.grad = None
                out = torch.nn.functional.linear(tx, tw, tb)
                out.backward(tg)
                return out

            ops["torch F.linear + autograd"] = linear
        times = paired(ops, timer, args.rounds, "bound: the three products")
        base = "torch F.linear + autograd" if "torch F.linear + autograd" in times else None
        for name, (seconds, ratio) in times.items():
            versus = float("nan")
            if base is not None:
                versus = seconds / times[base][0]
            rows.append([f"{m}x{k}x{n}", name, seconds * 1e3, ratio, versus, errors.get(name, float("nan"))])
    rec.table(
        f"One forward+backward, float32: median over {args.rounds} paired rounds (ms); ratio to the three "
        "products (paired) and to torch (of the medians); goals at 2048^3: at most 1.03x the bound and 1.0x torch",
        ["M x K x N", "variant", "ms", "/ bound", "/ torch", "error"],
        rows,
    )


# -- step 4: nvmath-python's epilogues ---------------------------------------------------


def step_nvmath(args: argparse.Namespace, rec: Record) -> None:
    try:
        import nvmath
        from nvmath.linalg.advanced import Matmul, MatmulEpilog
    except Exception as exc:
        msg = f"nvmath-python is not importable here ({_why(exc)})"
        raise Skip(msg) from exc
    if args.stand_in:
        msg = f"nvmath-python {getattr(nvmath, '__version__', '?')} imported, but it needs a CUDA GPU (no stand-in)"
        raise Skip(msg)
    xp, timer, host, device = _cupy(False)
    rec.device(device)
    versions = []
    from importlib import metadata

    for dist in ("nvmath-python", "cuda-core", "cuda-bindings", "cuda-pathfinder"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (no metadata)")
    rec.note(f"{', '.join(versions)}; nvmath {getattr(nvmath, '__version__', '?')}")

    def plan(a: Any, b: Any, epilog: Any, inputs: Any = None) -> Callable[[], Any]:
        mm = Matmul(a, b)
        mm.plan(epilog=epilog, epilog_inputs=inputs)
        return mm.execute

    def split(result: Any) -> tuple[Any, dict[str, Any]]:
        return result if isinstance(result, tuple) else (result, {})

    rows = []
    for m, k, n in BIG_SHAPES:
        hx, hw, hb, hg = (_host(s, 20 + i) for i, s in enumerate(((m, k), (n, k), (n,), (m, n))))
        x, w, b, g = (xp.asarray(a) for a in (hx, hw, hb, hg))
        d = [a.astype(np.float64) for a in (hx, hw, hb, hg)]
        ref_out, ref_dw, ref_db = d[0] @ d[1].T + d[2], d[3].T @ d[0], d[3].sum(0)
        ops: dict[str, Callable[[], Any]] = {
            "forward: x @ w.T, then out += b": lambda x=x, w=w, b=b: (x @ w.T).__iadd__(b),
            "backward: g.T @ x and g.sum(0)": lambda x=x, g=g: (g.T @ x, g.sum(0)),
        }
        errors = {
            "forward: x @ w.T, then out += b": _relative(host(ops["forward: x @ w.T, then out += b"]()), ref_out),
            "backward: g.T @ x and g.sum(0)": max(
                _relative(host(a), r)
                for a, r in zip(ops["backward: g.T @ x and g.sum(0)"](), (ref_dw, ref_db), strict=True)
            ),
        }
        # BIAS adds a vector along the result's rows: out.T = w @ x.T with bias b. BGRADB sums
        # B = g over its rows: dW.T = x.T @ g, db beside it; BGRADA sums A = g.T over its
        # columns: dW = g.T @ x, db beside it.
        attempts = {
            "forward: BIAS epilogue (out.T = w @ x.T + b)": (w, x.T, MatmulEpilog.BIAS, {"bias": b}),
            "backward: BGRADB epilogue (dW.T = x.T @ g, db)": (x.T, g, MatmulEpilog.BGRADB, None),
            "backward: BGRADA epilogue (dW = g.T @ x, db)": (g.T, x, MatmulEpilog.BGRADA, None),
        }
        for name, (a, b_, epilog, inputs) in attempts.items():
            try:
                fn = plan(a, b_, epilog, inputs)
                result, aux = split(fn())
                if epilog == MatmulEpilog.BIAS:
                    errors[name] = _relative(host(result).T, ref_out)
                else:
                    dw = host(result).T if epilog == MatmulEpilog.BGRADB else host(result)
                    errors[name] = max(_relative(dw, ref_dw), _relative(host(next(iter(aux.values()))), ref_db))
                ops[name] = fn
            except Exception as exc:
                rec.note(f"{name} at {m}x{k}x{n}: failed, {_why(exc)}")
                traceback.print_exc()
        times = paired(ops, timer, args.rounds, "forward: x @ w.T, then out += b")
        for name, (seconds, ratio) in times.items():
            rows.append([f"{m}x{k}x{n}", name, seconds * 1e6, ratio, errors.get(name, float("nan"))])
    rec.table(
        f"nvmath-python epilogues, float32: median over {args.rounds} paired rounds (us), ratio to the forward "
        "product and add",
        ["M x K x N", "variant", "us", "/ product + add", "error"],
        rows,
    )
    # The bias gradient's accuracy inside cuBLASLt: 2**25 rows of ones.
    ones = xp.ones((2**25, 2), dtype=xp.float32)
    try:
        _, aux = split(plan(ones.T, ones, MatmulEpilog.BGRADB)())
        got = host(next(iter(aux.values())))
        rec.note(f"BGRADB of 2**25 rows of ones: {got.tolist()} (float64: {2.0**25:.0f})")
    except Exception as exc:
        rec.note(f"BGRADB of 2**25 rows of ones: failed, {_why(exc)}")


# -- step 5: host-bound shapes, CUDA graphs and torch.compile ----------------------------


def _xaffine_step() -> Callable[..., Any]:
    from xaffine import affine_vjp

    def step(x: Any, w: Any, b: Any, g: Any) -> Any:
        out, vjp = affine_vjp(x, w, b)
        return (out, *vjp(g))

    return step


def _reference(hx: Any, hw: Any, hb: Any, hg: Any) -> tuple[Any, ...]:
    x, w, b, g = (a.astype(np.float64) for a in (hx, hw, hb, hg))
    return x @ w.T + b, g @ w, g.T @ x, g.sum(0)


def _cupy_graph(step: Callable[..., Any], x: Any, w: Any, b: Any, g: Any, stream: Any) -> tuple[Any, Any]:
    """One forward+backward captured on `stream` as a CUDA graph: (graph, its static outputs)."""
    for _ in range(3):  # warm-up: kernels compiled, the memory pool holds every block the step takes
        step(x, w, b, g)
    stream.synchronize()
    stream.begin_capture()
    try:
        outputs = step(x, w, b, g)
    finally:
        graph = stream.end_capture()
    return graph, outputs


def _torch_graph(torch: Any, step: Callable[..., Any], x: Any, w: Any, b: Any, g: Any) -> tuple[Any, Any]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(x, w, b, g)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step(x, w, b, g)
    return graph, outputs


def step_graph(args: argparse.Namespace, rec: Record) -> None:
    """Eager xaffine, the same captured as one CUDA graph, and the three products, on CuPy and torch."""
    step = _xaffine_step()
    libraries: list[tuple[str, Any, Timer, Callable[[Any], Any], Callable[[np.ndarray[Any, Any]], Any]]] = []
    try:
        xp, timer, host, device = _cupy(args.stand_in)
        rec.device(device)
        libraries.append(("numpy (stand-in)" if args.stand_in else "cupy", xp, timer, host, xp.asarray))
    except Skip as exc:
        rec.note(f"CuPy: skipped, {exc}")
    try:
        torch, tdev, ttimer, tdesc = _torch_cuda(args.stand_in)
        rec.note(f"torch: {tdesc}")
        libraries.append(
            (f"torch:{tdev.type}", torch, ttimer, lambda a: a.cpu().numpy(), lambda a: torch.from_numpy(a).to(tdev))
        )
    except Skip as exc:
        rec.note(f"torch: skipped, {exc}")
    if not libraries:
        msg = "neither CuPy nor torch can run here"
        raise Skip(msg)
    rows: list[list[Any]] = []
    for name, lib, timer, host, put in libraries:
        for shape in HOST_BOUND:
            m, k, n = _scaled(shape, args.scale)
            hx, hw, hb, hg = (_host(s, 30 + i) for i, s in enumerate(((m, k), (n, k), (n,), (m, n))))
            nx = _host((m, k), 99)
            stream = None
            if name == "cupy":
                stream = lib.cuda.Stream(non_blocking=True)
            with stream if stream is not None else contextlib.nullcontext():
                x, w, b, g = (put(a) for a in (hx, hw, hb, hg))
                ops: dict[str, Callable[[], Any]] = {
                    "bound: the three products": lambda x=x, w=w, g=g: (x @ w.T, g @ w, g.T @ x),
                    "xaffine eager": lambda x=x, w=w, b=b, g=g: step(x, w, b, g),
                }
                errors = {
                    "xaffine eager": max(
                        _relative(host(a), r) for a, r in zip(step(x, w, b, g), _reference(hx, hw, hb, hg), strict=True)
                    )
                }
                if args.stand_in:
                    rec.note(f"{name} CUDA graph at {m}x{k}x{n}: skipped, a CUDA graph needs a GPU")
                else:
                    try:
                        if stream is not None:
                            graph, outputs = _cupy_graph(step, x, w, b, g, stream)
                            replay = lambda graph=graph, stream=stream: graph.launch(stream)  # noqa: E731
                        else:
                            graph, outputs = _torch_graph(lib, step, x, w, b, g)
                            replay = graph.replay
                        # New values in the static input, one replay, checked; then the old values back.
                        x[...] = put(nx)
                        replay()
                        errors["xaffine, one CUDA graph"] = max(
                            _relative(host(a), r) for a, r in zip(outputs, _reference(nx, hw, hb, hg), strict=True)
                        )
                        x[...] = put(hx)
                        ops["xaffine, one CUDA graph"] = replay
                    except Exception as exc:
                        rec.note(f"{name} CUDA graph at {m}x{k}x{n}: failed, {_why(exc)}")
                if name.startswith("torch"):
                    tx, tw, tb = (put(a).requires_grad_(True) for a in (hx, hw, hb))

                    def linear(tx: Any = tx, tw: Any = tw, tb: Any = tb, tg: Any = g, lib: Any = lib) -> Any:
                        tx.grad = tw.grad = tb.grad = None
                        out = lib.nn.functional.linear(tx, tw, tb)
                        out.backward(tg)
                        return out

                    ops["torch F.linear + autograd"] = linear
                times = paired(ops, timer, args.rounds, "bound: the three products")
            for variant, (seconds, ratio) in times.items():
                rows.append([name, f"{m}x{k}x{n}", variant, seconds * 1e6, ratio, errors.get(variant, float("nan"))])
    rec.table(
        f"Host-bound shapes, float32: median over {args.rounds} paired rounds of one call (us), ratio to the "
        "three products called eagerly; goal at 32x128x128: within 1.3x of the bound with a graph",
        ["library", "M x K x N", "variant", "us", "/ bound", "error"],
        rows,
    )


def step_compile(args: argparse.Namespace, rec: Record) -> None:
    torch, tdev, timer, desc = _torch_cuda(args.stand_in)
    rec.device(desc)
    import torch._dynamo as dynamo

    mode, backend = ("reduce-overhead", "inductor") if not args.stand_in else ("default", "eager")
    if args.stand_in:
        rec.note("stand-in: torch.compile with backend='eager' on the CPU (dynamo's tracing only, no Inductor)")
    step = _xaffine_step()

    def hand(x: Any, w: Any, b: Any, g: Any) -> Any:
        return torch.addmm(b, x, w.T), g @ w, g.T @ x, g.sum(0)

    started = time.monotonic()
    for shape in HOST_BOUND:
        m, k, n = _scaled(shape, args.scale)
        hx, hw, hb, hg = (_host(s, 40 + i) for i, s in enumerate(((m, k), (n, k), (n,), (m, n))))
        ref = _reference(hx, hw, hb, hg)
        x, w, b, g = (torch.from_numpy(a).to(tdev) for a in (hx, hw, hb, hg))
        ops: dict[str, Callable[[], Any]] = {
            "xaffine eager": lambda x=x, w=w, b=b, g=g: step(x, w, b, g),
            "hand-written eager": lambda x=x, w=w, b=b, g=g: hand(x, w, b, g),
        }
        errors: dict[str, float] = {}
        for name, fn in (("xaffine", step), ("hand-written", hand)):
            if time.monotonic() - started > args.budget * 0.6:
                rec.note(f"torch.compile of {name} at {m}x{k}x{n}: skipped, 60% of the step's {args.budget} s spent")
                continue
            try:
                dynamo.reset()
                dynamo.utils.counters.clear()
                compiled = torch.compile(fn, mode=mode, backend=backend)
                t0 = time.perf_counter()
                for _ in range(3):  # reduce-overhead records its graph on a later call
                    if hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                        torch.compiler.cudagraph_mark_step_begin()
                    got = compiled(x, w, b, g)
                if tdev.type == "cuda":
                    torch.cuda.synchronize()
                took = time.perf_counter() - t0
                breaks = sum(dynamo.utils.counters["graph_break"].values())
                errors[f"{name} compiled"] = max(_relative(a.cpu(), r) for a, r in zip(got, ref, strict=True))
                rec.note(f"torch.compile of {name} at {m}x{k}x{n}: {took:.1f} s to compile, {breaks} graph breaks")

                def call(compiled: Any = compiled, x: Any = x, w: Any = w, b: Any = b, g: Any = g) -> Any:
                    if hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                        torch.compiler.cudagraph_mark_step_begin()
                    return compiled(x, w, b, g)

                ops[f"{name} compiled ({mode})"] = call
            except Exception as exc:
                rec.note(f"torch.compile of {name} at {m}x{k}x{n}: failed, {_why(exc)}")
        times = paired(ops, timer, args.rounds, "xaffine eager")
        rows = []
        for name, (seconds, ratio) in times.items():
            err = errors.get(name.split(" (")[0], float("nan"))
            rows.append([f"{m}x{k}x{n}", name, seconds * 1e6, ratio, err])
        # One table per shape, saved as it comes: the step may meet its limit at the next.
        rec.table(
            f"torch.compile(mode={mode!r}) against eager, float32 on {tdev.type} at {m}x{k}x{n}: median over "
            f"{args.rounds} paired rounds of one call (us), ratio to xaffine eager",
            ["M x K x N", "variant", "us", "/ xaffine eager", "error"],
            rows,
        )


# -- step 6: 16-bit floats ---------------------------------------------------------------


def _round_bf16(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.float32)


def _to16(a: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    return a.astype(np.float16).astype(np.float32) if dtype == "float16" else _round_bf16(a.astype(np.float32))


def _ulp(v: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    bits = 10 if dtype == "float16" else 7
    return np.exp2(np.floor(np.log2(np.abs(v))) - bits)


def _sequential16(terms: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """Column sums of `terms` with a running sum rounded to `dtype` after each add."""
    s = np.zeros(terms.shape[1], dtype=np.float32)
    for row in terms:
        s = _to16(s + row, dtype)
    return s


def step_low_precision(args: argparse.Namespace, rec: Record) -> None:
    library = args.backend.split(":")[0]
    if library == "torch":
        torch, tdev, _, desc = _torch_cuda(args.stand_in)
        if not args.stand_in:
            rec.note(
                "torch.backends.cuda.matmul: allow_fp16_reduced_precision_reduction="
                f"{torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction}, "
                f"allow_bf16_reduced_precision_reduction={torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction}"
            )

        def put(a: np.ndarray[Any, Any], dtype: str) -> Any:
            return torch.from_numpy(a).to(device=tdev, dtype=getattr(torch, dtype))

        def back(a: Any) -> np.ndarray[Any, Any]:
            return a.float().cpu().numpy()

        def matmul(a: Any, b: Any) -> Any:
            return a @ b

        settings: dict[str, dict[str, bool]] = {"default": {}}
        if not args.stand_in:
            settings["reduced-precision reduction off"] = {
                "allow_fp16_reduced_precision_reduction": False,
                "allow_bf16_reduced_precision_reduction": False,
            }

        @contextlib.contextmanager
        def setting(flags: dict[str, bool]) -> Iterator[None]:
            saved = {name: getattr(torch.backends.cuda.matmul, name) for name in flags}
            for name, value in flags.items():
                setattr(torch.backends.cuda.matmul, name, value)
            try:
                yield
            finally:
                for name, value in saved.items():
                    setattr(torch.backends.cuda.matmul, name, value)

    elif library == "jax":
        try:
            import jax
            import jax.numpy as jnp
        except ImportError as exc:
            msg = f"jax is not importable ({_why(exc)})"
            raise Skip(msg) from exc
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        platform_ = "cpu" if args.stand_in else "gpu"
        try:
            jdev = jax.devices(platform_)[0]
        except RuntimeError as exc:
            msg = f"jax has no {platform_} device ({_why(exc)})"
            raise Skip(msg) from exc
        desc = f"{getattr(jdev, 'device_kind', jdev)}, jax {jax.__version__}" + (" (stand-in)" if args.stand_in else "")

        def put(a: np.ndarray[Any, Any], dtype: str) -> Any:
            return jax.device_put(jnp.asarray(a, dtype=dtype), jdev)

        def back(a: Any) -> np.ndarray[Any, Any]:
            return np.asarray(a.astype(jnp.float32))

        matmul = jax.jit(lambda a, b: a @ b)
        settings = {"precision highest": {}}

        def setting(flags: dict[str, bool]) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    else:
        msg = f"--backend is torch:cuda or jax:gpu, not {args.backend!r}"
        raise Skip(msg)
    rec.device(desc)
    step = _xaffine_step()
    if library == "jax":
        step = jax.jit(step)
    m, k, n = _scaled((256, 1024, 1024), args.scale)
    rows = []
    for dtype in ("float16", "bfloat16", "float32"):
        host = [_host(s, 50 + i) for i, s in enumerate(((m, k), (n, k), (n,), (m, n)))]
        if dtype != "float32":
            host = [_to16(a, dtype) for a in host]
        ref = _reference(*host)
        got = step(*(put(a, dtype) for a in host))
        errs = [_relative(back(a), r) for a, r in zip(got, ref, strict=True)]
        rows.append([dtype, f"{m}x{k}x{n}", *errs])
    rec.table(
        "16-bit forward+backward: max |result - float64| / max |float64| on the inputs as rounded to the dtype",
        ["dtype", "M x K x N", "out", "dx", "dW", "db"],
        rows,
    )
    terms_k = 2**14 // args.scale
    rows = []
    for dtype in ("float16", "bfloat16"):
        for rows_m, cols_n in ((1, 64), (256, 256)):
            rng = np.random.default_rng(60)
            a = np.ones((rows_m, terms_k), dtype=np.float32)
            b = _to16(rng.uniform(0.0, 1.0, (terms_k, cols_n)).astype(np.float32), dtype)
            exact = b.astype(np.float64).sum(0)
            ulp = _ulp(exact, dtype)
            wide = np.max(np.abs(_to16(exact.astype(np.float32), dtype) - exact) / ulp)
            narrow = np.max(np.abs(_sequential16(b, dtype) - exact) / ulp)
            for label, flags in settings.items():
                with setting(flags):
                    got = back(matmul(put(a, dtype), put(b, dtype)))
                err = float(np.max(np.abs(got - exact[None, :]) / ulp))
                verdict = "float32 accumulation" if err <= 1.0 else "not float32 throughout (> 1 ulp)"
                rows.append([dtype, f"{rows_m}x{terms_k}x{cols_n}", label, err, float(wide), float(narrow), verdict])
    rec.table(
        f"Does the product accumulate in float32? Sums of {terms_k} terms uniform in [0, 1), error in units in the "
        "last place of the exact sum: the product, float32 accumulation rounded once, a 16-bit running sum",
        [
            "dtype",
            "M x K x N",
            "setting",
            "product (ulp)",
            "float32 accumulation (ulp)",
            "16-bit running sum (ulp)",
            "",
        ],
        rows,
    )


# -- the report: a run's folder (or logs.tar) as a Markdown section ----------------------


def _run_files(run: Path) -> dict[str, str]:
    """Every text file of the run, by name: the folder's own and those packed in logs.tar."""
    files: dict[str, str] = {}
    tar = run / "logs.tar" if run.is_dir() else run
    if tar.is_file():
        with tarfile.open(tar) as packed:
            for member in packed.getmembers():
                if member.isfile():
                    data = packed.extractfile(member)
                    if data is not None:
                        files[Path(member.name).name] = data.read().decode(errors="replace")
    if run.is_dir():
        for path in run.iterdir():
            if path.is_file() and path.suffix in (".txt", ".tsv", ".log", ".json"):
                files[path.name] = path.read_text(errors="replace")
    return files


def _indented(text: str) -> list[str]:
    return [("    " + line).rstrip() for line in text.splitlines()]


def report(run: Path) -> str:
    files = _run_files(run)
    gpu = files.get("gpu.txt", "").strip() or "no GPU seen"
    lines = [f"## Round two (issue 26): {gpu.splitlines()[0]}", ""]
    meta = dict(line.split("=", 1) for line in files.get("run.txt", "").splitlines() if "=" in line)
    lines += [f"- started: {meta.get('started', '?')}; finished: {meta.get('finished', '(cut short)')}"]
    lines += [f"- command: `{meta.get('command', '?')}` ({meta.get('environment', '')})"]
    lines += [f"- {line}" for line in files.get("machine.log", "").splitlines() if line.strip()]
    lines += ["", "### Steps", ""]
    steps = [line.split("\t") for line in files.get("steps.tsv", "").splitlines() if line.count("\t") >= 4]
    lines += _markdown(
        ["step", "outcome", "took (s)", "limit (s)", "detail"],
        [[s[0], s[1], s[2], s[3], s[4].replace("|", "/")] for s in steps] or [["(none)", "", "", "", ""]],
    )
    # A finished step's log is packed into logs.tar; one still in the folder was cut short.
    running = sorted(p.name for p in run.iterdir() if p.suffix == ".log") if run.is_dir() else []
    if running:
        lines += ["", f"Cut short while running, with no outcome above: {', '.join(running)}."]
    logs = sorted(name for name in files if name.startswith("tests-") and name.endswith(".log"))
    if logs:
        lines += ["", "### Tests per backend", ""]
    for name in logs:
        text = files[name].splitlines()
        summary = next(
            (line for line in reversed(text) if re.search(r"\b(passed|failed|error|no tests ran)\b", line)),
            "(no summary: cut short)",
        )
        lines += [f"{name.removeprefix('tests-').removesuffix('.log')}: {summary.strip('= ')}", ""]
        kept = [line for line in text if line.startswith(("SKIPPED", "FAILED", "ERROR", "XFAIL"))]
        lines += [*_indented("\n".join(kept)), ""] if kept else []
    measured = sorted(
        (name for name in files if name.endswith(".json") and name != "bench.json"),
        key=lambda name: (next((i for i, step in enumerate(STEPS) if name.startswith(step)), len(STEPS)), name),
    )
    for name in measured:
        try:
            data = json.loads(files[name])
        except ValueError:
            lines += ["", f"### {name}: unreadable JSON", ""]
            continue
        label = name.removesuffix(".json")
        lines += ["", f"### {label}" + (" (CPU stand-in: no GPU figure)" if data.get("stand_in") else ""), ""]
        if data.get("device"):
            lines += [f"Device: {data['device']}.", ""]
        if data.get("skipped"):
            lines += [f"Skipped: {data['skipped']}", ""]
        for table in data.get("tables", []):
            lines += [table["title"] + ":", "", *_markdown(table["columns"], table["rows"]), ""]
        lines += [f"- {note}" for note in data.get("notes", [])]
    if "bench.json" in files:
        try:
            rows = json.loads(files["bench.json"]).get("results", [])
        except ValueError:
            rows = []
        table_rows = []
        for r in rows:
            ratios, times = r.get("ratios", {}), r.get("times", {})
            table_rows.append(
                [
                    str(r.get("backend")),
                    str(r.get("dtype")),
                    "x".join(map(str, r.get("dims", []))),
                    _cell(times.get("xaffine", float("nan")) * 1e3),
                    _cell(ratios.get("xaffine/bound", float("nan"))),
                    _cell(ratios.get("xaffine/torch", float("nan"))),
                ]
            )
        lines += ["", "### xaffine bench", ""]
        lines += _markdown(["backend", "dtype", "shape", "ms", "/ bound", "/ torch"], table_rows or [["-"] * 6])
    return "\n".join(lines).rstrip() + "\n"


# -- the command line ---------------------------------------------------------------------

RUNNERS: dict[str, Callable[[argparse.Namespace, Record], None]] = {
    "bias-grad": step_bias_grad,
    "bias-add": step_bias_add,
    "nvmath": step_nvmath,
    "graph": step_graph,
    "compile": step_compile,
    "low-precision": step_low_precision,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("step", choices=[*RUNNERS, "report"])
    parser.add_argument("run", nargs="?", help="report: the run's folder or its logs.tar")
    parser.add_argument("--json", help="where the step writes its tables (as it goes)")
    parser.add_argument("--out", help="report: the Markdown file to write (default: standard output)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds the step may take (compile)")
    parser.add_argument("--stand-in", action="store_true", help="CPU libraries in place of the GPU ones")
    parser.add_argument("--scale", type=int, default=1, help="divide the sizes by this (with --stand-in)")
    parser.add_argument("--backend", default="torch:cuda", help="low-precision: torch:cuda or jax:gpu")
    parser.add_argument("--bias-grad-json", help="bias-add: the bias-grad step's JSON, for its picks")
    args = parser.parse_args(argv)
    if args.step == "report":
        if not args.run:
            parser.error("report needs the run's folder or logs.tar")
        text = report(Path(args.run))
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    rec = Record(args.step, args.json, args.stand_in)
    print(f"{args.step} on {platform.node() or 'this machine'}, python {platform.python_version()}")
    try:
        RUNNERS[args.step](args, rec)
    except Skip as exc:
        rec.data["skipped"] = str(exc)
        rec.save()
        print(f"skipped: {exc}")
        return SKIPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
