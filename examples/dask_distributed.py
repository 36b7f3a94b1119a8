"""Linear regression with xaffine on a dask.distributed cluster.

The batch (X: samples x features) is a Dask array chunked along the samples and kept on
the workers; the parameters are small NumPy arrays on the client. Each step builds the
forward and backward lazily with xaffine, computes the loss and the two parameter
gradients on the cluster (dW and db are tree reductions across chunks), and updates the
parameters on the client.

    python examples/dask_distributed.py                     # a LocalCluster on this machine
    python examples/dask_distributed.py --scheduler tcp://host:8786   # an existing cluster

On a multi-GPU host the same code runs on CuPy chunks: start the cluster with dask-cuda
(``from dask_cuda import LocalCUDACluster``), move the chunks with
``X = X.map_blocks(cupy.asarray)`` and keep the parameters as CuPy arrays.
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, progress

from xaffine import Affine, affine_backward, affine_vjp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--outputs", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=50_000, help="samples per chunk")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", help="address of an existing scheduler (default: start a LocalCluster)")
    args = parser.parse_args()

    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0")
        client = Client(cluster)
    print(f"cluster: {client}")

    # The ground truth, and a batch generated on the workers (never on the client).
    rng = np.random.default_rng(0)
    true_w = rng.standard_normal((args.outputs, args.features))
    true_b = rng.standard_normal(args.outputs)
    gen = da.random.default_rng(1)
    x = gen.standard_normal((args.samples, args.features), chunks=(args.chunk, args.features))
    noise = 0.01 * gen.standard_normal((args.samples, args.outputs), chunks=(args.chunk, args.outputs))
    y = affine_vjp(x, true_w, true_b)[0] + noise
    x, y = client.persist([x, y])
    print(f"batch: {args.samples} x {args.features} in {x.numblocks[0]} chunks of {args.chunk}")
    progress(x, y)
    print()

    model = Affine(args.features, args.outputs, xp="numpy", dtype="float64", seed=2, input_grad=False)
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        out = model(x)
        residual = out - y
        loss = da.mean(residual**2)
        grads = affine_backward(residual * (2.0 / residual.size), x, model.weight, model.bias, wrt=("weight", "bias"))
        loss, dw, db = dask.compute(loss, grads.weight, grads.bias)
        model.weight = model.weight - args.lr * dw
        model.bias = model.bias - args.lr * db
        print(f"step {step:3d}  loss {loss:.6f}  ({time.perf_counter() - start:.2f} s)")

    error = np.max(np.abs(model.weight - true_w))
    print(f"max |W - W_true| = {error:.2e}")
    client.close()


if __name__ == "__main__":
    main()
