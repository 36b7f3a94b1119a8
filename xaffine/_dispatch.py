"""Which library computes, and what the math needs to know of it.

The first array's library computes, or that of the caller's ``xp``; NumPy arguments may
ride along a library that takes NumPy operands (Dask, JAX, pydata/sparse), which then
computes. Its row of the backend table brings the fast paths; the dtype brings whether
the arithmetic is complex and where 16-bit sums accumulate. `Prepared` holds it all.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._backends import Backend, backend_of, device_of, generic_row, library_of, library_row, namespace, resolve
from ._typing import Array, Device, Namespace

__all__ = [
    "NO_NUMPY_ARGS",
    "PYTHON_NUMBERS",
    "Prepared",
    "adopt",
    "array_device",
    "computing",
    "describe",
    "facts_of",
    "is_number",
    "layer_library",
    "mixed_libraries",
    "namespace_of",
    "not_an_array",
]

PYTHON_NUMBERS = (int, float, complex)  # exactly: NumPy's scalars are arrays of a dtype
_NUMBERS = (*PYTHON_NUMBERS, np.integer, np.floating, np.complexfloating)
# Tuples, not unions: torch.compile's tracer cannot evaluate ``type | type``.
_BOOLS = (bool, np.bool_)
MATRICES = (np.matrix, np.ma.MaskedArray)
_NUMPY_ARRAYS = (np.ndarray, np.generic)
# The names of NumPy arguments that another library computes with (by name, not id():
# torch.compile would guard its compiled code on the ids).
NO_NUMPY_ARGS: frozenset[str] = frozenset()


class Prepared(NamedTuple):
    """What the math needs to know about checked inputs. Before the shapes and devices are
    checked, what one array's type and dtype tell (`device` None, `out_shape` empty)."""

    row: Backend  # the computing library's row: its fast paths and per-call check
    xp: Namespace
    complex_: bool
    accumulate: Any  # the dtype reductions accumulate in (float32 for 16-bit floats), or None
    single_device: bool  # the library has one device: nothing to compare
    adopt: bool  # NumPy arguments become the library's arrays (`adopt`) before computing
    device: Device = None  # the computing library's arrays' device, or None where nothing is compared
    out_shape: tuple[Any, ...] = ()
    # What the shapes decide, once per signature: the core reads these, not the arrays.
    x_matrix: bool = False  # x is 2-D: its own matrix of rows
    vector: bool = False  # the weight is 1-D: the one-output form
    bias_array: bool = False  # the bias is an array (not None, not a number)
    grad_signature: tuple[Any, ...] | None = None  # a gradient's that needs no more checks, where known


def describe(a: object) -> str:
    """What arrived, for a message: ``NoneType None``, ``float 1.5``, ``numpy.matrix``."""
    kind = type(a)
    if kind.__module__ == "builtins":
        return f"{kind.__name__} {a!r}" if a is None or isinstance(a, _NUMBERS) else kind.__name__
    return f"{kind.__module__}.{kind.__qualname__}"


def is_number(value: object) -> bool:
    """A Python or NumPy number (not a bool), or torch.compile's symbolic one (`symbolic_number`)."""
    return (isinstance(value, _NUMBERS) and not isinstance(value, _BOOLS)) or symbolic_number(value)


def symbolic_number(value: object) -> bool:
    """Whether `value` is a Python number made symbolic by torch.compile (``torch.SymFloat``, ``SymInt``)."""
    kind = type(value)
    return kind.__name__ in ("SymFloat", "SymInt") and kind.__module__ == "torch"


_LARGEST = int(np.finfo(np.float64).max)


def past_float64(value: object) -> bool:
    """Whether `value` is a Python int past float64's range (no dtype xaffine computes in holds it)."""
    return isinstance(value, int) and not isinstance(value, _BOOLS) and abs(value) > _LARGEST


def refuse_past_float64(value: object, name: str) -> None:
    if past_float64(value):
        msg = f"`{name}` is an integer of {value.bit_length()} bits, past float64's range (about 1.8e308)"  # type: ignore[attr-defined]
        raise ValueError(msg)


def not_an_array(name: str, a: object) -> TypeError:
    return TypeError(f"`{name}` must be an array of an Array API library; got {describe(a)}")


def mixed_libraries(arrays: list[tuple[Array, str]], asked: Namespace | None = None) -> TypeError:
    libs = ", ".join(f"`{n}` is a {library_of(a)} array ({describe(a)})" for a, n in arrays)
    if asked is not None:
        libs += f", and `xp` is {library_of(asked)}'s namespace"
    return TypeError(
        f"arrays from more than one library: {libs}; pass arrays of one library (convert with its asarray)"
    )


def _code(name: str) -> str:
    """A name that code can use: `tangents[0] (dx)` is dx."""
    return name.rpartition("(")[2].rstrip(")")


def refuse_matrices(a: Any, name: str) -> None:
    """Refuse `a`, named `name`, if it is (or a Dask array whose chunks are) an ``np.matrix``,
    whose operators differ from an array's, or a masked array, whose mask the layer cannot
    honour (the values under it would be used)."""
    chunks, code = getattr(a, "_meta", None), _code(name)  # `_meta`: a Dask array's chunk type
    dask = isinstance(chunks, np.ndarray)
    if isinstance(chunks if dask else a, np.ma.MaskedArray):
        what = "a Dask array of numpy masked arrays" if dask else "a numpy masked array"
        fill = f"dask.array.ma.filled({code}, value)" if dask else f"{code}.filled(value)"
        msg = (
            f"`{name}` is {what}, whose mask the layer cannot honour (the values under it would "
            f"be used); pass {fill}, with the value its masked elements stand for"
        )
        raise TypeError(msg)
    if isinstance(chunks if dask else a, MATRICES):
        fix = f"{code}.map_blocks(np.asarray)" if dask else f"np.asarray({code})"
        what = "a Dask array of numpy.matrix chunks" if dask else "a numpy.matrix"
        msg = f"`{name}` is {what}, whose operators differ from an array's; pass {fix}"
        raise TypeError(msg)


def facts_of(a: Any, name: str, xp: Namespace | None = None) -> Prepared:
    """What `a`'s type and dtype tell (`xp`, if given, is its namespace), or a TypeError naming `name`."""
    refuse_matrices(a, name)
    code = _code(name)
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise not_an_array(name, a)
    dtype = a.dtype
    if isinstance(a, _NUMPY_ARRAYS) and not dtype.isnative:
        msg = f"`{name}` has non-native byte order ({dtype}); convert it: {code}.astype({code}.dtype.newbyteorder('='))"
        raise TypeError(msg)
    row = backend_of(a)
    if xp is None:
        try:
            xp = namespace(row.module) if row is not None else a.__array_namespace__()
        except AttributeError:  # absent on some libraries' arrays
            raise not_an_array(name, a) from None
    row = row if row is not None else generic_row(xp)
    try:
        complex_ = bool(xp.isdtype(dtype, "complex floating"))
        real = bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError, AttributeError):
        complex_ = real = False
    if not (complex_ or real):
        msg = f"`{name}` must have a real or complex floating-point dtype; got {dtype}"
        raise TypeError(msg)
    if row.no_float16 and real and str(dtype) == "float16":
        msg = (
            f"`{name}` is a float16 array, and {row.no_float16}: compute in float32 "
            "(convert it and the other arrays with .astype(numpy.float32))"
        )
        raise TypeError(msg)
    itemsize = getattr(a, "itemsize", None)
    itemsize = itemsize if isinstance(itemsize, int) else int(getattr(dtype, "itemsize", 8))
    accumulate = xp.float32 if real and itemsize <= 2 else None
    adopts = row.takes_numpy and row.adopts_numpy and row.library != "numpy"
    return Prepared(row, xp, complex_, accumulate, _single_device(row, xp), adopts)


def _single_device(row: Backend, xp: Namespace) -> bool:
    if row.single_device is not None:
        return row.single_device
    try:
        return len(xp.__array_namespace_info__().devices()) == 1
    except Exception:  # a namespace without the inspection API: compare devices
        return False


def computing(arrays: list[tuple[Array, str]], asked: Namespace | None) -> tuple[Prepared, frozenset[str], Array]:
    """The facts of the library that computes, the names of the NumPy arguments it takes
    beside its own arrays, and its first array.

    The library of the first array rules, or that of `asked` (the caller's `xp`). NumPy
    arrays may come with arrays of a library that takes NumPy operands (Dask, JAX,
    pydata/sparse): that library rules then, whichever argument its arrays are.
    """
    for a, n in arrays:
        if not hasattr(a, "dtype") or not hasattr(a, "shape"):
            raise not_an_array(n, a)
    first, first_name = arrays[0]
    libraries = {library_of(a) for a, _ in arrays} | {library_of(first if asked is None else asked)}
    numpy_args = NO_NUMPY_ARGS
    if len(libraries) > 1:
        others = libraries - {"numpy"}
        row = library_row(next(iter(others))) if len(others) == 1 else None
        hosts = [(a, n) for a, n in arrays if library_of(a) != "numpy"]
        if row is None or not row.takes_numpy or len(libraries) != 2 or not hosts:
            raise mixed_libraries(arrays, asked)
        numpy_args = frozenset(n for a, n in arrays if library_of(a) == "numpy")
        first, first_name = hosts[0]
        asked = asked if asked is not None and library_of(asked) == row.library else None
    return facts_of(first, first_name, asked), numpy_args, first


def layer_library(x: Array, weight: Array, bias: Any, xp: Any) -> tuple[Prepared, frozenset[str], Array]:
    """`computing` for the layer's inputs (the caller's `xp` resolved), with a quick way
    for the common case: arrays of one type and no `xp`."""
    asked = None if xp is None else resolve(xp)[1]
    if asked is None and type(weight) is type(x) and (bias is None or type(bias) is type(x)):
        return facts_of(x, "x"), NO_NUMPY_ARGS, x
    for a, n in ((x, "x"), (weight, "weight")):
        if a is None or is_number(a):
            raise not_an_array(n, a)
    arrays: list[tuple[Any, str]] = [(x, "x"), (weight, "weight")]
    if bias is not None and not is_number(bias):
        if not hasattr(bias, "shape"):
            msg = f"`bias` must be an array or a Python int, float or complex; got {describe(bias)}"
            raise TypeError(msg)
        arrays.append((bias, "bias"))
    found = computing(arrays, asked)
    if "x" in found[1]:  # x is NumPy beside a Dask or JAX weight: NumPy's rules for x's dtype
        facts_of(x, "x")
    return found


def namespace_of(arrays: list[tuple[Array, str]]) -> Namespace:
    """The namespace xaffine computes `arrays` (pairs of an array and its name) with."""
    return computing(arrays, None)[0].xp


def array_device(a: Array) -> Device:
    try:
        return getattr(a, "device")  # noqa: B009 (absent on some libraries' arrays: the row's device_of)
    except AttributeError:
        return device_of(a)


def adopt(p: Prepared, *arrays: Any) -> tuple[Any, ...]:
    """`arrays`, each NumPy one as an array of `p`'s library on the device of its other arrays.

    For a library that takes NumPy operands and adopts them (the row's ``adopts_numpy``):
    then every result is that library's, on its device, whichever arguments were NumPy.
    """
    host = next((a for a in arrays if hasattr(a, "shape") and not isinstance(a, _NUMPY_ARRAYS)), None)
    if host is None:
        return arrays
    device = array_device(host)
    return tuple(p.xp.asarray(a, device=device) if isinstance(a, np.ndarray) else a for a in arrays)
