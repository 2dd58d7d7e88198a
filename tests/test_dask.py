"""dask: reads and writes on a real dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import bigarrays
from bigarrays import BigArray

OFFSET = (-37, -5, 11)  # negative and unaligned: the index mapping must be right


@pytest.fixture(scope="module")
def client():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit="2GiB",
    ) as cluster, Client(cluster, timeout="60s") as c:  # fmt: skip
        yield c


@pytest.fixture
def layer(tmp_path):
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2**16, (70, 45, 33), dtype=np.uint16)
    a = BigArray.create(
        tmp_path / "l", shape=truth.shape, dtype="uint16", chunks=(16, 16, 8), voxel_offset=OFFSET
    )
    a[a.bounds] = truth
    return a, truth


def test_to_dask_reductions_and_slices(client, layer):
    a, truth = layer
    d = a.to_dask()
    assert d.shape == truth.shape and d.dtype == truth.dtype
    assert int(d.sum(dtype=np.uint64).compute()) == int(truth.sum(dtype=np.uint64))
    # dask index i is voxel voxel_offset + i.
    np.testing.assert_array_equal(d[3:40, 7:9, 30].compute(), truth[3:40, 7:9, 30])
    np.testing.assert_array_equal(d[0, 0, 0].compute(), a[OFFSET])
    small = a.to_dask(chunks=(16, 32, 8))
    assert small.chunks[0][:2] == (16, 16)
    np.testing.assert_array_equal(small.max(axis=2).compute(), truth.max(axis=2))


def test_distributed_write_then_read_back(client, tmp_path):
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 255, (50, 41, 20, 2), dtype=np.uint8)
    a = BigArray.create(
        tmp_path / "w", shape=(64, 64, 32, 2), dtype="uint8", chunks=(8, 8, 8),
        voxel_offset=(-10, 0, 3),
    )  # fmt: skip
    a[a.bounds] = 7  # the write must leave everything outside its box alone
    d = da.from_array(truth, chunks=(13, 9, 7, 2))  # blocks that straddle storage chunks
    bigarrays.store(d, a, offset=(-7, 5, 6))
    want = np.full((64, 64, 32, 2), 7, np.uint8)
    want[3:53, 5:46, 3:23] = truth
    np.testing.assert_array_equal(a[a.bounds], want)
    np.testing.assert_array_equal(BigArray(tmp_path / "w").to_dask().compute(), want)
