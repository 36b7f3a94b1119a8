"""What a backward returned, held to its arguments: one gradient per argument, of the
argument's shape, dtype and device, and finite where float64 says it can be."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._backends import device_of, to_numpy
from .._dispatch import describe, is_number
from .._typing import Namespace
from ._common import as_array, name, shape
from ._sums import quiet, zero_where_not

ON_WIDE = " (the float64 copies' run)"


def gradients(
    grads: Any, args: Sequence[Any], names: Sequence[str] | None, xp: Namespace, where: str = ""
) -> list[Any]:
    """`grads` as a list, each NumPy scalar a 0-d array; fails unless each is ``None`` or of
    its argument's shape, dtype and device."""
    if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
        got = len(grads) if isinstance(grads, (tuple, list)) else describe(grads)
        msg = f"vjp must return one gradient (or None) per argument{where}: {len(args)}; got {got}"
        raise AssertionError(msg)
    grads = [as_array(g, a, xp) for g, a in zip(grads, args, strict=True)]
    for i, (g, a) in enumerate(zip(grads, args, strict=True)):
        if g is None:
            continue
        if is_number(g):
            if is_number(a):
                continue
            msg = f"gradient of {name(i, names)}{where} is a number; expected an array of shape {shape(a)}"
            raise AssertionError(msg)
        if not hasattr(g, "shape") or not hasattr(g, "dtype"):
            msg = f"gradient of {name(i, names)}{where} is a {describe(g)}; expected an array of shape {shape(a)}"
            raise AssertionError(msg)
        if tuple(g.shape) != shape(a):
            msg = f"gradient of {name(i, names)}{where} has shape {tuple(g.shape)}; expected {shape(a)}"
            raise AssertionError(msg)
        if is_number(a):
            continue
        if g.dtype != a.dtype:
            msg = f"gradient of {name(i, names)}{where} has dtype {g.dtype}; expected {a.dtype}"
            raise AssertionError(msg)
        dg, da = device_of(g), device_of(a)
        if dg is not None and da is not None and dg != da:
            msg = f"gradient of {name(i, names)}{where} is on device {dg}; expected {da}"
            raise AssertionError(msg)
    return grads


@quiet
def lost_in_range(narrow: Any, wide: Any, dtype_max: float, xp: Namespace, device: Any) -> Any:
    """How many elements are infinite or NaN in `narrow` where `wide` is finite and within range."""
    if is_number(narrow) and is_number(wide):
        return float(not math.isfinite(abs(narrow)) and math.isfinite(abs(wide)) and abs(wide) <= dtype_max)
    narrow, wide = (xp.asarray(v, device=device) if is_number(v) else v for v in (narrow, wide))
    lost = xp.logical_and(xp.logical_not(xp.isfinite(narrow)), xp.isfinite(wide))
    in_range = xp.abs(zero_where_not(xp.isfinite(wide), wide, xp)) <= dtype_max
    return xp.sum(xp.astype(xp.logical_and(lost, in_range), xp.float64))


def _first_lost(narrow: Any, wide: Any, dtype_max: float) -> str:
    """Where `narrow` first lost a finite, representable value of `wide` (for a message)."""
    n, w = (np.asarray(v if is_number(v) else to_numpy(v)) for v in (narrow, wide))
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(n) & np.isfinite(w) & (np.abs(np.where(np.isfinite(w), w, 0)) <= dtype_max)
    where = np.argwhere(bad)
    count = len(where)
    index = tuple(int(i) for i in where[0])
    return f"{n[index]} at element {index} ({count} element{'s' if count != 1 else ''}) where float64 gives {w[index]}"


def check_lost(pairs: list[tuple[str, Any, Any]], counts: np.ndarray[Any, Any], dtype: Any, dtype_max: float) -> None:
    """Fails for the first (label, narrow, wide) pair whose count of lost values is not 0."""
    for (label, narrow, wide), count in zip(pairs, counts, strict=True):
        if count > 0:
            msg = (
                f"{label} is not finite in {dtype}: {_first_lost(narrow, wide, dtype_max)}, "
                f"a value {dtype} holds (its largest is {dtype_max:.6g})"
            )
            raise AssertionError(msg)
