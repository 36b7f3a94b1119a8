"""Bad input: a clear error naming the parameter, what arrived and what was expected."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xaffine import affine, affine_backward, affine_jvp, affine_vjp


def _arrays(backend, x_shape=(3, 4), w_shape=(2, 4), b_shape=(2,), dtype="float64"):
    rng = np.random.default_rng(0)
    return tuple(
        None if s is None else backend.asarray(rng.standard_normal(s).astype(dtype))
        for s in (x_shape, w_shape, b_shape)
    )


@pytest.mark.parametrize(
    ("shapes", "pattern"),
    [
        (((), (2, 4), (2,)), r"`x` must have at least one axis.*0-d"),
        (
            ((300, 16), (1, 8), (1,)),
            r"`x` has 16 features \(shape \(300, 16\)\) but `weight` expects 8: "
            r"shape \(out_features=1, in_features=8\)",
        ),
        (((3, 5), (4,), None), r"`x` has 5 features .* `weight` expects 4: shape \(in_features=4,\)"),
        (((3, 4), (2, 2, 4), (2,)), r"`weight` must be 2-D, .* or 1-D, .*; got shape \(2, 2, 4\)"),
        (((3, 4), (), None), r"`weight` must be 2-D, .*; got shape \(\)"),
        (((3, 4), (2, 4), (3,)), r"`bias` must be shape \(out_features,\) = \(2,\) .*got shape \(3,\)"),
        (((3, 4), (2, 4), (1, 2)), r"`bias` must be shape .*got shape \(1, 2\)"),
        (((3, 4), (4,), (1,)), r"`bias` must be a scalar .* for .*1-D|`bias` must be a scalar"),
    ],
    ids=["x-0d", "features", "features-w1d", "weight-3d", "weight-0d", "bias-len", "bias-2d", "bias-w1d"],
)
def test_shape_errors(backend, shapes, pattern):
    args = _arrays(backend, *shapes)
    with pytest.raises(ValueError, match=pattern):
        affine(*args)
    with pytest.raises(ValueError, match=pattern):
        affine_vjp(*args)


def test_number_bias_needs_a_1d_weight(backend):
    x, w, _ = _arrays(backend)
    with pytest.raises(ValueError, match=r"`bias` must be an array of shape \(out_features,\) = \(2,\).*number 1.0"):
        affine(x, w, 1.0)


def test_complex_number_bias_on_real_input(backend):
    x, _, _ = _arrays(backend)
    w = _arrays(backend, w_shape=(4,))[1]
    with pytest.raises(TypeError, match=r"`bias` is the complex number .* but `x` is real"):
        affine(x, w, 1j)


@pytest.mark.parametrize("name", ["x", "weight", "bias"])
@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_non_floating_dtypes(backend, name, dtype):
    args = list(_arrays(backend))
    i = ("x", "weight", "bias").index(name)
    args[i] = backend.asarray(np.ones(args[i].shape, dtype=dtype))
    with pytest.raises(
        TypeError, match=rf"`{name}` must have a real or complex floating-point dtype; got {dtype}|`{name}`.*{dtype}"
    ):
        affine(*args)


def test_mixed_float_dtypes(backend):
    x, _, b = _arrays(backend)
    w32 = _arrays(backend, dtype="float32")[1]
    with pytest.raises(TypeError, match=r"`x` and `weight` must share one dtype; got .*float64 and .*float32"):
        affine(x, w32, b)


def test_grad_shape_and_dtype(backend):
    x, w, b = _arrays(backend)
    with pytest.raises(ValueError, match=r"`grad` must have the output's shape \(3, 2\); got \(3, 3\)"):
        affine_backward(backend.asarray(np.ones((3, 3))), x, w, b)
    _, vjp = affine_vjp(x, w, b)
    with pytest.raises(ValueError, match=r"`grad` must have the output's shape \(3, 2\); got \(2,\)"):
        vjp(backend.asarray(np.ones(2)))
    with pytest.raises(TypeError, match=r"`x` and `grad` must share one dtype"):
        vjp(backend.asarray(np.ones((3, 2), dtype="float32")))


def test_unknown_wrt(backend):
    x, w, b = _arrays(backend)
    g = backend.asarray(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"unknown name 'w' in `wrt`; allowed: 'x', 'weight', 'bias'"):
        affine_backward(g, x, w, b, wrt=("x", "w"))


def test_tangent_errors(backend):
    x, w, b = _arrays(backend)
    with pytest.raises(ValueError, match=r"`tangents` must be a triple"):
        affine_jvp(x, w, b, (x, w))
    with pytest.raises(
        ValueError, match=re.escape("`tangents[1] (dweight)` must have the shape of `weight`, (2, 4); got (3, 4)")
    ):
        affine_jvp(x, w, b, (None, x, None))
    with pytest.raises(ValueError, match=r"`tangents\[2\] \(dbias\)` was given but `bias` is None"):
        affine_jvp(x, w, None, (None, None, b))


def test_arrays_from_two_libraries():
    torch = pytest.importorskip("torch", reason="mixing needs a second library: torch")
    with pytest.raises(TypeError, match=r"`x` is a torch array \(torch.Tensor\), `weight` is a numpy array"):
        affine(torch.ones(3, 4, dtype=torch.float64), np.ones((2, 4)))
    _, vjp = affine_vjp(torch.ones(3, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"`grad` is a numpy array \(numpy.ndarray\), `x` is a torch array"):
        vjp(np.ones((3, 2)))


def test_arrays_on_two_devices():
    xp = pytest.importorskip("array_api_strict", reason="a second CPU device comes from array_api_strict")
    x = xp.ones((3, 4))
    w = xp.ones((2, 4), device=xp.Device("device1"))
    with pytest.raises(ValueError, match=r"`x` is on device .*CPU_DEVICE.* but `weight` is on device .*device1"):
        affine(x, w)


def test_bias_of_the_wrong_kind(backend):
    x, w, _ = _arrays(backend)
    with pytest.raises(TypeError, match=r"`bias` must be an array or a Python int, float or complex; got str"):
        affine(x, w, "0")
    with pytest.raises(TypeError, match=r"`bias` must be an array or a Python int, float or complex; got bool"):
        affine(x, _arrays(backend, w_shape=(4,))[1], True)
    with pytest.raises(TypeError, match=r"`x` must be an array of an Array API library; got list"):
        affine([[1.0, 2.0]], w)
