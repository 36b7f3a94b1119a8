"""xaffine.onnx.export and ``xaffine export``: the models run in onnxruntime and match NumPy."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pytest

pytest.importorskip("ndonnx", reason="ONNX export traces through ndonnx")
onnx = pytest.importorskip("onnx", reason="ONNX export writes onnx models")
ort = pytest.importorskip("onnxruntime", reason="the exported models run in onnxruntime")

import xaffine  # noqa: E402
from xaffine.cli import export as export_command  # noqa: E402
from xaffine.onnx import OPSET, backward_path, export  # noqa: E402

from .helpers import assert_close, host_random, reference_backward, reference_forward  # noqa: E402

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
    assert_close(out, reference_forward(x, params["weight"], params["bias"]), dtype, 3)
    got = _session(written[1]).run(["grad_x", "grad_weight", "grad_bias"], {"grad": grad, "x": x})
    want = reference_backward(grad, x, params["weight"], params["bias"])
    for actual, reference in zip(got, want, strict=True):
        assert_close(actual, reference, dtype, max(x.size // 3, 4))


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
    assert_close(out, reference_forward(x, w, b), "float64", 3)
    grad = host_random((6, 4), "float64", 8)
    (dx, _, _) = _session(written[1]).run(None, {"grad": grad, "x": x, "weight": w})
    assert_close(dx, reference_backward(grad, x, w, b)[0], "float64", 4)


def test_layer_of_another_backend_exports(tmp_path):
    pytest.importorskip("array_api_strict", reason="a layer off NumPy")
    layer = xaffine.Affine(3, 2, xp="array_api_strict", dtype="float64", seed=0)
    (path,) = export(layer, tmp_path / "m.onnx")
    x = host_random((4, 3), "float64", 1)
    (out,) = _session(path).run(None, {"x": x})
    host = layer.to("numpy")
    assert_close(out, reference_forward(x, np.asarray(host.weight), np.asarray(host.bias)), "float64", 3)


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


# -- round two: edge cases, dtypes, files -----------------------------------------------


@pytest.mark.parametrize("w_shape", [(2, 0), (0, 3)], ids=["no-inputs", "no-outputs"])
@pytest.mark.parametrize(("batch", "lead"), [(("B", "T"), (2, 3)), (("A", "B", "C"), (2, 0, 1)), ((2, "T"), (2, 2))])
def test_zero_features_with_several_symbolic_axes(tmp_path, w_shape, batch, lead):
    params = {"weight": host_random(w_shape, "float64", 1), "bias": host_random(w_shape[:1], "float64", 2)}
    forward, backward = export(params, tmp_path / "m.onnx", backward=True, batch=batch)
    x = host_random((*lead, w_shape[1]), "float64", 3)
    grad = host_random((*lead, w_shape[0]), "float64", 4)
    (out,) = _session(forward).run(["out"], {"x": x})
    assert_close(out, reference_forward(x, params["weight"], params["bias"]), "float64", 3)
    got = _session(backward).run(["grad_x", "grad_weight", "grad_bias"], {"grad": grad, "x": x})
    for actual, reference in zip(got, reference_backward(grad, x, params["weight"], params["bias"]), strict=True):
        assert_close(actual, reference, "float64", 4)


@pytest.mark.parametrize("batch", [(2, 0), 0, ("N", 0)])
def test_backward_model_always_takes_x(tmp_path, batch):
    _, backward = export(_params("float32"), tmp_path / "m.onnx", backward=True, batch=batch)
    assert [i.name for i in onnx.load(backward).graph.input] == ["grad", "x", "weight"]


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        (2**63, ValueError, r"from 0 to 2\*\*63 - 1"),
        (-1, ValueError, "from 0 to"),
        (b"N", TypeError, "got bytes"),
        (bytearray(b"N"), TypeError, "got bytearray"),
        ([True], TypeError, "True"),
        ("", ValueError, "empty axis name"),
        ({"N"}, TypeError, "`batch`"),
    ],
)
def test_batch_is_names_and_int64_sizes(tmp_path, batch, error, match):
    with pytest.raises(error, match=match):
        export(_params("float32"), tmp_path / "m.onnx", batch=batch)
    assert not any(tmp_path.iterdir())


def test_largest_batch_size_and_numpy_integers_are_taken(tmp_path):
    export(_params("float32"), tmp_path / "a.onnx", batch=2**63 - 1)
    (path,) = export(_params("float32"), tmp_path / "b.onnx", batch=(np.int64(3),))
    x = host_random((3, 3), "float32", 5)
    (out,) = _session(path).run(None, {"x": x})
    assert_close(out, reference_forward(x, _params("float32")["weight"], _params("float32")["bias"]), "float32", 3)


def test_one_output_weight_with_a_python_number_bias(tmp_path):
    weight = host_random((3,), "float32", 1)
    forward, _ = export({"weight": weight, "bias": 1.5}, tmp_path / "m.onnx", backward=True)
    x = host_random((4, 3), "float32", 2)
    (out,) = _session(forward).run(["out"], {"x": x})
    np.testing.assert_allclose(out, xaffine.affine(x, weight, 1.5), rtol=1e-6)
    with pytest.raises(ValueError, match=r"`bias` must be an array of shape \(2,\)"):
        export({"weight": np.ones((2, 3), np.float32), "bias": 1.5}, tmp_path / "n.onnx")
    with pytest.raises(TypeError, match="complex number"):
        export({"weight": weight, "bias": 1j}, tmp_path / "n.onnx")


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_bfloat16_is_refused_never_converted(tmp_path, library):
    pytest.importorskip(library, reason=f"a bfloat16 layer of {library}")
    layer = xaffine.Affine(3, 2, xp=library, dtype="bfloat16", seed=0)
    with pytest.raises(TypeError, match=r"`weight` has dtype bfloat16; ONNX models are exported in float16"):
        export(layer, tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())
    export(layer.to(dtype="float32"), tmp_path / "m.onnx")  # the conversion the message names


def test_parameters_over_two_gib_are_refused_up_front(tmp_path):
    # A broadcast view: 4 GiB of float32 as the model would hold them, without the memory.
    weight = np.broadcast_to(np.float32(0.5), (1 << 16, 1 << 14))
    with pytest.raises(ValueError, match=r"4294967296 bytes .* at most 2 GiB"):
        export({"weight": weight}, tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("in_the_way", ["forward", "backward"])
def test_a_failed_pair_keeps_both_old_files(tmp_path, in_the_way):
    path = tmp_path / "m.onnx"
    old = {path: b"old forward", tmp_path / "m.backward.onnx": b"old backward"}
    for p, data in old.items():
        p.write_bytes(data)
    blocked = path if in_the_way == "forward" else tmp_path / "m.backward.onnx"
    blocked.unlink()
    blocked.mkdir()
    with pytest.raises(IsADirectoryError, match=blocked.name):
        export(_params("float32"), path, backward=True)
    for p, data in old.items():
        assert p.is_dir() if p == blocked else p.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.backward.onnx", "m.onnx"]


def test_a_failed_build_of_the_backward_model_keeps_both_old_files(tmp_path, monkeypatch):
    path, back = tmp_path / "m.onnx", tmp_path / "m.backward.onnx"
    path.write_bytes(b"old forward")
    back.write_bytes(b"old backward")
    real = onnx.checker.check_model

    def check_model(model, *args, **kwargs):
        if any(o.name == "grad_x" for o in model.graph.output):
            raise onnx.checker.ValidationError("simulated inference error")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnx.checker, "check_model", check_model)
    with pytest.raises(onnx.checker.ValidationError, match="simulated"):
        export(_params("float32"), path, backward=True)
    assert path.read_bytes() == b"old forward"
    assert back.read_bytes() == b"old backward"


def test_a_failed_second_rename_restores_the_first_file(tmp_path, monkeypatch):
    path, back = tmp_path / "m.onnx", tmp_path / "m.backward.onnx"
    path.write_bytes(b"old forward")
    real = os.replace

    def replace(src, dst):
        if os.fspath(dst) == os.fspath(back) and ".tmp" in os.fspath(src):
            raise OSError(28, "simulated full disk")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated full disk"):
        export(_params("float32"), path, backward=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"old forward"
    assert not back.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_export_never_replaces_a_fifo(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=r"m\.onnx.*|FIFO"):
        export(_params("float32"), fifo)
    assert os.path.exists(fifo)
    assert not fifo.is_file()


def test_cli_export_never_replaces_a_device_node(tmp_path, capsys):
    import stat

    xaffine.save(tmp_path / "layer.npz", xaffine.Affine(3, 2, xp="numpy", seed=0))
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (OSError, AttributeError) as exc:
        pytest.skip(f"cannot make a character device here (needs root and mknod): {exc}")
    args = _cli(["export", os.fspath(tmp_path / "layer.npz"), os.fspath(node)])
    assert args.run(args) == 1
    assert "character device" in capsys.readouterr().err
    assert stat.S_ISCHR(node.lstat().st_mode)


@pytest.mark.parametrize("how", ["same", "hard-link", "symlink", "backward"])
def test_cli_export_refuses_to_overwrite_its_input(tmp_path, capsys, how):
    layer_path = tmp_path / "layer.npz"
    xaffine.save(layer_path, xaffine.Affine(3, 2, xp="numpy", seed=0))
    before = layer_path.read_bytes()
    out = layer_path
    if how == "hard-link":
        out = tmp_path / "other.npz"
        os.link(layer_path, out)
    elif how == "symlink":
        out = tmp_path / "sub" / ".." / "alias.onnx"
        (tmp_path / "sub").mkdir()
        (tmp_path / "alias.onnx").symlink_to(layer_path)
    elif how == "backward":
        # OUT.backward.onnx would be the input
        layer_path = tmp_path / "m.backward.npz"
        os.replace(tmp_path / "layer.npz", layer_path)
        out = tmp_path / "m.npz"
    args = _cli(["export", os.fspath(layer_path), os.fspath(out), "--backward"])
    assert args.run(args) == 2
    err = capsys.readouterr().err
    assert "is the input" in err
    assert layer_path.read_bytes() == before


def test_cli_export_bfloat16_says_what_numpy_lacks(tmp_path, capsys):
    pytest.importorskip("torch", reason="a bfloat16 layer to save")
    path = tmp_path / "layer.safetensors"
    xaffine.save(path, xaffine.Affine(3, 2, xp="torch", dtype="bfloat16", seed=0))
    args = _cli(["export", os.fspath(path), os.fspath(tmp_path / "m.onnx")])
    assert args.run(args) == 1
    err = capsys.readouterr().err
    assert "NumPy has no bfloat16" in err
    assert "dtype='float32'" in err
    assert not (tmp_path / "m.onnx").exists()


def _no_links(src, dst):
    raise OSError(1, "no hard links here")


def _copy_cut_short(src, dst):
    with open(dst, "wb") as f:
        f.write(b"old")
    raise OSError(28, "simulated full disk")


@pytest.mark.parametrize(
    ("failing", "links"),
    [
        ("first", True),
        ("second", True),
        ("first", False),
        ("second", False),
        ("backup copy", False),
        ("every rename", True),
    ],
)
def test_a_failed_step_leaves_nothing_behind(tmp_path, monkeypatch, failing, links):
    """A full disk at either rename of a forward+backward export, or while copying a backup
    where the file system has no hard links: both models keep their contents and nothing
    stays beside them (the rollback once renamed a backup over its own hard link, which
    rename(2) leaves as it is)."""
    import shutil

    path, back = tmp_path / "m.onnx", tmp_path / "m.backward.onnx"
    path.write_bytes(b"old forward")
    back.write_bytes(b"old backward")
    real = os.replace
    target = {"first": path, "second": back}.get(failing)

    def replace(src, dst):
        if failing == "every rename" or (os.fspath(dst) == os.fspath(target) and ".tmp" in os.fspath(src)):
            raise OSError(28, "simulated full disk")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    if not links:
        monkeypatch.setattr(os, "link", _no_links)
    if failing == "backup copy":
        monkeypatch.setattr(shutil, "copy2", _copy_cut_short)
    with pytest.raises(OSError, match="simulated full disk"):
        export(_params("float32"), path, backward=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"old forward"
    assert back.read_bytes() == b"old backward"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.backward.onnx", "m.onnx"]


@pytest.mark.parametrize("name", ["newdir/", "m.onnx/", "sub/m.onnx" + os.sep, "newdir/.", "sub/."])
def test_a_path_ending_in_a_separator_is_refused(tmp_path, name):
    """`newdir/` names a folder: refused, naming the path, and nothing is made (a file
    named `newdir` once was)."""
    (tmp_path / "sub").mkdir()
    path = os.fspath(tmp_path) + os.sep + name
    with pytest.raises(IsADirectoryError, match="ends in a path separator or a dot, so it names a folder") as caught:
        export(_params("float32"), path, backward=True)
    assert caught.value.filename == path
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub"]


def test_a_big_endian_parameter_is_exported_in_native_order(tmp_path):
    """ONNX has one byte order: a big-endian weight (from a file written elsewhere) is
    converted, values unchanged (ndonnx once said '`>f8` does not have a corresponding
    primitive data type')."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="running the exported model needs onnxruntime")
    params = _params("float64")
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in params.items()}
    path = tmp_path / "m.onnx"
    export(swapped, path)
    x = host_random((5, 3), "float64", 3)
    (out,) = onnxruntime.InferenceSession(os.fspath(path)).run(["out"], {"x": x})
    assert_close(out, reference_forward(x, params["weight"], params["bias"]), "float64", 3)


def test_a_rollback_that_cannot_rename_keeps_the_old_contents_and_says_where(tmp_path, monkeypatch):
    """The first model replaced, the second's rename and every rename after it failing: the
    backup of the first, the one copy of its old contents, stays, and the error says where."""
    path, back = tmp_path / "m.onnx", tmp_path / "m.backward.onnx"
    path.write_bytes(b"old forward")
    back.write_bytes(b"old backward")
    real, done = os.replace, []

    def replace(src, dst):
        if done:
            raise OSError(28, "simulated full disk")
        done.append(dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated full disk") as caught:
        export(_params("float32"), path, backward=True)
    monkeypatch.undo()
    kept = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert [p.read_bytes() for p in kept] == [b"old forward"]
    assert back.read_bytes() == b"old backward"
    if sys.version_info >= (3, 11):
        assert any(str(kept[0]) in note for note in caught.value.__notes__)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_export_refuses_what_the_functions_refuse(tmp_path):
    w = np.arange(8, dtype=np.float32).reshape(2, 4)
    with pytest.raises(TypeError, match=r"`weight` is a numpy masked array, whose mask the layer cannot honour"):
        export({"weight": np.ma.masked_array(w, mask=w > 5)}, tmp_path / "a.onnx")
    with pytest.raises(TypeError, match=r"`bias` is a numpy masked array"):
        export({"weight": w, "bias": np.ma.masked_array(np.ones(2, np.float32), mask=[1, 0])}, tmp_path / "a.onnx")
    with pytest.raises(TypeError, match=r"`weight` is a numpy\.matrix"):
        export({"weight": np.asmatrix(w)}, tmp_path / "a.onnx")
    with pytest.raises(ValueError, match=r"`bias` is an integer of 1101 bits, past float64's range"):
        export({"weight": np.ones(4, np.float32), "bias": 2**1100}, tmp_path / "a.onnx")
    assert list(tmp_path.iterdir()) == []
