"""The layer in float64 NumPy, straight from docs/math.md, and seeded inputs for it.

The reference for ``xaffine check``, the benchmark and the tests: every backend gets the
same host numbers from `inputs`, and its results are compared with `forward`/`backward`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["Inputs", "backward", "forward", "inputs", "random", "wide"]

Host = np.ndarray[Any, Any]


class Inputs(NamedTuple):
    """The layer's inputs and an output gradient, on the host or moved to a backend."""

    x: Any
    weight: Any
    bias: Any
    grad: Any

    @property
    def args(self) -> tuple[Any, Any, Any]:
        """``(x, weight, bias)``, the arguments of ``affine``."""
        return self.x, self.weight, self.bias


def random(shape: tuple[int, ...], dtype: str, seed: int) -> Host:
    """Seeded standard-normal host data in `dtype` (real and imaginary parts for complex)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    if "complex" in dtype:
        data = data + 1j * rng.standard_normal(shape)
    return data.astype(dtype)


def inputs(
    x_shape: tuple[int, ...], out_features: int | None, dtype: str = "float64", *, bias: str = "array", seed: int = 0
) -> Inputs:
    """Seeded host inputs: `x`, the weight (1-D when `out_features` is None), the bias and a gradient.

    `bias` is ``"array"``, ``"number"`` (the Python number 0.75) or ``"none"``.
    """
    k = x_shape[-1]
    out = () if out_features is None else (out_features,)
    b = {"none": None, "number": 0.75}.get(bias)
    return Inputs(
        random(x_shape, dtype, seed),
        random((*out, k), dtype, seed + 1),
        random(out, dtype, seed + 2) if bias == "array" else b,
        random(x_shape[:-1] + out, dtype, seed + 3),
    )


def wide(a: Any) -> Any:
    """`a` in float64 (complex128); ``None`` and Python numbers as they are."""
    if a is None or isinstance(a, (int, float, complex)):
        return a
    a = np.asarray(a)
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def forward(x: Host, w: Host, b: Any) -> Host:
    """``x @ w.T + b`` (or ``x @ w + b`` for a 1-D `w`) in float64."""
    x, w, b = wide(x), wide(w), wide(b)
    out = x @ (w.T if w.ndim == 2 else w)
    return out if b is None else out + b


def backward(g: Host, x: Host, w: Host, b: Any) -> tuple[Host, Host, Host | None]:
    """``(dX, dW, db)`` in float64 (PyTorch's convention for complex)."""
    g, x, w = wide(g), wide(x), wide(w)
    x2 = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
    if w.ndim == 2:
        dx = g @ w.conj()
        dw = g.reshape(x2.shape[0], w.shape[0]).T @ x2.conj()
        db = None if b is None else g.reshape(x2.shape[0], w.shape[0]).sum(axis=0)
    else:
        dx = g[..., None] * w.conj()
        dw = g.reshape(-1) @ x2.conj()
        db = None if b is None else np.asarray(g.sum())
    return dx, dw, db
