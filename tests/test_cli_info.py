"""``xaffine info``."""

from __future__ import annotations

from xaffine.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"xaffine {__import__('xaffine').__version__}, array-api-compat ")
    assert "numpy" in out
    assert "usable" in out
    assert "default backend:" in out
