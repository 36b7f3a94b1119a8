"""xaffine: the affine layer with hand-derived gradients, on any Array API library."""

from typing import Any

from ._backends import BackendChoice, default_backend, skip_guards_on_xaffine
from ._compile import register as _register
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
    "skip_guards_on_xaffine",
]

__version__ = "0.1.0"

_register()


def __getattr__(name: str) -> Any:
    # xaffine.testing is reachable from the package, as numpy.testing is, but imported
    # only when first used: it is for test suites, not for the layer.
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    msg = f"module 'xaffine' has no attribute {name!r}"
    raise AttributeError(msg)
