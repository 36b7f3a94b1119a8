"""Property-based: random shapes, dtypes and bias kinds against the float64 reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches, make_inputs, reference_backward, reference_forward
from tests.test_testing import COSTLY_PER_OPERATION
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
    host, on = make_inputs(backend, x_shape, n, dtype, bias, seed)
    return host.args, on.args, host.grad


@PROPERTY
@given(spec=layers())
def test_forward_backward_adjoint(backend, spec):
    x_shape, n, dtype, _, _ = spec
    assume(backend.has(dtype))  # ndonnx has no complex dtypes
    host, args, g = _case(backend, spec)
    k = x_shape[-1]
    assert_matches(affine(*args), reference_forward(*host), backend, dtype, k)
    grads = affine_backward(backend.asarray(g), *args)
    m = int(np.prod(x_shape[:-1]))
    for actual, ref, length in zip(grads, reference_backward(g, *host), (n or 1, m, m), strict=True):
        assert (actual is None) == (ref is None)
        if ref is not None:
            assert_matches(actual, ref, backend, dtype, length)
    if backend.row.library not in COSTLY_PER_OPERATION:  # (each check is 10-20 s there: test_testing's)
        check_adjoint(lambda t, *a: affine_jvp(*a, t)[1], lambda ct, *a: affine_backward(ct, *a), args)


# -- junk at every public function: only the documented exceptions come out ----------


def _junk_arrays():
    dtypes = st.sampled_from(["float64", "float32", "complex128", "int32", "bool", ">f8", "object", "U3", "float16"])
    shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
    arrays = st.builds(lambda s, d: np.zeros(s, dtype=d), shapes, dtypes)
    return st.one_of(
        arrays,
        arrays.map(lambda a: np.ma.masked_array(a)),
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.floats(allow_nan=True),
        st.complex_numbers(max_magnitude=2),
        st.text(max_size=3),
        st.binary(max_size=3),
        st.lists(st.floats(-1, 1), max_size=3),
        st.just({"weight": 1}),
        st.just(object()),
        st.fractions(),
        st.decimals(allow_nan=False, allow_infinity=False),
    )


JUNK = _junk_arrays()
WRT = st.one_of(st.none(), st.integers(), st.text(max_size=6), st.lists(st.one_of(st.none(), st.text(max_size=6))))
DOCUMENTED = (TypeError, ValueError)


@settings(max_examples=300, deadline=None)
@given(JUNK, JUNK, JUNK, JUNK, WRT, st.lists(JUNK, max_size=4))
def test_junk_raises_only_documented_errors(x, weight, bias, grad, wrt, tangents):
    import contextlib

    from xaffine import affine_vjp

    calls = [
        lambda: affine(x, weight, bias),
        lambda: affine_backward(grad, x, weight, bias),
        lambda: affine_backward(grad, x, weight, bias, wrt=wrt),
        lambda: affine_vjp(x, weight, bias)[1](grad, wrt=wrt),
        lambda: affine_jvp(x, weight, bias, tuple(tangents)),
        lambda: affine_jvp(x, weight, bias, tangents[0] if tangents else None),
    ]
    for call in calls:
        with contextlib.suppress(*DOCUMENTED):
            call()


@settings(max_examples=150, deadline=None)
@given(JUNK, JUNK, st.one_of(st.integers(-2, 3), st.floats(), st.text(max_size=3), st.none()))
def test_junk_at_the_layer_raises_only_documented_errors(x, grad, size):
    import contextlib

    from xaffine import Affine

    layer = Affine(3, 2, xp="numpy", seed=0, dtype="float64")
    calls = [
        lambda: layer(x),
        lambda: layer.backward(grad),
        lambda: layer.load_state_dict({"weight": x}),
        lambda: layer.load_state_dict(x),
        lambda: setattr(layer, "weight", x),
        lambda: Affine(size, 2, xp="numpy"),
        lambda: Affine(3, 2, xp=x),
        lambda: Affine(3, 2, xp="numpy", dtype=x if not isinstance(x, np.ndarray) else "float64"),
        lambda: layer.to(x),
    ]
    for call in calls:
        # backward before a forward is a RuntimeError; a state dict of the wrong keys a KeyError.
        with contextlib.suppress(*DOCUMENTED, RuntimeError, KeyError):
            call()
