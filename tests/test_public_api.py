"""The public surface: exactly these names, sorted, each documented."""

from __future__ import annotations

import xaffine


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
        "skip_guards_on_xaffine",
    }
    assert xaffine.testing.__all__ == ["check_adjoint", "check_vjp"]


def test_every_public_name_has_a_docstring():
    for name in xaffine.__all__:
        assert getattr(xaffine, name).__doc__, name
    for name in xaffine.testing.__all__:
        assert getattr(xaffine.testing, name).__doc__, name


def test_testing_is_reachable_without_importing_it_first():
    """As numpy.testing: `import xaffine` then `xaffine.testing`, loaded only when used."""
    import subprocess
    import sys

    code = (
        "import sys, xaffine\n"
        "assert 'xaffine.testing' not in sys.modules\n"
        "assert callable(xaffine.testing.check_vjp)\n"
        "try:\n    xaffine.nope\nexcept AttributeError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'xaffine' has no attribute 'nope'"
