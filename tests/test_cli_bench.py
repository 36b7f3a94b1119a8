"""``xaffine bench``."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

import xaffine
import xaffine.cli.bench as bench_command
from xaffine._backends import find_backend
from xaffine.cli import main
from xaffine.cli._shared import host_inputs

QUICK = ["--rounds", "3", "--min-time", "0.002", "--no-torch"]


def test_bench_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    args = ["bench", "--shape", "single", "--shape", "4x8x16", "--dtypes", "float64", *QUICK]
    assert main([*args, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0].split()
    assert "xaffine/bound" in head
    assert "xaffine/hand" in head
    assert "hand" in head
    report = json.loads(path.read_text())
    shapes = [r["shape"] for r in report["results"]]
    assert shapes == ["single", "4x8x16"]
    first = report["results"][0]
    assert first["dims"] == [1, 64, 64]
    assert first["ratios"]["xaffine/bound"] > 0
    assert first["ratios"]["xaffine/hand"] > 0
    assert set(first["times"]) == {"xaffine", "bound", "hand"}
    assert first["peak_memory_ratio"] > 0
    assert report["machine"]["numpy"]


def test_bench_json_to_stdout_is_only_json(capsys):
    assert main(["bench", "--shape", "single", "--dtypes", "float32", *QUICK, "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["results"][0]["shape"] == "single"
    assert "xaffine/hand" in captured.err


@pytest.mark.parametrize(
    ("name", "dtype", "lead"),
    [
        ("numpy", "float64", (5,)),
        ("numpy", "float64", (2, 3)),
        ("numpy", "complex128", (2, 3)),
        ("array_api_strict", "float64", (2, 3)),
        ("array_api_strict", "complex128", (4,)),
        ("torch", "float64", (2, 3)),
        ("torch", "complex128", (2, 3)),
    ],
)
def test_hand_written_does_the_same_work_as_xaffine(name, dtype, lead):
    row = find_backend(name)
    pytest.importorskip(row.module, reason=f"the hand-written {name} variant needs {row.module}")
    _, xp, device, _ = row.load()
    host = host_inputs(lead, 4, 3, dtype, seed=2)
    x, w, b, g = (xp.asarray(host[k], device=device) for k in "xwbg")
    out, grads = bench_command._hand_written(row, xp, lead, 4, 3, "complex" in dtype)(x, w, b, g)
    expected_out, vjp = xaffine.affine_vjp(x, w, b)
    for got, want in zip((out, *grads), (expected_out, *vjp(g)), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)


def test_hand_written_under_jax_jit():
    pytest.importorskip("jax", reason="the hand-written JAX variant needs jax")
    import jax

    row = find_backend("jax")
    _, xp, device, _ = row.load(exact=True)
    host = host_inputs((2, 3), 4, 3, "float64", seed=2)
    x, w, b, g = (xp.asarray(host[k], device=device) for k in "xwbg")
    out, grads = jax.jit(bench_command._hand_written(row, xp, (2, 3), 4, 3, False))(x, w, b, g)
    expected_out, vjp = xaffine.affine_vjp(x, w, b)
    for got, want in zip((out, *grads), (expected_out, *vjp(g)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shape", "huge"], "argument --shape: a shape is one of"),
        (["--shape", "0x8x8"], "argument --shape: a shape is one of"),
        (["--rounds", "0"], "argument --rounds: must be a positive integer; got '0'"),
        (["--rounds", "two"], "argument --rounds: must be a positive integer; got 'two'"),
        (["--min-time", "0"], "argument --min-time: must be a positive number; got '0'"),
        (["--min-time", "-1"], "argument --min-time: must be a positive number; got '-1'"),
        (["--min-time", "inf"], "argument --min-time: must be a positive number; got 'inf'"),
        (["--dtypes", "float8"], "argument --dtypes: unknown dtype 'float8'"),
        (["--dtypes", "int32"], "argument --dtypes: unknown dtype 'int32'"),
        (["--backends", ""], "argument --backends: an empty list"),
        (["--backends", "nope"], "argument --backends: unknown backend 'nope'"),
        (["--json", "/nonexistent-folder/b.json"], "argument --json: the folder of"),
        (["--plot", "-"], "argument --plot: a plot goes to a file"),
    ],
)
def test_options_are_checked_before_any_work(monkeypatch, capsys, args, expected):
    def no_work(*args, **kwargs):
        raise AssertionError("benchmarking started")

    monkeypatch.setattr(bench_command, "bench", no_work)
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"xaffine bench: error: {expected}")


def test_plot_without_matplotlib_fails_first_with_a_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError

    def no_work(*args, **kwargs):
        raise AssertionError("benchmarking started")

    monkeypatch.setattr(bench_command, "bench", no_work)
    assert main(["bench", "--plot", str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err
    assert err == "xaffine bench: error: argument --plot: needs matplotlib: pip install 'xaffine[plot]' " + (
        "(see xaffine bench --help)\n"
    )


def test_a_dtype_the_backend_lacks_fails_before_timing(monkeypatch, capsys):
    monkeypatch.setattr(bench_command, "bench", lambda *a, **k: pytest.fail("benchmarking started"))
    assert main(["bench", "--backends", "array_api_strict", "--dtypes", "float16"]) == 2
    assert capsys.readouterr().err == (
        "xaffine bench: error: backend array_api_strict has no float16 in its Array API namespace\n"
    )


def test_compiled_column_under_jax_jit(capsys):
    """JAX runs both under jax.jit already: the column repeats xaffine/hand and the jaxprs are compared."""
    pytest.importorskip("jax", reason="the compiled column of a JAX backend needs jax")
    assert main(["bench", "--backends", "jax", "--shape", "4x8x16", "--dtypes", "float32", "--compiled", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "compiled xaffine/hand" in out.splitlines()[0]
    assert "graphs, jax float32 4x8x16: " in out


# inductor's first compilation scripts helpers with TorchScript, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")
def test_compiled_column_under_torch_compile():
    torch = pytest.importorskip("torch", reason="the compiled column of the torch backend needs torch")
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("torch.compile's inductor backend needs a C compiler on the CPU")
    del torch
    results = bench_command.bench(
        ["torch"], ["float32"], ["4x8x16"], rounds=1, min_time=0.001, torch=False, compiled=True
    )
    (result,) = results
    assert result.ratios["compiled xaffine/hand"] > 0
    assert set(result.times) == {"xaffine", "bound", "hand", "xaffine compiled", "hand compiled"}
    assert result.graphs is not None
    assert "operations" in result.graphs
    # Both graphs were captured whole, and each call's guards are counted: the hand-written
    # code's (its tensors), and xaffine's, whose functions are operations of the graph.
    found = re.search(r"guards: xaffine (\d+), hand (\d+)", result.graphs)
    ours, hand = (int(n) for n in found.groups())
    assert hand > 0
    assert 0 < ours <= hand + 5
