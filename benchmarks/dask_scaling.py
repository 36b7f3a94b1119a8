"""Dask (threaded scheduler) against NumPy, forward+backward computed, as the batch grows.

    python benchmarks/dask_scaling.py [--dtype float32] [--rounds 15] [--json PATH]

The batch is 16384 x 256 -> 256 at 1x, then 4x and 16x; the Dask batch is chunked
16384 rows per chunk, so a batch `factor` times larger has `factor` chunks. NumPy and
Dask run on the same data, timed in alternating order by xaffine's timing loop. Growth
is Dask time / (factor x Dask time at 1x): 1.00 is linear in the batch.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import xaffine
except ImportError:  # run from a checkout: use the package beside this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import xaffine

from xaffine.cli import bench
from xaffine.cli._shared import Parser, Progress, output_path, positive_int, table, write_json
from xaffine.cli._timing import round_robin


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
    rounds: int = 15,
    seed: int = 0,
) -> list[ScalingRow]:
    """Forward+backward (computed) on Dask's threaded scheduler against NumPy, as the batch grows."""
    import dask.array as da
    from dask.base import compute

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    results: list[ScalingRow] = []
    base = float("nan")
    with Progress(len(factors)) as progress:
        for factor in factors:
            progress(f"dask x{factor}")
            m = rows * factor
            x = rng.standard_normal((m, k)).astype(dtype)
            g = rng.standard_normal((m, n)).astype(dtype)
            xd = da.from_array(x, chunks=(rows, k))
            gd = da.from_array(g, chunks=(rows, n))

            def on_numpy(x: Any = x, g: Any = g) -> Any:
                out, vjp = xaffine.affine_vjp(x, w, b)
                return out, vjp(g)

            def on_dask(xd: Any = xd, gd: Any = gd) -> Any:
                out, vjp = xaffine.affine_vjp(xd, w, b)
                return compute(out, *vjp(gd), scheduler="threads", num_workers=workers)

            def done(result: object) -> object:
                return result

            samples = round_robin({"numpy": (on_numpy, done), "dask": (on_dask, done)}, rounds=rounds, min_time=0.0)
            t_numpy, t_dask = statistics.median(samples["numpy"]), statistics.median(samples["dask"])
            ratio = statistics.median(d / p for d, p in zip(samples["dask"], samples["numpy"], strict=True))
            if factor == factors[0]:
                base = t_dask / factor
            results.append(ScalingRow(factor, m, factor, t_numpy, t_dask, ratio, t_dask / (factor * base)))
    return results


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
    return table([head, *body], align="right")


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="dask_scaling.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)")
    parser.add_argument("--rounds", type=positive_int, default=15, help="alternating rounds (default: 15)")
    parser.add_argument("--json", metavar="PATH", type=output_path, help="write the results as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    rows = dask_scaling(dtype=args.dtype, rounds=args.rounds)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(scaling_table(rows), file=out)
    print("forward+backward computed on Dask's threaded scheduler (2 workers) against NumPy, same data;", file=out)
    print("growth = Dask time / (factor x Dask time at 1x): 1.00 is linear in the batch", file=out)
    if args.json:
        write_json(args.json, {"machine": bench.machine(), "dask_scaling": [asdict(r) for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
