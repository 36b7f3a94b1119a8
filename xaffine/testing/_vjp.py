"""`check_vjp`: a backward against central finite differences in float64."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backends import device_of
from .._dispatch import is_number
from .._typing import Array, Namespace
from ._common import (
    UserCalls,
    as_array,
    check_options,
    element_scale,
    first_array,
    generator,
    is_complex,
    is_wide,
    max_axis,
    name,
    namespace,
    random_like,
    shape,
    wide_dtype,
    widen,
)
from ._results import ON_WIDE, check_lost, gradients, lost_in_range
from ._sums import (
    accuracy_at,
    accuracy_note,
    evaluate,
    float64_accuracy,
    inner,
    magnitude,
    quiet,
    root_sum_squares,
    zero_where_not,
)

_FULL_RERUN_LIMIT = 256
_REPORTED = 5
# Central differences: the rounding bound's factor, and the margin on the Richardson
# estimate of the truncation error.
_ROUNDING = 8.0
_TRUNCATION_MARGIN = 2.0
# Outputs a step leaves unchanged: half a unit in the last place each, times this margin.
_UNRESOLVED = 4.0
# Failing finite-difference probes are tried again, up to _RETRIES times, with the step
# divided by this while the truncation error dominates their bound, or multiplied by it
# while the step changed no output (what it moved was lost below float64's last place of
# an intermediate, as at a saturated tanh, where the outputs' own last place says nothing).
_RETRY = 16.0
_RETRIES = 4
_PER_PROBE = 8  # the scalars each finite-difference probe evaluates


@dataclass
class _Probe:
    """One finite-difference probe: argument `index` moved along `direction`.

    `unit` is the direction's length along the element probed in full mode (1 in fast
    mode), so that messages give derivatives per unit of that element.
    """

    index: int
    label: str
    direction: Any
    unit: Any = 1.0


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
    mode : {"fast", "full"}
        ``"full"``: every element of every checked argument (real and imaginary parts
        apart), for small inputs; ``"fast"``: `directions` random directions per argument.
    seed : int
        Seed (non-negative) of the generator that draws the cotangent and the directions.
    rtol, atol : float, optional
        A probe passes when ``|numeric - analytic| <= atol + rtol * |analytic|``. Default
        `rtol`: 1e-6; default `atol`: what the difference quotient can lose (Notes).
    directions : int
        Random directions per argument in fast mode (positive).
    argnames : sequence of str, optional
        Names of the arguments (one each), for messages.

    Raises
    ------
    AssertionError
        For a probe out of tolerance (the argument, the element or direction, both
        values, the tolerances, the seed; after a fast-mode failure on small inputs, the
        elements full mode finds wrong); a gradient of the wrong shape, dtype or device,
        or not finite where float64's is; `vjp` raising on float64 copies; `f` or `vjp`
        writing into an array it was handed.
    TypeError, ValueError
        For arguments of the check that are not what it takes, naming the parameter, and
        where the backend has no float64 (complex128) for the differences: use
        `check_adjoint`.

    Notes
    -----
    The derivative of ``Re <ct, f(p)>`` along ``v``, ``Re <vjp(ct), v>`` (PyTorch's
    convention), against ``<ct, f(p + h v) - f(p - h v)> / 2h``, ``h = cbrt(eps)`` times
    ``max(1, |p|)`` element by element. The default `atol` is what that quotient can
    carry: the rounding of the outputs the step moves and of the moved point, over
    ``h``, and the truncation error estimated with step ``2h``; where the backend's
    float64 is less accurate (MLX's ``exp``), eps is its measured accuracy
    (docs/testing.md).
    """
    args, seed, names = check_options(
        {"f": f, "vjp": vjp}, args, seed=seed, rtol=rtol, atol=atol, argnames=argnames, mode=mode, directions=directions
    )
    calls = UserCalls(namespace(args), names, f=f, vjp=vjp)
    rng = generator(seed)
    point = _point(calls, args, rng)
    if not point.checked:
        return
    probes = _probes(point.args, point.checked, mode, directions, rng, calls.xp)
    failures = _failures(calls, point, probes, 1e-6 if rtol is None else rtol, atol)
    if not failures:
        return
    msg = _message(failures, mode, seed, point.eps)
    if mode == "fast" and all(math.prod(shape(args[i])) <= _FULL_RERUN_LIMIT for i in point.checked):
        try:
            check_vjp(f, vjp, args, mode="full", seed=seed, rtol=rtol, atol=atol, argnames=argnames)
        except AssertionError as full:
            msg += f"\nfull mode points at the elements:\n{full}"
        else:
            msg += "\nfull mode finds no wrong element"
    raise AssertionError(msg)


def _message(failures: list[str], mode: str, seed: int, eps: float) -> str:
    shown = "\n  ".join(failures[:_REPORTED])
    more = f"\n  ... and {len(failures) - _REPORTED} more" if len(failures) > _REPORTED else ""
    return (
        f"gradient check failed ({mode} mode, seed={seed}, step h: {np.cbrt(eps):.3g} x max(1, |element|)"
        f"{accuracy_note(eps)}):\n  {shown}{more}"
    )


@dataclass
class _Point:
    """The float64 copies of the point and cotangent, the gradients there, the arguments
    checked, the gradients in the arguments' own dtype to hold to float64's (`lost`), the
    longest axis `n`, the float64 accuracy `eps`, and the arguments' dtype."""

    args: list[Any]
    ct: Any
    grads: list[Any]
    checked: list[int]
    lost: list[tuple[str, Any, Any]]
    n: int
    eps: float
    dtype: Any


def _point(calls: UserCalls, args: tuple[Any, ...], rng: np.random.Generator) -> _Point:
    xp, names = calls.xp, calls.names
    out = calls.f(args, copies=None)
    ct = random_like(out, rng, xp)
    narrow_grads = gradients(calls.vjp(ct, args, copies=None), args, names, xp)
    narrow = not all(is_wide(a, xp) for a in args)
    try:
        wide_args = [widen(a, xp) for a in args]
        wide_ct = widen(ct, xp)
    except TypeError as exc:
        msg = f"check_vjp takes its finite differences in float64 (complex128), and {exc}: use check_adjoint"
        raise TypeError(msg) from exc
    grads = narrow_grads
    if narrow:
        grads = gradients(calls.vjp(wide_ct, wide_args, copies="float64"), wide_args, names, xp, ON_WIDE)
    checked = [i for i, g in enumerate(grads) if g is not None and args[i] is not None]
    lost = [(f"gradient of {name(i, names)}", narrow_grads[i], grads[i]) for i in checked] if narrow else []
    n = max_axis(shape(out), *(shape(a) for a in args if a is not None))
    battery = float64_accuracy(xp, device_of(first_array(args)))
    eps = accuracy_at(lambda moved, _: calls.f(moved, copies="float64"), wide_args, checked, battery, rng, xp)
    return _Point(wide_args, wide_ct, grads, checked, lost, n, eps, first_array(args).dtype)


def _failures(calls: UserCalls, point: _Point, probes: list[_Probe], rtol: float, atol: float | None) -> list[str]:
    """What each failing probe says, in probe order.

    A probe out of tolerance whose bound the truncation error dominated (the function
    bends within one step) is tried again with smaller steps, while that holds, and one
    whose step changed no output with larger steps, while that holds (`_RETRY`); it passes
    at a step whose own bound it meets. Other rounding-bound probes are not retried: a
    smaller step would only widen their bound. The first step's message is the one kept.
    """
    xp = calls.xp
    dtype_max = float(xp.finfo(point.dtype).max)
    device = device_of(point.args[point.checked[0]])
    extra = [lost_in_range(widen(nv, xp), wv, dtype_max, xp, device) for _, nv, wv in point.lost]
    failures: dict[int, str] = {}
    steps = dict.fromkeys(range(len(probes)), float(np.cbrt(point.eps)))
    pending = list(steps)
    for _ in range(_RETRIES + 1):
        scalars = [s for k in pending for s in _probe_scalars(calls, point, probes[k], steps[k])]
        values = evaluate(scalars + extra, xp)
        if extra:
            check_lost(point.lost, values[len(scalars) :], point.dtype, dtype_max)
            extra = []
        still = []
        for j, k in enumerate(pending):
            text, factor = _probe_verdict(
                values[_PER_PROBE * j : _PER_PROBE * (j + 1)], steps[k], point.eps, point.n, rtol, atol
            )
            if text is None:
                failures.pop(k, None)
                continue
            failures.setdefault(k, f"{name(probes[k].index, calls.names)}, {probes[k].label}: {text}")
            if factor is not None:
                steps[k] *= factor
                still.append(k)
        pending = still
        if not pending:
            break
    return [failures[k] for k in sorted(failures)]


def _probes(
    args: Sequence[Any], checked: list[int], mode: str, directions: int, rng: np.random.Generator, xp: Namespace
) -> list[_Probe]:
    probes = []
    for i in checked:
        a = args[i]
        scale = element_scale(a, xp)
        if mode == "fast":
            probes += [
                _Probe(i, f"direction {d}", random_like(a, rng, xp, wide=True) * scale) for d in range(directions)
            ]
            continue
        units = (1.0, 1j) if is_complex(a, xp) else (1.0,)
        for index in np.ndindex(*shape(a)):
            for unit in units:
                part = "" if len(units) == 1 else (" (real part)" if unit == 1.0 else " (imaginary part)")
                if is_number(a):
                    probes.append(_Probe(i, f"the scalar{part}", unit * scale, scale))
                    continue
                host = np.zeros(shape(a), dtype=complex if len(units) == 2 else float)
                host[index] = unit
                one = xp.asarray(host, dtype=wide_dtype(a, xp), device=device_of(a))
                mask = xp.asarray(np.abs(host), dtype=xp.float64, device=device_of(a))
                probes.append(_Probe(i, f"element {index}{part}", one * scale, xp.sum(mask * scale)))
    return probes


@quiet
def _collected(weight: Any, value: Any, where: Any, xp: Namespace) -> Any:
    """``sqrt(sum |weight|^2 |value|^2)`` over the elements where `where` holds: the size, in
    units of eps, of the rounding that ``<weight, .>`` collects from `value` (a magnitude)."""
    total = magnitude(weight, xp) * value
    if isinstance(where, (bool, np.bool_)):  # a Python (or NumPy) number moved
        return root_sum_squares(total, xp) if where else 0.0 * root_sum_squares(total, xp)
    return root_sum_squares(zero_where_not(where, total, xp), xp)


def _probe_scalars(calls: UserCalls, point: _Point, probe: _Probe, h: float) -> list[Any]:
    """The `_PER_PROBE` scalars of one probe with step `h` (see `_probe_verdict`)."""
    xp, wide_ct = calls.xp, point.ct
    p, g = point.args[probe.index], point.grads[probe.index]
    outs = []
    for step in (h, -h, 2.0 * h, -2.0 * h):
        moved = list(point.args)
        moved[probe.index] = as_array(p + step * probe.direction, p, xp)
        outs.append(calls.f(moved, copies="float64"))
    # The differences are taken element by element before the sum with `ct`: an output
    # the step does not change cancels exactly, whatever its size (a large bias).
    scalars = [inner(wide_ct, outs[0] - outs[1], xp), inner(wide_ct, outs[2] - outs[3], xp)]
    if is_number(probe.direction):
        scalars += [inner(g, probe.direction, xp), 0.0]
        moved_finite: Any = probe.direction != 0
    else:
        # The moved elements only (a NaN elsewhere is another probe's to find), and those
        # not finite counted apart: they never pass, and they poison no sum.
        moved_finite = xp.logical_and(probe.direction != 0, xp.isfinite(g))
        scalars.append(inner(zero_where_not(moved_finite, g, xp), probe.direction, xp))
        moved_bad = xp.logical_and(probe.direction != 0, xp.logical_not(xp.isfinite(g)))
        scalars.append(xp.sum(xp.astype(moved_bad, xp.float64)))
    # Each output's size over the two evaluations: (|f+| + |f-|) / sqrt(2), which is
    # sqrt(|f+|^2 + |f-|^2) where they are equal, and never overflows where they do not.
    size = (magnitude(outs[0], xp) + magnitude(outs[1], xp)) / math.sqrt(2.0)
    changed = outs[0] != outs[1]
    if isinstance(changed, (bool, np.bool_)):  # the forward returned numbers
        unchanged: Any = not changed
    else:
        unchanged = xp.logical_not(changed)
    scalars.append(_collected(wide_ct, size, changed, xp))
    scalars.append(_collected(wide_ct, magnitude(outs[0], xp), unchanged, xp))
    scalars.append(_collected(g, magnitude(p, xp), moved_finite, xp))
    scalars.append(probe.unit)
    return scalars


@quiet
def _probe_verdict(
    values: np.ndarray[Any, Any], h: float, eps: float, n: int, rtol: float, atol: float | None
) -> tuple[str | None, float | None]:
    """None when the probe passes, else what is wrong (values per unit of the element); and
    the factor of a step that can tell where this one could not: smaller where the
    truncation error dominated the bound, larger where the step changed no output."""
    near, far, analytic, not_finite, moved_out, unchanged_out, moved_in, unit = values
    numeric = near / (2.0 * h)
    if not_finite > 0:
        s = "s" if not_finite != 1 else ""
        return f"the gradient is infinite or NaN at {int(not_finite)} element{s} this probe moves", None
    if atol is None:
        # What the difference quotient can lose: the rounding of the outputs the step
        # moved and of the moved point, over the step; the outputs it left unchanged,
        # each of which moved by less than half its last place (or not at all); and the
        # truncation error estimated from the quotient with twice the step (Richardson).
        rounding = (_ROUNDING * math.sqrt(n) * (moved_out + moved_in) + _UNRESOLVED * unchanged_out) * eps / h
        truncation = _TRUNCATION_MARGIN * abs(far / (4.0 * h) - numeric) / 3.0
        atol, bends = rounding + truncation, truncation > rounding
    else:
        bends = False
    error = abs(numeric - analytic)
    bound = atol + rtol * abs(analytic)
    if math.isfinite(error) and math.isfinite(bound) and error <= bound:
        return None, None
    text = (
        f"analytic {analytic / unit:.10g}, numeric {numeric / unit:.10g}, error {error / unit:.3g} "
        f"> atol {atol / unit:.3g} + rtol {rtol:.3g} x |analytic|"
    )
    return text, 1.0 / _RETRY if bends else _RETRY if moved_out == 0.0 and near == 0.0 else None
