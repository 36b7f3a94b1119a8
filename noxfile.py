"""The test matrix: one session per backend, plus lint, docs and build.

``nox`` runs lint and every CPU session; ``nox -t gpu`` runs the GPU sessions on a
machine with an NVIDIA GPU and network access (they install CUDA builds).
``nox -s "tests(torch)"`` runs one; ``nox -s docs`` and ``nox -s build`` run on request.
Environments are made with uv when it is installed beside nox (``pip install nox uv``),
otherwise with virtualenv and pip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nox

nox.options.tags = ["cpu"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "uv|virtualenv"

# backend session -> (what it installs besides .[test], the XAFFINE_BACKENDS it must run)
BACKENDS = {
    "numpy": ([], "numpy,numpy:readonly"),
    "array_api_strict": ([], "array_api_strict,array_api_strict:device1"),
    # The CPU build, which installs quickly (see _torch_cpu_source); a GPU host installs its CUDA build below.
    "torch": (["torch==2.13.0"], "torch"),
    "jax": (["jax"], "jax"),
    "dask": (["dask[array]", "distributed"], "dask"),
    "cupy": (["cupy-cuda12x"], "cupy"),
    # Also the ONNX export tests (tests/test_onnx.py), and sparse inputs with NumPy parameters.
    "ndonnx": (["-e", ".[onnx]"], "ndonnx"),
    "sparse": (["-e", ".[sparse]"], "sparse"),
    # The CPU build on Linux (pip install "mlx[cpu]"); Metal on macOS.
    "mlx": (["-e", ".[mlx]"], "mlx"),
    "torch-cuda": (["torch"], "torch:cuda"),
    "jax-gpu": (["jax[cuda12]"], "jax:gpu"),
}
GPU = ("cupy", "torch-cuda", "jax-gpu")
CPU_SESSIONS = tuple(f"tests({name})" for name in BACKENDS if name not in GPU)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The subset the build session runs against the installed wheel.
WHEEL_TESTS = ("test_public_api.py", "test_core.py", "test_layer.py", "test_io.py", "test_testing.py")


def _pip_find_links() -> list[str]:
    """The wheel folders pip is configured with here (uv does not read pip's configuration)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    links: list[str] = []
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links += [v for v in value.strip("'\"").split() if v not in links]
    return links


def _torch_cpu_source(session: nox.Session) -> list[str]:
    """Install options that make ``torch==2.13.0`` the CPU build, not the multi-GB CUDA one.

    pip takes the CPU wheel from a configured wheel folder, if any; uv is handed that
    folder, or else the CPU-only index, which it searches before the default one.
    """
    if session.venv_backend != "uv":
        return []
    links = _pip_find_links()
    if links:
        return [arg for link in links for arg in ("--find-links", link)]
    return ["--extra-index-url", TORCH_CPU_INDEX]


@nox.session(tags=["cpu"])
def lint(session: nox.Session) -> None:
    """pre-commit's hooks (ruff lint and format, file hygiene) on everything, mypy --strict on the package."""
    session.install("-e", ".[lint]")
    env = {"PRE_COMMIT_HOME": ".nox/pre-commit"}
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", env=env)
    session.run("mypy")


@nox.session
@nox.parametrize(
    "backend",
    [nox.param(name, id=name, tags=["gpu" if name in GPU else "cpu"]) for name in BACKENDS],
)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one backend, which must run (it fails if it cannot)."""
    extra, selection = BACKENDS[backend]
    source = _torch_cpu_source(session) if backend == "torch" else []
    session.install("-e", ".[test,safetensors,demo]", *extra, *source)
    env = {"XAFFINE_BACKENDS": selection}
    if backend in GPU:
        env["NVIDIA_TF32_OVERRIDE"] = "0"
    session.run("pytest", *session.posargs, env=env)
    if not session.posargs:  # the example project, through xaffine's pytest plugin alone
        session.run("pytest", "-p", "no:cacheprovider", "examples/own-layer", env=env)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, warnings as errors, then every code block in it run as a doctest."""
    session.install("-e", ".[docs,dask]")
    shutil.rmtree("docs/_build", ignore_errors=True)
    shutil.rmtree("docs/api/generated", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, and test the installed wheel (not the source tree)."""
    session.install("build", "twine")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *map(str, Path("dist").iterdir()))
    (wheel,) = Path("dist").glob("xaffine-*.whl")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        venv = work / "venv"
        session.run(sys.executable, "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "--quiet", f"{wheel.resolve()}[test]", external=True)
        session.run(str(venv / "bin" / "xaffine"), "check", "--backends", "numpy", external=True)
        shutil.copytree("tests", work / "tests")
        for name in ("conftest.py", "pyproject.toml"):
            shutil.copy(name, work / name)
        with session.chdir(work):
            session.run(python, "-c", "import xaffine; print('testing', xaffine.__file__)", external=True)
            session.run(
                python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *[f"tests/{name}" for name in WHEEL_TESTS],
                env={"XAFFINE_BACKENDS": "numpy"},
                external=True,
            )
