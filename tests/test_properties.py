"""Property-based: random shapes, dtypes and bias kinds against the float64 reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches, host_random, reference_backward, reference_forward
from xaffine import affine, affine_backward, affine_jvp
from xaffine.testing import check_adjoint

# The backend fixture is read-only per test, so sharing it across examples is safe.
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def layers(draw):
    leading = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    k = draw(st.integers(0, 6))
    n = draw(st.one_of(st.none(), st.integers(1, 5)))
    dtype = draw(st.sampled_from(["float32", "float64", "complex64", "complex128"]))
    bias = draw(st.sampled_from(["none", "array"] + (["number"] if n is None else [])))
    seed = draw(st.integers(0, 2**16))
    return (*leading, k), n, dtype, bias, seed


def _case(backend, spec):
    x_shape, n, dtype, bias, seed = spec
    k = x_shape[-1]
    x = host_random(x_shape, dtype, seed)
    w = host_random((k,) if n is None else (n, k), dtype, seed + 1)
    b = {"none": None, "number": -0.5, "array": host_random(() if n is None else (n,), dtype, seed + 2)}[bias]
    g = host_random(x_shape[:-1] + (() if n is None else (n,)), dtype, seed + 3)
    as_xp = backend.asarray
    args = (as_xp(x), as_xp(w), b if b is None or bias == "number" else as_xp(b))
    return (x, w, b), args, g


@PROPERTY
@given(spec=layers())
def test_forward_backward_adjoint(backend, spec):
    x_shape, n, dtype, _, _ = spec
    host, args, g = _case(backend, spec)
    k = x_shape[-1]
    assert_matches(affine(*args), reference_forward(*host), backend, dtype, k)
    grads = affine_backward(backend.asarray(g), *args)
    m = int(np.prod(x_shape[:-1]))
    for actual, ref, length in zip(grads, reference_backward(g, *host), (n or 1, m, m), strict=True):
        assert (actual is None) == (ref is None)
        if ref is not None:
            assert_matches(actual, ref, backend, dtype, length)
    check_adjoint(lambda t, *a: affine_jvp(*a, t)[1], lambda ct, *a: affine_backward(ct, *a), args)
