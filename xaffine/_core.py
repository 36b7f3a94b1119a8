"""The affine layer's math: forward, reverse mode and forward mode.

Written once against the Python Array API standard. Leading dimensions are
flattened so that the forward pass and ``dW`` are one matrix product each;
transposes are views. The formulas are those of MATH.md, real and complex.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import array_api_compat

from ._checks import (
    GRAD_NAMES,
    check_grad,
    check_inputs,
    check_tangents,
    check_wrt,
    device_of,
    namespace_of,
    output_shape,
)
from ._typing import Array, Namespace

__all__ = ["AffineGrads", "affine", "affine_backward", "affine_jvp", "affine_vjp"]

_INPUT_NAMES = ("x", "weight", "bias")


class AffineGrads(NamedTuple):
    """Gradients of a scalar error with respect to the layer's inputs.

    A field is ``None`` when that gradient was not asked for, or for ``bias``
    when the layer has no bias.
    """

    x: Array | None
    weight: Array | None
    bias: Array | None


def _rows(a: Array, width: int, xp: Namespace) -> Array:
    """`a` as a matrix of shape (prod(leading), width): a view when `a` is contiguous."""
    return a if a.ndim == 2 else xp.reshape(a, (math.prod(a.shape[:-1]), width))


def _product(a: Array, b: Array, complex_: bool, xp: Namespace) -> Array:
    """``a @ conj(b)`` for matrices, conjugating whichever side is cheaper.

    A contraction of length one is an outer product: broadcasting does it without
    the matrix-product call, which for that shape is the slow path in NumPy.
    """
    if complex_:
        if math.prod(a.shape) + a.shape[0] * b.shape[-1] < math.prod(b.shape):
            return xp.conj(_product(xp.conj(a), b, False, xp))
        b = xp.conj(b)
    return a * b if a.shape[-1] == 1 else a @ b


def _add_bias(out: Array, bias: Array | complex | None) -> Array:
    if bias is None:
        return out
    # `out` was just made by a matrix product: adding in place saves an array.
    if hasattr(bias, "shape") and array_api_compat.is_writeable_array(out):
        out += bias
        return out
    return out + bias


def _forward(x: Array, weight: Array, bias: Array | complex | None, *, xp: Namespace) -> Array:
    if weight.ndim == 1:
        out = xp.reshape(_rows(x, weight.shape[0], xp) @ weight, x.shape[:-1]) if x.ndim > 2 else x @ weight
        # A vector times a vector is a NumPy scalar, not a 0-d array.
        return xp.asarray(_add_bias(out, bias)) if x.ndim == 1 else _add_bias(out, bias)
    if x.ndim == 2:
        return _add_bias(x @ weight.T, bias)
    return _add_bias(xp.reshape(_rows(x, weight.shape[1], xp) @ weight.T, output_shape(x, weight)), bias)


def _backward(
    grad: Array,
    x: Array,
    weight: Array,
    bias: Array | complex | None,
    wrt: frozenset[str],
    complex_: bool,
    *,
    xp: Namespace,
) -> AffineGrads:
    dx = dw = db = None
    if weight.ndim == 2:
        # A = X W^T + b  =>  dX = dA conj(W),  dW = dA^T conj(X),  db = sum(dA)
        g2 = _rows(grad, weight.shape[0], xp)
        if "x" in wrt:
            dx = _product(g2, weight, complex_, xp)
            if x.ndim != 2:
                dx = xp.reshape(dx, x.shape)
        if "weight" in wrt:
            dw = _product(g2.T, _rows(x, weight.shape[1], xp), complex_, xp)
        if bias is not None and "bias" in wrt:
            db = xp.sum(g2, axis=0)
    else:
        # a = X w + b  =>  dX = da conj(w),  dw = da^T conj(X),  db = sum(da)
        if "x" in wrt:
            dx = xp.expand_dims(grad, axis=-1) * (xp.conj(weight) if complex_ else weight)
        if "weight" in wrt:
            dw = _product(xp.reshape(grad, (1, -1)), _rows(x, weight.shape[0], xp), complex_, xp)[0, ...]
        if bias is not None and "bias" in wrt:
            db = xp.asarray(xp.sum(grad))
    return AffineGrads(dx, dw, db)


def affine(x: Array, weight: Array, bias: Array | complex | None = None, /, *, xp: Namespace | None = None) -> Array:
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
    xp : namespace, optional
        The arrays' Array API namespace; found from the arrays when omitted.

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
    xp = namespace_of(x, weight, bias, names=_INPUT_NAMES, xp=xp)
    check_inputs(x, weight, bias, xp=xp)
    return _forward(x, weight, bias, xp=xp)


def affine_backward(
    grad: Array,
    x: Array,
    weight: Array,
    bias: Array | complex | None = None,
    /,
    *,
    wrt: Iterable[str] | str = GRAD_NAMES,
    xp: Namespace | None = None,
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
    xp : namespace, optional
        The arrays' Array API namespace; found from the arrays when omitted.

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
    xp = namespace_of(x, weight, bias, names=_INPUT_NAMES, xp=xp)
    complex_ = check_inputs(x, weight, bias, xp=xp)
    check_grad(grad, x, weight, xp=xp)
    return _backward(grad, x, weight, bias, names, complex_, xp=xp)


def affine_vjp(
    x: Array, weight: Array, bias: Array | complex | None = None, /, *, xp: Namespace | None = None
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
    xp = namespace_of(x, weight, bias, names=_INPUT_NAMES, xp=xp)
    complex_ = check_inputs(x, weight, bias, xp=xp)
    out = _forward(x, weight, bias, xp=xp)
    x_device, expected = device_of(x, xp), output_shape(x, weight)

    def vjp(grad: Array, *, wrt: Iterable[str] | str = GRAD_NAMES) -> AffineGrads:
        names = check_wrt(wrt)
        check_grad(grad, x, weight, xp=xp, x_device=x_device, expected=expected)
        return _backward(grad, x, weight, bias, names, complex_, xp=xp)

    return out, vjp


def affine_jvp(
    x: Array,
    weight: Array,
    bias: Array | complex | None,
    tangents: tuple[Array | complex | None, Array | complex | None, Array | complex | None],
    /,
    *,
    xp: Namespace | None = None,
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
    xp = namespace_of(x, weight, bias, names=_INPUT_NAMES, xp=xp)
    check_inputs(x, weight, bias, xp=xp)
    given = tuple(tangents)
    check_tangents(given, (x, weight, bias), xp=xp)
    dx, dweight, dbias = given
    out = _forward(x, weight, bias, xp=xp)
    terms = []
    if dx is not None:
        terms.append(_forward(dx, weight, None, xp=xp))
    if dweight is not None:
        terms.append(_forward(x, dweight, None, xp=xp))
    if not terms:
        terms.append(xp.zeros(out.shape, dtype=out.dtype, device=array_api_compat.device(out)))
    tangent_out = terms[0]
    for term in terms[1:]:
        tangent_out = tangent_out + term
    if dbias is not None:
        tangent_out = tangent_out + dbias
    return out, xp.asarray(tangent_out) if out.ndim == 0 else tangent_out
