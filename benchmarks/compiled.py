"""torch.compile'd xaffine against the same code written by hand and compiled the same way.

    python benchmarks/compiled.py [--shape 1x64x64 ...] [--dtype float32 --dtype float64] [--rounds 11]

Four cases, each compiled with ``torch.compile(fullgraph=True)`` and no options (inductor):
``affine`` + ``affine_backward``; ``affine_vjp`` + its ``vjp``; ``affine_jvp``; and a layer
step (``zero_grad``, forward, backward), each beside the same operations written by hand
(a layer: an object holding the weight, the bias and a dict of gradients). Timed in paired
rounds (CPU time, one thread, each round long enough to hold many calls): the median of
the per-round differences and of the per-round ratios; also the guards each compiled call
checks (``torch._dynamo.explain``), xaffine's and the hand-written code's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _per_call(fn: Callable[..., Any], args: tuple[Any, ...], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn(*args)
    return (time.process_time() - start) / calls * 1e6


class _HandLayer:
    """A layer written by hand: parameters and a dict of gradients, as xaffine's layer keeps."""

    def __init__(self, weight: Any, bias: Any) -> None:
        self.weight, self.bias = weight, bias
        self.grads: dict[str, Any] = {}

    def zero_grad(self) -> None:
        self.grads = {"weight": None, "bias": None}

    def forward(self, x: Any) -> Any:
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, g: Any) -> Any:
        self.grads["weight"] = g.T @ self.x
        self.grads["bias"] = g.sum(0)
        return g @ self.weight


def cases(torch: Any, m: int, k: int, n: int, dtype: Any) -> dict[str, tuple[Any, Any, tuple[Any, ...]]]:
    """name -> (xaffine's function, the hand-written one, their arguments)."""
    from xaffine import Affine, affine, affine_backward, affine_jvp, affine_vjp

    x, w, b, g = (torch.randn(s, dtype=dtype) for s in ((m, k), (n, k), (n,), (m, n)))
    dx, dw, db = (torch.randn_like(a) for a in (x, w, b))

    def functions(x: Any, w: Any, b: Any, g: Any) -> Any:
        return affine(x, w, b), affine_backward(g, x, w, b)

    def vjp(x: Any, w: Any, b: Any, g: Any) -> Any:
        out, back = affine_vjp(x, w, b)
        return out, back(g)

    def by_hand(x: Any, w: Any, b: Any, g: Any) -> Any:
        out = x @ w.T
        out += b
        return out, (g @ w, g.T @ x, g.sum(0))

    def jvp(x: Any, w: Any, b: Any, dx: Any, dw: Any, db: Any) -> Any:
        return affine_jvp(x, w, b, (dx, dw, db))

    def jvp_by_hand(x: Any, w: Any, b: Any, dx: Any, dw: Any, db: Any) -> Any:
        return x @ w.T + b, dx @ w.T + x @ dw.T + db

    layer = Affine(k, n, xp="torch", dtype=str(dtype).removeprefix("torch."), seed=0)
    hand = _HandLayer(layer.weight.clone(), layer.bias.clone())

    def step(x: Any, g: Any) -> Any:
        layer.zero_grad()
        out = layer(x)
        return out, layer.backward(g), layer.grads["weight"], layer.grads["bias"]

    def step_by_hand(x: Any, g: Any) -> Any:
        hand.zero_grad()
        out = hand.forward(x)
        return out, hand.backward(g), hand.grads["weight"], hand.grads["bias"]

    return {
        "affine + affine_backward": (functions, by_hand, (x, w, b, g)),
        "affine_vjp + vjp": (vjp, by_hand, (x, w, b, g)),
        "affine_jvp": (jvp, jvp_by_hand, (x, w, b, dx, dw, db)),
        "layer step": (step, step_by_hand, (x, g)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", help="MxKxN (default: 1x64x64, 32x128x128, 256x1024x1024)")
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"], help="default: both")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds each variant runs per round")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"# torch {torch.__version__}, CPU time, one thread, {args.rounds} paired rounds")
    print("| case | dtype | shape | guards: xaffine, hand | hand us | xaffine - hand | xaffine / hand |")
    print("|---|---|---|---|---|---|---|")
    for dtype_name in args.dtype or ["float32", "float64"]:
        dtype = getattr(torch, dtype_name)
        for shape in args.shape or ["1x64x64", "32x128x128", "256x1024x1024"]:
            m, k, n = (int(v) for v in shape.split("x"))
            for name, (ours, theirs, call_args) in cases(torch, m, k, n, dtype).items():
                guards = [len(torch._dynamo.explain(f)(*call_args).out_guards) for f in (ours, theirs)]
                pair = [torch.compile(f, fullgraph=True) for f in (ours, theirs)]
                for f in pair:
                    f(*call_args)
                once = max(_per_call(pair[1], call_args, 3), 1.0)
                calls = max(3, int(args.min_time * 1e6 / once))
                rounds = []
                for r in range(args.rounds):
                    times = [_per_call(f, call_args, calls) for f in (pair if r % 2 else pair[::-1])]
                    rounds.append(times if r % 2 else times[::-1])
                hand = statistics.median(h for _, h in rounds)
                difference = statistics.median(o - h for o, h in rounds)
                ratio = statistics.median(o / h for o, h in rounds)
                print(
                    f"| {name} | {dtype_name} | {shape} | {guards[0]}, {guards[1]} | {hand:.1f} "
                    f"| {difference:+.2f} us | {ratio:.3f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
