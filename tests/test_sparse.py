"""Sparse inputs: pydata/sparse ``x`` with dense NumPy parameters, never densified."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

sparse = pytest.importorskip("sparse", reason="sparse inputs are pydata/sparse arrays")

from xaffine import affine, affine_backward, affine_jvp  # noqa: E402

from .helpers import host_random, reference_backward, reference_forward, tolerances  # noqa: E402

FORMATS = {"COO": sparse.COO.from_numpy, "GCXS": sparse.GCXS.from_numpy}


def _sparse_host(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    data = host_random(shape, dtype, seed)
    keep = np.random.default_rng(seed + 100).random(shape) < 0.3
    return np.where(keep, data, 0).astype(dtype)


def _close(actual, reference, dtype, k):
    rtol, atol = tolerances(dtype, k, reference)
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


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
    _close(out, reference_forward(host, w, b), dtype, 5)
    grad = host_random(out.shape, dtype, 3)
    grads = affine_backward(grad, x, w, b)
    want = reference_backward(grad, host, w, b)
    for got, reference in zip(grads, want, strict=True):
        assert type(got) is np.ndarray  # dX, dW and db are dense
        assert got.dtype == np.dtype(dtype)
        _close(got, reference, dtype, max(out.size, 4))
    _, tangent = affine_jvp(x, w, b, (x, None, None))
    assert type(tangent) is np.ndarray
    _close(tangent, reference_forward(host, w, 0), dtype, 5)


def test_one_sample_gives_a_sparse_weight_gradient():
    # A 1-D x makes dW an outer product dA x^T: zero where x is, so sparse.
    host = _sparse_host((5,), "float64", 0)
    w, b = host_random((4, 5), "float64", 1), host_random((4,), "float64", 2)
    grads = affine_backward(np.ones(4), sparse.COO.from_numpy(host), w, b)
    assert isinstance(grads.weight, sparse.COO)
    _close(grads.weight.todense(), reference_backward(np.ones(4), host, w, b)[1], "float64", 1)
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
