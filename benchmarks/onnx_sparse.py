"""Benchmark rows for ONNX export and sparse inputs (CPU).

    python benchmarks/onnx_sparse.py [--repeat 5]

Rows: the exported model's forward pass in onnxruntime against ``xaffine.affine`` on
NumPy; and ``affine`` with a pydata/sparse ``x`` (forward and dW) against densifying
``x`` first and against scipy.sparse products. Prints the median of `repeat` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import xaffine
from xaffine.onnx import export


def _median(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: compilation, first allocations
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onnx_rows(repeat: int) -> list[tuple[str, str, float]]:
    import onnxruntime as ort

    rows = []
    for batch, n_in, n_out in ((1024, 512, 512), (8192, 1024, 1024)):
        layer = xaffine.Affine(n_in, n_out, xp="numpy", seed=0)
        path = os.path.join(tempfile.mkdtemp(), "layer.onnx")
        export(layer, path)
        session = ort.InferenceSession(path)
        x = np.random.default_rng(0).standard_normal((batch, n_in)).astype(np.float32)
        shape = f"{batch}x{n_in}->{n_out} float32"
        rows.append(("onnxruntime forward", shape, _median(lambda s=session, x=x: s.run(None, {"x": x}), repeat)))
        rows.append(("numpy forward", shape, _median(lambda f=layer, x=x: f(x), repeat)))
    return rows


def sparse_rows(repeat: int) -> list[tuple[str, str, float]]:
    import scipy.sparse
    import sparse

    rows_, cols, n_out, density = 20_000, 20_000, 64, 0.001
    rng = np.random.default_rng(0)
    x_scipy = scipy.sparse.random(rows_, cols, density=density, format="csr", dtype=np.float32, random_state=rng)
    x_coo = sparse.COO.from_scipy_sparse(x_scipy)
    x_gcxs = sparse.GCXS.from_scipy_sparse(x_scipy)
    w = rng.standard_normal((n_out, cols)).astype(np.float32)
    b = np.zeros(n_out, np.float32)
    g = rng.standard_normal((rows_, n_out)).astype(np.float32)
    shape = f"{rows_}x{cols} density {density}, {n_out} out, float32"
    cases = {
        "sparse COO": lambda: (xaffine.affine(x_coo, w, b), xaffine.affine_backward(g, x_coo, w, b, wrt="weight")),
        "sparse GCXS": lambda: (xaffine.affine(x_gcxs, w, b), xaffine.affine_backward(g, x_gcxs, w, b, wrt="weight")),
        "densify first": lambda: (
            xaffine.affine(dense := x_scipy.toarray(), w, b),
            xaffine.affine_backward(g, dense, w, b, wrt="weight"),
        ),
        "scipy.sparse CSR": lambda: (x_scipy @ w.T + b, (x_scipy.T @ g).T),
    }
    return [(f"{name} forward+dW", shape, _median(fn, repeat)) for name, fn in cases.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'row':<28} {'shape':<42} {'median ms':>10}")
    for name, shape, seconds in onnx_rows(args.repeat) + sparse_rows(args.repeat):
        print(f"{name:<28} {shape:<42} {seconds * 1e3:>10.2f}")


if __name__ == "__main__":
    main()
