"""A conforming library that the backend table has no row for works through a generic row.

marray's masked namespace over array-api-strict stands for such a library: its arrays
have ``__array_namespace__`` and nothing else that xaffine knows about.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import inputs, reference_backward, reference_forward
from xaffine import Affine, affine, affine_backward, affine_jvp, affine_vjp
from xaffine._backends import BACKENDS, library_of, resolve
from xaffine.testing import check_adjoint, check_vjp

marray = pytest.importorskip("marray", reason="the generic row is tested on marray's masked namespace")
strict = pytest.importorskip("array_api_strict", reason="marray's namespace here wraps array-api-strict")


@pytest.fixture(scope="module")
def mxp():
    return marray.masked_namespace(strict)


def _host(a):
    """The data of a masked array, which must have no masked element."""
    assert not np.any(np.asarray(a.mask)), "a result has masked elements"
    return np.asarray(a.data)


def _moved(mxp, host):
    return tuple(v if v is None else mxp.asarray(v) for v in host.args)


def test_the_table_has_no_row_for_it(mxp):
    assert library_of(mxp) not in {row.library for row in BACKENDS}
    row, xp = resolve(mxp)
    assert xp is mxp
    assert row.library == library_of(mxp)
    assert row.matmul_add is None
    assert row.row_sum is None
    assert not row.takes_numpy


# Not a zero-size batch: marray masks a sum over no elements (dW), where xaffine's answer is 0.
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (1, 4)])
def test_functions_match_the_reference(mxp, x_shape):
    host = inputs(x_shape, 3, "float64", seed=1)
    x, w, b = _moved(mxp, host)
    out = affine(x, w, b)
    assert type(out) is type(x)
    np.testing.assert_allclose(_host(out), reference_forward(*host.args), rtol=1e-12, atol=1e-12)
    g = np.asarray(inputs((*x_shape[:-1], 3), None, "float64", seed=2).x)
    grads = affine_backward(mxp.asarray(g), x, w, b)
    for got, want in zip(grads, reference_backward(g, *host.args), strict=True):
        assert type(got) is type(x)
        np.testing.assert_allclose(_host(got), want, rtol=1e-12, atol=1e-12)


def test_vjp_and_jvp_and_the_checks(mxp):
    host = inputs((6, 4), 3, "float64", seed=3)
    args = _moved(mxp, host)
    out, vjp = affine_vjp(*args)
    ct = mxp.asarray(np.ones((6, 3)))
    np.testing.assert_allclose(_host(vjp(ct)[1]), reference_backward(np.ones((6, 3)), *host.args)[1], rtol=1e-12)
    tangent_out = affine_jvp(*args, args)
    np.testing.assert_allclose(_host(tangent_out[1]), 2 * _host(out) - host.bias, rtol=1e-12, atol=1e-12)

    def right(ct, x, w, b):
        return affine_backward(ct, x, w, b)

    def wrong(ct, x, w, b):
        dx, dw, db = affine_backward(ct, x, w, b)
        return dx, dw * 1.01, db

    def jvp(tangents, x, w, b):
        return affine_jvp(x, w, b, tangents)[1]

    check_vjp(affine, right, args)
    check_adjoint(jvp, right, args)
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(affine, wrong, args)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(jvp, wrong, args)


def test_the_layer_trains(mxp):
    layer = Affine(4, 3, xp=mxp, dtype="float64", seed=0)
    assert layer.xp is mxp
    x = mxp.asarray(np.random.default_rng(0).standard_normal((8, 4)))
    before = _host(layer.weight).copy()
    out = layer(x)
    layer.backward(mxp.ones_like(out))
    np.testing.assert_allclose(_host(layer.grads["weight"]), np.ones((8, 3)).T @ _host(x), rtol=1e-12)
    layer.weight = layer.weight - 0.1 * layer.grads["weight"]
    assert not np.array_equal(_host(layer.weight), before)


def test_mixing_it_with_another_library_is_refused(mxp):
    x = mxp.asarray(np.ones((2, 4)))
    with pytest.raises(TypeError, match="`weight`"):
        affine(x, strict.asarray(np.ones((3, 4))), None)


@pytest.mark.parametrize(("shape", "axis", "keepdims"), [((0, 4), 0, False), ((0, 4), 0, True), ((2, 0), None, False)])
def test_mlx_sums_over_zero_length_axes_return(shape, axis, keepdims):
    """MLX 0.32's CPU sum over a zero-length axis now and then spins forever; its adapter
    returns the zeros (the zero-size batches of the suite hung about one run in two)."""
    import threading

    pytest.importorskip("mlx.core", reason="the MLX adapter's sum")
    from xaffine._backends import namespace

    xp = namespace("mlx.core")
    done = []

    def run():
        for _ in range(300):
            s = xp.sum(xp.zeros(shape), axis=axis, keepdims=keepdims)
            done.append(np.asarray(s))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert len(done) == 300, f"{len(done)} of 300 sums returned within 60 s"
    expected = np.sum(np.zeros(shape, dtype=np.float32), axis=axis, keepdims=keepdims)
    assert done[-1].shape == expected.shape
    assert done[-1].dtype == np.float32
    assert not done[-1].any()
