"""Sparse inputs: pydata/sparse ``x`` with dense NumPy parameters, never densified."""

from __future__ import annotations

import contextlib
import tracemalloc

import numpy as np
import pytest

sparse = pytest.importorskip("sparse", reason="sparse inputs are pydata/sparse arrays")

from xaffine import affine, affine_backward, affine_jvp  # noqa: E402

from .helpers import assert_close, host_random, reference_backward, reference_forward  # noqa: E402

FORMATS = {"COO": sparse.COO.from_numpy, "GCXS": sparse.GCXS.from_numpy}


def _sparse_host(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    data = host_random(shape, dtype, seed)
    keep = np.random.default_rng(seed + 100).random(shape) < 0.3
    return np.where(keep, data, 0).astype(dtype)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
@pytest.mark.parametrize("x_shape", [(6, 5), (2, 3, 5)])
@pytest.mark.parametrize("w_shape", [(4, 5), (5,)])
def test_sparse_x_dense_parameters(fmt, dtype, x_shape, w_shape):
    host = _sparse_host(x_shape, dtype, 0)
    x = FORMATS[fmt](host)
    w, b = host_random(w_shape, dtype, 1), host_random(w_shape[:-1], dtype, 2)
    out = affine(x, w, b)
    assert type(out) is np.ndarray
    assert out.dtype == np.dtype(dtype)
    assert_close(out, reference_forward(host, w, b), dtype, 5)
    grad = host_random(out.shape, dtype, 3)
    grads = affine_backward(grad, x, w, b)
    want = reference_backward(grad, host, w, b)
    for got, reference in zip(grads, want, strict=True):
        assert type(got) is np.ndarray  # dX, dW and db are dense
        assert got.dtype == np.dtype(dtype)
        assert_close(got, reference, dtype, max(out.size, 4))
    _, tangent = affine_jvp(x, w, b, (x, None, None))
    assert type(tangent) is np.ndarray
    assert_close(tangent, reference_forward(host, w, 0), dtype, 5)


def test_one_sample_gives_a_sparse_weight_gradient():
    # A 1-D x makes dW an outer product dA x^T: zero where x is, so sparse.
    host = _sparse_host((5,), "float64", 0)
    w, b = host_random((4, 5), "float64", 1), host_random((4,), "float64", 2)
    grads = affine_backward(np.ones(4), sparse.COO.from_numpy(host), w, b)
    assert isinstance(grads.weight, sparse.COO)
    assert_close(grads.weight.todense(), reference_backward(np.ones(4), host, w, b)[1], "float64", 1)
    assert type(grads.x) is np.ndarray


def test_sparse_and_another_library_are_refused():
    strict = pytest.importorskip("array_api_strict", reason="a third library to mix in")
    x = sparse.COO.from_numpy(np.eye(3))
    with pytest.raises(TypeError, match="more than one library"):
        affine(x, strict.ones((2, 3), dtype=strict.float64))
    with pytest.raises(TypeError, match="share one dtype"):
        affine(x, np.ones((2, 3), np.float32))


def test_memory_follows_the_nonzeros():
    """A 100000 x 50000 input with 0.1% non-zeros: forward and dW never densify x."""
    rows, cols, out_features = 100_000, 50_000, 8
    rng = np.random.default_rng(0)
    flat = np.unique(rng.integers(0, rows * cols, size=rows * cols // 1000))
    x = sparse.COO(
        np.stack(np.divmod(flat, cols)),
        rng.standard_normal(flat.size).astype(np.float32),
        shape=(rows, cols),
        has_duplicates=False,
        sorted=True,
    )
    w = rng.standard_normal((out_features, cols)).astype(np.float32)
    b = np.zeros(out_features, np.float32)
    grad = rng.standard_normal((rows, out_features)).astype(np.float32)
    dense_bytes = rows * cols * 4
    budget = 2 * x.nbytes + grad.nbytes + w.nbytes  # O(nnz) plus the dense operands and results

    tracemalloc.start()
    try:
        out = affine(x, w, b)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dw = affine_backward(grad, x, w, b, wrt="weight").weight
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (rows, out_features)
    assert dw.shape == (out_features, cols)
    assert forward_peak < budget < dense_bytes // 50
    assert backward_peak < budget
    some = slice(0, 3)
    np.testing.assert_allclose(out[some], (x[some].todense() @ w.T), rtol=1e-4, atol=1e-4)


def _all_sparse(fmt):
    host = _sparse_host((6, 5), "float64", 0)
    x = FORMATS[fmt](host)
    w_host = _sparse_host((4, 5), "float64", 1)
    return host, x, w_host, FORMATS[fmt](w_host)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_sparse_product_plus_dense_bias_is_sparse_with_zero_fill(fmt):
    # A training step makes a zero bias non-uniform: the result must stay usable.
    host, x, w_host, w = _all_sparse(fmt)
    b = np.arange(1.0, 5.0)
    out = affine(x, w, b)
    assert type(out) is type(x)
    assert out.fill_value == 0
    assert_close(out.todense(), reference_forward(host, w_host, b), "float64", 5)
    np.testing.assert_allclose((out @ np.ones(4)), reference_forward(host, w_host, b).sum(axis=1))
    _, tangent = affine_jvp(x, w, b, (x, None, b))
    assert tangent.fill_value == 0
    assert_close(tangent.todense(), reference_forward(host, w_host, b), "float64", 5)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("zero_d", [False, True], ids=["number", "0-d sparse"])
def test_sparse_product_plus_a_number_is_sparse_with_zero_fill(fmt, zero_d):
    # A 0-d sparse array holds its value as its fill value.
    host, x, w_host, _ = _all_sparse(fmt)
    w = FORMATS[fmt](w_host[0])
    out = affine(x, w, sparse.asarray(np.float64(0.5)) if zero_d else 0.5)
    assert type(out) is type(x)
    assert out.fill_value == 0
    assert_close(out.todense(), reference_forward(host, w_host[0], 0.5), "float64", 5)


@pytest.mark.parametrize("sparse_name", ["x", "weight"])
def test_float16_sparse_is_refused_naming_it(sparse_name):
    # COO only: pydata/sparse cannot make a float16 GCXS array.
    host = _sparse_host((6, 5), "float16", 0)
    w_host = host_random((4, 5), "float16", 1)
    coo = sparse.COO.from_numpy
    x, w = (coo(host), w_host) if sparse_name == "x" else (host, coo(w_host))
    message = rf"`{sparse_name}` is a float16 array, and pydata/sparse has no float16 matrix product: .*float32"
    with pytest.raises(TypeError, match=message):
        affine(x, w)


@pytest.mark.parametrize("name", ["x", "weight", "bias", "grad"])
def test_nonzero_fill_value_is_refused_naming_it(name):
    host, x, w_host, w = _all_sparse("COO")
    b = sparse.COO.from_numpy(np.ones(4))
    grad = sparse.COO.from_numpy(np.ones((6, 4)))
    affine_backward(grad, x, w, b)  # the signature is known: the fill value is still checked
    filled = {
        "x": sparse.COO.from_numpy(host, fill_value=1.0),
        "weight": sparse.COO.from_numpy(w_host, fill_value=1.0),
        "bias": sparse.full((4,), 2.5),
        "grad": sparse.full((6, 4), 1.0),
    }
    args = {"x": x, "weight": w, "bias": b, "grad": grad} | {name: filled[name]}
    message = rf"`{name}` has fill value {filled[name].fill_value}"
    with pytest.raises(ValueError, match=message):
        affine_backward(args["grad"], args["x"], args["weight"], args["bias"])
    if name != "grad":
        with pytest.raises(ValueError, match=message):
            affine(args["x"], args["weight"], args["bias"])


@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_a_dense_operands_nan_or_inf_meets_only_stored_elements(special):
    """Documented: the product with a sparse `x` multiplies only x's stored elements, so a
    non-finite weight or grad element reaches only the results that involve a stored one."""
    host = np.zeros((3, 2))
    host[0, 0] = 2.0
    x = sparse.COO.from_numpy(host)
    w = np.ones((2, 2))
    w[1, 0] = special
    grad = np.ones((3, 2))
    grad[1, 0] = special
    nan = np.isnan(special)
    # pydata/sparse warns of a NaN in a product's operand (not of an infinity).
    with pytest.warns(RuntimeWarning, match="Nan will not be propagated") if nan else contextlib.nullcontext():
        out = affine(x, w)
    with pytest.warns(RuntimeWarning, match="Nan will not be propagated") if nan else contextlib.nullcontext():
        dw = affine_backward(grad, x, w, wrt="weight").weight
    assert np.isnan(out[0, 1]) if nan else out[0, 1] == np.inf
    np.testing.assert_array_equal(out[1:], 0.0)  # a dense x gives NaN there (0 * inf, 0 * nan)
    np.testing.assert_array_equal(dw, [[2.0, 0.0], [2.0, 0.0]])  # grad's row 1 meets no stored element


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_one_feature_forward_is_dense_numpy(fmt):
    """With one input feature the forward product has a contraction of one, like a one-sample
    weight gradient, but its result stays a dense NumPy array (only the gradient's outer
    product keeps x's sparsity)."""
    host = np.array([[1.0], [0.0], [2.0]])
    x, w, b = FORMATS[fmt](host), np.array([[1.0], [2.0]]), np.array([0.5, 0.25])
    out = affine(x, w, b)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, host @ w.T + b)
    tangent = affine_jvp(x, w, None, (x, None, None))[1]
    assert type(tangent) is np.ndarray
    np.testing.assert_allclose(tangent, host @ w.T)
    assert type(affine(host, sparse.COO.from_numpy(w))) is np.ndarray
