"""``xaffine info``: versions, devices and the default backend."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from .. import __version__
from .._backends import BackendUnavailable, default_backend, device_name
from ._shared import table, user_backends

__all__ = ["add_parser", "run"]


def _version(distributions: Sequence[str]) -> str:
    """``"name version"`` of the first of `distributions` that is installed."""
    for dist in distributions:
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="versions, devices and the default backend",
        description="Versions of xaffine, array-api-compat and each backend; devices; the default backend and why.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(f"xaffine {__version__}, {_version(['array-api-compat'])}, Python {sys.version.split()[0]}")
    rows = [["backend", "version", "device", "status"]]
    for backend in user_backends():
        try:
            device = backend.load().device
        except BackendUnavailable as exc:
            rows.append([backend.name, _version(backend.distributions), "-", f"{exc.kind}: {exc.reason}"])
        else:
            rows.append([backend.name, _version(backend.distributions), device_name(device), "usable"])
    print(table(rows))
    try:
        choice = default_backend()
    except ValueError as exc:
        print(f"\ndefault backend: none ({exc})")
        return 1
    print(f"\ndefault backend: {choice.name} on {device_name(choice.device)} ({choice.reason})")
    print("rule: CuPy when a CUDA GPU is usable, otherwise NumPy; XAFFINE_BACKEND=<name> overrides it")
    return 0
