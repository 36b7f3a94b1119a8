"""Input checks at the public boundary: namespaces, shapes, dtypes and devices.

Only metadata is inspected, never values: a value check would force a compute on
Dask and fail under ``jax.jit``. Every message names the parameter, what arrived
and what was expected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from numbers import Number
from typing import Any

import array_api_compat

from ._typing import Array, Device, Namespace

__all__ = [
    "GRAD_NAMES",
    "check_grad",
    "check_inputs",
    "check_tangents",
    "check_wrt",
    "library_name",
    "namespace_of",
    "output_shape",
]

GRAD_NAMES = ("x", "weight", "bias")
_ALL_GRADS = frozenset(GRAD_NAMES)


def is_number(value: object) -> bool:
    """Whether `value` is a Python (or NumPy) scalar number, bools excluded."""
    return isinstance(value, Number) and not isinstance(value, bool)


_KINDS: dict[tuple[int, Any], str | None] = {}


def float_kind(dtype: Any, xp: Namespace) -> str | None:
    """``"real"`` or ``"complex"`` for floating dtypes, else ``None``; memoised per dtype."""
    key = (id(xp), dtype)
    try:
        return _KINDS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable dtype, not memoised
        pass
    kind = (
        "complex" if xp.isdtype(dtype, "complex floating") else "real" if xp.isdtype(dtype, "real floating") else None
    )
    with contextlib.suppress(TypeError):
        _KINDS[key] = kind
    return kind


# The namespace depends only on the array type; array_namespace is called once per type.
_NAMESPACES: dict[type, Namespace] = {}
_SINGLE_DEVICE: dict[int, bool] = {}


def single_device(xp: Namespace) -> bool:
    """Whether `xp` has one device only (NumPy), so that device checks can be skipped."""
    try:
        return _SINGLE_DEVICE[id(xp)]
    except KeyError:
        pass
    if array_api_compat.is_torch_namespace(xp):
        # Always several (cpu, meta, ...); and listing them allocates on each.
        single = False
    else:
        try:
            single = len(xp.__array_namespace_info__().devices()) == 1
        except Exception:  # a namespace without the inspection API: check devices
            single = False
    _SINGLE_DEVICE[id(xp)] = single
    return single


def library_name(a: object) -> str:
    """The name of the library an array comes from, for messages."""
    top = type(a).__module__.partition(".")[0]
    return {"jaxlib": "jax", "builtins": type(a).__name__}.get(top, top)


def namespace_of(*arrays: Array, names: tuple[str, ...], xp: Namespace | None) -> Namespace:
    """The one namespace of `arrays` (``None`` and Python numbers ignored).

    Dask arrays may come with NumPy arrays (in-memory parameters): the namespace is
    then Dask's.

    Raises
    ------
    TypeError
        If the arrays come from more than one library, naming each.
    """
    if xp is not None:
        return xp
    kind = type(arrays[0])
    if all(a is None or type(a) is kind or is_number(a) for a in arrays[1:]):
        try:
            return _NAMESPACES[kind]
        except KeyError:
            pass
    present = [(a, n) for a, n in zip(arrays, names, strict=True) if a is not None and not is_number(a)]
    for a, n in present:
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            msg = f"`{n}` must be an array of an Array API library; got {type(a).__name__}"
            raise TypeError(msg)
    try:
        xp = array_api_compat.array_namespace(*(a for a, _ in present))
    except TypeError:
        pass
    else:
        if len({type(a) for a, _ in present}) == 1:
            _NAMESPACES[type(present[0][0])] = xp
        return xp
    if {library_name(a) for a, _ in present} == {"dask", "numpy"}:
        # Dask takes in-memory NumPy operands (small weights next to a chunked batch).
        return array_api_compat.array_namespace(*(a for a, _ in present if library_name(a) == "dask"))
    libs = ", ".join(f"`{n}` is a {library_name(a)} array" for a, n in present)
    msg = f"arrays from more than one library: {libs}; pass arrays of one library (convert with its asarray)"
    raise TypeError(msg)


def _shape(a: Array) -> tuple[Any, ...]:
    return tuple(a.shape)


def _dims_differ(a: object, b: object) -> bool:
    # Unknown sizes (None in the standard, nan in Dask) cannot be compared here.
    return isinstance(a, int) and isinstance(b, int) and a != b


def _shapes_differ(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a != b and (len(a) != len(b) or any(_dims_differ(p, q) for p, q in zip(a, b, strict=True)))


def _check_floating(a: Array, name: str, xp: Namespace) -> None:
    if float_kind(a.dtype, xp) is None:
        msg = f"`{name}` must have a real or complex floating-point dtype; got {a.dtype}"
        raise TypeError(msg)


def _check_same_dtype(a: Array, b: Array, name_a: str, name_b: str, xp: Namespace) -> None:
    if a.dtype != b.dtype:
        _check_floating(b, name_b, xp)
        msg = (
            f"`{name_a}` and `{name_b}` must share one dtype; got {a.dtype} and {b.dtype} "
            "(cast one explicitly: xaffine never upcasts silently)"
        )
        raise TypeError(msg)


def _check_same_device(da: Device, b: Array, name_a: str, name_b: str) -> None:
    if da is _ONE_DEVICE:
        return
    db = array_api_compat.device(b)
    # Traced arrays under jax.jit report no device.
    if da is not None and db is not None and da != db:
        msg = f"`{name_a}` is on device {da} but `{name_b}` is on device {db}; move them to one device"
        raise ValueError(msg)


_ONE_DEVICE = object()


def device_of(a: Array, xp: Namespace) -> Device:
    """`a`'s device, or a marker meaning "the namespace has one device, nothing to compare"."""
    return _ONE_DEVICE if single_device(xp) else array_api_compat.device(a)


def _check_like(a: Array, ref: Array, name: str, ref_name: str, xp: Namespace, ref_device: Device) -> None:
    _check_same_dtype(ref, a, ref_name, name, xp)
    _check_same_device(ref_device, a, ref_name, name)


def check_inputs(x: Array, weight: Array, bias: Array | complex | None, *, xp: Namespace) -> bool:
    """Check the layer's inputs against each other; see ``affine`` for the rules.

    Returns whether the dtype is complex.

    Raises
    ------
    ValueError
        For a wrong number of axes, mismatched sizes, or arrays on two devices.
    TypeError
        For non-floating dtypes, mixed dtypes, or a bias of the wrong kind.
    """
    x_shape, w_shape = _shape(x), _shape(weight)
    if len(x_shape) == 0:
        msg = "`x` must have at least one axis, shape (..., in_features); got a 0-d array"
        raise ValueError(msg)
    if len(w_shape) not in (1, 2):
        msg = (
            "`weight` must be 2-D, shape (out_features, in_features), or 1-D, shape (in_features,); "
            f"got shape {w_shape}"
        )
        raise ValueError(msg)
    kind = float_kind(x.dtype, xp)
    if kind is None:
        _check_floating(x, "x", xp)
    complex_ = kind == "complex"
    x_device = device_of(x, xp)
    _check_like(weight, x, "weight", "x", xp, x_device)
    if _dims_differ(x_shape[-1], w_shape[-1]):
        layout = (
            f"(out_features={w_shape[0]}, in_features={w_shape[1]})"
            if len(w_shape) == 2
            else f"(in_features={w_shape[0]},)"
        )
        msg = f"`x` has {x_shape[-1]} features (shape {x_shape}) but `weight` expects {w_shape[-1]}: shape {layout}"
        raise ValueError(msg)
    if bias is None:
        return complex_
    if not hasattr(bias, "shape") and is_number(bias):
        if isinstance(bias, complex) and not complex_:
            msg = f"`bias` is the complex number {bias!r} but `x` is real ({x.dtype})"
            raise TypeError(msg)
        if len(w_shape) == 2:
            msg = (
                f"`bias` must be an array of shape (out_features,) = ({w_shape[0]},) for a 2-D "
                f"`weight`; got the number {bias!r}"
            )
            raise ValueError(msg)
        return complex_
    expected = w_shape[:1] if len(w_shape) == 2 else ()
    if _shapes_differ(_shape(bias), expected):
        what = f"shape (out_features,) = {expected}" if expected else "a scalar (a Python number or a 0-d array)"
        msg = f"`bias` must be {what} to match `weight` of shape {w_shape}; got shape {_shape(bias)}"
        raise ValueError(msg)
    _check_like(bias, x, "bias", "x", xp, x_device)
    return complex_


def output_shape(x: Array, weight: Array) -> tuple[Any, ...]:
    """The shape of ``affine(x, weight)``."""
    return _shape(x)[:-1] + _shape(weight)[:-1]


def check_grad(
    grad: Array, x: Array, weight: Array, *, xp: Namespace, x_device: Device = None, expected: Any = None
) -> None:
    """Check the incoming gradient against the layer's output.

    `x_device` (x's device) and `expected` (the output's shape) save work when known.

    Raises
    ------
    ValueError
        If `grad` does not have the output's shape, or is on another device.
    TypeError
        If `grad` comes from another library or has another dtype.
    """
    if type(grad) is not type(x):
        namespace_of(grad, x, names=("grad", "x"), xp=None)
    if expected is None:
        expected = output_shape(x, weight)
    if not hasattr(grad, "shape") or _shapes_differ(_shape(grad), expected):
        got = _shape(grad) if hasattr(grad, "shape") else type(grad).__name__
        msg = f"`grad` must have the output's shape {expected}; got {got}"
        raise ValueError(msg)
    _check_like(grad, x, "grad", "x", xp, device_of(x, xp) if x_device is None else x_device)


def check_tangents(
    tangents: tuple[Array | complex | None, ...],
    primals: tuple[Array | complex | None, ...],
    *,
    xp: Namespace,
) -> None:
    """Check that each tangent matches its primal's shape, dtype and device.

    Raises
    ------
    ValueError
        For a wrong count or shape, or a tangent for an absent bias.
    TypeError
        For a wrong dtype or library.
    """
    if len(tangents) != len(GRAD_NAMES):
        msg = f"`tangents` must be a triple (dx, dweight, dbias); got {len(tangents)} items"
        raise ValueError(msg)
    x = primals[0]
    x_device = device_of(x, xp)
    for name, tangent, primal in zip(GRAD_NAMES, tangents, primals, strict=True):
        label = f"tangents[{GRAD_NAMES.index(name)}] (d{name})"
        if tangent is None:
            continue
        if primal is None:
            msg = f"`{label}` was given but `{name}` is None"
            raise ValueError(msg)
        if is_number(tangent):
            if is_number(primal):
                continue
            msg = f"`{label}` is a number but `{name}` is an array of shape {_shape(primal)}"
            raise TypeError(msg)
        if type(tangent) is not type(x):
            namespace_of(tangent, x, names=(label, "x"), xp=None)
        expected = () if is_number(primal) else _shape(primal)
        if _shapes_differ(_shape(tangent), expected):
            msg = f"`{label}` must have the shape of `{name}`, {expected}; got {_shape(tangent)}"
            raise ValueError(msg)
        _check_like(tangent, x, label, "x", xp, x_device)


def check_wrt(wrt: Iterable[str] | str) -> frozenset[str]:
    """The set of gradient names asked for.

    Raises
    ------
    ValueError
        For a name other than ``"x"``, ``"weight"`` or ``"bias"``.
    """
    if wrt is GRAD_NAMES:
        return _ALL_GRADS
    names = frozenset((wrt,) if isinstance(wrt, str) else wrt)
    unknown = names - _ALL_GRADS
    if unknown:
        allowed = ", ".join(repr(n) for n in GRAD_NAMES)
        msg = f"unknown name {sorted(unknown)[0]!r} in `wrt`; allowed: {allowed}"
        raise ValueError(msg)
    return names
