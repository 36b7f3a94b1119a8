"""Backend discovery, the default backend and its CPU fallback."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xaffine
from tests.helpers import ROOT, noxfile_tables
from xaffine import Affine
from xaffine._backends import BACKENDS, Backend, device_name, find_backend, to_numpy


def test_default_is_cupy_on_a_gpu_else_numpy(monkeypatch):
    monkeypatch.delenv("XAFFINE_BACKEND", raising=False)
    choice = xaffine.default_backend()
    try:
        find_backend("cupy").load()
    except xaffine._backends.BackendUnavailable:
        assert choice.name == "numpy"
        assert choice.reason.startswith("CPU fallback: no usable CuPy GPU")
    else:
        assert choice.name == "cupy"


def test_environment_overrides_the_default(monkeypatch):
    monkeypatch.setenv("XAFFINE_BACKEND", "array_api_strict")
    pytest.importorskip("array_api_strict", reason="needs array_api_strict to switch to")
    choice = xaffine.default_backend()
    assert choice.name == "array_api_strict"
    assert "XAFFINE_BACKEND=array_api_strict" in choice.reason
    assert xaffine.Affine(2, 3, seed=0).xp is choice.xp


def test_environment_naming_an_unusable_backend_is_an_error(monkeypatch):
    monkeypatch.setenv("XAFFINE_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"unknown backend 'nope'"):
        xaffine.default_backend()


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("torch-cuda", "torch:cuda"),
        ("array-api-strict", "array_api_strict"),
        ("JAX-GPU", "jax:gpu"),
        ("numpy-readonly", "numpy:readonly"),
        ("array-api-strict-device1", "array_api_strict:device1"),
        ("MLX", "mlx"),
    ],
)
def test_session_spellings(alias, name):
    assert find_backend(alias).name == name


def test_every_backend_has_an_install_hint():
    assert all(b.install.startswith("pip install") for b in BACKENDS)


@pytest.mark.gpu_smoke
def test_to_numpy_round_trip(backend):
    host = np.arange(6.0).reshape(2, 3)
    a = backend.asarray(host)
    np.testing.assert_array_equal(to_numpy(a), host)
    back = backend.xp.asarray(to_numpy(a), device=backend.device)
    np.testing.assert_array_equal(to_numpy(back), host)


def test_noxfile_agrees_with_the_backend_table():
    """Each row's nox session exists and runs exactly the rows that name it; GPU sessions run GPU rows."""
    sessions, gpu = noxfile_tables()
    rows_of: dict[str, list[str]] = {}
    for row in BACKENDS:
        rows_of.setdefault(row.nox_session, []).append(row.name)
    assert set(sessions) == set(rows_of)
    for session, (_, selection) in sessions.items():
        assert selection.split(",") == rows_of[session], session
    assert set(gpu) == {row.nox_session for row in BACKENDS if row.gpu}


def test_device_names_are_readable():
    """A device object without a name of its own (ndonnx's) shows as its library's default, not an address;
    CuPy's (``<CUDA Device 1>``) as torch and JAX write a GPU."""

    class Nameless:
        pass

    class Named:
        def __str__(self) -> str:
            return "gpu:1"

    assert device_name(Nameless()) == "tests default"
    assert device_name(Named()) == "gpu:1"
    assert device_name("cpu") == "cpu"

    class CupyStyle:
        def __str__(self) -> str:
            return "<CUDA Device 1>"

    assert device_name(CupyStyle()) == "cuda:1"
    ndonnx = pytest.importorskip("ndonnx", reason="ndonnx's device has no name of its own")
    assert device_name(ndonnx.__array_namespace_info__().default_device()) == "ndonnx default"
    assert "device=ndonnx default," in repr(Affine(3, 2, xp="ndonnx"))


def _table_names(path, header: str) -> list[str]:
    """The backend names (first column, in backticks) of the Markdown table under `header`."""
    text = (ROOT / path).read_text(encoding="utf-8")
    table = text[text.index(header) :].split("\n\n", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)


def test_readme_and_docs_list_every_backend_of_the_table():
    """docs/backends.md lists every row in its test matrix and every row users choose in its
    install table; the README's first paragraph names every library."""
    tested = _table_names("docs/backends.md", "| backend | device | how it is tested |")
    assert sorted(tested) == sorted(b.name for b in BACKENDS)
    users = [b.name for b in BACKENDS if not b.testing_only]
    assert sorted(_table_names("docs/backends.md", "| backend | device | installed by |")) == sorted(users)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pitch = " ".join(readme.split("\n\n")[1].split())
    missing = [b.title for b in BACKENDS if b.title not in pitch]
    assert not missing, f"the README's first paragraph does not name {missing}"


def test_rows_are_written_with_named_fields():
    """A row passes nothing by position: each field says what it is."""
    with pytest.raises(TypeError):
        Backend("x", "x", ("x",), "pip install x", "x", "X")  # type: ignore[misc]
