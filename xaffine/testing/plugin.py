"""The backend matrix as a pytest plugin: your tests of your own layers on every array library.

Turn it on in your ``conftest.py``::

    pytest_plugins = ["xaffine.testing.plugin"]

(or ``pytest -p xaffine.testing.plugin``). Installing xaffine turns on nothing by itself.
It gives (docs/own-layer.md):

- the ``backend`` fixture, parametrized over every row of xaffine's backend table (NumPy,
  NumPy with read-only arrays, array-api-strict and its second device, torch, JAX, Dask,
  ndonnx, pydata/sparse, MLX, and on a CUDA machine CuPy, torch:cuda, jax:gpu), as a
  :class:`BackendCase`: the namespace, the device, the floating dtypes it has, whether it is
  lazy, and how host data reaches it; and ``xp``, its namespace;
- selection with ``--backends`` (or the ``XAFFINE_BACKENDS`` environment variable), a comma
  list of names: unset (or ``auto``), every backend, those that cannot run here skipped
  with the reason; a list (or ``all``), those must run, and the run fails at start-up,
  saying why, if one cannot;
- ``@pytest.mark.skip_backend(*names, reason=...)`` and ``@pytest.mark.xfail_backend(*names,
  reason=...)`` (a library's known bug; an unexpected pass fails), by backend name or
  library, the reason required;
- :func:`check_layer`, both gradient checks on a layer in each dtype the backend has.

Functions tagged with array-api-extra's ``lazy_xp_function`` run under ``jax.jit`` on JAX
and with every compute forbidden on Dask, for the whole test (where array-api-extra is
installed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from .._backends import BACKENDS, FLOAT_DTYPES, Backend, BackendUnavailable, find_backend, to_numpy
from ._adjoint import check_adjoint
from ._vjp import check_vjp

__all__ = ["ENV", "BackendCase", "check_layer"]

ENV = "XAFFINE_BACKENDS"
"""The environment variable that selects backends (``--backends`` overrides it)."""

_LOADED = pytest.StashKey[dict[str, Any]]()
_KNOWN = {b.name for b in BACKENDS} | {b.library for b in BACKENDS}
_MARKERS = ("skip_backend", "xfail_backend")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=None,
        help=f"comma list of array backends that must run (overrides ${ENV}); 'all', or 'auto' "
        f"(the default: those that can run here). Names: {', '.join(b.name for b in BACKENDS)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "skip_backend(*names, reason): skip on these backends (a name such as 'torch:cuda', or a library "
        "for all its rows), saying why",
    )
    config.addinivalue_line(
        "markers",
        "xfail_backend(*names, reason): a known bug of these backends' libraries: expected to fail there "
        "(an unexpected pass fails the test), saying why",
    )
    raw = (config.getoption("--backends") or os.environ.get(ENV, "")).strip()
    explicit = raw not in ("", "auto")
    names = [b.name for b in BACKENDS] if raw in ("", "auto", "all") else [n.strip() for n in raw.split(",")]
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


def pytest_report_header(config: pytest.Config) -> str:
    usable = [n for n, v in config.stash[_LOADED].items() if not isinstance(v, Exception)]
    return f"array backends (xaffine.testing.plugin): {', '.join(usable) or 'none'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every backend marker names known backends, gives its reason, and marks a test that
    takes `backend` (or `xp`)."""
    for item in items:
        for marker in (m for name in _MARKERS for m in item.iter_markers(name)):
            if "backend" not in getattr(item, "fixturenames", ("backend",)):
                msg = f"{item.nodeid}: {marker.name} marks a test that takes no `backend` or `xp`: it would do nothing"
                raise pytest.UsageError(msg)
            unknown = set(marker.args) - _KNOWN
            reason = marker.kwargs.get("reason", "")
            if not marker.args or unknown or not isinstance(reason, str) or not reason.strip():
                msg = (
                    f"{item.nodeid}: {marker.name} needs backend names ({sorted(_KNOWN)}) and a reason; "
                    f"got {marker.args!r}, reason={reason!r}"
                )
                raise pytest.UsageError(msg)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        loaded: dict[str, Any] = metafunc.config.stash[_LOADED]
        names = list(loaded)
        metafunc.parametrize("backend", names, indirect=True, ids=names)


def _marked(request: pytest.FixtureRequest, row: Backend, name: str) -> str | None:
    for marker in request.node.iter_markers(name):
        if row.name in marker.args or row.library in marker.args:
            return str(marker.kwargs["reason"])
    return None


@dataclass(frozen=True)
class BackendCase:
    """A backend under test: its row of xaffine's backend table, namespace and device, and
    how host data reaches it."""

    row: Backend
    xp: Any
    device: Any

    @property
    def name(self) -> str:
        """The row's name: ``"numpy"``, ``"torch:cuda"``, ``"array_api_strict:device1"``..."""
        return self.row.name

    @property
    def library(self) -> str:
        """The library's top-level package: ``"torch"`` for every torch row."""
        return self.row.library

    @property
    def readonly(self) -> bool:
        """NumPy with read-only arrays: a function that writes into its inputs fails there."""
        return self.name == "numpy:readonly"

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The floating dtypes the backend has, of float16, bfloat16, float32, float64,
        complex64, complex128."""
        return tuple(d for d in FLOAT_DTYPES if self.has(d))

    @property
    def lazy(self) -> bool:
        """Whether its arrays are lazy (array-api-compat's ``is_lazy_array``: Dask, ndonnx,
        JAX): a value read forces work, or fails under a transform."""
        import array_api_compat

        return bool(array_api_compat.is_lazy_array(self.xp.asarray(0.0, device=self.device)))

    def has(self, dtype: str) -> bool:
        """Whether the backend has this dtype (array-api-strict has no float16)."""
        return hasattr(self.xp, dtype)

    def dtype(self, name: str) -> Any:
        """The backend's dtype of this name; the test is skipped, saying so, where it has none."""
        if not self.has(name):
            pytest.skip(f"{self.name} has no {name}")
        return getattr(self.xp, name)

    def cast(self, host: Any, dtype: str) -> Any:
        """Host data as `dtype` on this backend (a Python number stays a number), cast on the
        host where NumPy has the dtype: not every backend holds complex128 (MLX)."""
        if isinstance(host, (float, complex)):
            return host
        if hasattr(np, dtype):
            return self.asarray(np.asarray(host).astype(dtype))
        return self.xp.astype(self.asarray(host), self.dtype(dtype))

    def to_host(self, a: Any) -> np.ndarray[Any, Any]:
        """A NumPy copy of the backend's array `a` (computed, where the backend is lazy;
        bfloat16 as float32, which holds it exactly)."""
        return to_numpy(a)

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        """Host data (NumPy, or a Python number) on this backend and device."""
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
    """The backend under test, a :class:`BackendCase` (parametrized over the selected ones)."""
    name = request.param
    loaded = request.config.stash[_LOADED][name]
    if isinstance(loaded, BackendUnavailable):
        pytest.skip(f"{name}: {loaded.kind}: {loaded.reason}")
    row = find_backend(name)
    why = _marked(request, row, "skip_backend")
    if why is not None:
        pytest.skip(f"not on {name}: {why}")
    why = _marked(request, row, "xfail_backend")
    if why is not None:
        request.applymarker(pytest.mark.xfail(reason=f"on {name}: {why}", strict=True))
    _, xp, device, _ = loaded
    try:
        from array_api_extra.testing import patch_lazy_xp_functions
    except ImportError:  # nothing is tagged lazy_xp_function without array-api-extra
        yield BackendCase(row, xp, device)
        return
    with patch_lazy_xp_functions(request, xp=xp):
        yield BackendCase(row, xp, device)


@pytest.fixture
def xp(backend: BackendCase) -> Any:
    """The namespace under test."""
    return backend.xp


_REAL = ("float16", "bfloat16", "float32", "float64")


def check_layer(
    backend: BackendCase,
    f: Callable[..., Any],
    vjp: Callable[..., Sequence[Any]],
    make_args: Callable[[str], Sequence[Any]],
    *,
    jvp: Callable[..., Any] | None = None,
    dtypes: Sequence[str] | None = None,
    seed: int = 0,
    argnames: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Both gradient checks on a layer, in each floating dtype of `dtypes` (default: all of
    float16, bfloat16, float32, float64: a real layer's) that `backend` has.

    ``make_args(dtype)`` gives the arguments in that dtype on the backend (``backend.cast``
    makes them from host data). :func:`~xaffine.testing.check_adjoint` runs where `jvp` is
    given, then :func:`~xaffine.testing.check_vjp` where the backend has the wide dtype its
    differences need (float64, complex128); each with its default
    tolerances for the dtype (docs/testing.md). Returns the ``(dtype, check)`` pairs run;
    raises the checks' ``AssertionError``, its message beginning with the dtype.
    """
    ran: list[tuple[str, str]] = []
    for dtype in (d for d in (_REAL if dtypes is None else dtypes) if backend.has(d)):
        args = tuple(make_args(dtype))
        wide = "complex128" if dtype.startswith("complex") else "float64"
        if jvp is not None:  # first: the cheaper check, and the shorter message
            _run(dtype, "check_adjoint", check_adjoint, jvp, vjp, args, seed, argnames)
            ran.append((dtype, "check_adjoint"))
        if backend.has(wide):
            _run(dtype, "check_vjp", check_vjp, f, vjp, args, seed, argnames)
            ran.append((dtype, "check_vjp"))
    return ran


def _run(dtype: str, label: str, check: Callable[..., None], *args: Any) -> None:
    first, vjp, point, seed, argnames = args
    try:
        check(first, vjp, point, seed=seed, argnames=argnames)
    except AssertionError as exc:
        msg = f"{dtype}, {label}: {exc}"
        raise AssertionError(msg) from None
