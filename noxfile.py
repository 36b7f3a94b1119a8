"""The test matrix: one session per backend, plus lint.

``nox`` runs lint and every CPU session; ``nox -t gpu`` runs the GPU sessions on a
machine with an NVIDIA GPU and network access (they install CUDA builds).
``nox -s "tests(torch)"`` runs one.
"""

from __future__ import annotations

import nox

nox.options.tags = ["cpu"]
nox.options.error_on_missing_interpreters = True

# backend session -> (what it installs besides .[test], the XAFFINE_BACKENDS it must run)
BACKENDS = {
    "numpy": ([], "numpy,numpy:readonly"),
    "array_api_strict": ([], "array_api_strict,array_api_strict:device1"),
    # The CPU build, which installs quickly; a GPU host installs its CUDA build below.
    "torch": (["torch==2.13.0"], "torch"),
    "jax": (["jax"], "jax"),
    "dask": (["dask[array]", "distributed"], "dask"),
    "cupy": (["cupy-cuda12x"], "cupy"),
    "ndonnx": (["ndonnx", "onnx", "onnxruntime"], "ndonnx"),
    "sparse": (["sparse"], "sparse"),
    "torch-cuda": (["torch"], "torch:cuda"),
    "jax-gpu": (["jax[cuda12]"], "jax:gpu"),
}
GPU = ("cupy", "torch-cuda", "jax-gpu")


@nox.session(tags=["cpu"])
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything, mypy --strict on the package."""
    session.install("-e", ".", "ruff", "mypy")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
@nox.parametrize(
    "backend",
    [nox.param(name, id=name, tags=["gpu" if name in GPU else "cpu"]) for name in BACKENDS],
)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one backend, which must run (it fails if it cannot)."""
    extra, selection = BACKENDS[backend]
    session.install("-e", ".[test,safetensors,demo]", *extra)
    env = {"XAFFINE_BACKENDS": selection}
    if backend in GPU:
        env["NVIDIA_TF32_OVERRIDE"] = "0"
    session.run("pytest", *session.posargs, env=env)
