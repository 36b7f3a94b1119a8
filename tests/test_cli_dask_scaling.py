"""``benchmarks/dask_scaling.py``, the Dask scaling study, on a tiny batch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "dask_scaling.py"


@pytest.fixture(scope="module")
def study():
    pytest.importorskip("dask.array", reason="the study runs on Dask")
    spec = importlib.util.spec_from_file_location("dask_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_rows_grow_with_the_batch(study):
    rows = study.dask_scaling(rows=32, k=8, n=4, factors=(1, 2), rounds=2)
    assert [(r.factor, r.rows, r.chunks) for r in rows] == [(1, 32, 1), (2, 64, 2)]
    assert rows[0].growth == pytest.approx(1.0)
    assert all(r.numpy_seconds > 0 and r.dask_seconds > 0 for r in rows)
    lines = study.scaling_table(rows).splitlines()
    assert lines[0].split()[:3] == ["batch", "rows", "chunks"]
    assert lines[0].endswith("growth vs linear")
    assert lines[2].split()[:3] == ["1x", "32", "1"]


def test_options_are_checked(study, capsys):
    with pytest.raises(SystemExit) as exc:
        study.main(["--rounds", "0"])
    assert exc.value.code == 2
    assert "argument --rounds: must be a positive integer" in capsys.readouterr().err


def test_json(study, monkeypatch, tmp_path):
    real = study.dask_scaling
    monkeypatch.setattr(study, "dask_scaling", lambda **kw: real(rows=16, k=4, n=4, factors=(1,), **kw))
    path = tmp_path / "scaling.json"
    assert study.main(["--rounds", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["dask_scaling"][0]["rows"] == 16
    assert report["machine"]["numpy"]
