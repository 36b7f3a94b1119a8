"""The layer in float64 NumPy, straight from MATH.md: the reference for checks and tests."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["backward", "forward", "wide"]

Host = np.ndarray[Any, Any]


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
        db = None if b is None else g.reshape(-1, w.shape[0]).sum(axis=0)
    else:
        dx = g[..., None] * w.conj()
        dw = g.reshape(-1) @ x2.conj()
        db = None if b is None else np.asarray(g.sum())
    return dx, dw, db
