"""Initial weights, drawn on the host so that a seed gives the same bits everywhere.

Each initialiser draws float64 numbers from a seeded NumPy generator and rounds them
once to the target dtype on the host; the layer then moves them to its backend and
device. The same seed and dtype therefore give bit-identical weights on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["INITS", "draw"]

Host = np.ndarray[Any, Any]


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> Host:
    return rng.uniform(-bound, bound, size=shape)


def _torch_default(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Host:
    # torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight and the bias.
    return _uniform(rng, shape, 1.0 / math.sqrt(fan_in) if fan_in else 0.0)


def _glorot(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Host:
    total = fan_in + fan_out
    return _uniform(rng, shape, math.sqrt(6.0 / total) if total else 0.0)


def _lecun(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Host:
    return rng.standard_normal(shape) * (1.0 / math.sqrt(fan_in) if fan_in else 0.0)


def _zeros(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Host:
    return np.zeros(shape)


Init = Callable[[np.random.Generator, tuple[int, ...], int, int], Host]
INITS: dict[str, Init] = {
    "uniform": _torch_default,
    "glorot": _glorot,
    "xavier": _glorot,
    "lecun": _lecun,
    "zeros": _zeros,
}


def draw(init: str, in_features: int, out_features: int, bias: bool, seed: int | None) -> tuple[Host, Host | None]:
    """Host float64 weight (and bias) for a new layer.

    The weight follows `init`; the bias follows torch.nn.Linear's rule,
    U(-1/sqrt(in_features), 1/sqrt(in_features)), except for ``"zeros"``,
    which zeroes both.

    Raises
    ------
    ValueError
        For an unknown `init`, or a negative `seed`.
    TypeError
        For a `seed` that is not an integer or None.
    """
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))):
        msg = f"`seed` must be a non-negative integer or None; got {type(seed).__name__} {seed!r}"
        raise TypeError(msg)
    if seed is not None and seed < 0:
        msg = f"`seed` must be a non-negative integer or None; got {seed}"
        raise ValueError(msg)
    try:
        weight_init = INITS[init]
    except KeyError:
        msg = f"unknown `init` {init!r}; choose one of {sorted(INITS)}"
        raise ValueError(msg) from None
    rng = np.random.default_rng(seed)
    weight = weight_init(rng, (out_features, in_features), in_features, out_features)
    if not bias:
        return weight, None
    bias_init = _zeros if init == "zeros" else _torch_default
    return weight, bias_init(rng, (out_features,), in_features, out_features)
