"""`check_adjoint`: the dot-product identity between a forward-mode and a backward function."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import array_api_compat.numpy
import numpy as np

from .._backends import device_of
from .._dispatch import is_number
from .._typing import Array, Namespace
from ._common import (
    UserCalls,
    Written,
    as_array,
    check_options,
    first_array,
    generator,
    is_complex,
    is_wide,
    max_axis,
    name,
    namespace,
    random_like,
    shape,
    widen,
    zeros_but,
)
from ._results import ON_WIDE, check_lost, gradients, lost_in_range
from ._sums import (
    accuracy_at,
    accuracy_note,
    evaluate,
    float64_accuracy,
    inner,
    magnitude,
    nonfinite_count,
    on_host,
    pair_size,
    quiet,
    zero_where_not,
)

_HOST: Namespace = array_api_compat.numpy  # where sums go that the backend cannot hold
# The rounding each side of an identity carries is measured by its linearity defect: the
# tolerance is `_SPREAD` times that, where it exceeds the rounding floor (check_adjoint's Notes).
_SPREAD = 4.0
_NARROW_SPREAD = 8.0
_COTANGENT_SPLITS = 3  # the narrow run's cotangent split this many times (see `_split_all`)
# How a float64 identity's reference difference in float32 scales (see `_against_reference`).
_ABSORPTION = 100.0
# The rounding floors: the float64 identity's in units of eps sqrt(n) times its worst-case
# scale; the narrow identity's in units of eps times the rounding's statistical size.
_WIDE_RTOL = 8.0
_NARROW_RTOL = 8.0
_PER_PROBE = 9  # the scalars each identity evaluates: see `_probe_scalars`


@dataclass
class _Run:
    """The user's functions at one copy of the point: float64 copies of the arguments, or
    the arguments themselves, with the cotangent `ct` and its gradients. `copies` names the
    copies' dtype (errors there are failed checks); `narrow`: values narrower than float64,
    summed in float64."""

    args: list[Any]
    ct: Any
    grads: list[Any]
    eps: float
    copies: str | None
    narrow: bool
    split_grads: list[tuple[list[Any], list[Any]]] | None = None  # at the cotangent's parts (narrow)
    out_of_range: Any = None  # how many of its values float32 does not hold (`_out_of_range`)


@dataclass
class _Identity:
    """The identity for argument `index` along tangent `t` in `run`, `t` split as `t_a + t_b`;
    its `reference` is the same ``<ct, J t>`` in another precision, along `t_ref`."""

    label: str
    index: int
    run: _Run
    t: Any
    split: tuple[Any, Any] = field(default=(None, None))
    reference: _Run | None = None
    t_ref: Any = None


class _Jvps:
    """The user's jvp along one argument's tangent at one run's point, each computed once."""

    def __init__(self, calls: UserCalls) -> None:
        self.calls = calls
        self.seen: dict[tuple[int, int, int], Any] = {}

    def __call__(self, run: _Run, i: int, t: Any) -> Any:
        key = (id(run), i, id(t))
        if key not in self.seen:
            tangents = zeros_but(run.args, {i: t}, self.calls.xp)
            self.seen[key] = self.calls.jvp(tangents, run.args, copies=run.copies)
        return self.seen[key]


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
        ``jvp(tangents, *args) -> tangent_out``, one tangent per argument (``None``
        meaning zero). For a linear function, ``lambda t, *a: f(*t)``.
    vjp : callable
        ``vjp(cotangent, *args) -> grads``, one gradient per argument, ``None`` for an
        argument not checked.
    args : sequence
        The point: arrays of one library (a Python number may stand for a scalar).
    seed : int
        Seed (non-negative) of the generator that draws tangents and cotangents.
    rtol, atol : float, optional
        A probe passes when ``|lhs - rhs| <= atol + max(rtol * scale, k * rounding)``
        (docs/testing.md). Default `rtol`: ``8 eps64 sqrt(n)`` (float64 identity, ``n``
        the longest axis) and ``8 eps`` of the arguments' dtype (narrow identity).
        Default `atol`: 0 in float64; in a narrow dtype, the rounding of its subnormals.
    argnames : sequence of str, optional
        Names of the arguments (one each), for messages.

    Raises
    ------
    AssertionError
        When the identity fails (both sides, the tolerance and the seed, or that the
        point is too ill-conditioned to check); a gradient of the wrong shape, dtype or
        device, or not finite where float64's is; `jvp` or `vjp` raising on float64
        copies, or writing into an array it was handed.
    TypeError, ValueError
        For arguments of the check that are not what it takes, naming the parameter.

    Notes
    -----
    ``Re <ct, J t> = Re <J* ct, t>``, ``<u, v> = sum(conj(u) v)``: the real inner
    product, ``J*`` the adjoint of ``J`` as a real-linear map (PyTorch's convention), so
    maps that are not holomorphic (``abs``, ``conj``) pass too (docs/math.md). Each
    argument is probed alone, on float64 copies and, where narrower, in its own dtype.
    The tolerance follows the rounding of the user's computation as measured at this
    point (linearity defects, and ``<ct, J t>`` in a second precision), so a softmax's
    cancellation gets the tolerance it needs and a slip still fails by orders of
    magnitude; docs/testing.md says how.
    """
    args, seed, names = check_options(
        {"jvp": jvp, "vjp": vjp}, args, seed=seed, rtol=rtol, atol=atol, argnames=argnames
    )
    xp = namespace(args)
    rng = generator(seed)
    calls = UserCalls(xp, names, jvp=jvp, vjp=vjp)
    tangents = [None if a is None else random_like(a, rng, xp) for a in args]
    out_t = calls.jvp(tangents, args, copies=None)
    ct = random_like(out_t, rng, xp)
    grads = gradients(calls.vjp(ct, args, copies=None), args, names, xp)
    checked = [i for i, g in enumerate(grads) if g is not None and args[i] is not None]
    if not checked:
        return
    runs = _runs(calls, args, ct, grads, checked, rng)
    identities = _identities(runs, tangents, checked, names, xp)
    _split_all(identities, runs, calls, rng)
    own, wide, _ = runs
    values = _evaluated(identities, runs, checked, calls)
    n = max_axis(shape(out_t), *(shape(a) for a in args if a is not None))
    for k, identity in enumerate(identities):
        size = math.prod(shape(out_t)) + math.prod(shape(identity.t))
        rtol_, atol_ = _floor(identity.run, n, rtol, atol, size, xp)
        elsewhere = identity.run is own and wide is not None
        verdict = _verdict(values[_PER_PROBE * k : _PER_PROBE * (k + 1)], identity, rtol_, atol_, elsewhere=elsewhere)
        if verdict is not None:
            msg = f"adjoint identity failed (seed={seed}, dtype={first_array(args).dtype}), {identity.label}: {verdict}"
            raise AssertionError(msg)


def _split_all(
    identities: list[_Identity], runs: tuple[_Run | None, ...], calls: UserCalls, rng: np.random.Generator
) -> None:
    """The splits that measure rounding: each tangent whose identity takes the jvp's
    linearity defect (float64, or narrow without a float64 reference), and the narrow
    run's cotangent, whose backward's defect a narrow identity takes."""
    xp = calls.xp
    for identity in identities:
        if not identity.run.narrow or identity.reference is None:
            identity.split = _split(identity.t, rng, xp)
    own, wide, _ = runs
    if own is not None and wide is not None:
        own.split_grads = []
        for _ in range(_COTANGENT_SPLITS):
            parts = _split(own.ct, rng, xp)
            found = [gradients(calls.vjp(part, own.args, copies=None), own.args, calls.names, xp) for part in parts]
            own.split_grads.append((found[0], found[1]))


def _evaluated(identities: list[_Identity], runs: tuple[_Run | None, ...], checked: list[int], calls: UserCalls) -> Any:
    """Every identity's scalars (`_probe_scalars`), on the host, computed in one go; fails
    where a gradient in the arguments' dtype lost a value float64 holds."""
    xp = calls.xp
    jvps = _Jvps(calls)
    scalars = [s for identity in identities for s in _probe_scalars(identity, jvps, xp)]
    own, wide, _ = runs
    lost = []
    if own is not None and wide is not None:
        lost = [(f"gradient of {name(i, calls.names)}", own.grads[i], wide.grads[i]) for i in checked]
    first = first_array((own or identities[0].run).args)
    dtype = first.dtype
    dtype_max = float(xp.finfo(dtype).max)
    scalars += [lost_in_range(widen(nv, xp), wv, dtype_max, xp, device_of(first)) for _, nv, wv in lost]
    values = evaluate(scalars, xp)
    check_lost(lost, values[_PER_PROBE * len(identities) :], dtype, dtype_max)
    return values


def _runs(
    calls: UserCalls, args: tuple[Any, ...], ct: Any, grads: list[Any], checked: list[int], rng: np.random.Generator
) -> tuple[_Run | None, _Run | None, _Run | None]:
    """The run at the arguments' own dtype (where narrower than float64, or where the
    backend has no float64), the run at float64 copies (where the backend has float64), and
    the float64 run's reference at float32 (complex64) copies: the arguments' own run where
    that is float32, else copies on which only the jvp runs."""
    xp = calls.xp
    narrow = not all(is_wide(a, xp) for a in args)
    dtype = first_array(args).dtype
    own = _Run(list(args), ct, grads, float(xp.finfo(dtype).eps), copies=None, narrow=True)
    try:
        wide_args = [widen(a, xp) for a in args] if narrow else list(args)
        wide_ct = widen(ct, xp) if narrow else ct
    except TypeError:  # no float64 on this backend: the arguments' own dtype alone
        return own, None, None
    wide_grads = grads
    if narrow:
        found = calls.vjp(wide_ct, wide_args, copies="float64")
        wide_grads = gradients(found, wide_args, calls.names, xp, ON_WIDE)
    battery = float64_accuracy(xp, device_of(first_array(args)))
    copies = "float64" if narrow else None

    def jvp_at(moved: list[Any], direction: list[Any]) -> Any:
        given = {i: d for i, d in enumerate(direction) if d is not None}
        return calls.jvp(zeros_but(moved, given, xp), moved, copies=copies)

    eps = accuracy_at(jvp_at, wide_args, checked, battery, rng, xp)
    wide = _Run(wide_args, wide_ct, wide_grads, eps, copies=copies, narrow=False)
    if narrow and dtype in (xp.float32, getattr(xp, "complex64", None)):
        return own, wide, own
    low_args = [_lowered(a, xp) for a in wide_args]
    low = _Run(low_args, _lowered(wide_ct, xp), [], float(xp.finfo(xp.float32).eps), copies="float32", narrow=True)
    return (own if narrow else None), wide, low


@quiet  # values past float32's range become infinities there: `_out_of_range` counts them
def _lowered(a: Any, xp: Namespace) -> Any:
    """A float32 (complex64) copy of `a`; numbers stay numbers."""
    if a is None or is_number(a):
        return a
    return xp.astype(a, xp.complex64 if is_complex(a, xp) else xp.float32)


def _identities(
    runs: tuple[_Run | None, _Run | None, _Run | None],
    tangents: list[Any],
    checked: list[int],
    names: Sequence[str] | None,
    xp: Namespace,
) -> list[_Identity]:
    """The float64 identity of each checked argument (its reference at float32 copies), then
    the narrow ones (their reference at float64 copies), along the same random tangent and
    along the gradient's own direction."""
    own, wide, low = runs
    identities = []
    wide_t = [t if wide is None or wide.copies is None else widen(t, xp) for t in tangents]
    if wide is not None:
        for i in checked:
            t_low = tangents[i] if low is own else _lowered(wide_t[i], xp)
            label = f"{name(i, names)} alone, float64"
            identities.append(_Identity(label, i, wide, wide_t[i], reference=low, t_ref=t_low))
    if own is not None:
        dtype = first_array(own.args).dtype
        for i in checked:
            direction = None if is_number(own.args[i]) else _own_direction(own.grads[i], xp)
            for label, t in (("random", tangents[i]), ("along its gradient", direction)):
                if t is None:
                    continue
                identity = _Identity(f"{name(i, names)} alone, {label}, {dtype}", i, own, t)
                if wide is not None:
                    identity.reference = wide
                    identity.t_ref = wide_t[i] if t is tangents[i] else widen(t, xp)
                identities.append(identity)
    return identities


@quiet
def _own_direction(g: Any, xp: Namespace) -> Any:
    """``g / max|g|`` in g's dtype (zeros stay zeros), computed lazily where the backend is lazy."""
    if math.prod(g.shape) == 0:
        return None
    finite = xp.isfinite(g)
    size = xp.max(xp.abs(zero_where_not(finite, g, xp)))
    size = xp.where(size > 0, size, xp.ones_like(size))
    return as_array(zero_where_not(finite, g, xp) / xp.astype(size, g.dtype), g, xp)


def _split(v: Any, rng: np.random.Generator, xp: Namespace) -> tuple[Any, Any]:
    """`v` as ``a + b``, `a` drawn at random: a linear function's results at `a` and `b` add
    up to its result at `v` but for rounding, whose size that measures."""
    a = random_like(v, rng, xp)
    return a, as_array(v - a, v, xp)


def _probe_scalars(identity: _Identity, jvps: _Jvps, xp: Namespace) -> list[Any]:
    """The user's jvp at what the identity needs (outside the checks' quiet arithmetic, so
    that NumPy's error settings reach it as the caller set them), then `_sums_of`."""
    run, i = identity.run, identity.index
    jt = jvps(run, i, identity.t)
    split = [jvps(run, i, v) for v in identity.split] if identity.split[0] is not None else []
    ref = identity.reference
    ref_jt = None
    if ref is not None:
        try:
            ref_jt = jvps(ref, i, identity.t_ref)
        except Written:
            raise
        except Exception:
            if ref.copies != "float32":
                raise
            ref = None  # the caller never asked for float32: no reference
    return _sums_of(identity, jt, split, ref, ref_jt, xp)


@quiet
def _sums_of(identity: _Identity, jt: Any, split: list[Any], ref: _Run | None, ref_jt: Any, xp: Namespace) -> list[Any]:
    """``Re <ct, J t>`` and ``Re <vjp(ct), t>``, the rounding floor's scale, how many values
    are not finite (narrow runs); the linearity defect (the jvp's ``|Re <ct, J t_a + J t_b
    - J t>|``, or in a narrow identity with a float64 reference the backward's ``|Re
    <vjp(ct_a) + vjp(ct_b) - vjp(ct), t>|``) and how many of its values are not finite
    (narrow runs); ``||ct|| ||t||``; the reference's ``Re <ct, J t>`` and how many of its
    values are doubtful (`_reference`).

    The float64 floor's scale is ``sum |ct J t| + sum |g t|``, sums of products that
    overflow only where the identity's own sums do; a narrow run's values are summed in
    float64, whose range their squares never leave. ``ct`` and ``t`` are the checks' own
    draws, of size 1.
    """
    run, i, t = identity.run, identity.index, identity.t
    reference = _reference(identity, ref, ref_jt, xp)
    ns, wider = _summing(run, xp)
    c, t, jt, g = (wider(v) for v in (run.ct, t, jt, run.grads[i]))
    if split:
        defects = [(c, wider(split[0]) + wider(split[1]) - jt)]
    elif run.split_grads is not None:
        # The backward's own defect, in the narrow identity alone: there the float64 identity
        # has already held the backward to be linear (a backward that is not would widen it).
        defects = [(wider(a[i]) + wider(b[i]) - g, t) for a, b in run.split_grads]
    else:
        defects = []
    if run.narrow:  # what is not finite is judged apart: out of the dtype's range, or a wrong backward
        count = nonfinite_count((jt, g, t), ns)
        defect_count = nonfinite_count([v for pair in defects for v in pair], ns)
        jt, g, t = (_finite(v, ns) for v in (jt, g, t))
        defects = [(_finite(u, ns), _finite(v, ns)) for u, v in defects]
        scale = pair_size(c, jt, ns) + pair_size(g, t, ns)
    else:  # not finite: the sums are, and the identity fails
        count = defect_count = 0.0
        scale = _total(magnitude(c, ns) * magnitude(jt, ns), ns) + _total(magnitude(g, ns) * magnitude(t, ns), ns)
    # The mean size over the splits: one split's defect can be small by chance.
    defect_size = sum(abs(inner(u, v, ns)) for u, v in defects) / max(len(defects), 1)
    resolution = pair_size(c, 1.0, ns) * pair_size(t, 1.0, ns)
    out = [inner(c, jt, ns), inner(g, t, ns), scale, count, defect_size, defect_count, resolution]
    out = [float(v) for v in out] if ns is _HOST else out
    return [*out, *reference]


def _total(a: Any, xp: Namespace) -> Any:
    return a if is_number(a) else xp.sum(a)


def _finite(a: Any, xp: Namespace) -> Any:
    return a if is_number(a) else zero_where_not(xp.isfinite(a), a, xp)


def _reference(identity: _Identity, ref: _Run | None, jt: Any, xp: Namespace) -> list[Any]:
    """The reference's ``Re <ct, J t>`` and how many of the values it rests on are not
    faithful: not finite, or (float32 copies of float64 values) out of float32's normal
    range; 0 and 1 where there is none, or the user's jvp does not run in float32."""
    if ref is None:
        return [0.0, 1.0]
    ns, wider = _summing(ref, xp)
    c, jt = wider(ref.ct), wider(jt)
    doubtful = nonfinite_count((jt,), ns)
    if ref.copies == "float32":  # copies of the float64 identity's values
        if identity.run.out_of_range is None:
            identity.run.out_of_range = _out_of_range((*identity.run.args, identity.run.ct), xp)
        doubtful = doubtful + identity.run.out_of_range + _out_of_range((identity.t,), xp)
    return [inner(c, _finite(jt, ns), ns), doubtful]


@quiet
def _out_of_range(values: Sequence[Any], xp: Namespace) -> Any:
    """How many elements of `values` are out of float32's normal range (not zero), where
    their float32 copies are infinite, zero or subnormal: not faithful."""
    finfo = xp.finfo(xp.float32)
    tiny, huge = float(finfo.smallest_normal), float(finfo.max)
    count: Any = 0.0
    for v in values:
        if v is None or is_number(v):
            continue
        size = xp.abs(v)
        bad = xp.logical_or(size > huge, xp.logical_and(size < tiny, size != 0))
        count = count + xp.sum(xp.astype(bad, xp.float64))
    return count


def _summing(run: _Run, xp: Namespace) -> tuple[Namespace, Callable[[Any], Any]]:
    """Where a run's sums are taken, and how its values get there: as they are (float64),
    widened to float64 on the backend, or to the host where the backend has no float64."""
    if not run.narrow:
        return xp, lambda v: v
    try:
        widen(first_array(run.args), xp)
    except TypeError:
        return _HOST, on_host
    return xp, lambda v: widen(v, xp)


def _against_reference(identity: _Identity, left: float, left_ref: float) -> float:
    """The rounding of <ct, J t> that its value in the reference's precision shows.

    A narrow identity's reference is float64: the difference is the narrow rounding itself,
    cancellation and absorption included, which the linearity defect may not see (a tiny
    term absorbed by a large one is absorbed alike at every tangent). A float64 identity's
    reference is float32: its difference, scaled by the ratio of the eps, is float64's
    rounding where that grows with eps; where float32 has lost most of its digits, float64
    may have lost as many to absorption, and the scale grows to 1 (at 1% lost).
    """
    difference = abs(left - left_ref)
    if identity.run.narrow:
        return difference
    assert identity.reference is not None
    lost = difference / abs(left) if left != 0 else math.inf
    return difference * min(1.0, max(identity.run.eps / identity.reference.eps, _ABSORPTION * lost))


def _floor(run: _Run, n: int, rtol: float | None, atol: float | None, size: int, xp: Namespace) -> tuple[float, float]:
    """(rtol, atol) of one identity's rounding floor; `size` counts the elements of J t and t."""
    if rtol is None:
        rtol = _NARROW_RTOL * run.eps if run.narrow else _WIDE_RTOL * run.eps * math.sqrt(n)
    if atol is None:
        atol = 0.0
        if run.narrow:
            # Subnormal values of the narrow dtype are rounded to an absolute spacing, not a
            # relative one: half of it per element of J t and of the gradient, summed statistically.
            finfo = xp.finfo(first_array(run.args).dtype)
            atol = _NARROW_RTOL * float(finfo.smallest_normal) * float(finfo.eps) * math.sqrt(size)
    return rtol, atol


@quiet
def _verdict(
    values: np.ndarray[Any, Any], identity: _Identity, rtol: float, atol: float, *, elsewhere: bool
) -> str | None:
    """None when the identity holds within its tolerance; else what is wrong. `elsewhere`:
    the float64 identity decides what this narrow one cannot resolve."""
    left, right, scale, nonfinite, defect, defect_nonfinite, resolution, left_ref, doubtful = values
    if identity.run.narrow and nonfinite > 0:
        if elsewhere:
            return None  # out of the dtype's range where float64 is not: the float64 identity decides
        return (
            f"J t or vjp(ct) holds {int(nonfinite)} infinite or NaN values, and this backend has no float64 "
            "to tell an overflow of the dtype from a wrong backward"
        )
    # The jvp's linearity defect measures the rounding of <ct, J t>; that of <vjp(ct), t>,
    # computed by the transposed steps, is taken to be as large (not vjp's own defect: a
    # backward that is wrong and not linear in its cotangent would widen its own tolerance).
    # A narrow identity whose float64 identity has held the backward to be linear takes the
    # backward's own defect, and <ct, J t>'s difference from float64.
    paired = identity.run.narrow and identity.reference is not None
    rounding = (defect if paired else 2.0 * defect) if defect_nonfinite == 0 else 0.0
    if doubtful == 0:
        rounding = max(rounding, _against_reference(identity, left, left_ref))
    rounding = rounding if math.isfinite(rounding) else 0.0
    spread = _NARROW_SPREAD if identity.run.narrow else _SPREAD
    tol = atol + max(rtol * scale, spread * rounding)
    error = abs(left - right)
    if math.isfinite(error) and math.isfinite(tol) and error <= tol:
        return None
    note = "" if identity.run.narrow else accuracy_note(identity.run.eps)
    # Unresolved: the sides' rounding as large as themselves.
    size = max(abs(left), abs(right))
    if math.isfinite(error) and spread * rounding >= size:
        if elsewhere:
            return None
        return (
            f"the point is too ill-conditioned to check: <ct, J t> = {left:.10g} and <vjp(ct), t> = {right:.10g} "
            f"carry a rounding error of about {rounding:.3g}, as large as themselves, so their difference says "
            "nothing of the backward; check at a better-conditioned point or in a wider dtype (or jvp or vjp is "
            f"not linear in its tangent or cotangent){note}"
        )
    # Both sides below the rounding of the vectors they are made from: what a formula's
    # absorption leaves (a softmax one-hot to within rounding computes t - <t, s> as 0 at
    # every tangent, so no rounding measure sees it), or a Jacobian that small.
    if math.isfinite(error) and size <= identity.run.eps * resolution:
        if elsewhere:
            return None
        return (
            f"the point may be too ill-conditioned to check: <ct, J t> = {left:.10g} and <vjp(ct), t> = "
            f"{right:.10g} differ by {error:.3g}, but both are below the rounding of the cotangent and tangent "
            f"they are made from (eps ||ct|| ||t|| = {identity.run.eps * resolution:.3g}), where a formula's "
            "absorption (a softmax one-hot to within rounding) leaves any value; check at a better-conditioned "
            f"point, or where the sides are that small by the Jacobian's own scale, with larger arguments{note}"
        )
    return (
        f"<ct, J t> = {left:.10g} but <vjp(ct), t> = {right:.10g}; |difference| = {error:.3g} > tolerance "
        f"{tol:.3g} (atol={atol:.3g} + the larger of rtol={rtol:.3g} x scale {scale:.4g} and "
        f"{spread:g} x the rounding measured, {rounding:.3g}){note}"
    )
