"""A zoo of layers people write by hand, with their right backward and forward-mode passes,
and a wrong backward for each: xaffine.testing's checks are held to pass every right one
and to catch every wrong one, at the scales people train at.

Each layer is written once against the Array API (the namespace of its arguments), with
the textbook formulas for ``vjp`` and ``jvp``. tests/test_zoo.py runs them on every
backend, and against torch.func's and JAX's own derivatives of the same functions;
benchmarks/check_power.py --zoo tables what the checks catch (docs/testing.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.helpers import xp_of
from xaffine._backends import device_of


@dataclass(frozen=True)
class Layer:
    """`f(*args)`, its right `vjp(ct, *args)` and `jvp(tangents, *args)`; `shapes(rng)` draws
    the arguments' shapes; `complex_`: its arguments are complex; `wrong`: a wrong backward
    (its name, and ``vjp``) the checks must catch."""

    name: str
    f: Callable[..., Any]
    vjp: Callable[..., tuple[Any, ...]]
    jvp: Callable[..., Any]
    shapes: Callable[[np.random.Generator], tuple[tuple[int, ...], ...]]
    wrong: tuple[str, Callable[..., tuple[Any, ...]]]
    complex_: bool = False


def _rows(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """Logits: a batch of 4 to 8 rows of 8 to 32 classes (a batch whose every row is one-hot
    to within rounding is too ill-conditioned to check; a batch of rows rarely is)."""
    return ((int(rng.integers(4, 9)), int(rng.integers(8, 33))),)


def _t(t: tuple[Any, ...], k: int, like: Any) -> Any:
    """Tangent `k`, zeros where None."""
    return t[k] if t[k] is not None else xp_of(like).zeros_like(like)


# -- softmax and its relatives, over the last axis -------------------------------------------


def softmax(x: Any) -> Any:
    xp = xp_of(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _softmax_vjp(ct: Any, x: Any) -> tuple[Any]:
    s = softmax(x)
    return (s * (ct - xp_of(x).sum(ct * s, axis=-1, keepdims=True)),)


def _softmax_jvp(t: tuple[Any], x: Any) -> Any:
    s, dx = softmax(x), _t(t, 0, x)
    return s * (dx - xp_of(x).sum(dx * s, axis=-1, keepdims=True))


def _softmax_wrong(ct: Any, x: Any) -> tuple[Any]:
    return (softmax(x) * ct,)  # without the - s <ct, s> term


def log_softmax(x: Any) -> Any:
    xp = xp_of(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _log_softmax_vjp(ct: Any, x: Any) -> tuple[Any]:
    return (ct - softmax(x) * xp_of(x).sum(ct, axis=-1, keepdims=True),)


def _log_softmax_jvp(t: tuple[Any], x: Any) -> Any:
    dx = _t(t, 0, x)
    return dx - xp_of(x).sum(softmax(x) * dx, axis=-1, keepdims=True)


def _log_softmax_wrong(ct: Any, x: Any) -> tuple[Any]:
    return (ct - softmax(x) * ct,)  # s ct, not s sum(ct)


def logsumexp(x: Any) -> Any:
    xp = xp_of(x)
    m = xp.max(x, axis=-1, keepdims=True)
    return xp.log(xp.sum(xp.exp(x - m), axis=-1)) + m[..., 0]


def _logsumexp_vjp(ct: Any, x: Any) -> tuple[Any]:
    return (ct[..., None] * softmax(x),)


def _logsumexp_jvp(t: tuple[Any], x: Any) -> Any:
    return xp_of(x).sum(softmax(x) * _t(t, 0, x), axis=-1)


def _logsumexp_wrong(ct: Any, x: Any) -> tuple[Any]:
    xp = xp_of(x)
    return (ct[..., None] * xp.exp(x - xp.max(x, axis=-1, keepdims=True)),)  # not normalised


def _targets(x: Any) -> Any:
    """Fixed target probabilities for the cross-entropy, as an array like `x`."""
    host = np.random.default_rng(list(x.shape)).random(tuple(x.shape))
    host /= host.sum(axis=-1, keepdims=True)
    return xp_of(x).asarray(host, dtype=x.dtype, device=device_of(x))


def cross_entropy(x: Any) -> Any:
    """The mean over rows of ``-sum(p log softmax(x))``: a scalar."""
    xp = xp_of(x)
    return -xp.sum(_targets(x) * log_softmax(x)) / x.shape[0]


def _cross_entropy_vjp(ct: Any, x: Any) -> tuple[Any]:
    p = _targets(x)
    return (ct * (softmax(x) * xp_of(x).sum(p, axis=-1, keepdims=True) - p) / x.shape[0],)


def _cross_entropy_jvp(t: tuple[Any], x: Any) -> Any:
    p = _targets(x)
    return xp_of(x).sum((softmax(x) * xp_of(x).sum(p, axis=-1, keepdims=True) - p) * _t(t, 0, x)) / x.shape[0]


def _cross_entropy_wrong(ct: Any, x: Any) -> tuple[Any]:
    p = _targets(x)
    return (ct * (softmax(x) - p) / x.shape[0] * 1.01,)


# -- normalisations -------------------------------------------------------------------------

_LN_EPS = 1e-5


def _normalised(x: Any) -> tuple[Any, Any]:
    xp = xp_of(x)
    mu = xp.mean(x, axis=-1, keepdims=True)
    inv = 1.0 / xp.sqrt(xp.mean((x - mu) ** 2, axis=-1, keepdims=True) + _LN_EPS)
    return (x - mu) * inv, inv


def layer_norm(x: Any, gamma: Any, beta: Any) -> Any:
    return _normalised(x)[0] * gamma + beta


def _layer_norm_dx(ct: Any, x: Any, gamma: Any) -> Any:
    xp = xp_of(x)
    xhat, inv = _normalised(x)
    d = ct * gamma
    return inv * (d - xp.mean(d, axis=-1, keepdims=True) - xhat * xp.mean(d * xhat, axis=-1, keepdims=True))


def _layer_norm_vjp(ct: Any, x: Any, gamma: Any, beta: Any) -> tuple[Any, ...]:
    xp = xp_of(x)
    xhat, _ = _normalised(x)
    return _layer_norm_dx(ct, x, gamma), xp.sum(ct * xhat, axis=0), xp.sum(ct, axis=0)


def _layer_norm_jvp(t: tuple[Any, ...], x: Any, gamma: Any, beta: Any) -> Any:
    xp = xp_of(x)
    xhat, inv = _normalised(x)
    dx = _t(t, 0, x)
    dxhat = inv * (dx - xp.mean(dx, axis=-1, keepdims=True) - xhat * xp.mean(dx * xhat, axis=-1, keepdims=True))
    return dxhat * gamma + xhat * _t(t, 1, gamma) + _t(t, 2, beta)


def _layer_norm_wrong(ct: Any, x: Any, gamma: Any, beta: Any) -> tuple[Any, ...]:
    dx, dg, db = _layer_norm_vjp(ct, x, gamma, beta)
    return dx + 0.01 * xp_of(x).mean(ct, axis=-1, keepdims=True), dg, db  # dx off by 1% of mean(ct)


def _layer_norm_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    rows, k = int(rng.integers(1, 6)), int(rng.integers(2, 17))
    return (rows, k), (k,), (k,)


def l2_normalize(x: Any) -> Any:
    xp = xp_of(x)
    return x / xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))


def _l2_vjp(ct: Any, x: Any) -> tuple[Any]:
    xp = xp_of(x)
    y, norm = l2_normalize(x), xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
    return ((ct - y * xp.sum(y * ct, axis=-1, keepdims=True)) / norm,)


def _l2_jvp(t: tuple[Any], x: Any) -> Any:
    return _l2_vjp(_t(t, 0, x), x)[0]  # the map is symmetric


def _l2_wrong(ct: Any, x: Any) -> tuple[Any]:
    xp = xp_of(x)
    return (ct / xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True)),)  # without the projection


# -- elementwise ----------------------------------------------------------------------------

_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: Any) -> Any:
    """``0.5 x (1 + tanh(z))`` written as ``x sigmoid(2 z)``: the same function, without the
    cancellation of ``1 + tanh(z)`` at large negative ``z``, where the first form's computed
    values are its rounding alone."""
    return x * sigmoid(2.0 * _gelu_z(x))


def _gelu_z(x: Any) -> Any:
    # x (1 + a x^2), not x + a x^3: the cube overflows float16 from |x| = 41 (inputs x10).
    return _GELU_C * x * (1.0 + 0.044715 * x * x)


def _gelu_derivative(x: Any, cubic: float = 3 * 0.044715) -> Any:
    z2 = 2.0 * _gelu_z(x)
    return sigmoid(z2) + 2.0 * x * sigmoid(z2) * sigmoid(-z2) * _GELU_C * (1.0 + cubic * x**2)


def _gelu_vjp(ct: Any, x: Any) -> tuple[Any]:
    return (ct * _gelu_derivative(x),)


def _gelu_jvp(t: tuple[Any], x: Any) -> Any:
    return _gelu_derivative(x) * _t(t, 0, x)


def _gelu_wrong(ct: Any, x: Any) -> tuple[Any]:
    return (ct * _gelu_derivative(x, cubic=0.044715),)  # the cube's derivative without its 3


def sigmoid(x: Any) -> Any:
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))  # never overflows
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_vjp(ct: Any, x: Any) -> tuple[Any]:
    s = sigmoid(x)
    return (ct * s * (1.0 - s),)


def _sigmoid_jvp(t: tuple[Any], x: Any) -> Any:
    s = sigmoid(x)
    return s * (1.0 - s) * _t(t, 0, x)


def _sigmoid_wrong(ct: Any, x: Any) -> tuple[Any]:
    return (ct * sigmoid(x),)  # without the (1 - s)


# -- attention and a small network ------------------------------------------------------------


def attention(q: Any, k: Any, v: Any) -> Any:
    xp = xp_of(q)
    return xp.matmul(softmax(xp.matmul(q, xp.matrix_transpose(k)) / math.sqrt(q.shape[-1])), v)


def _attention_vjp(ct: Any, q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    xp = xp_of(q)
    root = math.sqrt(q.shape[-1])
    p = softmax(xp.matmul(q, xp.matrix_transpose(k)) / root)
    dp = xp.matmul(ct, xp.matrix_transpose(v))
    ds = p * (dp - xp.sum(dp * p, axis=-1, keepdims=True)) / root
    return xp.matmul(ds, k), xp.matmul(xp.matrix_transpose(ds), q), xp.matmul(xp.matrix_transpose(p), ct)


def _attention_jvp(t: tuple[Any, ...], q: Any, k: Any, v: Any) -> Any:
    xp = xp_of(q)
    root = math.sqrt(q.shape[-1])
    p = softmax(xp.matmul(q, xp.matrix_transpose(k)) / root)
    dq, dk, dv = _t(t, 0, q), _t(t, 1, k), _t(t, 2, v)
    ds = (xp.matmul(dq, xp.matrix_transpose(k)) + xp.matmul(q, xp.matrix_transpose(dk))) / root
    dp = p * (ds - xp.sum(ds * p, axis=-1, keepdims=True))
    return xp.matmul(dp, v) + xp.matmul(p, dv)


def _attention_wrong(ct: Any, q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    dq, dk, dv = _attention_vjp(ct, q, k, v)
    return dq, dk, dv * 1.01


def _attention_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """4 to 8 queries over 8 to 32 keys (a row of scores is a row of logits), width 2 to 8."""
    tq, tk, d, dv = int(rng.integers(4, 9)), int(rng.integers(8, 33)), int(rng.integers(2, 9)), int(rng.integers(2, 9))
    return (tq, d), (tk, d), (tk, dv)


def mlp(x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    xp = xp_of(x)
    return xp.matmul(xp.tanh(xp.matmul(x, xp.matrix_transpose(w1)) + b1), xp.matrix_transpose(w2)) + b2


def _mlp_vjp(ct: Any, x: Any, w1: Any, b1: Any, w2: Any, b2: Any, *, tanh_derivative: bool = True) -> tuple[Any, ...]:
    xp = xp_of(x)
    h = xp.tanh(xp.matmul(x, xp.matrix_transpose(w1)) + b1)
    dh = xp.matmul(ct, w2)
    dz = dh * (1.0 - h**2) if tanh_derivative else dh
    dw1 = xp.matmul(xp.matrix_transpose(dz), x)
    if not tanh_derivative:
        dz = dh * (1.0 - h**2)  # the slip is in dW1 alone
    return xp.matmul(dz, w1), dw1, xp.sum(dz, axis=0), xp.matmul(xp.matrix_transpose(ct), h), xp.sum(ct, axis=0)


def _mlp_jvp(t: tuple[Any, ...], x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    xp = xp_of(x)
    h = xp.tanh(xp.matmul(x, xp.matrix_transpose(w1)) + b1)
    dz = (
        xp.matmul(_t(t, 0, x), xp.matrix_transpose(w1)) + xp.matmul(x, xp.matrix_transpose(_t(t, 1, w1))) + _t(t, 2, b1)
    )
    dh = (1.0 - h**2) * dz
    return xp.matmul(dh, xp.matrix_transpose(w2)) + xp.matmul(h, xp.matrix_transpose(_t(t, 3, w2))) + _t(t, 4, b2)


def _mlp_wrong(ct: Any, *args: Any) -> tuple[Any, ...]:
    return _mlp_vjp(ct, *args, tanh_derivative=False)  # dW1 without tanh's derivative


def _mlp_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    rows, k, hidden, n = (int(rng.integers(1, 7)) for _ in range(4))
    return (rows, k), (hidden, k), (hidden,), (n, hidden), (n,)


# -- complex maps that are not holomorphic ------------------------------------------------------


def c_abs(z: Any) -> Any:
    return xp_of(z).abs(z)


def _abs_vjp(ct: Any, z: Any) -> tuple[Any]:
    xp = xp_of(z)
    return (xp.astype(ct, z.dtype) * z / xp.astype(xp.abs(z), z.dtype),)


def _abs_jvp(t: tuple[Any], z: Any) -> Any:
    xp = xp_of(z)
    return xp.real(xp.conj(z) * _t(t, 0, z)) / xp.abs(z)


def _abs_wrong(ct: Any, z: Any) -> tuple[Any]:
    xp = xp_of(z)
    return (xp.astype(ct, z.dtype) * xp.conj(z) / xp.astype(xp.abs(z), z.dtype),)  # the phase conjugated


def c_conj(z: Any) -> Any:
    return xp_of(z).conj(z)


def _conj_vjp(ct: Any, z: Any) -> tuple[Any]:
    return (xp_of(z).conj(ct),)


def _conj_jvp(t: tuple[Any], z: Any) -> Any:
    return xp_of(z).conj(_t(t, 0, z))


def _conj_wrong(ct: Any, z: Any) -> tuple[Any]:
    return (ct,)  # not conjugated


def c_square_modulus(z: Any) -> Any:
    return z * xp_of(z).conj(z)


def _square_modulus_vjp(ct: Any, z: Any) -> tuple[Any]:
    xp = xp_of(z)
    return (2.0 * xp.astype(xp.real(ct), z.dtype) * z,)


def _square_modulus_jvp(t: tuple[Any], z: Any) -> Any:
    xp = xp_of(z)
    return xp.astype(2.0 * xp.real(xp.conj(z) * _t(t, 0, z)), z.dtype)


def _square_modulus_wrong(ct: Any, z: Any) -> tuple[Any]:
    return (2.0 * ct * z,)  # the cotangent, not its real part


def c_real(z: Any) -> Any:
    return xp_of(z).real(z)


def _real_vjp(ct: Any, z: Any) -> tuple[Any]:
    return (xp_of(z).astype(ct, z.dtype),)


def _real_jvp(t: tuple[Any], z: Any) -> Any:
    return xp_of(z).real(_t(t, 0, z))


def _real_wrong(ct: Any, z: Any) -> tuple[Any]:
    xp = xp_of(z)
    return (xp.astype(ct, z.dtype) * (1.0 + 0.01j),)  # a phase the real part does not have


def _elements(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    return ((int(rng.integers(1, 5)), int(rng.integers(1, 9))),)


LAYERS: tuple[Layer, ...] = (
    Layer("softmax", softmax, _softmax_vjp, _softmax_jvp, _rows, ("softmax without - s <ct, s>", _softmax_wrong)),
    Layer(
        "log-softmax",
        log_softmax,
        _log_softmax_vjp,
        _log_softmax_jvp,
        _rows,
        ("log-softmax: s ct, not s sum(ct)", _log_softmax_wrong),
    ),
    Layer(
        "logsumexp",
        logsumexp,
        _logsumexp_vjp,
        _logsumexp_jvp,
        _rows,
        ("logsumexp: exp not normalised", _logsumexp_wrong),
    ),
    Layer(
        "cross-entropy",
        cross_entropy,
        _cross_entropy_vjp,
        _cross_entropy_jvp,
        _rows,
        ("cross-entropy: off by 1%, sum(p) taken as 1", _cross_entropy_wrong),
    ),
    Layer(
        "layer norm",
        layer_norm,
        _layer_norm_vjp,
        _layer_norm_jvp,
        _layer_norm_shapes,
        ("layer norm: dx off by 1% of mean(ct)", _layer_norm_wrong),
    ),
    Layer("L2 normalisation", l2_normalize, _l2_vjp, _l2_jvp, _rows, ("L2: without the projection", _l2_wrong)),
    Layer("GELU (tanh)", gelu_tanh, _gelu_vjp, _gelu_jvp, _elements, ("GELU: the cube's 3 missing", _gelu_wrong)),
    Layer("sigmoid", sigmoid, _sigmoid_vjp, _sigmoid_jvp, _elements, ("sigmoid without (1 - s)", _sigmoid_wrong)),
    Layer(
        "attention",
        attention,
        _attention_vjp,
        _attention_jvp,
        _attention_shapes,
        ("attention: dv x 1.01", _attention_wrong),
    ),
    Layer("two-layer MLP", mlp, _mlp_vjp, _mlp_jvp, _mlp_shapes, ("MLP: dW1 without tanh'", _mlp_wrong)),
    Layer("abs", c_abs, _abs_vjp, _abs_jvp, _elements, ("abs with the phase conjugated", _abs_wrong), complex_=True),
    Layer("conj", c_conj, _conj_vjp, _conj_jvp, _elements, ("conj: the cotangent not conjugated", _conj_wrong), True),
    Layer(
        "z conj(z)",
        c_square_modulus,
        _square_modulus_vjp,
        _square_modulus_jvp,
        _elements,
        ("z conj(z): the cotangent, not its real part", _square_modulus_wrong),
        complex_=True,
    ),
    Layer("real part", c_real, _real_vjp, _real_jvp, _elements, ("real part: a phase too", _real_wrong), complex_=True),
)
BY_NAME = {layer.name: layer for layer in LAYERS}
# Input scales people train at: logits times 1, 10 and 30; 16-bit dtypes at 1 and 10.
SCALES = {"float64": (1.0, 10.0, 30.0), "float32": (1.0, 10.0, 30.0), "float16": (1.0, 10.0), "bfloat16": (1.0, 10.0)}
SCALES |= {"complex128": SCALES["float64"], "complex64": SCALES["float32"]}


def layers_for(dtype: str) -> tuple[Layer, ...]:
    complex_ = dtype.startswith("complex")
    return tuple(layer for layer in LAYERS if layer.complex_ == complex_)


def draw(layer: Layer, rng: np.random.Generator, dtype: str, scale: float) -> tuple[np.ndarray, ...]:
    """Host arguments (float64 or complex128) for `layer`: standard normal, the first argument
    (the logits, the input) times `scale`; weights scaled by 1/sqrt(fan-in)."""
    complex_ = dtype.startswith("complex")
    out = []
    for k, shape in enumerate(layer.shapes(rng)):
        a = rng.standard_normal(shape)
        if complex_:
            a = (a + 1j * rng.standard_normal(shape)) / math.sqrt(2.0)
        if k == 0:
            a = a * scale
        elif len(shape) == 2 and layer.name == "two-layer MLP":
            a = a / math.sqrt(shape[1])
        out.append(a)
    if layer.name == "layer norm":  # gamma about 1
        out[1] = 1.0 + 0.1 * out[1]
    return tuple(out)
