"""What xaffine costs over hand-written code doing the same work, per call.

Two tables:

* the parts (``--parts``): namespace lookup, validation (``prepare``, ``check_grad``,
  ``check_wrt``), dispatch (xaffine's forward/backward helpers minus the raw operations
  they run), the three products, the bias add and the row sum, each timed with
  ``timeit`` (best of `--repeat` x `--calls`);
* the three ways users call xaffine (``affine`` + ``affine_backward``; ``affine_vjp`` +
  its vjp; ``Affine`` forward + backward) against the same forward+backward written by
  hand in the backend's own library (``out = x @ w.T; out += b; dx = g @ w;
  dw = g.T @ x; db = g.sum(0)``), in paired interleaved rounds: each round times every
  variant once, in a rotating order, so that load on a shared machine hits them alike.
  The first table gives each variant's best round and the median of its per-round ratios
  to the hand-written code; the second, the median of its per-round differences from the
  hand-written code, in microseconds per call: the absolute cost of the checks and
  dispatch, which the eager budget is stated in.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/overhead.py                      # numpy, float32
    PYTHONPATH=$PWD python benchmarks/overhead.py --backend torch --dtype float64
    PYTHONPATH=$PWD python benchmarks/overhead.py --backend jax        # jax.jit and eager
    PYTHONPATH=$PWD python benchmarks/overhead.py --parts --shapes single,small
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from xaffine.cli.bench import SHAPES

# The clock: wall time, or this process's CPU time, which leaves out the time other
# processes hold the cores (on a shared machine), but counts every thread of this one.
TIMER: list[Callable[[], float]] = [time.perf_counter]


class Lib:
    """How one backend makes arrays, waits for them and writes the hand-written layer."""

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        if name == "numpy":
            self.mod: Any = np
            self.dtype: Any = np.dtype(dtype)
        elif name == "torch":
            import torch

            self.mod = torch
            self.dtype = getattr(torch, dtype)
        elif name == "jax":
            import jax

            if dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            import jax.numpy as jnp

            self.mod = jnp
            self.dtype = getattr(jnp, dtype)
        else:
            msg = f"--backend must be numpy, torch or jax; got {name!r}"
            raise SystemExit(msg)

    def array(self, host: np.ndarray[Any, Any]) -> Any:
        if self.name == "torch":
            return self.mod.asarray(host).to(self.dtype)
        if self.name == "jax":
            return self.mod.asarray(host, dtype=self.dtype)
        return host.astype(self.dtype)

    def wait(self, result: Any) -> Any:
        if self.name == "jax":
            import jax

            return jax.block_until_ready(result)
        return result


def hand_written(lib: Lib) -> Callable[..., Any]:
    """The layer written directly in `lib`: the products, the bias add, the row sum; no checks."""
    if lib.name == "jax":

        def hand(x: Any, w: Any, b: Any, g: Any) -> Any:
            if x.ndim > 2:
                xr, gr = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
                return (x @ w.T + b, (gr @ w).reshape(x.shape), gr.T @ xr, gr.sum(0))
            return x @ w.T + b, g @ w, g.T @ x, g.sum(0)

        return hand

    def hand_inplace(x: Any, w: Any, b: Any, g: Any) -> Any:
        if x.ndim > 2:
            xr, gr = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
            out = xr @ w.T
            out += b
            return out.reshape(g.shape), (gr @ w).reshape(x.shape), gr.T @ xr, gr.sum(0)
        out = x @ w.T
        out += b
        return out, g @ w, g.T @ x, g.sum(0)

    return hand_inplace


def variants(lib: Lib, x: Any, w: Any, b: Any, g: Any, jit: bool) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables, one per way of computing forward + backward."""
    from xaffine import Affine, affine, affine_backward, affine_vjp
    from xaffine._backends import dtype_name

    hand = hand_written(lib)

    def pair(x: Any, w: Any, b: Any, g: Any) -> Any:
        return affine(x, w, b), affine_backward(g, x, w, b)

    def vjp(x: Any, w: Any, b: Any, g: Any) -> Any:
        out, back = affine_vjp(x, w, b)
        return out, back(g)

    wait = lib.wait
    if jit:
        import jax

        fns = {"hand-written": jax.jit(hand), "affine+backward": jax.jit(pair), "affine_vjp+vjp": jax.jit(vjp)}
        return {k: (lambda f=f: wait(f(x, w, b, g))) for k, f in fns.items()}
    layer = Affine(w.shape[1], w.shape[0], xp=lib.name, dtype=dtype_name(lib.dtype))
    layer.weight, layer.bias = w, b

    def layer_step() -> Any:
        layer.zero_grad()
        out = layer(x)
        return out, layer.backward(g), layer.grads

    return {
        "hand-written": lambda: wait(hand(x, w, b, g)),
        "affine+backward": lambda: wait(pair(x, w, b, g)),
        "affine_vjp+vjp": lambda: wait(vjp(x, w, b, g)),
        "Affine fwd+bwd": lambda: wait(layer_step()),
    }


def inputs(lib: Lib, shape: str) -> tuple[Any, Any, Any, Any]:
    lead, k, n = SHAPES[shape]
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(s) for s in ((*lead, k), (n, k), (n,), (*lead, n))]
    return tuple(lib.array(h) for h in host)  # type: ignore[return-value]


def calls_for(fn: Callable[[], Any], calls: int, budget: float) -> int:
    """`calls`, fewer where one round of them would take longer than `budget` seconds."""
    fn()
    once = min(timeit.repeat(fn, number=1, repeat=5, timer=TIMER[0]))
    return max(1, min(calls, int(budget / max(once, 1e-9))))


def paired(fns: dict[str, Callable[[], Any]], rounds: int, calls: int, budget: float) -> dict[str, Any]:
    """Interleaved rounds; per variant: best per-call seconds, and the medians of the per-round
    ratios to the first variant and of the per-round differences from it (seconds)."""
    number = min(calls_for(f, calls, budget) for f in fns.values())
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            times[k].append(timeit.timeit(fns[k], number=number, timer=TIMER[0]) / number)
    base = names[0]
    ratios = {k: statistics.median(t / h for t, h in zip(times[k], times[base], strict=True)) for k in names}
    extra = {k: statistics.median(t - h for t, h in zip(times[k], times[base], strict=True)) for k in names}
    return {"best": {k: min(v) for k, v in times.items()}, "ratio": ratios, "extra": extra, "calls": number}


def best(fn: Callable[[], Any], repeat: int, calls: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=calls, repeat=repeat, timer=TIMER[0])) / calls


def parts(lib: Lib, shape: str, repeat: int, calls: int) -> list[tuple[str, float]]:
    """Per-call seconds of each part of one forward + backward."""
    import array_api_compat

    from xaffine import _core, _validate

    x, w, b, g = inputs(lib, shape)
    xp = array_api_compat.array_namespace(x)
    p = _validate.prepare(x, w, b)
    every = _validate.GRAD_NAMES
    out = lib.wait(x @ w.T)
    rows = [
        ("array_api_compat.array_namespace(x, w, b)", lambda: array_api_compat.array_namespace(x, w, b)),
        ("prepare(x, w, b)", lambda: _validate.prepare(x, w, b)),
        ("prepare(x, w, b, xp=xp)", lambda: _validate.prepare(x, w, b, xp=xp)),
        ("check_grad(g, x, p)", lambda: _validate.check_grad(g, x, p)),
        ("check_wrt(default)", lambda: _validate.check_wrt(every)),
        ("check_wrt({'x', 'weight', 'bias'})", lambda: _validate.check_wrt({"x", "weight", "bias"})),
        ("xaffine forward (after checks)", lambda: lib.wait(_core._forward(x, w, b, p))),
        ("xaffine backward (after checks)", lambda: lib.wait(_core._backward(g, x, w, b, frozenset(every), p))),
        ("x @ w.T", lambda: lib.wait(x @ w.T)),
        ("g @ w", lambda: lib.wait(g @ w)),
        ("g.T @ x", lambda: lib.wait(g.T @ x)),
        ("out + b" if lib.name == "jax" else "out += b", _bias_add(lib, out, b)),
        ("g.sum(0)", lambda: lib.wait(g.sum(0))),
        ("xp.sum(g, axis=0)", lambda: lib.wait(xp.sum(g, axis=0))),
    ]
    if lib.name == "numpy":
        rows.append(("np.add.reduce(g, axis=0)", lambda: np.add.reduce(g, axis=0)))
    return [(label, best(fn, repeat, calls)) for label, fn in rows]


def _bias_add(lib: Lib, out: Any, b: Any) -> Callable[[], Any]:
    if lib.name == "jax":
        return lambda: lib.wait(out + b)

    def add() -> None:
        nonlocal out
        out += b

    return add


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "torch", "jax"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--shapes", default="single,small", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats for --parts")
    parser.add_argument("--rounds", type=int, default=7, help="paired interleaved rounds")
    parser.add_argument("--budget", type=float, default=0.5, help="at most this many seconds per timed round")
    parser.add_argument("--parts", action="store_true", help="also time each part of a call")
    parser.add_argument(
        "--timer", choices=("wall", "cpu"), default="wall", help="cpu: this process's CPU time (use one thread)"
    )
    parser.add_argument("--jit", choices=("both", "jit", "eager"), default="both", help="jax only")
    args = parser.parse_args(argv)
    lib = Lib(args.backend, args.dtype)
    TIMER[0] = time.process_time if args.timer == "cpu" else time.perf_counter
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            parser.error(f"unknown shape {s!r}; known: {', '.join(SHAPES)}")
    modes = [False]
    if lib.name == "jax":
        modes = {"both": [True, False], "jit": [True], "eager": [False]}[args.jit]
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    versions = f"python {sys.version.split()[0]}; numpy {np.__version__}"
    print(f"# {lib.name} {args.dtype}; {versions}; {args.timer} time; {threads or ''}")
    if args.parts:
        for s in shapes:
            print(f"\n## parts, {s} {_describe(s)}: best of {args.repeat} x {args.calls} calls, us per call")
            for label, secs in parts(lib, s, args.repeat, args.calls):
                print(f"| {label} | {secs * 1e6:.2f} |")
    for jit in modes:
        mode = " under jax.jit" if jit else (" eager" if lib.name == "jax" else "")
        print(f"\n## xaffine vs hand-written{mode}: {args.rounds} paired rounds; best us per call (median ratio)")
        header: list[str] = []
        extra = []
        for s in shapes:
            x, w, b, g = inputs(lib, s)
            result = paired(variants(lib, x, w, b, g, jit), args.rounds, args.calls, args.budget)
            if not header:
                header = list(result["best"])
                print("| shape | calls/round | " + " | ".join(header) + " |")
                print("|---" * (len(header) + 2) + "|")
            cells = [f"{result['best'][k] * 1e6:.1f} ({result['ratio'][k]:.3f})" for k in header]
            print(f"| {s} {_describe(s)} | {result['calls']} | " + " | ".join(cells) + " |")
            extra.append((s, result["extra"]))
        print(f"\n## xaffine minus hand-written{mode}: median of the per-round differences, us per call")
        print("| shape | " + " | ".join(header[1:]) + " |")
        print("|---" * len(header) + "|")
        for s, diff in extra:
            print(f"| {s} {_describe(s)} | " + " | ".join(f"{diff[k] * 1e6:+.2f} us" for k in header[1:]) + " |")
    return 0


def _describe(shape: str) -> str:
    lead, k, n = SHAPES[shape]
    return f"{'x'.join(map(str, lead))}x{k}->{n}"


if __name__ == "__main__":
    sys.exit(main())
