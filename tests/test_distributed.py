"""The layer on Dask: chunk-parallel, lazy, never the whole batch in one chunk, and on a
real dask.distributed cluster that loses a worker mid-computation."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from tests.helpers import host_random, inputs
from xaffine import Affine, affine, affine_backward, affine_jvp, affine_vjp
from xaffine._reference import backward as reference_backward
from xaffine._reference import forward as reference_forward

dask = pytest.importorskip("dask", reason="the Dask tests need dask[array]")
da = pytest.importorskip("dask.array", reason="the Dask tests need dask[array]")

BATCH, CHUNK, K, N = 4096, 512, 16, 8


def _inputs():
    return inputs((BATCH, K), N)


def test_numpy_parameters_with_a_chunked_batch():
    x, w, b, g = _inputs()
    xd, gd = da.from_array(x, chunks=(CHUNK, K)), da.from_array(g, chunks=(CHUNK, N))
    out, vjp = affine_vjp(xd, w, b)
    grads = vjp(gd)
    assert out.chunks[0] == xd.chunks[0]
    assert grads.x.chunks[0] == xd.chunks[0]
    np.testing.assert_allclose(out.compute(), reference_forward(x, w, b), rtol=1e-12)
    for actual, expected in zip(grads, reference_backward(g, x, w, b), strict=True):
        np.testing.assert_allclose(actual.compute(), expected, rtol=1e-10)


def test_no_task_holds_the_whole_batch():
    from dask.callbacks import Callback

    x, w, b, g = _inputs()
    xd, gd = da.from_array(x, chunks=(CHUNK, K)), da.from_array(g, chunks=(CHUNK, N))
    grads = affine_backward(gd, xd, w, b)
    largest = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            largest.append(getattr(result, "nbytes", 0))

    import dask

    with Sizes(), dask.config.set(scheduler="synchronous"):
        dask.compute(grads.weight, grads.bias)
    # The biggest intermediate is one chunk of the batch, far from the whole batch.
    assert max(largest) <= CHUNK * max(K, N) * 8
    assert max(largest) < BATCH * K * 8 / 4


def test_layer_with_dask_inputs():
    x, _, _, g = _inputs()
    layer = Affine(K, N, xp="numpy", dtype="float64", seed=0)
    out = layer(da.from_array(x, chunks=(CHUNK, K)))
    dx = layer.backward(da.from_array(g, chunks=(CHUNK, N)))
    w, b = layer.weight, layer.bias
    np.testing.assert_allclose(out.compute(), reference_forward(x, w, b), rtol=1e-12)
    np.testing.assert_allclose(dx.compute(), g @ w, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(layer.grads["weight"]), g.T @ x, rtol=1e-10)


def test_leading_axes_keep_their_chunks():
    x = da.from_array(host_random((8, 6, 5), "float64", 0), chunks=(2, 6, 5))
    w, b = host_random((3, 5), "float64", 1), np.zeros(3)
    out = affine(x, w, b)
    assert out.chunks[0] == (2, 2, 2, 2)
    grads = affine_backward(da.ones(out.shape, chunks=(2, 6, 3)), x, w, b)
    assert grads.x.chunks[0] == (2, 2, 2, 2)
    assert grads.weight.numblocks == (1, 1)


def _slow(block):
    time.sleep(0.2)
    return block


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_local_cluster_survives_a_killed_worker():
    distributed = pytest.importorskip("distributed", reason="the cluster test needs dask.distributed")
    x, w, b, g = _inputs()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        xd = da.from_array(x, chunks=(CHUNK, K)).map_blocks(_slow, dtype=x.dtype)
        gd = da.from_array(g, chunks=(CHUNK, N))
        out, vjp = affine_vjp(xd, w, b)
        grads = vjp(gd)
        futures = client.compute([out, *grads])
        deadline = time.monotonic() + 20
        while not any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = next(addr for addr, tasks in client.processing().items() if tasks)
        # The worker's process dies mid-task; its nanny starts a new one and the
        # scheduler reruns what was lost.
        nanny = next(n for n in cluster.workers.values() if n.worker_address == busy)
        os.kill(nanny.pid, signal.SIGKILL)
        results = client.gather(futures)
        assert busy not in client.scheduler_info()["workers"], "the killed worker should be gone"
    np.testing.assert_allclose(results[0], reference_forward(x, w, b), rtol=1e-12)
    for actual, expected in zip(results[1:], reference_backward(g, x, w, b), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_distributed_example_trains():
    pytest.importorskip("distributed", reason="the example needs dask.distributed")
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "dask_distributed.py"
    args = ["--samples", "40000", "--chunk", "10000", "--steps", "8", "--features", "8"]
    done = subprocess.run(
        [sys.executable, str(example), *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    losses = [float(line.split()[3]) for line in done.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 8
    assert losses[-1] < losses[0] / 10
    assert "in 4 chunks of 10000" in done.stdout


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [
        ((0, 3), -1),
        ((2, 0, 3), (1, -1, -1)),
        ((2, 0, 3), -1),
        ((3, 0, 3), 1),
        ((0, 2, 3), -1),
        ((2, 3, 0, 3), -1),
        ((2, 0, 3, 3), (1, 1, 1, 2)),
    ],
)
@pytest.mark.parametrize("weight_chunks", [-1, (1, 3)])
@pytest.mark.parametrize("one_output", [False, True])
def test_zero_size_batches_of_any_leading_axes(shape, chunks, weight_chunks, one_output):
    """Every zero-size batch works on Dask, lazily, as on NumPy: with several leading axes
    Dask's reshape once failed (an empty iterable; a missing dependency at compute)."""
    host_x = np.zeros(shape)
    host_w, host_b = (np.ones(3), 0.5) if one_output else (np.ones((4, 3)), np.ones(4))
    x = da.from_array(host_x, chunks=chunks)
    w = da.from_array(host_w, chunks=-1 if one_output else weight_chunks)
    b = host_b if one_output else da.from_array(host_b, chunks=-1 if weight_chunks == -1 else 1)
    out = affine(x, w, b)
    g = da.zeros(out.shape, chunks=-1)
    grads = affine_backward(g, x, w, b)
    _, tangent_out = affine_jvp(x, w, b, (x, w, None if one_output else b))
    lazy = [out, tangent_out, *(a for a in grads if not isinstance(a, float))]
    assert all(isinstance(a, da.Array) for a in lazy)
    computed = dask.compute(out, tangent_out, *grads)
    expected_out = affine(host_x, host_w, host_b)
    expected = [expected_out, expected_out, *affine_backward(np.zeros(expected_out.shape), host_x, host_w, host_b)]
    for found, wanted in zip(computed, expected, strict=True):
        assert np.shape(found) == np.shape(wanted)
        np.testing.assert_array_equal(found, wanted)


def test_unknown_chunk_sizes():
    """Rows of unknown count (a boolean mask) work lazily; more leading axes need known sizes."""
    host = np.random.default_rng(0).standard_normal((40, 3))
    x = da.from_array(host, chunks=10)
    picked = x[x[:, 0] > 0]
    kept = host[host[:, 0] > 0]
    w = np.arange(3.0)
    out = affine(picked, w, 1.0)
    grads = affine_backward(out, picked, w, 1.0)
    out_, dx, dw, db = dask.compute(out, *grads)
    np.testing.assert_allclose(out_, kept @ w + 1.0)
    np.testing.assert_allclose(dw, (kept @ w + 1.0) @ kept)
    np.testing.assert_allclose(db, np.sum(kept @ w + 1.0))
    np.testing.assert_allclose(dx, np.outer(kept @ w + 1.0, w))
    x3 = da.from_array(np.ones((10, 2, 3)), chunks=5)
    with pytest.raises(ValueError, match=r"`x` has leading axes of unknown size .*compute_chunk_sizes"):
        affine(x3[x3[:, 0, 0] > 0], np.ones((4, 3)))


def test_chunks_along_a_second_leading_axis_are_merged_with_bounded_blocks():
    """As the README says: Dask's reshape merges chunks of further leading axes, splitting the first instead."""
    x = da.ones((8, 6, 5), chunks=(2, 3, 5))
    out = affine(x, np.ones((3, 5)))
    assert out.chunks[1] == (6,)
    rows_per_block = max(a * b for a in out.chunks[0] for b in out.chunks[1])
    assert rows_per_block <= 2 * 3
    np.testing.assert_array_equal(out.compute(), np.full((8, 6, 3), 5.0))
