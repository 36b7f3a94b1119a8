"""What a repeated call skips, and what it still checks: counted calls, never timings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xaffine import Affine, _core, _dispatch, _validate, affine, affine_backward, affine_vjp


def _inputs(x_shape=(3, 4), n=2, dtype="float32"):
    rng = np.random.default_rng(0)
    k = x_shape[-1]
    return tuple(rng.standard_normal(s).astype(dtype) for s in (x_shape, (n, k), (n,), (*x_shape[:-1], n)))


@pytest.fixture
def count(monkeypatch):
    """``count(module, name)``: wrap a function of a module and return its call counter."""

    def wrap(module, name):
        calls = [0]
        original = getattr(module, name)

        def counted(*args, **kwargs):
            calls[0] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
        return calls

    return wrap


def test_a_seen_signature_skips_the_full_checks(count):
    x, w, b, g = _inputs(x_shape=(5, 7), n=3)
    full = count(_validate, "_prepare")
    affine(x, w, b)
    affine(x + 1, w * 2, b)  # new arrays, same signature
    affine_backward(g, x, w, b)
    assert full[0] <= 1
    affine(x[:4], w, b)  # another shape: another signature
    assert full[0] <= 2


def test_xp_given_is_resolved_once_per_signature(count):
    import array_api_compat.numpy as xp

    x, w, b, _ = _inputs(x_shape=(2, 9), n=3)
    resolved = count(_dispatch, "resolve")
    for _ in range(3):
        affine(x, w, b, xp=xp)
    assert resolved[0] <= 1


@pytest.mark.parametrize(
    ("which", "pattern"),
    [
        ("shape", r"`grad` must have the output's shape \(3, 2\); got \(3, 3\)"),
        ("dtype", r"`x` and `grad` must share one dtype; got float32 and float64"),
        ("list", r"`grad` must be an array of an Array API library; got list"),
    ],
)
def test_a_seen_signature_still_checks_grad(which, pattern):
    x, w, b, g = _inputs()
    affine_backward(g, x, w, b)  # the signature is now known
    bad = {"shape": np.ones((3, 3), np.float32), "dtype": g.astype(np.float64), "list": g.tolist()}[which]
    exc = TypeError if which != "shape" else ValueError
    with pytest.raises(exc, match=re.escape(pattern) if which == "list" else pattern):
        affine_backward(bad, x, w, b)
    _, vjp = affine_vjp(x, w, b)
    with pytest.raises(exc, match=pattern):
        vjp(bad)


def test_a_seen_signature_still_compares_devices():
    xp = pytest.importorskip("array_api_strict", reason="a second CPU device comes from array_api_strict")
    x, w, b = xp.ones((3, 4)), xp.ones((2, 4)), xp.ones(2)
    affine(x, w, b)  # the signature is now known, on one device
    other = xp.Device("device1")
    with pytest.raises(ValueError, match=r"`x` is on device .*CPU_DEVICE.* but `weight` is on device .*device1"):
        affine(x, xp.asarray(w, device=other), b)
    with pytest.raises(ValueError, match=r"`x` is on device .*CPU_DEVICE.* but `bias` is on device .*device1"):
        affine(x, w, xp.asarray(b, device=other))
    _, vjp = affine_vjp(x, w, b)
    with pytest.raises(ValueError, match=r"`x` is on device .*CPU_DEVICE.* but `grad` is on device .*device1"):
        vjp(xp.ones((3, 2), device=other))
    moved = affine(*(xp.asarray(a, device=other) for a in (x, w, b)))  # all on the other device: fine
    assert moved.device == other


@pytest.mark.parametrize("moved", ["x", "weight", "bias", "grad"])
def test_a_seen_torch_signature_still_compares_devices(moved):
    """torch tensors' signatures hold their devices: a seen one on the CPU does not let an
    argument on another device through (torch's meta device: no GPU needed)."""
    torch = pytest.importorskip("torch", reason="torch's signatures hold devices")
    args = {k: torch.asarray(a) for k, a in zip(("x", "weight", "bias", "grad"), _inputs(), strict=True)}
    affine_backward(args["grad"], args["x"], args["weight"], args["bias"])  # the signature is now known
    _, vjp = affine_vjp(args["x"], args["weight"], args["bias"])
    args[moved] = args[moved].to("meta")
    pattern = rf"`x` is on device cpu but `{moved}` is on device meta"
    if moved == "x":  # then x's device rules, and the weight is on another
        pattern = r"`x` is on device meta but `weight` is on device cpu"
    with pytest.raises(ValueError, match=pattern):
        affine_backward(args["grad"], args["x"], args["weight"], args["bias"])
    if moved == "grad":
        with pytest.raises(ValueError, match=pattern):
            vjp(args["grad"])
    else:
        with pytest.raises(ValueError, match=pattern):
            affine(args["x"], args["weight"], args["bias"])
    meta = {k: a.to("meta") for k, a in args.items()}  # all on one other device: fine
    assert affine_backward(meta["grad"], meta["x"], meta["weight"], meta["bias"]).weight.device.type == "meta"


def test_a_seen_torch_signature_still_checks_grad():
    torch = pytest.importorskip("torch", reason="torch's gradients are compared to one signature")
    x, w, b, g = (torch.asarray(a) for a in _inputs())
    affine_backward(g, x, w, b)
    for bad, exc, pattern in (
        (g.double(), TypeError, "`x` and `grad` must share one dtype"),
        (g[:2], ValueError, r"`grad` must have the output's shape \(3, 2\); got \(2, 2\)"),
        (g.numpy(), TypeError, "arrays from more than one library"),
    ):
        with pytest.raises(exc, match=pattern):
            affine_backward(bad, x, w, b)


def test_the_vjp_does_not_check_the_inputs_again(count):
    x, w, b, g = _inputs()
    _out, vjp = affine_vjp(x, w, b)
    prepared = count(_core, "prepare")
    vjp(g)
    vjp(g, wrt="x")
    assert prepared[0] == 0


def test_the_signature_memo_stays_bounded():
    _x, w, b, _ = _inputs(x_shape=(1, 4))
    for rows in range(_validate._MAX_SIGNATURES + 10):
        affine(np.ones((rows, 4), np.float32), w, b)
    assert len(_validate._SIGNATURES) <= _validate._MAX_SIGNATURES


def test_numpy_row_sum_comes_from_the_backend_row(monkeypatch):
    import array_api_compat.numpy as xp

    def refuse(*args, **kwargs):
        raise AssertionError("the namespace's sum was called")

    monkeypatch.setattr(xp, "sum", refuse)
    x, w, b, g = _inputs()
    np.testing.assert_allclose(affine_backward(g, x, w, b).bias, g.sum(0), rtol=1e-6)


def test_the_layer_passes_check_wrt_a_set_it_takes_as_is(monkeypatch):
    x, _w, _b, g = _inputs()
    seen = []

    def recording(wrt):
        names = _validate.check_wrt(wrt)
        seen.append(names is wrt)
        return names

    monkeypatch.setattr(_core, "check_wrt", recording)
    layer = Affine(4, 2, xp="numpy")
    layer.freeze("bias")
    layer(x)
    layer.backward(g)
    assert seen == [True]
    assert layer.grads["bias"] is None
    assert layer.grads["weight"] is not None
