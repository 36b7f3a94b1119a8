"""Files: reading only regular files, and replacing one atomically (the old file stays whole
until the new one is complete).

Only regular files are read or replaced. A directory, device, FIFO or socket at the path (or
at the end of a symbolic link from it) is refused before it is opened: opening a FIFO waits
for a writer, reading ``/dev/zero`` never ends, and renaming a new file over a device node
would replace the node itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from typing import BinaryIO

__all__ = ["NotARegularFileError", "check_replaceable", "open_regular", "replacing", "replacing_all"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: should a FIFO take the place of the file between the check and the open, the
# open returns at once instead of waiting for a writer (it is then refused by fstat).
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class NotARegularFileError(OSError, ValueError):
    """The path is (or links to) a device, FIFO or socket, which xaffine neither reads nor replaces.

    An ``OSError`` (a file the operation cannot use, like ``IsADirectoryError``) and a
    ``ValueError`` (a bad `path` argument), as :class:`io.UnsupportedOperation` is both.
    """


def _what(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str, mode: int, target: str | None = None) -> OSError:
    """The error for a `path` that is not a regular file (`target`: where it leads, named
    where `path` is a symbolic link)."""
    via = f" (a link to {target!r})" if target is not None and os.path.islink(path) else ""
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, f"is a directory{via}; expected a regular file", path)
    return NotARegularFileError(
        errno.EINVAL, f"is {_what(mode)}{via}; xaffine reads and replaces only regular files", path
    )


def open_regular(path: str) -> BinaryIO:
    """`path` opened for reading, if it is (or links to) a regular file.

    Raises
    ------
    OSError
        ``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``, or
        :class:`NotARegularFileError` for a device, FIFO or socket, naming `path`;
        such a file is not opened.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode, os.path.realpath(path))
    fd = os.open(path, _READ_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the check
            raise _refuse(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_target(target: str, shown: str) -> os.stat_result | None:
    """The stat of the file `target` (`shown`: the path as given) a save would replace, or
    None if there is none; refuses what is not a regular file, or is read-only, and a path
    that ends in a separator (it names a folder, and would make a file of that name)."""
    if os.path.basename(shown) in ("", ".", ".."):  # `newdir/`, `newdir/.`
        raise IsADirectoryError(errno.EISDIR, "ends in a path separator or a dot, so it names a folder", shown)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(shown, st.st_mode, target)
    # A file without any write permission is write-protected, as rm(1) treats it: even
    # where the process could write it (as root), it is not replaced.
    if not os.access(target, os.W_OK) or not st.st_mode & 0o222:
        mode = stat.filemode(st.st_mode)
        raise PermissionError(errno.EACCES, f"is read-only ({mode}); make it writable to replace it", shown)
    return st


def check_replaceable(path: str) -> None:
    """Refuse, before any work, a `path` that :func:`replacing` would refuse or fail to write.

    The path must be a regular file that is not read-only, or absent, in a folder where a
    file can be created (tried, and removed at once).

    Raises
    ------
    OSError
        As :func:`replacing` would, naming `path`.
    """
    target = os.path.realpath(path)
    _check_target(target, path)
    fd, temporary = _create_beside(target, path)
    os.close(fd)
    os.unlink(temporary)


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
        If `path` is (or links to) something other than a regular file
        (``IsADirectoryError``, :class:`NotARegularFileError`), is read-only
        (``PermissionError``), or the file cannot be created, written or renamed;
        nothing is left behind and `path` is as it was.
    """
    with replacing_all([path]) as (f,):
        yield f


@contextlib.contextmanager
def replacing_all(paths: Sequence[str]) -> Iterator[list[BinaryIO]]:
    """New files to write, one per path; on a clean exit they replace `paths` together.

    As :func:`replacing`, for several files: all are written and fsynced before any is
    renamed into place, and if a rename fails the files already replaced get their old
    contents back (kept as hard links, or copies where the file system has none). On
    any failure every path is as it was.
    """
    targets = [os.path.realpath(p) for p in paths]
    if len(set(targets)) != len(targets):
        msg = f"the files to write are one file: {list(paths)}"
        raise ValueError(msg)
    for target, shown in zip(targets, paths, strict=True):
        _check_target(target, shown)
    temporaries: list[str] = []
    try:
        files: list[BinaryIO] = []
        with contextlib.ExitStack() as stack:
            for target, shown in zip(targets, paths, strict=True):
                fd, temporary = _create_beside(target, shown)
                temporaries.append(temporary)
                files.append(stack.enter_context(os.fdopen(fd, "wb")))
            yield files
            for f in files:
                f.flush()
                os.fsync(f.fileno())
        _move_into_place(temporaries, targets, paths)
    except BaseException:
        for temporary in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        raise
    for directory in dict.fromkeys(os.path.dirname(t) for t in targets):
        _sync_directory(directory)


def _move_into_place(temporaries: list[str], targets: list[str], shown: Sequence[str]) -> None:
    """Rename each temporary file over its target; all of them, or none."""
    stats = [_check_target(t, s) for t, s in zip(targets, shown, strict=True)]  # again: it may have changed
    for temporary, st in zip(temporaries, stats, strict=True):
        if st is not None:
            with contextlib.suppress(OSError):
                os.chmod(temporary, stat.S_IMODE(st.st_mode))
    if len(targets) == 1:
        os.replace(temporaries[0], targets[0])
        return
    backups: list[tuple[str, str | None]] = []  # (target, its old contents or None)
    try:
        for temporary, target, st in zip(temporaries, targets, stats, strict=True):
            backup = None
            if st is not None:
                backup = _keep(target)
            backups.append((target, backup))
            os.replace(temporary, target)
    except BaseException as exc:
        for target, backup in reversed(backups):
            if backup is None:
                with contextlib.suppress(OSError):
                    os.unlink(target)
            elif not _restore(backup, target) and hasattr(exc, "add_note"):
                exc.add_note(f"{target!r} could not be given its old contents back; they are in {backup!r}")
        raise
    for _, backup in backups:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)


def _restore(backup: str, target: str) -> bool:
    """Put `backup` back at `target`; whether that worked (else the backup stays, the one
    copy of the old contents). Where `target` was never replaced, the backup is a second
    name of its own file (rename(2) would leave both names): it is removed instead."""
    try:
        if os.path.samefile(backup, target):
            os.unlink(backup)
        else:
            os.replace(backup, target)
    except OSError:
        return False
    return True


def _keep(target: str) -> str:
    """A second name for `target`'s current contents, beside it, to restore them from."""
    backup = _beside(target, "old")
    try:
        os.link(target, backup)
    except OSError:
        try:
            shutil.copy2(target, backup)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(backup)  # a copy cut short (no space left)
            raise
    return backup


def _beside(target: str, kind: str) -> str:
    """A new hidden name in `target`'s folder, ``.<name>.<random>.<kind>``, with `target`'s
    name cut short where the whole would pass the file system's longest name."""
    directory, base = os.path.split(target)
    try:
        longest = os.pathconf(directory or ".", "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
        longest = 255
    tail = f".{secrets.token_hex(6)}.{kind}"
    room = max(longest - len(tail.encode()) - 1, 1)
    name = os.fsencode(base)[:room].decode(errors="ignore") if len(os.fsencode(base)) > room else base
    return os.path.join(directory, f".{name}{tail}")


def _create_beside(target: str, shown: str) -> tuple[int, str]:
    while True:
        temporary = _beside(target, "tmp")
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
