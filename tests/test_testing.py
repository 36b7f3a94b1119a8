"""xaffine.testing catches wrong backwards on every backend, and passes right ones."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tests.helpers import host_random, inputs, make_inputs, xp_of
from tests.mutants import BANK, applies, expected, jvp, random_case, right_vjp, tanh_jvp, tanh_layer, tanh_vjp
from xaffine import affine, affine_backward
from xaffine._backends import device_of, to_numpy
from xaffine.testing import check_adjoint, check_vjp

NAMES = ("x", "weight", "bias")


def off_by_a_little(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    return g[0], g[1] * 1.001, g[2]


def _args(backend, dtype, x_shape=(2, 3, 4), n=4):
    return make_inputs(backend, x_shape, n, dtype)[1].args


# Dask builds a graph per operation, ndonnx an ONNX graph, pydata/sparse converts formats.
COSTLY_PER_OPERATION = ("dask", "ndonnx", "sparse")
BANK_SHAPES = {"suite": ((2, 3, 4), 4), "square": ((4, 4), 4), "64x512->512": ((64, 512), 512)}


def _bank_args(backend, dtype, x_shape, n):
    complex_ = dtype.startswith("complex")
    host = "complex128" if complex_ else "float64"
    k = x_shape[-1]
    parts = (host_random(x_shape, host, 0), host_random((n, k), host, 1) / np.sqrt(k), host_random((n,), host, 2))
    return tuple(_moved(backend, a, dtype) for a in parts), host_random(x_shape, host, 9)


@pytest.mark.parametrize(
    "shape",
    [
        "suite",
        "square",
        pytest.param(
            "64x512->512",
            marks=pytest.mark.skip_backend(
                *COSTLY_PER_OPERATION,
                reason="the large shape runs on the eager dense libraries; the two small ones run here",
            ),
        ),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16", "complex128", "complex64"])
@pytest.mark.parametrize("mutant", BANK, ids=[m.name for m in BANK])
def test_bank_of_wrong_backwards(backend, mutant, dtype, shape):
    """Each wrong backward is caught by every check that docs/testing.md's table (tests/mutants.py) claims."""
    x_shape, n = BANK_SHAPES[shape]
    if not applies(mutant, dtype, x_shape, n):
        pytest.skip(f"not a wrong value at x {x_shape} -> {n} in {dtype} (see tests/mutants.py)")
    backend.dtype(dtype)
    args, stale = _bank_args(backend, dtype, x_shape, n)
    vjp = mutant.make(stale)
    checks = {"adjoint": lambda: check_adjoint(jvp, vjp, args, argnames=NAMES)}
    # A failed fast mode reruns full mode on inputs this small, one evaluation per probed
    # element: on the libraries with a large cost per operation that is 10-30 s a case, so
    # there the bank runs check_adjoint, and check_vjp runs in this module's other tests.
    # check_vjp differences in float64 (complex128): where the backend lacks it (MLX has no
    # complex128), check_vjp refuses (test_check_vjp_needs_the_wide_dtype) and check_adjoint checks.
    wide = "complex128" if dtype.startswith("complex") else "float64"
    if backend.row.library not in COSTLY_PER_OPERATION and backend.has(wide):
        checks["fast"] = lambda: check_vjp(affine, vjp, args, argnames=NAMES)
        if shape != "64x512->512":
            checks["full"] = lambda: check_vjp(affine, vjp, args, mode="full", argnames=NAMES)
    claimed = [run for check, run in checks.items() if expected(mutant, dtype, check)]
    if not claimed:
        pytest.skip("no check claims this one (docs/testing.md's table shows what each does)")
    for run in claimed:
        with pytest.raises(AssertionError):
            run()


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "float16"])
def test_right_backward_passes(backend, dtype):
    backend.dtype(dtype)
    args = _args(backend, dtype)
    check_adjoint(jvp, right_vjp, args, argnames=NAMES)
    if not backend.has("complex128" if dtype.startswith("complex") else "float64"):
        return  # check_vjp refuses there: test_check_vjp_needs_the_wide_dtype
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


NO_FULL_MODE_ON_DASK = pytest.mark.skip_backend(
    "dask",
    reason="full mode computes one Dask graph per probed element (136 elements, 4 evaluations each here); "
    "Dask runs the same offset cases in fast mode, the eager backends in full mode",
)


@NO_FULL_MODE_ON_DASK
@pytest.mark.parametrize("factor", [1.001, 1.01])
def test_large_output_offset_does_not_hide_small_errors_full(backend, factor):
    args = _offset_args(backend, (8, 8, 8), 0)
    with pytest.raises(AssertionError, match=r"`weight`, element"):
        check_vjp(affine, weight_grad_scaled_by(factor), args, mode="full", argnames=NAMES)


@pytest.mark.parametrize(
    ("shape", "mode"), [((32, 32, 32), "fast"), pytest.param((8, 8, 8), "full", marks=NO_FULL_MODE_ON_DASK)]
)
def test_large_output_offset_right_backward_passes(backend, shape, mode):
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


CASES = int(os.environ.get("XAFFINE_CASES", "2000"))  # a long run: XAFFINE_CASES=100000
CASES_SEED = int(os.environ.get("XAFFINE_CASES_SEED", "2026"))
# Each dtype's random cases run once, on the first backend of the matrix that has it.
CASE_HOME = {"float64": "numpy", "float32": "numpy", "float16": "numpy", "complex128": "numpy", "complex64": "numpy"}
CASE_HOME["bfloat16"] = "torch"


def _moved(backend, host, dtype):
    if isinstance(host, (float, complex)):
        return host
    if hasattr(np, dtype):  # cast on the host: not every backend holds complex128 (MLX)
        return backend.xp.asarray(np.asarray(host).astype(dtype), device=backend.device)
    moved = backend.xp.asarray(np.asarray(host), device=backend.device)
    return backend.xp.astype(moved, getattr(backend.xp, dtype))


def _alarms(case, args, seed):
    checks = [("check_adjoint", check_adjoint, case.jvp, {}), ("check_vjp fast", check_vjp, case.f, {})]
    if all(np.size(a) <= 64 for a in case.args):
        checks.append(("check_vjp full", check_vjp, case.f, {"mode": "full"}))
    found = []
    for name, check, first, options in checks:
        try:
            check(first, case.vjp, args, seed=seed, **options)
        except AssertionError as exc:
            found.append(f"{name}: {str(exc)[:300]}")
    return found


@pytest.mark.parametrize("dtype", list(CASE_HOME))
def test_no_false_alarms_on_random_right_backwards(backend, dtype):
    """XAFFINE_CASES random right backwards (2000 by default) pass both checks in each dtype.

    Affine layers of both weight forms and a tanh layer; zero-size axes; elements over eight
    orders of magnitude; one huge element in a quarter of the cases (see tests/mutants.py).
    """
    if backend.name != CASE_HOME[dtype]:
        pytest.skip(f"{dtype}'s random cases run on {CASE_HOME[dtype]} alone (their cost is per case, not per backend)")
    rng = np.random.default_rng([CASES_SEED, list(CASE_HOME).index(dtype)])
    alarms = []
    for number in range(CASES):
        case = random_case(rng, dtype)
        args = tuple(_moved(backend, a, dtype) for a in case.args)
        # Values past the dtype's range are part of the cases: NumPy's warning for them is not the point.
        with np.errstate(over="ignore"):
            alarms += [f"case {number} ({case.label}), {alarm}" for alarm in _alarms(case, args, number)]
    assert not alarms, f"{len(alarms)} false alarms in {CASES} cases:\n" + "\n".join(alarms[:10])


def _tanh_args(backend, dtype, big=None):
    rng = np.random.default_rng(0)
    x, w = 0.1 * rng.standard_normal((16, 8)), rng.standard_normal((4, 8))
    if big is not None:
        x[0, 0] = big
    return _moved(backend, x, dtype), _moved(backend, w, dtype)


@pytest.mark.parametrize("big", [1e4, 1e5, 1e8])
@pytest.mark.parametrize(
    "mode",
    [
        "fast",
        pytest.param(
            "full",
            marks=pytest.mark.skip_backend(
                *COSTLY_PER_OPERATION,
                reason="full mode evaluates once per probed element (160 here): these libraries run the fast mode",
            ),
        ),
    ],
)
def test_one_large_element_raises_no_false_alarm(backend, big, mode):
    """The docs' tanh layer with one large input: steps in proportion to each element's own size."""
    check_vjp(tanh_layer, tanh_vjp, _tanh_args(backend, "float64", big), mode=mode)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_the_docs_wrong_tanh_backward_is_caught_in_narrow_dtypes(backend, dtype):
    backend.dtype(dtype)
    args = _tanh_args(backend, dtype)

    def forgets_the_derivative(ct, x, w):
        xp = xp_of(ct)
        return xp.matmul(ct, w), xp.matmul(xp.matrix_transpose(ct), x)

    check_adjoint(tanh_jvp, tanh_vjp, args)
    check_vjp(tanh_layer, tanh_vjp, args)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(tanh_jvp, forgets_the_derivative, args)
    if backend.row.library in COSTLY_PER_OPERATION:
        return  # a failed fast mode reruns full mode here (160 elements): the bank's reason
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(tanh_layer, forgets_the_derivative, args)


def _nan_in_narrow_dtype(ct, x, w, b):
    """Right in float64, NaN in one element of dW in any narrower dtype."""
    g = right_vjp(ct, x, w, b)
    xp = xp_of(ct)
    if g[1].dtype == xp.float64:  # the float64 copies (the test runs real dtypes)
        return g
    where = device_of(g[1])
    nan = xp.asarray(float("nan"), dtype=g[1].dtype, device=where)
    first = xp.asarray(np.arange(math.prod(g[1].shape)).reshape(g[1].shape) == 0, device=where)
    return g[0], xp.where(first, nan, g[1]), g[2]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_nan_only_in_the_callers_dtype_fails_both_checks(backend, dtype):
    backend.dtype(dtype)
    args = _args(backend, dtype)
    message = rf"gradient of `weight` is not finite in .*{dtype}: nan at element \(0, 0\)"
    with pytest.raises(AssertionError, match=message):
        check_vjp(affine, _nan_in_narrow_dtype, args, argnames=NAMES)
    with pytest.raises(AssertionError, match=message):
        check_adjoint(jvp, _nan_in_narrow_dtype, args, argnames=NAMES)


def test_an_overflow_of_the_callers_dtype_is_no_false_alarm(backend):
    """Most of dW's true values are past float16's largest: an infinity there is the dtype's, not a bug."""
    backend.dtype("float16")
    host = inputs((16, 3), 2, "float64", seed=0)
    x = np.full((16, 3), 6e4)
    args = tuple(_moved(backend, a, "float16") for a in (x, host.weight, host.bias))
    with np.errstate(over="ignore"):
        check_vjp(affine, right_vjp, args, argnames=NAMES)
        check_adjoint(jvp, right_vjp, args, argnames=NAMES)


def test_a_backward_that_fails_in_float64_is_a_failed_check():
    args = tuple(np.asarray(a, dtype=np.float32) for a in inputs((3, 4), 2, "float64").args)

    def float32_only(ct, x, w, b):
        if ct.dtype != np.float32:
            msg = "float32 only"
            raise TypeError(msg)
        return right_vjp(ct, x, w, b)

    for check, first in ((check_vjp, affine), (check_adjoint, jvp)):
        with pytest.raises(AssertionError, match=r"vjp raised TypeError on float64 copies .*: float32 only"):
            check(first, float32_only, args)


def test_check_vjp_needs_the_wide_dtype(backend):
    """Where the backend lacks complex128 (MLX), check_vjp says so; check_adjoint checks complex64 alone."""
    backend.dtype("complex64")
    if backend.has("complex128"):
        pytest.skip(f"{backend.name} has complex128: check_vjp runs there (test_right_backward_passes)")
    args = _args(backend, "complex64")
    with pytest.raises(TypeError, match=r"no complex128.*use check_adjoint"):
        check_vjp(affine, right_vjp, args, argnames=NAMES)
    check_adjoint(jvp, right_vjp, args, argnames=NAMES)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(jvp, off_by_a_little, args, argnames=NAMES)


def _every_weight_gradient_infinite(ct, x, w, b):
    g = right_vjp(ct, x, w, b)
    with np.errstate(invalid="ignore"):  # pydata/sparse also multiplies its fill value, 0 * inf
        return g[0], g[1] * float("inf"), g[2]


def test_an_infinite_gradient_fails_check_adjoint_without_warnings(backend):
    """inf - inf in the checks' own sums is theirs to report: an AssertionError, no RuntimeWarning
    (the suite turns warnings into errors), also where a lazy backend computes in its own threads."""
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(jvp, _every_weight_gradient_infinite, _args(backend, "float64"), argnames=NAMES)


@pytest.mark.skip_backend(
    *COSTLY_PER_OPERATION, reason="a failed fast mode reruns full mode, one evaluation per element: the bank's reason"
)
def test_an_infinite_gradient_fails_check_vjp_without_warnings(backend):
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(affine, _every_weight_gradient_infinite, _args(backend, "float64"), argnames=NAMES)
