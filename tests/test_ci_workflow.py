"""The CI workflow runs exactly the noxfile's CPU test sessions, and .ci/run the README's command."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT, noxfile_tables

yaml = pytest.importorskip("yaml", reason="reading the workflow needs PyYAML (in the test extra)")

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict[str, object]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def test_matrix_lists_exactly_the_cpu_sessions():
    backends, gpu = noxfile_tables()
    expected = [f"tests({name})" for name in backends if name not in gpu]
    matrix = _workflow()["jobs"]["tests"]["strategy"]["matrix"]
    assert matrix["session"] == expected


def test_matrix_runs_the_oldest_supported_python():
    requires = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert requires is not None
    matrix = _workflow()["jobs"]["tests"]["strategy"]["matrix"]
    assert requires.group(1) in matrix["python"]


def test_gpu_job_is_off_unless_asked_for():
    job = _workflow()["jobs"]["gpu"]
    assert "workflow_dispatch" in job["if"]
    assert "self-hosted" in job["runs-on"]
    assert job["steps"][-1]["run"] == "python -m nox -t gpu"


def test_ci_script_runs_the_readme_test_command():
    # .ci/run picks the README line with this pattern; there must be exactly one.
    pattern = "^python3 -m venv .*/bin/nox$"
    assert f"grep -E '{pattern}' README.md" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(pattern, readme, flags=re.M)
    assert len(commands) == 1, commands
    assert commands[0].startswith("python3 -m venv .venv && ")
