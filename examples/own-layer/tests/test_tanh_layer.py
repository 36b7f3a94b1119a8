"""The tanh layer on every backend the plugin finds, with xaffine's gradient checks. Only the
plugin's public names are used: the `backend` fixture, `check_layer`, the markers."""

from __future__ import annotations

import numpy as np
import pytest
import tanh_layer

from xaffine.testing import check_vjp
from xaffine.testing.plugin import check_layer

NAMES = ("x", "w", "b")


def _args(backend):
    rng = np.random.default_rng(0)
    host = (rng.standard_normal((3, 4)), rng.standard_normal((2, 4)) / 2, rng.standard_normal(2))
    return lambda dtype: tuple(backend.cast(a, dtype) for a in host)


def test_forward_matches_numpy(backend):
    args = _args(backend)("float32")
    x, w, b = (backend.to_host(a).astype(np.float64) for a in args)
    found = backend.to_host(tanh_layer.forward(*args))
    assert found.dtype == np.float32
    np.testing.assert_allclose(found, np.tanh(x @ w.T + b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(
            "float16", marks=pytest.mark.skip_backend("ndonnx", reason="30 s a dtype there: float32, float64")
        ),
        "bfloat16",
        "float32",
        "float64",
    ],
)
def test_the_right_backward_passes_in_every_dtype(backend, dtype):
    backend.dtype(dtype)  # skips, saying so, where the backend has none
    ran = check_layer(
        backend, tanh_layer.forward, tanh_layer.vjp, _args(backend), jvp=tanh_layer.jvp, dtypes=[dtype], argnames=NAMES
    )
    assert (dtype, "check_adjoint") in ran


def test_the_planted_slip_is_caught(backend):
    with pytest.raises(AssertionError, match=r"^float32, check_(vjp|adjoint): "):
        check_layer(
            backend,
            tanh_layer.forward,
            tanh_layer.vjp_without_the_derivative,
            _args(backend),
            jvp=tanh_layer.jvp,
            dtypes=["float32"],
            argnames=NAMES,
        )


@pytest.mark.skip_backend("ndonnx", "dask", reason="a failed fast check reruns in full mode: one graph per element")
def test_check_vjp_names_the_argument(backend):
    args = _args(backend)("float32")
    if not backend.has("float64"):
        pytest.skip(f"{backend.name} has no float64 for finite differences")
    with pytest.raises(AssertionError, match=r"`w`, (direction|element)"):
        check_vjp(tanh_layer.forward, tanh_layer.vjp_without_the_derivative, args, argnames=NAMES)
