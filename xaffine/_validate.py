"""Input validation at the public boundary: libraries, shapes, dtypes and devices.

Only metadata is inspected, never values: a value check would force a compute on
Dask and fail under ``jax.jit``. Every message names the parameter, what arrived
and what was expected. What depends only on an array's type and dtype (its
namespace, whether it is complex, whether its library has one device) is worked
out once and memoised.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from ._backends import Backend, backend_of, device_of, library_of, library_row, namespace, resolve, tracing
from ._typing import Array, Device, Namespace

__all__ = [
    "GRAD_NAMES",
    "Prepared",
    "adopt",
    "check_grad",
    "check_tangents",
    "check_wrt",
    "describe",
    "is_number",
    "prepare",
]

GRAD_NAMES = ("x", "weight", "bias")
_ALL_GRADS = frozenset(GRAD_NAMES)
_NUMBERS = (int, float, complex, np.integer, np.floating, np.complexfloating)
# Tuples, not unions: torch.compile's tracer cannot evaluate ``type | type``.
_BOOLS = (bool, np.bool_)
_COMPLEX_NUMBERS = (complex, np.complexfloating)
_MATRICES = (np.matrix, np.ma.MaskedArray)
_NUMPY_ARRAYS = (np.ndarray, np.generic)
_TEXT = (str, bytes)
# Names of NumPy arrays riding along another library's (by name, not id(): torch.compile
# would guard its compiled code on the ids).
_NO_GUESTS: frozenset[str] = frozenset()


class _Kind(NamedTuple):
    """What an array's (type, dtype) tells: memoised."""

    xp: Namespace
    complex_: bool
    single_device: bool
    accumulate: Any  # the dtype reductions accumulate in (float32 for 16-bit floats), or None
    matmul: Callable[[Array, Array], Array]  # the backend row's fast paths, or the defaults
    matmul_add: Callable[[Array, Array, Any], Array] | None
    row_sum: Callable[[Array, Any], Array] | None
    in_place: Callable[[Array, Any], bool] | None
    adopt: bool  # NumPy arrays beside this library's become its arrays (the row's `adopts_numpy`)
    add: Callable[[Array, Any], Array] | None
    check: Callable[[Array, str], None] | None  # the row's check of each array on every call


class Prepared(NamedTuple):
    """What the math needs to know about checked inputs."""

    xp: Namespace
    complex_: bool
    device: Device  # the computing library's arrays' device, or None where there is nothing to compare
    accumulate: Any
    out_shape: tuple[Any, ...]
    matmul: Callable[[Array, Array], Array]
    matmul_add: Callable[[Array, Array, Any], Array] | None
    row_sum: Callable[[Array, Any], Array] | None
    in_place: Callable[[Array, Any], bool] | None
    adopt: bool  # the library adopts NumPy arguments: convert them with `adopt` before computing
    add: Callable[[Array, Any], Array] | None
    check: Callable[[Array, str], None] | None


_KINDS: dict[tuple[type, Any], _Kind | str] = {}

# Inputs that passed `prepare`, by signature: what every check's outcome depends on
# (each array's type, dtype and shape; a number's type; `xp`), except devices, which
# are compared on every call. The value says which of (weight, bias) to compare.
_SIGNATURES: dict[tuple[Any, ...], tuple[Prepared, bool, bool]] = {}
_MAX_SIGNATURES = 256


def describe(a: object) -> str:
    """What arrived, for a message: ``NoneType None``, ``float 1.5``, ``numpy.matrix``."""
    kind = type(a)
    if kind.__module__ == "builtins":
        return f"{kind.__name__} {a!r}" if a is None or isinstance(a, _NUMBERS) else kind.__name__
    return f"{kind.__module__}.{kind.__qualname__}"


def _not_an_array(name: str, a: object) -> TypeError:
    return TypeError(f"`{name}` must be an array of an Array API library; got {describe(a)}")


def _kind_of(a: Array, name: str, xp: Namespace | None) -> _Kind:
    """The memoised facts about `a`'s type and dtype; `xp`, if given, is its namespace."""
    try:
        key = (type(a), a.dtype)
    except AttributeError:
        raise _not_an_array(name, a) from None
    found: _Kind | str | None = None
    if tracing():  # torch.compile would guard the compiled code on the memo's contents
        key = None  # type: ignore[assignment]
    else:
        try:
            found = _KINDS.get(key)
        except TypeError:  # an unhashable dtype: not memoised
            key = None  # type: ignore[assignment]
    if found is None:
        found = _work_out(a, xp)
        if key is not None:
            _KINDS[key] = found
    if isinstance(found, str):
        raise TypeError(found.format(name=name, dtype=a.dtype))
    return found


def _work_out(a: Array, xp: Namespace | None) -> _Kind | str:
    """The facts about `a`'s type and dtype, or the message of why such arrays are refused."""
    if isinstance(a, _MATRICES):
        return (
            f"`{{name}}` is a {type(a).__module__}.{type(a).__name__}, whose operators differ from an array's; "
            "pass np.asarray(...) of it"
        )
    if not hasattr(a, "shape"):
        return "`{name}` must be an array of an Array API library; got " + describe(a)
    if isinstance(a, _NUMPY_ARRAYS) and not a.dtype.isnative:
        return "`{name}` has non-native byte order ({dtype}); convert it: {name}.astype({name}.dtype.newbyteorder('='))"
    row = backend_of(a)
    if xp is None:
        if row is not None:
            xp = namespace(row.module)
        else:
            try:
                xp = getattr(a, "__array_namespace__")()  # noqa: B009 (absent on some libraries' arrays)
            except AttributeError:
                return "`{name}` must be an array of an Array API library; got " + describe(a)
    dtype = a.dtype
    try:
        complex_ = bool(xp.isdtype(dtype, "complex floating"))
        real = bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError, AttributeError):
        complex_ = real = False
    if not (complex_ or real):
        return "`{name}` must have a real or complex floating-point dtype; got {dtype}"
    accumulate = xp.float32 if real and _itemsize(a) <= 2 else None
    if row is not None and row.no_float16 and real and str(dtype) == "float16":
        return (
            "`{name}` is a float16 array, and " + row.no_float16 + ": compute in float32 "
            "(convert it and the other arrays with .astype(numpy.float32))"
        )
    if row is None:
        return _Kind(
            xp, complex_, _single_device(row, xp), accumulate, operator.matmul, None, None, None, False, None, None
        )
    return _Kind(
        xp,
        complex_,
        _single_device(row, xp),
        accumulate,
        row.matmul,
        row.matmul_add,
        row.row_sum,
        row.in_place,
        row.takes_numpy and row.adopts_numpy and row.library != "numpy",
        row.add,
        row.check,
    )


def _itemsize(a: Array) -> int:
    size = getattr(a, "itemsize", None)
    if isinstance(size, int):
        return size
    return int(getattr(a.dtype, "itemsize", 8))


def _single_device(row: Backend | None, xp: Namespace) -> bool:
    if row is not None and row.single_device is not None:
        return row.single_device
    try:
        return len(xp.__array_namespace_info__().devices()) == 1
    except Exception:  # a namespace without the inspection API: compare devices
        return False


def is_number(value: object) -> bool:
    return isinstance(value, _NUMBERS) and not isinstance(value, _BOOLS)


def _mixed(arrays: list[tuple[Array, str]], given: Namespace | None = None) -> TypeError:
    libs = ", ".join(f"`{n}` is a {library_of(a)} array ({describe(a)})" for a, n in arrays)
    if given is not None:
        libs += f", and `xp` is {library_of(given)}'s namespace"
    return TypeError(
        f"arrays from more than one library: {libs}; pass arrays of one library (convert with its asarray)"
    )


def _namespace(arrays: list[tuple[Array, str]], given: Namespace | None) -> tuple[_Kind, frozenset[str], Array]:
    """The kind of the main array, the names of NumPy arrays riding along another library's,
    and the main array: the first of the library that computes.

    The library of the first array rules, or `given`'s. NumPy arrays may come with arrays
    of a library that takes NumPy operands (Dask, JAX, pydata/sparse): the other library
    rules then, whichever argument its arrays are.
    """
    for a, n in arrays:
        if not hasattr(a, "dtype") or not hasattr(a, "shape"):
            raise _not_an_array(n, a)
    main, main_name = arrays[0]
    library = library_of(main) if given is None else library_of(given)
    libs = {library_of(a) for a, _ in arrays}
    if given is not None:
        libs.add(library)
    guests = _NO_GUESTS
    if len(libs) > 1:
        others = libs - {"numpy"}
        row = library_row(next(iter(others))) if len(others) == 1 else None
        hosts = [(a, n) for a, n in arrays if library_of(a) != "numpy"]
        if row is None or not row.takes_numpy or len(libs) != 2 or not hosts:
            raise _mixed(arrays, given)
        library = row.library
        guests = frozenset(n for a, n in arrays if library_of(a) == "numpy")
        main, main_name = hosts[0]
        given = given if given is not None and library_of(given) == library else None
    return _kind_of(main, main_name, given), guests, main


def namespace_of(arrays: list[tuple[Array, str]]) -> Namespace:
    """The namespace xaffine computes `arrays` (pairs of an array and its name) with."""
    return _namespace(arrays, None)[0].xp


def _given(xp: Any) -> Namespace | None:
    return None if xp is None else resolve(xp)[1]


def prepare(x: Array, weight: Array, bias: Array | complex | None, *, xp: Any = None) -> Prepared:
    """Check the layer's inputs against each other; see ``affine`` for the rules.

    Inputs of a signature seen before (see ``_SIGNATURES``) pass every check that
    depends only on it without redoing it; their devices are compared each time.

    Raises
    ------
    ValueError
        For a wrong number of axes, mismatched sizes, or arrays on two devices.
    TypeError
        For something that is not an array, non-floating or mixed dtypes, arrays of two
        libraries, or a bias of the wrong kind.
    """
    if type(x) is not np.ndarray and tracing():
        return _prepare(x, weight, bias, xp)[0]
    try:
        key: tuple[Any, ...] = (type(x), x.dtype, x.shape, type(weight), weight.dtype, weight.shape, type(bias), xp)
        if bias is not None and type(bias) not in _PLAIN_NUMBERS:
            array: Any = bias
            key = (*key, array.dtype, array.shape)
        known = _SIGNATURES.get(key)
    except (AttributeError, TypeError):  # not arrays, or unhashable: the full checks say what is wrong
        return _prepare(x, weight, bias, xp)[0]
    if known is not None:
        prepared, weight_device, bias_device = known
        if prepared.check is not None:
            _check_each(prepared.check, x, weight, bias)
        if not (weight_device or bias_device):
            return prepared
        device = _device(x)
        if not ((weight_device and _elsewhere(weight, device)) or (bias_device and _elsewhere(bias, device))):
            return prepared if device == prepared.device else prepared._replace(device=device)
        return _prepare(x, weight, bias, xp)[0]  # raises the error about devices
    prepared, weight_device, bias_device = _prepare(x, weight, bias, xp)
    if len(_SIGNATURES) >= _MAX_SIGNATURES:
        _SIGNATURES.clear()
    _SIGNATURES[key] = (prepared, weight_device, bias_device)
    return prepared


_PLAIN_NUMBERS = frozenset((int, float, complex))


def _check_each(check: Callable[[Array, str], None], x: Array, weight: Array, bias: Any) -> None:
    check(x, "x")
    check(weight, "weight")
    if bias is not None and not is_number(bias):
        check(bias, "bias")


def _elsewhere(a: Any, device: Device) -> bool:
    other = _device(a)
    return other is not None and other != device


def _prepare(x: Array, weight: Array, bias: Array | complex | None, xp: Any) -> tuple[Prepared, bool, bool]:
    """``prepare`` in full; also whether weight's and bias's devices need comparing on each call."""
    given = _given(xp)
    host: Any = x
    if given is None and type(weight) is type(x) and (bias is None or type(bias) is type(x)):
        kind, guests = _kind_of(x, "x", None), _NO_GUESTS
    else:
        for a, n in ((x, "x"), (weight, "weight")):
            if a is None or is_number(a):
                raise _not_an_array(n, a)
        arrays: list[tuple[Any, str]] = [(x, "x"), (weight, "weight")]
        if bias is not None and not is_number(bias):
            if not hasattr(bias, "shape"):
                msg = f"`bias` must be an array or a Python int, float or complex; got {describe(bias)}"
                raise TypeError(msg)
            arrays.append((bias, "bias"))
        kind, guests, host = _namespace(arrays, given)
        if "x" in guests:  # x is NumPy beside a Dask or JAX weight: x's kind is NumPy's
            _kind_of(x, "x", None)
    x_shape, w_shape = tuple(x.shape), tuple(weight.shape)
    if kind.check is not None:
        _check_each(kind.check, x, weight, bias)
    if len(x_shape) == 0:
        msg = "`x` must have at least one axis, shape (..., in_features); got a 0-d array"
        raise ValueError(msg)
    if len(w_shape) not in (1, 2):
        msg = (
            "`weight` must be 2-D, shape (out_features, in_features), or 1-D, shape (in_features,); "
            f"got shape {w_shape}"
        )
        raise ValueError(msg)
    if len(x_shape) > 2 and not all(isinstance(d, int) for d in x_shape[:-1]):
        msg = (
            f"`x` has leading axes of unknown size (shape {x_shape}); with more than one leading axis "
            "their sizes must be known: call x.compute_chunk_sizes() (Dask) or reshape x to 2-D first"
        )
        raise ValueError(msg)
    device = None if kind.single_device else _device(host)
    host_name = "x" if host is x else "weight" if host is weight else "bias"
    _check_like(weight, x, "weight", kind, device, guests, host_name)
    if _dims_differ(x_shape[-1], w_shape[-1]):
        layout = (
            f"(out_features={w_shape[0]}, in_features={w_shape[1]})"
            if len(w_shape) == 2
            else f"(in_features={w_shape[0]},)"
        )
        msg = f"`x` has {x_shape[-1]} features (shape {x_shape}) but `weight` expects {w_shape[-1]}: shape {layout}"
        raise ValueError(msg)
    if bias is not None:
        expected = w_shape[:1] if len(w_shape) == 2 else ()
        if is_number(bias) or not hasattr(bias, "shape"):
            _check_number(bias, "bias", "x", x, kind)
            if expected:
                msg = (
                    f"`bias` must be an array of shape (out_features,) = {expected} for a 2-D "
                    f"`weight`; got the number {bias!r}"
                )
                raise ValueError(msg)
        else:
            if _shapes_differ(tuple(bias.shape), expected):
                what = (
                    f"shape (out_features,) = {expected}" if expected else "a scalar (a Python number or a 0-d array)"
                )
                msg = f"`bias` must be {what} to match `weight` of shape {w_shape}; got shape {tuple(bias.shape)}"
                raise ValueError(msg)
            _check_like(bias, x, "bias", kind, device, guests, host_name)
    prepared = Prepared(
        kind.xp,
        kind.complex_,
        device,
        kind.accumulate,
        x_shape[:-1] + w_shape[:-1],
        kind.matmul,
        kind.matmul_add,
        kind.row_sum,
        kind.in_place,
        kind.adopt,
        kind.add,
        kind.check,
    )
    bias_array = bias is not None and not is_number(bias) and hasattr(bias, "shape")
    compare = device is not None
    # The cached signature compares weight's and bias's devices with x's on each call.
    compare_x = compare and "x" not in guests
    return (
        prepared,
        compare_x and "weight" not in guests,
        compare_x and bias_array and "bias" not in guests,
    )


def _device(a: Array) -> Device:
    # The table's device_of for libraries whose arrays lack the standard attribute.
    try:
        return getattr(a, "device")  # noqa: B009 (absent on some libraries' arrays)
    except AttributeError:
        return device_of(a)


def _check_number(value: object, name: str, ref_name: str, ref: Array, kind: _Kind) -> None:
    if not is_number(value):
        msg = f"`{name}` must be an array or a Python int, float or complex; got {describe(value)}"
        raise TypeError(msg)
    if isinstance(value, _COMPLEX_NUMBERS) and not kind.complex_:
        msg = f"`{name}` is the complex number {value!r} but `{ref_name}` is real ({ref.dtype})"
        raise TypeError(msg)


def _check_like(
    a: Any, ref: Array, name: str, kind: _Kind, device: Device, guests: frozenset[str], host_name: str = "x"
) -> None:
    """`a` has `ref`'s (x's) dtype, `kind`'s library (or is a NumPy guest) and `device`."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise _not_an_array(name, a)
    if type(a) is not type(ref) and name not in guests and library_of(a) != library_of(kind.xp):
        raise _mixed([(a, name), (ref, "x")])
    if a.dtype != ref.dtype:
        if name in guests or type(a) is not type(ref):
            _kind_of(a, name, None)  # refuses a non-array, non-floating or non-native dtype by name
        else:
            _kind_of(a, name, kind.xp)
        msg = (
            f"`x` and `{name}` must share one dtype; got {ref.dtype} and {a.dtype} "
            "(cast one explicitly: xaffine never upcasts silently)"
        )
        raise TypeError(msg)
    if isinstance(a, _MATRICES):
        _kind_of(a, name, None)
    if name not in guests:
        _check_device(a, name, device, host_name)


def _check_device(a: Array, name: str, device: Device, host_name: str) -> None:
    """`a` is on `device`, that of the computing library's array `host_name`."""
    if device is None:
        return
    other = _device(a)
    # Traced arrays under jax.jit report no device.
    if other is not None and other != device:
        msg = f"`{host_name}` is on device {device} but `{name}` is on device {other}; move them to one device"
        raise ValueError(msg)


def _dims_differ(a: object, b: object) -> bool:
    # Unknown sizes (None in the standard, nan in Dask) cannot be compared here.
    return isinstance(a, int) and isinstance(b, int) and a != b


def _shapes_differ(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a != b and (len(a) != len(b) or any(_dims_differ(p, q) for p, q in zip(a, b, strict=True)))


def check_grad(grad: Array, x: Array, prepared: Prepared, name: str = "grad") -> Prepared:
    """Check the incoming gradient against the layer's output; what the math needs to know now.

    A `grad` of a library that takes NumPy operands (Dask, JAX, pydata/sparse) beside
    NumPy primals makes that library compute, as it would had it been `x`.

    Raises
    ------
    ValueError
        If `grad` does not have the output's shape, or is on another device.
    TypeError
        If `grad` is not an array, comes from another library or has another dtype.
    """
    if prepared.check is not None:
        prepared.check(grad, name)
    try:
        if (
            type(grad) is type(x)
            and grad.shape == prepared.out_shape
            and grad.dtype == x.dtype
            and (prepared.device is None or not _elsewhere(grad, prepared.device))
        ):
            return prepared  # x's type passed `prepare`: the full checks below would find nothing
    except (AttributeError, TypeError, ValueError):
        pass
    if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
        raise _not_an_array(name, grad)
    if _shapes_differ(tuple(grad.shape), prepared.out_shape):
        msg = f"`{name}` must have the output's shape {prepared.out_shape}; got {tuple(grad.shape)}"
        raise ValueError(msg)
    return _join(grad, name, x, prepared)


def _join(a: Any, name: str, x: Array, prepared: Prepared) -> Prepared:
    """Check `a` (a gradient or a tangent) against the computing library, dtype and device.

    A NumPy `a` beside a library that takes NumPy operands is a guest; an `a` of such a
    library beside NumPy primals takes over the computation, on its device.
    """
    kind = _kind_from(prepared)
    library, other = library_of(prepared.xp), library_of(a)
    row = library_row(other if library == "numpy" else library)
    mixable = row is not None and row.takes_numpy and other != library and "numpy" in (library, other)
    if mixable and library == "numpy":
        new = _kind_of(a, name, None)
        if new.check is not None:
            new.check(a, name)
        _check_like(a, x, name, new, None, frozenset((name,)))  # the dtype
        device = None if new.single_device else _device(a)
        return Prepared(
            new.xp,
            new.complex_,
            device,
            new.accumulate,
            prepared.out_shape,
            new.matmul,
            new.matmul_add,
            new.row_sum,
            new.in_place,
            new.adopt,
            new.add,
            new.check,
        )
    if kind.check is not None and hasattr(a, "shape"):
        kind.check(a, name)
    guests = frozenset((name,)) if mixable else _NO_GUESTS
    host_name = "x" if library_of(x) == library else "weight"
    _check_like(a, x, name, kind, prepared.device, guests, host_name)
    return prepared


def _kind_from(p: Prepared) -> _Kind:
    return _Kind(
        p.xp,
        p.complex_,
        p.device is None,
        p.accumulate,
        p.matmul,
        p.matmul_add,
        p.row_sum,
        p.in_place,
        p.adopt,
        p.add,
        p.check,
    )


def adopt(p: Prepared, *arrays: Any) -> tuple[Any, ...]:
    """`arrays`, each NumPy one as an array of `p`'s library on the device of its other arrays.

    For a library that takes NumPy operands and adopts them (the row's ``adopts_numpy``):
    then every result is that library's, on its device, whichever arguments were NumPy.
    """
    host = next((a for a in arrays if hasattr(a, "shape") and not isinstance(a, _NUMPY_ARRAYS)), None)
    if host is None:
        return arrays
    device = _device(host)
    return tuple(p.xp.asarray(a, device=device) if isinstance(a, np.ndarray) else a for a in arrays)


def check_tangents(
    tangents: object, x: Array, weight: Array, bias: object, prepared: Prepared
) -> tuple[tuple[Any, ...], Prepared]:
    """The tangents as a triple, each checked against its primal's shape, dtype and device,
    and what the math needs to know now (a tangent may bring the computing library, as
    `check_grad`'s `grad` does).

    Raises
    ------
    ValueError
        For a wrong count or shape, or a tangent for an absent bias.
    TypeError
        For something that is not a sequence of three, or a tangent of the wrong kind.
    """
    if isinstance(tangents, _TEXT) or not isinstance(tangents, Iterable):
        msg = f"`tangents` must be a tuple (dx, dweight, dbias) of arrays or None; got {describe(tangents)}"
        raise TypeError(msg)
    given = tuple(tangents)
    if len(given) != len(GRAD_NAMES):
        msg = f"`tangents` must be a triple (dx, dweight, dbias); got {len(given)} items"
        raise ValueError(msg)
    primals: tuple[Any, ...] = (x, weight, bias)
    for index, (name, tangent, primal) in enumerate(zip(GRAD_NAMES, given, primals, strict=True)):
        label = f"tangents[{index}] (d{name})"
        if tangent is None:
            continue
        if primal is None:
            msg = f"`{label}` was given but `{name}` is None"
            raise ValueError(msg)
        if is_number(primal) or not hasattr(tangent, "shape"):
            if not is_number(primal):
                shape = tuple(primal.shape)
                msg = f"`{label}` must be an array of the shape of `{name}`, {shape}; got {describe(tangent)}"
                raise TypeError(msg)
            if hasattr(tangent, "shape"):
                expected: tuple[Any, ...] = ()
            else:
                _check_number(tangent, label, "x", x, _kind_from(prepared))
                continue
        else:
            expected = tuple(primal.shape)
        if _shapes_differ(tuple(tangent.shape), expected):
            msg = f"`{label}` must have the shape of `{name}`, {expected}; got {tuple(tangent.shape)}"
            raise ValueError(msg)
        prepared = _join(tangent, label, x, prepared)
    return given, prepared


def check_wrt(wrt: object) -> frozenset[str]:
    """The set of gradient names asked for.

    Raises
    ------
    TypeError
        For something other than a name or an iterable of names.
    ValueError
        For a name other than ``"x"``, ``"weight"`` or ``"bias"``.
    """
    if wrt is GRAD_NAMES:
        return _ALL_GRADS
    if type(wrt) is frozenset and wrt <= _ALL_GRADS:
        return wrt
    if isinstance(wrt, str):
        names = frozenset((wrt,))
    elif isinstance(wrt, Iterable) and not isinstance(wrt, bytes):
        items = tuple(wrt)
        bad = [w for w in items if not isinstance(w, str)]
        if bad:
            msg = f"`wrt` must hold names ('x', 'weight', 'bias'); got {describe(bad[0])} in it"
            raise TypeError(msg)
        names = frozenset(items)
    else:
        msg = f"`wrt` must be a name or an iterable of names ('x', 'weight', 'bias'); got {describe(wrt)}"
        raise TypeError(msg)
    unknown = names - _ALL_GRADS
    if unknown:
        allowed = ", ".join(repr(n) for n in GRAD_NAMES)
        msg = f"unknown name {sorted(unknown)[0]!r} in `wrt`; allowed: {allowed}"
        raise ValueError(msg)
    return names
