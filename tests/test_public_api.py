"""The public surface: exactly these names, sorted, each documented."""

from __future__ import annotations

import xaffine
import xaffine.testing


def test_public_names():
    assert xaffine.__all__ == sorted(xaffine.__all__)
    assert set(xaffine.__all__) == {
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
    }
    assert xaffine.testing.__all__ == ["check_adjoint", "check_vjp"]


def test_every_public_name_has_a_docstring():
    for name in xaffine.__all__:
        assert getattr(xaffine, name).__doc__, name
    for name in xaffine.testing.__all__:
        assert getattr(xaffine.testing, name).__doc__, name
