"""The per-call and 16-bit benchmark scripts run end to end on each library, on tiny settings.

Their figures are measurements for the README, never asserted here; what is asserted is
that every table row comes out, with numbers in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        # The caller's PYTHONPATH kept after the checkout: it may hold the libraries.
        env={
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
        },
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_overhead_runs_every_way_of_calling(library):
    pytest.importorskip(library, reason=f"the benchmark times {library}")
    out = _run("overhead.py", "--backend", library, "--shapes", "single", "--rounds", "1", "--calls", "5", "--parts")
    rows = [line for line in out.splitlines() if line.startswith("| single") and " us " not in line + " "]
    extra = [line for line in out.splitlines() if line.startswith("| single") and line.endswith(" us |")]
    # Hand-written and the three ways of calling; under jax.jit (JAX's first table) the
    # stateful layer object is left out.
    expected = [3, 4] if library == "jax" else [4]
    assert [len(re.findall(r"\d+\.\d+ \(\d+\.\d+\)", row)) for row in rows] == expected, out
    # and the differences in microseconds, one fewer per row (none for the hand-written code)
    assert [len(re.findall(r"[+-]\d+\.\d\d us", row)) for row in extra] == [n - 1 for n in expected], out


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_low_precision_reports_each_dtype_the_library_has(library):
    pytest.importorskip(library, reason=f"the benchmark times {library}")
    out = _run("low_precision.py", "--backends", library, "--shapes", "single", "--rounds", "1", "--min-time", "0.001")
    dtypes = re.findall(rf"^\| {library} \| single \| (\w+) \| [\d.]+ (?:us|ms) \| [\d.]+ \| [\d.e+-]+ \|$", out, re.M)
    assert dtypes == (["float16", "float32"] if library == "numpy" else ["float16", "bfloat16", "float32"]), out


def test_gpu_parts_times_every_operation():
    pytest.importorskip("torch", reason="the script times torch (on the CPU here)")
    out = _run("gpu_parts.py", "--backends", "torch", "--shapes", "8x4x4", "--rounds", "1")
    rows = [line.split(" | ")[3] for line in out.splitlines() if line.startswith("| torch:")]
    operations = ["x @ w.T", "out += b", "g @ w", "g.T @ x", "g.sum(0)", "ones @ g", "addmm(b, x, w.T)"]
    assert rows == operations * 2, out  # float32, then float64
    assert all(re.search(r"\| \d+\.\d \|$", line) for line in out.splitlines() if line.startswith("| torch:")), out


def test_check_power_tables_every_wrong_backward_and_counts_false_alarms():
    out = _run("check_power.py", "--backends", "numpy", "--shapes", "square", "--seeds", "1", "--markdown")
    assert "false alarms over 1 seeds (margin 1): 0" in out, out
    assert "cells against tests/mutants.py's claims: 0 disagree" in out, out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert len(rows) >= 20, out
    # each row has a cell per dtype of NumPy's, each cell three marks where the slip applies
    assert all(len(re.findall(r"[✓✗]", row)) >= 3 for row in rows), out


def test_fast_paths_times_every_fast_path_of_the_installed_libraries():
    out = _run("fast_paths.py", "--rounds", "1", "--min-time", "0.001", "--markdown", "--libraries", "numpy,torch")
    rows = re.findall(r"^\| (numpy|torch) \| (\w+): .* \| [\d.e+]+ \| [\d.e+]+ \| \d+\.\d\d \|$", out, re.M)
    expected = [("numpy", "matmul")] * 5 + [("numpy", "row_sum")] * 2
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        expected += [("torch", "matmul_add"), ("torch", "row_sum")]
    assert rows == expected, out


def test_compiled_reports_each_case():
    pytest.importorskip("torch", reason="the benchmark times torch.compile")
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("torch.compile's inductor backend needs a C compiler on the CPU")
    out = _run("compiled.py", "--shape", "2x4x3", "--dtype", "float32", "--rounds", "1", "--min-time", "0.001")
    row = r"^\| ([\w +]+) \| float32 \| 2x4x3 \| (\d+), (\d+) \| [\d.]+ \| [+-][\d.]+ us \| [\d.]+ \|$"
    found = re.findall(row, out, re.M)
    assert [f[0] for f in found] == ["affine + affine_backward", "affine_vjp + vjp", "affine_jvp", "layer step"], out
    for name, ours, theirs in found:  # the functions are operations of the graph: guarded as hand-written code
        assert 0 < int(ours) <= int(theirs) + 5 or name == "layer step", out
