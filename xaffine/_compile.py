"""xaffine's functions as single operations of torch.compile's graphs.

Registered with ``torch.compiler.allow_in_graph``, `affine`, `affine_backward` and
`affine_jvp` are written into the graph as calls: dynamo does not trace their Python, so
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


def _allow(dynamo: Any) -> None:
    global compiling  # the one rebinding, when torch's compiler is loaded
    import torch

    from . import _core

    for name in REGISTERED:
        dynamo.allow_in_graph(getattr(_core, name))
    compiling = torch.compiler.is_compiling
    torch.compiler.substitute_in_graph(_core.affine_vjp)(_traced_vjp(_core.affine, _core.affine_backward))


def _traced_vjp(affine: Any, affine_backward: Any) -> Any:
    """What dynamo traces for `affine_vjp`: `affine`, and a `vjp` that calls `affine_backward`.

    The two are this function's closure, not globals, so that dynamo guards on neither.
    """

    def affine_vjp(x: Any, weight: Any, bias: Any = None, /, *, xp: Any = None) -> tuple[Any, Any]:
        def vjp(grad: Any, *, wrt: Any = None) -> Any:
            if wrt is None:  # (not GRAD_NAMES as the default: a guard on it)
                return affine_backward(grad, x, weight, bias)
            if isinstance(wrt, (set, frozenset)):  # a graph holds tuples, not sets
                wrt = tuple(sorted(wrt))
            return affine_backward(grad, x, weight, bias, wrt=wrt)

        return affine(x, weight, bias, xp=xp), vjp

    return affine_vjp


def register() -> None:
    """Register the functions with torch.compile once ``torch._dynamo`` is imported (now, if it is)."""
    wrapt.register_post_import_hook(_allow, "torch._dynamo")
