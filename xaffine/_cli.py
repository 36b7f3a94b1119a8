"""The ``xaffine`` command: check, info, demo, bench."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from typing import Any, TextIO

__all__ = ["main"]


def _distributions(library: str) -> tuple[str, ...]:
    from ._backends import BACKENDS

    return next((b.distributions for b in BACKENDS if b.library == library), (library,))


class _Progress:
    """One status line on stderr, rewritten in place; silent when stderr is not a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, label: str) -> None:
        self.done += 1
        if self.live:
            width = 24
            filled = round(width * (self.done - 1) / max(self.total, 1))
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label:<40}")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write_json(path: str, payload: Any) -> None:
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")


# -- check ------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from ._check import run, user_backends

    dtypes = _names(args.dtypes) or ["float32", "float64"]
    if args.dtypes is None:
        dtypes += ["complex64", "complex128"] if args.complex else []
        dtypes += ["float16"] if args.float16 else []
    backends = _names(args.backends)
    progress = _Progress(len(backends or user_backends()) * len(dtypes))
    try:
        results, unavailable = run(backends, dtypes, progress=progress)
    finally:
        progress.close()
    rows = [
        ["backend", "device", "dtype", "err out", "err dx", "err dW", "err db", "adjoint", "finite diff", "fwd+bwd"]
    ]
    for r in results:
        errors = [f"{r.errors.get(k, math.nan):.1e}" for k in ("out", "x", "weight", "bias")]
        adjoint = "ok" if r.adjoint == "passed" else "FAIL"
        fd = "ok" if r.finite_differences == "passed" else "FAIL"
        rows.append([r.backend, r.device, r.dtype, *errors, adjoint, fd, f"{r.seconds * 1e6:.0f} us"])
    if results:
        print(_table(rows))
        print("errors: max |result - float64 reference| / max |reference|; passing needs each <= 4 sqrt(eps)")
    for r in results:
        for name, text in (("adjoint", r.adjoint), ("finite differences", r.finite_differences)):
            if text != "passed":
                print(f"{r.backend} {r.dtype} {name}: {text}")
    if unavailable:
        print("\nnot usable here:")
        for u in unavailable:
            print(f"  {u.backend:<26} {u.kind}: {u.reason}\n  {'':<26} install: {u.install}")
    failed = [r for r in results if not r.passed]
    if args.json:
        _write_json(
            args.json,
            {
                "passed": bool(results) and not failed,
                "results": [asdict(r) | {"passed": r.passed} for r in results],
                "unavailable": [asdict(u) for u in unavailable],
            },
        )
    if not results:
        print("no backend could run: nothing was checked", file=sys.stderr)
        return 1
    usable = sorted({r.backend for r in results})
    if failed:
        print(
            f"\nFAILED: {len(failed)} of {len(results)} checks ({', '.join(f'{r.backend} {r.dtype}' for r in failed)})"
        )
        return 1
    print(f"\nall {len(results)} checks passed on {', '.join(usable)}")
    return 0


# -- info -------------------------------------------------------------------------


def _version(module: str) -> str:
    for dist in _distributions(module):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _cmd_info(args: argparse.Namespace) -> int:
    from ._backends import BackendUnavailable, default_backend
    from ._check import user_backends

    print(f"xaffine {_version('xaffine').split()[-1]}, {_version('array-api-compat')}, Python {sys.version.split()[0]}")
    rows = [["backend", "version", "device", "status"]]
    for backend in user_backends():
        try:
            device = backend.load().device
        except BackendUnavailable as exc:
            rows.append([backend.name, _version(backend.library), "-", f"{exc.kind}: {exc.reason}"])
        else:
            rows.append([backend.name, _version(backend.library), str(device), "usable"])
    print(_table(rows))
    try:
        choice = default_backend()
    except ValueError as exc:
        print(f"\ndefault backend: none ({exc})")
        return 1
    print(f"\ndefault backend: {choice.name} on {choice.device} ({choice.reason})")
    print("rule: CuPy when a CUDA GPU is usable, otherwise NumPy; XAFFINE_BACKEND=<name> overrides it")
    return 0


# -- demo -------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import train

    bar = _Progress(args.epochs)

    def report(epoch: int, loss: float) -> None:
        bar(f"epoch {epoch} loss {loss:.4f}")
        print(f"epoch {epoch:3d}  loss {loss:.4f}", flush=True)

    try:
        result = train(
            args.backend,
            epochs=args.epochs,
            hidden=args.hidden,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=report,
        )
    finally:
        bar.close()
    where = f"{result.backend}, {result.device}"
    print(f"test accuracy: {result.accuracy:.2%} on {result.test_size} held-out digits ({where})")
    print(f"the same --seed ({args.seed}) gives the same accuracy on every backend, to within float rounding")
    return 0


# -- bench ------------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import _bench

    if args.dask_scaling:
        return _dask_scaling(args)
    shapes = args.shape or list(_bench.SHAPES)
    backends = _names(args.backends) or ["numpy"]
    dtypes = _names(args.dtypes) or ["float32", "float64"]
    for shape in shapes:
        _bench.parse_shape(shape)
    progress = _Progress(len(shapes) * len(backends) * len(dtypes))
    try:
        results = _bench.run(
            backends,
            dtypes,
            shapes,
            rounds=args.rounds,
            min_time=args.min_time,
            torch=not args.no_torch,
            jax=args.jax,
            progress=progress,
        )
    finally:
        progress.close()
    print(_bench.table(results))
    print("ratios: median over rounds of (xaffine time / reference time), variants timed round-robin")
    info = _bench.machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        _write_json(args.json, _bench.as_json(results))
    if args.plot:
        _bench.plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _dask_scaling(args: argparse.Namespace) -> int:
    from . import _bench

    dtype = (_names(args.dtypes) or ["float32"])[0]
    progress = _Progress(3)
    try:
        rows = _bench.dask_scaling(dtype=dtype, rounds=args.rounds, progress=progress)
    finally:
        progress.close()
    print(_bench.scaling_table(rows))
    print("forward+backward computed on Dask's threaded scheduler (2 workers) against NumPy, same data;")
    print("growth = Dask time / (factor x Dask time at 1x): 1.00 is linear in the batch")
    if args.json:
        _write_json(args.json, {"machine": _bench.machine(), "dask_scaling": [asdict(r) for r in rows]})
    return 0


# -- the parser -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xaffine",
        description="The affine layer with hand-derived gradients, on every Array API library.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="check forward, backward and gradients on every usable backend",
        description=(
            "For every usable backend x device x dtype: forward and backward on seeded random data against "
            "a float64 NumPy reference, the adjoint (dot-product) test and a float64 finite-difference "
            "check, and one timed forward+backward. Exit status 0 only when everything passed."
        ),
    )
    check.add_argument("--backends", metavar="LIST", help="comma list, e.g. numpy,torch,torch:cuda (default: all)")
    check.add_argument("--dtypes", metavar="LIST", help="comma list (default: float32,float64)")
    check.add_argument("--complex", action="store_true", help="also complex64 and complex128")
    check.add_argument("--float16", action="store_true", help="also float16")
    check.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout)")
    check.set_defaults(run=_cmd_check)

    info = sub.add_parser(
        "info",
        help="versions, devices and the default backend",
        description="Versions of xaffine, array-api-compat and each backend; devices; the default backend and why.",
    )
    info.set_defaults(run=_cmd_info)

    demo = sub.add_parser(
        "demo",
        help="train a digits classifier made of Affine layers",
        description=(
            "Train Affine -> ReLU -> Affine with softmax cross-entropy on scikit-learn's bundled handwritten "
            "digits (needs the 'demo' extra: pip install 'xaffine[demo]'), print the loss per epoch and the "
            "test accuracy."
        ),
    )
    demo.add_argument("--backend", help="numpy, cupy, torch, torch:cuda, jax, ... (default: the default backend)")
    demo.add_argument("--epochs", type=int, default=30, help="passes over the training set (default: 30)")
    demo.add_argument("--hidden", type=int, default=64, help="hidden units (default: 64)")
    demo.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default: 0.1)")
    demo.add_argument("--batch-size", type=int, default=32, help="minibatch size (default: 32)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data split, batch order and weights (default: 0)")
    demo.set_defaults(run=_cmd_demo)

    bench = sub.add_parser(
        "bench",
        help="time forward+backward against the matrix-product bound and PyTorch",
        description=(
            "Time xaffine's forward+backward (affine_vjp, then its vjp) against, in the same run, the three raw "
            "matrix products on the same backend (the bound), torch.nn.functional.linear + autograd, and "
            "optionally jax.jit of jax.vjp. Reports median times and the median of per-round paired ratios."
        ),
    )
    bench.add_argument("--backends", metavar="LIST", help="comma list (default: numpy)")
    bench.add_argument("--dtypes", metavar="LIST", help="comma list (default: float32,float64)")
    bench.add_argument(
        "--shape",
        action="append",
        help="single, small, medium, large, seq, or MxKxN with leading axes, e.g. 8x512x768x768; repeatable "
        "(default: the five named shapes)",
    )
    bench.add_argument("--rounds", type=int, default=15, help="round-robin rounds (default: 15)")
    bench.add_argument("--min-time", type=float, default=0.05, help="seconds per timed sample (default: 0.05)")
    bench.add_argument("--no-torch", action="store_true", help="leave out the PyTorch reference")
    bench.add_argument("--jax", action="store_true", help="add jax.jit(jax.vjp) as a reference")
    bench.add_argument(
        "--dask-scaling",
        action="store_true",
        help="instead: Dask (threads, 2 workers) against NumPy at 1x, 4x and 16x a batch of 16384x256 -> 256",
    )
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH ('-': stdout)")
    bench.add_argument("--plot", metavar="PATH", help="write a plot of time against size (needs matplotlib)")
    bench.set_defaults(run=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, ImportError) as exc:
        print(f"xaffine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
