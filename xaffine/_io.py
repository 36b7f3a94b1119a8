"""Saving and loading a layer's parameters: ``.npz`` (never pickled) or ``.safetensors``."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from ._backends import to_numpy
from ._backends import dtype_name
from ._layer import Affine
from ._typing import Device, Namespace

__all__ = ["load", "save"]

_SUFFIXES = (".npz", ".safetensors")


def _suffix(path: str | os.PathLike[str]) -> str:
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _SUFFIXES:
        msg = f"`path` must end in {' or '.join(_SUFFIXES)}; got {os.fspath(path)!r}"
        raise ValueError(msg)
    return suffix


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError as exc:
        msg = "`.safetensors` files need the safetensors package: pip install 'xaffine[safetensors]'"
        raise ImportError(msg) from exc
    return safetensors.numpy


def save(path: str | os.PathLike[str], layer: Affine) -> None:
    """Write `layer`'s parameters to `path` (``.npz`` or ``.safetensors``), keys as in
    :meth:`Affine.state_dict`.

    Raises
    ------
    ValueError
        For another file suffix.
    TypeError
        For a bfloat16 layer (NumPy, and so both formats here, has no bfloat16).

    Examples
    --------
    >>> import tempfile, os
    >>> import xaffine
    >>> layer = xaffine.Affine(4, 2, xp="numpy", seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.npz")
    >>> xaffine.save(path, layer)
    >>> xaffine.load(path, xp="numpy")
    Affine(in_features=4, out_features=2, bias=True, backend=numpy, device=cpu, dtype=float32)
    """
    suffix = _suffix(path)
    if dtype_name(layer.dtype) == "bfloat16":
        msg = "a bfloat16 layer cannot be saved: convert it with layer.to(...) at float32 first"
        raise TypeError(msg)
    host = {name: np.ascontiguousarray(to_numpy(a)) for name, a in layer.state_dict().items()}
    if suffix == ".npz":
        with open(path, "wb") as f:
            # numpy's stub types **kwds as its `allow_pickle` flag.
            np.savez(f, **host)  # type: ignore[arg-type]
    else:
        _safetensors().save_file(host, os.fspath(path))


def load(path: str | os.PathLike[str], *, xp: Namespace | str | None = None, device: Device | None = None) -> Affine:
    """A layer with the parameters saved at `path`, on `xp` and `device`.

    ``.npz`` files are read with ``allow_pickle=False``: loading never runs code.

    Raises
    ------
    FileNotFoundError
        If there is no file.
    ValueError
        For another suffix, a truncated or corrupt file, a missing or unexpected key,
        or a wrong shape; the message names the file. Nothing is half-loaded.
    TypeError
        For a wrong dtype, naming the file.
    """
    suffix = _suffix(path)
    name = os.fspath(path)
    try:
        if suffix == ".npz":
            # Our own handle: np.load leaks its file when the archive is corrupt.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
        else:
            state = _safetensors().load_file(name)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a corrupt archive raises any of several types
        if not isinstance(exc, (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)) and suffix == ".npz":
            raise
        msg = f"{name}: not a readable {suffix} file (truncated or corrupt?): {exc}"
        raise ValueError(msg) from exc
    try:
        return Affine.from_state_dict(state, xp=xp, device=device)
    except KeyError as exc:
        msg = f"{name}: {exc.args[0]}"
        raise ValueError(msg) from exc
    except (ValueError, TypeError) as exc:
        msg = f"{name}: {exc}"
        raise type(exc)(msg) from exc
