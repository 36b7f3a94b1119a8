"""The ``xaffine`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Add a command by writing ``xaffine/cli/NAME.py`` with ``add_parser(subparsers) -> None``
(which registers the subcommand and sets ``run`` as its default) and
``run(args) -> int``, and listing the module in `COMMANDS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .._backends import BackendUnavailable
from . import bench, check, demo, export, info
from ._shared import Parser

__all__ = ["COMMANDS", "SIGPIPE_STATUS", "main"]

SIGPIPE_STATUS = 141
"""The exit status when standard output is a closed pipe: a shell's for a process ended by SIGPIPE (128 + 13)."""

# The subcommands, in the order `xaffine --help` lists them.
COMMANDS = (check, info, demo, bench, export)


def parser() -> Parser:
    """The argument parser of every command in `COMMANDS`."""
    top = Parser(
        prog="xaffine",
        description="The affine layer with hand-derived gradients, on every Array API library.",
    )
    subparsers = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a usage error, with a one-line message)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported on stderr
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        # The reader went away (`xaffine info | head -1`): stop quietly, as Unix tools do,
        # with the status of one ended by SIGPIPE. Python's own flush at exit must not
        # fail again on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return SIGPIPE_STATUS
    except (ValueError, ImportError, BackendUnavailable) as exc:
        print(f"xaffine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as exc:
        # Work that failed after the checks (a file that became unwritable, memory).
        what = "out of memory" if isinstance(exc, MemoryError) else "error"
        print(f"xaffine {args.command}: {what}: {exc}", file=sys.stderr)
        return 1
    return status
