"""Where the time of torch.compile'd xaffine goes, against the same code written by hand.

    python benchmarks/compiled_guards.py [--shape 1x64x64 --shape 32x128x128] [--rounds 11]

Both forward+backward steps are compiled with ``fullgraph=True`` (inductor) and timed in
paired rounds (CPU time, one thread), as compiled code runs by default; with xaffine's
guard filter, ``skip_guards_on_xaffine``, which drops the guards on xaffine's own modules;
and with ``torch.compiler.set_stance(skip_guard_eval_unsafe=True)``, under which a call
skips the check of its guards (the conditions under which the compiled code is valid).
xaffine's checks are traced once, at compile time; what they read becomes guards, checked
on every call. The differences between the columns are that check's cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _per_call(fn: Any, args: tuple[Any, ...], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn(*args)
    return (time.process_time() - start) / calls * 1e6


def _calling(fn: Any) -> Any:
    def call(*args: Any) -> Any:
        return fn(*args)

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", help="MxKxN (default: 1x64x64 and 32x128x128)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    import torch

    from xaffine import affine_vjp, skip_guards_on_xaffine

    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    print(f"# torch {torch.__version__}, {args.dtype}, CPU time, {args.rounds} paired rounds of {args.calls} calls")
    print(
        "| shape | guards: xaffine, hand | hand us | xaffine - hand, default "
        "| with skip_guards_on_xaffine | all guards skipped |"
    )
    print("|---|---|---|---|---|---|")
    for shape in args.shape or ["1x64x64", "32x128x128"]:
        m, k, n = (int(v) for v in shape.split("x"))
        x, w, b, g = (torch.randn(s, dtype=dtype) for s in ((m, k), (n, k), (n,), (m, n)))

        def ours(x: Any, w: Any, b: Any, g: Any) -> Any:
            out, vjp = affine_vjp(x, w, b)
            return out, vjp(g)

        def hand(x: Any, w: Any, b: Any, g: Any) -> Any:
            out = x @ w.T
            out += b
            return out, (g @ w, g.T @ x, g.sum(0))

        guards = [len(torch._dynamo.explain(f)(x, w, b, g).out_guards) for f in (ours, hand)]
        compiled = [torch.compile(f, fullgraph=True) for f in (ours, hand)]
        # New code objects: torch.compile keeps its compiled code on a function's code object.
        filtered = [
            torch.compile(_calling(f), fullgraph=True, options={"guard_filter_fn": skip_guards_on_xaffine})
            for f in (ours, hand)
        ]
        for f in compiled + filtered:
            f(x, w, b, g)
        cells = []
        for pair_of, skip in ((compiled, False), (filtered, False), (compiled, True)):
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=skip):
                rounds = []
                for r in range(args.rounds):
                    pair = [_per_call(f, (x, w, b, g), args.calls) for f in (pair_of if r % 2 else pair_of[::-1])]
                    rounds.append(pair if r % 2 else pair[::-1])
            hands = statistics.median(h for _, h in rounds)
            difference = statistics.median(o - h for o, h in rounds)
            cells.append(f"{difference:+.2f} us ({statistics.median(o / h for o, h in rounds):.2f}x)")
        print(f"| {shape} | {guards[0]}, {guards[1]} | {hands:.1f} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
