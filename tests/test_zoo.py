"""xaffine.testing on layers other than the affine one: no false alarm on right backward
passes (textbook formulas on every backend, torch.func's and JAX's own derivatives), and
each layer's wrong backward caught by both checks (tests/zoo.py)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tests.test_testing import COSTLY_PER_OPERATION
from tests.zoo import BY_NAME, LAYERS, SCALES, draw, layers_for
from xaffine.testing import check_adjoint, check_vjp
from xaffine.testing._sums import EPS64, float64_accuracy

CASES = int(os.environ.get("XAFFINE_CASES", "2000"))  # a long run: XAFFINE_CASES=100000
CASES_SEED = int(os.environ.get("XAFFINE_CASES_SEED", "2026"))
# Each dtype's random cases run once, on the first backend of the matrix that has it.
CASE_HOME = {"float64": "numpy", "float32": "numpy", "float16": "numpy", "complex128": "numpy", "complex64": "numpy"}
CASE_HOME["bfloat16"] = "torch"
FULL_LIMIT = 40  # full mode where every argument has at most this many elements


def _alarms(layer, args, seed):
    """What the checks said of `layer`'s right backward at `args`: [] for no false alarm."""
    checks = [("check_adjoint", lambda: check_adjoint(layer.jvp, layer.vjp, args, seed=seed))]
    checks.append(("check_vjp fast", lambda: check_vjp(layer.f, layer.vjp, args, seed=seed)))
    if all(math.prod(a.shape) <= FULL_LIMIT for a in args):
        checks.append(("check_vjp full", lambda: check_vjp(layer.f, layer.vjp, args, seed=seed, mode="full")))
    found = []
    for name, run in checks:
        try:
            run()
        except AssertionError as exc:
            found.append(f"{name}: {str(exc)[:400]}")
    return found


@pytest.mark.parametrize("dtype", list(CASE_HOME))
def test_no_false_alarms_on_the_zoo(backend, dtype):
    """XAFFINE_CASES random points (2000 by default) of the zoo's layers for this dtype, at
    the scales people train at (tests/zoo.py's SCALES), pass both checks."""
    if backend.name != CASE_HOME[dtype]:
        pytest.skip(f"{dtype}'s zoo cases run on {CASE_HOME[dtype]} alone (their cost is per case, not per backend)")
    rng = np.random.default_rng([CASES_SEED, list(CASE_HOME).index(dtype), 1])
    layers, scales = layers_for(dtype), SCALES[dtype]
    alarms = []
    for number in range(CASES):
        layer, scale = layers[number % len(layers)], scales[(number // len(layers)) % len(scales)]
        args = tuple(backend.cast(a, dtype) for a in draw(layer, rng, dtype, scale))
        alarms += [f"case {number} ({layer.name} x{scale:g}), {a}" for a in _alarms(layer, args, number)]
    assert not alarms, f"{len(alarms)} false alarms in {CASES} cases:\n" + "\n".join(alarms[:10])


# Where a layer cannot be written with a library's arrays, or costs too much there.
NOT_ON = {
    "sparse": "pydata/sparse keeps a fill value per array: exp and softmax of a sparse array are dense",
    "ndonnx": "ndonnx has no complex dtypes",
    "ndonnx-cost": (
        "ndonnx runs each operation through an ONNX graph (the MLP and attention cost 1-2 minutes a check "
        "there): softmax, log-softmax, sigmoid and GELU run on ndonnx, every layer on the other backends"
    ),
}
ON_NDONNX = ("softmax", "log-softmax", "sigmoid", "GELU (tanh)")


def _layer_params():
    params = []
    for layer in LAYERS:
        marks = [pytest.mark.skip_backend("sparse", reason=NOT_ON["sparse"])]
        if layer.complex_:
            marks.append(pytest.mark.skip_backend("ndonnx", reason=NOT_ON["ndonnx"]))
        elif layer.name not in ON_NDONNX:
            marks.append(pytest.mark.skip_backend("ndonnx", reason=NOT_ON["ndonnx-cost"]))
        params.append(pytest.param(layer.name, marks=marks, id=layer.name))
    return params


def _dtypes_of(layer_name):
    return ("complex128", "complex64") if BY_NAME[layer_name].complex_ else ("float64", "float32")


@pytest.mark.parametrize("precision", ["wide", "narrow"])
@pytest.mark.parametrize("layer_name", _layer_params())
def test_zoo_layer_on_every_backend(backend, layer_name, precision):
    """Each layer's right backward passes both checks at each scale, and its wrong one fails
    both (at scale 1: at scale 30 a saturated GELU has no cube left to get wrong)."""
    layer = BY_NAME[layer_name]
    dtype = _dtypes_of(layer_name)[precision == "narrow"]
    backend.dtype(dtype)
    # One point, its first argument scaled: one set of shapes (JAX compiles per shape). The
    # libraries with a large cost per operation take the largest scale alone.
    host = draw(layer, np.random.default_rng([CASES_SEED, len(layer.name)]), dtype, 1.0)
    costly = backend.row.library in COSTLY_PER_OPERATION
    # check_vjp differences in the wide dtype, which MLX lacks for complex64 (it says so).
    differences = backend.has(_dtypes_of(layer_name)[0])
    for seed, scale in enumerate(SCALES[dtype][-1:] if costly else SCALES[dtype]):
        args = tuple(backend.cast(a * scale if k == 0 else a, dtype) for k, a in enumerate(host))
        check_adjoint(layer.jvp, layer.vjp, args, seed=seed)
        if differences:
            check_vjp(layer.f, layer.vjp, args, seed=seed)
    args = tuple(backend.cast(a, dtype) for a in host)
    wrong = layer.wrong[1]
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(layer.jvp, wrong, args)
    if costly or not differences:
        return  # a failed fast mode reruns full mode, one graph per element: tests/test_testing.py's reason
    if float64_accuracy(backend.xp, backend.device) > EPS64:
        return  # MLX: differences resolve what its float64 resolves (test_testing's accuracy tests)
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_vjp(layer.f, wrong, args)


# -- the frameworks' own derivatives as the right backward -------------------------------------


def _torch_zoo():
    torch = pytest.importorskip("torch", reason="torch.func's derivatives need torch")
    functional = torch.nn.functional

    def attention(q, k, v):
        return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v

    return {
        "softmax": lambda x: torch.softmax(x, dim=-1),
        "log-softmax": lambda x: torch.log_softmax(x, dim=-1),
        "logsumexp": lambda x: torch.logsumexp(x, dim=-1),
        "cross-entropy": lambda x: functional.cross_entropy(x, _targets(x)),
        "layer norm": lambda x, g, b: functional.layer_norm(x, (x.shape[-1],), g, b, eps=1e-5),
        "L2 normalisation": lambda x: functional.normalize(x, dim=-1),
        "GELU (tanh)": lambda x: functional.gelu(x, approximate="tanh"),
        "GELU (erf)": functional.gelu,
        "sigmoid": torch.sigmoid,
        "attention": attention,
        "two-layer MLP": lambda x, w1, b1, w2, b2: torch.tanh(x @ w1.T + b1) @ w2.T + b2,
        "abs": torch.abs,
        "conj": torch.conj_physical,
        "z conj(z)": lambda z: z * torch.conj_physical(z),
        "real part": torch.real,
    }


def _jax_zoo():
    jax = pytest.importorskip("jax", reason="JAX's derivatives need JAX")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def layer_norm(x, g, b):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        return (x - mu) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5) * g + b

    def cross_entropy(x):
        return -jnp.sum(_targets(x) * jax.nn.log_softmax(x, axis=-1)) / x.shape[0]

    layers = {
        "softmax": lambda x: jax.nn.softmax(x, axis=-1),
        "log-softmax": lambda x: jax.nn.log_softmax(x, axis=-1),
        "logsumexp": lambda x: jax.scipy.special.logsumexp(x, axis=-1),
        "cross-entropy": cross_entropy,
        "layer norm": layer_norm,
        "L2 normalisation": lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True),
        "GELU (tanh)": lambda x: jax.nn.gelu(x, approximate=True),
        "GELU (erf)": lambda x: jax.nn.gelu(x, approximate=False),
        "sigmoid": jax.nn.sigmoid,
        "attention": lambda q, k, v: jax.nn.softmax(q @ k.T / math.sqrt(q.shape[-1]), axis=-1) @ v,
        "two-layer MLP": lambda x, w1, b1, w2, b2: jnp.tanh(x @ w1.T + b1) @ w2.T + b2,
        "abs": jnp.abs,
        "conj": jnp.conj,
        "z conj(z)": lambda z: z * jnp.conj(z),
        "real part": jnp.real,
    }
    return {name: jax.jit(f) for name, f in layers.items()}


def _targets(x):
    """tests/zoo.py's target probabilities, computed here from the framework's own array."""
    from tests.zoo import _targets as targets

    return targets(x)


def _torch_derivatives(f):
    from torch.func import jvp, vjp

    def vjp_(ct, *args):
        return vjp(f, *args)[1](ct)

    def jvp_(tangents, *args):
        tangents = tuple(a * 0 if t is None else t for t, a in zip(tangents, args, strict=True))
        return jvp(f, args, tangents)[1]

    return jvp_, vjp_


def _jax_derivatives(f):
    import jax
    import jax.numpy as jnp

    # Compiled: the checks call each with a few shapes and dtypes, many times.
    @jax.jit
    def vjp_(ct, *args):
        # jax.vjp transposes the linear map; PyTorch's convention (the checks') conjugates it.
        grads = jax.vjp(f, *args)[1](jnp.conj(ct))
        return tuple(jnp.conj(g) for g in grads)

    @jax.jit
    def jvp_(tangents, *args):
        tangents = tuple(jnp.zeros_like(a) if t is None else t for t, a in zip(tangents, args, strict=True))
        return jax.jvp(f, args, tangents)[1]

    return jvp_, vjp_


FRAMEWORK_DTYPES = ["float64", "float32", "float16", "bfloat16", "complex128", "complex64"]


# torch.func's forward mode scripts its decompositions on first use, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("dtype", FRAMEWORK_DTYPES)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_no_false_alarms_with_the_frameworks_own_derivatives(framework, dtype):
    """torch.func's and JAX's derivatives of the same layers (and GELU with erf) pass both
    checks at every zoo scale: no false alarm from another library's arithmetic."""
    if framework == "jax" and dtype in ("float16", "bfloat16"):
        pytest.skip("JAX compiles each of the checks' operations per shape (30 s a 16-bit run): torch's cover 16 bits")
    zoo = _torch_zoo() if framework == "torch" else _jax_zoo()
    derivatives = _torch_derivatives if framework == "torch" else _jax_derivatives
    module = pytest.importorskip(framework, reason=f"{framework}'s derivatives need {framework}")
    lib = module if framework == "torch" else module.numpy
    complex_ = dtype.startswith("complex")
    alarms = []
    for name, f in zoo.items():
        layer = BY_NAME.get(name, BY_NAME["GELU (tanh)"])
        if layer.complex_ != complex_:
            continue
        jvp_, vjp_ = derivatives(f)
        host = draw(layer, np.random.default_rng([CASES_SEED, len(name)]), dtype, 1.0)
        for seed, scale in enumerate(SCALES[dtype]):
            args = tuple(
                lib.asarray(np.asarray(a * scale if k == 0 else a).astype(np.complex128 if complex_ else np.float64))
                for k, a in enumerate(host)
            )
            args = tuple(
                a.astype(getattr(lib, dtype)) if framework == "jax" else a.to(getattr(lib, dtype)) for a in args
            )
            alarms += [f"{name} x{scale:g}: {a}" for a in _framework_alarms(jvp_, vjp_, f, args, seed)]
    assert not alarms, "\n".join(alarms[:10])


def _framework_alarms(jvp_, vjp_, f, args, seed):
    found = []
    for check, run in (
        ("check_adjoint", lambda: check_adjoint(jvp_, vjp_, args, seed=seed)),
        ("check_vjp", lambda: check_vjp(f, vjp_, args, seed=seed)),
    ):
        try:
            run()
        except AssertionError as exc:
            found.append(f"{check}: {str(exc)[:300]}")
    return found


def _said(check, first, vjp, args, seed):
    """What `check` raised, or None."""
    try:
        check(first, vjp, args, seed=seed)
    except AssertionError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layer_name", ["softmax", "log-softmax", "logsumexp", "cross-entropy", "attention"])
def test_beyond_the_training_scales_no_verdict_on_a_right_backward(layer_name, dtype):
    """Logits x100, x300: a softmax one-hot to within rounding. A right backward passes, or
    fails saying the point is too ill-conditioned to check, never that the backward is wrong;
    the wrong backward still fails."""
    layer = BY_NAME[layer_name]
    rng = np.random.default_rng([CASES_SEED, 100])
    for seed in range(20):
        host = draw(layer, rng, dtype, 100.0 if seed % 2 else 300.0)
        args = tuple(np.asarray(a).astype(dtype) for a in host)
        for check, first in ((check_adjoint, layer.jvp), (check_vjp, layer.f)):
            said = _said(check, first, layer.vjp, args, seed)
            assert said is None or "too ill-conditioned to check" in said, said
        if layer_name != "logsumexp":  # one-hot, exp(x - max) is softmax: its slip is no slip there
            with pytest.raises(AssertionError):
                check_adjoint(layer.jvp, layer.wrong[1], args, seed=seed)


# -- points the long runs found ------------------------------------------------------------

# The MLP at x10 in float32 (case 12319 of a 100,000-case run): x (1, 5), w1 (6, 5), b1, w2
# (1, 6), b2. The hidden unit of pre-activation near 16 saturates.
_SATURATED_MLP = (
    [[3.8945916, 12.650902, 1.1974740, -6.6603746, 0.63175303]],
    [
        [0.50733536, 1.0272347, 0.40934214, 0.38187084, 0.5747571],
        [0.17783248, 0.48628616, -0.013791100, 0.48324108, -0.12849718],
        [0.10382683, 0.4931207, 0.1621613, -0.13944659, 0.5601404],
        [-0.3638897, -0.19067717, 0.5630498, -0.4531232, -0.058978483],
        [0.030123003, 0.091125496, 0.37217683, 0.37603143, -0.9272015],
        [-0.109052904, 0.36814207, 0.7570777, 0.8707348, -0.9378386],
    ],
    [0.6766869, 0.18167694, -0.076712854, 0.7926729, -1.386948, -0.00072142819],
    [[0.567979, -0.049558263, 0.39280447, 0.58870995, 0.8726337, -0.3493133]],
    [-0.6574827],
)


def test_a_step_that_changes_no_output_is_taken_again_larger():
    """The hidden tanh at a pre-activation near 16 moved by less than float64's last place
    of 1 under a step of 6e-6: no output changed, and full mode said numeric 0 against an
    analytic -6.7e-12 (the outputs' own last place bounds nothing lost inside). A step that
    changes no output is taken again larger; the wrong backward still fails there."""
    layer = BY_NAME["two-layer MLP"]
    args = tuple(np.asarray(a, dtype=np.float32) for a in _SATURATED_MLP)
    check_vjp(layer.f, layer.vjp, args, seed=12319, mode="full")
    check_vjp(layer.f, layer.vjp, args, seed=12319)
    for mode in ("fast", "full"):
        with pytest.raises(AssertionError, match="gradient check failed"):
            check_vjp(layer.f, layer.wrong[1], args, seed=12319, mode=mode)
