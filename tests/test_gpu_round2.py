"""The GPU round-two script rehearsed on the CPU, so that it cannot rot before a GPU runs it.

Without a GPU, benchmarks/gpu_round2.sh must record every step as skipped with the reason
its probe gave, and its report must say so and show no figure. The measurement steps of
benchmarks/gpu_round2.py run here with CPU stand-ins (NumPy for CuPy) on tiny sizes, and the
report marks their tables as stand-ins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_round2.py"
STEPS = [
    "tests cupy",
    "tests torch:cuda",
    "tests jax:gpu",
    "bias-grad",
    "bias-add",
    "graph",
    "low-precision.torch-cuda",
    "low-precision.jax-gpu",
    "nvmath",
    "bench",
    "compile",
]


def _env(**extra: str) -> dict[str, str]:
    # The caller's PYTHONPATH kept after the checkout: it may hold the libraries.
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _gpu_usable() -> bool:
    from xaffine._backends import BackendUnavailable, find_backend

    for name in ("cupy", "torch:cuda", "jax:gpu"):
        try:
            find_backend(name).load()
        except BackendUnavailable:
            continue
        return True
    return False


@pytest.mark.skipif(not all(map(shutil.which, ("bash", "timeout", "tar", "awk"))), reason="the script needs bash")
def test_without_a_gpu_every_step_is_skipped_with_its_reason(tmp_path):
    if _gpu_usable():
        pytest.skip("a GPU is usable here: the script would measure, not rehearse")
    out = tmp_path / "run"
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_round2.sh")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=_env(OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp_path)),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Few files in the folder (8 come back from the GPU machine); the logs are packed.
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar", "round2.md", "run.txt", "steps.tsv"]
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    outcomes = {name: (outcome, detail) for name, outcome, _, _, detail in steps}
    assert [name for name in outcomes if name != "machine"] == STEPS
    for name in STEPS:
        outcome, detail = outcomes[name]
        assert outcome == "skipped", (name, outcome, detail)
        assert detail.strip(), name

    report = (out / "round2.md").read_text()
    rows = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in report.splitlines() if row.startswith("| ")}
    for name in STEPS:
        assert rows[name][1] == "skipped", report
        assert rows[name][4].strip(" |"), report
    # No measurement: the report holds the run, the steps and nothing else.
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert headings[0].startswith("## Round two (issue 26): "), report
    assert headings[1:] == ["### Steps"], report


def _step(step: str, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), step, "--json", str(tmp_path / f"{step}.json"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=_env(),
        timeout=120,
    )


def test_stand_in_steps_make_their_tables_and_the_report_marks_them(tmp_path):
    tiny = ("--stand-in", "--scale", "256", "--rounds", "1")
    assert _step("bias-grad", tmp_path, *tiny).returncode == 0
    add = _step("bias-add", tmp_path, *tiny, "--bias-grad-json", str(tmp_path / "bias-grad.json"))
    assert add.returncode == 0, add.stdout + add.stderr
    grad = json.loads((tmp_path / "bias-grad.json").read_text())
    assert grad["stand_in"]
    assert [t["columns"][0] for t in grad["tables"]] == ["route", "g (rows x cols)"]
    # Both routes NumPy has are checked on the three columns; the others say why they are left out.
    accuracy = grad["tables"][0]["rows"]
    assert [row[0] for row in accuracy] == ["g.sum(0)", "ones @ g"]
    assert all(row[4] in ("yes", "no") for row in accuracy)
    assert sum("skipped, CuPy only" in note for note in grad["notes"]) == 4
    assert set(grad["picks"].values()) <= {"g.sum(0)", "ones @ g"}
    composed = json.loads((tmp_path / "bias-add.json").read_text())["tables"][-1]["rows"]
    assert len(composed) == 6  # two shapes: the bound, xaffine, the picked routes

    (tmp_path / "steps.tsv").write_text("bias-grad\tok\t1\t40\t\nbias-add\tok\t1\t45\t\n")
    report = subprocess.run(
        [sys.executable, str(SCRIPT), "report", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
    ).stdout
    assert "### bias-grad (CPU stand-in: no GPU figure)" in report
    assert "### bias-add (CPU stand-in: no GPU figure)" in report
    assert "| ones @ g |" in report


def test_a_step_without_its_library_exits_skipped_with_the_reason(tmp_path):
    result = _step("nvmath", tmp_path)
    if result.returncode == 0:
        pytest.skip("nvmath-python and a GPU are usable here")
    assert result.returncode == 3, result.stdout + result.stderr
    reason = result.stdout.strip().splitlines()[-1]
    assert reason.startswith("skipped: ")
    assert json.loads((tmp_path / "nvmath.json").read_text())["skipped"] == reason.removeprefix("skipped: ")
