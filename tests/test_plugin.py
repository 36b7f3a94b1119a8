"""xaffine.testing.plugin from a project of its own (pytester): selection, markers, facts."""

from __future__ import annotations

import pytest

from xaffine.testing.plugin import BackendCase, check_layer

_CONFTEST = 'pytest_plugins = ["xaffine.testing.plugin"]\n'


def _project(pytester, body):
    pytester.makeconftest(_CONFTEST)
    pytester.makepyfile(test_own=body)


def test_a_project_turns_it_on_with_one_line(pytester, monkeypatch):
    monkeypatch.delenv("XAFFINE_BACKENDS", raising=False)
    _project(
        pytester,
        """
import pytest

def test_runs(backend, xp):
    assert xp is backend.xp
    assert "float32" in backend.dtypes
    assert backend.to_host(backend.asarray([1.0, 2.0])).tolist() == [1.0, 2.0]

@pytest.mark.skip_backend("numpy", reason="shown skipped")
def test_skipped(backend):
    raise AssertionError("never runs on numpy")

@pytest.mark.xfail_backend("numpy", reason="a known bug")
def test_expected_to_fail(backend):
    raise AssertionError("the bug")

@pytest.mark.xfail_backend("numpy", reason="fixed since")
def test_unexpected_pass(backend):
    pass
""",
    )
    result = pytester.runpytest("--backends", "numpy", "--strict-markers", "-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*array backends (xaffine.testing.plugin): numpy*", "*XPASS(strict)*fixed since*"])


def test_a_backend_named_must_run(pytester, monkeypatch):
    monkeypatch.setenv("XAFFINE_BACKENDS", "numpy,nope")
    _project(pytester, "def test_x(backend):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nope*"])


def test_a_backend_that_cannot_run_here_fails_the_run_when_named(pytester, monkeypatch):
    monkeypatch.delenv("XAFFINE_BACKENDS", raising=False)
    try:
        import cupy  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("cupy can run here: the refusal needs a backend that cannot")
    _project(pytester, "def test_x(backend):\n    pass\n")
    result = pytester.runpytest("--backends", "cupy", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*backend 'cupy' was requested*cannot run here*"])


def test_a_marker_without_a_reason_is_a_usage_error(pytester):
    _project(
        pytester,
        "import pytest\n@pytest.mark.xfail_backend('numpy')\ndef test_x(backend):\n    pass\n",
    )
    result = pytester.runpytest("--backends", "numpy", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*xfail_backend needs backend names*"])


def _tanh(backend):
    import numpy as np

    xp = backend.xp
    rng = np.random.default_rng(0)
    host = (rng.standard_normal((3, 2)), rng.standard_normal(2))

    def f(x, b):
        return xp.tanh(x + b)

    def vjp(ct, x, b):
        d = ct * (1.0 - f(x, b) ** 2)
        return d, xp.sum(d, axis=0)

    def jvp(t, x, b):
        return (1.0 - f(x, b) ** 2) * (t[0] + t[1])

    return f, vjp, jvp, lambda dtype: tuple(backend.cast(a, dtype) for a in host)


def test_check_layer_runs_both_checks_in_each_dtype_and_catches_a_slip(backend):
    f, vjp, jvp, make = _tanh(backend)
    ran = check_layer(backend, f, vjp, make, jvp=jvp, dtypes=["float32", "float64", "float16"])
    pairs = [(d, c) for d in ("float32", "float64", "float16") for c in ("check_adjoint", "check_vjp")]
    assert ran == [(d, c) for d, c in pairs if backend.has(d) and (c == "check_adjoint" or backend.has("float64"))]
    with pytest.raises(AssertionError, match=r"^float32, check_(vjp: gradient check|adjoint: adjoint identity) failed"):
        check_layer(backend, f, lambda ct, x, b: (ct, ct[0, ...]), make, jvp=jvp, dtypes=["float32"])


def test_the_facts_of_a_backend(backend):
    assert isinstance(backend, BackendCase)
    assert backend.library == backend.name.partition(":")[0]
    assert all(backend.has(d) for d in backend.dtypes)
    assert backend.lazy == (backend.library in ("dask", "ndonnx", "jax"))
