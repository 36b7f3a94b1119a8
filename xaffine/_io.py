"""Saving and loading a layer's parameters: ``.npz`` (never pickled) or ``.safetensors``.

Both formats are read header first: member names, dtypes and shapes are checked
against what a layer's state can be, and their sizes against the bytes the file
really holds, before any data is read. ``.safetensors`` is simple enough (an 8-byte
little-endian header length, a JSON header, raw little-endian data) to be read and
written here directly, which is also how bfloat16 crosses NumPy, which has none.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from typing import IO, Any, NamedTuple

import numpy as np

from ._atomic import open_regular, replacing
from ._backends import HOST_DTYPES, bfloat16_from_bits, dtype_name, to_numpy
from ._dispatch import describe
from ._layer import Affine, check_layout, layer_from_state, resolve_backend
from ._typing import Device, Namespace

__all__ = ["load", "save"]

_SUFFIXES = (".npz", ".safetensors")
_KEYS = ("weight", "bias")
_SAFETENSORS_CODES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "complex64": "C64"}
_SAFETENSORS_DTYPES = {code: name for name, code in _SAFETENSORS_CODES.items()}
# A layer's header is about 200 bytes; this leaves room for others' metadata.
_MAX_SAFETENSORS_HEADER = 1 << 20
# What a corrupt zip archive or member raises besides ValueError.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, struct.error)


class _Declared(NamedTuple):
    """What a file says a parameter is, before its data is read."""

    shape: tuple[int, ...]
    dtype: str


def _suffix(path: str | os.PathLike[str]) -> str:
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _SUFFIXES:
        msg = f"`path` must end in {' or '.join(_SUFFIXES)}; got {os.fspath(path)!r}"
        raise ValueError(msg)
    return suffix


def save(path: str | os.PathLike[str], layer: Affine) -> None:
    """Write `layer`'s parameters to `path` (``.npz`` or ``.safetensors``), keys as in
    :meth:`Affine.state_dict`.

    The file is replaced atomically: the data is written to a temporary file beside
    it, flushed to disk, then renamed over `path`. If anything fails, `path` keeps its
    old contents and no temporary file is left. Only a regular file is replaced (a
    symbolic link's target, if it is one); a read-only one (no write permission) is not.

    Raises
    ------
    ValueError
        For another file suffix.
    TypeError
        For a `layer` that is not an :class:`Affine`, or a dtype the format cannot hold,
        before anything is written: bfloat16 in ``.npz`` (NumPy has no bfloat16;
        ``.safetensors`` has), complex128 in ``.safetensors``.
    OSError
        If `path` is (or links to) a directory (``IsADirectoryError``), a device, FIFO or
        socket (``xaffine._atomic.NotARegularFileError``, also a ``ValueError``), or a
        read-only file (``PermissionError``), or if writing fails; `path` is left as it was.

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
    if not isinstance(layer, Affine):
        msg = (  # type: ignore[unreachable]
            f"`layer` must be an xaffine.Affine; got {describe(layer)} "
            "(for a state dict of arrays: save(path, Affine.from_state_dict(state)))"
        )
        raise TypeError(msg)
    suffix = _suffix(path)
    name = os.fspath(path)
    dtype = dtype_name(layer.dtype)
    if suffix == ".npz" and dtype not in HOST_DTYPES:
        msg = f"{name}: .npz cannot hold {dtype} parameters (NumPy has no {dtype}); save to a .safetensors file"
        raise TypeError(msg)
    if suffix == ".safetensors" and dtype not in _SAFETENSORS_CODES:
        msg = (
            f"{name}: the .safetensors format has no {dtype}; it holds {', '.join(_SAFETENSORS_CODES)}. "
            f"Save {dtype} to a .npz file"
        )
        raise TypeError(msg)
    host = _to_host(layer, dtype)
    with replacing(name) as f:
        if suffix == ".npz":
            # numpy's stub types **kwds as its `allow_pickle` flag.
            np.savez(f, **host)  # type: ignore[arg-type]
        else:
            _write_safetensors(f, host, _SAFETENSORS_CODES[dtype])


def _to_host(layer: Affine, dtype: str) -> dict[str, np.ndarray[Any, Any]]:
    """The parameters as contiguous host arrays; bfloat16 as the raw 16 bits of each value."""
    host = {key: np.ascontiguousarray(to_numpy(a, f"`layer`'s {key}")) for key, a in layer.state_dict().items()}
    if dtype == "bfloat16":
        # to_numpy gives bfloat16 as float32, exactly: its upper 16 bits are the bfloat16 back.
        host = {key: (a.astype("<f4").view("<u4") >> 16).astype("<u2") for key, a in host.items()}
    return host


def _write_safetensors(f: IO[bytes], host: dict[str, np.ndarray[Any, Any]], code: str) -> None:
    header, offset = {}, 0
    for key, a in host.items():
        header[key] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    # The format pads the header with spaces so that the data starts 8-byte aligned.
    raw += b" " * (-len(raw) % 8)
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for a in host.values():
        f.write(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())


def load(
    path: str | os.PathLike[str],
    *,
    xp: Namespace | str | None = None,
    device: Device | None = None,
    dtype: Any = None,
) -> Affine:
    """A layer with the parameters saved at `path`, on `xp` and `device`; `dtype`, if given,
    converts them (``dtype="float32"`` loads a bfloat16 file onto NumPy, which has no bfloat16).

    Nothing in the file runs code (``.npz`` arrays of Python objects are refused), and
    nothing is read before the names, dtypes and shapes in the file's headers have been
    checked against each other and against the file's size: a hostile file is refused
    without using more memory than its honest parameters would. Parameters load in the
    machine's byte order.

    Raises
    ------
    OSError
        If the file cannot be opened: ``FileNotFoundError``, ``IsADirectoryError``,
        ``PermissionError``, naming the file; or if it is (or links to) a device, FIFO or
        socket (``xaffine._atomic.NotARegularFileError``, also a ``ValueError``), which is
        then not opened.
    ValueError
        For another suffix, a file that is not of its format or is truncated or corrupt,
        a missing or unexpected key, or a wrong or inconsistent shape; the message names
        the file and the key. Nothing is half-loaded.
    TypeError
        For a dtype a layer cannot hold (a layer's are float16, bfloat16, float32,
        float64, complex64 and complex128), or a bias of another dtype than the weight,
        naming the file and the key; or for bfloat16 on a backend without it.
    """
    suffix = _suffix(path)
    name = os.fspath(path)
    # The backend first: an error in its choice (XAFFINE_BACKEND) is not the file's.
    _, xp, device = resolve_backend(xp, device)
    with open_regular(name) as f:
        state, stored = _read_npz(f, name) if suffix == ".npz" else _read_safetensors(f, name)
    if stored == "bfloat16":
        state = _from_bfloat16_bits(state, xp, device, dtype)
    try:
        target = dtype if dtype is not None else "bfloat16" if stored == "bfloat16" else None
        # The arrays were just read: the layer may keep them rather than a copy.
        return layer_from_state(Affine, state, xp, device, target, copy=False)
    except KeyError as exc:
        msg = f"{name}: {exc.args[0]}"
        raise ValueError(msg) from exc
    except (ValueError, TypeError) as exc:
        msg = f"{name}: {exc}"
        raise type(exc)(msg) from exc


def _from_bfloat16_bits(
    state: dict[str, np.ndarray[Any, Any]], xp: Namespace, device: Device, dtype: Any
) -> dict[str, Any]:
    """bfloat16 parameters, read as their raw bits, as the backend's bfloat16 arrays with every
    bit kept where bfloat16 is asked for and the backend can reinterpret bits; otherwise as
    float32 on the host, which holds every bfloat16 value exactly (`load` converts from there).
    """
    if dtype is None or dtype_name(dtype) == "bfloat16":
        kept = {key: bfloat16_from_bits(bits, xp, device) for key, bits in state.items()}
        if all(a is not None for a in kept.values()):
            return kept
    # The upper 16 bits of a float32 are the bfloat16 with the same value.
    return {key: (bits.astype(np.uint32) << 16).view(np.float32) for key, bits in state.items()}


def _check_keys(name: str, keys: list[str]) -> None:
    unexpected = sorted(set(keys) - set(_KEYS))
    if unexpected:
        msg = f"{name}: unexpected key {unexpected[0]!r}; a layer's state holds 'weight' and optionally 'bias'"
    elif "weight" not in keys:
        msg = f"{name}: no 'weight'; a layer's state holds 'weight' and optionally 'bias' (got keys {sorted(keys)})"
    elif len(set(keys)) != len(keys):
        msg = f"{name}: a key is stored twice (got keys {sorted(keys)})"
    else:
        return
    raise ValueError(msg)


def _unsupported_dtype(name: str, key: str, dtype: object) -> TypeError:
    msg = (
        f"{name}: {key!r} has dtype {dtype}, which a layer cannot hold; "
        "a layer's dtypes are float16, bfloat16 (.safetensors only), float32, float64, complex64, complex128"
    )
    return TypeError(msg)


def _size_mismatch(name: str, key: str, declared: _Declared, nbytes: int, held: str) -> ValueError:
    msg = f"{name}: {key!r} declares shape {declared.shape} of {declared.dtype} ({nbytes} bytes) but {held} bytes"
    return ValueError(msg)


# -- .npz ------------------------------------------------------------------------------


def _read_npz(f: IO[bytes], name: str) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
    try:
        with zipfile.ZipFile(f) as archive:
            return _read_archive(archive, name)
    except _ZIP_ERRORS as exc:
        msg = f"{name}: not a readable .npz file (truncated or corrupt?): {exc}"
        raise ValueError(msg) from exc


def _read_archive(archive: zipfile.ZipFile, name: str) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
    # np.savez stores each array as "<key>.npy", and np.load strips the suffix.
    members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
    _check_keys(name, [info.filename.removesuffix(".npy") for info in archive.infolist()])
    layout: dict[str, tuple[_Declared, np.dtype[Any], bool, int]] = {}
    for key, info in members.items():
        if not info.filename.endswith(".npy"):
            msg = f"{name}: member {info.filename!r} is not a .npy array"
            raise ValueError(msg)
        with archive.open(info) as member:
            shape, fortran, dtype, offset = _npy_header(member, name, key)
        declared = _Declared(shape, _npz_dtype_name(name, key, dtype))
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes != info.file_size:
            raise _size_mismatch(name, key, declared, nbytes, f"its member holds {info.file_size - offset}")
        layout[key] = (declared, dtype, fortran, offset)
    check_layout({key: entry[0] for key, entry in layout.items()}, f"{name}: ")
    state = {}
    for key, (declared, dtype, fortran, offset) in layout.items():
        info = members[key]
        with archive.open(info) as member:
            member.read(offset)
            state[key] = _read_member(member, info, dtype, declared, name, key)
        state[key] = _native(state[key]).reshape(declared.shape, order="F" if fortran else "C")
        if fortran:
            state[key] = np.ascontiguousarray(state[key])
    return state, layout["weight"][0].dtype


_CHUNK = 1 << 18


def _read_member(
    member: IO[bytes], info: zipfile.ZipInfo, dtype: np.dtype[Any], declared: _Declared, name: str, key: str
) -> np.ndarray[Any, Any]:
    """The member's data as a flat array: read into the array itself, one copy in memory,
    where the member is stored uncompressed and its sizes agree (the archive then holds
    the bytes: a directory's size cannot be a lie that allocates); else read first, at most
    what the member holds (read() never allocates ahead), then copied."""
    count = math.prod(declared.shape)
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size:
        flat = np.empty(count, dtype=dtype)
        if _read_into(member, flat):
            return flat
    else:
        data = member.read(count * dtype.itemsize)
        if len(data) == count * dtype.itemsize:
            return np.frombuffer(data, dtype=dtype).copy()
    msg = f"{name}: not a readable .npz file (truncated or corrupt?): {key!r} ends early"
    raise ValueError(msg)


def _read_into(f: IO[bytes], array: np.ndarray[Any, Any]) -> bool:
    """Fill `array` from `f`, at most a chunk of other memory at a time; False if `f` ends first."""
    view = memoryview(array.reshape(-1).view(np.uint8).data)
    position = 0
    while position < len(view):
        data = f.read(min(_CHUNK, len(view) - position))
        if not data:
            return False
        view[position : position + len(data)] = data
        position += len(data)
    return True


def _native(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """`array` in the machine's byte order, swapped in place."""
    if array.dtype.isnative:
        return array
    return array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))


def _npy_header(member: IO[bytes], name: str, key: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Shape, Fortran order, dtype and data offset from a .npy header (bounded by numpy)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(member)
        else:
            msg = f"unsupported .npy format version {version}"
            raise ValueError(msg)
    except ValueError as exc:
        msg = f"{name}: {key!r} has no valid .npy header: {exc}"
        raise ValueError(msg) from exc
    return tuple(int(n) for n in shape), bool(fortran), dtype, member.tell()


def _npz_dtype_name(name: str, key: str, dtype: np.dtype[Any]) -> str:
    native = dtype.newbyteorder("=")
    for candidate in HOST_DTYPES:
        if native == np.dtype(candidate):
            return candidate
    raise _unsupported_dtype(name, key, dtype)


# -- .safetensors ----------------------------------------------------------------------


def _read_safetensors(f: IO[bytes], name: str) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(8)
    if len(prefix) < 8:
        msg = f"{name}: not a readable .safetensors file (truncated or corrupt?): {size} bytes, no header length"
        raise ValueError(msg)
    (length,) = struct.unpack("<Q", prefix)
    if length > min(_MAX_SAFETENSORS_HEADER, size - 8):
        msg = (
            f"{name}: not a readable .safetensors file (truncated or corrupt?): header of {length} bytes "
            f"in a file of {size} bytes (at most {_MAX_SAFETENSORS_HEADER} bytes are read)"
        )
        raise ValueError(msg)
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = f"{name}: not a readable .safetensors file (truncated or corrupt?): header is not JSON: {exc}"
        raise ValueError(msg) from exc
    if not isinstance(header, dict):
        msg = f"{name}: not a readable .safetensors file: header is not a JSON object"
        raise ValueError(msg)
    entries = {key: value for key, value in header.items() if key != "__metadata__"}
    _check_keys(name, list(entries))
    declared, spans = {}, {}
    for key, entry in entries.items():
        declared[key], spans[key] = _safetensors_entry(name, key, entry)
    _check_spans(name, declared, spans, size - 8 - length)
    check_layout(declared, f"{name}: ")
    state = {}
    for key, (begin, end) in spans.items():
        f.seek(8 + length + begin)
        kind = "<u2" if declared[key].dtype == "bfloat16" else np.dtype(declared[key].dtype).newbyteorder("<")
        flat = np.empty((end - begin) // np.dtype(kind).itemsize, dtype=kind)
        if not _read_into(f, flat):
            msg = f"{name}: not a readable .safetensors file (truncated or corrupt?): {key!r} ends early"
            raise ValueError(msg)
        state[key] = _from_little_endian(flat, declared[key])
    return state, declared["weight"].dtype


def _safetensors_entry(name: str, key: str, entry: Any) -> tuple[_Declared, tuple[int, int]]:
    def is_count(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n >= 0

    valid = (
        isinstance(entry, dict)
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("shape"), list)
        and all(is_count(n) for n in entry["shape"])
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and all(is_count(n) for n in entry["data_offsets"])
        and entry["data_offsets"][0] <= entry["data_offsets"][1]
    )
    if not valid:
        msg = (
            f"{name}: not a readable .safetensors file: {key!r} is not a tensor entry "
            f"(dtype, shape, data_offsets [begin, end]): {str(entry)[:200]}"
        )
        raise ValueError(msg)
    code = entry["dtype"]
    if code not in _SAFETENSORS_DTYPES:
        raise _unsupported_dtype(name, key, code)
    begin, end = entry["data_offsets"]
    return _Declared(tuple(entry["shape"]), _SAFETENSORS_DTYPES[code]), (begin, end)


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _check_spans(name: str, declared: dict[str, _Declared], spans: dict[str, tuple[int, int]], held: int) -> None:
    """Each tensor's bytes match its shape, and together they tile the data exactly."""
    for key, (begin, end) in spans.items():
        nbytes = math.prod(declared[key].shape) * _itemsize(declared[key].dtype)
        if end - begin != nbytes:
            raise _size_mismatch(name, key, declared[key], nbytes, f"its data_offsets span {end - begin}")
        if end > held:
            msg = (
                f"{name}: not a readable .safetensors file (truncated or corrupt?): "
                f"{key!r} ends at byte {end} of the data, which has {held} bytes"
            )
            raise ValueError(msg)
    position = 0
    for begin, end in sorted(spans.values()):
        if begin != position:
            break
        position = end
    else:
        if position == held:
            return
    msg = (
        f"{name}: not a readable .safetensors file: the data offsets {sorted(spans.values())} "
        f"do not tile its {held} bytes of data"
    )
    raise ValueError(msg)


def _from_little_endian(flat: np.ndarray[Any, Any], declared: _Declared) -> np.ndarray[Any, Any]:
    # bfloat16 stays raw bits (uint16), which `load` reinterprets or widens.
    return _native(flat).reshape(declared.shape)
