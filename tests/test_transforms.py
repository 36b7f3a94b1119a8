"""The four functions and the layer under compilers and function transforms.

torch.compile (one graph from the first call, no recompilation), torch.func and JAX's
transforms, each checked against the same transform of the hand-written layer.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xaffine import Affine, _backends, _validate, affine, affine_backward, affine_jvp, affine_vjp

# -- the four functions, and the same math written by hand -------------------------------


def _pair(g: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
    return (affine(x, w, b), *affine_backward(g, x, w, b))


def _pair_by_hand(g: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
    return x @ w.T + b, g @ w, g.T @ x, g.sum(0)


def _vjp(g: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
    out, vjp = affine_vjp(x, w, b)
    return (out, *vjp(g))


def _jvp(x: Any, w: Any, b: Any, dx: Any, dw: Any, db: Any) -> tuple[Any, ...]:
    return affine_jvp(x, w, b, (dx, dw, db))


def _jvp_by_hand(x: Any, w: Any, b: Any, dx: Any, dw: Any, db: Any) -> tuple[Any, ...]:
    return x @ w.T + b, dx @ w.T + x @ dw.T + db


# name: (xaffine's, hand-written, argument shapes); shapes of (batch 4, in 3, out 5)
FUNCTIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "affine": (lambda x, w, b: affine(x, w, b), lambda x, w, b: x @ w.T + b, ((4, 3), (5, 3), (5,))),
    "affine_backward": (_pair, _pair_by_hand, ((4, 5), (4, 3), (5, 3), (5,))),
    "affine_vjp": (_vjp, _pair_by_hand, ((4, 5), (4, 3), (5, 3), (5,))),
    "affine_jvp": (_jvp, _jvp_by_hand, ((4, 3), (5, 3), (5,), (4, 3), (5, 3), (5,))),
}
WEIGHT = {"affine": 1, "affine_backward": 2, "affine_vjp": 2, "affine_jvp": 1}  # the weight's position


def _host(shapes: tuple[tuple[int, ...], ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _squares(outputs: Any, xp: Any) -> Any:
    leaves = outputs if isinstance(outputs, tuple | list) else (outputs,)
    return sum(xp.sum(a * a) for a in leaves)


def _close(actual: Any, expected: Any) -> None:
    def flat(t: Any) -> list[Any]:
        if isinstance(t, tuple | list):
            return [leaf for item in t for leaf in flat(item)]
        return [t]

    got, want = flat(actual), flat(expected)
    assert len(got) == len(want)
    for a, e in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-6)


# -- torch.compile ------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a fresh Python process with this one's path; it must exit cleanly."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done


def _torch() -> Any:
    return pytest.importorskip("torch", reason="torch.compile and torch.func need torch")


@pytest.fixture
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo tables as in a fresh process, so that the first compiled call is also the
    first call (restored afterwards); torch.compile's own caches emptied, since they are
    kept per code object, which parametrized tests share."""
    _torch()._dynamo.reset()
    monkeypatch.setattr(_validate, "_SIGNATURES", {})
    monkeypatch.setattr(_backends, "_NAMESPACES", {})


def _layer_step(torch: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A training step on a layer (zero_grad, freeze, forward, backward, update), and the
    same step of a second, identical layer: one to compile, one to run eagerly."""

    def make() -> Callable[..., Any]:
        layer = Affine(3, 5, xp="torch", dtype="float64", seed=0)

        def step(g: Any, x: Any, w: Any, b: Any) -> tuple[Any, ...]:
            # Each step leaves the layer's settings as it found them: a compiled step is
            # guarded on them (another set of frozen names is another graph).
            layer.zero_grad()
            layer.freeze("bias")
            out = layer(x)
            dx = layer.backward(g)
            layer.unfreeze()
            layer.weight = layer.weight - 0.1 * layer.grads["weight"]
            return out, dx, layer.weight

        return step

    return make(), make()


CASES = [*FUNCTIONS, "affine_backward wrt=x", "affine_backward wrt=weight", "affine_backward wrt=bias", "layer"]


def _case(name: str, torch: Any) -> tuple[Callable[..., Any], Callable[..., Any], tuple[tuple[int, ...], ...]]:
    """(function to compile, the same run eagerly, argument shapes)."""
    if name == "layer":
        compiled, eager = _layer_step(torch)
        return compiled, eager, FUNCTIONS["affine_backward"][2]
    if name.startswith("affine_backward wrt="):
        wrt = name.partition("=")[2]

        def backward(g: Any, x: Any, w: Any, b: Any) -> Any:
            return getattr(affine_backward(g, x, w, b, wrt=wrt), wrt)

        return backward, backward, FUNCTIONS["affine_backward"][2]
    fn, _, shapes = FUNCTIONS[name]
    return fn, fn, shapes


def _resized(shapes: tuple[tuple[int, ...], ...], batch: int) -> tuple[tuple[int, ...], ...]:
    # The batch axis is the first of every array with two axes but the weight (5, 3).
    return tuple((batch, *s[1:]) if len(s) == 2 and s != (5, 3) else s for s in shapes)


@pytest.mark.parametrize("name", CASES)
def test_torch_compile_one_graph_from_the_first_call(name, fresh_caches):
    """fullgraph=True from a cold start, one compilation across new values, freed inputs
    and eager calls of other signatures in between; equal to eager results."""
    torch = _torch()
    from torch._dynamo.testing import CompileCounter

    compiled_fn, eager_fn, shapes = _case(name, torch)
    counter = CompileCounter()
    compiled = torch.compile(compiled_fn, backend=counter, fullgraph=True)
    for seed in range(3):
        args = [torch.asarray(h) for h in _host(shapes, seed)]
        _close(compiled(*args), eager_fn(*args))
        del args
        gc.collect()
        # Eager calls of other shapes, dtypes and libraries fill the memo tables meanwhile.
        affine(torch.ones(2, 6), torch.ones(7, 6), torch.ones(7))
        affine(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32))
        affine_backward(
            torch.ones(9, 2, dtype=torch.float64),
            torch.ones(9, 3, dtype=torch.float64),
            torch.ones(2, 3, dtype=torch.float64),
        )
    assert counter.frame_count == 1


@pytest.mark.parametrize("name", CASES)
def test_torch_compile_dynamic_batch_sizes_share_one_graph(name, fresh_caches):
    torch = _torch()
    from torch._dynamo.testing import CompileCounter

    compiled_fn, eager_fn, shapes = _case(name, torch)
    counter = CompileCounter()
    compiled = torch.compile(compiled_fn, backend=counter, fullgraph=True, dynamic=True)
    for batch in (2, 7, 16):
        args = [torch.asarray(h) for h in _host(_resized(shapes, batch), batch)]
        _close(compiled(*args), eager_fn(*args))
    assert counter.frame_count == 1


def test_torch_compile_mark_dynamic_batch_axis(fresh_caches):
    torch = _torch()
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compiled = torch.compile(_pair, backend=counter, fullgraph=True)
    for batch in (8, 3, 11):
        g, x, w, b = (torch.asarray(h) for h in _host(_resized(FUNCTIONS["affine_backward"][2], batch)))
        torch._dynamo.mark_dynamic(x, 0)
        torch._dynamo.mark_dynamic(g, 0)
        _close(compiled(g, x, w, b), _pair(g, x, w, b))
    assert counter.frame_count == 1


def test_torch_compile_aot_autograd_through_the_functions(fresh_caches):
    """aot_eager functionalises the in-place bias add and differentiates the graph."""
    torch = _torch()
    g, x, w, b = (torch.asarray(h).requires_grad_() for h in _host(FUNCTIONS["affine_backward"][2]))
    compiled = torch.compile(lambda x, w, b: affine(x, w, b), backend="aot_eager", fullgraph=True)
    compiled(x, w, b).backward(g.detach())
    expected = affine_backward(g.detach(), x.detach(), w.detach(), b.detach())
    _close((x.grad, w.grad, b.grad), tuple(expected))


@pytest.mark.parametrize("fullgraph", [False, True])
def test_torch_compile_checks_the_inputs_at_trace_time(fullgraph, fresh_caches):
    """Bad input is refused with xaffine's message, inside torch's error: the functions are
    operations of the graph, which torch.compile runs on fake tensors when it compiles. The
    second call's new shape makes the feature axis symbolic: it is compared all the same."""
    torch = _torch()
    compiled = torch.compile(lambda x, w: affine(x, w), backend="eager", fullgraph=fullgraph)
    compiled(torch.ones(2, 3), torch.ones(4, 3))
    size = r"(6|s\d+)"
    message = rf"`x` has {size} features \(shape \(2, {size}\)\) but `weight` expects 3"
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match=message):
        compiled(torch.ones(2, 6), torch.ones(4, 3))
    fresh = torch.compile(lambda x, w: affine(x, w), backend="eager", fullgraph=fullgraph)
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match=r"`x` has 6 features \(shape \(2, 6\)\)"):
        fresh(torch.ones(2, 6), torch.ones(4, 3))
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="must share one dtype"):
        compiled(torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3))


@pytest.mark.parametrize(
    "imports",
    ["import xaffine; import torch", "import torch; import xaffine", "import torch._dynamo; import xaffine"],
)
def test_torch_compile_in_a_fresh_process(imports):
    """The cold start for real, nothing called eagerly: xaffine imported before torch, after
    it, and after torch's compiler (whose import registers the functions, or has done)."""
    _torch()
    code = textwrap.dedent(
        f"""
        {imports}
        import torch
        from torch._dynamo.testing import CompileCounter

        x, w, b, g = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5), torch.randn(4, 5)
        layer = xaffine.Affine(3, 5, xp="torch")

        def step(x, w, b, g):
            out, vjp = xaffine.affine_vjp(x, w, b)
            layer.zero_grad()
            layer(x)
            layer.backward(g)
            return (xaffine.affine(x, w, b), *xaffine.affine_backward(g, x, w, b), out, *vjp(g),
                    *xaffine.affine_jvp(x, w, b, (x, w, b)), layer.grads["weight"])

        counter = CompileCounter()
        torch.compile(step, backend=counter, fullgraph=True)(x, w, b, g)
        print(counter.frame_count, len(torch._dynamo.explain(step)(x, w, b, g).out_guards))
        """
    )
    done = _python(code)
    frames, guards = (int(n) for n in done.stdout.split())
    assert frames == 1
    assert guards < 40, "the functions were traced, not registered"  # (some 200 when traced)


def test_registration_waits_for_torchs_compiler():
    """Importing xaffine imports no torch, nor does importing torch then load its compiler;
    the functions are registered when the compiler is imported."""
    _torch()
    code = (
        "import sys, xaffine\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "from xaffine import _compile\n"
        "assert _compile.compiling() is False and _compile.affine_backward is None\n"
        "import torch._dynamo\n"
        "assert _compile.compiling is torch.compiler.is_compiling\n"
        "assert _compile.affine_backward is xaffine.affine_backward\n"
    )
    _python(code)


@pytest.mark.parametrize(
    "case",
    [
        "for m in [m for m in sys.modules if m.startswith('xaffine')]: del sys.modules[m]\nimport xaffine",
        "import torch._dynamo, importlib\nimportlib.reload(xaffine)",
        "del torch.compiler.substitute_in_graph",
    ],
    ids=["imported twice", "reloaded", "an older torch"],
)
def test_registration_never_breaks_torchs_compiler(case):
    """xaffine imported twice or reloaded registers once; where registering fails (a torch
    without what it needs), it warns, and torch.compile works, xaffine's functions included."""
    _torch()
    code = (
        "import sys, warnings\nimport torch, xaffine\n"
        f"{case}\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import torch._dynamo\n"
        "print([str(w.message) for w in seen if w.category is RuntimeWarning])\n"
        "x, w = torch.ones(2, 3), torch.ones(4, 3)\n"
        "out = torch.compile(lambda x, w: xaffine.affine(x, w), backend='eager', fullgraph=True)(x, w)\n"
        "assert torch.equal(out, x @ w.T)\n"
    )
    done = _python(code)
    warned = "could not register its functions with torch.compile" in done.stdout
    assert warned == (case.startswith("del")), done.stdout


def test_torch_compile_what_a_graph_cannot_hold(fresh_caches):
    """A module as `xp`, a set as `wrt`, and a vjp returned from compiled code: each as eagerly."""
    torch = _torch()
    g, x, w, b = (torch.asarray(h) for h in _host(FUNCTIONS["affine_backward"][2]))

    def returned(x: Any, w: Any, b: Any) -> Any:
        return affine_vjp(x, w, b, xp=torch)

    out, vjp = torch.compile(returned, fullgraph=True, backend="eager")(x, w, b)
    _close((out, *vjp(g)), (x @ w.T + b, g @ w, g.T @ x, g.sum(0)))
    by_set = torch.compile(
        lambda g, x, w, b: affine_backward(g, x, w, b, wrt={"weight", "bias"}), fullgraph=True, backend="eager"
    )
    found = by_set(g, x, w, b)
    assert found.x is None
    _close((found.weight, found.bias), (g.T @ x, g.sum(0)))
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="`xp` is numpy's namespace"):
        torch.compile(lambda x, w: affine(x, w, xp=np), fullgraph=True, backend="eager")(x, w)
    jnp = pytest.importorskip("jax.numpy", reason="a module named jax.numpy as xp")
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="`xp` is jax's namespace"):
        torch.compile(lambda x, w: affine(x, w, xp=jnp), fullgraph=True, backend="eager")(x, w)
    with pytest.raises(TypeError, match="`wrt` must be a name or an iterable of names"):
        vjp(g, wrt=None)  # as eagerly: None is not "all three"


# NumPy code under torch.compile breaks the graph where dynamo cannot trace (the thread id), and says so.
@pytest.mark.filterwarnings("ignore:Dynamo does not know how to trace:UserWarning")
def test_torch_compile_numpy_arrays_stay_numpy(fresh_caches):
    """NumPy arguments under torch.compile go through xaffine's Python (traced as NumPy code),
    not the operations, which would take them as tensors: NumPy results, NumPy's rules."""
    torch = _torch()
    g, x, w, b = _host(FUNCTIONS["affine_backward"][2])
    out = torch.compile(lambda x, w, b: affine(x, w, b), backend="eager")(x, w, b)
    assert type(out) is np.ndarray
    _close(out, x @ w.T + b)
    grads = torch.compile(lambda g, x, w, b: affine_backward(g, x, w, b), backend="eager")(g, x, w, b)
    assert all(type(a) is np.ndarray for a in grads)
    layer = Affine(3, 5, xp="numpy", dtype="float64", seed=0)
    step = torch.compile(lambda x, g: (layer(x), layer.backward(g)), backend="eager")
    assert all(type(a) is np.ndarray for a in (*step(x, g), layer.grads["weight"], layer.grads["bias"]))
    with pytest.raises(TypeError, match="arrays from more than one library"):
        torch.compile(lambda x, w: affine(x, w), backend="eager")(x, torch.asarray(w))


@pytest.mark.parametrize("dynamic", [True, None])
@pytest.mark.parametrize("name", ["affine", "affine_backward", "affine_vjp", "affine_jvp"])
def test_torch_compile_python_number_bias(name, dynamic, fresh_caches):
    """A Python float bias (and tangent): torch.compile makes it a symbolic float after one
    value (at once with dynamic=True), which has no attributes to ask for."""
    torch = _torch()
    from torch._dynamo.testing import CompileCounter

    calls = {
        "affine": (lambda x, w, b: affine(x, w, b), lambda x, w, b: x @ w + b),
        "affine_backward": (
            lambda x, w, b: tuple(affine_backward(x[:, 0], x, w, b)),
            lambda x, w, b: (x[:, :1] * w, x[:, 0] @ x, x[:, 0].sum()),
        ),
        "affine_vjp": (lambda x, w, b: affine_vjp(x, w, b)[0], lambda x, w, b: x @ w + b),
        "affine_jvp": (lambda x, w, b: affine_jvp(x, w, b, (None, w, b)), lambda x, w, b: (x @ w + b, x @ w + b)),
    }
    ours, by_hand = calls[name]
    counter = CompileCounter()
    compiled = torch.compile(ours, backend=counter, fullgraph=True, dynamic=dynamic)
    x, w = (torch.asarray(h) for h in _host(((4, 3), (3,))))
    for b in (0.5, 0.7, 1.5):
        _close(compiled(x, w, b), by_hand(x, w, b))
    assert counter.frame_count == (1 if dynamic else 2)  # with dynamic=None: 0.5, then any float


def test_torch_compile_around_vmap_over_jvp_tangents(fresh_caches):
    """A batch of tangents beside an unbatched one, under torch.compile: the batched term is
    added out of place (in place, vmap cannot write a batch into one array)."""
    torch = _torch()
    x, w, b, dx, dw = (torch.asarray(h) for h in _host(((4, 3), (5, 3), (5,), (4, 3), (5, 3))))
    dbs, dws = torch.stack([b, 2 * b]), torch.stack([w, -w])
    cases = [
        (lambda db: affine_jvp(x, w, b, (dx, dw, db))[1], lambda db: dx @ w.T + x @ dw.T + db, dbs),
        (lambda dw_: affine_jvp(x, w, b, (dx, dw_, None))[1], lambda dw_: dx @ w.T + x @ dw_.T, dws),
        (lambda dw_: affine_jvp(x, w, b, (None, dw_, b))[1], lambda dw_: x @ dw_.T + b, dws),
    ]
    for ours, by_hand, batch in cases:
        expected = torch.func.vmap(by_hand)(batch)
        _close(torch.compile(torch.func.vmap(ours), backend="eager", fullgraph=True)(batch), expected)
        _close(torch.func.vmap(torch.compile(ours, backend="eager"))(batch), expected)


# Inductor's autotuning imports torch code that uses torch.jit.script_method, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("mode", ["max-autotune-no-cudagraphs", "reduce-overhead"])
def test_torch_compile_modes_one_output_form(mode, fresh_caches):
    """The one-output form (a 1-D weight, a 0-d bias) under inductor's other modes."""
    torch = _torch()
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("torch.compile's inductor backend needs a C compiler on the CPU")
    x, w, b = (torch.asarray(h) for h in _host(((4, 3), (3,), ())))
    compiled = torch.compile(lambda x, w, b: affine(x, w, b), mode=mode, fullgraph=True)
    _close(compiled(x, w, b), x @ w + b)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # as test_torch_func
def test_torch_compile_around_second_order_one_output_form(fresh_caches):
    """torch.compile of jacrev over jacfwd of the one-output form's weight gradient."""
    torch = _torch()
    from torch.func import jacfwd, jacrev

    x, w, g = (torch.asarray(h) for h in _host(((4, 3), (3,), (4,))))

    def ours(g: Any) -> Any:
        return (affine_backward(g, x, w, wrt="weight").weight ** 2).sum()

    def by_hand(g: Any) -> Any:
        return ((g @ x) ** 2).sum()

    compiled = torch.compile(lambda g: jacrev(jacfwd(ours))(g), backend="eager", fullgraph=True)
    _close(compiled(g), jacrev(jacfwd(by_hand))(g))


def _guards(torch: Any, fn: Callable[..., Any], args: list[Any]) -> list[Any]:
    return torch._dynamo.explain(fn)(*args).out_guards


def _on_xaffine(guards: list[Any]) -> list[str]:
    return [g.name for g in guards if _backends.on_xaffine(g.originating_source)]


@pytest.mark.parametrize("name", [c for c in CASES if c != "layer"])
def test_torch_compile_guards_the_functions_as_hand_written_code(name, fresh_caches):
    """The functions are operations of the graph: compiled code is guarded on the caller's
    tensors, as the hand-written code is, and on at most five names more (the functions
    called); of xaffine's modules, on `affine_vjp`'s vjp alone (a global, so that a vjp
    returned from compiled code can be rebuilt)."""
    torch = _torch()
    fn = _case(name, torch)[0]
    key = "affine_backward" if name not in FUNCTIONS else name
    by_hand, shapes = FUNCTIONS[key][1], FUNCTIONS[key][2]
    args = [torch.asarray(h) for h in _host(shapes)]
    ours, theirs = _guards(torch, fn, args), _guards(torch, by_hand, args)
    assert len(theirs) <= len(ours) <= len(theirs) + 5, [g.name for g in ours]
    assert len(_on_xaffine(ours)) == (2 if name == "affine_vjp" else 0), _on_xaffine(ours)


def test_torch_compile_guards_a_layer_step_on_few_of_xaffines_names(fresh_caches):
    """A layer's forward and backward read the layer (its parameters, settings, saved input)
    and, of xaffine's modules, no more than five names: the two functions and the compiling
    check. (Setting a parameter or freezing one runs the setter's checks as traced Python.)"""
    torch = _torch()
    layer = Affine(3, 5, xp="torch", dtype="float64", seed=0)

    def step(g: Any, x: Any) -> Any:
        layer.zero_grad()
        return layer(x), layer.backward(g), layer.grads["weight"]

    g, x = (torch.asarray(h) for h in _host(FUNCTIONS["affine_backward"][2][:2]))
    assert 0 < len(_on_xaffine(_guards(torch, step, [g, x]))) <= 5
    _close(torch.compile(step, backend="eager", fullgraph=True)(g, x), step(g, x))


def test_the_guard_filter_is_deprecated_and_still_works(fresh_caches):
    torch = _torch()
    from xaffine import skip_guards_on_xaffine

    fn, eager, shapes = _case("affine_vjp", torch)
    compiled = torch.compile(fn, backend="eager", fullgraph=True, options={"guard_filter_fn": skip_guards_on_xaffine})
    args = [torch.asarray(h) for h in _host(shapes)]
    with pytest.warns(DeprecationWarning, match="skip_guards_on_xaffine is no longer needed"):
        _close(compiled(*args), eager(*args))


def test_torch_compile_keeps_the_callers_state_guarded(fresh_caches):
    """Compiled code stays guarded on what makes it valid for the caller: a layer's
    settings, the tensors' dtypes and shapes (a bad one raises xaffine's error at compile time)."""
    torch = _torch()
    from torch._dynamo.testing import CompileCounter

    layer = Affine(3, 5, xp="torch", dtype="float64", seed=0)
    frozen: list[str] = []

    def step(x: Any, g: Any) -> Any:
        layer.zero_grad()
        if frozen:
            layer.freeze(*frozen)
        out = layer(x)
        layer.backward(g)
        layer.unfreeze()
        return out, layer.grads.get("bias")

    counter = CompileCounter()
    compiled = torch.compile(step, backend=counter, fullgraph=True)
    x, g = torch.ones(4, 3, dtype=torch.float64), torch.ones(4, 5, dtype=torch.float64)
    assert compiled(x, g)[1] is not None
    frozen.append("bias")  # the caller's global list: guarded, so this recompiles
    assert compiled(x, g)[1] is None
    assert counter.frame_count == 2
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="must share one dtype"):
        compiled(torch.ones(4, 3), g)
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match=r"`x` has (4|s\d+) features"):
        compiled(torch.ones(2, 4, dtype=torch.float64), torch.ones(2, 5, dtype=torch.float64))


def test_thread_guard_still_refuses_after_a_compiled_step():
    """Compiled steps skip the thread comparison (no thread runs compiled code's Python);
    eager calls of the same layer keep it."""
    torch = _torch()
    import threading

    layer = Affine(3, 2, xp="torch", seed=0)
    step = torch.compile(lambda x, g: (layer(x), layer.backward(g)), backend="eager", fullgraph=True)
    step(torch.ones(4, 3), torch.ones(4, 2))
    layer(torch.ones(4, 3))
    errors = []

    def other() -> None:
        try:
            layer.backward(torch.ones(4, 2))
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert errors
    assert "another thread" in errors[0]
    layer.backward(torch.ones(4, 2))


# -- torch.func ---------------------------------------------------------------------------


def _torch_transforms(torch: Any) -> dict[str, Callable[[Callable[..., Any], list[Any], str], Any]]:
    func = torch.func

    def each_arg(fn: Callable[..., Any], args: list[Any]) -> tuple[int, ...]:
        return tuple(range(len(args)))

    def batch(args: list[Any], dims: tuple[int | None, ...]) -> list[Any]:
        return [a if d is None else torch.stack([a, 2 * a, -a]) for a, d in zip(args, dims, strict=True)]

    def vmap(dims_of: Callable[[str, int], tuple[int | None, ...]]) -> Callable[..., Any]:
        def run(fn: Callable[..., Any], args: list[Any], name: str) -> Any:
            dims = dims_of(name, len(args))
            return func.vmap(fn, in_dims=dims)(*batch(args, dims))

        return run

    return {
        "grad": lambda fn, args, _: func.grad(lambda *a: _squares(fn(*a), torch), argnums=each_arg(fn, args))(*args),
        "vjp": lambda fn, args, _: func.vjp(fn, *args)[1](fn(*args)),
        "jvp": lambda fn, args, _: func.jvp(fn, tuple(args), tuple(a * 0.5 for a in args)),
        "jacrev": lambda fn, args, _: func.jacrev(fn, argnums=each_arg(fn, args))(*args),
        "jacfwd": lambda fn, args, _: func.jacfwd(fn, argnums=each_arg(fn, args))(*args),
        "vmap first": vmap(lambda name, n: (0,) + (None,) * (n - 1)),
        "vmap weights": vmap(lambda name, n: tuple(0 if i == WEIGHT[name] else None for i in range(n))),
        "vmap all": vmap(lambda name, n: (0,) * n),
        # affine_jvp: a batch of (dweight, dbias) beside one dx, whose product is not batched
        "vmap tangents": vmap(lambda name, n: (None,) * (n - 2) + (0, 0) if n == 6 else (0,) + (None,) * (n - 1)),
        "vmap grad": lambda fn, args, _: func.vmap(
            func.grad(lambda a, *rest: _squares(fn(a, *rest), torch)), in_dims=(0,) + (None,) * (len(args) - 1)
        )(torch.stack([args[0], -args[0]]), *args[1:]),
        "hessian": lambda fn, args, _: func.hessian(lambda a: _squares(fn(a, *args[1:]), torch))(args[0]),
    }


# torch.func's forward mode scripts its decompositions on first use, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "transform",
    [
        "grad",
        "vjp",
        "jvp",
        "jacrev",
        "jacfwd",
        "vmap first",
        "vmap weights",
        "vmap all",
        "vmap tangents",
        "vmap grad",
        "hessian",
    ],
)
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_torch_func(name, transform):
    torch = _torch()
    fn, by_hand, shapes = FUNCTIONS[name]
    args = [torch.asarray(h) for h in _host(shapes)]
    run = _torch_transforms(torch)[transform]
    _close(run(fn, args, name), run(by_hand, args, name))


# -- JAX ----------------------------------------------------------------------------------


def _jax() -> Any:
    return pytest.importorskip("jax", reason="the JAX transforms need jax")


def _jax_transforms(jax: Any) -> dict[str, Callable[[Callable[..., Any], list[Any], str], Any]]:
    jnp = jax.numpy

    def batch(args: list[Any], dims: tuple[int | None, ...]) -> list[Any]:
        return [a if d is None else jnp.stack([a, 2 * a, -a]) for a, d in zip(args, dims, strict=True)]

    def vmap(dims_of: Callable[[str, int], tuple[int | None, ...]]) -> Callable[..., Any]:
        def run(fn: Callable[..., Any], args: list[Any], name: str) -> Any:
            dims = dims_of(name, len(args))
            return jax.vmap(fn, in_axes=dims)(*batch(args, dims))

        return run

    def squares(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *a: _squares(fn(*a), jnp)

    every = lambda args: tuple(range(len(args)))  # noqa: E731
    return {
        "jit": lambda fn, args, _: jax.jit(fn)(*args),
        "grad": lambda fn, args, _: jax.grad(squares(fn), argnums=every(args))(*args),
        "vjp": lambda fn, args, _: jax.vjp(fn, *args)[1](fn(*args)),
        "jvp": lambda fn, args, _: jax.jvp(fn, tuple(args), tuple(a * 0.5 for a in args)),
        "vmap first": vmap(lambda name, n: (0,) + (None,) * (n - 1)),
        "vmap weights": vmap(lambda name, n: tuple(0 if i == WEIGHT[name] else None for i in range(n))),
        "vmap tangents": vmap(lambda name, n: (None,) * (n - 3) + (0, 0, 0) if n == 6 else (0,) * n),
        "hessian": lambda fn, args, _: jax.hessian(lambda a: squares(fn)(a, *args[1:]))(args[0]),
        "checkpoint": lambda fn, args, _: jax.grad(squares(jax.checkpoint(fn)), argnums=every(args))(*args),
        "jit vmap grad": lambda fn, args, _: jax.jit(
            jax.vmap(jax.grad(lambda a, *r: squares(fn)(a, *r)), in_axes=(0,) + (None,) * (len(args) - 1))
        )(jnp.stack([args[0], -args[0]]), *args[1:]),
        "jacfwd jacrev": lambda fn, args, _: jax.jacfwd(jax.jacrev(lambda a: squares(fn)(a, *args[1:])))(args[0]),
    }


@pytest.mark.parametrize(
    "transform",
    [
        "jit",
        "grad",
        "vjp",
        "jvp",
        "vmap first",
        "vmap weights",
        "vmap tangents",
        "hessian",
        "checkpoint",
        "jit vmap grad",
        "jacfwd jacrev",
    ],
)
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_jax_transforms(name, transform):
    jax = _jax()
    fn, by_hand, shapes = FUNCTIONS[name]
    args = [jax.numpy.asarray(h, dtype=jax.numpy.float32) for h in _host(shapes)]
    run = _jax_transforms(jax)[transform]
    _close(run(fn, args, name), run(by_hand, args, name))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_jax_python_number_bias_under_transforms(dtype):
    """jax.jit's arguments and jax.grad's variable make a Python number a weakly typed 0-d
    array: it is still a number, added in x's dtype (a complex one refused for real x)."""
    jax = _jax()
    jnp = jax.numpy
    host = _host(((4, 3), (3,), (4,)))
    x, w, g = (jnp.asarray(h, dtype=dtype) for h in host)
    wide = [np.asarray(a, dtype=np.float64) for a in (x, w, g)]
    out = jax.jit(lambda x, w, b: affine(x, w, b))(x, w, 0.5)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), wide[0] @ wide[1] + 0.5, rtol=2e-2, atol=2e-2)
    grads = jax.jit(lambda g, x, w, b: affine_backward(g, x, w, b))(g, x, w, 0.5)
    assert [a.dtype for a in grads] == [x.dtype] * 3
    db = jax.grad(lambda b: jnp.sum(affine(x, w, b).astype(jnp.float32)))(0.5)
    np.testing.assert_allclose(float(db), 4.0)
    tangent = jax.jit(lambda x, w, b: affine_jvp(x, w, b, (None, None, b))[1])(x, w, 0.5)
    np.testing.assert_allclose(np.asarray(tangent, dtype=np.float64), np.full(4, 0.5))
    with pytest.raises(TypeError, match=r"`bias` is a complex number .* but `x` is real"):
        jax.jit(lambda x, w, b: affine(x, w, b))(x, w, 1j)
    with pytest.raises(TypeError, match="must share one dtype"):  # a 0-d array of another dtype is not a number
        affine(x, w, jnp.asarray(0.5, dtype=jnp.float32 if dtype == "float16" else jnp.float16))


@pytest.mark.parametrize("transform", ["eager", "jit", "grad"])
def test_jax_number_tangent_beside_a_traced_number_bias(transform):
    """A number bias is a weakly typed 0-d tracer under jax.jit and jax.grad: its tangent may
    still be a number, as eagerly."""
    jax = _jax()
    jnp = jax.numpy
    x, w = jnp.asarray(_host(((4, 3),))[0], dtype=jnp.float32), jnp.ones(3, dtype=jnp.float32)

    def tangent_out(b):
        return affine_jvp(x, w, b, (None, None, 1.0))[1]

    expected = np.ones(4, dtype=np.float32)
    w2 = jnp.ones((1, 3), dtype=jnp.float32)  # a number tangent beside an array bias: refused alike
    refused = lambda t: affine_jvp(x, w2, jnp.ones(1, jnp.float32), (None, None, t))  # noqa: E731
    with pytest.raises(TypeError, match=r"`tangents\[2\] \(dbias\)` must be an array of `bias`'s shape"):
        (refused if transform == "eager" else jax.jit(refused))(1.0)
    if transform == "grad":  # the tangent does not depend on the bias
        assert float(jax.grad(lambda b: jnp.sum(tangent_out(b)))(0.5)) == 0.0
        return
    found = tangent_out(0.5) if transform == "eager" else jax.jit(tangent_out)(0.5)
    assert found.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(found), expected)


def test_jax_layer_refuses_tracers():
    """A layer keeps arrays across calls; a JAX transform's tracers must not outlive it, so a
    layer refuses them with a message that says what to do (the state dict and the functions),
    and keeps nothing from the refused call."""
    jax = _jax()
    jnp = jax.numpy
    layer = Affine(3, 5, xp="jax", seed=0)
    x, g = jnp.ones((4, 3), dtype=layer.weight.dtype), jnp.ones((4, 5), dtype=layer.weight.dtype)
    before = {k: np.asarray(v) for k, v in layer.state_dict().items()}
    pattern = r"`{}` is traced by a function transform .*state_dict\(\)"
    with pytest.raises(RuntimeError, match=pattern.format("x")):
        jax.jit(lambda x: layer(x))(x)
    with pytest.raises(RuntimeError, match=pattern.format("x")):
        jax.grad(lambda x: jnp.sum(layer(x)))(x)
    layer(x)
    with pytest.raises(RuntimeError, match=pattern.format("grad")):
        jax.vmap(lambda g: layer.backward(g))(jnp.stack([g, g]))
    with pytest.raises(RuntimeError, match=pattern.format("weight")):
        jax.jit(lambda w: layer.load_state_dict({"weight": w, "bias": layer.bias}))(layer.weight)
    for make in (
        lambda w: Affine.from_state_dict({"weight": w}, xp="jax"),
        lambda w: Affine.from_state_dict({"weight": w}, xp="numpy"),
        lambda w: Affine.from_state_dict({"weight": layer.weight, "bias": w[0]}, xp="jax"),
        # Made inside the transform from concrete arrays: JAX's arrays made there are traced too.
        lambda w: Affine.from_state_dict({"weight": np.ones((2, 4), np.float32)}, xp="jax"),
        lambda w: Affine(4, 2, xp="jax", seed=0),
    ):
        with pytest.raises(RuntimeError, match=pattern.format("(weight|bias)")):
            jax.jit(make)(layer.weight)
    assert all(np.array_equal(np.asarray(v), before[k]) for k, v in layer.state_dict().items())
    assert all(v is None for v in layer.grads.values())
    layer.backward(g)  # eagerly, all is as before
    _close(layer.grads["weight"], np.asarray(g).T @ np.asarray(x))


def test_jax_jitted_training_step_with_the_state_dict(monkeypatch):
    """Parameters in, new parameters out; once traced, no xaffine Python runs per call."""
    jax = _jax()
    jnp = jax.numpy
    layer = Affine(3, 5, xp="jax", seed=0)
    x, y = (jnp.asarray(h, dtype=jnp.float32) for h in _host(((8, 3), (8, 5))))

    @jax.jit
    def step(state: dict[str, Any], x: Any, y: Any) -> dict[str, Any]:
        out, vjp = affine_vjp(x, state["weight"], state["bias"])
        grads = vjp(2 * (out - y) / out.size, wrt=("weight", "bias"))
        return {"weight": state["weight"] - 0.1 * grads.weight, "bias": state["bias"] - 0.1 * grads.bias}

    state = step(layer.state_dict(), x, y)
    calls = []
    real = _validate.prepare
    monkeypatch.setattr("xaffine._core.prepare", lambda *a, **k: calls.append(1) or real(*a, **k))
    expected = {k: np.asarray(v) for k, v in state.items()}
    for _ in range(3):
        weight, bias = expected["weight"], expected["bias"]
        out = np.asarray(x) @ weight.T + bias
        g = 2 * (out - np.asarray(y)) / out.size
        expected = {"weight": weight - 0.1 * g.T @ np.asarray(x), "bias": bias - 0.1 * g.sum(0)}
        state = step(state, x, y)
        _close((state["weight"], state["bias"]), (expected["weight"], expected["bias"]))
    assert calls == []
    assert step._cache_size() == 1
    layer.load_state_dict(state)
    _close(layer.weight, state["weight"])
