"""The test harness itself: lazy backends really run jitted or compute-free."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_extra.testing import lazy_xp_function

from xaffine._backends import to_numpy


def materialise(a):
    """A function that wrongly pulls its input to the host."""
    return float(to_numpy(a).sum())


lazy_xp_function(materialise)


def test_dask_refuses_computes_and_jax_refuses_host_pulls(xp, backend):
    a = backend.asarray(np.ones(3))
    if backend.name.partition(":")[0] not in ("dask", "jax"):
        assert materialise(a) == 3.0
        return
    with pytest.raises(Exception, match=r"(?i)compute|concret|tracer|abstract"):
        materialise(a)


@pytest.mark.skip_backend("numpy", "sparse", reason="the marker's own test: it must skip these two")
def test_skip_backend_skips_the_backends_it_names(backend):
    assert backend.row.library not in ("numpy", "sparse")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {"reason": "why"}), (("numpy",), {}), (("numpy",), {"reason": " "}), (("nope",), {"reason": "why"})],
)
@pytest.mark.parametrize("marker", ["skip_backend", "xfail_backend"])
def test_backend_markers_need_known_names_and_a_reason(args, kwargs, marker):
    from xaffine.testing import plugin

    class Item:
        nodeid = "tests/x.py::test_x"

        def iter_markers(self, name):
            return iter([getattr(pytest.mark, marker)(*args, **kwargs).mark] if name == marker else [])

    with pytest.raises(pytest.UsageError, match=f"{marker} needs backend names"):
        plugin.pytest_collection_modifyitems(None, [Item()])
