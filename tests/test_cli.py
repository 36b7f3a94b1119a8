"""The command line's frame: the parser built from the command list, entry points, shared pieces."""

from __future__ import annotations

import ast
import os
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


# -- round two: output files, closed pipes, limits -----------------------------------


def _unwritable_json_paths(tmp_path):
    paths = []
    if os.path.isdir("/proc"):
        paths.append("/proc/x.json")  # even root cannot create files there
    read_only = tmp_path / "kept.json"
    read_only.write_text("{}")
    read_only.chmod(0o444)
    paths.append(str(read_only))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.json")
        paths.append(str(tmp_path / "fifo.json"))
    return paths


@pytest.mark.parametrize("command", ["check", "bench"])
def test_an_unwritable_json_path_is_refused_before_any_work(monkeypatch, capsys, tmp_path, command):
    import xaffine.cli.bench as bench_command
    import xaffine.cli.check as check_command

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(check_command, "check", no_work)
    monkeypatch.setattr(bench_command, "bench", no_work)
    for path in _unwritable_json_paths(tmp_path):
        assert main([command, "--json", path]) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"argument --json: cannot write {path!r}" in err
    assert (tmp_path / "kept.json").read_text() == "{}"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a chmod 555 folder")
def test_a_json_path_in_a_read_only_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    assert main(["check", "--json", str(folder / "x.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_json_file_that_fails_late_is_one_line_status_1(monkeypatch, capsys, tmp_path):
    import xaffine.cli.check as check_command

    path = tmp_path / "check.json"

    def fails(path, payload):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(check_command, "write_json", fails)
    status = main(["check", "--backends", "numpy", "--dtypes", "float64", "--json", str(path)])
    err = capsys.readouterr().err
    assert status == 1
    assert "xaffine check: error: [Errno 13] Permission denied" in err
    assert "Traceback" not in err


def _closed_pipe(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "xaffine", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    process.stdout.close()  # the reader is gone before anything is written
    _, err = process.communicate(timeout=300)
    return process.returncode, err.decode()


@pytest.mark.skipif(os.name != "posix", reason="SIGPIPE and its exit status are POSIX")
@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["check", "--backends", "numpy", "--dtypes", "float32", "--json", "-"],
        ["export", "layer.npz", "m.onnx"],
    ],
    ids=["info", "check-json", "export"],
)
def test_a_closed_pipe_ends_quietly(tmp_path, args):
    if args[0] == "export":
        pytest.importorskip("ndonnx", reason="export traces through ndonnx")
        xaffine.save(tmp_path / "layer.npz", xaffine.Affine(3, 2, xp="numpy", seed=0))
    status, err = _closed_pipe(args, tmp_path)
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert status == 141  # a shell's status for a process ended by SIGPIPE (128 + 13)


def test_bench_min_time_is_bounded(monkeypatch, capsys):
    import xaffine.cli.bench as bench_command

    def no_work(*args, **kwargs):
        raise AssertionError("timing started")

    monkeypatch.setattr(bench_command, "bench", no_work)
    for value in ("1e308", "3601", "inf"):
        assert main(["bench", "--min-time", value]) == 2
        err = capsys.readouterr().err
        assert "argument --min-time: must be" in err
        assert err.count("\n") == 1


def test_calibration_never_overflows():
    from xaffine.cli._timing import MAX_CALLS, _calibrate

    calls = []
    assert _calibrate(lambda: calls.append(1), lambda r: r, 1e308) == MAX_CALLS


def test_bench_shape_beyond_memory_is_refused_before_any_work(monkeypatch, capsys):
    import xaffine.cli.bench as bench_command

    def no_work(*args, **kwargs):
        raise AssertionError("timing started")

    monkeypatch.setattr(bench_command, "bench", no_work)
    assert main(["bench", "--shape", "100000000x100000x100000", "--no-torch"]) == 2
    err = capsys.readouterr().err
    assert "--shape 100000000x100000x100000 needs about" in err
    assert "GiB of memory; choose a smaller shape" in err
    assert err.count("\n") == 1


def test_out_of_memory_during_work_is_one_line(monkeypatch, capsys):
    import xaffine.cli.bench as bench_command

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.3 TiB")

    monkeypatch.setattr(bench_command, "bench", no_memory)
    assert main(["bench", "--shape", "single", "--no-torch", "--dtypes", "float32"]) == 1
    err = capsys.readouterr().err
    assert err == "xaffine bench: out of memory: Unable to allocate 7.3 TiB\n"


def test_demo_refuses_sparse(monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="the demo's data ships with scikit-learn")
    import xaffine.cli.demo as demo

    assert main(["demo", "--backend", "sparse"]) == 2
    err = capsys.readouterr().err
    assert "argument --backend: the demo trains dense arrays; pydata/sparse is for sparse inputs" in err
    with pytest.raises(ValueError, match="the demo trains dense arrays"):
        demo.train("sparse", epochs=1)
