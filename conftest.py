"""xaffine's own test set-up: the backend matrix comes from its pytest plugin
(`xaffine.testing.plugin`, docs/own-layer.md), which any project can turn on the same way.

A test that takes `backend` (or `xp`) runs on each selected backend; one that cannot run
on some says so with a marker, never an inline branch:
``@pytest.mark.skip_backend("dask", "ndonnx", reason="...")``. Selection: ``--backends`` or
the ``XAFFINE_BACKENDS`` environment variable (the plugin's docstring says how).
"""

from __future__ import annotations

import os

from hypothesis import settings

pytest_plugins = ["xaffine.testing.plugin", "pytester"]

# Hypothesis: `ci` (chosen when CI is set) is reproducible and keeps no example database;
# `thorough` (HYPOTHESIS_PROFILE=thorough) draws many more examples. A test's own
# settings(max_examples=...) takes precedence over both.
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))
