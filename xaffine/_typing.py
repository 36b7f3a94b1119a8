"""Type aliases shared by the package.

The Array API standard has no runtime array type that every library subclasses,
so arrays and namespaces are typed loosely and documented precisely.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Array", "Device", "Namespace"]

Array: TypeAlias = Any
"""An array of any Array API compatible library."""

Namespace: TypeAlias = Any
"""An Array API namespace, as returned by ``array_api_compat.array_namespace``."""

Device: TypeAlias = Any
"""A device object of the array's own library."""
