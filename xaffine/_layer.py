"""The layer object: parameters on a backend and device, gradients, state dicts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _initializers
from ._backends import (
    FLOAT_DTYPES,
    Backend,
    default_backend,
    device_name,
    dtype_name,
    find_backend,
    library_of,
    library_row,
    resolve,
    transfer,
)
from ._core import AffineGrads, affine_backward, affine_vjp
from ._dispatch import facts_of, refuse_matrices
from ._typing import Array, Device, Namespace
from ._validate import GRAD_NAMES

__all__ = ["MAX_FEATURES", "Affine", "check_layout", "layer_from_state", "resolve_backend"]

MAX_FEATURES = (1 << 31) - 1
"""The most in- or out-features a layer has: the largest size a 32-bit BLAS or cuBLAS index
holds (one input row of that many float32 features is already 8 GiB)."""


class _Given(NamedTuple):
    """A new layer's parameters, given rather than drawn (`Affine.from_state_dict`'s)."""

    params: dict[str, Array]


def _check_features(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_FEATURES:
        msg = f"`{name}` must be an integer from 0 to {MAX_FEATURES} (2**31 - 1); got {value!r}"
        raise ValueError(msg)


def check_layout(declared: Mapping[str, tuple[tuple[Any, ...], str]], where: str = "") -> None:
    """The parameters `declared` (each key's shape and dtype name) are those of one layer:
    a state dict's arrays, or what a file's header says before its data is read. Each
    message begins with `where` (a file's name)."""
    shape, dtype = declared["weight"]
    if len(shape) != 2:
        msg = f"{where}'weight' must be 2-D, (out_features, in_features); got shape {shape}"
        raise ValueError(msg)
    for feature, size in zip(("out_features", "in_features"), shape, strict=True):
        try:
            _check_features(feature, size)
        except ValueError as exc:
            msg = f"{where}'weight' {'declares' if where else 'has'} shape {shape}: {exc}"
            raise ValueError(msg) from None
    if dtype not in FLOAT_DTYPES:
        msg = f"{where}'weight' must have a floating-point dtype; got {dtype} (one of {', '.join(FLOAT_DTYPES)})"
        raise TypeError(msg)
    if "bias" in declared:
        bias_shape, bias_dtype = declared["bias"]
        if bias_shape != shape[:1]:
            msg = f"{where}'bias' must have shape (out_features,) = {shape[:1]}; got {bias_shape}"
            raise ValueError(msg)
        if bias_dtype != dtype:
            msg = f"{where}'bias' has dtype {bias_dtype} but 'weight' has {dtype}"
            raise TypeError(msg)


def _checked_state(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """`state` if it holds one layer's arrays (NumPy's in native byte order)."""
    if not isinstance(state, Mapping):
        msg = f"`state` must be a mapping of names to arrays; got {type(state).__name__}"  # type: ignore[unreachable]
        raise TypeError(msg)
    unexpected = sorted(set(state) - {"weight", "bias"})
    if "weight" not in state or unexpected:
        msg = f"a state dict holds 'weight' and optionally 'bias'; got keys {sorted(state)}"
        raise KeyError(msg)
    for key, value in state.items():
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            msg = f"{key!r} must be an array; got {type(value).__name__}"
            raise TypeError(msg)
        refuse_matrices(value, key)  # as the functions do
        row = library_row(library_of(value))
        _refuse_traced(None if row is None else row.traced, value, key)
        if isinstance(value, np.ndarray) and not value.dtype.isnative:
            state = {**state, key: value.astype(value.dtype.newbyteorder("="))}
    check_layout({key: (tuple(value.shape), dtype_name(value.dtype)) for key, value in state.items()})
    return state


def resolve_backend(xp: object, device: Device | None) -> tuple[Backend | None, Namespace, Device]:
    """The row, namespace and device for whatever the user passed as `xp` and `device`."""
    if xp is None:
        choice = default_backend()
        return find_backend(choice.name), choice.xp, choice.device if device is None else device
    row, namespace = resolve(xp)
    if device is None:
        if isinstance(xp, str):
            device = row.load().device
        else:
            try:
                device = namespace.__array_namespace_info__().default_device()
            except AttributeError:
                device = row.load().device
    return row, namespace, device


def _dtype(namespace: Namespace, dtype: Any, library: str) -> Any:
    """The dtype of `namespace` that `dtype` (a name or a dtype) means.

    Raises
    ------
    TypeError
        For a dtype other than the floating ones, or one the library lacks.
    """
    name = "float32" if dtype is None else dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        msg = f"`dtype` must be one of {FLOAT_DTYPES}; got {dtype!r}"
        raise TypeError(msg)
    if not hasattr(namespace, name):
        others = {"bfloat16": " (torch and jax have it)"}.get(name, "")
        msg = (
            f"`dtype` is {name}, but {_title(library)} has no {name}: use a backend that "
            f"has it{others}, or ask for another dtype (dtype='float32' holds float16 and bfloat16 exactly)"
        )
        raise TypeError(msg)
    return getattr(namespace, name)


def _title(library: str) -> str:
    row = library_row(library)
    return row.title if row is not None else library


def _check_kept(params: dict[str, Array], dtype: Any, row: Backend | None) -> None:
    """Refuse a backend that silently made other dtypes than asked for (JAX without x64)."""
    for name, value in params.items():
        if value.dtype != dtype:
            hint = f": {row.float64_hint}" if row is not None and row.float64_hint else ""
            made = dtype_name(value.dtype)
            msg = f"`dtype` {dtype_name(dtype)} was asked for but the backend made `{name}` {made}{hint}"
            raise TypeError(msg)


class Affine:
    """An affine (linear, fully connected) layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample.
    bias : bool, default True
        Whether the layer has a bias.
    xp : namespace or str, optional
        The backend: an Array API namespace, or a name such as ``"numpy"``, ``"cupy"``,
        ``"torch"``, ``"torch:cuda"``, ``"jax"``. By default CuPy on a usable CUDA GPU,
        otherwise NumPy; see :func:`xaffine.default_backend`.
    device : device, optional
        Where the parameters live; the backend's default device when omitted.
    dtype : str or dtype, optional
        ``"float32"`` (the default), ``"float64"``, ``"complex64"``, ``"complex128"``,
        ``"float16"``, ``"bfloat16"``, or a dtype of `xp`.
    seed : int, optional
        Seed of the host generator that draws the initial parameters: the same seed
        and dtype give bit-identical parameters on every backend and device.
    init : {"uniform", "glorot", "xavier", "lecun", "zeros"}, default "uniform"
        The weight's initialisation. ``"uniform"`` is torch.nn.Linear's,
        ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` (the bias always uses it,
        except with ``"zeros"``).
    input_grad : bool, default True
        Whether :meth:`backward` computes the gradient for the input; the first layer
        of a network does not need it, and skipping it saves a matrix product.

    Examples
    --------
    >>> import numpy as np
    >>> from xaffine import Affine
    >>> layer = Affine(3, 2, xp="numpy", seed=0)
    >>> layer
    Affine(in_features=3, out_features=2, bias=True, backend=numpy, device=cpu, dtype=float32)
    >>> y = layer(np.ones((4, 3), dtype=np.float32))
    >>> dx = layer.backward(np.ones((4, 2), dtype=np.float32))
    >>> dx.shape, layer.grads["weight"].shape
    ((4, 3), (2, 3))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        xp: Namespace | str | None = None,
        device: Device | None = None,
        dtype: Any = None,
        seed: int | None = None,
        init: str | _Given = "uniform",
        input_grad: bool = True,
    ) -> None:
        _check_features("in_features", in_features)
        _check_features("out_features", out_features)
        row, namespace, where = resolve_backend(xp, device)
        if isinstance(init, _Given):  # from_state_dict's arrays, checked and converted there
            params = init.params
        else:
            target = _dtype(namespace, dtype, library_of(namespace))
            weight, bias_ = _initializers.draw(init, int(in_features), int(out_features), bias, seed)
            host = {"weight": weight} if bias_ is None else {"weight": weight, "bias": bias_}
            params = {k: _host_to(v, dtype_name(target), namespace, where) for k, v in host.items()}
            _check_kept(params, target, row)
        traced = None if row is None else row.traced
        for name, value in params.items():  # made inside jax.jit, even from concrete arrays
            _refuse_traced(traced, value, name)
        self.xp, self.device, self._params = namespace, where, params
        self._frozen: frozenset[str] = frozenset()
        self._last: tuple[Any, int | None] | None = None  # (a vjp, or a compiled forward's inputs; a thread id)
        self._traced = traced
        self.input_grad = input_grad
        self.zero_grad()

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Any],
        *,
        xp: Namespace | str | None = None,
        device: Device | None = None,
        dtype: Any = None,
    ) -> Affine:
        """A layer holding copies of `state`'s arrays (from any backend) on `xp` and `device`.

        `dtype`, if given, converts the parameters (for example ``"float32"``); by default
        they keep theirs.

        Raises
        ------
        KeyError
            For a missing ``"weight"`` or an unexpected key.
        ValueError
            For a weight that is not 2-D or a bias not of shape (out_features,).
        TypeError
            For non-floating dtypes, or a bias of another dtype than the weight.
        """
        return layer_from_state(cls, state, xp, device, dtype, copy=True)

    # -- parameters ---------------------------------------------------------------

    @property
    def in_features(self) -> int:
        return int(self._params["weight"].shape[1])

    @property
    def out_features(self) -> int:
        return int(self._params["weight"].shape[0])

    @property
    def dtype(self) -> Any:
        return self._params["weight"].dtype

    @property
    def weight(self) -> Array:
        """Shape (out_features, in_features)."""
        return self._params["weight"]

    @weight.setter
    def weight(self, value: Array) -> None:
        self._set("weight", value)

    @property
    def bias(self) -> Array | None:
        """Shape (out_features,), or None for a layer without bias."""
        return self._params.get("bias")

    @bias.setter
    def bias(self, value: Array) -> None:
        if "bias" not in self._params:
            msg = "this layer has no bias (it was made with bias=False)"
            raise AttributeError(msg)
        self._set("bias", value)

    def _set(self, name: str, value: Array) -> None:
        _check_replacement(name, self._params[name], value, self.xp, self._traced)
        self._params[name] = value

    def freeze(self, *names: str) -> None:
        """Stop computing gradients for these parameters (all when none are named)."""
        self._frozen = self._frozen | _named(self._params, names)
        self._want()

    def unfreeze(self, *names: str) -> None:
        """Compute gradients again for these parameters (all when none are named)."""
        self._frozen = self._frozen - _named(self._params, names)
        self._want()

    def _want(self) -> None:
        """The gradients backward asks for: a set (which the functions take as is) and, for
        torch.compile's graphs, which hold no sets, the same names as a tuple."""
        self._wrt = _wanted(self._input_grad, "bias" in self._params, self._frozen)
        # (None for all three, the functions' default: one guard on compiled code, not four)
        self._wrt_names = None if len(self._wrt) == len(GRAD_NAMES) else tuple(sorted(self._wrt))

    @property
    def input_grad(self) -> bool:
        """Whether :meth:`backward` computes the gradient for the input."""
        return self._input_grad

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        self._input_grad = bool(value)
        self._want()

    @property
    def frozen(self) -> frozenset[str]:
        """The names of the parameters that get no gradient."""
        return self._frozen

    # -- forward and backward ----------------------------------------------------

    def forward(self, x: Array) -> Array:
        """``x @ weight.T + bias`` for `x` of shape (..., in_features); keeps what backward needs."""
        return _forward(self, x)

    __call__ = forward

    def backward(self, grad: Array) -> Array | None:
        """Gradients for the last forward: returns ``dx`` (None if ``input_grad`` is off)
        and adds ``dW`` and ``db`` into :attr:`grads`.

        Raises
        ------
        RuntimeError
            Before any forward.
        ValueError, TypeError
            For a `grad` of the wrong shape, dtype, device or library.
        """
        return _backward(self, grad)

    def zero_grad(self) -> None:
        """Forget the accumulated gradients (each becomes None)."""
        self.grads: dict[str, Array | None] = dict.fromkeys(self._params)

    # -- state ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Array]:
        """``{"weight": ..., "bias": ...}``, the layout of torch.nn.Linear (the arrays, not copies)."""
        return dict(self._params)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy parameters from `state` (arrays of any backend): nothing changes unless all fit.

        Raises
        ------
        KeyError, ValueError, TypeError
            For keys, shapes or dtypes other than this layer's.
        """
        other = Affine.from_state_dict(state, xp=self.xp, device=self.device)
        if set(other._params) != set(self._params):
            msg = f"this layer has {sorted(self._params)}; the state dict has {sorted(other._params)}"
            raise KeyError(msg)
        for name, value in other._params.items():
            _check_replacement(name, self._params[name], value, self.xp, self._traced)
        self._params.update(other._params)

    def to(self, xp: Namespace | str | None = None, device: Device | None = None, *, dtype: Any = None) -> Affine:
        """The same layer (a copy) on another backend, device or dtype; gradients are not copied.

        `xp` defaults to this layer's backend; `dtype`, if given, converts the parameters.

        Raises
        ------
        TypeError
            For a dtype the target backend lacks, or one it would silently change (JAX
            without x64 and a 64-bit dtype).
        """
        target = self.xp if xp is None else xp
        where = self.device if xp is None and device is None else device
        layer = Affine.from_state_dict(self.state_dict(), xp=target, device=where, dtype=dtype)
        layer._frozen, layer.input_grad = self._frozen, self.input_grad
        return layer

    def __repr__(self) -> str:
        return (
            f"Affine(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={'bias' in self._params}, backend={library_of(self.xp)}, device={device_name(self.device)}, "
            f"dtype={dtype_name(self.dtype)})"
        )


_NO_FORWARD = "backward() needs a forward() first: call the layer on an input"


# The methods' bodies, as functions: torch.compile traces its own version of each
# (`traced_methods`), found by the function (a method it meets on an object, it would not).
def _forward(layer: Affine, x: Array) -> Array:
    if layer._traced is not None:
        _refuse_traced(layer._traced, x, "x")
    params = layer._params
    out, vjp = affine_vjp(x, params["weight"], params.get("bias"))
    # What backward needs is kept in one assignment, a pair (vjp, thread id), so that a
    # backward never pairs one thread's saved input with another thread's id.
    layer._last = (vjp, threading.get_ident())
    return out


def _backward(layer: Affine, grad: Array) -> Array | None:
    if layer._traced is not None:
        _refuse_traced(layer._traced, grad, "grad")
    last = layer._last  # read once: another thread's forward may replace it meanwhile
    if last is None:
        raise RuntimeError(_NO_FORWARD)
    saved, thread = last
    if thread is not None and thread != threading.get_ident():
        msg = (
            "backward() was called from another thread than the last forward(): a layer keeps "
            "one saved input, so use one layer per thread (the functions are thread-safe)"
        )
        raise RuntimeError(msg)
    if saved.__class__ is tuple:  # a compiled forward's inputs
        return _accumulate(layer.grads, affine_backward(grad, *saved, wrt=layer._wrt))
    return _accumulate(layer.grads, saved(grad, wrt=layer._wrt))


def _accumulate(grads: dict[str, Array | None], result: AffineGrads) -> Array | None:
    """Add a backward's weight and bias gradients into a layer's `grads`; its input's gradient."""
    dx, dw, db = result
    for name, new in (("weight", dw), ("bias", db)):
        if new is not None:
            old = grads[name]
            # Rebinding, not +=: arrays of some backends (JAX) are immutable.
            grads[name] = new if old is None else old + new
    return dx


def traced_methods(affine: Callable[..., Array], affine_backward: Callable[..., AffineGrads]) -> dict[Any, Any]:
    """What torch.compile traces for a layer's `forward` and `backward` (``xaffine._compile``):
    their bodies' functions, `_forward` and `_backward`.

    The same steps but two: no thread is recorded (no thread runs compiled code), and the
    forward keeps its inputs, for the backward's `affine_backward`, rather than a vjp. The
    functions (and `tuple`) are this function's closure, not globals, so that compiled code
    is guarded on the layer's own state alone.
    """
    tuple_, accumulate = tuple, _accumulate

    def forward(layer: Affine, x: Array) -> Array:
        params = layer._params
        weight, bias = params["weight"], params.get("bias")
        layer._last = ((x, weight, bias), None)
        return affine(x, weight, bias)

    def backward(layer: Affine, grad: Array) -> Array | None:
        last = layer._last
        if last is None:
            raise RuntimeError(_NO_FORWARD)
        saved, names = last[0], layer._wrt_names
        if saved.__class__ is not tuple_:  # an eager forward's vjp
            return accumulate(layer.grads, saved(grad, wrt=layer._wrt))
        result = affine_backward(grad, *saved) if names is None else affine_backward(grad, *saved, wrt=names)
        return accumulate(layer.grads, result)

    return {_forward: forward, _backward: backward}


def _wanted(input_grad: bool, has_bias: bool, frozen: frozenset[str]) -> frozenset[str]:
    """The gradients a layer's backward asks for."""
    names = {"weight", "bias"} if has_bias else {"weight"}
    return frozenset((names - frozen) | ({"x"} if input_grad else set()))


def _host_to(host: np.ndarray[Any, Any], dtype: str, xp: Namespace, device: Device) -> Array:
    """Round host float64 numbers to `dtype` once, on the host, then move them."""
    if dtype == "bfloat16":
        # NumPy has no bfloat16: round to float32 on the host, then on the backend.
        return xp.astype(xp.asarray(host.astype(np.float32), device=device), xp.bfloat16)
    return xp.asarray(host.astype(dtype), device=device)


def layer_from_state(
    cls: type[Affine], state: Mapping[str, Any], xp: Any, device: Any, dtype: Any, *, copy: bool
) -> Affine:
    """``cls.from_state_dict``; `copy=False` keeps arrays that need no conversion (``load``'s own)."""
    state = _checked_state(state)
    row, namespace, where = resolve_backend(xp, device)
    target = _dtype(namespace, dtype_name(state["weight"].dtype) if dtype is None else dtype, library_of(namespace))
    params = {k: transfer(v, namespace, where, target, copy=copy, name=f"`{k}`") for k, v in state.items()}
    _check_kept(params, target, row)
    out_features, in_features = state["weight"].shape
    # Affine's own __init__, not a subclass's (whose signature may differ): it sets up every layer.
    layer = cls.__new__(cls)
    Affine.__init__(layer, in_features, out_features, xp=namespace, device=where, init=_Given(params))
    return layer


def _check_replacement(
    name: str, old: Array, value: Array, xp: Namespace, traced: Callable[[Any], bool] | None
) -> None:
    """`value` may replace the parameter `old`: same library, shape and dtype, not traced."""
    if not hasattr(value, "shape") or library_of(value) != library_of(xp):
        msg = f"`{name}` must be an array of this layer's backend, {library_of(xp)}; got {type(value).__name__}"
        raise TypeError(msg)
    _refuse_traced(traced, value, name)
    facts_of(value, name)  # a matrix, a masked array, a non-native byte order: the functions' refusals
    if tuple(value.shape) != tuple(old.shape):
        msg = f"`{name}` must have shape {tuple(old.shape)}; got {tuple(value.shape)}"
        raise ValueError(msg)
    if value.dtype != old.dtype:
        msg = f"`{name}` must have dtype {dtype_name(old.dtype)}; got {dtype_name(value.dtype)}"
        raise TypeError(msg)


def _refuse_traced(traced: Callable[[Any], bool] | None, a: object, name: str) -> None:
    if traced is not None and traced(a):
        msg = (
            f"`{name}` is traced by a function transform (jax.jit, grad, vmap, ...): a layer keeps "
            "arrays across calls, which must not outlive the transform; inside one, call the functions "
            "(affine_vjp, ...) with the layer's state_dict() and load_state_dict() the result after it"
        )
        raise RuntimeError(msg)


def _named(params: dict[str, Array], names: tuple[str, ...]) -> frozenset[str]:
    """The parameters `names` names (all when it is empty)."""
    unknown = set(names) - set(params)
    if unknown:
        msg = f"unknown parameter {sorted(unknown)[0]!r}; this layer has {sorted(params)}"
        raise ValueError(msg)
    return frozenset(names or params)
