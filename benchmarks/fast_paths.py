"""Why each fast path of the backend table exists: each one against the plain call it replaces.

Every fast path in ``xaffine/_backends.py`` (a row's ``matmul``, ``matmul_add``, ``row_sum``)
replaces a plain Array API call with a cheaper one of the same library. This times both, paired
in rotating rounds (xaffine's one timing loop), and prints the median of the per-round ratios,
fast path / plain call: below 1, the fast path is faster. docs/benchmarks.md holds its table.

    python benchmarks/fast_paths.py [--rounds R] [--min-time T] [--markdown]

Libraries that are not installed are left out. Run with one thread
(``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``) to compare call overheads without thread
pools' noise. The GPU's paths (torch float64 on CUDA) are timed by
``benchmarks/gpu_parts.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from xaffine._backends import BACKENDS, find_backend
from xaffine.cli._timing import round_robin

Case = tuple[str, str, str, Callable[[], object], Callable[[], object], Callable[[object], object]]
"""(library, fast path, shape, the fast path, the plain call, wait)."""


def _no_wait(result: object) -> object:
    return result


def _numpy_cases() -> list[Case]:
    row = find_backend("numpy")
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    a16, b16 = rng.standard_normal((32, 128)).astype(np.float16), rng.standard_normal((128, 128)).astype(np.float16)
    cases.append(
        (
            "numpy",
            "matmul: float16 through float32 BLAS",
            "32x128 @ 128x128",
            lambda: row.matmul(a16, b16),
            lambda: a16 @ b16,
            _no_wait,
        )
    )
    for m, k, n in ((1, 64, 64), (64, 256, 128)):
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        cases.append(
            (
                "numpy",
                "matmul: np.dot below 2**22 multiply-adds",
                f"{m}x{k} @ {k}x{n}",
                lambda a=a, b=b: row.matmul(a, b),
                lambda a=a, b=b: a @ b,
                _no_wait,
            )
        )
    for n in (64, 4096):  # a one-row batch's weight gradient, dA^T X: an outer product
        g = rng.standard_normal((1, n)).astype(np.float32)
        cases.append(
            (
                "numpy",
                "matmul: an outer product (contraction of one) by np.dot, past 2**22 by broadcasting",
                f"{n}x1 @ 1x{n} float32",
                lambda g=g: row.matmul(g.T, g),
                lambda g=g: g.T @ g,
                _no_wait,
            )
        )
    assert row.row_sum is not None
    row_sum = row.row_sum
    for m, n in ((1, 64), (4096, 768)):
        g = rng.standard_normal((m, n)).astype(np.float32)
        cases.append(
            (
                "numpy",
                "row_sum: a row of ones times the matrix",
                f"{m}x{n} float32",
                lambda g=g: row_sum(g, None),
                lambda g=g: np.sum(g, axis=0),
                _no_wait,
            )
        )
    return cases


def _torch_cases() -> list[Case]:
    import torch

    row = find_backend("torch")
    assert row.row_sum is not None
    assert row.matmul_add is not None
    row_sum, matmul_add = row.row_sum, row.matmul_add
    torch.manual_seed(0)
    a, b, c = torch.randn(1, 64), torch.randn(64, 64), torch.randn(64)
    g = torch.randn(32, 128)
    return [
        (
            "torch",
            "matmul_add: torch.addmm",
            "1x64 @ 64x64 + 64",
            lambda: matmul_add(a, b, c),
            lambda: a @ b + c,
            _no_wait,
        ),
        (
            "torch",
            "row_sum: sum(0) without dtype=None",
            "32x128",
            lambda: row_sum(g, None),
            lambda: g.sum(0, dtype=None),
            _no_wait,
        ),
    ]


def _ndonnx_cases() -> list[Case]:
    import ndonnx

    row = find_backend("ndonnx")
    a = ndonnx.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    b = ndonnx.asarray(np.random.default_rng(1).standard_normal((4, 2)))
    return [
        (
            "ndonnx",
            "matmul: tensordot (one Einsum node)",
            "3x4 @ 4x2",
            lambda: row.matmul(a, b),
            lambda: a @ b,
            _no_wait,
        )
    ]


CASES = {"numpy": _numpy_cases, "torch": _torch_cases, "ndonnx": _ndonnx_cases}


def measure(libraries: list[str], rounds: int, min_time: float) -> list[dict[str, Any]]:
    """One record per case: the fast path's and the plain call's median seconds, and the
    median of their paired per-round ratios."""
    records = []
    for library in libraries:
        for lib, path, shape, fast, plain, wait in CASES[library]():
            samples = round_robin({"fast": (fast, wait), "plain": (plain, wait)}, rounds=rounds, min_time=min_time)
            ratios = [f / p for f, p in zip(samples["fast"], samples["plain"], strict=True)]
            records.append(
                {
                    "library": lib,
                    "fast path": path,
                    "shape": shape,
                    "fast us": statistics.median(samples["fast"]) * 1e6,
                    "plain us": statistics.median(samples["plain"]) * 1e6,
                    "ratio": statistics.median(ratios),
                }
            )
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--libraries", default=",".join(CASES), help="comma list among " + ", ".join(CASES))
    args = parser.parse_args(argv)
    known = {row.library for row in BACKENDS}
    wanted = [name for name in args.libraries.split(",") if name in known and name in CASES]
    present = [name for name in wanted if importlib.util.find_spec(find_backend(name).module.partition(".")[0])]
    records = measure(present, args.rounds, args.min_time)
    if args.markdown:
        print("| library | fast path | shape | fast path (us) | plain call (us) | ratio |")
        print("|---|---|---|---|---|---|")
        for r in records:
            print(
                f"| {r['library']} | {r['fast path']} | {r['shape']} | {r['fast us']:.3g} | {r['plain us']:.3g} | "
                f"{r['ratio']:.2f} |"
            )
        return
    for r in records:
        times = f"{r['fast us']:10.3g} {r['plain us']:10.3g} {r['ratio']:6.2f}"
        print(f"{r['library']:7} {r['fast path']:45} {r['shape']:20} {times}")


if __name__ == "__main__":
    main()
