"""ONNX models of the layer, traced through ndonnx from the same code every backend runs.

:func:`export` builds the graph by calling :func:`xaffine.affine` (and, for the backward
model, :func:`xaffine.affine_backward`) on symbolic ndonnx arrays; ndonnx records each
Array API call as ONNX operators. Needs the ``onnx`` extra: ``pip install 'xaffine[onnx]'``.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._atomic import replacing_all
from ._backends import dtype_name, to_numpy
from ._core import affine, affine_backward
from ._dispatch import describe, is_number, refuse_matrices, refuse_past_float64
from ._layer import Affine

__all__ = ["OPSET", "backward_path", "export"]

OPSET = 21
"""The ``ai.onnx`` opset of the exported models (the one ndonnx emits)."""

_DTYPES = ("float16", "float32", "float64")
# An ONNX model is one protobuf message, which cannot exceed 2 GiB; the graph besides the
# parameters takes a few kilobytes.
_MAX_MODEL_BYTES = (1 << 31) - 1
_GRAPH_BYTES = 1 << 16


def backward_path(path: str | os.PathLike[str]) -> str:
    """Where :func:`export` writes the backward model: ``model.onnx`` -> ``model.backward.onnx``."""
    name = os.fspath(path)
    stem, suffix = os.path.splitext(name)
    return f"{stem}.backward{suffix or '.onnx'}"


def export(
    layer_or_params: Affine | Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    backward: bool = False,
    batch: str | int | Sequence[str | int] = "N",
) -> list[str]:
    """Write an ONNX model of the layer's forward pass (and with `backward`, of its gradients).

    Parameters
    ----------
    layer_or_params : Affine or mapping
        A layer, or its parameters: ``{"weight": ..., "bias": ...}`` (``"bias"`` optional),
        arrays of any backend. A 1-D weight (one output) takes a 0-d bias or a Python
        number, as :func:`xaffine.affine` does.
    path : str or path
        The model file, replaced atomically; it must be a regular file or absent.
    backward : bool, default False
        Also write the backward model, at :func:`backward_path` of `path`. Both models are
        built and written before either file is replaced: on any failure both files keep
        their old contents.
    batch : str, int or sequence of them, default "N"
        The leading axes of ``x``: a name is a symbolic (any-size) axis, an int a fixed
        size (0 to 2**63 - 1). ``("B", "T")`` takes ``x`` of shape ``(B, T, in_features)``;
        ``()`` a 1-D ``x``.

    Returns
    -------
    list of str
        The files written: `path`, then the backward model's.

    Raises
    ------
    ImportError
        Without ndonnx and onnx installed.
    TypeError
        For parameters of a dtype ONNX models are not exported in (complex, bfloat16:
        never converted silently), or a `batch` that is not names and sizes.
    ValueError
        For parameters of the wrong shapes or of more than 2 GiB (an ONNX model is one
        protobuf message, at most 2 GiB), a repeated axis name in `batch`, or a size out
        of range.
    OSError
        If a file cannot be written, or is not a regular file (a directory, a device);
        both files are then as they were.

    Notes
    -----
    The models use the default ONNX domain at opset :data:`OPSET` and the parameters'
    dtype (float16, float32 or float64). Names, with ``...`` the axes of `batch`:

    Forward model (`path`)
        input ``x`` ``(..., in_features)``; output ``out`` ``(..., out_features)`` (``(...)``
        for a 1-D weight). Without `backward` the parameters are constants of the graph;
        with it they are also inputs, ``weight`` and ``bias``, whose initializers hold the
        layer's values, so that a training loop can feed the updated ones.
    Backward model (:func:`backward_path`)
        inputs ``grad`` (``dA``, the output's shape) and ``x``, and ``weight`` (default: the
        layer's); outputs ``grad_x`` (``dX = dA conj(W)``), ``grad_weight``
        (``dW = dA^T conj(X)``) and, with a bias, ``grad_bias`` (``db = sum(dA)``).

    Examples
    --------
    >>> import os, tempfile, numpy as np, pytest
    >>> onnxruntime = pytest.importorskip("onnxruntime")  # and ndonnx: pip install 'xaffine[onnx]'
    >>> _ = pytest.importorskip("ndonnx")
    >>> from xaffine import Affine
    >>> from xaffine.onnx import export
    >>> layer = Affine(3, 2, xp="numpy", seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.onnx")
    >>> export(layer, path) == [path]
    True
    >>> session = onnxruntime.InferenceSession(path)
    >>> x = np.ones((5, 3), dtype=np.float32)
    >>> (out,) = session.run(["out"], {"x": x})
    >>> bool(np.allclose(out, layer(x)))
    True
    """
    weight, bias = _params(layer_or_params)
    lead = _leading(batch)
    import ndonnx as ndx
    import onnx

    models = [("forward", os.fspath(path))] + ([("backward", backward_path(path))] if backward else [])
    built = []
    for kind, _ in models:
        model = _build(ndx, kind, weight, bias, lead, inputs=backward)
        onnx.checker.check_model(model)
        built.append(model.SerializeToString())
    written = [name for _, name in models]
    with replacing_all(written) as files:
        for f, data in zip(files, built, strict=True):
            f.write(data)
    return written


def _native(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """`a` in native byte order (ONNX has no other): the same values."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _params(given: Affine | Mapping[str, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    state = given.state_dict() if isinstance(given, Affine) else given
    if not isinstance(state, Mapping) or "weight" not in state:
        msg = f"`layer_or_params` must be an Affine or a mapping with 'weight' (and 'bias'); got {type(given).__name__}"
        raise TypeError(msg)
    unknown = set(state) - {"weight", "bias"}
    if unknown:
        msg = f"`layer_or_params` has unknown key {sorted(unknown)[0]!r}; expected 'weight' and 'bias'"
        raise ValueError(msg)
    for key, value in state.items():
        if value is None or (key == "bias" and is_number(value)):
            continue
        if not hasattr(value, "dtype") or not hasattr(value, "shape"):
            msg = f"`{key}` must be an array; got {describe(value)}"
            raise TypeError(msg)
        refuse_matrices(value, key)  # as the functions do: a mask dropped, its values exported
        # Before any copy to the host, which gives bfloat16 as float32.
        if dtype_name(value.dtype) not in _DTYPES:
            msg = (
                f"`{key}` has dtype {dtype_name(value.dtype)}; ONNX models are exported in {', '.join(_DTYPES)} "
                "and never in another dtype than the layer's: convert it first, e.g. layer.to(dtype='float32')"
            )
            raise TypeError(msg)
    weight = _native(to_numpy(state["weight"], "`weight`"))
    given_bias = state.get("bias")
    if is_number(given_bias):
        if weight.ndim != 1:
            msg = (
                f"`bias` must be an array of shape {weight.shape[:-1]} for a weight of shape {weight.shape}; "
                f"got {given_bias!r}"
            )
            raise ValueError(msg)
        refuse_past_float64(given_bias, "bias")
        if isinstance(given_bias, complex | np.complexfloating):
            msg = f"`bias` is the complex number {given_bias!r} but `weight` is real ({weight.dtype})"
            raise TypeError(msg)
        given_bias = np.asarray(given_bias, dtype=weight.dtype)
    bias = None if given_bias is None else _native(to_numpy(given_bias, "`bias`"))
    if weight.ndim not in (1, 2):
        msg = f"`weight` must be 2-D (out_features, in_features) or 1-D (in_features,); got shape {weight.shape}"
        raise ValueError(msg)
    if bias is not None:
        if bias.dtype != weight.dtype:
            msg = f"`bias` has dtype {bias.dtype} but `weight` {weight.dtype}; they must share one"
            raise TypeError(msg)
        if bias.shape != weight.shape[:-1]:
            msg = f"`bias` must have shape {weight.shape[:-1]} for a weight of shape {weight.shape}; got {bias.shape}"
            raise ValueError(msg)
    nbytes = weight.nbytes + (0 if bias is None else bias.nbytes)
    if nbytes > _MAX_MODEL_BYTES - _GRAPH_BYTES:
        msg = (
            f"the parameters take {nbytes} bytes ({nbytes / 2**30:.2f} GiB) and an ONNX model file holds at most "
            "2 GiB (one protobuf message); export a smaller layer, or split its outputs into several layers"
        )
        raise ValueError(msg)
    return weight, bias


_MAX_SIZE = int(np.iinfo(np.int64).max)


def _axis(a: object, batch: object) -> str | int:
    """One leading axis: a name, or a size that ONNX's int64 dimensions hold."""
    if isinstance(a, str):
        if not a:
            msg = f"`batch` has an empty axis name: {batch!r}"
            raise ValueError(msg)
        return a
    if isinstance(a, bool | np.bool_):
        msg = f"`batch` must be axis names (str) and sizes (int); got {a!r} in {batch!r}"
        raise TypeError(msg)
    try:
        size = operator.index(a)  # type: ignore[arg-type]
    except TypeError:
        msg = f"`batch` must be axis names (str) and sizes (int); got {describe(a)} in {batch!r}"
        raise TypeError(msg) from None
    if not 0 <= size <= _MAX_SIZE:
        msg = f"`batch` sizes must be from 0 to 2**63 - 1 (ONNX's int64); got {size} in {batch!r}"
        raise ValueError(msg)
    return size


def _leading(batch: object) -> tuple[str | int, ...]:
    if isinstance(batch, str) or not isinstance(batch, Sequence | bytes | bytearray | memoryview):
        axes: Sequence[object] = (batch,)
    elif isinstance(batch, list | tuple):
        axes = batch
    else:  # bytes are a sequence of ints, not of names
        msg = f"`batch` must be an axis name, a size, or a list or tuple of them; got {describe(batch)}"
        raise TypeError(msg)
    lead = tuple(_axis(a, batch) for a in axes)
    names = [a for a in lead if isinstance(a, str)]
    if len(set(names)) != len(names):
        msg = f"`batch` names an axis twice: {batch!r}"
        raise ValueError(msg)
    return lead


def _build(
    ndx: Any,
    kind: str,
    weight: np.ndarray[Any, Any],
    bias: np.ndarray[Any, Any] | None,
    lead: tuple[str | int, ...],
    *,
    inputs: bool,
) -> Any:
    """One model: the forward pass or the gradients, traced from xaffine's own functions."""
    import onnx

    dtype = getattr(ndx, weight.dtype.name)
    n_in = weight.shape[-1]
    out_tail = weight.shape[:-1]
    x = ndx.argument(shape=(*lead, n_in), dtype=dtype)
    if inputs:
        w = ndx.argument(shape=weight.shape, dtype=dtype)
        b = None if bias is None else ndx.argument(shape=bias.shape, dtype=dtype)
        params = {"weight": w} if b is None else {"weight": w, "bias": b}
    else:
        w, b, params = ndx.asarray(weight), None if bias is None else ndx.asarray(bias), {}
    # Leading axes of unknown size are flattened here: the math flattens only known sizes.
    # The row count is computed, not -1, which ONNX's Reshape refuses beside a zero size.
    flat = len(lead) > 1 and not all(isinstance(a, int) for a in lead)
    count = ndx.prod(x.dynamic_shape[:-1], keepdims=True) if flat else None
    rows = ndx.reshape(x, _concat(ndx, count, (n_in,))) if flat else x
    if kind == "forward":
        out = affine(rows, w, b)
        if flat:
            out = ndx.reshape(out, _shape(ndx, x, out_tail))
        model = ndx.build({"x": x, **params}, {"out": out}, drop_unused=False)
        _name_axes(model.graph.output[0], (*lead, *out_tail))
    else:
        grad = ndx.argument(shape=(*lead, *out_tail), dtype=dtype)
        g = ndx.reshape(grad, _concat(ndx, count, out_tail)) if flat else grad
        grads = affine_backward(g, rows, w, b)
        dx = ndx.reshape(grads.x, x.dynamic_shape) if flat else grads.x
        outputs = {"grad_x": dx, "grad_weight": grads.weight}
        if grads.bias is not None:
            outputs["grad_bias"] = grads.bias
        # Every documented input stays, x too where no gradient needs its values (no rows);
        # the bias is an input of the forward model only.
        params.pop("bias", None)
        model = ndx.build({"grad": grad, "x": x, **params}, outputs, drop_unused=False)
        _name_axes(model.graph.output[0], (*lead, n_in))
    # The graph's inputs in the documented order (the tracer's order is not fixed).
    order = ("grad", "x", "weight", "bias")
    ordered = sorted(model.graph.input, key=lambda i: order.index(i.name))
    del model.graph.input[:]
    model.graph.input.extend(ordered)
    if inputs:
        kept = {i.name for i in model.graph.input}
        values = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        model.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in values.items() if k in kept)
    return model


def _concat(ndx: Any, count: Any, tail: tuple[int, ...]) -> Any:
    """The shape ``(count, *tail)``, `count` a 1-element array computed in the graph."""
    return ndx.concat([count, ndx.asarray(list(tail), dtype=ndx.int64)])


def _shape(ndx: Any, x: Any, tail: tuple[int, ...]) -> Any:
    """``x.shape[:-1] + tail`` as a shape the graph computes at run time."""
    return ndx.concat([x.dynamic_shape[:-1], ndx.asarray(list(tail), dtype=ndx.int64)])


def _name_axes(value: Any, shape: tuple[str | int, ...]) -> None:
    """Give an output the symbolic axis names that a run-time reshape lost."""
    dims = value.type.tensor_type.shape.dim
    for dim, size in zip(dims, shape, strict=True):
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size
