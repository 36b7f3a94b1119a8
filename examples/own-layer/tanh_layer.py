"""A tanh layer, ``y = tanh(x @ w.T + b)``, with its derivatives written by hand against the
Array API: it runs on whatever library its arrays come from."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace


def forward(x: Any, w: Any, b: Any) -> Any:
    xp = array_namespace(x, w, b)
    return xp.tanh(x @ xp.matrix_transpose(w) + b)


def vjp(ct: Any, x: Any, w: Any, b: Any) -> tuple[Any, Any, Any]:
    """The gradients of ``<ct, forward(x, w, b)>``: dx, dw, db."""
    xp = array_namespace(x, w, b)
    y = forward(x, w, b)
    dz = ct * (1.0 - y * y)
    return dz @ w, xp.matrix_transpose(dz) @ x, xp.sum(dz, axis=0)


def jvp(tangents: tuple[Any, Any, Any], x: Any, w: Any, b: Any) -> Any:
    """The derivative of ``forward`` along the tangents ``(dx, dw, db)``."""
    xp = array_namespace(x, w, b)
    dx, dw, db = tangents
    y = forward(x, w, b)
    return (1.0 - y * y) * (dx @ xp.matrix_transpose(w) + x @ xp.matrix_transpose(dw) + db)


def vjp_without_the_derivative(ct: Any, x: Any, w: Any, b: Any) -> tuple[Any, Any, Any]:
    """A slip kept on purpose, for the tests to catch: tanh's derivative forgotten."""
    xp = array_namespace(x, w, b)
    return ct @ w, xp.matrix_transpose(ct) @ x, xp.sum(ct, axis=0)
