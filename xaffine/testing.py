"""Gradient checks for hand-written backward passes, on any Array API backend.

Two checks (see the Notes of each):

- :func:`check_adjoint`, the dot-product test ``<ct, J t> == <vjp(ct), t>``: exact up
  to rounding, in any dtype, float16 included;
- :func:`check_vjp`, central finite differences in float64 on the arrays' own backend
  and device, element by element (``mode="full"``) or along random directions
  (``mode="fast"``).

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

import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from ._backends import to_numpy
from ._typing import Array, Namespace
from ._validate import is_number, namespace_of

__all__ = ["check_adjoint", "check_vjp"]

_FULL_RERUN_LIMIT = 256
# A stream of its own: the probes never repeat data a test drew with the same seed.
_STREAM = 0x5EED_AFF1


def _generator(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM])


_REPORTED = 5


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
    return xp.asarray(host, dtype=dtype, device=array_api_compat.device(a))


def _wide_dtype(a: Any, xp: Namespace) -> Any:
    return xp.complex128 if _is_complex(a, xp) else xp.float64


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


def _inner(u: Any, v: Any, xp: Namespace) -> Any:
    """``sum(conj(u) * v)``: a 0-d array, or a number when both are numbers."""
    if is_number(u):
        product = complex(u).conjugate() * v if isinstance(u, complex) else u * v
    else:
        product = (xp.conj(u) if _is_complex(u, xp) else u) * v
    return product if is_number(product) else xp.sum(product)


def _max_abs(a: Any, xp: Namespace) -> Any:
    if is_number(a):
        return abs(a)
    return xp.max(xp.abs(a)) if math.prod(a.shape) else 0.0


def _norm(u: Any, xp: Namespace) -> Any:
    if is_number(u):
        return abs(u)
    return xp.sqrt(xp.sum(xp.abs(u) ** 2))


def _square(a: Any, xp: Namespace) -> Any:
    return abs(a) ** 2 if is_number(a) else xp.abs(a) ** 2


def _lost(weight: Any, values: Sequence[Any], moved: Any, xp: Namespace) -> Any:
    """``sum |weight|^2 sum_v |v|^2`` over the elements where `moved` holds.

    The squared size, in units of eps, of the rounding errors that ``<weight, .>``
    collects from `values` rounded where they change; elements that do not change
    carry none.
    """
    total = _square(weight, xp) * sum(_square(v, xp) for v in values)
    if isinstance(moved, (bool, np.bool_)):  # a Python (or NumPy) number moved
        total = total if moved else 0.0 * total
        return total if is_number(total) else xp.sum(total)
    return xp.sum(total * xp.astype(moved, xp.float64))


def _evaluate(scalars: list[Any], xp: Namespace, device: Any) -> np.ndarray[Any, Any]:
    """Compute a list of 0-d arrays and numbers on the host in one go.

    Complex128 only where a value is complex: some libraries (ndonnx) have no complex dtypes.
    """
    complex_ = any(isinstance(s, complex) if is_number(s) else _is_complex(s, xp) for s in scalars)
    wide = xp.complex128 if complex_ else xp.float64
    arrays = [
        xp.asarray(s, dtype=wide, device=device) if is_number(s) else xp.astype(xp.reshape(s, ()), wide)
        for s in scalars
    ]
    if not arrays:
        return np.zeros(0, dtype=complex)
    return to_numpy(xp.stack(arrays)).astype(complex)


def _check_structure(grads: Any, args: Sequence[Any], names: Sequence[str] | None, xp: Namespace) -> None:
    if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
        got = len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__
        msg = f"vjp must return one gradient (or None) per argument: {len(args)}; got {got}"
        raise AssertionError(msg)
    for i, (g, a) in enumerate(zip(grads, args, strict=True)):
        if g is None:
            continue
        if is_number(g):
            if is_number(a):
                continue
            msg = f"gradient of {_name(i, names)} is a number; expected an array of shape {_shape(a)}"
            raise AssertionError(msg)
        if tuple(g.shape) != _shape(a):
            msg = f"gradient of {_name(i, names)} has shape {tuple(g.shape)}; expected {_shape(a)}"
            raise AssertionError(msg)
        if is_number(a):
            continue
        if g.dtype != a.dtype:
            msg = f"gradient of {_name(i, names)} has dtype {g.dtype}; expected {a.dtype}"
            raise AssertionError(msg)
        dg, da = array_api_compat.device(g), array_api_compat.device(a)
        if dg is not None and da is not None and dg != da:
            msg = f"gradient of {_name(i, names)} is on device {dg}; expected {da}"
            raise AssertionError(msg)


def _device(args: Sequence[Any]) -> Any:
    return next(array_api_compat.device(a) for a in args if a is not None and not is_number(a))


def _max_axis(*shapes: tuple[Any, ...]) -> int:
    return max([1, *(d for s in shapes for d in s if isinstance(d, int))])


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
        The check passes when ``|lhs - rhs| <= atol + rtol * scale``, where ``scale``
        is ``||ct|| ||J t|| + sum_i ||g_i|| ||t_i||`` (a bound on both sides). The
        default `rtol` is ``8 * eps * sqrt(n)``, ``eps`` of the arguments' dtype and
        ``n`` the longest axis involved; the default `atol` is 0.
    argnames : sequence of str, optional
        Names of the arguments, for messages.

    Raises
    ------
    AssertionError
        When the identity fails, or a gradient has the wrong shape, dtype or device;
        the message gives both sides, the difference, the tolerance and the seed.

    Notes
    -----
    For ``J`` the Jacobian at `args`, ``<ct, J t> = <J^H ct, t>`` for every ``t`` and
    ``ct``, with ``<u, v> = sum(conj(u) * v)``. The identity holds exactly in exact
    arithmetic, so no step size is involved, and it works in float32 and float16.
    """
    xp = _namespace(args)
    rng = _generator(seed)
    device = _device(args)
    tangents = [None if a is None else _random_like(a, rng, xp) for a in args]
    tangent_out = jvp(tuple(tangents), *args)
    ct = _random_like(tangent_out, rng, xp)
    grads = vjp(ct, *args)
    _check_structure(grads, args, argnames, xp)
    if any(g is None and t is not None for g, t in zip(grads, tangents, strict=True)):
        tangents = [None if g is None else t for g, t in zip(grads, tangents, strict=True)]
        tangent_out = jvp(tuple(tangents), *args)
    pairs = [(g, t) for g, t in zip(grads, tangents, strict=True) if g is not None and t is not None]
    wide = [(_widen(ct, xp), _widen(tangent_out, xp))] + [(_widen(g, xp), _widen(t, xp)) for g, t in pairs]
    lhs = _inner(*wide[0], xp)
    rhs = [_inner(g, t, xp) for g, t in wide[1:]]
    norms = [_norm(u, xp) * _norm(v, xp) for u, v in wide]
    values = _evaluate([lhs, *rhs, *norms], xp, device)
    left, right = values[0], values[1 : 1 + len(rhs)].sum()
    scale = float(values[1 + len(rhs) :].real.sum())
    dtype = next(a.dtype for a in args if a is not None and not is_number(a))
    if rtol is None:
        n = _max_axis(_shape(tangent_out), *(_shape(a) for a in args if a is not None))
        rtol = 8.0 * float(xp.finfo(dtype).eps) * math.sqrt(n)
    tol = (atol or 0.0) + rtol * scale
    error = abs(left - right)
    if not error <= tol:  # also catches nan
        msg = (
            f"adjoint identity failed (seed={seed}, dtype={dtype}): <ct, J t> = {left:.10g} but "
            f"sum_i <vjp(ct)_i, t_i> = {right:.10g}; |difference| = {error:.3g} > tolerance "
            f"{tol:.3g} (rtol={rtol:.3g} x scale {scale:.4g} + atol={atol or 0.0:.3g})"
        )
        raise AssertionError(msg)


class _Probe:
    """One finite-difference probe: argument `index` moved along `direction`."""

    def __init__(self, index: int, label: str, direction: Any) -> None:
        self.index = index
        self.label = label
        self.direction = direction


def _probes(
    args: Sequence[Any], checked: list[int], mode: str, directions: int, rng: np.random.Generator, xp: Namespace
) -> list[_Probe]:
    probes = []
    for i in checked:
        a = args[i]
        if mode == "fast":
            probes += [_Probe(i, f"direction {d}", _random_like(a, rng, xp, wide=True)) for d in range(directions)]
            continue
        shape = _shape(a)
        units = (1.0, 1j) if _is_complex(a, xp) else (1.0,)
        for index in np.ndindex(*shape):
            for unit in units:
                part = "" if len(units) == 1 else (" (real part)" if unit == 1.0 else " (imaginary part)")
                if is_number(a):
                    probes.append(_Probe(i, f"the scalar{part}", unit))
                    continue
                host = np.zeros(shape, dtype=complex if len(units) == 2 else float)
                host[index] = unit
                direction = xp.asarray(host, dtype=_wide_dtype(a, xp), device=array_api_compat.device(a))
                probes.append(_Probe(i, f"element {index}{part}", direction))
    return probes


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
        For a gradient of the wrong shape, dtype or device, or a probe out of
        tolerance. The message names the argument, the element (full mode) or the
        direction (fast mode), the analytic and numeric values, the error, the
        tolerances and the seed; after a fast-mode failure on small inputs, the
        elements that full mode finds wrong.
    ValueError
        For an unknown `mode`.

    Notes
    -----
    The scalar error is ``e(p) = Re <ct, f(p)>``. Its derivative along ``v`` is
    ``Re <g, v>`` with ``g = vjp(ct)`` (PyTorch's convention for complex inputs),
    compared with ``<ct, f(p + h v) - f(p - h v)> / 2h``, ``h = cbrt(eps) max(1, max|p|)``,
    the outputs subtracted element by element first, so that an output the step leaves
    unchanged cancels exactly however large it is.

    The default `atol` is the error that quotient can carry, not a multiple of the size
    of ``<ct, f>``: the rounding of the outputs the step moves,
    ``8 sqrt(n) eps sqrt(sum |ct|^2 (|f(p + h v)|^2 + |f(p - h v)|^2)) / h`` over the
    elements that differ (``n`` the longest axis involved), the same for the rounding of
    the moved point, ``|g| |p|`` over the elements ``v`` moves, plus the truncation error
    estimated from the quotient with step ``2h``: ``|D(2h) - D(h)| / 3``. So an output
    offset (a bias of 1e6) does not hide a 0.1% error in a gradient.
    """
    if mode not in ("fast", "full"):
        msg = f"`mode` must be 'fast' or 'full'; got {mode!r}"
        raise ValueError(msg)
    xp = _namespace(args)
    rng = _generator(seed)
    device = _device(args)
    out = f(*args)
    ct = _random_like(out, rng, xp)
    _check_structure(vjp(ct, *args), args, argnames, xp)

    wide_args = [_widen(a, xp) for a in args]
    wide_ct = _widen(ct, xp)
    grads = vjp(wide_ct, *wide_args)
    checked = [i for i, g in enumerate(grads) if g is not None and args[i] is not None]
    if not checked:
        return
    probes = _probes(wide_args, checked, mode, directions, rng, xp)

    scales = [_max_abs(wide_args[i], xp) for i in checked]
    head = _evaluate(scales, xp, device).real
    eps = float(np.finfo(np.float64).eps)
    steps = {i: float(np.cbrt(eps)) * max(1.0, float(s)) for i, s in zip(checked, head, strict=True)}

    scalars = []
    for probe in probes:
        h, p, g = steps[probe.index], wide_args[probe.index], grads[probe.index]
        outs = []
        for step in (h, -h, 2.0 * h, -2.0 * h):
            moved = list(wide_args)
            moved[probe.index] = p + step * probe.direction
            outs.append(f(*moved))
        # The differences are taken element by element before the sum with `ct`: an output
        # the step does not change cancels exactly, whatever its size (a large bias).
        scalars += [_inner(wide_ct, outs[0] - outs[1], xp), _inner(wide_ct, outs[2] - outs[3], xp)]
        scalars.append(_inner(g, probe.direction, xp))
        scalars.append(_lost(wide_ct, outs[:2], outs[0] != outs[1], xp))
        scalars.append(_lost(g, (p,), probe.direction != 0, xp))
    values = _evaluate(scalars, xp, device)

    n = _max_axis(_shape(out), *(_shape(a) for a in args if a is not None))
    rtol_ = 1e-6 if rtol is None else rtol
    failures = []
    for k, probe in enumerate(probes):
        near, far, analytic, lost_out, lost_in = values[5 * k : 5 * k + 5].real
        h = steps[probe.index]
        numeric = near / (2.0 * h)
        if atol is None:
            # What the difference quotient can lose: the rounding of the outputs the step
            # moved and of the moved point, over the step, plus the truncation error
            # estimated from the quotient with twice the step (Richardson).
            rounding = 8.0 * math.sqrt(n) * eps * (math.sqrt(max(lost_out, 0.0)) + math.sqrt(max(lost_in, 0.0))) / h
            truncation = abs(far / (4.0 * h) - numeric) / 3.0
            atol_ = rounding + truncation
        else:
            atol_ = atol
        error = abs(numeric - analytic)
        if not error <= atol_ + rtol_ * abs(analytic):
            failures.append(
                f"{_name(probe.index, argnames)}, {probe.label}: analytic {analytic:.10g}, numeric {numeric:.10g}, "
                f"error {error:.3g} > atol {atol_:.3g} + rtol {rtol_:.3g} x |analytic|"
            )
    if not failures:
        return
    shown = "\n  ".join(failures[:_REPORTED])
    more = f"\n  ... and {len(failures) - _REPORTED} more" if len(failures) > _REPORTED else ""
    h_list = ", ".join(f"{steps[i]:.3g}" for i in checked)
    msg = f"gradient check failed ({mode} mode, seed={seed}, steps h: {h_list}):\n  {shown}{more}"
    small = all(math.prod(_shape(args[i])) <= _FULL_RERUN_LIMIT for i in checked)
    if mode == "fast" and small:
        try:
            check_vjp(f, vjp, args, mode="full", seed=seed, rtol=rtol, atol=atol, argnames=argnames)
        except AssertionError as full:
            msg += f"\nfull mode points at the elements:\n{full}"
        else:
            msg += "\nfull mode finds no wrong element"
    raise AssertionError(msg)
