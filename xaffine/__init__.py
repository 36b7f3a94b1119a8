"""xaffine: the affine layer with hand-derived gradients, on any Array API library."""

from ._backends import BackendChoice, default_backend
from ._core import AffineGrads, affine, affine_backward, affine_jvp, affine_vjp

__all__ = [
    "AffineGrads",
    "BackendChoice",
    "affine",
    "affine_backward",
    "affine_jvp",
    "affine_vjp",
    "default_backend",
]

__version__ = "0.1.0"
