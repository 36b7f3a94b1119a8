"""``xaffine check``."""

from __future__ import annotations

import json

import pytest

import xaffine._core as core
import xaffine.cli.check as check_command
from xaffine._backends import BackendUnavailable, find_backend
from xaffine.cli import main


def _rows(text):
    return [line.split() for line in text.splitlines()]


def test_check_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "check.json"
    assert main(["check", "--backends", "numpy,array_api_strict", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
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
    rows = _rows(capsys.readouterr().out)
    dtypes = {r[2] for r in rows if r[:2] == ["numpy", "cpu"]}
    assert dtypes == {"float32", "float64", "complex64", "complex128", "float16"}


def test_complex_adds_to_the_dtypes_given(monkeypatch):
    seen = []
    monkeypatch.setattr(check_command, "check", lambda backends, dtypes, progress: (seen.extend(dtypes), ([], []))[1])
    assert main(["check", "--backends", "numpy", "--dtypes", "float64,complex64", "--complex"]) == 1
    assert seen == ["float64", "complex64", "complex128"]


def test_json_to_stdout_is_only_json(capsys):
    assert main(["check", "--backends", "numpy", "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["passed"] is True
    assert "all 2 checks passed on numpy" in captured.err


def test_check_fails_on_a_wrong_backward(monkeypatch, capsys):
    real = core._backward

    def wrong(*args, **kwargs):
        grads = real(*args, **kwargs)
        return grads._replace(weight=None if grads.weight is None else grads.weight * 1.01)

    monkeypatch.setattr(core, "_backward", wrong)
    assert main(["check", "--backends", "numpy", "--json", "-"]) == 1
    captured = capsys.readouterr()
    assert "FAILED: 2 of 2 checks" in captured.err
    assert "adjoint: FAILED" in captured.err
    assert json.loads(captured.out)["passed"] is False


def test_the_time_column_comes_from_the_shared_timing_loop(monkeypatch, capsys):
    seen = {}

    def fake(fn, wait, *, rounds, min_time):
        seen.update(rounds=rounds, min_time=min_time)
        return 0.000123

    monkeypatch.setattr(check_command, "median_seconds", fake)
    assert main(["check", "--backends", "numpy", "--dtypes", "float64"]) == 0
    assert _rows(capsys.readouterr().out)[2][-2:] == ["123", "us"]
    assert seen["rounds"] > 1


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


def test_a_dtype_a_backend_lacks_is_reported_with_the_reason(capsys):
    assert main(["check", "--backends", "array_api_strict", "--dtypes", "float16"]) == 1
    captured = capsys.readouterr()
    assert "array_api_strict float16 no such dtype: array_api_strict's Array API namespace has no float16" in (
        " ".join(captured.out.split())
    )
    assert captured.err == "nothing was checked (see 'not usable here' for why)\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backends", "numpy,nope"], "argument --backends: unknown backend 'nope'; known backends: numpy"),
        (["--backends", ""], "argument --backends: an empty list; give one or more backends"),
        (["--backends", "numpy,,torch"], "argument --backends: an empty name in 'numpy,,torch'"),
        (["--dtypes", "float8"], "argument --dtypes: unknown dtype 'float8'; the choices are float16, float32"),
        (["--dtypes", "int32"], "argument --dtypes: unknown dtype 'int32'"),
        (["--dtypes", ""], "argument --dtypes: an empty list; give one or more dtypes"),
        (["--json", "/nonexistent-folder/check.json"], "argument --json: the folder of"),
    ],
)
def test_options_are_checked_before_any_work(monkeypatch, capsys, args, expected):
    def no_work(*args, **kwargs):
        raise AssertionError("checking started")

    monkeypatch.setattr(check_command, "check", no_work)
    assert main(["check", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"xaffine check: error: {expected}")
