"""Gradient checks for hand-written backward passes, on any Array API backend.

Two checks (see the Notes of each):

- :func:`check_adjoint`, the dot-product test ``<ct, J t> == <vjp(ct), t>`` for each
  argument alone, in float64 (on float64 copies of the arguments) and in the arguments'
  own dtype, where it also follows the gradient's own direction;
- :func:`check_vjp`, central finite differences in float64 on the arrays' own backend
  and device, element by element (``mode="full"``) or along random directions
  (``mode="fast"``), each element stepped in proportion to its own size.

Both also hold the backward's results in the caller's dtype to its float64 results: the
same dtype, shape and device as the arguments, and no infinity or NaN where the float64
result is finite and within the dtype's range. docs/testing.md tables which wrong backward
passes each check catches, in each dtype.

Probe vectors and cotangents come from a private NumPy generator seeded with `seed`,
drawn on the host and moved to the backend, so every backend sees the same numbers and
a failure reproduces. On Dask only the scalars compared are computed, in one go; under
JAX nothing is mutated.

Examples
--------
A user's own layer, ``y = tanh(x) * s``, checked with its hand-written backward:

>>> import numpy as np
>>> from xaffine.testing import check_vjp
>>> def f(x, s):
...     return np.tanh(x) * s
>>> def vjp(ct, x, s):
...     return ct * s * (1 - np.tanh(x) ** 2), np.sum(ct * np.tanh(x))
>>> check_vjp(f, vjp, (np.linspace(-1.0, 1.0, 5), 2.0), mode="full")
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import array_api_compat.numpy
import numpy as np

from ._backends import device_of, to_numpy
from ._dispatch import is_number, namespace_of
from ._typing import Array, Namespace

__all__ = ["check_adjoint", "check_vjp"]

_F = TypeVar("_F", bound=Callable[..., Any])

_FULL_RERUN_LIMIT = 256
_HOST: Namespace = array_api_compat.numpy  # where sums go that the backend cannot hold
# A stream of its own: the probes never repeat data a test drew with the same seed.
_STREAM = 0x5EED_AFF1
_REPORTED = 5
_EPS64 = float(np.finfo(np.float64).eps)
# The narrow-dtype identity's tolerance, in units of eps times the rounding's statistical
# size (see check_adjoint's Notes); the largest ratio seen over the false-alarm runs of
# tests/test_testing.py and benchmarks/check_power.py --false-alarms was below 1.
_NARROW_RTOL = 8.0
# The float64 identity's tolerance, in units of eps64 sqrt(n) times its worst-case scale.
_WIDE_RTOL = 8.0
# Central differences: the rounding bound's factor, and the margin on the Richardson
# estimate of the truncation error.
_ROUNDING = 8.0
_TRUNCATION_MARGIN = 2.0
# Outputs a step leaves unchanged: half a unit in the last place each, times this margin.
_UNRESOLVED = 4.0
# Failing finite-difference probes are tried again with the step divided by this, up to
# _RETRIES times, while the truncation error dominates their bound.
_RETRY = 16.0
_RETRIES = 4


# The checks' own sums and products meet the infinities and NaNs of a wrong gradient, and
# report them as failed checks; NumPy's warnings about them (pydata/sparse computes with
# its fill values too: inf * 0) would only repeat that, or, where warnings are errors,
# hide it. The user's functions run outside this.
def _quiet(function: _F) -> _F:
    @functools.wraps(function)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return function(*args, **kwargs)

    return cast(_F, quiet)


def _generator(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM])


def _namespace(args: Sequence[Any]) -> Namespace:
    arrays = [(a, f"args[{i}]") for i, a in enumerate(args) if a is not None and not is_number(a)]
    if not arrays:
        msg = "`args` must hold at least one array"
        raise TypeError(msg)
    # The layer's own rule: the library's namespace (adapted where xaffine adapts it), and
    # NumPy arrays beside a library that takes NumPy operands follow that library.
    return namespace_of(arrays)


def _is_complex(a: Any, xp: Namespace) -> bool:
    if is_number(a):
        return isinstance(a, complex)
    return bool(xp.isdtype(a.dtype, "complex floating"))


def _name(i: int, names: Sequence[str] | None) -> str:
    return f"`{names[i]}`" if names is not None else f"argument {i}"


def _shape(a: Any) -> tuple[Any, ...]:
    return () if is_number(a) else tuple(a.shape)


def _host_random(rng: np.random.Generator, shape: tuple[int, ...], complex_: bool) -> np.ndarray[Any, Any]:
    real = rng.standard_normal(shape)
    if not complex_:
        return real
    return (real + 1j * rng.standard_normal(shape)) / math.sqrt(2.0)


def _random_like(a: Any, rng: np.random.Generator, xp: Namespace, *, wide: bool = False) -> Any:
    """Random numbers shaped like `a`, in its dtype (float64/complex128 if `wide`)."""
    complex_ = _is_complex(a, xp)
    host = _host_random(rng, _shape(a), complex_)
    if is_number(a):
        return complex(host) if complex_ else float(host)
    dtype = _wide_dtype(a, xp) if wide else a.dtype
    return xp.asarray(host, dtype=dtype, device=device_of(a))


def _wide_dtype(a: Any, xp: Namespace) -> Any:
    name = "complex128" if _is_complex(a, xp) else "float64"
    wide = getattr(xp, name, None)
    if wide is None:
        msg = f"this backend has no {name}, which the checks compute in"
        raise TypeError(msg)
    return wide


def _widen(a: Any, xp: Namespace) -> Any:
    """A float64 (complex128) copy of `a` on its own device; numbers stay numbers."""
    if a is None or is_number(a):
        return a
    wide = _wide_dtype(a, xp)
    out = xp.astype(a, wide)
    if out.dtype != wide:
        msg = (
            f"this backend gave {out.dtype} when asked for {wide}: the checks need float64 (JAX: enable jax_enable_x64)"
        )
        raise TypeError(msg)
    return out


def _is_wide(a: Any, xp: Namespace) -> bool:
    if a is None or is_number(a):
        return True
    try:
        return bool(a.dtype == _wide_dtype(a, xp))
    except TypeError:  # the backend has no wider dtype (MLX's complex64)
        return False


@_quiet
def _inner(u: Any, v: Any, xp: Namespace) -> Any:
    """``sum(conj(u) * v)``: a 0-d array, or a number when both are numbers."""
    if is_number(u):
        product = complex(u).conjugate() * v if isinstance(u, complex) else u * v
    else:
        product = (xp.conj(u) if _is_complex(u, xp) else u) * v
    return product if is_number(product) else xp.sum(product)


@_quiet
def _norm(u: Any, xp: Namespace) -> Any:
    if is_number(u):
        return abs(u)
    return xp.sqrt(xp.sum(xp.abs(u) ** 2))


def _square(a: Any, xp: Namespace) -> Any:
    return abs(a) ** 2 if is_number(a) else xp.abs(a) ** 2


def _total(a: Any, xp: Namespace) -> Any:
    return a if is_number(a) else xp.sum(a)


def _zero_where_not(mask: Any, a: Any, xp: Namespace) -> Any:
    """Array `a` where `mask` holds, else 0, without computing with what is masked out."""
    return xp.where(mask, a, xp.zeros_like(a))


@_quiet
def _pair_scale(u: Any, v: Any, xp: Namespace) -> Any:
    """``sqrt(sum |u|^2 |v|^2)``: the statistical size of rounding collected by ``<u, v>``."""
    return _total(_square(u, xp) * _square(v, xp), xp) ** 0.5


@_quiet
def _nonfinite_count(values: Sequence[Any], xp: Namespace) -> Any:
    count: Any = 0.0
    for v in values:
        if v is None:
            continue
        bad = float(not math.isfinite(abs(v))) if is_number(v) else 1.0 - xp.astype(xp.isfinite(v), xp.float64)
        count = count + _total(bad, xp)
    return count


def _evaluate(scalars: list[Any], xp: Namespace, device: Any) -> np.ndarray[Any, Any]:
    """A list of 0-d arrays of the backend and numbers, on the host as complex128; the arrays
    computed in one go (one graph on a lazy backend).

    Complex128 only where a value is complex: some libraries (ndonnx) have no complex dtypes.
    """
    out = np.array([complex(s) if is_number(s) else 0j for s in scalars], dtype=complex)
    where = [k for k, s in enumerate(scalars) if not is_number(s)]
    if where:
        complex_ = any(_is_complex(scalars[k], xp) for k in where)
        # The widest the backend has: ndonnx has no complex dtypes, MLX no complex128.
        names = ("complex128", "complex64") if complex_ else ("float64", "float32")
        wide = next(getattr(xp, name) for name in names if hasattr(xp, name))
        arrays = [xp.astype(xp.reshape(scalars[k], ()), wide) for k in where]
        # A lazy backend (Dask) computes the sums here, in its own threads, which np.errstate
        # does not reach: its warnings about a wrong gradient's infinities are the checks' to
        # report, as failures.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[where] = to_numpy(xp.stack(arrays))
    return out


def _on_host(a: Any) -> Any:
    """A float64 (complex128) NumPy copy of a backend array; numbers and None as they are."""
    if a is None or is_number(a):
        return a
    host = to_numpy(a)
    return host.astype(np.complex128 if np.iscomplexobj(host) else np.float64)


def _check_structure(
    grads: Any, args: Sequence[Any], names: Sequence[str] | None, xp: Namespace, where: str = ""
) -> None:
    if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
        got = len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__
        msg = f"vjp must return one gradient (or None) per argument{where}: {len(args)}; got {got}"
        raise AssertionError(msg)
    for i, (g, a) in enumerate(zip(grads, args, strict=True)):
        if g is None:
            continue
        if is_number(g):
            if is_number(a):
                continue
            msg = f"gradient of {_name(i, names)}{where} is a number; expected an array of shape {_shape(a)}"
            raise AssertionError(msg)
        if tuple(g.shape) != _shape(a):
            msg = f"gradient of {_name(i, names)}{where} has shape {tuple(g.shape)}; expected {_shape(a)}"
            raise AssertionError(msg)
        if is_number(a):
            continue
        if g.dtype != a.dtype:
            msg = f"gradient of {_name(i, names)}{where} has dtype {g.dtype}; expected {a.dtype}"
            raise AssertionError(msg)
        dg, da = device_of(g), device_of(a)
        if dg is not None and da is not None and dg != da:
            msg = f"gradient of {_name(i, names)}{where} is on device {dg}; expected {da}"
            raise AssertionError(msg)


_ON_WIDE = " (the float64 copies' run)"


def _call_wide(function: Callable[..., Any], name: str, *call_args: Any) -> Any:
    """Call a user's function on float64 copies; what it raises there is a failed check."""
    try:
        return function(*call_args)
    except Exception as exc:
        msg = (
            f"{name} raised {type(exc).__name__} on float64 copies of the arguments, which the checks "
            f"run it on besides the arguments themselves: {exc}"
        )
        raise AssertionError(msg) from exc


def _device(args: Sequence[Any]) -> Any:
    return next(device_of(a) for a in args if a is not None and not is_number(a))


def _max_axis(*shapes: tuple[Any, ...]) -> int:
    return max([1, *(d for s in shapes for d in s if isinstance(d, int))])


@_quiet
def _lost_in_range(narrow: Any, wide: Any, dtype_max: float, xp: Namespace, device: Any) -> Any:
    """How many elements are infinite or NaN in `narrow` where `wide` is finite and within range."""
    if is_number(narrow) and is_number(wide):
        return float(not math.isfinite(abs(narrow)) and math.isfinite(abs(wide)) and abs(wide) <= dtype_max)
    narrow, wide = (xp.asarray(v, device=device) if is_number(v) else v for v in (narrow, wide))
    lost = xp.logical_and(xp.logical_not(xp.isfinite(narrow)), xp.isfinite(wide))
    in_range = xp.abs(_zero_where_not(xp.isfinite(wide), wide, xp)) <= dtype_max
    return xp.sum(xp.astype(xp.logical_and(lost, in_range), xp.float64))


def _first_lost(narrow: Any, wide: Any, dtype_max: float) -> str:
    """Where `narrow` first lost a finite, representable value of `wide` (for a message)."""
    n, w = (
        np.asarray(to_numpy(narrow) if not is_number(narrow) else narrow),
        np.asarray(to_numpy(wide) if not is_number(wide) else wide),
    )
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(n) & np.isfinite(w) & (np.abs(np.where(np.isfinite(w), w, 0)) <= dtype_max)
    where = np.argwhere(bad)
    count = len(where)
    index = tuple(int(i) for i in where[0])
    return f"{n[index]} at element {index} ({count} element{'s' if count != 1 else ''}) where float64 gives {w[index]}"


def _lost_values_check(
    pairs: list[tuple[str, Any, Any]], counts: np.ndarray[Any, Any], dtype: Any, dtype_max: float
) -> None:
    for (label, narrow, wide), count in zip(pairs, counts, strict=True):
        if count > 0:
            msg = (
                f"{label} is not finite in {dtype}: {_first_lost(narrow, wide, dtype_max)}, "
                f"a value {dtype} holds (its largest is {dtype_max:.6g})"
            )
            raise AssertionError(msg)


def _one_hot(args: Sequence[Any], i: int, tangent: Any, xp: Namespace) -> tuple[Any, ...]:
    """Tangents zero but for argument `i`: zeros of each argument's shape and dtype (a jvp
    written for arrays need not handle ``None``), ``None`` where the argument is ``None``."""
    return tuple(
        tangent if j == i else None if a is None else 0.0 * a if is_number(a) else xp.zeros_like(a)
        for j, a in enumerate(args)
    )


def _narrow_sums(c: Any, t: Any, jt: Any, g: Any, xp: Namespace) -> list[Any]:
    """``<c, jt>``, ``<g, t>``, their rounding's statistical scale, and how many values are not
    finite (judged apart: out of the dtype's range, or a wrong backward); the sums take what is."""
    count = _nonfinite_count((jt, g, t), xp)
    jt, g, t = (v if is_number(v) else _zero_where_not(xp.isfinite(v), v, xp) for v in (jt, g, t))
    return [_inner(c, jt, xp), _inner(g, t, xp), _pair_scale(c, jt, xp) + _pair_scale(g, t, xp), count]


def check_adjoint(
    jvp: Callable[..., Array],
    vjp: Callable[..., Sequence[Array | None]],
    args: Sequence[Any],
    *,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    argnames: Sequence[str] | None = None,
) -> None:
    """Check a VJP against a JVP with the adjoint (dot-product) identity.

    Parameters
    ----------
    jvp : callable
        ``jvp(tangents, *args) -> tangent_out``, with one tangent per argument
        (``None`` meaning zero). For a linear function, ``lambda t, *a: f(*t)``.
    vjp : callable
        ``vjp(cotangent, *args) -> grads``, one gradient per argument, ``None`` for an
        argument not checked.
    args : sequence
        The point: arrays of one library (a Python number may stand for a scalar).
    seed : int
        Seed of the generator that draws the tangents and the cotangent.
    rtol, atol : float, optional
        A probe passes when ``|lhs - rhs| <= atol + rtol * scale`` (see Notes). Default
        `rtol`: ``8 * eps64 * sqrt(n)`` for the float64 identity (``n`` the longest axis
        involved) and ``8 * eps`` of the arguments' dtype for the identity in that
        dtype; a given `rtol` replaces both. Default `atol`: 0 for the float64 identity;
        in a narrow dtype, ``8 * spacing * sqrt(size of J t + size of t)``, ``spacing``
        that of the dtype's subnormal numbers, whose rounding is absolute.
    argnames : sequence of str, optional
        Names of the arguments, for messages.

    Raises
    ------
    AssertionError
        When the identity fails, a gradient has the wrong shape, dtype or device, a result
        in the arguments' dtype is infinite or NaN where its float64 counterpart is finite
        and within that dtype's range, or `jvp` or `vjp` raises on float64 copies of the
        arguments. The message gives both sides, the difference, the tolerance and the seed.

    Notes
    -----
    For ``J`` the Jacobian at `args`, ``<ct, J t> = <J^H ct, t>`` for every ``t`` and
    ``ct``, with ``<u, v> = sum(conj(u) * v)``, exactly in exact arithmetic: no step
    size is involved. Each checked argument is probed alone (its tangent random, the
    others zeros), so an error in one gradient cannot hide behind another's size.

    1. On float64 (complex128) copies of the arguments, where the backend has float64:
       a random tangent, tolerance ``rtol * (||ct|| ||J t|| + ||g|| ||t||)``. A wrong
       backward is wrong in float64 too, and there the identity resolves a relative
       error of about 1e-10 of the gradient's part of the sum.
    2. In the arguments' own dtype (when narrower): the same random tangent, and the
       gradient's own direction ``t = g / max|g|`` (where ``<g, t>`` is the largest it
       can be), with the tolerance ``rtol * (sqrt(sum |ct|^2 |J t|^2) + sqrt(sum |g|^2
       |t|^2))``: the statistical size of the rounding that the two sums collect, not its
       worst case, which is about ``sqrt(size)`` times larger. Both sides are summed in
       float64. The roundings that ``J`` and its adjoint share (a ``tanh`` computed once in
       float16) cancel in the identity, so a saturated function raises no false alarm.

    Without float64 on the backend (JAX without ``jax_enable_x64``), only step 2 runs,
    with the random tangent alone deciding in float64's place.
    """
    xp = _namespace(args)
    rng = _generator(seed)
    device = _device(args)
    tangents = [None if a is None else _random_like(a, rng, xp) for a in args]
    out_t = jvp(tuple(tangents), *args)
    ct = _random_like(out_t, rng, xp)
    grads = vjp(ct, *args)
    _check_structure(grads, args, argnames, xp)
    checked = [i for i, g in enumerate(grads) if g is not None and args[i] is not None]
    if not checked:
        return
    dtype = next(a.dtype for a in args if a is not None and not is_number(a))
    n = _max_axis(_shape(out_t), *(_shape(a) for a in args if a is not None))
    narrow = not all(_is_wide(a, xp) for a in args)
    wide_args: list[Any] | None
    try:
        wide_args = [_widen(a, xp) for a in args] if narrow else list(args)
        wide_ct = _widen(ct, xp) if narrow else ct
    except TypeError:  # no float64 on this backend: the arguments' own dtype alone
        wide_args = wide_ct = None

    probes: list[tuple[str, Any, Any, Any, Any, bool]] = []  # label, ct, t, J t, g, narrow
    lost: list[tuple[str, Any, Any]] = []
    if wide_args is not None:
        wide_grads = grads
        if narrow:
            wide_grads = _call_wide(vjp, "vjp", wide_ct, *wide_args)
            _check_structure(wide_grads, wide_args, argnames, xp, _ON_WIDE)
        for i in checked:
            t = _widen(tangents[i], xp)
            jt = _call_wide(jvp, "jvp", _one_hot(wide_args, i, t, xp), *wide_args)
            probes.append((f"{_name(i, argnames)} alone, float64", wide_ct, t, jt, wide_grads[i], False))
            if narrow:
                lost.append((f"gradient of {_name(i, argnames)}", grads[i], wide_grads[i]))
    if narrow or wide_args is None:
        for i in checked:
            own = None if is_number(args[i]) else _own_direction(grads[i], xp)
            for label, t in (("random", tangents[i]), ("along its gradient", own)):
                if t is None:
                    continue
                jt = jvp(_one_hot(args, i, t, xp), *args)
                probes.append((f"{_name(i, argnames)} alone, {label}, {dtype}", ct, t, jt, grads[i], True))

    scalars: list[Any] = []
    for _, c, t, jt, g, is_narrow in probes:
        if is_narrow and wide_args is None:
            # No float64 (complex128) on the backend (MLX's complex64): the sums in NumPy's.
            c_, t_, jt_, g_ = (_on_host(v) for v in (c, t, jt, g))
            sums = _narrow_sums(c_, t_, jt_, g_, _HOST)
            scalars += [complex(v) for v in sums]
        elif is_narrow:
            scalars += _narrow_sums(_widen(c, xp), _widen(t, xp), _widen(jt, xp), _widen(g, xp), xp)
        else:
            scalars += [_inner(c, jt, xp), _inner(g, t, xp)]
            scalars += [_norm(c, xp) * _norm(jt, xp) + _norm(g, xp) * _norm(t, xp), 0.0]
    dtype_max = float(xp.finfo(dtype).max)
    scalars += [_lost_in_range(_widen(nv, xp), wv, dtype_max, xp, device) for _, nv, wv in lost]
    values = _evaluate(scalars, xp, device)

    _lost_values_check(lost, values[4 * len(probes) :].real, dtype, dtype_max)
    eps = float(xp.finfo(dtype).eps)
    # Subnormal values of the narrow dtype are rounded to an absolute spacing, not a relative
    # one: half of it per element of J t and of the gradient, summed statistically.
    spacing = float(xp.finfo(dtype).smallest_normal) * eps
    floors = [
        _NARROW_RTOL * spacing * math.sqrt(math.prod(_shape(jt)) + math.prod(_shape(t))) if is_narrow else 0.0
        for _, _, t, jt, _, is_narrow in probes
    ]
    for k, (label, *_, is_narrow) in enumerate(probes):
        left, right, scale, nonfinite = values[4 * k : 4 * k + 4]
        if is_narrow and nonfinite.real > 0:
            if wide_args is not None:
                continue  # out of the dtype's range where float64 is not: the float64 identity decides
            msg = (
                f"adjoint identity failed (seed={seed}, dtype={dtype}), {label}: J t or vjp(ct) holds "
                f"{int(nonfinite.real)} infinite or NaN values, and this backend has no float64 to tell "
                "an overflow of the dtype from a wrong backward"
            )
            raise AssertionError(msg)
        if rtol is None:
            rtol_ = _NARROW_RTOL * eps if is_narrow else _WIDE_RTOL * _EPS64 * math.sqrt(n)
        else:
            rtol_ = rtol
        tol = (atol if atol is not None else floors[k]) + rtol_ * scale.real
        error = abs(left - right)
        if not (math.isfinite(error) and math.isfinite(tol) and error <= tol):
            msg = (
                f"adjoint identity failed (seed={seed}, dtype={dtype}), {label}: <ct, J t> = {left:.10g} but "
                f"<vjp(ct), t> = {right:.10g}; |difference| = {error:.3g} > tolerance "
                f"{tol:.3g} (rtol={rtol_:.3g} x scale {scale.real:.4g} + atol={atol or 0.0:.3g})"
            )
            raise AssertionError(msg)


@_quiet
def _own_direction(g: Any, xp: Namespace) -> Any:
    """``g / max|g|`` in g's dtype (zeros stay zeros), computed lazily where the backend is lazy."""
    if math.prod(g.shape) == 0:
        return None
    finite = xp.isfinite(g)
    size = xp.max(xp.abs(_zero_where_not(finite, g, xp)))
    size = xp.where(size > 0, size, xp.ones_like(size))
    return _zero_where_not(finite, g, xp) / xp.astype(size, g.dtype)


class _Probe:
    """One finite-difference probe: argument `index` moved along `direction`.

    `unit` is the direction's length along the element probed in full mode (1 in fast
    mode), so that messages give derivatives per unit of that element.
    """

    def __init__(self, index: int, label: str, direction: Any, unit: Any = 1.0) -> None:
        self.index = index
        self.label = label
        self.direction = direction
        self.unit = unit


_PER_PROBE = 8  # the scalars each finite-difference probe evaluates


def _element_scale(p: Any, xp: Namespace) -> Any:
    """``max(1, |p|)`` element by element: each element's finite-difference step, over ``cbrt(eps)``."""
    if is_number(p):
        return max(1.0, abs(p))
    size = xp.abs(p)
    return xp.where(size > 1.0, size, xp.ones_like(size))


def _probes(
    args: Sequence[Any], checked: list[int], mode: str, directions: int, rng: np.random.Generator, xp: Namespace
) -> list[_Probe]:
    probes = []
    for i in checked:
        a = args[i]
        scale = _element_scale(a, xp)
        if mode == "fast":
            probes += [
                _Probe(i, f"direction {d}", _random_like(a, rng, xp, wide=True) * scale) for d in range(directions)
            ]
            continue
        shape = _shape(a)
        units = (1.0, 1j) if _is_complex(a, xp) else (1.0,)
        for index in np.ndindex(*shape):
            for unit in units:
                part = "" if len(units) == 1 else (" (real part)" if unit == 1.0 else " (imaginary part)")
                if is_number(a):
                    probes.append(_Probe(i, f"the scalar{part}", unit * scale, scale))
                    continue
                host = np.zeros(shape, dtype=complex if len(units) == 2 else float)
                host[index] = unit
                one = xp.asarray(host, dtype=_wide_dtype(a, xp), device=device_of(a))
                mask = xp.asarray(np.abs(host), dtype=xp.float64, device=device_of(a))
                probes.append(_Probe(i, f"element {index}{part}", one * scale, xp.sum(mask * scale)))
    return probes


@_quiet
def _rounding_collected(weight: Any, values: Sequence[Any], moved: Any, xp: Namespace) -> Any:
    """``sum |weight|^2 sum_v |v|^2`` over the elements where `moved` holds.

    The squared size, in units of eps, of the rounding errors that ``<weight, .>``
    collects from `values` rounded where they change; elements that do not change
    carry none.
    """
    total = _square(weight, xp) * sum(_square(v, xp) for v in values)
    if isinstance(moved, (bool, np.bool_)):  # a Python (or NumPy) number moved
        total = total if moved else 0.0 * total
        return total if is_number(total) else xp.sum(total)
    return xp.sum(_zero_where_not(moved, total, xp))


def _probe_scalars(
    f: Callable[..., Any], wide_args: list[Any], wide_ct: Any, grads: Any, probe: _Probe, h: float, xp: Namespace
) -> list[Any]:
    """The `_PER_PROBE` scalars of one probe with step `h` (see `_probe_verdict`)."""
    p, g = wide_args[probe.index], grads[probe.index]
    outs = []
    for step in (h, -h, 2.0 * h, -2.0 * h):
        moved = list(wide_args)
        moved[probe.index] = p + step * probe.direction
        outs.append(f(*moved))
    # The differences are taken element by element before the sum with `ct`: an output
    # the step does not change cancels exactly, whatever its size (a large bias).
    scalars = [_inner(wide_ct, outs[0] - outs[1], xp), _inner(wide_ct, outs[2] - outs[3], xp)]
    if is_number(probe.direction):
        scalars += [_inner(g, probe.direction, xp), 0.0]
        moved_finite = probe.direction != 0
    else:
        # The moved elements only (a NaN elsewhere is another probe's to find), and those
        # not finite counted apart: they never pass, and they poison no sum.
        moved_finite = xp.logical_and(probe.direction != 0, xp.isfinite(g))
        scalars.append(_inner(_zero_where_not(moved_finite, g, xp), probe.direction, xp))
        moved_bad = xp.logical_and(probe.direction != 0, xp.logical_not(xp.isfinite(g)))
        scalars.append(xp.sum(xp.astype(moved_bad, xp.float64)))
    scalars.append(_rounding_collected(wide_ct, outs[:2], outs[0] != outs[1], xp))
    scalars.append(_rounding_collected(wide_ct, outs[:2], True, xp))
    scalars.append(_rounding_collected(g, (p,), moved_finite, xp))
    scalars.append(probe.unit)
    return scalars


def _probe_verdict(
    values: np.ndarray[Any, Any], probe: _Probe, h: float, n: int, rtol: float, atol: float | None
) -> tuple[str | None, bool]:
    """None when the probe passes, else what is wrong (values per unit of the element); and
    whether the truncation error dominated its bound (then a smaller step can tell)."""
    near, far, analytic, not_finite, lost_out, every_out, lost_in, unit = values
    numeric = near / (2.0 * h)
    if not_finite > 0:
        s = "s" if not_finite != 1 else ""
        return f"the gradient is infinite or NaN at {int(not_finite)} element{s} this probe moves", False
    if atol is None:
        # What the difference quotient can lose: the rounding of the outputs the step
        # moved and of the moved point, over the step; the outputs it left unchanged,
        # each of which moved by less than half its last place (or not at all); and the
        # truncation error estimated from the quotient with twice the step (Richardson).
        unchanged = max(every_out - lost_out, 0.0) / 2.0
        rounding = (
            (
                _ROUNDING * math.sqrt(n) * (math.sqrt(max(lost_out, 0.0)) + math.sqrt(max(lost_in, 0.0)))
                + _UNRESOLVED * math.sqrt(unchanged)
            )
            * _EPS64
            / h
        )
        truncation = _TRUNCATION_MARGIN * abs(far / (4.0 * h) - numeric) / 3.0
        atol, bends = rounding + truncation, truncation > rounding
    else:
        bends = False
    error = abs(numeric - analytic)
    bound = atol + rtol * abs(analytic)
    if math.isfinite(error) and math.isfinite(bound) and error <= bound:
        return None, False
    text = (
        f"analytic {analytic / unit:.10g}, numeric {numeric / unit:.10g}, error {error / unit:.3g} "
        f"> atol {atol / unit:.3g} + rtol {rtol:.3g} x |analytic|"
    )
    return text, bends


def check_vjp(
    f: Callable[..., Array],
    vjp: Callable[..., Sequence[Array | None]],
    args: Sequence[Any],
    *,
    mode: str = "fast",
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    directions: int = 3,
    argnames: Sequence[str] | None = None,
) -> None:
    """Check a hand-written VJP against central finite differences in float64.

    Parameters
    ----------
    f : callable
        ``f(*args) -> array``.
    vjp : callable
        ``vjp(cotangent, *args) -> grads``, one gradient per argument, ``None`` for an
        argument not checked.
    args : sequence
        The point: arrays of one library (a Python number may stand for a scalar).
        A float64 (complex128) copy is made on the arrays' own device.
    mode : {"fast", "full"}
        ``"full"``: every element of every checked argument (real and imaginary parts
        apart); for small inputs. ``"fast"``: `directions` random directions per
        argument; its cost does not grow with the size.
    seed : int
        Seed of the generator that draws the cotangent and the directions.
    rtol, atol : float, optional
        A probe passes when ``|numeric - analytic| <= atol + rtol * |analytic|``.
        Default `rtol`: 1e-6. Default `atol`: what the difference quotient can lose
        on this probe (see Notes).
    directions : int
        Random directions per argument in fast mode.
    argnames : sequence of str, optional
        Names of the arguments, for messages.

    Raises
    ------
    AssertionError
        For a gradient of the wrong shape, dtype or device; a gradient in the arguments'
        dtype that is infinite or NaN where the float64 one is finite and within that
        dtype's range; `vjp` raising on float64 copies of the arguments; or a probe out
        of tolerance (a non-finite gradient or difference quotient never passes). The
        message names the argument, the element (full mode) or the direction (fast
        mode), the analytic and numeric values, the error, the tolerances and the seed;
        after a fast-mode failure on small inputs, the elements that full mode finds wrong.
    ValueError
        For an unknown `mode`.
    TypeError
        Where the backend has no float64 (complex128) to take the differences in (MLX has
        no complex128; JAX without x64 enabled no float64); `check_adjoint` needs none.

    Notes
    -----
    The scalar error is ``e(p) = Re <ct, f(p)>``. Its derivative along ``v`` is
    ``Re <g, v>`` with ``g = vjp(ct)`` (PyTorch's convention for complex inputs),
    compared with ``<ct, f(p + h v) - f(p - h v)> / 2h``, ``h = cbrt(eps)``, where each
    element of the direction ``v`` is scaled by ``max(1, |p|)`` of its own element of the
    point (full mode: ``v`` is that element alone), so a large element does not make the
    step of the small ones large. The outputs are subtracted element by element first,
    so that an output the step leaves unchanged cancels exactly however large it is.

    The default `atol` is the error that quotient can carry, not a multiple of the size
    of ``<ct, f>``: the rounding of the outputs the step moves,
    ``8 sqrt(n) eps sqrt(sum |ct|^2 (|f(p + h v)|^2 + |f(p - h v)|^2)) / h`` over the
    elements that differ (``n`` the longest axis involved), the same for the rounding of
    the moved point, ``|g| |p|`` over the elements ``v`` moves, plus twice the truncation
    error estimated from the quotient with step ``2h``: ``|D(2h) - D(h)| / 3``. So an
    output offset (a bias of 1e6) does not hide a 0.1% error in a gradient.

    The values compared are float64's; the gradients in the arguments' own dtype are held
    to them for dtype, shape, device and finiteness.
    """
    if mode not in ("fast", "full"):
        msg = f"`mode` must be 'fast' or 'full'; got {mode!r}"
        raise ValueError(msg)
    xp = _namespace(args)
    rng = _generator(seed)
    device = _device(args)
    out = f(*args)
    ct = _random_like(out, rng, xp)
    narrow_grads = vjp(ct, *args)
    _check_structure(narrow_grads, args, argnames, xp)

    narrow = not all(_is_wide(a, xp) for a in args)
    try:
        wide_args = [_widen(a, xp) for a in args]
        wide_ct = _widen(ct, xp)
    except TypeError as exc:
        msg = f"check_vjp takes its finite differences in float64 (complex128), and {exc}: use check_adjoint"
        raise TypeError(msg) from exc
    grads = _call_wide(vjp, "vjp", wide_ct, *wide_args) if narrow else narrow_grads
    if narrow:
        _check_structure(grads, wide_args, argnames, xp, _ON_WIDE)
    checked = [i for i, g in enumerate(grads) if g is not None and args[i] is not None]
    if not checked:
        return
    probes = _probes(wide_args, checked, mode, directions, rng, xp)
    h = float(np.cbrt(_EPS64))
    dtype = next(a.dtype for a in args if a is not None and not is_number(a))
    dtype_max = float(xp.finfo(dtype).max)
    lost = [(f"gradient of {_name(i, argnames)}", narrow_grads[i], grads[i]) for i in checked] if narrow else []

    n = _max_axis(_shape(out), *(_shape(a) for a in args if a is not None))
    rtol_ = 1e-6 if rtol is None else rtol
    failures: dict[int, str] = {}
    extra = [_lost_in_range(_widen(nv, xp), wv, dtype_max, xp, device) for _, nv, wv in lost]
    pending = list(range(len(probes)))
    # A probe out of tolerance whose bound the truncation error dominated (the function
    # bends within one step) is tried again with smaller steps, while that holds; it
    # passes at a step whose own bound it meets. Rounding-bound probes are not retried:
    # a smaller step would only widen their bound.
    for step in (h / _RETRY**level for level in range(_RETRIES + 1)):
        scalars = [s for k in pending for s in _probe_scalars(f, wide_args, wide_ct, grads, probes[k], step, xp)]
        values = _evaluate(scalars + extra, xp, device)
        if extra:
            _lost_values_check(lost, values[len(scalars) :].real, dtype, dtype_max)
            extra = []
        still = []
        for j, k in enumerate(pending):
            text, bends = _probe_verdict(
                values[_PER_PROBE * j : _PER_PROBE * (j + 1)].real, probes[k], step, n, rtol_, atol
            )
            if text is None:
                failures.pop(k, None)
                continue
            failures.setdefault(k, f"{_name(probes[k].index, argnames)}, {probes[k].label}: {text}")
            if bends:
                still.append(k)
        pending = still
        if not pending:
            break
    failures = {k: failures[k] for k in sorted(failures)}
    ordered = list(failures.values())
    if not ordered:
        return
    shown = "\n  ".join(ordered[:_REPORTED])
    more = f"\n  ... and {len(ordered) - _REPORTED} more" if len(ordered) > _REPORTED else ""
    msg = f"gradient check failed ({mode} mode, seed={seed}, step h: {h:.3g} x max(1, |element|)):\n  {shown}{more}"
    small = all(math.prod(_shape(args[i])) <= _FULL_RERUN_LIMIT for i in checked)
    if mode == "fast" and small:
        try:
            check_vjp(f, vjp, args, mode="full", seed=seed, rtol=rtol, atol=atol, argnames=argnames)
        except AssertionError as full:
            msg += f"\nfull mode points at the elements:\n{full}"
        else:
            msg += "\nfull mode finds no wrong element"
    raise AssertionError(msg)
