"""The Affine layer on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.helpers import assert_matches, host_random
from xaffine import Affine, affine_backward, affine_jvp, affine_vjp
from xaffine._backends import to_numpy
from xaffine.testing import check_adjoint, check_vjp


def make(backend, *args, **kwargs):
    return Affine(*args, xp=backend.xp, device=backend.device, **kwargs)


@pytest.mark.gpu_smoke
def test_forward_and_backward_equal_the_functions(backend):
    layer = make(backend, 5, 3, seed=0, dtype="float64")
    x = backend.asarray(host_random((4, 2, 5), "float64", 1))
    g = backend.asarray(host_random((4, 2, 3), "float64", 2))
    out = layer(x)
    dx = layer.backward(g)
    ref_out, vjp = affine_vjp(x, layer.weight, layer.bias)
    ref = vjp(g)
    assert_matches(out, to_numpy(ref_out), backend, "float64", 1)
    assert_matches(dx, to_numpy(ref.x), backend, "float64", 1)
    assert_matches(layer.grads["weight"], to_numpy(ref.weight), backend, "float64", 1)
    assert_matches(layer.grads["bias"], to_numpy(ref.bias), backend, "float64", 1)


def test_gradients_accumulate_until_zero_grad(backend):
    layer = make(backend, 4, 2, seed=0, dtype="float64")
    x1, x2 = (backend.asarray(host_random((3, 4), "float64", s)) for s in (1, 2))
    g1, g2 = (backend.asarray(host_random((3, 2), "float64", s)) for s in (3, 4))
    layer(x1)
    layer.backward(g1)
    layer(x2)
    layer.backward(g2)
    for name in ("weight", "bias"):
        one = getattr(affine_backward(g1, x1, layer.weight, layer.bias), name)
        two = getattr(affine_backward(g2, x2, layer.weight, layer.bias), name)
        assert_matches(layer.grads[name], to_numpy(one) + to_numpy(two), backend, "float64", 6)
    layer.zero_grad()
    assert layer.grads == {"weight": None, "bias": None}


def test_seeded_init_is_bit_identical_to_the_host_draw(backend):
    """Every backend gets the same bits: compared with NumPy's, which all share."""
    for dtype in ("float32", "float64"):
        layer = make(backend, 7, 3, seed=42, dtype=dtype)
        numpy_layer = Affine(7, 3, xp="numpy", seed=42, dtype=dtype)
        for name in ("weight", "bias"):
            np.testing.assert_array_equal(to_numpy(getattr(layer, name)), to_numpy(getattr(numpy_layer, name)))
            assert to_numpy(getattr(layer, name)).dtype == np.dtype(dtype)


def test_default_init_matches_torch_linear_bounds():
    layer = Affine(100, 50, xp="numpy", seed=0)
    bound = 1 / np.sqrt(100)
    w, b = to_numpy(layer.weight), to_numpy(layer.bias)
    assert np.abs(w).max() <= bound
    assert np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound  # the full range is used
    assert w.dtype == np.float32


@pytest.mark.parametrize(
    ("init", "bound"), [("glorot", np.sqrt(6 / 150)), ("xavier", np.sqrt(6 / 150)), ("zeros", 0.0)]
)
def test_other_inits(init, bound):
    w = to_numpy(Affine(100, 50, xp="numpy", seed=0, init=init).weight)
    assert np.abs(w).max() <= bound
    if bound:
        assert np.abs(w).max() > 0.9 * bound


def test_lecun_init_scale():
    w = to_numpy(Affine(400, 300, xp="numpy", seed=0, init="lecun").weight)
    assert abs(w.std() - 1 / np.sqrt(400)) < 0.002


@pytest.mark.gpu_smoke
def test_zero_in_features(backend):
    layer = make(backend, 0, 3, seed=0)
    out = layer(backend.asarray(np.zeros((2, 0), dtype=np.float32)))
    assert tuple(out.shape) == (2, 3)


def test_unseeded_layers_differ():
    a, b = Affine(5, 5, xp="numpy"), Affine(5, 5, xp="numpy")
    assert not np.array_equal(a.weight, b.weight)


@pytest.mark.gpu_smoke
@pytest.mark.parametrize(("source", "target"), [("complex128", "complex64"), ("float64", "float32")])
def test_to_another_library_converts_to_the_dtype_asked_for(backend, source, target):
    """The cast happens on the host first: the target need not hold the source's dtype (MLX has no complex128)."""
    backend.dtype(target)
    layer = Affine(3, 2, xp="numpy", dtype=source, seed=0)
    moved = layer.to(backend.xp, backend.device, dtype=target)
    assert moved.dtype == getattr(backend.xp, target)
    np.testing.assert_allclose(to_numpy(moved.weight), layer.weight.astype(target), rtol=1e-6)


def test_to_round_trips(backend):
    layer = make(backend, 4, 3, seed=1)
    moved = layer.to("numpy")
    back = moved.to(backend.xp, backend.device)
    assert moved.xp is not None
    np.testing.assert_array_equal(to_numpy(back.weight), to_numpy(layer.weight))
    np.testing.assert_array_equal(to_numpy(back.bias), to_numpy(layer.bias))
    assert back.device == backend.device or str(back.device) == str(backend.device)


def test_input_grad_off_and_frozen_parameters(backend):
    layer = make(backend, 4, 2, seed=0, input_grad=False)
    layer.freeze("bias")
    layer(backend.asarray(np.ones((3, 4), dtype=np.float32)))
    assert layer.backward(backend.asarray(np.ones((3, 2), dtype=np.float32))) is None
    assert layer.grads["bias"] is None
    assert layer.grads["weight"] is not None
    assert layer.frozen == {"bias"}
    layer.unfreeze()
    assert layer.frozen == frozenset()


def test_backward_errors(backend):
    layer = make(backend, 4, 2, seed=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) first"):
        layer.backward(backend.asarray(np.ones((3, 2), dtype=np.float32)))
    layer(backend.asarray(np.ones((3, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"`grad` must have the output's shape \(3, 2\); got \(3, 3\)"):
        layer.backward(backend.asarray(np.ones((3, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"unknown parameter 'w'"):
        layer.freeze("w")


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"`in_features` must be an integer from 0 to 2147483647 .*; got -1"):
        Affine(-1, 2, xp="numpy")
    with pytest.raises(ValueError, match=r"unknown `init` 'he'"):
        Affine(2, 2, xp="numpy", init="he")
    with pytest.raises(TypeError, match=r"`dtype` must be one of"):
        Affine(2, 2, xp="numpy", dtype="int32")
    with pytest.raises(ValueError, match=r"unknown backend 'nope'"):
        Affine(2, 2, xp="nope")


@pytest.mark.gpu_smoke
def test_state_dict_round_trip_and_errors(backend):
    layer = make(backend, 4, 3, seed=0)
    other = make(backend, 4, 3, seed=1)
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(to_numpy(other.weight), to_numpy(layer.weight))
    before = to_numpy(other.weight).copy()
    with pytest.raises(KeyError, match=r"'weight' and optionally 'bias'"):
        other.load_state_dict({"weight": np.zeros((3, 4), np.float32), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'bias' must have shape \(out_features,\) = \(3,\); got \(2,\)"):
        other.load_state_dict({"weight": np.zeros((3, 4), np.float32), "bias": np.zeros(2, np.float32)})
    with pytest.raises(TypeError, match=r"`weight` must have dtype float32; got float64"):
        other.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(3)})
    with pytest.raises(ValueError, match=r"`weight` must have shape \(3, 4\); got \(3, 5\)"):
        other.load_state_dict({"weight": np.zeros((3, 5), np.float32), "bias": np.zeros(3, np.float32)})
    # Nothing was half-loaded.
    np.testing.assert_array_equal(to_numpy(other.weight), before)


def test_state_dict_interop_with_torch_linear(backend):
    torch = pytest.importorskip("torch", reason="interop with torch.nn.Linear needs torch")
    layer = make(backend, 6, 4, seed=3)
    linear = torch.nn.Linear(6, 4)
    linear.load_state_dict({k: torch.from_numpy(to_numpy(v).copy()) for k, v in layer.state_dict().items()})
    x = host_random((5, 6), "float32", 4)
    ours = to_numpy(layer(backend.asarray(x)))
    theirs = linear(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # And the other way round.
    torch.nn.init.normal_(linear.weight)
    layer.load_state_dict(linear.state_dict())
    np.testing.assert_array_equal(to_numpy(layer.weight), linear.weight.detach().numpy())


@pytest.mark.gpu_smoke
def test_gradient_checks_on_the_layer(backend):
    layer = make(backend, 4, 3, seed=0, dtype="float64")
    x = backend.asarray(host_random((5, 4), "float64", 1))

    def f(x, w, b):
        layer.weight, layer.bias = w, b
        return layer(x)

    def vjp(ct, x, w, b):
        layer.weight, layer.bias = w, b
        layer.zero_grad()
        layer(x)
        dx = layer.backward(ct)
        return dx, layer.grads["weight"], layer.grads["bias"]

    check_vjp(f, vjp, (x, layer.weight, layer.bias))
    check_adjoint(lambda t, x, w, b: affine_jvp(x, w, b, t)[1], vjp, (x, layer.weight, layer.bias))


def test_repr():
    layer = Affine(784, 10, xp="numpy", seed=0)
    assert (
        repr(layer) == "Affine(in_features=784, out_features=10, bias=True, backend=numpy, device=cpu, dtype=float32)"
    )


def test_setters_check(backend):
    layer = make(backend, 3, 2, seed=0)
    with pytest.raises(ValueError, match=r"`weight` must have shape \(2, 3\); got \(3, 2\)"):
        layer.weight = backend.asarray(np.zeros((3, 2), np.float32))
    no_bias = make(backend, 3, 2, bias=False, seed=0)
    assert no_bias.bias is None
    assert no_bias.state_dict().keys() == {"weight"}
    with pytest.raises(AttributeError, match=r"this layer has no bias"):
        no_bias.bias = backend.asarray(np.zeros(2, np.float32))


def test_bfloat16_where_the_backend_has_it(backend):
    if not backend.has("bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16")
    layer = make(backend, 6, 4, seed=5, dtype="bfloat16")
    assert layer.dtype == backend.xp.bfloat16
    reference = Affine(6, 4, xp="numpy", seed=5, dtype="float32")
    # Rounded once from the same float32 numbers: within bfloat16's half-ulp.
    w = to_numpy(backend.xp.astype(layer.weight, backend.xp.float32))
    np.testing.assert_allclose(w, to_numpy(reference.weight), rtol=2**-8)
    out = layer(backend.xp.astype(backend.asarray(np.ones((2, 6), dtype=np.float32)), backend.xp.bfloat16))
    assert out.dtype == backend.xp.bfloat16


def test_bfloat16_layers_move_between_backends_and_dtypes(backend):
    """to() copies bfloat16 within and across libraries, and converts dtypes on request."""
    if not backend.has("bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16")
    layer = make(backend, 6, 4, seed=5, dtype="bfloat16")
    same = layer.to(backend.xp, backend.device)
    assert same.dtype == backend.xp.bfloat16
    wide = layer.to(dtype="float32")
    assert wide.dtype == backend.xp.float32
    np.testing.assert_array_equal(to_numpy(wide.weight), to_numpy(layer.weight))
    for target in ("torch", "jax"):
        if target == backend.name:
            continue
        pytest.importorskip(target, reason=f"moving to {target} needs it installed")
        moved = layer.to(target)
        assert "bfloat16" in str(moved.dtype)
        np.testing.assert_array_equal(to_numpy(moved.weight), to_numpy(layer.weight))
    on_numpy = layer.to("numpy", dtype="float32")
    np.testing.assert_array_equal(to_numpy(on_numpy.weight), to_numpy(wide.weight))
    with pytest.raises(TypeError, match=r"`dtype` is bfloat16, but NumPy has no bfloat16: .*dtype='float32'"):
        layer.to("numpy")


def test_float16_bias_gradient_accumulates_in_float32(backend):
    """A float16 row sum of 8192 ones is 8192, not float16's 2048 (where 2048 + 1 rounds back)."""
    if not backend.has("float16"):
        pytest.skip(f"{backend.name} has no float16")
    layer = make(backend, 3, 2, dtype="float16", seed=0)
    layer(backend.asarray(np.ones((8192, 3), np.float16)))
    layer.backward(backend.asarray(np.ones((8192, 2), np.float16)))
    np.testing.assert_array_equal(to_numpy(layer.grads["bias"]), np.full(2, 8192, np.float16))
    assert layer.grads["bias"].dtype == backend.xp.float16


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_weight_gradient_accumulates_in_float32(backend, dtype):
    """dW of 8192 ones is 8192 in 16 bits (not 2048 or 256), as the docs say each CPU library's product accumulates."""
    if not backend.has(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    if backend.row.gpu:
        pytest.skip("GPU libraries choose their own accumulation (cuBLAS); the docs claim this on the CPU only")
    xp = backend.xp
    layer = make(backend, 3, 2, dtype=dtype, seed=0)
    layer(xp.astype(backend.asarray(np.ones((8192, 3), np.float32)), getattr(xp, dtype)))
    layer.backward(xp.astype(backend.asarray(np.ones((8192, 2), np.float32)), getattr(xp, dtype)))
    np.testing.assert_array_equal(to_numpy(layer.grads["weight"]), np.full((2, 3), 8192, np.float32))
    assert layer.grads["weight"].dtype == getattr(xp, dtype)


def test_jax_without_x64_refuses_64_bit_layers():
    """JAX without x64 would silently make float32: the layer says how to enable x64 instead."""
    pytest.importorskip("jax", reason="the x64 rule is JAX's")
    code = """
import pytest, xaffine
for make in (
    lambda: xaffine.Affine(3, 2, xp="jax", dtype="float64"),
    lambda: xaffine.Affine(3, 2, xp="jax", dtype="complex128"),
    lambda: xaffine.Affine(3, 2, xp="numpy", dtype="float64").to("jax"),
):
    with pytest.raises(TypeError, match=r"JAX keeps 64-bit types only with x64 enabled .*jax_enable_x64"):
        make()
assert str(xaffine.Affine(3, 2, xp="jax", dtype="float32").dtype) == "float32"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_backward_from_another_thread_is_refused():
    """A layer keeps one saved input: interleaved threads would mix inputs, so that is an error."""
    layer = Affine(3, 2, xp="numpy", seed=0)
    layer(np.ones((4, 3), np.float32))
    errors = []

    def other():
        try:
            layer.backward(np.ones((4, 2), np.float32))
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert errors
    assert "use one layer per thread" in errors[0]
    layer.backward(np.ones((4, 2), np.float32))  # the thread that ran forward may go on


def test_a_forward_in_another_thread_between_the_steps_of_a_forward(monkeypatch):
    """Another thread's forward landing while this thread's forward records its thread id
    (planted deterministically there) must not leave this thread's id beside the other
    thread's saved input: the backward here uses this thread's input, the other one is refused."""
    layer = Affine(3, 2, xp="numpy", seed=0, dtype="float64")
    mine, theirs = (np.random.default_rng(seed).standard_normal((4, 3)) for seed in (1, 2))
    grad = np.ones((4, 2))
    get_ident, main = threading.get_ident, threading.get_ident()
    fired, errors = [], []

    def other_forward_first() -> int:
        if get_ident() == main and not fired:
            fired.append(True)
            thread = threading.Thread(target=layer, args=(theirs,))
            thread.start()
            thread.join()
        return get_ident()

    def other_backward():
        try:
            layer.backward(grad)
        except RuntimeError as exc:
            errors.append(str(exc))

    monkeypatch.setattr(threading, "get_ident", other_forward_first)
    layer(mine)
    assert fired
    layer.backward(grad)
    np.testing.assert_allclose(layer.grads["weight"], grad.T @ mine)
    thread = threading.Thread(target=other_backward)
    thread.start()
    thread.join()
    assert errors
    assert "another thread" in errors[0]


def test_one_layer_per_thread_is_safe():
    """Layers in separate threads, and the functions anywhere, give each thread its own result."""
    results = {}

    def work(seed):
        layer = Affine(3, 2, xp="numpy", seed=0, dtype="float64")
        x = np.random.default_rng(seed).standard_normal((64, 3))
        for _ in range(50):
            layer.zero_grad()
            layer(x)
            layer.backward(np.ones((64, 2)))
        results[seed] = (layer.grads["weight"], x)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for weight_grad, x in results.values():
        np.testing.assert_allclose(weight_grad, np.ones((64, 2)).T @ x)


def test_setting_parameters_of_another_library_is_refused():
    torch = pytest.importorskip("torch", reason="needs a second library: torch")
    layer = Affine(3, 2, xp="numpy", seed=0)
    with pytest.raises(TypeError, match=r"`weight` must be an array of this layer's backend, numpy; got Tensor"):
        layer.weight = torch.zeros(2, 3)


class _Square(Affine):
    """A subclass whose constructor takes other arguments."""

    def __init__(self, n, **kwargs):
        super().__init__(n, n, **kwargs)


class _Zeros(Affine):
    """A subclass whose constructor fixes the initialisation."""

    def __init__(self, in_features, out_features, **kwargs):
        kwargs.pop("init", None)
        super().__init__(in_features, out_features, init="zeros", **kwargs)


@pytest.mark.parametrize("cls", [_Square, _Zeros])
def test_from_state_dict_makes_the_subclass_holding_the_state(cls):
    """from_state_dict sets a layer up with Affine's own constructor, whatever the subclass's."""
    state = {"weight": np.arange(9.0, dtype=np.float32).reshape(3, 3), "bias": np.ones(3, np.float32)}
    layer = cls.from_state_dict(state, xp="numpy")
    assert type(layer) is cls
    np.testing.assert_array_equal(layer.weight, state["weight"])
    np.testing.assert_array_equal(layer.bias, state["bias"])
    layer(np.ones((2, 3), np.float32))
    layer.backward(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(layer.grads["bias"], [2.0, 2.0, 2.0])


# -- the layer's boundary refuses what the functions refuse ---------------------------------

_REFUSED = {
    "matrix": (lambda a: np.asmatrix(a), r"is a numpy\.matrix.*np\.asarray\({}\)"),
    "masked": (
        lambda a: np.ma.masked_array(a, mask=np.arange(a.size).reshape(a.shape) == 0),
        r"is a numpy masked array, whose mask the layer cannot honour.*{}\.filled\(value\)",
    ),
    "big-endian": (lambda a: a.astype(a.dtype.newbyteorder(">")), r"has non-native byte order.*{}\.astype"),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("kind", list(_REFUSED))
@pytest.mark.parametrize("name", ["weight", "bias"])
@pytest.mark.parametrize("way", ["setter", "load_state_dict"])
def test_the_layer_refuses_matrices_and_masked_arrays(kind, name, way):
    """np.matrix and masked arrays (a masked 1e30 once gave outputs of 3e30) are refused at
    the layer's boundary as the functions refuse them, naming the parameter; the layer is
    unchanged. A setter keeps the array it is given, so a non-native byte order is refused
    there too (load_state_dict copies, converting it)."""
    make, pattern = _REFUSED[kind]
    layer = Affine(4, 2, xp="numpy", seed=0)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    value = np.asarray(layer.state_dict()[name]).copy()
    value.flat[0] = 1e30
    bad = make(value)
    if way == "setter":
        with pytest.raises(TypeError, match=rf"`{name}` " + pattern.format(name)):
            setattr(layer, name, bad)
    elif kind == "big-endian":
        layer.load_state_dict({**before, name: bad})
        np.testing.assert_array_equal(layer.state_dict()[name], value)
        assert layer.state_dict()[name].dtype.isnative
        return
    else:
        with pytest.raises(TypeError, match=rf"`{name}` " + pattern.format(name)):
            layer.load_state_dict({**before, name: bad})
        with pytest.raises(TypeError, match=rf"`{name}` " + pattern.format(name)):
            Affine.from_state_dict({**before, name: bad}, xp="numpy")
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_the_layer_refuses_a_dask_array_of_masked_chunks():
    da = pytest.importorskip("dask.array", reason="Dask arrays of masked chunks")
    layer = Affine(4, 2, xp="numpy", seed=0)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    masked = da.from_array(np.ma.masked_array(before["weight"], mask=before["weight"] > 0))
    pattern = r"`weight` is a Dask array of numpy masked arrays.*dask\.array\.ma\.filled\(weight, value\)"
    with pytest.raises(TypeError, match=pattern):
        layer.load_state_dict({**before, "weight": masked})
    with pytest.raises(TypeError, match=pattern):
        Affine.from_state_dict({"weight": masked}, xp="dask")
    with pytest.raises(TypeError, match=pattern):
        Affine(4, 2, xp="dask", seed=0).weight = masked
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize(
    ("seed", "error", "pattern"),
    [
        (-1, ValueError, r"got -1"),
        (1.5, TypeError, r"got float 1\.5"),
        ("0", TypeError, r"got str '0'"),
        (True, TypeError, r"got bool True"),
        (None, None, None),
        (np.int64(3), None, None),
    ],
)
def test_seed_is_a_non_negative_integer_or_none(seed, error, pattern):
    if error is None:
        Affine(3, 2, xp="numpy", seed=seed)
        return
    with pytest.raises(error, match=r"`seed` must be a non-negative integer or None; " + pattern):
        Affine(3, 2, xp="numpy", seed=seed)
