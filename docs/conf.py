"""Sphinx configuration for the xaffine documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xaffine  # noqa: E402

project = "xaffine"
author = "The xaffine developers"
copyright = "2026, The xaffine developers"
release = xaffine.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# MathJax from a local copy where one is named (a build read without network access),
# otherwise Sphinx's default.
if os.environ.get("XAFFINE_DOCS_MATHJAX"):
    mathjax_path = os.environ["XAFFINE_DOCS_MATHJAX"]

# With XAFFINE_DOCS_OFFLINE set, linkcheck checks only the site's own links.
if os.environ.get("XAFFINE_DOCS_OFFLINE"):
    linkcheck_ignore = [r"https?://"]

doctest_global_setup = "import numpy as np\nimport xaffine"

html_theme = "pydata_sphinx_theme"
html_title = f"xaffine {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

# The docstrings' examples run under pytest (--doctest-modules); the doctest builder runs
# the pages' own {doctest} blocks.
doctest_test_doctest_blocks = ""
