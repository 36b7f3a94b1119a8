"""The functional core on every backend, every shape of docs/math.md (both forms of the layer) and every dtype."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_extra.testing import lazy_xp_function

from tests.helpers import (
    DTYPES,
    assert_matches,
    host_random,
    make_inputs,
    patch_row,
    reference_backward,
    reference_forward,
    tolerances,
    wide,
)
from xaffine import affine, affine_backward, affine_jvp, affine_vjp
from xaffine._backends import to_numpy
from xaffine.testing import check_adjoint, check_vjp


def vjp_apply(x, weight, bias, grad, wrt=("x", "weight", "bias")):
    """`affine_vjp` followed by its vjp, as one function that can be jitted."""
    out, vjp = affine_vjp(x, weight, bias)
    return out, vjp(grad, wrt=wrt)


for _func in (affine, affine_backward, affine_jvp, vjp_apply):
    lazy_xp_function(_func)

# (x shape, out_features): the several-outputs form (a 2-D weight), including 1-D inputs and zero sizes.
SHAPES_SEVERAL = [
    ((5,), 4),
    ((7, 5), 4),
    ((0, 5), 4),
    ((2, 0, 5), 4),
    ((2, 3, 5), 4),
    ((3, 1), 1),
    ((4, 0), 3),
]
# x shapes for the one-output form (a 1-D weight).
SHAPES_ONE = [(5,), (7, 5), (2, 3, 5), (0, 5)]


CASES = [(s, n, "array") for s, n in SHAPES_SEVERAL] + [(s, n, "none") for s, n in SHAPES_SEVERAL[:3]]
CASES += [(s, None, kind) for s in SHAPES_ONE for kind in ("array", "number", "none")]
CASE_IDS = [f"{'x'.join(map(str, s))}-{'w1d' if n is None else n}-{kind}" for s, n, kind in CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "n", "bias_kind"), CASES, ids=CASE_IDS)
class TestAgainstReference:
    def test_forward(self, xp, backend, x_shape, n, bias_kind, dtype):
        backend.dtype(dtype)
        host, on = make_inputs(backend, x_shape, n, dtype, bias_kind)
        out = affine(*on.args)
        assert_matches(out, reference_forward(*host.args), backend, dtype, x_shape[-1])

    def test_backward(self, xp, backend, x_shape, n, bias_kind, dtype):
        backend.dtype(dtype)
        host, on = make_inputs(backend, x_shape, n, dtype, bias_kind)
        grads = affine_backward(on.grad, *on.args)
        expected = reference_backward(host.grad, *host.args)
        m = int(np.prod(x_shape[:-1]))
        for name, actual, ref, length in zip(("x", "weight", "bias"), grads, expected, (n or 1, m, m), strict=True):
            if ref is None:
                assert actual is None, name
                continue
            assert_matches(actual, ref, backend, dtype, length)

    def test_vjp_equals_backward(self, xp, backend, x_shape, n, bias_kind, dtype):
        backend.dtype(dtype)
        _, on = make_inputs(backend, x_shape, n, dtype, bias_kind)
        args, g = on.args, on.grad
        out, grads = vjp_apply(*args, g)
        backward = affine_backward(g, *args)
        assert_matches(out, np.asarray(to_numpy(affine(*args))), backend, dtype, 1)
        for actual, expected in zip(grads, backward, strict=True):
            assert (actual is None) == (expected is None)
            if actual is not None:
                assert_matches(actual, to_numpy(expected), backend, dtype, 1)

    def test_jvp_exact(self, xp, backend, x_shape, n, bias_kind, dtype):
        backend.dtype(dtype)
        host, on = make_inputs(backend, x_shape, n, dtype, bias_kind)
        t_host, t_on = make_inputs(backend, x_shape, n, dtype, bias_kind, seed=10)
        tangents = tuple(
            None if a is None else (1.5 if kind == "number" else a)
            for a, kind in zip(t_on.args, ("a", "a", bias_kind), strict=True)
        )
        out, tangent_out = affine_jvp(*on.args, tangents)
        x, w, _ = (wide(h) for h in host.args)
        dx, dw, db = (wide(h) for h in t_host.args)
        expected = reference_forward(dx, w, None) + reference_forward(x, dw, None)
        if tangents[2] is not None:
            expected = expected + (1.5 if bias_kind == "number" else db)
        assert_matches(out, reference_forward(*host.args), backend, dtype, x_shape[-1])
        assert_matches(tangent_out, expected, backend, dtype, 2 * x_shape[-1])


@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32", "complex64", "float16"])
@pytest.mark.parametrize(
    ("x_shape", "n", "bias_kind"),
    [((3, 4), 2, "array"), ((2, 3, 4), 3, "array"), ((3, 4), None, "number"), ((4,), None, "array")],
)
@pytest.mark.gpu_smoke
def test_gradient_checks(backend, x_shape, n, bias_kind, dtype):
    """The adjoint identity in every dtype; finite differences (float64) on every backend."""
    backend.dtype(dtype)
    args = make_inputs(backend, x_shape, n, dtype, bias_kind)[1].args
    names = ("x", "weight", "bias")
    check_adjoint(lambda t, *a: affine_jvp(*a, t)[1], lambda ct, *a: affine_backward(ct, *a), args, argnames=names)
    if not backend.has("complex128" if dtype.startswith("complex") else "float64"):
        return  # finite differences need the wide dtype (MLX has no complex128): tests/test_testing.py
    check_vjp(affine, lambda ct, *a: affine_backward(ct, *a), args, mode="fast", argnames=names)
    if int(np.prod(x_shape)) <= 12 and backend.row.library not in ("dask", "ndonnx"):  # a graph per element there
        check_vjp(affine, lambda ct, *a: affine_backward(ct, *a), args, mode="full", argnames=names)


@pytest.mark.parametrize("wrt", [("x",), ("weight",), ("bias",), ("x", "bias"), "weight", ()])
def test_wrt_computes_only_what_is_asked(xp, backend, wrt):
    _, on = make_inputs(backend, (6, 5), 3)
    grads = affine_backward(on.grad, *on.args, wrt=wrt)
    asked = {wrt} if isinstance(wrt, str) else set(wrt)
    for name in ("x", "weight", "bias"):
        assert (getattr(grads, name) is not None) == (name in asked), name


def test_skipped_gradients_skip_their_products(backend, monkeypatch):
    """A gradient not asked for costs no matrix product (counted through the backend row)."""
    calls = []
    _, on = make_inputs(backend, (6, 5), 3)
    real = patch_row(monkeypatch, on.args[0], matmul=lambda a, b: calls.append(b.shape) or real.matmul(a, b))
    affine_backward(on.grad, *on.args, wrt=("bias",))
    assert calls == []
    affine_backward(on.grad, *on.args, wrt=("weight",))
    assert calls == [(6, 5)]


@pytest.mark.parametrize("rows", [3, 1 << 15])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
@pytest.mark.gpu_smoke
def test_bias_gradient_sums_every_row(xp, backend, dtype, rows):
    """db over 32 x `rows` gradient elements, up to 2**20 (NumPy's row sums real dtypes by a
    matrix-vector product); an infinity stays infinite, in complex too, where a product with
    (1+0j) would make a NaN of it (0 * inf)."""
    backend.dtype(dtype)
    host, on = make_inputs(backend, (rows, 3), 32, dtype)
    grad = np.array(host.grad)
    grad[0, 0], grad[1, 1] = np.inf, np.nan
    db = to_numpy(affine_backward(backend.asarray(grad), *on.args, wrt=("bias",)).bias)
    assert db.dtype == np.dtype(dtype)
    assert db[0].real == np.inf
    assert np.isfinite(db[0].imag)  # (inf+0j)(1+0j) has a NaN imaginary part
    assert np.isnan(db[1])
    finite = reference_backward(host.grad, *host.args)[2][2:]
    np.testing.assert_allclose(db[2:], finite, *tolerances(dtype, rows, finite))


@pytest.mark.parametrize("n", [None, 3], ids=["w1d", "3"])
@pytest.mark.gpu_smoke
def test_bias_gradient_is_as_accurate_as_the_librarys_sum(xp, backend, n):
    """A backend row's faster sum may not lose what the library's own sum keeps: in float32,
    a column [2**24, 1, 1, ...] loses every 1 to a running sum (2**24 + 1 rounds to 2**24)."""
    backend.dtype("float32")
    rows = 4097
    g = np.ones((rows, n or 1), dtype=np.float32)
    g[0] = 2.0**24
    grad = backend.asarray(g if n else g[:, 0])
    x = backend.asarray(np.zeros((rows, 2), dtype=np.float32))
    weight = backend.asarray(np.zeros((n, 2) if n else (2,), dtype=np.float32))
    bias = backend.asarray(np.zeros((n,) if n else (), dtype=np.float32))
    db = to_numpy(affine_backward(grad, x, weight, bias, wrt=("bias",)).bias)
    own = to_numpy(xp.sum(grad, axis=0))
    exact = 2.0**24 + rows - 1
    assert np.all(np.abs(db.astype(np.float64) - exact) <= np.abs(own.astype(np.float64) - exact)), (db, own)


def test_inputs_are_never_modified(xp, backend):
    host, on = make_inputs(backend, (4, 3, 5), 2)
    affine(*on.args)
    affine_backward(on.grad, *on.args)
    vjp_apply(*on.args, on.grad)
    affine_jvp(*on.args, on.args)
    for before, after in zip(host, on, strict=True):
        np.testing.assert_array_equal(to_numpy(after), before)


@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_nan_and_inf_propagate(xp, backend, special):
    x = np.ones((3, 4))
    x[1, 2] = special
    args = backend.asarray(x), backend.asarray(np.ones((2, 4))), backend.asarray(np.zeros(2))
    if backend.name == "sparse" and np.isnan(special):
        # pydata/sparse warns that a NaN meets no implicit zero of the other sparse operand
        # (here every element is stored, so the NaN still propagates; see docs/onnx-sparse.md).
        with pytest.warns(RuntimeWarning, match="Nan will not be propagated"):
            out = affine(*args)
    else:
        out = affine(*args)
    result = to_numpy(out)
    assert np.all(np.isfinite(result[[0, 2]]))
    assert np.all(np.isnan(result[1]) if np.isnan(special) else np.isinf(result[1]))


def test_explicit_namespace(backend):
    args = make_inputs(backend, (4, 3), 2)[1].args
    out = affine(*args, xp=backend.xp)
    assert_matches(out, to_numpy(affine(*args)), backend, "float64", 1)


def test_tensors_that_require_grad_raise_no_warning():
    """torch tensors with requires_grad through every function: no warning from xaffine's own calls."""
    torch = pytest.importorskip("torch", reason="requires_grad is torch's")

    def t(*shape):
        return torch.ones(*shape, dtype=torch.float64, requires_grad=True)

    for x, w, b, g in ((t(5), t(5), t(()), t(())), (t(3, 5), t(2, 5), t(2), t(3, 2)), (t(2, 3, 5), t(5), 1.0, t(2, 3))):
        affine(x, w, b)
        affine_backward(g, x, w, b)
        _, vjp = affine_vjp(x, w, b)
        vjp(g)
        affine_jvp(x, w, b, (x, w, None if isinstance(b, float) else b))


@pytest.mark.parametrize("number", [0.5, 2, np.float64(0.5), np.float32(0.5)], ids=["float", "int", "f64", "f32"])
def test_number_bias_keeps_the_inputs_dtype(backend, number):
    """A number bias, Python's or a NumPy scalar of any width, adds its value in x's dtype."""
    dtype = "float32" if backend.has("float32") else "float64"
    host = [host_random(s, dtype, seed) for seed, s in enumerate(((3, 4), (4,), (3,)))]
    x, w, g = (backend.asarray(h) for h in host)
    out, vjp = affine_vjp(x, w, number)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(to_numpy(out), host[0] @ host[1] + float(number), rtol=1e-5)
    db = vjp(g).bias
    assert db.dtype == x.dtype
    np.testing.assert_allclose(to_numpy(db), host[2].sum(), rtol=1e-5)
    _, tangent = affine_jvp(x, w, number, (None, None, number))
    np.testing.assert_allclose(to_numpy(tangent), np.full(3, float(number)), rtol=1e-5)
