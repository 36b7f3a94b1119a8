"""Paired timing of this checkout's xaffine against an earlier revision's, in one process.

    python benchmarks/versus.py REV [--shape single --shape small ...] [--rounds 31]

The package of REV is taken with ``git archive`` into a temporary folder under another
name (its imports are relative), so both versions run side by side on the same inputs.
Each round times forward+backward of both, in alternating order; the figure is the
median over rounds of (this checkout / REV), so a busy machine slows both alike.
Measures the three ways of calling the layer: the function pair, the vjp closure, the
layer object. NumPy, float32 and float64.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from xaffine.cli.bench import SHAPES  # noqa: E402 (this checkout's package, found through the path above)


def _old_package(rev: str, where: Path) -> Any:
    """REV's xaffine package, importable as ``xaffine_<short rev>``."""
    data = subprocess.run(["git", "archive", rev, "xaffine"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(where, filter="data")
    name = "xaffine_" + "".join(c for c in rev if c.isalnum())[:12]
    (where / "xaffine").rename(where / name)
    sys.path.insert(0, str(where))
    return importlib.import_module(name)


def _variants(package: Any, x: Any, w: Any, b: Any, g: Any) -> dict[str, Any]:
    layer = package.Affine(w.shape[1], w.shape[0], xp="numpy", dtype=str(w.dtype), seed=0)
    layer.weight, layer.bias = w, b

    def functions() -> Any:
        package.affine(x, w, b)
        return package.affine_backward(g, x, w, b)

    def closure() -> Any:
        _, vjp = package.affine_vjp(x, w, b)
        return vjp(g)

    def layer_object() -> Any:
        layer.zero_grad()
        layer(x)
        return layer.backward(g)

    return {"functions": functions, "vjp": closure, "layer": layer_object}


def _time(func: Any, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the earlier revision, e.g. HEAD~1 or a commit")
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="(default: single, small, medium)")
    parser.add_argument("--rounds", type=int, default=31, help="paired rounds (default: 31)")
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per timed sample (default: 0.02)")
    args = parser.parse_args()
    import xaffine

    with tempfile.TemporaryDirectory() as tmp:
        old = _old_package(args.rev, Path(tmp))
        print(f"this checkout / {args.rev}: median over {args.rounds} paired rounds (NumPy {np.__version__})")
        print(f"{'shape':8} {'dtype':8} {'way':10} {'new (us)':>9} {'old (us)':>9} {'new/old':>8}")
        for shape in args.shape or ["single", "small", "medium"]:
            lead, k, n = SHAPES[shape]
            for dtype in ("float32", "float64"):
                rng = np.random.default_rng(0)
                x, w, b, g = (rng.standard_normal(s).astype(dtype) for s in ((*lead, k), (n, k), (n,), (*lead, n)))
                new, previous = _variants(xaffine, x, w, b, g), _variants(old, x, w, b, g)
                for way in new:
                    number = max(1, int(args.min_time / max(_time(new[way], 20), 1e-7)))
                    ratios, news, olds = [], [], []
                    for r in range(args.rounds):
                        pair = [(new[way], news), (previous[way], olds)]
                        for func, store in pair if r % 2 else pair[::-1]:
                            store.append(_time(func, number))
                        ratios.append(news[-1] / olds[-1])
                    print(
                        f"{shape:8} {dtype:8} {way:10} {statistics.median(news) * 1e6:9.1f} "
                        f"{statistics.median(olds) * 1e6:9.1f} {statistics.median(ratios):8.3f}"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
