"""xaffine's functions as single operations of torch.compile's graphs.

Registered with ``torch.compiler.allow_in_graph`` (each through an `operation` of its own,
which dynamo is told to trace in its place), `affine`, `affine_backward` and `affine_jvp`
are written into the graph as calls: dynamo does not trace their Python, so
the compiled code is guarded on the caller's tensors alone, as hand-written code is (a
traced function is guarded on every function, table row and constant it read: some 140
guards, checked on each call). AOTAutograd still runs them once on fake tensors, so
their checks run at compile time and a bad input raises there, with xaffine's message.
`affine_vjp` returns a function, which a graph cannot hold: under torch.compile it is
`affine` and a `vjp` that calls `affine_backward`.

Registration waits for ``torch._dynamo``: importing xaffine imports no torch, and a
program that never compiles never loads the compiler.
"""

from __future__ import annotations

import types
import warnings
from typing import Any

import numpy as np
import wrapt

__all__ = ["REGISTERED", "compiling", "register"]

REGISTERED = ("affine", "affine_backward", "affine_jvp")


def compiling() -> bool:
    """Whether torch.compile is compiling the caller: never, until its compiler is loaded.

    Then ``torch.compiler.is_compiling`` itself: True while dynamo traces Python (which
    reads it as a constant) and while AOTAutograd runs the registered functions on fake
    tensors. Code that keeps caches across calls skips them then, or the compiled code
    would be guarded on their contents, or the caches would keep fake tensors' facts. Call
    it as ``_compile.compiling()``: compiled code is guarded on this one name.
    """
    return False


affine_backward: Any = None
"""xaffine's `affine_backward`, once torch's compiler is loaded: what the traced `affine_vjp`'s
`vjp` calls, as a global, so that a `vjp` returned from compiled code can be rebuilt."""


def _allow(dynamo: Any) -> None:
    global compiling, affine_backward  # bound when torch's compiler is loaded
    import torch

    from . import _core, _layer

    compiling = torch.compiler.is_compiling
    affine_backward = _core.affine_backward
    if getattr(_core.affine, "__xaffine_compiled__", False):  # a second import of xaffine, a reload
        return
    _core.affine.__xaffine_compiled__ = True  # type: ignore[attr-defined]
    try:
        substitute = torch.compiler.substitute_in_graph
        for name in REGISTERED:
            public = getattr(_core, name)
            operation = _operation(public)
            dynamo.allow_in_graph(operation)
            substitute(public)(_traced(operation, _copy(public)))
        substitute(_core.affine_vjp)(_traced_vjp(_core.affine))
        for method, traced in _layer.traced_methods(_core.affine, _core.affine_backward).items():
            substitute(method)(traced)
    except Exception as exc:  # (a torch that lacks what this needs: its compiler must still load)
        msg = (
            f"xaffine could not register its functions with torch.compile ({exc!r}); compiled code "
            "traces them instead, and is guarded on what they read"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)


def _operation(public: Any) -> Any:
    """`public` as an operation of the graph (a function of its own, registered)."""

    def operation(*args: Any, **kwargs: Any) -> Any:
        return public(*args, **kwargs)

    operation.__name__ = operation.__qualname__ = public.__name__  # the graph's node names it
    return operation


def _copy(public: Any) -> Any:
    """`public` as another function object of the same code: one dynamo traces through (it
    substitutes `public` itself), for NumPy arguments."""
    copy = types.FunctionType(public.__code__, public.__globals__, public.__name__, public.__defaults__)
    copy.__kwdefaults__ = public.__kwdefaults__
    return copy


def _traced(operation: Any, python: Any) -> Any:
    """What dynamo traces for a registered function: a call of its operation, with what a
    graph cannot hold made what it can (`_graphable`). NumPy arguments, which dynamo would
    hand the operation as tensors (so that it would give tensors back, and take them beside
    torch's), go through the function's Python (`python`), traced as NumPy code. What it
    reads is this function's closure, not globals, so that dynamo guards on nothing of xaffine's."""
    ndarray, tuple_, isinstance_ = np.ndarray, tuple, isinstance  # (builtins as globals: a guard on each)

    def numpy_in(args: tuple[Any, ...]) -> bool:  # (dynamo's NumPy arrays say another __class__)
        for a in args:
            if isinstance_(a, ndarray):
                return True
            if isinstance_(a, tuple_):  # affine_jvp's tangents
                for t in a:
                    if isinstance_(t, ndarray):
                        return True
        return False

    def traced(*args: Any, **kwargs: Any) -> Any:
        if numpy_in(args):
            return python(*args, **kwargs)
        xp, wrt = kwargs.get("xp"), kwargs.get("wrt")
        if xp is not None or not (wrt is None or wrt.__class__ in (str, tuple)):  # (no guard in the usual case)
            kwargs = _graphable(kwargs)
        return operation(*args, **kwargs)

    return traced


def _graphable(options: dict[str, Any]) -> dict[str, Any]:
    """`xp` a module made its library's name (``"torch"``), `wrt` a set made a tuple: a
    graph holds neither."""
    from ._backends import library_of

    xp, wrt = options.get("xp"), options.get("wrt")
    if xp is not None and not isinstance(xp, str):
        options = {**options, "xp": library_of(xp)}
    if isinstance(wrt, (set, frozenset)):
        options = {**options, "wrt": tuple(sorted(wrt))}
    return options


def _traced_vjp(affine: Any) -> Any:
    """What dynamo traces for `affine_vjp`: `affine`, and a `vjp` that calls `affine_backward`."""

    def affine_vjp(x: Any, weight: Any, bias: Any = None, /, *, xp: Any = None) -> tuple[Any, Any]:
        # The default, all three: `...`, a constant (GRAD_NAMES would be a guard; None is refused
        # eagerly, and so must be here; an object of this closure could not be rebuilt).
        def vjp(grad: Any, *, wrt: Any = ...) -> Any:
            if wrt is ...:
                return affine_backward(grad, x, weight, bias)
            return affine_backward(grad, x, weight, bias, wrt=wrt)

        return (affine(x, weight, bias) if xp is None else affine(x, weight, bias, xp=xp)), vjp

    return affine_vjp


def register() -> None:
    """Register the functions with torch.compile once ``torch._dynamo`` is imported (now, if it is)."""
    wrapt.register_post_import_hook(_allow, "torch._dynamo")
