"""The Python examples of the README and of the docs pages (```python blocks; the docs' own
doctests run in the docs session) run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [
    (f"{page.relative_to(ROOT)} example {k}", code)
    for page in PAGES
    for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S))
]
BLOCKS = [code for _, code in EXAMPLES]
# What an example's imports need installed beyond the core: xaffine.onnx traces through ndonnx.
NEEDS = {
    "cupy": ["cupy"],
    "jax": ["jax"],
    "torch": ["torch"],
    "onnxruntime": ["onnxruntime"],
    "sparse": ["sparse"],
    "xaffine.onnx": ["ndonnx", "onnx"],
    "xaffine.testing.plugin": ["pytest"],
    "array_api_compat": ["array_api_compat"],
}


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


# inductor's first compilation scripts helpers with TorchScript, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[name for name, _ in EXAMPLES])
def test_readme_example_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    imported = re.findall(r"^(?:import|from) ([\w.]+)", code, flags=re.M)
    for module in (need for name in imported for need in NEEDS.get(name, [])):
        pytest.importorskip(module, reason=f"this README example needs {module}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, EXAMPLES[index][0], "exec"), {})


def test_every_optional_import_of_the_examples_is_skipped_without_it():
    """An example importing an optional library must say so in NEEDS, or it fails where that is missing."""
    core = {"numpy", "xaffine", "xaffine.testing"}
    for code in BLOCKS:
        for name in re.findall(r"^(?:import|from) ([\w.]+)", code, flags=re.M):
            optional = name not in core and name.partition(".")[0] not in sys.stdlib_module_names
            assert not optional or name in NEEDS, f"README example imports {name}: add it to NEEDS"
