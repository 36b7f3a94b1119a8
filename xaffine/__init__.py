"""xaffine: the affine layer with hand-derived gradients, on any Array API library."""

from ._backends import BackendChoice, default_backend
from ._core import AffineGrads, affine, affine_backward, affine_jvp, affine_vjp
from ._io import load, save
from ._layer import Affine

__all__ = [
    "Affine",
    "AffineGrads",
    "BackendChoice",
    "affine",
    "affine_backward",
    "affine_jvp",
    "affine_vjp",
    "default_backend",
    "load",
    "save",
]

__version__ = "0.1.0"
