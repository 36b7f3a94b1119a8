"""Outputs and gradients stay on the input's device, and nothing inside xaffine copies to the host.

While the functions and the layer run, every way a backend has of copying an array to the
host is made to raise :class:`HostTransfer`: xaffine's own ``to_numpy``; ``Tensor.cpu``,
``numpy``, ``item``, ``tolist`` and ``__array__`` on torch; the host copies of a JAX array
(``_value``, ``__array__``, ``item``, ``tolist``, ``jax.device_get``) and JAX's
device-to-host transfer guard (a CPU JAX array also lends its host buffer to ``np.asarray``
without any transfer; on a GPU that path goes through ``__array__``); ``cupy.asnumpy``
(CuPy itself refuses implicit conversion; its ``ndarray`` type cannot be patched);
``__array__`` and ``__dlpack__`` on array_api_strict; any Dask compute; densifying a
pydata/sparse array; unwrapping an ndonnx array's value; ``__array__``, ``__dlpack__``,
``tolist`` and ``item`` on MLX. NumPy arrays are on the host already: there only ``to_numpy``
is guarded. ``test_a_planted_copy_is_caught``
proves the guard fails when a copy happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xaffine._backends
import xaffine._core
import xaffine._io
import xaffine._layer
from tests.helpers import host_random, patch_row
from xaffine import Affine, affine, affine_backward, affine_jvp, affine_vjp
from xaffine._backends import device_of

pytestmark = pytest.mark.gpu_smoke


class HostTransfer(BaseException):  # not an Exception: no `except Exception` may swallow it
    """Raised by every guarded host copy."""


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise HostTransfer(f"host copy inside the guarded block: {what}")

    return refuse


def _guard_torch(m: pytest.MonkeyPatch, stack: contextlib.ExitStack, backend: Any) -> None:
    import torch

    for name in ("cpu", "numpy", "item", "tolist", "__array__"):
        m.setattr(torch.Tensor, name, _refuse(f"torch.Tensor.{name}"))


def _guard_jax(m: pytest.MonkeyPatch, stack: contextlib.ExitStack, backend: Any) -> None:
    import jax

    array_type = type(backend.xp.zeros(1))
    m.setattr(array_type, "_value", property(_refuse("jax.Array host value")))
    copies = ("_single_device_array_to_np_array_did_copy", "_copy_single_device_array_to_host_async")
    for name in ("__array__", "item", "tolist", *copies):
        m.setattr(array_type, name, _refuse(f"jax.Array.{name}"))
    stack.enter_context(jax.transfer_guard_device_to_host("disallow"))


def _guard_cupy(m: pytest.MonkeyPatch, stack: contextlib.ExitStack, backend: Any) -> None:
    import cupy

    m.setattr(cupy, "asnumpy", _refuse("cupy.asnumpy"))


def _guard_dask(m: pytest.MonkeyPatch, stack: contextlib.ExitStack, backend: Any) -> None:
    import dask

    stack.enter_context(dask.config.set(scheduler=_refuse("dask compute")))


def _guard_methods(*names: str) -> Any:
    """Refuse these methods of the backend's array type."""

    def guard(m: pytest.MonkeyPatch, stack: contextlib.ExitStack, backend: Any) -> None:
        array_type = type(backend.asarray(np.zeros(1)))
        for name in names:
            m.setattr(array_type, name, _refuse(f"{backend.row.library} {name}"))

    return guard


def _copy_jax(a: Any) -> Any:
    import jax

    return jax.device_get(a)


def _copy_cupy(a: Any) -> Any:
    import cupy

    return cupy.asnumpy(a)


# library -> (how its host copies are refused, a host copy as its users write one). NumPy is
# on the host already: only xaffine's to_numpy is refused there. pydata/sparse's densifying
# (xaffine must never densify a sparse input) and ndonnx's unwrapping of its eager values (an
# array traced into an ONNX graph has none) are copies worth refusing on the host too. MLX's
# memory is shared by its devices (no transfer exists); its copies out are refused all but
# NumPy's buffer-protocol read, which a C type's slot keeps out of reach.
_HOST_COPIES: dict[str, tuple[Any, Any]] = {
    "numpy": (None, lambda a: xaffine._backends.to_numpy(a)),
    "torch": (_guard_torch, lambda a: a.cpu()),
    "jax": (_guard_jax, _copy_jax),
    "cupy": (_guard_cupy, _copy_cupy),
    "dask": (_guard_dask, lambda a: a.compute()),
    "array_api_strict": (_guard_methods("__array__", "__dlpack__"), np.from_dlpack),
    "sparse": (_guard_methods("todense"), lambda a: a.todense()),
    "ndonnx": (_guard_methods("unwrap_numpy"), lambda a: a.unwrap_numpy()),
    "mlx": (_guard_methods("__array__", "__dlpack__", "tolist", "item"), lambda a: a.tolist()),
}


@contextlib.contextmanager
def no_host_copies(backend: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make each host transfer that `backend` offers raise `HostTransfer` inside the block."""
    with monkeypatch.context() as m, contextlib.ExitStack() as stack:
        for module in (xaffine._backends, xaffine._layer, xaffine._io):
            if hasattr(module, "to_numpy"):  # every module that imports it
                m.setattr(module, "to_numpy", _refuse("xaffine to_numpy"))
        guard = _HOST_COPIES[backend.row.library][0]
        if guard is not None:
            guard(m, stack, backend)
        yield


def _native_copy(backend: Any, a: Any) -> Any:
    """A host copy the way each library's users write one (looked up at call time)."""
    return _HOST_COPIES[backend.row.library][1](a)


def _assert_on(results: dict[str, Any], backend: Any) -> None:
    wanted = device_of(backend.asarray(np.zeros(1)))
    for name, value in results.items():
        assert value is not None, name
        assert device_of(value) == wanted, f"{name} is on {device_of(value)}; expected {wanted}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape", [(5,), (7, 5), (2, 3, 5), (0, 5)], ids=["1d", "2d", "3d", "empty"])
def test_functions_stay_on_the_device(backend, monkeypatch, x_shape, dtype):
    x, w, b = (backend.asarray(host_random(s, dtype, i)) for i, s in enumerate((x_shape, (4, 5), (4,))))
    g = backend.asarray(host_random((*x_shape[:-1], 4), dtype, 3))
    with no_host_copies(backend, monkeypatch):
        out = affine(x, w, b)
        grads = affine_backward(g, x, w, b)
        vjp_out, vjp = affine_vjp(x, w, b)
        vjp_grads = vjp(g)
        jvp_out, tangent_out = affine_jvp(x, w, b, (x, w, b))
    results = {"affine": out, "vjp out": vjp_out, "jvp out": jvp_out, "jvp tangent": tangent_out}
    results |= {f"affine_backward {k}": v for k, v in zip(("x", "weight", "bias"), grads, strict=True)}
    results |= {f"vjp {k}": v for k, v in zip(("x", "weight", "bias"), vjp_grads, strict=True)}
    _assert_on(results, backend)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_stays_on_the_device(backend, monkeypatch, dtype):
    layer = Affine(5, 4, xp=backend.xp, device=backend.device, dtype=dtype, seed=0)
    x = backend.asarray(host_random((2, 3, 5), dtype, 1))
    g = backend.asarray(host_random((2, 3, 4), dtype, 2))
    with no_host_copies(backend, monkeypatch):
        out = layer(x)
        dx = layer.backward(g)
        state = layer.state_dict()
    results = {"forward": out, "backward": dx, "weight": layer.weight, "bias": layer.bias}
    results |= {f"grads {k}": v for k, v in layer.grads.items()}
    results |= {f"state_dict {k}": v for k, v in state.items()}
    _assert_on(results, backend)


def test_every_library_of_the_table_has_its_host_copies_listed():
    from xaffine._backends import BACKENDS

    assert {row.library for row in BACKENDS} == set(_HOST_COPIES)


@pytest.mark.parametrize(
    "where",
    [
        "to_numpy",
        pytest.param(
            "native",
            marks=pytest.mark.skip_backend("numpy", reason="NumPy arrays are on the host: a conversion copies nothing"),
        ),
    ],
)
def test_a_planted_copy_is_caught(backend, monkeypatch, where):
    """The guard is real: a host copy planted in the row's matrix product fails the block."""
    x, w = backend.asarray(host_random((3, 5), "float64", 0)), backend.asarray(host_random((4, 5), "float64", 1))

    def copying(a, b):
        if where == "to_numpy":
            xaffine._backends.to_numpy(b)
        else:
            _native_copy(backend, b)
        return real.matmul(a, b)

    real = patch_row(monkeypatch, x, matmul=copying)
    g = backend.asarray(host_random((3, 4), "float64", 2))
    # Called eagerly (not the module's name, which the fixture runs under jax.jit): a traced
    # array cannot be copied at all, so only an eager call can show the guard at work.
    eager = xaffine._core.affine_backward
    with no_host_copies(backend, monkeypatch), pytest.raises(HostTransfer, match="host copy inside"):
        eager(g, x, w)
    # Outside the block the same planted copy runs.
    eager(g, x, w)
