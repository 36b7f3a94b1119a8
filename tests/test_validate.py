"""Bad input: a clear error naming the parameter, what arrived and what was expected."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.helpers import host_random
from xaffine import affine, affine_backward, affine_jvp, affine_vjp


def _arrays(backend, x_shape=(3, 4), w_shape=(2, 4), b_shape=(2,), dtype="float64"):
    """Inputs of any shapes, fitting or not."""
    return tuple(
        None if s is None else backend.asarray(host_random(s, dtype, seed))
        for seed, s in enumerate((x_shape, w_shape, b_shape))
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


def test_a_weight_of_the_wrong_kind_is_named_before_its_feature_count(backend):
    """A weight wrong in two ways gets the error about what it is (dtype) before the one
    about its size, as the checks have always ordered them."""
    x, _, _ = _arrays(backend)
    wide = _arrays(backend, w_shape=(2, 6), dtype="float32")[1]
    with pytest.raises(TypeError, match=r"`x` and `weight` must share one dtype"):
        affine(x, wide)


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


# -- every form of `xp`, and "same library" by library ------------------------------

NAMESPACE_FORMS = {
    "numpy": lambda: __import__("numpy"),
    "numpy-compat": lambda: __import__("array_api_compat.numpy").numpy,
    "torch": lambda: pytest.importorskip("torch", reason="the torch module form needs torch"),
    "torch-compat": lambda: (
        pytest.importorskip("torch", reason="the torch module form needs torch"),
        __import__("array_api_compat.torch").torch,
    )[1],
    "jax.numpy": lambda: pytest.importorskip("jax.numpy", reason="the jax.numpy module form needs jax"),
    "dask.array": lambda: pytest.importorskip("dask.array", reason="the dask.array module form needs dask"),
    "array_api_strict": lambda: pytest.importorskip("array_api_strict", reason="needs array_api_strict"),
    "name": lambda: "numpy",
}


@pytest.mark.parametrize("form", list(NAMESPACE_FORMS))
def test_every_form_of_xp_builds_a_working_layer(form):
    """A raw module, array-api-compat's namespace or a name: one normalised namespace."""
    from xaffine import Affine
    from xaffine._backends import library_of

    xp = NAMESPACE_FORMS[form]()
    layer = Affine(3, 2, xp=xp, dtype="float32", seed=0)
    out = layer(layer.xp.ones((4, 3), dtype=layer.xp.float32))
    assert tuple(out.shape) == (4, 2)
    layer.backward(layer.xp.ones((4, 2), dtype=layer.xp.float32))
    # Setting a parameter computed from the old one keeps the layer's library.
    layer.weight = layer.weight * 0.5
    layer.load_state_dict(layer.state_dict())
    assert library_of(layer.weight) == library_of(layer.xp)


@pytest.mark.parametrize("form", ["numpy", "numpy-compat", "name"])
def test_functions_take_every_form_of_xp(form):
    xp = NAMESPACE_FORMS[form]()
    x, w, b = np.ones((3, 4)), np.ones((2, 4)), np.zeros(2)
    np.testing.assert_array_equal(affine(x, w, b, xp=xp), np.full((3, 2), 4.0))


def test_checks_still_run_when_xp_is_given():
    torch = pytest.importorskip("torch", reason="mixing needs a second library: torch")
    with pytest.raises(TypeError, match=r"`x` must be an array of an Array API library; got list"):
        affine([[1.0, 2.0]], np.ones((2, 2)), xp=np)
    with pytest.raises(TypeError, match=r"arrays from more than one library: .*`weight` is a torch array"):
        affine(np.ones((3, 4)), torch.ones(2, 4, dtype=torch.float64), xp=np)
    with pytest.raises(TypeError, match=r"`xp` is torch's namespace"):
        affine(np.ones((3, 4)), np.ones((2, 4)), xp=torch)


def test_an_unknown_xp_is_refused():
    with pytest.raises(TypeError, match=r"`xp` must be an array namespace .* got 42"):
        affine(np.ones((3, 4)), np.ones((2, 4)), xp=42)
    with pytest.raises(ValueError, match=r"unknown backend 'nope'"):
        affine(np.ones((3, 4)), np.ones((2, 4)), xp="nope")


# -- Python numbers are checked like arrays -------------------------------------------


def test_python_numbers_are_real_for_real_inputs():
    from fractions import Fraction

    x, w = np.ones((3, 4)), np.ones(4)
    with pytest.raises(TypeError, match=r"`bias` must be an array or a Python int, float or complex; got .*Fraction"):
        affine(x, w, Fraction(1, 3))
    with pytest.raises(TypeError, match=r"`bias` is the complex number 1j but `x` is real"):
        affine(x, w, 1j)
    with pytest.raises(TypeError, match=r"`tangents\[2\] \(dbias\)` is the complex number 1j but `x` is real"):
        affine_jvp(x, w, 1.0, (None, None, 1j))
    with pytest.raises(TypeError, match=r"`tangents\[2\] \(dbias\)` must be an array or a Python int.*Fraction"):
        affine_jvp(x, w, 1.0, (None, None, Fraction(1, 2)))
    # Real numbers, including NumPy's, are fine; so is a complex number for complex inputs.
    assert affine(x, w, np.float32(0.5)).dtype == np.float64
    assert affine(x.astype(complex), w.astype(complex), 1j).dtype == np.complex128


# -- what is not an array gets a TypeError naming the parameter ----------------------


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda w: affine(1.0, w), r"`x` must be an array of an Array API library; got float 1.0"),
        (lambda w: affine(None, w), r"`x` must be an array of an Array API library; got NoneType None"),
        (lambda w: affine(np.ones((3, 4)), None), r"`weight` must be an array of an Array API library; got NoneType"),
        (lambda w: affine(1.0, 2.0), r"`x` must be an array of an Array API library; got float 1.0"),
        (
            lambda w: affine_backward(np.ones((3, 2)), np.ones((3, 4)), w, wrt=None),
            r"`wrt` must be a name or an iterable of names .* got NoneType",
        ),
        (
            lambda w: affine_backward(np.ones((3, 2)), np.ones((3, 4)), w, wrt=(1, None)),
            r"`wrt` must hold names .* got int 1",
        ),
        (
            lambda w: affine_jvp(np.ones((3, 4)), w, None, None),
            r"`tangents` must be a tuple \(dx, dweight, dbias\) .* got NoneType",
        ),
        (
            lambda w: affine_backward(None, np.ones((3, 4)), w),
            r"`grad` must be an array of an Array API library; got NoneType",
        ),
        (
            lambda w: affine_jvp(np.ones((3, 4)), w, None, ([1.0], None, None)),
            r"`tangents\[0\] \(dx\)` must be an array of `x`'s shape",
        ),
    ],
    ids=[
        "x-number",
        "x-none",
        "weight-none",
        "two-numbers",
        "wrt-none",
        "wrt-junk",
        "tangents-none",
        "grad-none",
        "dx-list",
    ],
)
def test_not_an_array(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call(np.ones((2, 4)))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize(
    "make",
    [lambda a: np.asmatrix(a), lambda a: np.ma.masked_array(a, mask=np.zeros_like(a, bool))],
    ids=["matrix", "masked"],
)
@pytest.mark.parametrize("position", ["x", "weight", "grad"])
def test_numpy_subclasses_with_other_semantics_are_refused(make, position):
    x, w, g = np.ones((3, 4)), np.ones((2, 4)), np.ones((3, 2))
    args = {"x": x, "weight": w, "grad": g}
    args[position] = make(args[position])
    pattern = rf"`{position}` is a numpy( masked array, whose mask|\.matrix, whose operators)"
    with pytest.raises(TypeError, match=pattern):
        affine_backward(args["grad"], args["x"], args["weight"])


def test_non_native_byte_order_is_refused_at_the_boundary():
    swapped = np.ones((3, 4), dtype=">f8")
    with pytest.raises(TypeError, match=r"`x` has non-native byte order \(>f8\)"):
        affine(swapped, np.ones((2, 4)))
    with pytest.raises(TypeError, match=r"`weight` has non-native byte order"):
        affine(np.ones((3, 4)), np.ones((2, 4), dtype=">f8"))
    _, vjp = affine_vjp(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(TypeError, match=r"`grad` has non-native byte order"):
        vjp(np.ones((3, 2), dtype=">f8"))


# -- NumPy arrays beside another library's arrays -------------------------------------


def test_numpy_subclass_beside_jax_arrays_inside_custom_vjp():
    """JAX hands a custom_vjp's backward NumPy-subclass arrays beside its own."""
    jax = pytest.importorskip("jax", reason="the NumPy-beside-JAX rule needs jax")
    jnp = jax.numpy
    import xaffine

    @jax.custom_vjp
    def f(x, w):
        return xaffine.affine(x, w)

    def f_fwd(x, w):
        return f(x, w), (x, w)

    def f_bwd(saved, g):
        x, w = saved
        return tuple(xaffine.affine_backward(g, x, w)[:2])

    f.defvjp(f_fwd, f_bwd)
    x, w = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    _out, pullback = jax.vjp(f, x, w)
    dx, dw = pullback(jnp.ones((2, 4), jnp.float32))
    np.testing.assert_allclose(np.asarray(dx), np.full((2, 3), 4.0))
    np.testing.assert_allclose(np.asarray(dw), np.full((4, 3), 2.0))


def test_numpy_beside_jax_follows_jax_and_torch_refuses_it():
    jnp = pytest.importorskip("jax.numpy", reason="the NumPy-beside-JAX rule needs jax")
    out = affine(jnp.ones((3, 4), dtype=jnp.float32), np.ones((2, 4), dtype=np.float32))
    assert type(out).__module__.startswith("jax")
    torch = pytest.importorskip("torch", reason="needs torch, which takes no NumPy operands")
    with pytest.raises(TypeError, match=r"`weight` is a numpy array \(numpy\.ndarray\)"):
        affine(torch.ones(3, 4), np.ones((2, 4), dtype=np.float32))


def test_mixed_message_names_the_real_types():
    torch = pytest.importorskip("torch", reason="mixing needs a second library: torch")

    class Sub(np.ndarray):
        pass

    x = np.ones((3, 4)).view(Sub)
    with pytest.raises(TypeError, match=r"`x` is a numpy array \(.*Sub\), `weight` is a torch array \(torch.Tensor\)"):
        affine(x, torch.ones(2, 4, dtype=torch.float64))


# -- one rule for every argument: NumPy beside a library that takes it ------------------

_HOSTS = {
    "jax": ("jax.numpy", "jax"),
    "dask": ("dask.array", "dask"),
}


def _host_library(name):
    module, _ = _HOSTS[name]
    xp = pytest.importorskip(module, reason=f"the NumPy-beside rule for {name} needs {name}")
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    return xp


def _is_of(a, name):
    return type(a).__module__.partition(".")[0] in {"jax": ("jax", "jaxlib"), "dask": ("dask",)}[name]


def _computed(a):
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


_X, _W, _B, _G = (np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(2, 4) / 7, np.array([1.0, -2.0]), None)
_GRAD = np.linspace(-1, 1, 6).reshape(3, 2)


def _reference():
    return _X @ _W.T + _B, (_GRAD @ _W, _GRAD.T @ _X, _GRAD.sum(0))


# Which argument is the other library's; the rest are NumPy.
@pytest.mark.parametrize("library", list(_HOSTS))
@pytest.mark.parametrize("which", ["x", "weight", "bias", "grad"])
def test_numpy_beside_another_library_any_argument(library, which):
    xp = _host_library(library)
    args = {"x": _X, "weight": _W, "bias": _B, "grad": _GRAD}
    args[which] = xp.asarray(args[which])
    out_ref, grads_ref = _reference()
    if which != "grad":
        out = affine(args["x"], args["weight"], args["bias"])
        assert _is_of(out, library)
        np.testing.assert_allclose(_computed(out), out_ref)
    grads = affine_backward(args["grad"], args["x"], args["weight"], args["bias"])
    for got, want in zip(grads, grads_ref, strict=True):
        assert _is_of(got, library), type(got)
        np.testing.assert_allclose(_computed(got), want)
    out, vjp = affine_vjp(args["x"], args["weight"], args["bias"])
    for got, want in zip(vjp(args["grad"]), grads_ref, strict=True):
        assert _is_of(got, library), type(got)
        np.testing.assert_allclose(_computed(got), want)


@pytest.mark.parametrize("library", list(_HOSTS))
@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_tangent_of_another_library_beside_numpy(library, which):
    xp = _host_library(library)
    tangents = [None, None, None]
    tangents[which] = xp.asarray((_X, _W, _B)[which])
    out, tangent = affine_jvp(_X, _W, _B, tuple(tangents))
    assert _is_of(out, library)
    assert _is_of(tangent, library)
    want = [_X @ _W.T, _X @ _W.T, np.broadcast_to(_B, (3, 2))][which]
    np.testing.assert_allclose(_computed(tangent), want)


def test_a_numpy_layer_on_jax_inputs_gives_jax_results():
    jnp = _host_library("jax")
    from xaffine import Affine

    layer = Affine(4, 2, xp="numpy", dtype="float64", seed=0)
    out = layer(jnp.asarray(_X))
    dx = layer.backward(np.ones((3, 2)))
    assert _is_of(out, "jax")
    assert _is_of(dx, "jax")
    assert _is_of(layer.grads["weight"], "jax")
    np.testing.assert_allclose(np.asarray(dx), np.ones((3, 2)) @ np.asarray(layer.weight))


def test_numpy_beside_another_library_still_refuses_a_third():
    jnp = _host_library("jax")
    da = _host_library("dask")
    with pytest.raises(TypeError, match="more than one library"):
        affine_backward(da.asarray(_GRAD), jnp.asarray(_X), _W, _B)
    with pytest.raises(TypeError, match="more than one library"):
        affine_jvp(jnp.asarray(_X), _W, _B, (None, da.asarray(_W), None))
    with pytest.raises(TypeError, match="share one dtype"):
        affine_backward(jnp.asarray(_GRAD, dtype=jnp.float32), _X, _W, _B)


# -- a call's outcome never depends on an earlier call -------------------------------------

# Inputs whose signatures differ only in what the checks remember besides type, dtype and
# shape (JAX's weak type, byte order, a subclass, a mask): each prints its outcome, the
# result's dtype or the error.
_ORDER_SCRIPT = r"""
import json, sys
import numpy as np
from xaffine import affine

class Sub(np.ndarray):
    pass

x32, w32 = np.ones((3, 4), np.float32), np.ones(4, np.float32)
cases = {
    "numpy float32 bias": lambda: affine(x32, w32, np.asarray(0.5, np.float32)),
    "numpy float64 bias": lambda: affine(x32, w32, np.asarray(0.5)),
    "numpy big-endian weight": lambda: affine(x32, w32.astype(">f4"), None),
    "numpy subclass weight": lambda: affine(x32, w32.view(Sub), None),
    "numpy masked weight": lambda: affine(x32, np.ma.masked_array(w32, mask=[1, 0, 0, 0]), None),
    "numpy matrix x": lambda: affine(np.asmatrix(x32), w32, None),
    "int bias": lambda: affine(x32, w32, 1),
    "int bias past float64": lambda: affine(x32, w32, 2**1100),
}
try:
    import dask.array as da
except ImportError:
    pass
else:
    dx, dw = da.from_array(x32), da.from_array(w32)
    cases["dask weight"] = lambda: affine(dx, dw, None)
    cases["dask masked weight"] = lambda: affine(dx, da.from_array(np.ma.masked_array(w32, mask=[1, 0, 0, 0])), None)
try:
    import jax
except ImportError:
    pass
else:
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    jx, jw = jnp.asarray(x32), jnp.asarray(w32)
    for label, bias in (("weak", lambda: jnp.asarray(0.5)), ("float64", lambda: jnp.asarray(0.5, jnp.float64))):
        cases[f"jax {label} bias"] = lambda bias=bias: affine(jx, jw, bias())
        cases[f"jax.jit {label} bias"] = lambda bias=bias: jax.jit(affine)(jx, jw, bias())
outcomes = {}
for label in sys.argv[1:] or cases:
    try:
        outcomes[label] = str(cases[label]().dtype)
    except Exception as exc:
        outcomes[label] = f"{type(exc).__name__}: {exc}"
print(json.dumps(outcomes))
"""


def _outcomes(*labels):
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _ORDER_SCRIPT, *labels], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_an_outcome_does_not_depend_on_the_calls_before_it():
    """Each input in a fresh process, then all in one process in two orders: the same
    outcomes (a weakly typed JAX bias once let a float64 bias through after it)."""
    together = _outcomes()
    labels = list(together)
    fresh = {}
    for label in labels:
        fresh.update(_outcomes(label))
    assert together == fresh
    assert _outcomes(*reversed(labels)) == fresh
    assert fresh["numpy float64 bias"].startswith("TypeError: `x` and `bias` must share one dtype")
    assert fresh["int bias past float64"].startswith("ValueError: `bias` is an integer of 1101 bits, past float64")
    if "dask masked weight" in fresh:
        assert fresh["dask masked weight"].startswith("TypeError: `weight` is a Dask array of numpy masked arrays")
    if "jax weak bias" in fresh:
        assert fresh["jax weak bias"] == fresh["jax.jit weak bias"] == "float32"
        assert fresh["jax float64 bias"].startswith("TypeError: `x` and `bias` must share one dtype")


@pytest.mark.parametrize("value", [2**1100, -(2**1024)])
def test_an_integer_past_float64_is_refused_naming_the_parameter(value):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"`bias` is an integer of \d+ bits, past float64's range"):
        affine(x, np.ones(3), value)
    with pytest.raises(ValueError, match=r"`tangents\[2\] \(dbias\)` is an integer of \d+ bits"):
        affine_jvp(x, np.ones(3), 0.5, (None, None, value))


def test_a_byte_order_hint_is_code_that_runs():
    """The hint for a tangent names `dx`, not `tangents[0] (dx)`: the code it shows runs."""
    x = np.ones((2, 3))
    dx = x.astype(">f8")
    with pytest.raises(TypeError, match=r"convert it: dx\.astype\(dx\.dtype\.newbyteorder\('='\)\)") as caught:
        affine_jvp(x, np.ones(3), 0.5, (dx, None, None))
    fixed = eval(str(caught.value).partition("convert it: ")[2], {"dx": dx})
    affine_jvp(x, np.ones(3), 0.5, (fixed, None, None))
