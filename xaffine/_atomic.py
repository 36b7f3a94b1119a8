"""Replacing a file atomically: the old file stays whole until the new one is complete."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["replacing"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def replacing(path: str) -> Iterator[BinaryIO]:
    """A new file to write; on a clean exit it replaces `path`, otherwise it is removed.

    The data goes to a temporary file in the same directory (so that the rename stays
    on one file system), is flushed and fsynced, and then renamed over `path` with
    :func:`os.replace`. A symbolic link at `path` is followed: its target is replaced.
    An existing file's permission bits are kept; a new file gets the umask's.

    Raises
    ------
    OSError
        If the file cannot be created, written or renamed; nothing is left behind and
        `path` is as it was.
    """
    target = os.path.realpath(path)
    fd, temporary = _create_beside(target, path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(os.path.dirname(target))


def _create_beside(target: str, shown: str) -> tuple[int, str]:
    directory, base = os.path.split(target)
    while True:
        temporary = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666: the umask applies, as for open(path, "wb").
            return os.open(temporary, _FLAGS, 0o666), temporary
        except FileExistsError:
            continue
        except OSError as exc:
            # Name the file the caller asked for, not our temporary one.
            raise type(exc)(exc.errno, exc.strerror, shown) from exc


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); the new file is in place either way."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        # Some file systems cannot fsync a directory; that does not undo the save.
        fd = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
