"""The backend table: everything xaffine knows about each array library, one row each.

A row (a `Backend`, every field named) says how the library is imported, its Array API
namespace and default device, how to wait for its device work and copy an array to the
host, whether it takes NumPy operands beside its own arrays, which pip distributions
provide it and which nox session installs it, and the library's own faster calls for
the core's operations. Each library's section below holds its adapters and then its row;
`BACKENDS` lists the rows. Adding a backend is a section here and its nox session, which
``tests/test_backends.py`` holds to this table (CONTRIBUTING.md, "Adding a backend").

This is the one module that imports backend libraries, each lazily, when asked.
"""

from __future__ import annotations

import contextlib
import importlib
import operator
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from . import _compile
from ._typing import Array, Device, Namespace

__all__ = [
    "BACKENDS",
    "FLOAT_DTYPES",
    "HOST_DTYPES",
    "Backend",
    "BackendChoice",
    "BackendUnavailable",
    "backend_of",
    "bfloat16_from_bits",
    "default_backend",
    "device_name",
    "device_of",
    "dtype_name",
    "find_backend",
    "generic_row",
    "library_of",
    "library_row",
    "namespace",
    "on_xaffine",
    "resolve",
    "skip_guards_on_xaffine",
    "to_numpy",
    "transfer",
]

ENV_DEFAULT = "XAFFINE_BACKEND"
NOT_INSTALLED, IMPORT_ERROR, NO_GPU = "not installed", "import error", "no GPU"


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; ``reason`` says why, ``kind`` classifies it."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BackendChoice(NamedTuple):
    """A loaded backend: its name, Array API namespace and device, and why it was chosen."""

    name: str
    xp: Namespace
    device: Device
    reason: str


def _import(module: str) -> Any:
    found = sys.modules.get(module)  # torch.compile's tracer cannot run importlib, but reads this
    if found is not None:
        return found
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(NOT_INSTALLED, f"{module} is not installed ({exc})") from exc
    except Exception as exc:
        raise BackendUnavailable(IMPORT_ERROR, f"importing {module} failed: {exc!r}") from exc


# -- what a row says, and what it says where a library needs nothing of its own ---------


def _cpu(module: Any, variant: str, exact: bool) -> Device:
    return "cpu"


def _as_is(module: Any) -> Namespace:
    return module


def _no_wait(result: Any) -> Any:
    return result


def _numpy_host(a: Any) -> np.ndarray[Any, Any]:
    try:
        host = np.asarray(a)
    except (RuntimeError, ValueError, TypeError):
        # array_api_strict refuses __array__ off its CPU device; DLPack still works.
        return np.from_dlpack(a)
    if host.dtype == object and not isinstance(a, np.ndarray):  # a type NumPy does not know: its data
        return np.from_dlpack(a)
    return host


def _standard_device(a: Any) -> Device:
    # array-api-compat's device() covers the libraries whose arrays lack the attribute.
    return array_api_compat.device(a)


def _always(out: Any, term: Any) -> bool:
    return True


def _never(out: Any, term: Any) -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One array library on one kind of device: one row of the table.

    A variant row (``"torch:cuda"``) is its library's row with what differs, made with
    `dataclasses.replace`.
    """

    name: str
    """``library[:variant]``, e.g. ``"torch:cuda"``; the variant is a device or a test variant."""
    module: str
    """The array module a user passes as ``xp`` (``"jax.numpy"``, ``"dask.array"``, ...); its
    top-level package is the library (`library`)."""
    distributions: tuple[str, ...]
    """The pip distributions that may provide the library, for version reports."""
    install: str
    """How to install it."""
    nox_session: str
    """The ``tests(...)`` session of ``noxfile.py`` that installs it and runs the suite."""
    title: str
    """The library's name in messages (``"PyTorch"``)."""
    packages: tuple[str, ...] = ()
    """Other top-level packages whose array types are the library's (``jaxlib`` for JAX)."""
    array_api: Callable[[Any], Namespace] = _as_is
    """The library's Array API namespace, given its imported `module`: the module itself, an
    array-api-compat wrapper, or an adapter where the library falls short of the standard."""
    open_device: Callable[[Any, str, bool], Device] = _cpu
    """Probes the device: ``open_device(module, variant, exact)`` returns the row's default
    device or raises `BackendUnavailable`; `exact` also sets what exact tests need."""
    device_of: Callable[[Any], Device] = _standard_device
    """The device an array of the library is on."""
    single_device: bool | None = None
    """Whether the library has one device, so that arrays never need their devices
    compared; None: ask its inspection API (``__array_namespace_info__().devices()``)."""
    wait: Callable[[Any], Any] = _no_wait
    """Waits for a result's device work (or computes a lazy one), for timings."""
    host: Callable[[Array], np.ndarray[Any, Any]] = _numpy_host
    """A NumPy copy (or view) of one of the library's arrays."""
    gpu: bool = False
    testing_only: bool = False
    """A row that exists for the tests (a read-only or second-device variant)."""
    compiler: str = ""
    """The compiler people run the library's code under (``"torch.compile"``, ``"jax.jit"``),
    which traces through xaffine's checks; ``""``: none."""
    traced: Callable[[Any], bool] | None = None
    """Whether an array is a tracer of the library's function transforms (JAX's jit, grad,
    vmap), which must not outlive the transform: a layer, which keeps arrays across calls,
    refuses them. None: the library has none (torch.compile's are handled by the layer)."""
    float64_hint: str = ""
    """What to do when the library made 32-bit arrays where 64-bit ones were asked for."""
    takes_numpy: bool = False
    """Whether the library takes NumPy operands beside its own arrays (Dask, JAX, pydata/sparse do)."""
    adopts_numpy: bool = True
    """With `takes_numpy`: whether NumPy operands become the library's arrays, on its array's
    device, before any work (so every result is the library's); False keeps them NumPy
    operands (pydata/sparse: a sparse array times a dense one is a dense NumPy array)."""
    matmul: Callable[[Any, Any], Any] = operator.matmul
    """The product of two matrices, ``a @ b``."""
    matmul_add: Callable[[Any, Any, Any], Any] | None = None
    """``a @ b + c`` in one call, for an array `c` that broadcasts; None: the product, then the sum."""
    outer: Callable[[Any, Any], Any] | None = None
    """The gradients' product of a column and a row (a contraction of length one: a one-sample
    batch's weight gradient), where `matmul` will not do; None: `matmul`."""
    row_sum: Callable[[Any, Any], Any] | None = None
    """``sum(a, axis=0, dtype=dtype)`` of a matrix, or of a vector (an array, 0-d or of one
    element); None: the namespace's ``sum``."""
    in_place: Callable[[Any, Any], bool] | None = None
    """Whether ``out += term`` may write into `out`, an array just computed; None: ask
    array-api-compat whether `out` is writeable."""
    add: Callable[[Any, Any], Any] | None = None
    """``out + term`` for a freshly computed `out` and a term of the layer (a bias, a number,
    another product); None: in place where `out` may be written, else the operator."""
    check: Callable[[Any, str], None] | None = None
    """A check of each of the library's arrays beyond its type, dtype and shape, made on every
    call (metadata only); raises naming the argument."""
    no_float16: str = ""
    """Why the library cannot compute in float16, where it cannot: its float16 arrays are refused."""
    bfloat16_from_bits: Callable[[np.ndarray[Any, Any], Device], Array] | None = None
    """The library's bfloat16 array on a device whose bits are those of a host uint16 array
    (native byte order), for a bfloat16 file; None: no way to reinterpret bits, and the
    values go through float32 (every value kept, not every NaN's bits)."""

    @property
    def library(self) -> str:
        """The top-level package of the library's arrays (``"jax"``, ``"dask"``, ...): two
        arrays are "of the same library" when this matches."""
        return self.module.partition(".")[0]

    @property
    def variant(self) -> str:
        """The part after the colon: a device or a test variant, or ``""``."""
        return self.name.partition(":")[2]

    def load(self, *, exact: bool = False, reason: str = "") -> BackendChoice:
        """Import the library and probe the device.

        `exact` turns on float64 in JAX and turns off TF32 matrix products on GPUs,
        as the tests and ``xaffine check`` need (it changes those libraries' global
        settings).

        Raises
        ------
        BackendUnavailable
            When the library is missing, fails to import, or has no such device.
        """
        module = _import(self.module)
        device = self.open_device(module, self.variant, exact)
        return BackendChoice(self.name, namespace(self.module), device, reason or f"asked for {self.name}")


class _Adapter(ModuleType):
    """A library's namespace with the calls it lacks, standing for the library's own namespace."""

    def __init__(self, raw: Any) -> None:
        super().__init__(raw.__name__, raw.__doc__)
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    # Equal to the library's namespace: array_namespace(x) == xp holds.
    def __eq__(self, other: object) -> bool:
        return other is self or other is self._raw

    def __hash__(self) -> int:
        return hash(self._raw)


# -- NumPy ------------------------------------------------------------------------------
# What each fast path saves is measured by benchmarks/fast_paths.py (docs/benchmarks.md,
# "Why each fast path exists"), not written here.


def _numpy_array_api(module: Any) -> Namespace:
    # Import statements, not importlib: torch.compile's tracer runs these on a first call.
    import array_api_compat.numpy

    return array_api_compat.numpy


def _numpy_matmul(a: Any, b: Any) -> Any:
    if a.dtype.char == "e":  # float16 (by its code: an unpickled array has a dtype of its own)
        # NumPy has no BLAS product for float16, only a loop that accumulates in float32,
        # many times slower. The float32 BLAS product also accumulates in float32 and is
        # rounded to float16 once.
        return _numpy_matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    # np.dot skips matmul's ufunc dispatch, which dominates small products; from about 2**22
    # multiply-adds on it was measured slightly slower than `@`, which takes over there. A
    # contraction of length one (a one-row batch's weight gradient) is an outer product, for
    # which `@` takes a slow loop: broadcasting does it.
    if a.shape[0] * a.shape[1] * b.shape[1] < 1 << 22:
        return np.dot(a, b)
    return a * b if a.shape[1] == 1 else a @ b


# NumPy sums a C-ordered matrix over axis 0 row by row, a running sum per column: slow, and in
# float32 it stalls (2**25 rows of ones sum to 2**24). The product of a row of ones with the
# matrix reads it through BLAS's matrix-vector kernel, with several partial sums: faster,
# and no less accurate (2**25 ones sum to 2**25). A single column, or another layout, is
# summed pairwise by NumPy and kept so. Real dtypes only: a complex infinity times (1+0j) has
# a NaN part (0 * inf). 16-bit sums keep the reduction, which accumulates in `dtype` (float32).
_NUMPY_ONES: dict[tuple[int, np.dtype[Any]], np.ndarray[Any, Any]] = {}


def _numpy_ones(rows: int, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """A read-only vector of ones; kept (at most 32, of up to 4096 rows) for the small row
    counts where making it would cost about as much as the product."""
    ones = _NUMPY_ONES.get((rows, dtype))
    if ones is None:
        ones = np.ones(rows, dtype)
        ones.flags.writeable = False
        if rows <= 4096:
            if len(_NUMPY_ONES) >= 32:
                _NUMPY_ONES.clear()
            _NUMPY_ONES[rows, dtype] = ones
    return ones


def _numpy_row_sum(a: Any, dtype: Any) -> Any:
    # A vector (one output) is kept 1-D: NumPy's sum of a vector is a scalar, not an array.
    # float32 and float64 by dtype code (an unpickled array's dtype is an object of its own).
    if a.ndim == 1 or dtype is not None or a.dtype.char not in "fd" or a.shape[1] == 1 or not a.flags.c_contiguous:
        return np.add.reduce(a, axis=0, dtype=dtype, keepdims=a.ndim == 1)
    return np.dot(_numpy_ones(a.shape[0], a.dtype), a)


_NUMPY = Backend(
    name="numpy",
    module="numpy",
    distributions=("numpy",),
    install="pip install numpy",
    nox_session="numpy",
    title="NumPy",
    array_api=_numpy_array_api,
    takes_numpy=True,
    matmul=_numpy_matmul,
    row_sum=_numpy_row_sum,
    in_place=_always,
)


# -- array-api-strict ---------------------------------------------------------------------


def _strict_device(module: Any, variant: str, exact: bool) -> Device:
    return module.Device(variant) if variant else module.__array_namespace_info__().default_device()


_STRICT = Backend(
    name="array_api_strict",
    module="array_api_strict",
    distributions=("array-api-strict",),
    install="pip install array-api-strict",
    nox_session="array_api_strict",
    title="array-api-strict",
    open_device=_strict_device,
)


# -- PyTorch --------------------------------------------------------------------------------


def _torch_array_api(module: Any) -> Namespace:
    import array_api_compat.torch

    return array_api_compat.torch


def _torch_device(module: Any, variant: str, exact: bool) -> Device:
    if not variant:
        return module.device("cpu")
    if not module.cuda.is_available():
        raise BackendUnavailable(NO_GPU, "torch.cuda.is_available() is False (no CUDA GPU or a CPU build)")
    try:
        (module.zeros(1, device="cuda") + 1).cpu()
    except Exception as exc:
        raise BackendUnavailable(NO_GPU, f"allocating on CUDA failed: {exc!r}") from exc
    if exact:
        module.backends.cuda.matmul.allow_tf32 = False
        module.backends.cudnn.allow_tf32 = False
    return module.device("cuda")


def _torch_cuda_wait(result: Any) -> Any:
    import torch

    torch.cuda.synchronize()
    return result


def _torch_host(a: Any) -> np.ndarray[Any, Any]:
    return np.asarray(a.detach().cpu().resolve_conj().numpy())


# A conversion from float32 does not keep every bit: torch makes every NaN 0xFFFF.
def _torch_bfloat16_from_bits(bits: np.ndarray[Any, Any], device: Device) -> Any:
    import torch

    return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).to(device)


def _torch_row_sum(a: Any, dtype: Any) -> Any:
    # Passing dtype=None costs torch's argument parser more than leaving it out.
    # (The product with a row of ones, faster at large sizes on the CPU, adds naively through
    # MKL: a float32 sum of 2**25 ones stalls at 2**24, where sum(0) gives 2**25.)
    return a.sum(0) if dtype is None else a.sum(0, dtype=dtype)


def _torch_matmul_add(a: Any, b: Any, c: Any) -> Any:
    # One kernel, not a product and then an add: each torch call has a fixed cost. But not
    # for float64 on CUDA, where addmm measured slower than the product and the add
    # together (on an H100: benchmarks/gpu_parts.py, docs/gpu.md). The method, not
    # torch.addmm: on the CPU nothing else is read (nothing to guard under torch.compile).
    if c.ndim == 0 and _compile.compiling():
        # The one-output form under torch.compile: a product with a vector, as hand-written
        # code has it; inductor's max-autotune cannot lower one column plus a 0-d term.
        return (a @ b[:, 0] + c)[:, None]
    if a.is_cuda and str(a.dtype) == "torch.float64":
        out = a @ b
        return out.add_(c) if _torch_in_place(out, c) else out + c
    return c.addmm(a, b)


def _torch_in_place(out: Any, term: Any) -> bool:
    # Not a term that torch.func wraps (batched by vmap, or tracked by grad) into an
    # unwrapped `out`: vmap cannot write a batch of results into one unbatched array.
    # Not under torch.compile, which cannot ask that of a term, and functionalises the
    # graph: there an in-place add and an add compile alike.
    import torch

    if torch.compiler.is_dynamo_compiling():
        return False
    return not (isinstance(term, torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(term))


_TORCH = Backend(
    name="torch",
    module="torch",
    distributions=("torch",),
    install="pip install torch",
    nox_session="torch",
    title="PyTorch",
    array_api=_torch_array_api,
    open_device=_torch_device,
    single_device=False,  # always several (cpu, meta, ...), and listing them allocates on each
    host=_torch_host,
    compiler="torch.compile",
    bfloat16_from_bits=_torch_bfloat16_from_bits,
    matmul_add=_torch_matmul_add,
    row_sum=_torch_row_sum,
    in_place=_torch_in_place,
)


# -- JAX ------------------------------------------------------------------------------------


def _jax_device(module: Any, variant: str, exact: bool) -> Device:
    jax = _import("jax")
    if exact:
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
    try:
        return jax.devices(variant or "cpu")[0]
    except RuntimeError as exc:
        raise BackendUnavailable(NO_GPU, f"jax has no {variant or 'cpu'} device: {exc}") from exc


def _jax_wait(result: Any) -> Any:
    import jax

    return jax.block_until_ready(result)  # type: ignore[no-untyped-call]


# A conversion from float32 does not keep every bit: JAX drops NaN payloads and quiets
# signalling NaNs.
def _jax_bfloat16_from_bits(bits: np.ndarray[Any, Any], device: Device) -> Any:
    import jax

    return jax.lax.bitcast_convert_type(jax.device_put(bits, device), jax.numpy.bfloat16)


def _jax_traced(a: Any) -> bool:
    import jax

    return isinstance(a, jax.core.Tracer)


_JAX = Backend(
    name="jax",
    module="jax.numpy",
    distributions=("jax", "jaxlib"),
    install="pip install jax",
    nox_session="jax",
    title="JAX",
    packages=("jaxlib",),
    open_device=_jax_device,
    wait=_jax_wait,
    compiler="jax.jit",
    traced=_jax_traced,
    float64_hint=(
        "JAX keeps 64-bit types only with x64 enabled "
        "(jax.config.update('jax_enable_x64', True), or JAX_ENABLE_X64=1 before importing jax)"
    ),
    takes_numpy=True,
    in_place=_never,
    bfloat16_from_bits=_jax_bfloat16_from_bits,
)


# -- Dask -----------------------------------------------------------------------------------


def _dask_array_api(module: Any) -> Namespace:
    import array_api_compat.dask.array

    return array_api_compat.dask.array


def _dask_wait(result: Any) -> Any:
    from dask.base import compute

    return compute(result)  # type: ignore[no-untyped-call]


def _dask_host(a: Any) -> np.ndarray[Any, Any]:
    return np.asarray(a.compute())


_DASK = Backend(
    name="dask",
    module="dask.array",
    distributions=("dask", "distributed"),
    install="pip install 'dask[array]'",
    nox_session="dask",
    title="Dask",
    array_api=_dask_array_api,
    wait=_dask_wait,
    host=_dask_host,
    takes_numpy=True,
)


# -- CuPy -----------------------------------------------------------------------------------


def _cupy_array_api(module: Any) -> Namespace:
    return array_api_compat.array_namespace(module.empty(0))


def _cupy_device(module: Any, variant: str, exact: bool) -> Device:
    try:
        # CuPy imports without a GPU and fails at the first allocation.
        (module.zeros(1) + 1).get()
    except Exception as exc:
        raise BackendUnavailable(NO_GPU, f"cupy cannot allocate on a GPU: {exc!r}") from exc
    return module.cuda.Device()


def _cupy_wait(result: Any) -> Any:
    import cupy

    cupy.cuda.get_current_stream().synchronize()
    return result


def _cupy_host(a: Any) -> np.ndarray[Any, Any]:
    return np.asarray(a.get())


_CUPY = Backend(
    name="cupy",
    module="cupy",
    distributions=("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"),
    install="pip install 'xaffine[cuda12]' (or cuda13)",
    nox_session="cupy",
    title="CuPy",
    array_api=_cupy_array_api,
    open_device=_cupy_device,
    wait=_cupy_wait,
    host=_cupy_host,
    gpu=True,
)


# -- ndonnx (ONNX) --------------------------------------------------------------------------


def _info_device(module: Any, variant: str, exact: bool) -> Device:
    # ndonnx arrays carry a device object of their own: the one its namespace reports.
    return module.__array_namespace_info__().default_device()


def _ndonnx_matmul(a: Any, b: Any) -> Any:
    # ndonnx's matmul wraps each product in an ONNX If-subgraph (working around an
    # onnxruntime bug with zero-sized inputs) and builds it anew at every call, a large
    # cost per eager product. Where every dimension is known and non-zero, tensordot's single
    # Einsum node does the same product (as fast in onnxruntime); elsewhere (a symbolic
    # batch axis, a zero-sized one) the guarded matmul stays: onnxruntime 1.23's Einsum
    # crashes on a zero-sized input.
    if all(isinstance(d, int) and d > 0 for d in (*a.shape, *b.shape)):
        import ndonnx

        return ndonnx.tensordot(a, b, axes=1)
    return a @ b


def _ndonnx_host(a: Any) -> np.ndarray[Any, Any]:
    # np.asarray would make an object array holding the ndonnx array.
    return np.asarray(a.unwrap_numpy())


_NDONNX = Backend(
    name="ndonnx",
    module="ndonnx",
    distributions=("ndonnx", "onnxruntime"),
    install="pip install 'xaffine[onnx]'",
    nox_session="ndonnx",
    title="ndonnx",
    open_device=_info_device,
    host=_ndonnx_host,
    matmul=_ndonnx_matmul,
)


# -- pydata/sparse --------------------------------------------------------------------------


_SPARSE_NO_FLOAT16 = "pydata/sparse has no float16 matrix product"


class _SparseNamespace(_Adapter):
    """pydata/sparse's namespace, for sparse arrays with NumPy operands.

    A sparse array times a dense NumPy one is a dense NumPy array, which the math then
    reshapes through the namespace; ``sparse.reshape`` of a NumPy array fails (it calls
    ``ndarray.reshape(shape=...)``), so NumPy arrays are reshaped by NumPy.
    """

    def __getattr__(self, name: str) -> Any:
        if name == "float16":
            raise AttributeError(_SPARSE_NO_FLOAT16)
        return getattr(self._raw, name)

    def reshape(self, x: Array, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Array:
        if isinstance(x, np.ndarray):
            return np.reshape(x, shape, copy=copy)
        return self._raw.reshape(x, shape, copy=copy)

    def stack(self, arrays: Any, /, *, axis: int = 0) -> Array:
        # pydata/sparse stacks only arrays with one fill value; a reduction's 0-d result
        # holds its value as the fill value, so stacking two sums fails. Such arrays are
        # stacked dense (a stack of 0-d arrays is as small as the list of them).
        arrays = list(arrays)
        if not any(isinstance(a, np.ndarray) for a in arrays):
            with contextlib.suppress(ValueError):  # fill values differ
                return self._raw.stack(arrays, axis=axis)
        dense = np.stack([_sparse_host(a) for a in arrays], axis=axis)
        return self._raw.asarray(dense)


def _sparse_host(a: Any) -> np.ndarray[Any, Any]:
    # pydata/sparse refuses np.asarray (no implicit densifying); densify on request.
    return np.asarray(a.todense()) if hasattr(a, "todense") else np.asarray(a)


def _sparse_add(out: Any, term: Any) -> Any:
    """``out + term`` where one of them may be sparse and the other dense (a NumPy array or a
    number).

    pydata/sparse keeps a uniform dense term as the sum's fill value, which its matrix
    products then refuse, and refuses a non-uniform one. A sparse `out` plus a dense term is
    dense in value: it is stored as `out`'s format with fill value 0 (every non-zero element
    stored), so that a sparse product stays sparse whatever the bias. A dense `out` plus a
    sparse term is dense. A 0-d sparse term holds its value as its fill value: it is a number.
    """
    if hasattr(term, "todense") and term.ndim == 0:
        term = term.todense()
    out_sparse, term_sparse = not isinstance(out, np.ndarray), hasattr(term, "todense")
    if out_sparse == term_sparse:
        return out + term
    if term_sparse:
        return out + term.todense()
    import sparse

    return sparse.asarray(out.todense() + term, format=out.format)


def _sparse_check(a: Any, name: str) -> None:
    # Products and sums of pydata/sparse arrays assume that the implicit elements are zeros.
    # A 0-d array holds its value as its fill value.
    if type(a).__module__.partition(".")[0] != "sparse" or a.ndim == 0:
        return
    fill = a.fill_value
    if fill != 0:
        msg = (
            f"`{name}` has fill value {fill} (shape {tuple(a.shape)}); xaffine takes pydata/sparse "
            "arrays whose implicit elements are zeros (fill value 0)"
        )
        raise ValueError(msg)


_SPARSE = Backend(
    name="sparse",
    module="sparse",
    distributions=("sparse",),
    install="pip install 'xaffine[sparse]'",
    nox_session="sparse",
    title="pydata/sparse",
    array_api=_SparseNamespace,
    host=_sparse_host,
    takes_numpy=True,
    adopts_numpy=False,
    # A one-sample batch's weight gradient by broadcasting, keeping x's sparsity: pydata/sparse's
    # product takes a dense operand of one element as a sparse one with that element as its
    # fill value, which the product then refuses.
    outer=operator.mul,
    add=_sparse_add,
    check=_sparse_check,
    no_float16=_SPARSE_NO_FLOAT16,
)


# -- MLX ------------------------------------------------------------------------------------


# Array creation that takes `device` in the standard and `stream` (a device will do) in MLX.
_MLX_CREATION = frozenset(
    {
        "zeros",
        "ones",
        "empty",
        "full",
        "arange",
        "eye",
        "linspace",
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
    }
)


class _MLXNamespace(_Adapter):
    """``mlx.core`` with the standard's keywords where MLX 0.32 lacks them (``device=``,
    ``sum(dtype=)``), and NumPy arrays taken in their own dtype.

    ``mx.asarray`` of a float64 NumPy array makes float32 (MLX's default float); here
    a NumPy array keeps its dtype, and one that MLX lacks (complex128) is refused.
    """

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._raw, name)
        if name not in _MLX_CREATION:
            return found

        def create(*args: Any, device: Device | None = None, **kwargs: Any) -> Any:
            return found(*args, stream=device, **kwargs) if device is not None else found(*args, **kwargs)

        return create

    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Device | None = None, copy: bool | None = None) -> Any:
        if dtype is None and isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in "fc":
            dtype = getattr(self._raw, obj.dtype.name, None)
            if dtype is None:
                msg = f"MLX has no {obj.dtype.name}: convert the array to a dtype MLX has (complex64, float32)"
                raise TypeError(msg)
        with self._raw.stream(device) if device is not None else contextlib.nullcontext():
            return self._raw.asarray(obj, dtype=dtype, copy=copy)

    def sum(self, x: Array, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
        if dtype is not None and x.dtype != dtype:
            x = self._raw.astype(x, dtype)
        axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
        axes = {a % x.ndim for a in axes} if x.ndim else set()
        if any(x.shape[a] == 0 for a in axes):
            # MLX 0.32.4's CPU reduction over a zero-length axis now and then never returns
            # (its loop spins); the sum of nothing is zeros. Seen on Linux; not yet reported upstream.
            shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape) if keepdims or i not in axes)
            return self._raw.zeros(shape, dtype=x.dtype)
        return self._raw.sum(x, axis=axis, keepdims=keepdims)


def _mlx_device_of(a: Any) -> Device:
    # MLX's arrays live in memory that every device shares, and carry no device: the
    # operations run on a stream, by default on the default device.
    import mlx.core

    return mlx.core.default_device()


def _mlx_wait(result: Any) -> Any:
    import mlx.core

    mlx.core.eval(result)
    return result


_MLX = Backend(
    name="mlx",
    module="mlx.core",
    distributions=("mlx", "mlx-cpu", "mlx-metal"),
    install="pip install 'xaffine[mlx]' (Linux: the CPU build; macOS on Apple silicon: Metal)",
    nox_session="mlx",
    title="MLX",
    array_api=_MLXNamespace,
    open_device=_info_device,
    device_of=_mlx_device_of,
    wait=_mlx_wait,
    in_place=_never,
)


# -- the table ------------------------------------------------------------------------------

_CUDA = "a CUDA build: see the library's install guide"
BACKENDS: tuple[Backend, ...] = (
    _NUMPY,
    replace(_NUMPY, name="numpy:readonly", testing_only=True),
    _STRICT,
    replace(_STRICT, name="array_api_strict:device1", testing_only=True),
    _TORCH,
    replace(
        _TORCH,
        name="torch:cuda",
        install=f"pip install torch ({_CUDA})",
        nox_session="torch-cuda",
        wait=_torch_cuda_wait,
        gpu=True,
    ),
    _JAX,
    replace(_JAX, name="jax:gpu", install="pip install 'jax[cuda12]'", nox_session="jax-gpu", gpu=True),
    _DASK,
    _CUPY,
    _NDONNX,
    _SPARSE,
    _MLX,
)
_BY_NAME = {b.name: b for b in BACKENDS}
# find_backend's other spellings: each row's nox session, and its name as pip writes it.
_SPELLINGS = {
    s: b
    for b in BACKENDS
    for s in (
        b.nox_session,
        b.name.replace("_", "-"),
        b.name.replace(":", "-"),
        b.name.replace("_", "-").replace(":", "-"),
    )
} | _BY_NAME
_NUMPY_ARRAYS = (np.ndarray, np.generic)  # a tuple, not a union: torch.compile cannot trace ``type | type``
# The first row of each library stands for it (its default device).
_BY_LIBRARY: dict[str, Backend] = {}
for _row in BACKENDS:
    _BY_LIBRARY.setdefault(_row.library, _row)
_BY_MODULE = {b.module: b for b in reversed(BACKENDS)}
_LIBRARY_OF_PACKAGE = {p: b.library for b in _BY_LIBRARY.values() for p in b.packages}


def find_backend(name: object) -> Backend:
    """The backend called `name` (also its nox session's spelling, ``"torch-cuda"``, and
    pip's, ``"array-api-strict"``; any case).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if not isinstance(name, str):
        msg = f"a backend name must be a string such as 'numpy' or 'torch:cuda'; got {type(name).__name__}"
        raise TypeError(msg)
    try:
        return _SPELLINGS[name.strip().lower()]
    except KeyError:
        known = ", ".join(_BY_NAME)
        msg = f"unknown backend {name!r}; known backends: {known}"
        raise ValueError(msg) from None


def library_of(obj: object) -> str:
    """The library an array or a namespace (raw module or array-api-compat wrapper) belongs to.

    NumPy arrays and their subclasses (including those other libraries make, such as
    JAX's literal arrays) belong to ``"numpy"``; anything else to its top-level package.
    """
    if isinstance(obj, _NUMPY_ARRAYS):
        return "numpy"
    if isinstance(obj, type(os)):  # a module: a namespace
        name = obj.__name__.removeprefix("array_api_compat.")
        row = _BY_MODULE.get(name)
        return row.library if row is not None else name.partition(".")[0]
    top = type(obj).__module__.partition(".")[0]
    return _LIBRARY_OF_PACKAGE.get(top, top)


def skip_guards_on_xaffine(guard_entries: list[Any]) -> list[bool]:
    """Deprecated, and no longer needed: a ``guard_filter_fn`` for ``torch.compile`` that
    keeps every guard but those on xaffine's own modules.

    xaffine's functions are now operations of torch.compile's graphs (``xaffine._compile``):
    compiled code is guarded on the caller's tensors, as hand-written code is, and on a
    handful of names of xaffine's for a layer. This filter still works, and warns; it will
    be removed in a later release. Drop the ``guard_filter_fn`` option.
    """
    warnings.warn(
        "xaffine.skip_guards_on_xaffine is no longer needed: torch.compile'd xaffine is guarded "
        "as hand-written code is; drop the guard_filter_fn option (it will be removed)",
        DeprecationWarning,
        stacklevel=2,
    )
    return [not on_xaffine(entry.orig_guard.originating_source) for entry in guard_entries]


def on_xaffine(source: Any) -> bool:
    """Whether a guard's source starts at one of xaffine's modules, read as a global."""
    while getattr(source, "base", None) is not None:  # an attribute, item, type() ... of its base
        source = source.base
    name = getattr(source, "global_name", None)  # dynamo's alias of module a.b: __import_a_dot_b
    return isinstance(name, str) and (name == "__import_xaffine" or name.startswith("__import_xaffine_dot_"))


def backend_of(obj: object) -> Backend | None:
    """The table's row for the library of an array or namespace (its default device); None if unknown."""
    return _BY_LIBRARY.get(library_of(obj))


def library_row(library: str) -> Backend | None:
    """The table's row for a library name (its default device); None if unknown."""
    return _BY_LIBRARY.get(library)


def device_of(a: Array) -> Device:
    """The device array `a` is on, for every library (MLX's arrays carry none: its default)."""
    row = backend_of(a)
    return (row.device_of if row is not None else _standard_device)(a)


_NAMESPACES: dict[str, Namespace] = {}


def namespace(module: str) -> Namespace:
    """The Array API namespace of the array module called `module` (its row's `array_api`)."""
    traced = _compile.compiling()  # torch.compile would guard the compiled code on the memo's contents
    if not traced:
        found = _NAMESPACES.get(module)
        if found is not None:
            return found
    raw = _import(module)
    row = _BY_MODULE.get(module)
    xp = row.array_api(raw) if row is not None else raw
    if not traced:
        _NAMESPACES[module] = xp
    return xp


def generic_row(xp: Namespace) -> Backend:
    """A row for a conforming namespace that the table does not know (marray's, say): every
    field at the standard's default."""
    library = library_of(xp)
    return Backend(
        name=library,
        module=xp.__name__,
        distributions=(),
        install="",
        nox_session="",
        title=library,
    )


def resolve(xp: object) -> tuple[Backend, Namespace]:
    """The row and the Array API namespace for whatever a user passed as ``xp``.

    Accepts a backend name (``"torch:cuda"``), a raw module (numpy, torch, jax.numpy,
    cupy, dask.array, array_api_strict) or an array-api-compat namespace.

    Raises
    ------
    ValueError
        For an unknown backend name.
    TypeError
        For something that is neither a name nor an array namespace.
    """
    if isinstance(xp, str):
        row = find_backend(xp)
        return row, namespace(row.module)
    found = backend_of(xp) if isinstance(xp, type(os)) else None
    if found is None:
        if isinstance(xp, type(os)) and hasattr(xp, "asarray") and hasattr(xp, "matmul"):
            return generic_row(xp), xp
        known = ", ".join(sorted({b.module for b in BACKENDS}))
        msg = f"`xp` must be an array namespace ({known}, or array-api-compat's) or a backend name; got {xp!r}"
        raise TypeError(msg)
    return found, namespace(found.module)


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
        try:
            backend = find_backend(requested)
        except ValueError as exc:
            msg = f"the environment variable {ENV_DEFAULT}={requested!r} is not a backend: {exc}"
            raise ValueError(msg) from None
        try:
            return backend.load(reason=f"set by {ENV_DEFAULT}={requested}")
        except BackendUnavailable as exc:
            msg = f"{ENV_DEFAULT}={requested} but that backend cannot run here: {exc.reason}"
            raise ValueError(msg) from exc
    try:
        return _BY_NAME["cupy"].load(reason="a CUDA GPU is usable through CuPy")
    except BackendUnavailable as exc:
        return _BY_NAME["numpy"].load(reason=f"CPU fallback: no usable CuPy GPU ({exc.reason})")


def to_numpy(a: Array, name: str = "the array") -> np.ndarray[Any, Any]:
    """A NumPy copy (or view) of `a` on the host; computes Dask arrays.

    bfloat16, which NumPy has no type for, comes back as float32 (which holds it exactly).
    An array on torch's ``meta`` device, which has no values, is a ValueError naming `name`.
    """
    if str(getattr(a, "device", "")) == "meta":
        msg = (
            f"{name} is on torch's meta device, which holds shapes and dtypes but no values; "
            "make it on a device with data (device='cpu')"
        )
        raise ValueError(msg)
    row = backend_of(a)
    if row is None:
        return _numpy_host(a)
    if dtype_name(a.dtype) == "bfloat16":
        xp = namespace(row.module)
        a = xp.astype(a, xp.float32)
    return row.host(a)


FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")
"""The dtypes xaffine works in, where the backend has them: the one list of them."""

HOST_DTYPES = tuple(name for name in FLOAT_DTYPES if hasattr(np, name))
"""Those NumPy holds (all but bfloat16): what `.npz` files and float64 host references take."""


def device_name(device: Any) -> str:
    """A device as text, as torch and JAX write theirs: CuPy's ``<CUDA Device 0>`` as ``cuda:0``;
    a device object without a name of its own (ndonnx's) by its library."""
    text = str(device)
    if text == object.__repr__(device):
        return f"{type(device).__module__.partition('.')[0]} default"
    cupy_style = re.fullmatch(r"<CUDA Device (\d+)>", text)
    return f"cuda:{cupy_style[1]}" if cupy_style else text


def dtype_name(dtype: Any) -> str:
    """The standard name of a dtype of any library: ``"float32"``, ``"bfloat16"``, ..."""
    if isinstance(dtype, type):  # a scalar type standing for its dtype (NumPy's, JAX's)
        with contextlib.suppress(TypeError):
            dtype = np.dtype(dtype)
    name = dtype.name if isinstance(dtype, np.dtype) else str(dtype)
    return name.rpartition(".")[2]


def transfer(
    a: Array, xp: Namespace, device: Device, dtype: Any = None, *, copy: bool = True, name: str = "the array"
) -> Array:
    """A copy of `a` (any library) as an array of `xp` on `device`, cast to `dtype` if given;
    `copy=False`: `a` itself where it already is one (for arrays nobody else holds). `name`
    names `a` in errors.

    Within one library the copy goes device to device; between libraries through the
    host, bfloat16 through float32 (which holds it exactly) and back.
    """
    need = True if copy else None
    if library_of(a) == library_of(xp):
        out = xp.asarray(a, device=device, copy=need)
    else:
        host = to_numpy(a, name)
        if dtype is not None and dtype_name(dtype) in HOST_DTYPES:
            # Cast on the host first: the target may lack the source's dtype (MLX, complex128).
            host = host.astype(dtype_name(dtype), copy=False)
        out = xp.asarray(host, device=device, copy=need)
        if dtype is None and dtype_name(a.dtype) != dtype_name(out.dtype):
            dtype = getattr(xp, dtype_name(a.dtype))
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def bfloat16_from_bits(bits: np.ndarray[Any, Any], xp: Namespace, device: Device) -> Array | None:
    """`bits`, a host uint16 array of raw bfloat16 patterns in native byte order, as a bfloat16
    array of `xp` on `device` with every bit kept (NaN payloads, signalling NaNs); None where
    the library cannot reinterpret bits (then convert through float32, as `transfer` does).
    """
    row = backend_of(xp)
    if row is None or row.bfloat16_from_bits is None:
        return None
    return row.bfloat16_from_bits(bits, device)
