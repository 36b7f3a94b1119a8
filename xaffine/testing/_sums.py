"""The checks' own arithmetic: inner products, sizes of rounding, and the host's view of them.

Sizes are computed so that they neither overflow nor underflow where the values they
measure do not (``max |a| sqrt(sum (|a| / max |a|)^2)``): a check on values near 1e155 or
1e-170 in float64 has a finite, non-zero tolerance.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from .._backends import to_numpy
from .._dispatch import is_number
from .._typing import Namespace
from ._common import as_array, element_scale, is_complex, random_like

_F = TypeVar("_F", bound=Callable[..., Any])
EPS64 = float(np.finfo(np.float64).eps)


# The checks' own sums and products meet the infinities and NaNs of a wrong gradient, and
# report them as failed checks; NumPy's warnings about them (pydata/sparse computes with
# its fill values too: inf * 0) would only repeat that, or, where warnings are errors,
# hide it. The user's functions run outside this.
def quiet(function: _F) -> _F:
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
            return function(*args, **kwargs)

    return cast(_F, run)


def zero_where_not(mask: Any, a: Any, xp: Namespace) -> Any:
    """Array `a` where `mask` holds, else 0, without computing with what is masked out."""
    return xp.where(mask, a, xp.zeros_like(a))


def magnitude(a: Any, xp: Namespace) -> Any:
    return abs(a) if is_number(a) else xp.abs(a)


@quiet
def inner(u: Any, v: Any, xp: Namespace) -> Any:
    """``Re sum(conj(u) * v)``, the real inner product (of C^n as R^2n): a real 0-d array, or
    a number when both are numbers."""
    if is_number(u) and is_number(v):
        return (complex(u).conjugate() * v).real
    if is_number(u):
        u, v = v, u  # the real part of conj(u) v is that of conj(v) u
    product = (xp.conj(u) if is_complex(u, xp) else u) * v
    if is_complex(product, xp):
        product = xp.real(product)
    return xp.sum(product)


@quiet
def root_sum_squares(a: Any, xp: Namespace) -> Any:
    """``sqrt(sum a^2)`` of non-negative `a` (an array or a number), scaled by its largest
    element so that the squares neither overflow nor underflow; 0 for an empty array."""
    if is_number(a):
        return a
    if math.prod(a.shape) == 0:
        return 0.0
    largest = xp.max(a)
    unit = xp.where(largest > 0, largest, xp.ones_like(largest))
    return largest * xp.sqrt(xp.sum((a / unit) ** 2))


@quiet
def pair_size(u: Any, v: Any, xp: Namespace) -> Any:
    """``sqrt(sum |u|^2 |v|^2)``: the statistical size of the rounding collected by ``<u, v>``,
    for values whose squares float64 holds (narrow values widened, the checks' own draws)."""
    product = magnitude(u, xp) * magnitude(v, xp)
    return abs(product) if is_number(product) else xp.sqrt(xp.sum(product * product))


@quiet
def nonfinite_count(values: Sequence[Any], xp: Namespace) -> Any:
    count: Any = 0.0
    for v in values:
        if v is None:
            continue
        if is_number(v):
            count = count + float(not math.isfinite(abs(v)))
        else:
            count = count + xp.sum(1.0 - xp.astype(xp.isfinite(v), xp.float64))
    return count


def evaluate(scalars: list[Any], xp: Namespace) -> np.ndarray[Any, Any]:
    """A list of real 0-d arrays of the backend and numbers, on the host as float64; the
    arrays computed in one go (one graph on a lazy backend)."""
    out = np.array([float(s) if is_number(s) else 0.0 for s in scalars])
    where = [k for k, s in enumerate(scalars) if not is_number(s)]
    if where:
        # The widest the backend has (MLX computes complex64's sums in float32).
        wide = next(getattr(xp, name) for name in ("float64", "float32") if hasattr(xp, name))
        arrays = [xp.astype(xp.reshape(scalars[k], ()), wide) for k in where]
        # A lazy backend (Dask) computes the sums here, in its own threads, which np.errstate
        # does not reach: its warnings about a wrong gradient's infinities are the checks' to
        # report, as failures.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[where] = to_numpy(xp.stack(arrays))
    return out


def on_host(a: Any) -> Any:
    """A float64 (complex128) NumPy copy of a backend array; numbers and None as they are."""
    if a is None or is_number(a):
        return a
    host = to_numpy(a)
    return host.astype(np.complex128 if np.iscomplexobj(host) else np.float64)


# What a backend's float64 functions are accurate to, by (namespace, device): measured once.
_ACCURACY: dict[tuple[int, str], float] = {}
_BATTERY_POINTS = np.linspace(-4.0, 4.0, 97) + 1.0 / 7.0
_OWN_ROUNDING = 16.0


def float64_accuracy(xp: Namespace, device: Any) -> float:
    """The largest relative error of the backend's float64 ``exp``, ``log``, ``sin``,
    ``tanh``, ``sqrt`` and division against NumPy's, or float64's eps if smaller.

    MLX computes ``exp`` of float64 to float32's accuracy (about 4e-7): the checks' float64
    tolerances and steps use the measured accuracy, and their messages say so.
    """
    key = (id(xp), str(device))
    if key not in _ACCURACY:
        _ACCURACY[key] = _measure(xp, device)
    return _ACCURACY[key]


@quiet
def _measure(xp: Namespace, device: Any) -> float:
    p = _BATTERY_POINTS
    expected = [np.exp(p), np.log(np.abs(p) + 0.5), np.sin(p), np.tanh(p), np.sqrt(np.abs(p)), p / 3.0]
    try:
        a = xp.asarray(p, dtype=xp.float64, device=device)
        found = [xp.exp(a), xp.log(xp.abs(a) + 0.5), xp.sin(a), xp.tanh(a), xp.sqrt(xp.abs(a)), a / 3.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = to_numpy(xp.stack(found))
    except Exception:  # a backend that cannot run the battery: float64 taken at its word
        return EPS64
    # Relative errors, but absolute ones below 1: near a zero of sin, float64's own rounding
    # of the point is a large relative error of the result.
    expected_ = np.stack(expected)
    error = float(np.max(np.abs(values - expected_) / np.maximum(np.abs(expected_), 1.0)))
    # A few units in the last place are float64's own: only a backend well past them counts.
    return error if math.isfinite(error) and error > _OWN_ROUNDING * EPS64 else EPS64


# A function meets the backend's less accurate float64 where its outputs' fourth difference
# along a random direction, steps of `_NOISE_STEP` max(1, |element|), is past `_MET` times
# what float64's rounding gives (sqrt(70) eps |f|: the fourth difference's gain on rounding
# that is independent from point to point). The step is wide of the plateaus of a function
# computed at float32's accuracy (MLX's exp holds one value over a float32 step of x), and
# narrow enough that a smooth function's fourth derivative (step^4 f = 1e-20 f) stays
# under float64's rounding; where it does not (a softmax of logits x30), the backend's
# measured accuracy is taken, as for a function that meets it.
_NOISE_STEP = 1e-5
_MET = 64.0


def accuracy_at(
    run: Callable[[list[Any], list[Any]], Any],
    args: Sequence[Any],
    checked: Sequence[int],
    battery: float,
    rng: np.random.Generator,
    xp: Namespace,
) -> float:
    """The float64 accuracy the checks take for one function at float64 copies `args`:
    float64's eps where the backend's float64 is accurate (`battery`, `float64_accuracy`,
    at float64's eps), and where it is not (MLX's ``exp``), still float64's eps where this
    function's outputs show float64's rounding alone (see `_MET`); else `battery`.

    ``run(moved, direction)`` is the function's output at the arguments `moved` (a jvp
    takes `direction`, ``None`` for the arguments not `checked`, as its tangents).
    """
    if battery <= EPS64:
        return EPS64
    direction = [
        random_like(a, rng, xp, wide=True) * element_scale(a, xp) if i in checked else None for i, a in enumerate(args)
    ]
    outs = []
    for k in (-2.0, -1.0, 0.0, 1.0, 2.0):
        step = k * _NOISE_STEP
        moved = [a if d is None else as_array(a + step * d, a, xp) for a, d in zip(args, direction, strict=True)]
        outs.append(run(moved, direction))
    fourth = (outs[0] + outs[4]) - 4.0 * (outs[1] + outs[3]) + 6.0 * outs[2]
    sizes = [root_sum_squares(magnitude(a, xp), xp) for a in (fourth, outs[2])]
    noise, size = evaluate(sizes, xp)
    return EPS64 if noise <= _MET * math.sqrt(70.0) * EPS64 * size else battery


def accuracy_note(eps: float) -> str:
    """What a message adds where the backend's float64 is less accurate than float64."""
    if eps <= EPS64:
        return ""
    return (
        f"; this backend's float64 functions are accurate to about {eps:.1e} (measured on exp, log, sin, "
        f"tanh, sqrt and division), not float64's {EPS64:.1e}, and the tolerances use that"
    )
