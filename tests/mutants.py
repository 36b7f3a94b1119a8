"""A bank of wrong backward passes of the affine layer, and the correct cases beside them.

Each mutant is xaffine's own backward with one slip a person makes when deriving or
coding it. tests/test_testing.py holds `check_vjp` and `check_adjoint` to catch each one
as docs/testing.md's table says; benchmarks/check_power.py makes that table.

A mutant is wrong in every dtype (the same code runs on float64 copies), except the
``narrow only`` kinds, which are wrong only in the arguments' own dtype: they show what the
checks resolve from the narrow dtype's values alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.helpers import xp_of
from xaffine import affine, affine_backward, affine_jvp
from xaffine._backends import device_of as device

NAMES = ("x", "weight", "bias")
SCALES = (1e-1, 1e-2, 1e-3, 1e-4)
NARROW = ("float16", "bfloat16", "float32", "complex64")


def right_vjp(ct: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
    return tuple(affine_backward(ct, x, w, b))


def jvp(t: Any, x: Any, w: Any, b: Any) -> Any:
    return affine_jvp(x, w, b, t)[1]


@dataclass(frozen=True)
class Mutant:
    """A wrong backward: `make(stale)` gives ``vjp(ct, x, w, b)``; `stale` is an earlier batch."""

    name: str
    make: Callable[[Any], Callable[..., tuple[Any, ...]]]
    # `fits(x_shape, n)`: whether the slip is a wrong value at that shape (a transposed
    # gradient has another shape unless square, which the checks catch as a shape).
    structural: bool = True
    fits: Callable[[tuple[int, ...], int], bool] = lambda x_shape, n: True
    needs_complex: bool = False
    narrow_only: bool = False
    scale: float | None = None


def _edit(which: int, change: Callable[[Any, Any, tuple[Any, ...]], Any]) -> Callable[[Any], Callable[..., Any]]:
    def make(stale: Any) -> Callable[..., tuple[Any, ...]]:
        def vjp(ct: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
            g = list(right_vjp(ct, x, w, b))
            g[which] = change(xp_of(ct), g[which], (ct, x, w, b))
            return tuple(g)

        return vjp

    return make


def _is_narrow(g: Any, xp: Any) -> bool:
    return g.dtype not in (xp.float64, getattr(xp, "complex128", xp.float64))


def _one_hot(g: Any, xp: Any) -> Any:
    host = np.zeros(tuple(g.shape))
    host[(0,) * g.ndim] = 1.0
    return xp.asarray(host, dtype=g.dtype, device=device(g))


def _largest(g: Any, xp: Any) -> Any:
    return xp.abs(g) == xp.max(xp.abs(g))


def _scaled(d: float) -> Callable[[Any, Any, Any], Any]:
    return lambda xp, g, _: g * (1.0 + d)


def _narrow_scaled(d: float) -> Callable[[Any, Any, Any], Any]:
    return lambda xp, g, _: g * (1.0 + d) if _is_narrow(g, xp) else g


def _stale(make_from: Callable[[Any], Any]) -> Callable[[Any], Callable[..., Any]]:
    def make(stale: Any) -> Callable[..., tuple[Any, ...]]:
        def vjp(ct: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
            xp = xp_of(ct)
            earlier = xp.asarray(stale, dtype=x.dtype, device=device(x))
            g = right_vjp(ct, earlier, w, b)
            return make_from((g, right_vjp(ct, x, w, b)))

        return vjp

    return make


def _dx_without_conj(xp: Any, g: Any, a: tuple[Any, ...]) -> Any:
    ct, _, w, _ = a
    return xp.matmul(ct, w)


def _dw_without_conj(xp: Any, g: Any, a: tuple[Any, ...]) -> Any:
    ct, x, _, _ = a
    return xp.matmul(xp.matrix_transpose(ct), x)


def _bias_wrong_axis(xp: Any, g: Any, a: tuple[Any, ...]) -> Any:
    return xp.sum(a[0], axis=1)


def _with(value: float) -> Callable[[Any, Any, Any], Any]:
    def change(xp: Any, g: Any, _: Any) -> Any:
        return xp.where(_one_hot(g, xp) == 1.0, xp.asarray(value, dtype=g.dtype, device=device(g)), g)

    return change


def _other_dtype(xp: Any, g: Any, _: Any) -> Any:
    if xp.isdtype(g.dtype, "complex floating"):
        if not hasattr(xp, "complex128"):  # MLX
            return xp.astype(xp.real(g), xp.float32)
        return xp.astype(g, xp.complex64 if g.dtype == xp.complex128 else xp.complex128)
    return xp.astype(g, xp.float32 if g.dtype == xp.float64 else xp.float64)


BANK: tuple[Mutant, ...] = (
    *(
        Mutant(f"{name} scaled by 1 + {d:g}", _edit(i, _scaled(d)), structural=False, scale=d)
        for i, name in enumerate(("`x`", "`weight`", "`bias`"))
        for d in SCALES
    ),
    Mutant("`weight`: largest element zeroed", _edit(1, lambda xp, g, _: xp.where(_largest(g, xp), 0.0 * g, g))),
    Mutant(
        "`weight`: one element off by 1% of the largest",
        _edit(1, lambda xp, g, _: g + 0.01 * xp.max(xp.abs(g)) * _one_hot(g, xp)),
    ),
    Mutant("`weight`: transposed", _edit(1, lambda xp, g, _: xp.matrix_transpose(g)), fits=lambda s, n: s[-1] == n),
    Mutant("`x`: one output's term missing", _edit(0, lambda xp, g, a: g - a[0][..., -1:] * a[2][-1, :])),
    Mutant("`x`: negated", _edit(0, lambda xp, g, _: -g)),
    Mutant("`x` from W, not conj(W)", _edit(0, _dx_without_conj), needs_complex=True),
    Mutant("`weight` missing a conjugate", _edit(1, _dw_without_conj), needs_complex=True),
    Mutant(
        "`bias` summed over the wrong axis", _edit(2, _bias_wrong_axis), fits=lambda s, n: len(s) == 2 and s[0] == n
    ),
    Mutant("`bias`: the first row only", _edit(2, lambda xp, g, a: a[0][(*(0,) * (a[0].ndim - 1), ...)])),
    Mutant("`weight`: from an earlier batch's x", _stale(lambda gs: (gs[1][0], gs[0][1], gs[1][2]))),
    Mutant("`weight`: one element NaN", _edit(1, _with(float("nan")))),
    Mutant("`weight`: one element infinite", _edit(1, _with(float("inf")))),
    Mutant("`bias`: the wrong dtype", _edit(2, _other_dtype)),
    *(
        Mutant(
            f"`weight` scaled by 1 + {d:g}, narrow only", _edit(1, _narrow_scaled(d)), False, narrow_only=True, scale=d
        )
        for d in (1e-1, 1e-2, 1e-3)
    ),
)


def applies(mutant: Mutant, dtype: str, x_shape: tuple[int, ...], n: int) -> bool:
    """Whether `mutant` is a wrong backward at this dtype and shape (square, complex, narrow)."""
    if not mutant.fits(x_shape, n):
        return False
    if mutant.needs_complex and not dtype.startswith("complex"):
        return False
    return not (mutant.narrow_only and dtype not in NARROW)


def expected(mutant: Mutant, dtype: str, check: str) -> bool:
    """Whether `check` ("adjoint", "fast", "full") is claimed to catch `mutant` in `dtype`, at
    every shape (docs/testing.md); a larger shape can resolve more.

    Every kind that is wrong in float64 is caught in every dtype (both checks compare
    float64 runs). Wrong in the narrow dtype alone: `check_vjp` holds the narrow run to
    dtype, shape, device and finiteness only; `check_adjoint`'s narrow identity resolves a
    10% error in bfloat16, 1% in float16 and 0.1% in float32 and complex64.
    """
    if not mutant.narrow_only:
        return True
    if check != "adjoint" or mutant.scale is None:
        return False
    return mutant.scale >= {"bfloat16": 1e-1, "float16": 1e-2}.get(dtype, 1e-3)


def tanh_layer(x: Any, w: Any) -> Any:
    """A user's non-linear layer, ``tanh(x @ w.T)``, as docs/testing.md writes it."""
    xp = xp_of(x, w)
    return xp.tanh(xp.matmul(x, xp.matrix_transpose(w)))


def tanh_vjp(ct: Any, x: Any, w: Any) -> tuple[Any, Any]:
    xp = xp_of(ct, x, w)
    d = ct * (1 - tanh_layer(x, w) ** 2)
    return xp.matmul(d, w), xp.matmul(xp.matrix_transpose(d), x)


def tanh_jvp(t: tuple[Any, Any], x: Any, w: Any) -> Any:
    xp = xp_of(x, w)
    total = 0.0
    if t[0] is not None:
        total = total + xp.matmul(t[0], xp.matrix_transpose(w))
    if t[1] is not None:
        total = total + xp.matmul(x, xp.matrix_transpose(t[1]))
    return (1 - tanh_layer(x, w) ** 2) * total


@dataclass(frozen=True)
class Case:
    """A right backward at a random point: `f`, `vjp`, `jvp` and host `args` (float64 or complex128)."""

    label: str
    f: Callable[..., Any]
    vjp: Callable[..., Any]
    jvp: Callable[..., Any]
    args: tuple[Any, ...]


def random_case(rng: np.random.Generator, dtype: str) -> Case:
    """A random correct case: the affine layer (both weight forms) or the tanh layer, with
    batch axes of 0 to 2 (sizes 0 to 4), 0 to 6 features, elements spanning eight orders of
    magnitude, and in one case out of four one huge element."""
    complex_ = dtype.startswith("complex")
    kind = "affine" if complex_ else str(rng.choice(["affine", "affine", "tanh"]))
    batch = tuple(int(s) for s in rng.integers(0, 5, size=int(rng.integers(0, 3))))
    k, n = int(rng.integers(0, 7)), int(rng.integers(0, 5))
    one_output = kind == "affine" and rng.random() < 0.25
    if kind == "tanh":  # written for one batch axis
        batch = (int(rng.integers(0, 5)),)
    sixteen = dtype in ("float16", "bfloat16")

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        values = rng.standard_normal(shape)
        if complex_:
            values = values + 1j * rng.standard_normal(shape)
        return values * 10.0 ** rng.uniform(-4.0, 4.0, size=shape)

    x = draw((*batch, k))
    if rng.random() < 0.25 and x.size:
        x.flat[int(rng.integers(x.size))] = 1e4 if sixteen else 1e12
    w = draw((k,) if one_output else (n, k)) / max(k, 1)
    label = f"{kind} x {x.shape}, weight {w.shape}"
    if kind == "tanh":
        return Case(label, tanh_layer, tanh_vjp, tanh_jvp, (x, w))
    b = complex(draw(())) if complex_ and one_output else float(draw(())) if one_output else draw((n,))
    return Case(label, affine, right_vjp, jvp, (x, w, b))
