"""What the two checks share: their options, the draws, the float64 copies, and the user's calls.

Every call of a user's function goes through `call`: it hands the function the check's own
copies of what it passes, so the check's references (and the caller's arrays) stay as they
were, and at each function's first call in each dtype it fails, naming the array, if the
function wrote into one: a backward that writes into its cotangent, its tangents or its
arguments does so at every call.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from .._backends import device_of
from .._dispatch import describe, is_number, namespace_of
from .._typing import Namespace

# A stream of its own: the probes never repeat data a test drew with the same seed.
_STREAM = 0x5EED_AFF1


def generator(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM])


# -- the checks' own arguments ------------------------------------------------------------


def check_options(
    functions: dict[str, Any],
    args: Any,
    *,
    seed: Any,
    rtol: Any,
    atol: Any,
    argnames: Any,
    mode: Any = "fast",
    directions: Any = 1,
) -> tuple[tuple[Any, ...], int, tuple[str, ...] | None]:
    """The checks' arguments, checked: `args` as a tuple, `seed` as an int, `argnames` as a tuple."""
    for name, function in functions.items():
        if not callable(function):
            msg = f"`{name}` must be callable; got {describe(function)}"
            raise TypeError(msg)
    if not isinstance(args, (tuple, list)):
        msg = f"`args` must be a tuple or list of the function's arguments; got {describe(args)}"
        raise TypeError(msg)
    if not isinstance(mode, str) or mode not in ("fast", "full"):
        msg = f"`mode` must be 'fast' or 'full'; got {mode!r}"
        raise ValueError(msg) if isinstance(mode, str) else TypeError(msg)
    seed_ = _count("seed", seed, 0)
    _count("directions", directions, 1)
    for name, value in (("rtol", rtol), ("atol", atol)):
        _tolerance(name, value)
    names = None
    if argnames is not None:
        if isinstance(argnames, str) or not isinstance(argnames, Sequence):
            msg = f"`argnames` must be a sequence of str, one per argument; got {describe(argnames)}"
            raise TypeError(msg)
        if not all(isinstance(n, str) for n in argnames):
            msg = f"`argnames` must hold str; got {[describe(n) for n in argnames]}"
            raise TypeError(msg)
        if len(argnames) != len(args):
            msg = f"`argnames` must name each of the {len(args)} arguments; got {len(argnames)}: {list(argnames)}"
            raise ValueError(msg)
        names = tuple(argnames)
    return tuple(args), seed_, names


def _arrived(value: Any) -> str:
    """What arrived, for a message: `describe`'s words, with a string's value."""
    return f"str {value!r}" if isinstance(value, str) and len(value) < 40 else describe(value)


def _count(name: str, value: Any, least: int) -> int:
    """`value` as an int of at least `least` (a Python or NumPy integer, not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        msg = f"`{name}` must be an int of at least {least}; got {_arrived(value)}"
        raise TypeError(msg)
    value = operator.index(value)
    if value < least:
        msg = f"`{name}` must be an int of at least {least}; got {value}"
        raise ValueError(msg)
    return value


def _tolerance(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = f"`{name}` must be a non-negative finite number or None; got {_arrived(value)}"
        raise TypeError(msg)
    if not (math.isfinite(value) and float(value) >= 0):
        msg = f"`{name}` must be a non-negative finite number or None; got {value!r}"
        raise ValueError(msg)


# -- the point and its draws --------------------------------------------------------------


def namespace(args: Sequence[Any]) -> Namespace:
    arrays = [(a, f"args[{i}]") for i, a in enumerate(args) if a is not None and not is_number(a)]
    if not arrays:
        msg = f"`args` must hold at least one array; got {[describe(a) for a in args]}"
        raise TypeError(msg)
    # The layer's own rule: the library's namespace (adapted where xaffine adapts it), and
    # NumPy arrays beside a library that takes NumPy operands follow that library.
    return namespace_of(arrays)


def is_complex(a: Any, xp: Namespace) -> bool:
    if is_number(a):
        return isinstance(a, (complex, np.complexfloating))
    return bool(xp.isdtype(a.dtype, "complex floating"))


def name(i: int, names: Sequence[str] | None) -> str:
    return f"`{names[i]}`" if names is not None else f"argument {i}"


def shape(a: Any) -> tuple[Any, ...]:
    return () if is_number(a) else tuple(a.shape)


def first_array(args: Sequence[Any]) -> Any:
    return next(a for a in args if a is not None and not is_number(a))


def max_axis(*shapes: tuple[Any, ...]) -> int:
    return max([1, *(d for s in shapes for d in s if isinstance(d, int))])


def random_like(a: Any, rng: np.random.Generator, xp: Namespace, *, wide: bool = False) -> Any:
    """Standard normal numbers shaped like `a`, in its dtype (float64/complex128 if `wide`)."""
    complex_ = is_complex(a, xp)
    host = rng.standard_normal(shape(a))
    if complex_:
        host = (host + 1j * rng.standard_normal(shape(a))) / math.sqrt(2.0)
    if is_number(a):
        return complex(host) if complex_ else float(host)
    dtype = wide_dtype(a, xp) if wide else a.dtype
    return xp.asarray(host, dtype=dtype, device=device_of(a))


def wide_dtype(a: Any, xp: Namespace) -> Any:
    label = "complex128" if is_complex(a, xp) else "float64"
    wide = getattr(xp, label, None)
    if wide is None:
        msg = f"this backend has no {label}, which the checks compute in"
        raise TypeError(msg)
    return wide


def widen(a: Any, xp: Namespace) -> Any:
    """A float64 (complex128) copy of `a` on its own device; numbers stay numbers (a NumPy
    scalar becomes a Python one: an np.float32 would round the checks' steps)."""
    if isinstance(a, np.generic):
        return complex(a) if isinstance(a, np.complexfloating) else float(a)
    if a is None or is_number(a):
        return a
    wide = wide_dtype(a, xp)
    out = xp.astype(a, wide)
    if out.dtype != wide:
        msg = (
            f"this backend gave {out.dtype} when asked for {wide}: the checks need float64 (JAX: enable jax_enable_x64)"
        )
        raise TypeError(msg)
    return out


def is_wide(a: Any, xp: Namespace) -> bool:
    if a is None or is_number(a):
        return True
    try:
        return bool(a.dtype == wide_dtype(a, xp))
    except TypeError:  # the backend has no wider dtype (MLX's complex64)
        return False


def zeros_but(args: Sequence[Any], given: dict[int, Any], xp: Namespace) -> tuple[Any, ...]:
    """Tangents zero but those `given` by argument index: zeros of each argument's shape and
    dtype (a jvp written for arrays need not handle ``None``), ``None`` where the argument is
    ``None``."""
    return tuple(
        given[j] if j in given else None if a is None else 0.0 * a if is_number(a) else xp.zeros_like(a)
        for j, a in enumerate(args)
    )


def element_scale(p: Any, xp: Namespace) -> Any:
    """``max(1, |p|)`` element by element: the unit of each element's steps."""
    if is_number(p):
        return max(1.0, abs(p))
    size = xp.abs(p)
    return xp.where(size > 1.0, size, xp.ones_like(size))


# -- the user's calls ---------------------------------------------------------------------


class Written(AssertionError):
    """A user's function wrote into an array it was handed."""


def _handed(value: Any, xp: Namespace) -> tuple[Any, Any]:
    """What a user's function gets for `value` (a copy in its own library), and how to tell
    afterwards that it wrote into it."""
    if value is None or is_number(value) or not hasattr(value, "shape"):
        return value, None
    if array_api_compat.is_dask_array(value):
        return value, value.name  # writing into a Dask array gives it another graph
    if array_api_compat.is_numpy_array(value):  # also beside another library's arrays
        return np.array(value, copy=True), value
    if array_api_compat.is_torch_array(value):
        return value.clone(), value  # keeps requires_grad, as the caller's tensor has it
    # pydata/sparse arrays refuse item assignment, yet `a *= s` writes into them.
    if array_api_compat.is_writeable_array(value) or array_api_compat.is_pydata_sparse_array(value):
        return xp.asarray(value, copy=True), value
    return value, None  # immutable (JAX; ndonnx, whose `a *= s` makes a new array)


def _written(copy: Any, reference: Any, xp: Namespace) -> bool:
    if isinstance(reference, str):
        return bool(copy.name != reference)
    if tuple(copy.shape) != tuple(reference.shape) or copy.dtype != reference.dtype:
        return True
    if array_api_compat.is_numpy_array(reference):
        xp = array_api_compat.numpy
    same = copy == reference
    if xp.isdtype(reference.dtype, ("real floating", "complex floating")):
        same = xp.logical_or(same, xp.logical_and(xp.isnan(copy), xp.isnan(reference)))
    return not bool(xp.all(same))


def call(
    function: Callable[..., Any],
    what: str,
    inputs: Sequence[tuple[str, Any]],
    xp: Namespace,
    copies: str | None,
    watch: bool = True,
) -> Any:
    """``function(*values)`` of `inputs` (label, value) pairs, on copies; a value may be a
    tuple of arrays (tangents), labelled per element. Fails, naming the array, where the
    function wrote into what it was handed (if `watch`); where the values are the checks'
    float64 (or float32) copies of the caller's (`copies` names the dtype), also where it
    raises."""
    handed, watched = [], []
    for label, value in inputs:
        if isinstance(value, tuple):
            pairs = [_handed(v, xp) for v in value]
            handed.append(tuple(p[0] for p in pairs))
            watched += [(f"{label}[{k}]", *p) for k, p in enumerate(pairs)]
        else:
            pair = _handed(value, xp)
            handed.append(pair[0])
            watched.append((label, *pair))
    try:
        result = function(*handed)
    except Exception as exc:
        if copies is None:
            raise
        msg = (
            f"{what} raised {type(exc).__name__} on {copies} copies of the arguments, which the checks "
            f"run it on besides the arguments themselves: {exc}"
        )
        raise AssertionError(msg) from exc
    for label, copy, reference in watched if watch else ():
        if reference is not None and _written(copy, reference, xp):
            msg = (
                f"{what} wrote into {label}, which it was handed: a backward or forward-mode function must "
                "not change its inputs (the caller's arrays would change with them; the checks hand each "
                "call copies of their own and compare them afterwards)"
            )
            raise Written(msg)
    return result


def as_array(value: Any, like: Any, xp: Namespace) -> Any:
    """A NumPy scalar (``np.float64``, what NumPy gives for a 0-d result) as a 0-d array
    where `like` is an array; anything else as it is."""
    if isinstance(value, np.generic) and not is_number(like) and like is not None:
        return xp.asarray(value, device=device_of(like))
    return value


def result(value: Any, what: str, args: Sequence[Any], xp: Namespace) -> Any:
    """The forward's (or jvp's) result: one array of the arguments' library (a NumPy scalar
    taken as a 0-d array)."""
    if isinstance(value, np.generic):  # NumPy's 0-d results: only NumPy arguments give them
        return xp.asarray(value)
    if is_number(value):
        return value
    if value is None or not hasattr(value, "shape") or not hasattr(value, "dtype"):
        msg = f"`{what}` must return one array (of the arguments' library); got {describe(value)}"
        raise TypeError(msg)
    pairs = [(a, f"args[{i}]") for i, a in enumerate(args) if a is not None and not is_number(a)]
    namespace_of([*pairs, (value, f"what `{what}` returned")])
    return value


class UserCalls:
    """The user's functions, each called through `call` with its inputs labelled for messages.

    Every call is handed copies; what it writes is looked for at the first call of each
    function in each dtype (a function that writes into its inputs does so at every call,
    and the comparison costs an operation per array, which on ndonnx is a graph run).
    """

    def __init__(self, xp: Namespace, names: Sequence[str] | None, **functions: Callable[..., Any]) -> None:
        self.xp = xp
        self.names = names
        self.functions = functions
        self.watched: set[tuple[str, str | None]] = set()

    def _call(self, what: str, inputs: Sequence[tuple[str, Any]], copies: str | None) -> Any:
        watch = (what, copies) not in self.watched
        self.watched.add((what, copies))
        return call(self.functions[what], what, inputs, self.xp, copies, watch)

    def _args(self, args: Sequence[Any]) -> list[tuple[str, Any]]:
        return [(f"argument {name(i, self.names)}" if self.names else name(i, None), a) for i, a in enumerate(args)]

    def f(self, args: Sequence[Any], copies: str | None) -> Any:
        out = self._call("f", self._args(args), copies)
        return result(out, "f", args, self.xp)

    def jvp(self, tangents: Sequence[Any], args: Sequence[Any], copies: str | None) -> Any:
        inputs = [("its tangents", tuple(tangents)), *self._args(args)]
        return result(self._call("jvp", inputs, copies), "jvp", args, self.xp)

    def vjp(self, ct: Any, args: Sequence[Any], copies: str | None) -> Any:
        inputs = [("its cotangent", ct), *self._args(args)]
        return self._call("vjp", inputs, copies)
