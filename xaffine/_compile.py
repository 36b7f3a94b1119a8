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

from typing import Any

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
    global compiling, affine_backward  # bound once, when torch's compiler is loaded
    import torch

    from . import _core, _layer

    for name in REGISTERED:
        public = getattr(_core, name)
        operation = _operation(public)
        dynamo.allow_in_graph(operation)
        torch.compiler.substitute_in_graph(public)(_traced(operation))
    torch.compiler.substitute_in_graph(_core.affine_vjp)(_traced_vjp(_core.affine))
    for method, traced in _layer.traced_methods(_core.affine, _core.affine_backward).items():
        torch.compiler.substitute_in_graph(method)(traced)
    affine_backward = _core.affine_backward
    compiling = torch.compiler.is_compiling


def _operation(public: Any) -> Any:
    """`public` as an operation of the graph (a function of its own, registered)."""

    def operation(*args: Any, **kwargs: Any) -> Any:
        return public(*args, **kwargs)

    operation.__name__ = operation.__qualname__ = public.__name__  # the graph's node names it
    return operation


def _traced(operation: Any) -> Any:
    """What dynamo traces for a registered function: a call of its operation, with what a
    graph cannot hold made what it can (`_graphable`). The operation is this function's
    closure, not a global, so that dynamo guards on nothing of xaffine's."""

    def traced(*args: Any, **kwargs: Any) -> Any:
        xp, wrt = kwargs.get("xp"), kwargs.get("wrt")
        if xp is not None or not (wrt is None or wrt.__class__ in (str, tuple)):  # (no guard in the usual case)
            kwargs = _graphable(kwargs)
        return operation(*args, **kwargs)

    return traced


def _graphable(options: dict[str, Any]) -> dict[str, Any]:
    """`xp` a module made its name (``"torch"``), `wrt` a set made a tuple: a graph holds neither."""
    xp, wrt = options.get("xp"), options.get("wrt")
    if xp is not None and not isinstance(xp, str) and hasattr(xp, "__name__"):
        options = {**options, "xp": xp.__name__.removeprefix("array_api_compat.")}
    if isinstance(wrt, (set, frozenset)):
        options = {**options, "wrt": tuple(sorted(wrt))}
    return options


def _traced_vjp(affine: Any) -> Any:
    """What dynamo traces for `affine_vjp`: `affine`, and a `vjp` that calls `affine_backward`."""

    def affine_vjp(x: Any, weight: Any, bias: Any = None, /, *, xp: Any = None) -> tuple[Any, Any]:
        def vjp(grad: Any, *, wrt: Any = None) -> Any:
            if wrt is None:  # (not GRAD_NAMES as the default: a guard on it)
                return affine_backward(grad, x, weight, bias)
            return affine_backward(grad, x, weight, bias, wrt=wrt)

        return (affine(x, weight, bias) if xp is None else affine(x, weight, bias, xp=xp)), vjp

    return affine_vjp


def register() -> None:
    """Register the functions with torch.compile once ``torch._dynamo`` is imported (now, if it is)."""
    wrapt.register_post_import_hook(_allow, "torch._dynamo")
