"""What xaffine.testing's checks catch: the bank of wrong backward passes, run through each check.

For each backend, dtype and shape, every mutant of tests/mutants.py goes through
``check_adjoint``, ``check_vjp`` in fast mode and (at the small shapes) in full mode; a
cell says whether the check raised. The right backward runs through the same checks over
many seeds (``--seeds``): any failure there is a false alarm, and is printed.

Run from the repository root (this writes the table of docs/testing.md)::

    PYTHONPATH=$PWD python benchmarks/check_power.py --backends numpy,torch,jax --markdown

``--margin F`` runs the right backward with every tolerance constant of xaffine.testing
divided by F: no false alarm at ``--margin 4`` means the defaults sit four times above
the largest error seen.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

import xaffine.testing as testing
from tests.mutants import BANK, applies, expected, jvp, right_vjp
from xaffine import affine
from xaffine._backends import BackendUnavailable, find_backend
from xaffine._reference import random

DTYPES = ("float64", "float32", "float16", "bfloat16", "complex128", "complex64")
SHAPES = {"suite": ((2, 3, 4), 4), "square": ((4, 4), 4), "64x512->512": ((64, 512), 512)}
CHECKS = ("adjoint", "fast", "full")
CHECK_NAMES = {"adjoint": "check_adjoint", "fast": "check_vjp fast", "full": "check_vjp full"}
FULL_LIMIT = 64  # full mode only where every argument has at most this many elements


def _args(xp: Any, device: Any, dtype: str, x_shape: tuple[int, ...], n: int, seed: int) -> tuple[Any, ...]:
    host = "complex128" if dtype.startswith("complex") else "float64"
    k = x_shape[-1]
    parts = (random(x_shape, host, seed), random((n, k), host, seed + 1) / np.sqrt(k), random((n,), host, seed + 2))
    return tuple(xp.astype(xp.asarray(a, device=device), getattr(xp, dtype)) for a in parts)


def _catches(check: str, vjp: Any, args: tuple[Any, ...], seed: int = 0) -> bool:
    try:
        if check == "adjoint":
            testing.check_adjoint(jvp, vjp, args, seed=seed)
        else:
            testing.check_vjp(affine, vjp, args, mode=check, seed=seed)
    except AssertionError:
        return True
    return False


def _checks(x_shape: tuple[int, ...], n: int) -> tuple[str, ...]:
    small = max(int(np.prod(x_shape)), n * x_shape[-1]) <= FULL_LIMIT
    return CHECKS if small else CHECKS[:2]


def _settings(backends: list[str], shapes: list[str]) -> Iterator[tuple[str, Any, Any, str, tuple[int, ...], int, str]]:
    """(backend, namespace, device, shape name, x shape, out features, dtype) for every dtype a backend has."""
    for name in backends:
        _, xp, device, _ = find_backend(name).load(exact=True)
        for shape in shapes:
            x_shape, n = SHAPES[shape]
            for dtype in DTYPES:
                if hasattr(xp, dtype):
                    yield name, xp, device, shape, x_shape, n, dtype


def power(backends: list[str], shapes: list[str]) -> dict[tuple[str, str, str, str], dict[str, bool]]:
    """(shape, mutant, dtype, check) -> {backend: caught}."""
    cells: dict[tuple[str, str, str, str], dict[str, bool]] = defaultdict(dict)
    for name, xp, device, shape, x_shape, n, dtype in _settings(backends, shapes):
        args = _args(xp, device, dtype, x_shape, n, 0)
        stale = np.asarray(random(x_shape, "complex128" if dtype.startswith("complex") else "float64", 9))
        for mutant in BANK:
            if applies(mutant, dtype, x_shape, n):
                vjp = mutant.make(stale)
                for check in _checks(x_shape, n):
                    cells[(shape, mutant.name, dtype, check)][name] = _catches(check, vjp, args)
    return cells


def false_alarms(backends: list[str], shapes: list[str], seeds: int) -> list[str]:
    found = []
    for name, xp, device, shape, x_shape, n, dtype in _settings(backends, shapes):
        for seed in range(seeds):
            args = _args(xp, device, dtype, x_shape, n, seed)
            found += [
                f"{name} {shape} {dtype} {check} seed {seed}"
                for check in _checks(x_shape, n)
                if _catches(check, right_vjp, args, seed)
            ]
    return found


def markdown(cells: dict[tuple[str, str, str, str], dict[str, bool]], shapes: list[str]) -> str:
    lines = []
    for shape in shapes:
        x_shape, n = SHAPES[shape]
        dtypes = [d for d in DTYPES if any(k[0] == shape and k[2] == d for k in cells)]
        checks = _checks(x_shape, n)
        lines += [f"\nx {x_shape}, {n} outputs; each cell: {' / '.join(CHECK_NAMES[c] for c in checks)}\n"]
        lines.append("| wrong backward | " + " | ".join(dtypes) + " |")
        lines.append("|---|" + "---|" * len(dtypes))
        for mutant in BANK:
            row = []
            for dtype in dtypes:
                marks = []
                for check in checks:
                    by_backend = cells.get((shape, mutant.name, dtype, check))
                    if by_backend is None:
                        continue
                    missed = sorted(b for b, caught in by_backend.items() if not caught)
                    mark = (
                        "✓" if not missed else ("✗" if len(missed) == len(by_backend) else f"✗ ({', '.join(missed)})")
                    )
                    marks.append(mark)
                row.append(" / ".join(marks) if marks else "")
            if any(row):
                lines.append(f"| {mutant.name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def disagreements(cells: dict[tuple[str, str, str, str], dict[str, bool]]) -> list[str]:
    """Cells where a backend misses what tests/mutants.py's `expected` claims."""
    by_name = {m.name: m for m in BANK}
    return [
        f"{shape} {mutant} {dtype} {check} {backend}: caught={caught}"
        for (shape, mutant, dtype, check), results in cells.items()
        for backend, caught in results.items()
        if expected(by_name[mutant], dtype, check) and not caught
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="numpy,torch,jax")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the right backward per case")
    parser.add_argument("--margin", type=float, default=1.0, help="divide every default tolerance constant by this")
    parser.add_argument("--markdown", action="store_true", help="print the table of docs/testing.md")
    options = parser.parse_args(argv)
    for constant in ("_NARROW_RTOL", "_WIDE_RTOL", "_ROUNDING", "_TRUNCATION_MARGIN"):
        setattr(testing, constant, getattr(testing, constant) / options.margin)
    backends, shapes = [], options.shapes.split(",")
    for name in options.backends.split(","):
        try:
            find_backend(name).load(exact=True)
        except BackendUnavailable as exc:
            print(f"{name}: skipped ({exc.reason})", file=sys.stderr)
            continue
        backends.append(name)
    alarms = false_alarms(backends, shapes, options.seeds)
    print(f"false alarms over {options.seeds} seeds (margin {options.margin:g}): {len(alarms)}")
    for alarm in alarms:
        print("  " + alarm)
    if options.margin != 1.0:
        return 1 if alarms else 0
    cells = power(backends, shapes)
    if options.markdown:
        print(markdown(cells, shapes))
    wrong = disagreements(cells)
    print(f"cells against tests/mutants.py's claims: {len(wrong)} disagree")
    for line in wrong:
        print("  " + line)
    return 1 if alarms or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
