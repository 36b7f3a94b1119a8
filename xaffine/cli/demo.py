"""``xaffine demo``: a digits classifier built only from Affine layers, on any backend.

Affine(64, hidden) -> ReLU -> Affine(hidden, 10) with softmax cross-entropy, all in
standard Array API calls, trained by minibatch SGD on scikit-learn's bundled 8x8
handwritten digits (no download). Data split, batch order and initial weights come from
seeded host generators, so the same seed trains the same network on every backend: the
accuracy agrees to within float rounding.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backends import Backend, default_backend, device_name, find_backend, library_of, to_numpy
from .._layer import Affine
from .._typing import Array, Namespace
from ._shared import Progress, non_negative_int, positive_float, positive_int

__all__ = ["DemoResult", "add_parser", "run", "train"]


@dataclass
class DemoResult:
    backend: str
    device: str
    losses: list[float] = field(default_factory=list)
    accuracy: float = float("nan")
    test_size: int = 0


def _digits() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        msg = "the demo's data set ships with scikit-learn: pip install 'xaffine[demo]'"
        raise ImportError(msg) from exc
    digits = load_digits()
    return digits.data.astype(np.float64), digits.target.astype(np.int64)


def _softmax_cross_entropy(z: Array, onehot: Array, xp: Namespace) -> tuple[Array, Array]:
    """Mean cross-entropy of logits `z` against one-hot labels, and its gradient in `z`."""
    zmax = xp.max(z, axis=1, keepdims=True)
    e = xp.exp(z - zmax)
    s = xp.sum(e, axis=1, keepdims=True)
    rows = z.shape[0]
    loss = xp.sum(xp.log(s) + zmax - xp.sum(onehot * z, axis=1, keepdims=True)) / rows
    return loss, (e / s - onehot) / rows


def train(
    backend: str | Backend | None = None,
    *,
    epochs: int = 30,
    hidden: int = 64,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> DemoResult:
    """Train the classifier and return the loss per epoch and the test accuracy.

    Raises
    ------
    ValueError
        For an unknown backend, or Dask (whose graph would grow with every step:
        ``examples/dask_distributed.py`` shows the layer on Dask).
    ImportError
        Without scikit-learn.
    """
    spec = find_backend(backend) if isinstance(backend, str) else backend
    if spec is not None:
        _check_backend(spec)
    data, target = _digits()
    _, xp, device, _ = default_backend() if spec is None else spec.load()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_test = len(data) // 5
    test, train_ = order[:n_test], order[n_test:]
    mean, std = data[train_].mean(axis=0), data[train_].std(axis=0) + 1e-8
    features = ((data - mean) / std).astype(np.float32)
    onehot = np.eye(10, dtype=np.float32)[target]

    def to_device(a: np.ndarray[Any, Any]) -> Array:
        return xp.asarray(a, device=device)

    x_train, y_train = to_device(features[train_]), to_device(onehot[train_])
    x_test = to_device(features[test])
    first = Affine(64, hidden, xp=xp, device=device, seed=seed, input_grad=False)
    second = Affine(hidden, 10, xp=xp, device=device, seed=seed + 1)
    result = DemoResult(library_of(xp), device_name(device), test_size=n_test)
    for epoch in range(epochs):
        batches = rng.permutation(len(train_))
        total = xp.zeros((), dtype=xp.float32, device=device)
        for start in range(0, len(batches), batch_size):
            index = to_device(batches[start : start + batch_size])
            xb, yb = xp.take(x_train, index, axis=0), xp.take(y_train, index, axis=0)
            h = first(xb)
            active = h > 0
            z = second(xp.where(active, h, xp.zeros_like(h)))
            loss, dz = _softmax_cross_entropy(z, yb, xp)
            da = second.backward(dz)
            first.backward(xp.where(active, da, xp.zeros_like(da)))
            for layer in (first, second):
                for name, grad in layer.grads.items():
                    if grad is not None:
                        setattr(layer, name, getattr(layer, name) - lr * grad)
                layer.zero_grad()
            total = total + loss * (index.shape[0] / len(train_))
        result.losses.append(float(to_numpy(total)))
        if progress is not None:
            progress(epoch + 1, result.losses[-1])
    h = first(x_test)
    logits = to_numpy(second(xp.where(h > 0, h, xp.zeros_like(h))))
    result.accuracy = float(np.mean(np.argmax(logits, axis=1) == target[test]))
    return result


def _check_backend(spec: Backend) -> None:
    """Refuse the backends the demo cannot train on, saying why.

    Raises
    ------
    ValueError
        For Dask (its graph would grow with every step) and pydata/sparse (the network's
        arrays are dense: sparse is for inputs, beside NumPy parameters).
    """
    if spec.library == "dask":
        msg = "the demo steps eagerly; for Dask see examples/dask_distributed.py"
        raise ValueError(msg)
    if spec.library == "sparse":
        msg = (
            "the demo trains dense arrays; pydata/sparse is for sparse inputs beside NumPy parameters "
            "(README: Sparse inputs): use --backend numpy"
        )
        raise ValueError(msg)


def _backend(text: str) -> Backend:
    try:
        spec = find_backend(text)
        _check_backend(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a digits classifier made of Affine layers",
        description=(
            "Train Affine -> ReLU -> Affine with softmax cross-entropy on scikit-learn's bundled handwritten "
            "digits (needs the 'demo' extra: pip install 'xaffine[demo]'), print the loss per epoch and the "
            "test accuracy."
        ),
    )
    parser.add_argument(
        "--backend", type=_backend, help="numpy, cupy, torch, torch:cuda, jax, ... (default: the default backend)"
    )
    parser.add_argument("--epochs", type=positive_int, default=30, help="passes over the training set (default: 30)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="hidden units (default: 64)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="SGD learning rate (default: 0.1)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="minibatch size (default: 32)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of data split, batch order and weights (default: 0)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def report(epoch: int, loss: float) -> None:
        bar(f"epoch {epoch} loss {loss:.4f}")
        print(f"epoch {epoch:3d}  loss {loss:.4f}", flush=True)

    with Progress(args.epochs) as bar:
        result = train(
            args.backend,
            epochs=args.epochs,
            hidden=args.hidden,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=report,
        )
    where = f"{result.backend}, {result.device}"
    print(f"test accuracy: {result.accuracy:.2%} on {result.test_size} held-out digits ({where})")
    print(f"the same --seed ({args.seed}) gives the same accuracy on every backend, to within float rounding")
    return 0
