"""Input validation at the public boundary: libraries, shapes, dtypes and devices.

Only metadata is inspected, never values (a value check would force a compute on Dask and
fail under ``jax.jit``); every message names the parameter, what arrived and what was
expected. Inputs of a signature seen before skip the checks it decides (``_SIGNATURES``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _compile
from ._backends import library_of, library_row
from ._dispatch import (
    NO_NUMPY_ARGS,
    PYTHON_NUMBERS,
    Prepared,
    array_device,
    describe,
    facts_of,
    is_number,
    layer_library,
    mixed_libraries,
    not_an_array,
    past_float64,
    refuse_matrices,
    refuse_past_float64,
    symbolic_number,
)
from ._typing import Array, Device

__all__ = ["GRAD_NAMES", "check_grad", "check_tangents", "check_wrt", "prepare"]

GRAD_NAMES = ("x", "weight", "bias")
_ALL_GRADS = frozenset(GRAD_NAMES)
# Tuples, not unions: torch.compile's tracer cannot evaluate ``type | type``.
_COMPLEX_NUMBERS = (complex, np.complexfloating)

# Inputs that passed `prepare`, by `_signature`s and `xp`: what decides every check but the
# devices'. The value says whether weight's and bias's devices are compared on each call.
_SIGNATURES: dict[tuple[Any, ...], tuple[Prepared, bool, bool]] = {}
_MAX_SIGNATURES = 256


def prepare(x: Any, weight: Any, bias: Any, *, xp: Any = None) -> Prepared:
    """Check the layer's inputs against each other (the rules and errors are ``affine``'s)."""
    kind = type(x)
    if kind is not np.ndarray and _compile.compiling():  # torch.compile would guard its code on the memo
        return _prepare(x, weight, bias, xp)[0]
    try:
        if _SIGNERS.get(kind) is _with_device and type(weight) is kind and (bias is None or type(bias) is kind):
            # Tensors of one type (torch's): their `_with_device` signatures as one flat tuple,
            # which hashes faster than nested ones (a seen signature is most of a call's checks).
            key: tuple[Any, ...] = (
                kind,
                x.dtype,
                x.shape,
                x.device,
                weight.dtype,
                weight.shape,
                weight.device,
                None if bias is None else (bias.dtype, bias.shape, bias.device),
                xp,
            )
        else:
            key = (_signature(x), _signature(weight), _signature(bias), xp)
        known = _SIGNATURES.get(key)
    except (AttributeError, TypeError):  # not arrays, or unhashable: the full checks say what is wrong
        return _prepare(x, weight, bias, xp)[0]
    if known is None:
        known = _prepare(x, weight, bias, xp)
        if _SIGNERS.get(kind) is _with_device and known[0].row.check is None:  # the key holds x's device
            p, weight_device, bias_device = known
            known = (
                p._replace(grad_signature=(type(x), x.dtype, p.out_shape, p.device)),
                weight_device and _SIGNERS.get(type(weight)) is not _with_device,
                bias_device and _SIGNERS.get(type(bias)) is not _with_device,
            )
        if len(_SIGNATURES) >= _MAX_SIGNATURES:
            _SIGNATURES.clear()  # a bound, rarely met: a program meets a few signatures
        _SIGNATURES[key] = known
        return known[0]
    prepared, weight_device, bias_device = known
    if prepared.row.check is not None:
        _check_each(prepared, (x, "x"), (weight, "weight"), (bias, "bias"))
    if not (weight_device or bias_device):
        return prepared
    device = array_device(x)
    if (weight_device and _on_another_device(weight, device)) or (bias_device and _on_another_device(bias, device)):
        return _prepare(x, weight, bias, xp)[0]  # raises the error about devices
    return prepared if device == prepared.device else prepared._replace(device=device)


def _signature(a: Any) -> tuple[Any, ...]:
    """What decides `a`'s checks: type, dtype (byte order too), shape, weak type, and for
    torch its device (`_with_device`); an int's range."""
    signer = _SIGNERS.get(type(a))
    return (signer if signer is not None else _signer(type(a)))(a)


def _plain(a: Any) -> tuple[Any, ...]:
    """`_signature` of an array whose device is compared on each call (or is the library's one)."""
    return type(a), a.dtype, a.shape, getattr(a, "weak_type", None), type(getattr(a, "_meta", None))


def _with_device(a: Any) -> tuple[Any, ...]:
    """`_signature` of a torch tensor: its device too, read as cheaply as its dtype, so that a
    seen signature compares no devices (each attribute read of a tensor makes an object)."""
    return type(a), a.dtype, a.shape, a.device


def _number(a: Any) -> tuple[Any, ...]:
    return type(a), past_float64(a)


def _signer(kind: type) -> Any:
    """The `_signature` of `kind`'s values, found once per type."""
    if kind is type(None) or kind in PYTHON_NUMBERS:
        found = _number
    elif kind.__module__.partition(".")[0] == "torch" and hasattr(kind, "device"):
        found = _with_device
    else:
        found = _plain
    if len(_SIGNERS) < _MAX_SIGNATURES:
        _SIGNERS[kind] = found
    return found


_SIGNERS: dict[type, Any] = {}


def _prepare(x: Array, weight: Array, bias: Array | complex | None, xp: Any) -> tuple[Prepared, bool, bool]:
    """``prepare`` in full; also whether weight's and bias's devices are compared on each call."""
    facts, numpy_args, host = layer_library(x, weight, bias, xp)
    _check_each(facts, (x, "x"), (weight, "weight"), (bias, "bias"))
    x_shape, w_shape = tuple(x.shape), tuple(weight.shape)
    _check_shapes(x_shape, w_shape)
    device = None if facts.single_device else array_device(host)
    host_name = "x" if host is x else "weight" if host is weight else "bias"
    _check_like(weight, x, "weight", facts, device, numpy_args, host_name)
    _check_features(x_shape, w_shape)
    bias_array = _check_bias(bias, x, w_shape, facts)
    if bias_array:
        _check_like(bias, x, "bias", facts, device, numpy_args, host_name)
    compare = device is not None and "x" not in numpy_args
    return (
        facts._replace(
            device=device,
            out_shape=x_shape[:-1] + w_shape[:-1],
            x_matrix=len(x_shape) == 2,
            vector=len(w_shape) == 1,
            bias_array=bias_array,
        ),
        compare and "weight" not in numpy_args,
        compare and bias_array and "bias" not in numpy_args,
    )


def _check_each(p: Prepared, *named: tuple[Any, str]) -> None:
    """The row's own check of each array on every call (pydata/sparse's formats and fill values)."""
    if p.row.check is not None:
        for a, name in named:
            if not is_number(a) and hasattr(a, "shape"):
                p.row.check(a, name)


def _check_shapes(x_shape: tuple[Any, ...], w_shape: tuple[Any, ...]) -> None:
    if len(x_shape) == 0:
        msg = "`x` must have at least one axis, shape (..., in_features); got a 0-d array"
        raise ValueError(msg)
    if len(w_shape) not in (1, 2):
        msg = f"`weight` must be 2-D, shape (out_features, in_features), or 1-D, (in_features,); got shape {w_shape}"
        raise ValueError(msg)
    if len(x_shape) > 2 and not all(_known(d) for d in x_shape[:-1]):
        msg = (
            f"`x` has leading axes of unknown size (shape {x_shape}): call x.compute_chunk_sizes() (Dask) or reshape it"
        )
        raise ValueError(msg)


def _check_features(x_shape: tuple[Any, ...], w_shape: tuple[Any, ...]) -> None:
    if _dims_differ(x_shape[-1], w_shape[-1]):
        pairs = zip(("out_features", "in_features")[2 - len(w_shape) :], w_shape, strict=True)
        layout = f"({', '.join(f'{n}={d}' for n, d in pairs)}{',' if len(w_shape) == 1 else ''})"
        msg = f"`x` has {x_shape[-1]} features (shape {x_shape}) but `weight` expects {w_shape[-1]}: shape {layout}"
        raise ValueError(msg)


def _check_bias(bias: Any, x: Array, w_shape: tuple[Any, ...], facts: Prepared) -> bool:
    """`bias`'s kind and shape against x's and weight's; whether it is an array."""
    if bias is None:
        return False
    expected = w_shape[:1] if len(w_shape) == 2 else ()
    if is_number(bias) or not hasattr(bias, "shape"):
        _check_number(bias, "bias", x, facts)
        if expected:
            msg = (
                f"`bias` must be an array of shape (out_features,) = {expected} with a 2-D weight; got number {bias!r}"
            )
            raise ValueError(msg)
        return False
    if _shapes_differ(tuple(bias.shape), expected):
        what = f"shape (out_features,) = {expected}" if expected else "a scalar (a Python number or a 0-d array)"
        msg = f"`bias` must be {what} to match `weight` of shape {w_shape}; got shape {tuple(bias.shape)}"
        raise ValueError(msg)
    return True


def _on_another_device(a: Any, device: Device) -> bool:  # traced arrays under jax.jit report none
    return (other := array_device(a)) is not None and other != device


def _check_number(value: object, name: str, x: Array, facts: Prepared) -> None:
    if not is_number(value):
        msg = f"`{name}` must be an array or a Python int, float or complex; got {describe(value)}"
        raise TypeError(msg)
    if isinstance(value, _COMPLEX_NUMBERS) and not facts.complex_:
        msg = f"`{name}` is the complex number {value!r} but `x` is real ({x.dtype})"
        raise TypeError(msg)
    refuse_past_float64(value, name)


def _check_like(
    a: Any, x: Array, name: str, facts: Prepared, device: Device, numpy_args: frozenset[str], host_name: str = "x"
) -> None:
    """`a` has x's dtype, the library of `facts` (or is a NumPy argument) and `device` (`host_name`'s)."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise not_an_array(name, a)
    if type(a) is not type(x) and name not in numpy_args and library_of(a) != library_of(facts.xp):
        raise mixed_libraries([(a, name), (x, "x")])
    if a.dtype != x.dtype and not _weak_number(a, name, x, facts):
        own = name not in numpy_args and type(a) is type(x)
        facts_of(a, name, facts.xp if own else None)  # refuses a non-array, non-floating or non-native dtype by name
        msg = f"`x` and `{name}` must share one dtype; got {x.dtype} and {a.dtype} (cast one: xaffine never upcasts)"
        raise TypeError(msg)
    refuse_matrices(a, name)
    if device is not None and name not in numpy_args and _on_another_device(a, device):
        msg = (
            f"`{host_name}` is on device {device} but `{name}` is on device {array_device(a)}; move them to one device"
        )
        raise ValueError(msg)


def _traced_number(a: Any) -> bool:
    """Whether `a` is a Python number made a weakly typed 0-d array by a JAX transform (jit, grad)."""
    return getattr(a, "weak_type", False) is True and a.ndim == 0


def _weak_number(a: Any, name: str, x: Array, facts: Prepared) -> bool:
    """Whether `a` is a `_traced_number`, added in x's dtype as the number would be (complex refused for real x)."""
    if _traced_number(a) and not facts.complex_ and facts.xp.isdtype(a.dtype, "complex floating"):
        msg = f"`{name}` is a complex number (a weakly typed {a.dtype} array) but `x` is real ({x.dtype})"
        raise TypeError(msg)
    return _traced_number(a)


def _known(size: object) -> bool:
    """Whether a size is known: an int, or torch.compile's symbolic one (not None; not Dask's nan)."""
    return isinstance(size, int) or symbolic_number(size)


def _dims_differ(a: object, b: object) -> bool:  # unknown sizes are not compared
    return _known(a) and _known(b) and a != b


def _shapes_differ(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a != b and (len(a) != len(b) or any(_dims_differ(p, q) for p, q in zip(a, b, strict=True)))


def check_grad(grad: Any, x: Array, prepared: Prepared, name: str = "grad") -> Prepared:
    """Check the incoming gradient against the output (errors as ``affine_backward`` documents);
    a `grad` of a library that takes NumPy operands beside NumPy primals makes that library compute."""
    expected = prepared.grad_signature  # (type, dtype, shape, device), torch's: a tensor like the output
    if (
        expected is not None
        and type(grad) is expected[0]
        and grad.dtype == expected[1]
        and grad.shape == expected[2]
        and grad.device == expected[3]
    ):
        return prepared
    _check_each(prepared, (grad, name))
    try:
        if (
            type(grad) is type(x)
            and type(getattr(grad, "_meta", None)) is type(getattr(x, "_meta", None))  # Dask's chunks
            and grad.shape == prepared.out_shape
            and grad.dtype == x.dtype
            and (prepared.device is None or not _on_another_device(grad, prepared.device))
        ):
            return prepared  # x's type passed `prepare`: the full checks below would find nothing
    except (AttributeError, TypeError, ValueError):
        pass
    if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
        raise not_an_array(name, grad)
    if _shapes_differ(tuple(grad.shape), prepared.out_shape):
        msg = f"`{name}` must have the output's shape {prepared.out_shape}; got {tuple(grad.shape)}"
        raise ValueError(msg)
    return _join(grad, name, x, prepared)


def _join(a: Any, name: str, x: Array, prepared: Prepared) -> Prepared:
    """Check `a` (a gradient or a tangent) against the computing library, dtype and device.
    An `a` of a library that takes NumPy operands beside NumPy primals takes over, on its device."""
    library, other = library_of(prepared.xp), library_of(a)
    row = library_row(other if library == "numpy" else library)
    mixable = row is not None and row.takes_numpy and other != library and "numpy" in (library, other)
    if mixable and library == "numpy":
        new = facts_of(a, name)
        _check_each(new, (a, name))
        _check_like(a, x, name, new, None, frozenset((name,)))  # the dtype
        shapes = {k: getattr(prepared, k) for k in ("out_shape", "x_matrix", "vector", "bias_array")}
        return new._replace(device=None if new.single_device else array_device(a), **shapes)
    _check_each(prepared, (a, name))
    numpy_args = frozenset((name,)) if mixable else NO_NUMPY_ARGS
    _check_like(a, x, name, prepared, prepared.device, numpy_args, "x" if library_of(x) == library else "weight")
    return prepared


def check_tangents(
    tangents: object, x: Array, weight: Array, bias: object, prepared: Prepared
) -> tuple[tuple[Any, ...], Prepared]:
    """The tangents as a triple, each checked against its primal (errors as ``affine_jvp``
    documents), and what the math needs to know (a tangent may bring the computing library)."""
    if isinstance(tangents, (str, bytes)) or not isinstance(tangents, Iterable):
        msg = f"`tangents` must be a tuple (dx, dweight, dbias) of arrays or None; got {describe(tangents)}"
        raise TypeError(msg)
    triple = tuple(tangents)
    if len(triple) != len(GRAD_NAMES):
        msg = f"`tangents` must be a triple (dx, dweight, dbias); got {len(triple)} items"
        raise ValueError(msg)
    primals: tuple[Any, ...] = (x, weight, bias)
    for index, (name, tangent, primal) in enumerate(zip(GRAD_NAMES, triple, primals, strict=True)):
        label = f"tangents[{index}] (d{name})"
        if tangent is None:
            continue
        if primal is None:
            msg = f"`{label}` was given but `{name}` is None"
            raise ValueError(msg)
        number = type(tangent) in PYTHON_NUMBERS or (is_number(tangent) and is_number(primal))
        # (not asked of torch.compile's symbolic numbers, whose attributes dynamo cannot look up)
        traced = not number and _traced_number(tangent) and not (is_number(primal) or _traced_number(primal))
        if number or traced or not hasattr(tangent, "shape"):  # (a symbolic float under torch.compile: a number)
            if not (is_number(primal) or _traced_number(primal)):
                msg = f"`{label}` must be an array of `{name}`'s shape, {tuple(primal.shape)}; got {describe(tangent)}"
                raise TypeError(msg)
            _check_number(tangent, label, x, prepared)
            continue
        expected = () if is_number(primal) else tuple(primal.shape)
        if _shapes_differ(tuple(tangent.shape), expected):
            msg = f"`{label}` must have the shape of `{name}`, {expected}; got {tuple(tangent.shape)}"
            raise ValueError(msg)
        prepared = _join(tangent, label, x, prepared)
    return triple, prepared


def check_wrt(wrt: object) -> frozenset[str]:
    """The set of gradient names asked for (errors as ``affine_backward`` documents)."""
    if wrt is GRAD_NAMES:
        return _ALL_GRADS
    if type(wrt) is frozenset and wrt <= _ALL_GRADS:
        return wrt
    if type(wrt) is str or type(wrt) is tuple:
        try:
            known = _WANTED.get(wrt)
        except TypeError:  # a tuple holding something unhashable: the checks say what
            known = None
        if known is not None:
            return known
        names = _check_wrt(wrt)  # raises for anything but names
        if len(_WANTED) < 64:
            _WANTED[wrt] = names
        return names
    return _check_wrt(wrt)


_WANTED: dict[Any, frozenset[str]] = {}  # a name, or a tuple of names, seen before: its set


def _check_wrt(wrt: object) -> frozenset[str]:
    if not isinstance(wrt, Iterable) or isinstance(wrt, bytes):
        msg = f"`wrt` must be a name or an iterable of names ('x', 'weight', 'bias'); got {describe(wrt)}"
        raise TypeError(msg)
    items = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    if bad := [w for w in items if not isinstance(w, str)]:
        msg = f"`wrt` must hold names ('x', 'weight', 'bias'); got {describe(bad[0])} in it"
        raise TypeError(msg)
    unknown = frozenset(items) - _ALL_GRADS
    if unknown:
        msg = f"unknown name {sorted(unknown)[0]!r} in `wrt`; allowed: {', '.join(map(repr, GRAD_NAMES))}"
        raise ValueError(msg)
    return frozenset(items)
