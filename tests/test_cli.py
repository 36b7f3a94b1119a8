"""The command line through its real entry points."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import xaffine._core as core
from xaffine._backends import BackendUnavailable, find_backend
from xaffine._cli import main


def test_check_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "check.json"
    assert main(["check", "--backends", "numpy,array_api_strict", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert rows[2][:3] == ["numpy", "cpu", "float32"]
    assert any(r[:1] == ["array_api_strict"] and "float64" in r for r in rows)
    assert "all 4 checks passed on array_api_strict, numpy" in out
    report = json.loads(path.read_text())
    assert report["passed"] is True
    assert {(r["backend"], r["dtype"]) for r in report["results"]} == {
        (b, d) for b in ("numpy", "array_api_strict") for d in ("float32", "float64")
    }
    assert all(r["adjoint"] == "passed" and r["finite_differences"] == "passed" for r in report["results"])


def test_check_complex_and_float16(capsys):
    assert main(["check", "--backends", "numpy", "--complex", "--float16"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    dtypes = {r[2] for r in rows if r[:2] == ["numpy", "cpu"]}
    assert dtypes == {"float32", "float64", "complex64", "complex128", "float16"}


def test_check_fails_on_a_wrong_backward(monkeypatch, capsys):
    real = core._backward

    def wrong(*args, **kwargs):
        grads = real(*args, **kwargs)
        return grads._replace(weight=None if grads.weight is None else grads.weight * 1.01)

    monkeypatch.setattr(core, "_backward", wrong)
    assert main(["check", "--backends", "numpy", "--json", "-"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 2 of 2 checks" in out
    assert "adjoint: FAILED" in out
    assert '"passed": false' in out


def test_check_reports_unusable_backends(capsys):
    try:
        find_backend("cupy").load()
    except BackendUnavailable:
        pass
    else:
        pytest.skip("cupy is usable here; this needs a backend that is not")
    assert main(["check", "--backends", "numpy,cupy"]) == 0
    out = capsys.readouterr().out
    assert "not usable here:" in out
    assert "install: pip install 'xaffine[cuda12]'" in out


def test_unknown_backend_is_a_clear_error(capsys):
    assert main(["check", "--backends", "numpy,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'nope'" in err
    assert "known backends: numpy" in err


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xaffine ")
    assert "numpy" in out
    assert "usable" in out
    assert "default backend:" in out


def test_demo_learns(capsys):
    pytest.importorskip("sklearn", reason="the demo's data set ships with scikit-learn")
    assert main(["demo", "--backend", "numpy", "--epochs", "8"]) == 0
    out = capsys.readouterr().out
    losses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("epoch")]
    assert len(losses) == 8
    assert losses[-1] < losses[0] / 3
    accuracy = float(out.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 93.0


def test_demo_is_the_same_on_every_backend():
    pytest.importorskip("sklearn", reason="the demo's data set ships with scikit-learn")
    pytest.importorskip("torch", reason="a second backend to compare with: torch")
    from xaffine._demo import train

    a, b = train("numpy", epochs=3), train("torch", epochs=3)
    assert a.accuracy == pytest.approx(b.accuracy, abs=2 / a.test_size)
    assert a.losses == pytest.approx(b.losses, rel=1e-4)


def test_demo_refuses_dask(capsys):
    assert main(["demo", "--backend", "dask"]) == 2
    assert "examples/dask_distributed.py" in capsys.readouterr().err


def test_bench_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    args = ["bench", "--shape", "single", "--shape", "4x8x16", "--dtypes", "float64", "--rounds", "3"]
    assert main([*args, "--min-time", "0.002", "--no-torch", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "xaffine/bound" in out
    report = json.loads(path.read_text())
    shapes = [r["shape"] for r in report["results"]]
    assert shapes == ["single", "4x8x16"]
    first = report["results"][0]
    assert first["dims"] == [1, 64, 64]
    assert first["ratios"]["xaffine/bound"] > 0
    assert first["peak_memory_ratio"] > 0
    assert report["machine"]["numpy"]


def test_bench_bad_shape(capsys):
    assert main(["bench", "--shape", "huge"]) == 2
    assert "a shape is one of" in capsys.readouterr().err


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "xaffine", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("check", "info", "demo", "bench"):
        assert command in done.stdout
