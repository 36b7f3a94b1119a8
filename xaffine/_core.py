"""The affine layer's math: forward, reverse mode and forward mode, side by side.

Written once against the Python Array API standard, on one code path: a 1-D weight is
one row, ``(1, in_features)``, and ``x`` is always flattened to rows, so that the
forward pass and each gradient is one matrix product (transposes are views). The
formulas are derived in ``docs/math.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ._backends import device_of
from ._dispatch import PYTHON_NUMBERS, Prepared, adopt
from ._typing import Array, Namespace
from ._validate import GRAD_NAMES, check_grad, check_tangents, check_wrt, prepare

__all__ = ["AffineGrads", "affine", "affine_backward", "affine_jvp", "affine_vjp"]


class AffineGrads(NamedTuple):
    """Gradients of a scalar error with respect to the layer's inputs.

    A field is ``None`` when that gradient was not asked for, or for ``bias``
    when the layer has no bias.
    """

    x: Array | None
    weight: Array | None
    bias: Array | None


def _rows(a: Array, xp: Namespace) -> Array:
    """`a`, of shape (..., width), as a matrix (rows, width): a view where the layout allows."""
    if a.ndim == 2:
        return a
    if a.ndim == 1:
        return a[None, :]
    count = math.prod(a.shape[:-1])
    if count == 0:  # no rows: nothing to keep, and Dask cannot reshape an empty array chunked along its batch
        return xp.zeros((0, a.shape[-1]), dtype=a.dtype, device=device_of(a))
    return xp.reshape(a, (count, a.shape[-1]))


def _unrows(a: Array, shape: tuple[Any, ...], xp: Namespace, *, vector: bool = False) -> Array:
    """The matrix `a` back in `shape`; `vector`: drop the unit last axis of a 1-D weight's output."""
    if vector:
        a = a[:, 0]  # indexing, not reshape: Dask rows of unknown size stay lazy
    if a.ndim == len(shape):
        return a
    if 0 in shape:  # nothing to keep, and Dask cannot reshape empty rows to several axes
        return xp.zeros(shape, dtype=a.dtype, device=device_of(a))
    return xp.reshape(a, shape)


def _product(a: Array, b: Array, complex_: bool, p: Prepared) -> Array:
    """``a @ conj(b)`` for matrices, conjugating whichever side is cheaper, through the
    backend row's ``matmul`` (or its ``outer`` for a contraction of length one)."""
    if not complex_ and p.row.outer is None:  # (the common case first: one look-up)
        return p.row.matmul(a, b)
    if complex_:
        xp = p.xp
        if math.prod(a.shape) + a.shape[0] * b.shape[-1] < math.prod(b.shape):
            return xp.conj(_product(xp.conj(a), b, False, p))
        b = xp.conj(b)
    row = p.row
    return row.outer(a, b) if row.outer is not None and a.shape[-1] == 1 else row.matmul(a, b)


def _add(out: Array, term: Array | complex | None, p: Prepared) -> Array:
    """``out + term``, in place where `out` was just made here and may be written."""
    if term is None:
        return out
    if isinstance(term, np.generic):
        term = term.item()  # a NumPy scalar: its value, added in out's dtype
    row = p.row
    if row.add is not None:
        return row.add(out, term)
    if type(term) in PYTHON_NUMBERS:  # (nothing more to ask of torch.compile's symbolic floats)
        return out + term
    writeable = array_api_compat.is_writeable_array(out) if row.in_place is None else row.in_place(out, term)
    if writeable:
        out += term
        return out
    return out + term


def _forward_rows(x: Array, weight: Array, bias: Array | complex | None, p: Prepared) -> Array:
    # A = X W^T + b, as a matrix of rows; the product is fresh, so the bias is added in place.
    # (`x` and `weight` may be their tangents, of the same shapes: `p`'s facts hold for them.)
    row, rows = p.row, x if p.x_matrix else _rows(x, p.xp)
    columns = (weight[None, :] if p.vector else weight).T  # a 1-D weight is one row
    if row.matmul_add is not None and p.bias_array and bias is not None:
        return row.matmul_add(rows, columns, bias)
    return _add(row.matmul(rows, columns), bias, p)


def _forward(x: Array, weight: Array, bias: Array | complex | None, p: Prepared) -> Array:
    out = _forward_rows(x, weight, bias, p)
    return out if p.x_matrix and not p.vector else _unrows(out, p.out_shape, p.xp, vector=p.vector)


_GRADS = tuple.__new__  # AffineGrads of three fields, without the named tuple's own __new__ (a third of a microsecond)


def _backward(
    grad: Array, x: Array, weight: Array, bias: Array | complex | None, wrt: frozenset[str], p: Prepared
) -> AffineGrads:
    # dX = dA conj(W),  dW = dA^T conj(X),  db = sum(dA) over the rows
    g = grad if p.x_matrix and not p.vector else _rows(grad[..., None] if p.vector else grad, p.xp)
    dx = dw = db = None
    if "x" in wrt:
        dx = _product(g, weight[None, :] if p.vector else weight, p.complex_, p)
        dx = dx if p.x_matrix else _unrows(dx, tuple(x.shape), p.xp)
    if "weight" in wrt:
        # One output: dA^T is a row, indexed, not a transposed column (which torch.compile
        # of torch.func's jacrev over jacfwd mis-traces, onto two devices).
        rows = g[:, 0][None, :] if p.vector else g.T
        dw = _product(rows, x if p.x_matrix else _rows(x, p.xp), p.complex_, p)
        dw = dw[0, :] if p.vector else dw
    if bias is not None and "bias" in wrt:
        db = _row_sum(g, p.vector, p)
    return _GRADS(AffineGrads, (dx, dw, db))


def _row_sum(g: Array, one_output: bool, p: Prepared) -> Array:
    """``sum(g)`` over the rows of the matrix `g`: the bias gradient, shaped as the bias.

    One output: the sum of the vector ``g[:, 0]``, which libraries sum better than a
    one-column matrix (ndonnx adds a column with one running sum); kept 1-D, since NumPy's
    sum of a vector is a scalar, then made 0-d. 16-bit floats accumulate in float32 and
    are rounded once.
    """
    xp, row_sum = p.xp, p.row.row_sum
    rows = g[:, 0] if one_output else g
    if row_sum is not None:
        db = row_sum(rows, p.accumulate)
    elif p.accumulate is None:
        db = xp.sum(rows, axis=0, keepdims=one_output)
    else:
        db = xp.sum(rows, axis=0, dtype=p.accumulate, keepdims=one_output)
    if p.accumulate is not None:
        db = xp.astype(db, g.dtype)
    return xp.reshape(db, ()) if one_output else db


def affine(x: Array, weight: Array, bias: Array | complex | None = None, /, *, xp: Any = None) -> Array:
    """The affine (linear, fully connected) layer: ``x @ weight.T + bias``.

    Parameters
    ----------
    x : array
        Inputs, shape ``(..., in_features)``: any number of leading axes, including
        none (a 1-D ``x``) and zero-size batches.
    weight : array
        Shape ``(out_features, in_features)`` (PyTorch's layout), or
        ``(in_features,)`` for the one-output form.
    bias : array, number or None
        Shape ``(out_features,)``; for a 1-D `weight`, a scalar (a Python number or a
        0-d array). ``None`` for no bias.
    xp : namespace or str, optional
        The arrays' library: its module (``numpy``, ``torch``, ``jax.numpy``, ...),
        array-api-compat's namespace, or a backend name (``"torch"``); found from the
        arrays when omitted. The arrays are checked against it all the same.

    Returns
    -------
    array
        Shape ``(..., out_features)``, or ``(...)`` for a 1-D `weight`, with the
        inputs' dtype and device.

    Raises
    ------
    ValueError
        For shapes that do not fit together, or arrays on two devices.
    TypeError
        For non-floating or mixed dtypes, or arrays from two libraries.

    Notes
    -----
    ``A = X W^T + b``, i.e. ``a[i, j] = sum_t x[i, t] w[j, t] + b[j]``; with a 1-D
    weight, ``a = X w + b``. Leading axes of `x` are flattened into one matrix product.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xaffine import affine
    >>> x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    >>> w = xp.asarray([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    >>> affine(x, w, xp.asarray([0.5, 0.0, 1.0]))
    Array([[ 1.5,  3. , -1. ],
           [ 3.5,  7. , -3. ]], dtype=array_api_strict.float64)
    """
    p = prepare(x, weight, bias, xp=xp)
    if p.adopt:
        x, weight, bias = adopt(p, x, weight, bias)
    return _forward(x, weight, bias, p)


def affine_backward(
    grad: Array,
    x: Array,
    weight: Array,
    bias: Array | complex | None = None,
    /,
    *,
    wrt: Iterable[str] | str = GRAD_NAMES,
    xp: Any = None,
) -> AffineGrads:
    """Gradients of the layer, given the gradient of the error with respect to its output.

    Parameters
    ----------
    grad : array
        ``dA``, the gradient with respect to ``affine(x, weight, bias)``: its shape.
    x, weight, bias
        The layer's inputs, as for :func:`affine`.
    wrt : iterable of str or str, default ("x", "weight", "bias")
        Which gradients to compute; the others are ``None`` and cost nothing.
    xp : namespace or str, optional
        The arrays' library: its module (``numpy``, ``torch``, ``jax.numpy``, ...),
        array-api-compat's namespace, or a backend name (``"torch"``); found from the
        arrays when omitted. The arrays are checked against it all the same.

    Returns
    -------
    AffineGrads
        ``(x, weight, bias)``, each with the shape, dtype and device of its input;
        ``bias`` is 0-d for a scalar bias and ``None`` when `bias` is ``None``.

    Raises
    ------
    ValueError
        For shapes that do not fit, `grad` of a shape other than the output's, or
        an unknown name in `wrt`.
    TypeError
        For non-floating or mixed dtypes, or arrays from two libraries.

    Notes
    -----
    ``dX = dA conj(W)``, ``dW = dA^T conj(X)`` (summed over every leading axis, as
    one matrix product) and ``db = sum(dA)`` over every axis but the last. ``conj``
    is the identity for real dtypes; for complex ones this is PyTorch's convention.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xaffine import affine_backward
    >>> x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    >>> w = xp.asarray([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    >>> grads = affine_backward(xp.ones((2, 3)), x, w, xp.zeros(3))
    >>> grads.weight
    Array([[4., 6.],
           [4., 6.],
           [4., 6.]], dtype=array_api_strict.float64)
    >>> grads.bias
    Array([2., 2., 2.], dtype=array_api_strict.float64)
    """
    names = check_wrt(wrt)
    p = check_grad(grad, x, prepare(x, weight, bias, xp=xp))
    if p.adopt:
        grad, x, weight, bias = adopt(p, grad, x, weight, bias)
    return _backward(grad, x, weight, bias, names, p)


def affine_vjp(
    x: Array, weight: Array, bias: Array | complex | None = None, /, *, xp: Any = None
) -> tuple[Array, Callable[..., AffineGrads]]:
    """The layer's output and its vector-Jacobian product, checking the inputs once.

    Parameters
    ----------
    x, weight, bias, xp
        As for :func:`affine`.

    Returns
    -------
    out : array
        ``affine(x, weight, bias)``.
    vjp : callable
        ``vjp(grad, *, wrt=("x", "weight", "bias")) -> AffineGrads``, equal to
        ``affine_backward(grad, x, weight, bias, wrt=wrt)``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xaffine import affine_vjp
    >>> out, vjp = affine_vjp(xp.asarray([1.0, 2.0]), xp.asarray([3.0, 4.0]), 1.0)
    >>> out
    Array(12., dtype=array_api_strict.float64)
    >>> vjp(xp.asarray(1.0)).x
    Array([3., 4.], dtype=array_api_strict.float64)
    """
    p = prepare(x, weight, bias, xp=xp)
    if p.adopt:
        x, weight, bias = adopt(p, x, weight, bias)
    out = _forward(x, weight, bias, p)

    def vjp(grad: Array, *, wrt: Iterable[str] | str = GRAD_NAMES) -> AffineGrads:
        names = check_wrt(wrt)
        q = check_grad(grad, x, p)
        if q.adopt:
            g, x_, w_, b_ = adopt(q, grad, x, weight, bias)
            return _backward(g, x_, w_, b_, names, q)
        return _backward(grad, x, weight, bias, names, q)

    return out, vjp


def affine_jvp(
    x: Array,
    weight: Array,
    bias: Array | complex | None,
    tangents: tuple[Array | complex | None, Array | complex | None, Array | complex | None],
    /,
    *,
    xp: Any = None,
) -> tuple[Array, Array]:
    """The layer's output and its directional derivative (forward mode).

    Parameters
    ----------
    x, weight, bias, xp
        As for :func:`affine`.
    tangents : tuple
        ``(dx, dweight, dbias)``, each with the shape and dtype of its input;
        ``None`` means zero.

    Returns
    -------
    out : array
        ``affine(x, weight, bias)``.
    tangent_out : array
        ``dx @ weight.T + x @ dweight.T + dbias``, the output's shape.

    Notes
    -----
    The layer is bilinear in ``(x, weight)`` plus a constant, so the directional
    derivative is exact.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xaffine import affine_jvp
    >>> x, w = xp.asarray([[1.0, 2.0]]), xp.asarray([[1.0, 1.0]])
    >>> affine_jvp(x, w, None, (None, xp.asarray([[1.0, 0.0]]), None))[1]
    Array([[1.]], dtype=array_api_strict.float64)
    """
    (dx, dweight, dbias), p = check_tangents(tangents, x, weight, bias, prepare(x, weight, bias, xp=xp))
    if p.adopt:
        x, weight, bias, dx, dweight, dbias = adopt(p, x, weight, bias, dx, dweight, dbias)
    out = _forward(x, weight, bias, p)
    # dA = dX W^T + X dW^T + db: the layer is bilinear in (x, weight) plus a constant.
    rows = None if dx is None else _forward_rows(dx, weight, None, p)
    if dweight is not None:
        term = _forward_rows(x, dweight, None, p)
        rows = term if rows is None else _add(rows, term, p)
    if rows is None:
        rows = p.xp.zeros_like(_rows(out[..., None] if p.vector else out, p.xp))
    tangent_out = _unrows(_add(rows, dbias, p), p.out_shape, p.xp, vector=p.vector)
    return out, tangent_out
