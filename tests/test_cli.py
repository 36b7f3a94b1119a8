"""The command line's frame: the parser built from the command list, entry points, shared pieces."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import xaffine
from xaffine.cli import COMMANDS, main, parser
from xaffine.cli._shared import host_inputs, table
from xaffine.cli._timing import median_seconds, round_robin

PACKAGE = Path(xaffine.__file__).parent


def test_every_command_module_has_the_two_functions():
    for module in COMMANDS:
        assert callable(module.add_parser), module.__name__
        assert callable(module.run), module.__name__


def test_the_parser_has_one_subcommand_per_module():
    sub = next(a for a in parser()._actions if a.dest == "command")
    assert list(sub.choices) == [m.__name__.rpartition(".")[2] for m in COMMANDS]


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "xaffine", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("check", "info", "demo", "bench"):
        assert command in done.stdout


def test_help_returns_zero(capsys):
    assert main(["bench", "--help"]) == 0
    assert "--rounds" in capsys.readouterr().out


@pytest.mark.parametrize(
    "path", sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
)
def test_library_modules_never_import_the_cli(path):
    tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
            imported.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not [name for name in imported if "cli" in name.split(".")]


def test_importing_the_library_does_not_import_the_cli():
    code = "import sys, xaffine, xaffine.testing; print(any(m.startswith('xaffine.cli') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_usage_errors_are_one_line_with_status_2(capsys):
    assert main(["bench", "--rounds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("xaffine bench: error: argument --rounds: must be a positive integer; got '0'")


def test_unknown_command(capsys):
    assert main(["nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_table_aligns_columns():
    text = table([["a", "bb"], ["ccc", "d"]])
    assert text.splitlines() == ["a    bb", "---  --", "ccc  d"]
    assert table([["a", "bb"], ["ccc", "d"]], align="right").splitlines()[2] == "ccc   d"


def test_host_inputs_are_seeded_and_shaped():
    a, b = host_inputs((2, 3), 4, 5, "complex64", seed=1), host_inputs((2, 3), 4, 5, "complex64", seed=1)
    assert {k: v.shape for k, v in a.items()} == {"x": (2, 3, 4), "w": (5, 4), "b": (5,), "g": (2, 3, 5)}
    assert all(v.dtype == "complex64" and (v == b[k]).all() and v.imag.any() for k, v in a.items())


def test_round_robin_samples_every_variant_each_round():
    calls = {"a": 0, "b": 0}
    waited = []

    def variant(key):
        def fn():
            calls[key] += 1
            return key

        return fn, waited.append

    samples = round_robin({"a": variant("a"), "b": variant("b")}, rounds=4, min_time=1e-4)
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4}
    assert all(s > 0 for v in samples.values() for s in v)
    assert set(waited) == {"a", "b"}
    assert calls["a"] > 4
    assert calls["b"] > 4


def test_median_seconds_is_positive():
    assert median_seconds(lambda: None, lambda result: result, rounds=3, min_time=1e-4) > 0
