"""Type aliases shared by the package.

The Array API standard has no runtime array type that every library subclasses, so an
array is typed by what xaffine uses of it: a structural protocol that NumPy, CuPy, torch,
JAX, Dask and array-api-strict arrays all satisfy. Namespaces and devices vary by
library and are typed loosely.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

__all__ = ["Array", "Device", "Namespace"]


class Array(Protocol):
    """An array of any Array API compatible library, as xaffine uses it."""

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...

    @property
    def T(self) -> Any: ...  # the standard's name for the transpose

    def __getitem__(self, key: Any, /) -> Any: ...

    def __matmul__(self, other: Any, /) -> Any: ...

    def __add__(self, other: Any, /) -> Any: ...

    def __radd__(self, other: Any, /) -> Any: ...

    def __iadd__(self, other: Any, /) -> Any: ...

    def __sub__(self, other: Any, /) -> Any: ...

    def __rsub__(self, other: Any, /) -> Any: ...

    def __mul__(self, other: Any, /) -> Any: ...

    def __rmul__(self, other: Any, /) -> Any: ...

    def __truediv__(self, other: Any, /) -> Any: ...

    def __neg__(self) -> Any: ...

    def __lt__(self, other: Any, /) -> Any: ...

    def __gt__(self, other: Any, /) -> Any: ...


Namespace: TypeAlias = Any
"""An Array API namespace (a module), as returned by ``array_api_compat.array_namespace``."""

Device: TypeAlias = Any
"""A device object of the array's own library."""
