"""The per-backend fixture: every test that takes `xp` runs on each selected backend.

A test that cannot run on some backends says so with a marker, never an inline branch:
``@pytest.mark.skip_backend("dask", "ndonnx", reason="...")`` (names of backends, or of
libraries for all their rows; the reason is required); on a parametrized case,
``pytest.param(..., marks=pytest.mark.skip_backend(...))``.

Selection: ``--backends`` (overrides) or the ``XAFFINE_BACKENDS`` environment variable,
a comma list of names from ``xaffine._backends.BACKENDS``. Unset (or ``auto``): every
backend, those that cannot run here skipped with the reason. A list, or ``all``: those
backends must run, and the run fails at start-up if one cannot.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from array_api_extra.testing import patch_lazy_xp_functions
from hypothesis import settings

from xaffine._backends import BACKENDS, Backend, BackendUnavailable, find_backend

# Hypothesis: `ci` (chosen when CI is set) is reproducible and keeps no example database;
# `thorough` (HYPOTHESIS_PROFILE=thorough) draws many more examples. A test's own
# settings(max_examples=...) takes precedence over both.
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))

ENV = "XAFFINE_BACKENDS"
_LOADED = pytest.StashKey[dict[str, Any]]()
_EXPLICIT = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=None,
        help=f"comma list of backends that must run (overrides ${ENV}); 'all' or 'auto'",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "skip_backend(*names, reason): skip on these backends (a name such as 'torch:cuda', or a library "
        "for all its rows), saying why",
    )
    raw = config.getoption("--backends") or os.environ.get(ENV, "")
    raw = raw.strip()
    explicit = raw not in ("", "auto")
    names = [b.name for b in BACKENDS] if raw in ("", "auto", "all") else raw.split(",")
    loaded: dict[str, Any] = {}
    for name in names:
        try:
            backend = find_backend(name)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            loaded[backend.name] = backend.load(exact=True)
        except BackendUnavailable as exc:
            if explicit:
                msg = f"backend {backend.name!r} was requested ({raw!r}) but cannot run here: {exc.reason}"
                raise pytest.UsageError(msg) from None
            loaded[backend.name] = exc
    config.stash[_LOADED] = loaded
    config.stash[_EXPLICIT] = explicit


def pytest_report_header(config: pytest.Config) -> str:
    loaded = config.stash[_LOADED]
    usable = [n for n, v in loaded.items() if not isinstance(v, Exception)]
    return f"xaffine backends: {', '.join(usable)}"


_KNOWN = {b.name for b in BACKENDS} | {b.library for b in BACKENDS}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every skip_backend marker names known backends and gives its reason."""
    for item in items:
        for marker in item.iter_markers("skip_backend"):
            if "backend" not in getattr(item, "fixturenames", ("backend",)):
                msg = f"{item.nodeid}: skip_backend marks a test that takes no `backend`: it would skip nothing"
                raise pytest.UsageError(msg)
            unknown = set(marker.args) - _KNOWN
            reason = marker.kwargs.get("reason", "")
            if not marker.args or unknown or not isinstance(reason, str) or not reason.strip():
                msg = (
                    f"{item.nodeid}: skip_backend needs backend names ({sorted(_KNOWN)}) and a reason; "
                    f"got {marker.args!r}, reason={reason!r}"
                )
                raise pytest.UsageError(msg)


def _skipped_here(request: pytest.FixtureRequest, row: Backend) -> str | None:
    for marker in request.node.iter_markers("skip_backend"):
        if row.name in marker.args or row.library in marker.args:
            return str(marker.kwargs["reason"])
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = list(metafunc.config.stash[_LOADED])
        metafunc.parametrize("backend", names, indirect=True, ids=names)


@dataclass(frozen=True)
class BackendCase:
    """A backend under test: its row of the backend table, namespace and device, and how inputs reach it."""

    row: Backend
    xp: Any
    device: Any

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def readonly(self) -> bool:
        return self.name == "numpy:readonly"

    def has(self, dtype: str) -> bool:
        """Whether the backend has this dtype (array_api_strict has no float16)."""
        return hasattr(self.xp, dtype)

    def dtype(self, name: str) -> Any:
        if not self.has(name):
            pytest.skip(f"{self.name} has no {name}")
        return getattr(self.xp, name)

    def cast(self, host: Any, dtype: str) -> Any:
        """Host data as `dtype` on this backend (a Python number stays a number). Cast on the
        host where NumPy has the dtype: not every backend holds complex128 (MLX)."""
        if isinstance(host, (float, complex)):
            return host
        if hasattr(np, dtype):
            return self.asarray(np.asarray(host).astype(dtype))
        return self.xp.astype(self.asarray(host), getattr(self.xp, dtype))

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        """Move host data (NumPy, or a Python number) to this backend and device."""
        host = np.asarray(host)
        if dtype is not None:
            host = host.astype(dtype)
        if self.readonly:
            host = host.copy()
            host.flags.writeable = False
            return host
        return self.xp.asarray(host, device=self.device)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[BackendCase]:
    """The backend under test (parametrized over the selected backends).

    Functions tagged with ``lazy_xp_function`` run under ``jax.jit`` on JAX and with every
    compute forbidden on Dask, for the whole test.
    """
    name = request.param
    loaded = request.config.stash[_LOADED][name]
    if isinstance(loaded, Exception):
        pytest.skip(f"{name}: {loaded.kind}: {loaded.reason}")
    why = _skipped_here(request, find_backend(name))
    if why is not None:
        pytest.skip(f"not on {name}: {why}")
    _, xp, device, _ = loaded
    with patch_lazy_xp_functions(request, xp=xp):
        yield BackendCase(find_backend(name), xp, device)


@pytest.fixture
def xp(backend: BackendCase) -> Any:
    """The namespace under test."""
    return backend.xp
