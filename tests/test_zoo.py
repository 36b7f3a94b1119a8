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
