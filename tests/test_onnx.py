"""xaffine.onnx.export and ``xaffine export``: the models run in onnxruntime and match NumPy."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

pytest.importorskip("ndonnx", reason="ONNX export traces through ndonnx")
onnx = pytest.importorskip("onnx", reason="ONNX export writes onnx models")
ort = pytest.importorskip("onnxruntime", reason="the exported models run in onnxruntime")

import xaffine  # noqa: E402
from xaffine.cli import export as export_command  # noqa: E402
from xaffine.onnx import OPSET, backward_path, export  # noqa: E402

from .helpers import host_random, reference_backward, reference_forward, tolerances  # noqa: E402

# (batch argument, a concrete shape of those leading axes)
BATCHES = [("N", (5,)), ("N", (0,)), (("B", "T"), (2, 3)), ((), ()), ((2, "T"), (2, 4)), ((3,), (3,))]


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # overridable initializers are meant: no warning about them
    return ort.InferenceSession(path, options)


def _params(dtype: str, one_output: bool = False) -> dict[str, np.ndarray]:
    if one_output:
        return {"weight": host_random((3,), dtype, 1), "bias": host_random((), dtype, 2)}
    return {"weight": host_random((4, 3), dtype, 1), "bias": host_random((4,), dtype, 2)}


def _close(actual: np.ndarray, reference: np.ndarray, dtype: str, k: int) -> None:
    assert actual.dtype == np.dtype(dtype)
    assert actual.shape == reference.shape
    rtol, atol = tolerances(dtype, k, reference)
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("batch", "lead"), BATCHES)
@pytest.mark.parametrize("one_output", [False, True], ids=["2d-weight", "1d-weight"])
def test_models_match_numpy(tmp_path, dtype, batch, lead, one_output):
    params = _params(dtype, one_output)
    written = export(params, tmp_path / "m.onnx", backward=True, batch=batch)
    assert written == [os.fspath(tmp_path / "m.onnx"), os.fspath(tmp_path / "m.backward.onnx")]
    x = host_random((*lead, 3), dtype, 3)
    out_shape = (*lead, *params["weight"].shape[:-1])
    grad = host_random(out_shape, dtype, 4)
    (out,) = _session(written[0]).run(["out"], {"x": x})
    _close(out, reference_forward(x, params["weight"], params["bias"]), dtype, 3)
    got = _session(written[1]).run(["grad_x", "grad_weight", "grad_bias"], {"grad": grad, "x": x})
    want = reference_backward(grad, x, params["weight"], params["bias"])
    for actual, reference in zip(got, want, strict=True):
        _close(actual, reference, dtype, max(x.size // 3, 4))


@pytest.mark.parametrize("backward", [False, True])
def test_models_pass_the_checker_with_documented_names(tmp_path, backward):
    layer = xaffine.Affine(3, 2, xp="numpy", seed=0)
    written = export(layer, tmp_path / "m.onnx", backward=backward)
    forward = onnx.load(written[0])
    onnx.checker.check_model(forward, full_check=True)
    assert [(o.domain, o.version) for o in forward.opset_import] == [("", OPSET)]
    inputs = ["x", "weight", "bias"] if backward else ["x"]
    assert [i.name for i in forward.graph.input] == inputs
    assert [o.name for o in forward.graph.output] == ["out"]
    dims = [d.dim_param or d.dim_value for d in forward.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 2]
    if backward:
        model = onnx.load(written[1])
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == ["grad", "x", "weight"]
        assert [o.name for o in model.graph.output] == ["grad_x", "grad_weight", "grad_bias"]


def test_training_models_take_updated_parameters(tmp_path):
    params = _params("float64")
    written = export(params, tmp_path / "m.onnx", backward=True)
    x, w, b = host_random((6, 3), "float64", 5), host_random((4, 3), "float64", 6), host_random((4,), "float64", 7)
    (out,) = _session(written[0]).run(None, {"x": x, "weight": w, "bias": b})
    _close(out, reference_forward(x, w, b), "float64", 3)
    grad = host_random((6, 4), "float64", 8)
    (dx, _, _) = _session(written[1]).run(None, {"grad": grad, "x": x, "weight": w})
    _close(dx, reference_backward(grad, x, w, b)[0], "float64", 4)


def test_layer_of_another_backend_exports(tmp_path):
    pytest.importorskip("array_api_strict", reason="a layer off NumPy")
    layer = xaffine.Affine(3, 2, xp="array_api_strict", dtype="float64", seed=0)
    (path,) = export(layer, tmp_path / "m.onnx")
    x = host_random((4, 3), "float64", 1)
    (out,) = _session(path).run(None, {"x": x})
    host = layer.to("numpy")
    _close(out, reference_forward(x, np.asarray(host.weight), np.asarray(host.bias)), "float64", 3)


def test_export_replaces_atomically(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(TypeError, match="complex64"):
        export({"weight": np.ones((2, 3), np.complex64)}, target)
    assert target.read_bytes() == b"old"
    export({"weight": np.ones((2, 3), np.float32)}, target)
    onnx.checker.check_model(onnx.load(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize(
    ("params", "batch", "error", "match"),
    [
        ({"weight": np.ones((2, 3), np.float32), "scale": np.ones(2)}, "N", ValueError, "unknown key 'scale'"),
        ({"bias": np.ones(2)}, "N", TypeError, "mapping with 'weight'"),
        ({"weight": np.ones((2, 3, 1), np.float32)}, "N", ValueError, r"got shape \(2, 3, 1\)"),
        ({"weight": np.ones((2, 3), np.float32), "bias": np.ones(3, np.float32)}, "N", ValueError, r"\(2,\)"),
        ({"weight": np.ones((2, 3), np.float32), "bias": np.ones(2)}, "N", TypeError, "float64"),
        ({"weight": np.ones((2, 3), np.float32)}, ("N", "N"), ValueError, "twice"),
        ({"weight": np.ones((2, 3), np.float32)}, [1.5], TypeError, "`batch`"),
    ],
)
def test_bad_arguments_are_named(tmp_path, params, batch, error, match):
    with pytest.raises(error, match=match):
        export(params, tmp_path / "m.onnx", batch=batch)
    assert not any(tmp_path.iterdir())


def test_backward_path():
    assert backward_path("a/layer.onnx") == "a/layer.backward.onnx"
    assert backward_path("layer") == "layer.backward.onnx"


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xaffine")
    export_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize("backward", [False, True])
def test_cli_export(tmp_path, capsys, backward):
    layer = xaffine.Affine(3, 2, xp="numpy", seed=0)
    xaffine.save(tmp_path / "layer.npz", layer)
    out = tmp_path / "layer.onnx"
    args = _cli(["export", os.fspath(tmp_path / "layer.npz"), os.fspath(out), *(["--backward"] if backward else [])])
    assert args.run(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [os.fspath(out), *([backward_path(out)] if backward else [])]
    x = np.ones((2, 3), np.float32)
    (result,) = _session(os.fspath(out)).run(None, {"x": x})
    np.testing.assert_allclose(result, layer(x), rtol=1e-6)


def test_cli_export_missing_file(tmp_path, capsys):
    args = _cli(["export", os.fspath(tmp_path / "nope.npz"), os.fspath(tmp_path / "out.onnx")])
    assert args.run(args) == 1
    assert "nope.npz" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()
