"""xaffine.testing catches wrong backwards on every backend, and passes right ones."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import array_api_compat.numpy
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
    return tuple(backend.cast(a, dtype) for a in parts), host_random(x_shape, host, 9)


@pytest.mark.parametrize(
    "shape",
    [
        "suite",
        pytest.param(
            "square",
            marks=pytest.mark.skip_backend(
                *COSTLY_PER_OPERATION,
                reason="the libraries with a large cost per operation run the suite's shape; a shape's "
                "effect on the tolerances is the checks' own arithmetic, which the eager libraries run",
            ),
        ),
        pytest.param(
            "64x512->512",
            marks=pytest.mark.skip_backend(
                *COSTLY_PER_OPERATION,
                reason="the large shape runs on the eager dense libraries; the two small ones run here",
            ),
        ),
    ],
)
@pytest.mark.parametrize(
    "dtype",
    [
        "float64",
        "float32",
        *(
            pytest.param(
                name,
                marks=pytest.mark.skip_backend(
                    *COSTLY_PER_OPERATION,
                    reason="the 16-bit rows run on the eager libraries: a narrow check is three runs (its dtype, "
                    "float64 copies, cotangent splits), 10-25 s a case here; the float32 rows take the narrow path",
                ),
            )
            for name in ("float16", "bfloat16")
        ),
        "complex128",
        "complex64",
    ],
)
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


NO_FULL_MODE_ON_GRAPHS = pytest.mark.skip_backend(
    "dask",
    "ndonnx",
    reason="full mode computes one graph per probed element (136 elements, 4 evaluations each here, 1-3 "
    "minutes on ndonnx); Dask and ndonnx run the same offset cases in fast mode, the eager backends in full mode",
)


@NO_FULL_MODE_ON_GRAPHS
@pytest.mark.parametrize("factor", [1.001, 1.01])
def test_large_output_offset_does_not_hide_small_errors_full(backend, factor):
    args = _offset_args(backend, (8, 8, 8), 0)
    with pytest.raises(AssertionError, match=r"`weight`, element"):
        check_vjp(affine, weight_grad_scaled_by(factor), args, mode="full", argnames=NAMES)


@pytest.mark.parametrize(
    ("shape", "mode"), [((32, 32, 32), "fast"), pytest.param((8, 8, 8), "full", marks=NO_FULL_MODE_ON_GRAPHS)]
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
        args = tuple(backend.cast(a, dtype) for a in case.args)
        # Values past the dtype's range are part of the cases: NumPy's warning for them is not the point.
        with np.errstate(over="ignore"):
            alarms += [f"case {number} ({case.label}), {alarm}" for alarm in _alarms(case, args, number)]
    assert not alarms, f"{len(alarms)} false alarms in {CASES} cases:\n" + "\n".join(alarms[:10])


def _tanh_args(backend, dtype, big=None):
    rng = np.random.default_rng(0)
    x, w = 0.1 * rng.standard_normal((16, 8)), rng.standard_normal((4, 8))
    if big is not None:
        x[0, 0] = big
    return backend.cast(x, dtype), backend.cast(w, dtype)


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

    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(tanh_jvp, forgets_the_derivative, args)
    if backend.row.library in COSTLY_PER_OPERATION:
        return  # a failed fast mode reruns full mode here (160 elements): the bank's reason
    check_adjoint(tanh_jvp, tanh_vjp, args)  # (test_right_backward_passes holds on every backend)
    check_vjp(tanh_layer, tanh_vjp, args)
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
    args = tuple(backend.cast(a, "float16") for a in (x, host.weight, host.bias))
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


# -- what the checks hand the user's functions, and what those write into --------------------

# Where `a *= s` writes into the array itself; elsewhere it makes a new one (JAX's arrays
# cannot be written; Dask, ndonnx and pydata/sparse rebind the name), and the slip is a
# wrong value, caught as one.
WRITES_IN_PLACE = ("numpy", "torch", "array_api_strict", "mlx", "cupy", "sparse")


def _halves_its_cotangent(ct, x, w, b):
    ct *= 0.5
    return right_vjp(ct, x, w, b)


def _centres_its_input(ct, x, w, b):
    x -= xp_of(x).mean(x, axis=0)
    return right_vjp(ct, x, w, b)


def _doubles_its_tangent(t, x, w, b):
    dx = t[0]
    dx *= 2.0
    return jvp((dx, *t[1:]), x, w, b)


def _centring_forward(x, w, b):
    x -= xp_of(x).mean(x, axis=0)
    return affine(x, w, b)


WRITERS = {
    "vjp into its cotangent": (jvp, _halves_its_cotangent, affine, "vjp wrote into its cotangent"),
    "vjp into an argument": (jvp, _centres_its_input, affine, "vjp wrote into argument `x`"),
    "jvp into its tangents": (_doubles_its_tangent, right_vjp, None, r"jvp wrote into its tangents\[0\]"),
    "f into an argument": (None, right_vjp, _centring_forward, "f wrote into argument `x`"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_function_that_writes_into_what_it_is_handed_fails(backend, writer, dtype):
    """The checks hand the user's functions copies of their own: a write into one fails the
    check, naming the array (where the library writes in place), and the caller's arrays
    stay as they were."""
    first, vjp, f, message = WRITERS[writer]
    backend.dtype(dtype)
    args = _args(backend, dtype, x_shape=(5, 3), n=2)
    before = [to_numpy(a).copy() for a in args]
    in_place = backend.row.library in WRITES_IN_PLACE
    runs = []
    if first is not None:
        runs.append(lambda: check_adjoint(first, vjp, args, argnames=NAMES))
    if f is not None and backend.row.library not in COSTLY_PER_OPERATION:
        runs.append(lambda: check_vjp(f, vjp, args, argnames=NAMES))
    for run in runs:
        # Where the library makes a new array instead, the slip is a wrong value: the
        # backward's gradients, or a forward that no longer matches its backward.
        with pytest.raises(AssertionError, match=message if in_place else None):
            run()
    for a, host in zip(args, before, strict=True):
        np.testing.assert_array_equal(to_numpy(a), host)


def test_a_right_function_that_writes_into_its_own_arrays_passes(backend):
    """Writing into arrays a function made itself is no slip."""

    def vjp(ct, x, w, b):
        g = list(right_vjp(ct, x, w, b))
        if backend.row.library in WRITES_IN_PLACE:
            g[0] *= 1.0
        return tuple(g)

    check_adjoint(jvp, vjp, _args(backend, "float64"), argnames=NAMES)


def test_numpy_scalar_results_are_0d_arrays():
    """NumPy gives np.float64 for a function of a 0-d array: the checks take it as a 0-d array."""
    x = (np.asarray(0.7),)
    check_vjp(np.exp, lambda ct, x: (ct * np.exp(x),), x)
    check_vjp(np.exp, lambda ct, x: (ct * np.exp(x),), x, mode="full")
    check_adjoint(lambda t, x: np.exp(x) * t[0], lambda ct, x: (ct * np.exp(x),), x)
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(np.exp, lambda ct, x: (1.01 * ct * np.exp(x),), x)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(lambda t, x: np.exp(x) * t[0], lambda ct, x: (1.01 * ct * np.exp(x),), x)


# -- values near the ends of each dtype's range ----------------------------------------------

# (dtype, the size of x and b): the affine layer's outputs stay finite, its squares do not.
EXTREMES = [
    ("float64", 1e-170),
    ("float64", 1e-100),
    ("float64", 1e100),
    ("float64", 1e155),
    ("float32", 1e-20),
    ("float32", 1e18),
    ("float16", 1e-2),
    ("float16", 1e2),
    ("complex128", 1e-170),
    ("complex128", 1e150),
]


@pytest.mark.parametrize(("dtype", "size"), EXTREMES, ids=[f"{d}-{s:g}" for d, s in EXTREMES])
def test_no_false_alarm_and_no_warning_near_the_ends_of_the_range(backend, dtype, size):
    """Tolerances are scaled sums: they neither overflow nor underflow (warnings are errors
    in this suite), and a gradient 1% off is still caught."""
    backend.dtype(dtype)
    host = inputs((6, 4), 3, "complex128" if dtype.startswith("complex") else "float64", seed=1)
    args = (backend.cast(host.x * size, dtype), backend.cast(host.weight, dtype), backend.cast(host.bias * size, dtype))
    check_adjoint(jvp, right_vjp, args, argnames=NAMES)
    wide = "complex128" if dtype.startswith("complex") else "float64"
    if backend.has(wide):
        check_vjp(affine, right_vjp, args, argnames=NAMES)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(jvp, weight_grad_scaled_by(1.01), args, argnames=NAMES)


# -- the checks' own arguments ---------------------------------------------------------------

_POINT = (np.ones((3, 2)), np.ones((2, 2)), np.zeros(2))
BAD_OPTIONS = [
    ({"mode": "slow"}, ValueError, r"`mode` must be 'fast' or 'full'; got 'slow'"),
    ({"mode": 1}, TypeError, r"`mode` must be 'fast' or 'full'; got 1"),
    ({"directions": 0}, ValueError, r"`directions` must be an int of at least 1; got 0"),
    ({"directions": -1}, ValueError, r"`directions` must be an int of at least 1; got -1"),
    ({"directions": 1.5}, TypeError, r"`directions` must be an int of at least 1; got float 1.5"),
    ({"directions": True}, TypeError, r"`directions` must be an int of at least 1; got bool True"),
    ({"seed": None}, TypeError, r"`seed` must be an int of at least 0; got NoneType None"),
    ({"seed": -1}, ValueError, r"`seed` must be an int of at least 0; got -1"),
    ({"seed": "0"}, TypeError, r"`seed` must be an int of at least 0; got str '0'"),
    ({"rtol": "1e-3"}, TypeError, r"`rtol` must be a non-negative finite number or None; got str '1e-3'"),
    ({"rtol": -1e-3}, ValueError, r"`rtol` must be a non-negative finite number or None; got -0.001"),
    ({"atol": -1}, ValueError, r"`atol` must be a non-negative finite number or None; got -1"),
    ({"atol": float("nan")}, ValueError, r"`atol` must be a non-negative finite number or None; got nan"),
    ({"rtol": float("inf")}, ValueError, r"`rtol` must be a non-negative finite number or None; got inf"),
    ({"argnames": ("x", "weight")}, ValueError, r"`argnames` must name each of the 3 arguments; got 2"),
    ({"argnames": "xwb"}, TypeError, r"`argnames` must be a sequence of str, one per argument; got str"),
    ({"argnames": ("x", 1, "b")}, TypeError, r"`argnames` must hold str"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=[repr(o) for o, _, _ in BAD_OPTIONS])
@pytest.mark.parametrize("check", ["check_vjp", "check_adjoint"])
def test_the_checks_arguments_are_checked(check, options, error, message):
    if check == "check_adjoint" and set(options) & {"mode", "directions"}:
        pytest.skip("check_adjoint has no `mode` or `directions`")
    run = check_vjp if check == "check_vjp" else check_adjoint
    first = affine if check == "check_vjp" else jvp
    with pytest.raises(error, match=message):
        run(first, right_vjp, _POINT, **options)


@pytest.mark.parametrize(
    ("returned", "message"),
    [((np.ones(2), np.ones(2)), "got tuple"), (None, "got NoneType None"), ("out", "got str")],
)
def test_a_forward_must_return_one_array(returned, message):
    with pytest.raises(TypeError, match=rf"`f` must return one array \(of the arguments' library\); {message}"):
        check_vjp(lambda *a: returned, right_vjp, _POINT)
    with pytest.raises(TypeError, match=rf"`jvp` must return one array \(of the arguments' library\); {message}"):
        check_adjoint(lambda t, *a: returned, right_vjp, _POINT)


def test_the_checks_take_callables_and_a_sequence_of_arguments():
    with pytest.raises(TypeError, match="`vjp` must be callable; got NoneType None"):
        check_vjp(affine, None, _POINT)
    with pytest.raises(TypeError, match="`jvp` must be callable; got int 3"):
        check_adjoint(3, right_vjp, _POINT)
    with pytest.raises(
        TypeError, match=r"`args` must be a tuple or list of the function's arguments; got numpy\.ndarray"
    ):
        check_vjp(affine, right_vjp, np.ones(3))


def test_numpy_integer_seed_and_directions_are_taken():
    check_vjp(affine, right_vjp, _POINT, seed=np.int64(3), directions=np.int32(2))


# -- a backend whose float64 is not float64-accurate ----------------------------------------


def test_float64_accuracy_is_measured(backend):
    """MLX computes float64's exp to float32's accuracy; the other backends to float64's."""
    from xaffine.testing._sums import EPS64, float64_accuracy

    backend.dtype("float64")
    accuracy = float64_accuracy(backend.xp, backend.device)
    if backend.row.library == "mlx":
        assert 1e-9 < accuracy < 1e-5
    else:
        assert accuracy == EPS64


@pytest.mark.parametrize("function", ["exp", "sigmoid"])
def test_right_elementwise_backward_passes_on_the_backends_float64(backend, function):
    """Elementwise functions of the backend's own float64 (MLX's exp is float32-accurate)."""
    backend.dtype("float64")
    xp = backend.xp

    def f(x):
        return xp.exp(x) if function == "exp" else 1.0 / (1.0 + xp.exp(-x))

    def vjp(ct, x):
        return (ct * f(x) * (1.0 if function == "exp" else (1.0 - f(x))),)

    def jvp_(t, x):
        return vjp(t[0], x)[0]

    x = (backend.cast(np.linspace(-3.0, 3.0, 13), "float64"),)
    check_adjoint(jvp_, vjp, x)
    check_vjp(f, vjp, x)
    if backend.row.library not in COSTLY_PER_OPERATION:
        check_vjp(f, vjp, x, mode="full")


def test_a_less_accurate_float64_is_named_in_the_message(monkeypatch):
    """A backend measured at float32's accuracy: a right backward passes, a wrong one fails
    with a message that says the tolerances follow the measured accuracy."""
    from xaffine.testing import _adjoint, _vjp

    for module in (_adjoint, _vjp):
        monkeypatch.setattr(module, "float64_accuracy", lambda xp, device: 2.6e-7)

    def f(x):  # float64 in name, float32 in accuracy
        return np.exp(x.astype(np.float32)).astype(np.float64)

    def vjp(ct, x):
        return (ct * f(x),)

    x = (np.linspace(-3.0, 3.0, 13),)
    check_vjp(f, vjp, x)
    check_vjp(f, vjp, x, mode="full")
    check_adjoint(lambda t, x: vjp(t[0], x)[0], vjp, x)
    with pytest.raises(AssertionError, match=r"accurate to about 2\.6e-07"):
        check_vjp(f, lambda ct, x: (1.1 * ct * f(x),), x)
    with pytest.raises(AssertionError, match=r"accurate to about 2\.6e-07"):
        check_adjoint(lambda t, x: vjp(t[0], x)[0], lambda ct, x: (1.1 * ct * f(x),), x)


def test_a_function_clear_of_the_less_accurate_operations_keeps_float64s_tolerances(monkeypatch):
    """A backend measured at float32's accuracy (MLX's exp): the affine layer, which calls
    no exp, keeps float64's eps, so a weight gradient 1% off beside outputs near 1e6 still
    fails both checks; a function computed at float32's accuracy gets the measured one."""
    from xaffine.testing import _adjoint, _sums, _vjp

    for module in (_adjoint, _vjp):
        monkeypatch.setattr(module, "float64_accuracy", lambda xp, device: 2.6e-7)
    args = _offset_args(SimpleNamespace(asarray=np.asarray), (32, 32, 32), 0)
    with pytest.raises(AssertionError, match=r"`weight`, direction") as caught:
        check_vjp(affine, weight_grad_scaled_by(1.01), args, argnames=NAMES)
    assert "accurate to about" not in str(caught.value)
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(jvp, weight_grad_scaled_by(1.01), args, argnames=NAMES)
    check_vjp(affine, right_vjp, args, argnames=NAMES)
    check_adjoint(jvp, right_vjp, args, argnames=NAMES)

    def at(function):
        return lambda moved, _: function(*moved)

    rng = np.random.default_rng(0)
    x = [np.linspace(-3.0, 3.0, 13)]
    assert _sums.accuracy_at(at(np.exp), x, [0], 2.6e-7, rng, array_api_compat.numpy) == _sums.EPS64
    float32_exp = at(lambda a: np.exp(a.astype(np.float32)).astype(np.float64))
    assert _sums.accuracy_at(float32_exp, x, [0], 2.6e-7, rng, array_api_compat.numpy) == 2.6e-7
    # A backend whose float64 is float64's: no probe, whatever the function.
    assert _sums.accuracy_at(float32_exp, x, [0], _sums.EPS64, rng, array_api_compat.numpy) == _sums.EPS64


# -- found by a review of the package: each failed before its fix --------------------------


def test_a_numpy_float32_scalar_argument_is_stepped_in_float64():
    x = np.linspace(-1.0, 1.0, 5)
    check_vjp(lambda a, s: a * s, lambda ct, a, s: (ct * s, np.sum(ct * a)), (x, np.float32(2.0)))


def test_a_forward_that_returns_a_python_float():
    torch = pytest.importorskip("torch", reason="a torch forward that returns a Python float")
    x = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)
    check_vjp(lambda a: float((a**2).sum()), lambda ct, a: (2.0 * ct * a,), (x,))
    check_adjoint(lambda t, a: float((2.0 * a * t[0]).sum()), lambda ct, a: (2.0 * ct * a,), (x,))


def test_tensors_that_require_grad_are_handed_without_a_warning():
    """torch.asarray(copy=True) of such a tensor warns; the copies are clones (warnings are errors here)."""
    torch = pytest.importorskip("torch", reason="torch's requires_grad")
    args = tuple(torch.tensor(a, requires_grad=True) for a in inputs((4, 3), 2, "float64").args)

    def vjp(ct, x, w, b):
        with torch.no_grad():
            return right_vjp(ct, x, w, b)

    def jvp_(t, x, w, b):
        with torch.no_grad():
            return jvp(t, x, w, b)

    check_adjoint(jvp_, vjp, args)
    check_vjp(lambda *a: affine(*(v.detach() for v in a)), vjp, args)


def test_a_write_in_the_float32_reference_run_is_reported():
    """float64 arguments: the check also runs the jvp on float32 copies, and a write there fails it."""
    args = inputs((4, 3), 2, "float64").args

    def writes_in_float32(t, x, w, b):
        if x.dtype == np.float32:
            dx = t[0]
            dx *= 2.0
        return jvp(t, x, w, b)

    with pytest.raises(AssertionError, match=r"jvp wrote into its tangents\[0\]"):
        check_adjoint(writes_in_float32, right_vjp, args)


def test_an_argument_without_a_name_is_named_once():
    def writes(ct, x, w, b):
        x *= 2.0
        return right_vjp(ct, x, w, b)

    with pytest.raises(AssertionError, match=r"vjp wrote into argument 0, which"):
        check_vjp(affine, writes, inputs((4, 3), 2, "float64").args)


def test_the_users_functions_see_the_callers_numpy_error_settings():
    seen = []

    def jvp_(t, x, w, b):
        seen.append(np.geterr()["over"])
        return jvp(t, x, w, b)

    with np.errstate(over="raise"):
        check_adjoint(jvp_, right_vjp, inputs((4, 3), 2, "float64").args)
    assert seen
    assert set(seen) == {"raise"}, seen
