"""xaffine.testing catches wrong backwards on every backend, and passes right ones."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from tests.helpers import host_random, inputs, make_inputs
from xaffine import affine, affine_backward, affine_jvp
from xaffine._backends import to_numpy
from xaffine.testing import check_adjoint, check_vjp

NAMES = ("x", "weight", "bias")


def right_vjp(ct, x, w, b):
    return tuple(affine_backward(ct, x, w, b))


def jvp(t, x, w, b):
    return affine_jvp(x, w, b, t)[1]


def transposed_dw(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    # Same shape only when square: the classic slip of dW = X^T dA.
    return g[0], g[1].T, g[2]


def dx_missing_a_term(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    # As if W had lost its last row: one output's contribution to dX dropped.
    return g[0] - ct[..., -1:] * w[-1, :], g[1], g[2]


def bias_not_summed_over_a_leading_axis(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    # Summed over the rows of the first batch element only.
    return g[0], g[1], array_namespace(ct).sum(ct[0, ...], axis=0)


def off_by_a_little(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    return g[0], g[1] * 1.001, g[2]


BUGS = [transposed_dw, dx_missing_a_term, bias_not_summed_over_a_leading_axis, off_by_a_little]


def _args(backend, dtype, x_shape=(2, 3, 4), n=4):
    return make_inputs(backend, x_shape, n, dtype)[1].args


@pytest.mark.parametrize("bug", BUGS, ids=[b.__name__ for b in BUGS])
class TestPlantedBugs:
    def test_adjoint_catches(self, backend, bug):
        args = _args(backend, "float64")
        with pytest.raises(AssertionError, match=r"adjoint identity failed \(seed=0"):
            check_adjoint(jvp, bug, args, argnames=NAMES)

    @pytest.mark.parametrize("mode", ["fast", "full"])
    def test_finite_differences_catch(self, backend, bug, mode):
        args = _args(backend, "float64")
        with pytest.raises(AssertionError, match=rf"gradient check failed \({mode} mode, seed=0"):
            check_vjp(affine, bug, args, mode=mode, argnames=NAMES)


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "float16"])
def test_right_backward_passes(backend, dtype):
    backend.dtype(dtype)
    args = _args(backend, dtype)
    check_adjoint(jvp, right_vjp, args, argnames=NAMES)
    check_vjp(affine, right_vjp, args, argnames=NAMES)
    check_vjp(affine, right_vjp, args, mode="full", argnames=NAMES)


def _offset_args(backend, shape, seed, offset=1e6):
    """``(batch, out, in)``: x (batch, in), weight (out, in), bias N(0, 1) + offset, float64."""
    batch, n_out, n_in = shape
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((batch, n_in)), rng.standard_normal((n_out, n_in))
    b = rng.standard_normal(n_out) + offset
    return tuple(backend.asarray(a) for a in (x, w, b))


def weight_grad_scaled_by(factor):
    def vjp(ct, x, w, b):
        g = right_vjp(ct, x, w, b)
        return g[0], g[1] * factor, g[2]

    vjp.__name__ = f"weight_grad_times_{factor}"
    return vjp


@pytest.mark.parametrize("seed", range(5))
def test_large_output_offset_does_not_hide_a_1_percent_error_fast(backend, seed):
    """A bias of 1e6 once made the tolerance 6000x the real finite-difference error (issue 13, item 11)."""
    args = _offset_args(backend, (32, 32, 32), seed)
    with pytest.raises(AssertionError, match=r"`weight`, direction"):
        check_vjp(affine, weight_grad_scaled_by(1.01), args, seed=seed, argnames=NAMES)


def _full_mode_on(backend):
    if backend.row.library == "dask":
        pytest.skip(
            "full mode computes one Dask graph per probed element (136 elements, 4 evaluations each here); "
            "Dask runs the same offset cases in fast mode, the eager backends in full mode"
        )


@pytest.mark.parametrize("factor", [1.001, 1.01])
def test_large_output_offset_does_not_hide_small_errors_full(backend, factor):
    _full_mode_on(backend)
    args = _offset_args(backend, (8, 8, 8), 0)
    with pytest.raises(AssertionError, match=r"`weight`, element"):
        check_vjp(affine, weight_grad_scaled_by(factor), args, mode="full", argnames=NAMES)


@pytest.mark.parametrize(("shape", "mode"), [((32, 32, 32), "fast"), ((8, 8, 8), "full")])
def test_large_output_offset_right_backward_passes(backend, shape, mode):
    if mode == "full":
        _full_mode_on(backend)
    for seed in range(3):
        check_vjp(affine, right_vjp, _offset_args(backend, shape, seed), mode=mode, seed=seed, argnames=NAMES)


def test_default_tolerance_allows_for_truncation():
    """A curved function: the step-2h estimate of the truncation error keeps a right gradient passing."""
    x = np.linspace(-300.0, 300.0, 41)
    check_vjp(np.sin, lambda ct, x: (ct * np.cos(x),), (x,))
    check_vjp(lambda x: x**3, lambda ct, x: (3.0 * ct * x**2,), (np.zeros(5),), mode="full")
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(np.sin, lambda ct, x: (1.001 * ct * np.cos(x),), (x,))


def test_failure_message_names_input_element_values_and_seed(backend):
    args = _args(backend, "float64", x_shape=(3, 4), n=2)
    with pytest.raises(AssertionError) as info:
        check_vjp(affine, off_by_a_little, args, seed=7, argnames=NAMES)
    text = str(info.value)
    assert "seed=7" in text
    assert "`weight`, direction 0: analytic" in text
    assert "numeric" in text
    assert "rtol" in text
    assert "atol" in text
    # Fast mode reruns in full mode on small inputs to point at the element.
    assert "full mode points at the elements" in text
    assert "`weight`, element (0, 0)" in text


def test_wrong_structure_is_reported(backend):
    args = _args(backend, "float64", x_shape=(3, 4), n=2)

    def short(ct, x, w, b):
        return right_vjp(ct, x, w, b)[:2]

    def wrong_dtype(ct, x, w, b):
        g = right_vjp(ct, x, w, b)
        return g[0], g[1], backend.xp.astype(g[2], backend.xp.float32)

    with pytest.raises(AssertionError, match=r"one gradient \(or None\) per argument: 3; got 2"):
        check_vjp(affine, short, args)
    with pytest.raises(AssertionError, match=r"gradient of `bias` has dtype .*float32; expected .*float64"):
        check_adjoint(jvp, wrong_dtype, args, argnames=NAMES)


def test_none_gradients_are_not_checked(backend):
    args = _args(backend, "float64", x_shape=(3, 4), n=2)

    def weight_only(ct, x, w, b):
        return None, right_vjp(ct, x, w, b)[1], None

    check_vjp(affine, weight_only, args)
    check_adjoint(jvp, weight_only, args)


def test_python_number_arguments(backend):
    x = backend.asarray(host_random((5, 3), "float64", 0))
    w = backend.asarray(host_random((3,), "float64", 1))
    check_vjp(affine, right_vjp, (x, w, 0.5), mode="full")
    check_adjoint(jvp, right_vjp, (x, w, 0.5))


def test_seed_reproduces(backend):
    args = _args(backend, "float64", x_shape=(3, 4), n=2)
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as info:
            check_vjp(affine, off_by_a_little, args, seed=3)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"`mode` must be 'fast' or 'full'; got 'slow'"):
        check_vjp(affine, right_vjp, (np.ones((2, 2)), np.ones((2, 2))), mode="slow")


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "bias"),
    [((4, 3), (2, 3), "array"), ((2, 4, 3), (2, 3), "array"), ((4, 3), (3,), "number"), ((3,), (3,), "array")],
)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("oracle", ["torch", "jax"])
def test_oracle(oracle, dtype, x_shape, w_shape, bias):
    """On the same float64 numbers, xaffine's gradients equal torch.autograd's and jax.vjp's."""
    x, w, b, g = inputs(x_shape, w_shape[0] if len(w_shape) == 2 else None, dtype, bias=bias)
    ours = [to_numpy(a) for a in affine_backward(g, x, w, b)]
    if oracle == "torch":
        torch = pytest.importorskip("torch", reason="the torch oracle needs torch")
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(np.asarray(b, dtype=dtype), requires_grad=True)
        out = (tx @ (tw.T if tw.ndim == 2 else tw)) + tb
        out.backward(torch.tensor(g))
        theirs = [t.grad.numpy() for t in (tx, tw, tb)]
    else:
        jax = pytest.importorskip("jax", reason="the jax oracle needs jax")
        jnp = jax.numpy
        jax.config.update("jax_enable_x64", True)

        def f(x, w, b):
            return x @ (w.T if w.ndim == 2 else w) + b

        _, pullback = jax.vjp(f, jnp.asarray(x), jnp.asarray(w), jnp.asarray(np.asarray(b, dtype=dtype)))
        # jax.vjp is the transpose of the linear map; PyTorch's convention conjugates it.
        theirs = [np.conj(np.asarray(t)) for t in pullback(jnp.conj(jnp.asarray(g)))]
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, t, rtol=1e-12, atol=1e-12)
