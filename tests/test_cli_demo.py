"""``xaffine demo``."""

from __future__ import annotations

import pytest

from xaffine.cli import main


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
    from xaffine.cli.demo import train

    a, b = train("numpy", epochs=3), train("torch", epochs=3)
    assert a.accuracy == pytest.approx(b.accuracy, abs=2 / a.test_size)
    assert a.losses == pytest.approx(b.losses, rel=1e-4)


def test_demo_refuses_dask(capsys):
    assert main(["demo", "--backend", "dask"]) == 2
    assert "examples/dask_distributed.py" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--epochs", "0", "must be a positive integer; got '0'"),
        ("--epochs", "-3", "must be a positive integer; got '-3'"),
        ("--hidden", "0", "must be a positive integer; got '0'"),
        ("--batch-size", "0", "must be a positive integer; got '0'"),
        ("--lr", "0", "must be a positive number; got '0'"),
        ("--lr", "-0.1", "must be a positive number; got '-0.1'"),
        ("--lr", "nan", "must be a positive number; got 'nan'"),
        ("--seed", "-1", "must be a non-negative integer; got '-1'"),
        ("--backend", "nope", "unknown backend 'nope'"),
    ],
)
def test_demo_options_are_checked_before_training(monkeypatch, capsys, option, value, expected):
    import xaffine.cli.demo as demo

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(demo, "train", no_training)
    assert main(["demo", option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"argument {option}: {expected}" in err
