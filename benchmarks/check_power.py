"""What xaffine.testing's checks catch: the bank of wrong backward passes, run through each check.

For each backend, dtype and shape, every mutant of tests/mutants.py goes through
``check_adjoint``, ``check_vjp`` in fast mode and (at the small shapes) in full mode; a
cell says whether the check raised. The right backward runs through the same checks over
many seeds (``--seeds``): any failure there is a false alarm, and is printed.

Run from the repository root (this writes the tables of docs/testing.md)::

    PYTHONPATH=$PWD python benchmarks/check_power.py --backends numpy,torch,jax --markdown

``--zoo`` does the same for the zoo of other layers (tests/zoo.py): each layer's wrong
backward at ``--seeds`` points (logits x1), and its right backward at those points at every
scale of the zoo, as a table per layer and dtype.

``--margin F`` runs the right backward with every tolerance constant of xaffine.testing
divided by F: no false alarm at ``--margin 2`` means the defaults sit twice above the
largest error seen.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

import xaffine.testing as testing
import xaffine.testing._adjoint
import xaffine.testing._vjp
from tests.mutants import BANK, applies, expected, jvp, right_vjp
from tests.zoo import LAYERS, SCALES, draw
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


# -- the zoo --------------------------------------------------------------------------------

TOLERANCE_CONSTANTS = {
    xaffine.testing._adjoint: ("_SPREAD", "_NARROW_SPREAD", "_WIDE_RTOL", "_NARROW_RTOL"),
    xaffine.testing._vjp: ("_ROUNDING", "_TRUNCATION_MARGIN", "_UNRESOLVED"),
}
ZOO_DTYPES = {False: ("float64", "float32", "float16", "bfloat16"), True: ("complex128", "complex64")}


def _zoo_points(
    backends: list[str], seeds: int, scale: float | None
) -> Iterator[tuple[str, Any, str, int, tuple[Any, ...]]]:
    """(backend, layer, dtype, seed, arguments) at logits times `scale` (every zoo scale if None)."""
    for name in backends:
        _, xp, device, _ = find_backend(name).load(exact=True)
        for layer in LAYERS:
            for dtype in ZOO_DTYPES[layer.complex_]:
                if not hasattr(xp, dtype):
                    continue
                for seed in range(seeds):
                    rng = np.random.default_rng([seed, len(layer.name)])
                    for s in SCALES[dtype] if scale is None else (scale,):
                        host = draw(layer, rng, dtype, s)
                        args = tuple(xp.astype(xp.asarray(a, device=device), getattr(xp, dtype)) for a in host)
                        yield name, layer, dtype, seed, args


def _zoo_catches(check: str, layer: Any, vjp: Any, args: tuple[Any, ...], seed: int) -> bool:
    try:
        if check == "adjoint":
            testing.check_adjoint(layer.jvp, vjp, args, seed=seed)
        else:
            testing.check_vjp(layer.f, vjp, args, mode=check, seed=seed)
    except AssertionError:
        return True
    return False


def _zoo_checks(args: tuple[Any, ...]) -> tuple[str, ...]:
    return CHECKS if max(int(np.prod(a.shape)) for a in args) <= FULL_LIMIT else CHECKS[:2]


def zoo_main(backends: list[str], options: argparse.Namespace) -> int:
    """The zoo's false alarms and table; a wrong backward missed in float64, float32 or the
    complex dtypes (which tests/test_zoo.py claims caught) fails the run."""
    alarms = [
        f"{name} {layer.name} {dtype} seed {seed} {check}"
        for name, layer, dtype, seed, args in _zoo_points(backends, options.seeds, None)
        for check in _zoo_checks(args)
        if _zoo_catches(check, layer, layer.vjp, args, seed)
    ]
    print(f"zoo false alarms over {options.seeds} seeds (margin {options.margin:g}): {len(alarms)}")
    for alarm in alarms:
        print("  " + alarm)
    if options.margin != 1.0:
        return 1 if alarms else 0
    caught: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for _, layer, dtype, seed, args in _zoo_points(backends, options.seeds, 1.0):
        for check in _zoo_checks(args):
            caught[(layer.name, dtype, check)].append(_zoo_catches(check, layer, layer.wrong[1], args, seed))
    missed = [key for key, results in caught.items() if key[1] not in ("float16", "bfloat16") and not all(results)]
    if options.markdown:
        print(zoo_markdown(caught, options.seeds))
    print(f"wrong zoo backwards missed in float64, float32 or complex: {len(missed)}")
    for key in missed:
        print("  " + " ".join(key))
    return 1 if alarms or missed else 0


def zoo_markdown(caught: dict[tuple[str, str, str], list[bool]], seeds: int) -> str:
    lines = [
        f"\nEach layer's wrong backward at {seeds} points (logits x1); each cell: check_adjoint / check_vjp fast "
        "/ check_vjp full (where every argument has at most 64 elements); ✓ caught at every point, "
        "✗ (k/n) missed at k of n\n",
        "| layer | wrong backward | " + " | ".join(ZOO_DTYPES[False]) + " |",
        "|---|---|" + "---|" * len(ZOO_DTYPES[False]),
    ]
    for layer in LAYERS:
        cells = []
        for dtype in ZOO_DTYPES[layer.complex_]:
            marks = []
            for check in CHECKS:
                results = caught.get((layer.name, dtype, check))
                if results:
                    misses = results.count(False)
                    marks.append("✓" if not misses else f"✗ ({misses}/{len(results)})")
            cells.append(" / ".join(marks))
        if layer.complex_:
            cells = [f"{d}: {c}" for d, c in zip(ZOO_DTYPES[True], cells, strict=True)] + [""] * 2
        lines.append(f"| {layer.name} | {layer.wrong[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="numpy,torch,jax")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the right backward per case")
    parser.add_argument("--margin", type=float, default=1.0, help="divide every default tolerance constant by this")
    parser.add_argument("--markdown", action="store_true", help="print the table of docs/testing.md")
    parser.add_argument("--zoo", action="store_true", help="the zoo of other layers (tests/zoo.py), not the bank")
    options = parser.parse_args(argv)
    for module, constants in TOLERANCE_CONSTANTS.items():
        for constant in constants:
            setattr(module, constant, getattr(module, constant) / options.margin)
    backends, shapes = [], options.shapes.split(",")
    for name in options.backends.split(","):
        try:
            find_backend(name).load(exact=True)
        except BackendUnavailable as exc:
            print(f"{name}: skipped ({exc.reason})", file=sys.stderr)
            continue
        backends.append(name)
    if options.zoo:
        return zoo_main(backends, options)
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
