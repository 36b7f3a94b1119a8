"""Backend discovery: which array libraries and devices are usable here.

The one module that imports backend libraries, each lazily, when asked. It also
holds the two host transfers the package needs (to NumPy and back), so that no
other module touches a library's private API.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ._typing import Array, Device, Namespace

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendChoice",
    "BackendUnavailable",
    "backend_name",
    "default_backend",
    "find_backend",
    "synchronizer",
    "to_numpy",
]

ENV_DEFAULT = "XAFFINE_BACKEND"
NOT_INSTALLED, IMPORT_ERROR, NO_GPU = "not installed", "import error", "no GPU"


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; ``reason`` says why, ``kind`` classifies it."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(NOT_INSTALLED, f"{module} is not installed ({exc})") from exc
    except Exception as exc:
        raise BackendUnavailable(IMPORT_ERROR, f"importing {module} failed: {exc!r}") from exc


def _numpy(variant: str, exact: bool) -> tuple[Namespace, Device]:
    return array_api_compat.array_namespace(np.empty(0)), "cpu"


def _strict(variant: str, exact: bool) -> tuple[Namespace, Device]:
    xp = _import("array_api_strict")
    return xp, xp.Device(variant) if variant else xp.__array_namespace_info__().default_device()


def _torch(variant: str, exact: bool) -> tuple[Namespace, Device]:
    torch = _import("torch")
    xp = array_api_compat.array_namespace(torch.empty(0))
    if not variant:
        return xp, torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendUnavailable(NO_GPU, "torch.cuda.is_available() is False (no CUDA GPU or a CPU build)")
    try:
        (torch.zeros(1, device="cuda") + 1).cpu()
    except Exception as exc:
        raise BackendUnavailable(NO_GPU, f"allocating on CUDA failed: {exc!r}") from exc
    if exact:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return xp, torch.device("cuda")


def _jax(variant: str, exact: bool) -> tuple[Namespace, Device]:
    jax = _import("jax")
    if exact:
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
    try:
        device = jax.devices(variant or "cpu")[0]
    except RuntimeError as exc:
        raise BackendUnavailable(NO_GPU, f"jax has no {variant or 'cpu'} device: {exc}") from exc
    return _import("jax.numpy"), device


def _dask(variant: str, exact: bool) -> tuple[Namespace, Device]:
    da = _import("dask.array")
    return array_api_compat.array_namespace(da.empty(0)), "cpu"


def _cupy(variant: str, exact: bool) -> tuple[Namespace, Device]:
    cupy = _import("cupy")
    try:
        # CuPy imports without a GPU and fails at the first allocation.
        (cupy.zeros(1) + 1).get()
    except Exception as exc:
        raise BackendUnavailable(NO_GPU, f"cupy cannot allocate on a GPU: {exc!r}") from exc
    return array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device()


@dataclass(frozen=True)
class Backend:
    """One array library on one kind of device, as ``module[:variant]``."""

    name: str
    gpu: bool
    install: str
    _loader: Callable[[str, bool], tuple[Namespace, Device]]
    testing_only: bool = False

    @property
    def module(self) -> str:
        """The library's import name."""
        return self.name.partition(":")[0]

    @property
    def variant(self) -> str:
        """The part after the colon: a device or a test variant, or ``""``."""
        return self.name.partition(":")[2]

    def load(self, *, exact: bool = False) -> tuple[Namespace, Device]:
        """Import the library and probe the device; return ``(xp, device)``.

        `exact` turns on float64 in JAX and turns off TF32 matrix products on GPUs,
        as the tests and ``xaffine check`` need (it changes those libraries' global
        settings).

        Raises
        ------
        BackendUnavailable
            When the library is missing, fails to import, or has no such device.
        """
        return self._loader(self.variant, exact)


_CUDA = "a CUDA build: see the library's install guide"
BACKENDS: tuple[Backend, ...] = (
    Backend("numpy", False, "pip install numpy", _numpy),
    Backend("numpy:readonly", False, "pip install numpy", _numpy, testing_only=True),
    Backend("array_api_strict", False, "pip install array-api-strict", _strict),
    Backend("array_api_strict:device1", False, "pip install array-api-strict", _strict, testing_only=True),
    Backend("torch", False, "pip install torch", _torch),
    Backend("torch:cuda", True, f"pip install torch ({_CUDA})", _torch),
    Backend("jax", False, "pip install jax", _jax),
    Backend("jax:gpu", True, "pip install 'jax[cuda12]'", _jax),
    Backend("dask", False, "pip install 'dask[array]'", _dask),
    Backend("cupy", True, "pip install 'xaffine[cuda12]' (or cuda13)", _cupy),
)
_BY_NAME = {b.name: b for b in BACKENDS}


def find_backend(name: str) -> Backend:
    """The backend called `name`.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    # Also accept the nox session spelling: "array-api-strict", "torch-cuda".
    key = name.strip().lower().replace("array-api-strict", "array_api_strict").replace("-", ":")
    try:
        return _BY_NAME[key]
    except KeyError:
        known = ", ".join(_BY_NAME)
        msg = f"unknown backend {name!r}; known backends: {known}"
        raise ValueError(msg) from None


class BackendChoice(NamedTuple):
    """The backend a layer uses when none is given, and why."""

    name: str
    xp: Namespace
    device: Device
    reason: str


def default_backend() -> BackendChoice:
    """The default backend: CuPy on a usable CUDA GPU, otherwise NumPy.

    The environment variable ``XAFFINE_BACKEND`` (a backend name such as ``numpy``,
    ``cupy``, ``torch``, ``torch:cuda``, ``jax``) overrides the rule.

    Raises
    ------
    ValueError
        If ``XAFFINE_BACKEND`` names an unknown backend or one that cannot run here.

    Examples
    --------
    >>> import xaffine
    >>> choice = xaffine.default_backend()
    >>> choice.name in ("numpy", "cupy") or "XAFFINE_BACKEND" in choice.reason
    True
    """
    requested = os.environ.get(ENV_DEFAULT, "").strip()
    if requested:
        backend = find_backend(requested)
        try:
            xp, device = backend.load()
        except BackendUnavailable as exc:
            msg = f"{ENV_DEFAULT}={requested} but that backend cannot run here: {exc.reason}"
            raise ValueError(msg) from exc
        return BackendChoice(backend.name, xp, device, f"set by {ENV_DEFAULT}={requested}")
    try:
        xp, device = _BY_NAME["cupy"].load()
    except BackendUnavailable as exc:
        xp, device = _BY_NAME["numpy"].load()
        return BackendChoice("numpy", xp, device, f"CPU fallback: no usable CuPy GPU ({exc.reason})")
    return BackendChoice("cupy", xp, device, "a CUDA GPU is usable through CuPy")


def synchronizer(name: str) -> Callable[[Any], Any]:
    """A function that waits for the device work behind a result (computes it on Dask)."""
    module = name.partition(":")[0]
    if name == "torch:cuda":
        import torch

        return lambda result: torch.cuda.synchronize()
    if module == "cupy":
        import cupy

        return lambda result: cupy.cuda.get_current_stream().synchronize()
    if module == "jax":
        import jax

        return lambda result: jax.block_until_ready(result)  # type: ignore[no-untyped-call]
    if module == "dask":
        from dask.base import compute

        return lambda result: compute(result)  # type: ignore[no-untyped-call]
    return lambda result: result


def backend_name(xp: Namespace) -> str:
    """A short name for a namespace: ``numpy``, ``torch``, ``jax``, ``dask``..."""
    name = str(xp.__name__).removeprefix("array_api_compat.")
    return {"jax.numpy": "jax", "dask.array": "dask"}.get(name, name)


def to_numpy(a: Array) -> np.ndarray[Any, Any]:
    """A NumPy copy (or view) of `a` on the host; computes Dask arrays."""
    if array_api_compat.is_dask_array(a):
        a = a.compute()  # type: ignore[no-untyped-call]
    if array_api_compat.is_cupy_array(a):
        return np.asarray(a.get())
    if array_api_compat.is_torch_array(a):
        return np.asarray(a.detach().cpu().resolve_conj().numpy())
    try:
        return np.asarray(a)
    except (RuntimeError, ValueError, TypeError):
        # array_api_strict refuses __array__ off its CPU device; DLPack still works.
        return np.from_dlpack(a)
