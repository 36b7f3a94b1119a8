"""What the commands share: option checks, seeded inputs, one table renderer, progress, output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import numpy as np

from .. import _reference
from .._atomic import check_replaceable, replacing
from .._backends import BACKENDS, HOST_DTYPES, Backend, find_backend

__all__ = [
    "DTYPES",
    "Parser",
    "Progress",
    "backend_list",
    "dtype_list",
    "host_inputs",
    "human_stream",
    "non_negative_int",
    "output_path",
    "positive_float",
    "positive_int",
    "seconds",
    "table",
    "user_backends",
    "write_json",
]

# The dtypes the commands take: those NumPy holds, so the float64 reference and the
# seeded host data exist for each.
DTYPES = HOST_DTYPES  # checked against a float64 NumPy reference, so those NumPy holds


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``xaffine bench: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- option types: each turns the text into a value or says what is wrong ---------------


def _integer_from(minimum: int, what: str) -> Callable[[str], int]:
    """An option type: an integer of at least `minimum`, refused as `what` otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            msg = f"must be {what}; got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


positive_int = _integer_from(1, "a positive integer")
non_negative_int = _integer_from(0, "a non-negative integer")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a positive number; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


MAX_SECONDS = 3600.0


def seconds(text: str) -> float:
    """A positive time in seconds, at most `MAX_SECONDS` (an hour)."""
    value = positive_float(text)
    if value > MAX_SECONDS:
        msg = f"must be at most {MAX_SECONDS:.0f} seconds; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _items(text: str, what: str, example: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        msg = f"an empty list; give one or more {what}, comma-separated, e.g. {example}"
        raise argparse.ArgumentTypeError(msg)
    if not all(items):
        msg = f"an empty name in {text!r}; give {what} comma-separated, e.g. {example}"
        raise argparse.ArgumentTypeError(msg)
    return items


def backend_list(text: str) -> list[Backend]:
    """A comma list of backend names, each one of the table's."""
    try:
        return [find_backend(name) for name in _items(text, "backends", "numpy,torch")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dtype_list(text: str) -> list[str]:
    """A comma list of dtype names, each one of `DTYPES`."""
    names = [name.lower() for name in _items(text, "dtypes", "float32,float64")]
    for name in names:
        if name not in DTYPES:
            msg = f"unknown dtype {name!r}; the choices are {', '.join(DTYPES)}"
            raise argparse.ArgumentTypeError(msg)
    return list(dict.fromkeys(names))


def output_path(text: str) -> str:
    """``-`` (standard output) or a file path that can be written: its folder exists and
    takes a new file (tried), and the file is absent or a writable regular file."""
    if text == "-":
        return text
    if not text or os.path.isdir(text):
        msg = f"must be a file path or '-'; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        msg = f"the folder of {text!r} does not exist"
        raise argparse.ArgumentTypeError(msg)
    try:
        check_replaceable(text)
    except OSError as exc:
        msg = f"cannot write {text!r}: {exc.strerror or exc}"
        raise argparse.ArgumentTypeError(msg) from None
    return text


# -- inputs and backends ----------------------------------------------------------


def user_backends() -> list[Backend]:
    """The backends the commands report by default (test-only variants left out)."""
    return [b for b in BACKENDS if not b.testing_only]


def host_inputs(lead: Sequence[int], k: int, n: int, dtype: str, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Seeded host data ``x (*lead, k)``, ``w (n, k)``, ``b (n,)``, ``g (*lead, n)`` in `dtype`.

    The one builder of the tests and commands (``_reference.inputs``): every backend gets the
    same numbers.
    """
    data = _reference.inputs((*lead, k), n, dtype, seed=seed)
    return {"x": data.x, "w": data.weight, "b": data.bias, "g": data.grad}


# -- output -----------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], *, align: str = "left") -> str:
    """Rows of cells as aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def cell(text: str, width: int) -> str:
        return text.rjust(width) if align == "right" else text.ljust(width)

    lines = ["  ".join(cell(c, w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_stream(json_path: str | None) -> TextIO:
    """Where the tables go: stderr when the JSON goes to stdout (``--json -``), so stdout parses."""
    return sys.stderr if json_path == "-" else sys.stdout


def write_json(path: str, payload: Any) -> None:
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        with replacing(path) as f:
            f.write((text + "\n").encode("utf-8"))


class Progress:
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

    def __enter__(self) -> Callable[[str], None]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
