"""`cache_bytes=` on Zarr arrays: decoded stored chunks (a sharded array's inner chunks each
on their own) kept for later reads on the handle, known-missing chunks too, dropped when the
handle writes them, within the budget."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bigarrays import BigArray

zarr = pytest.importorskip("zarr")
codecs = pytest.importorskip("zarr.codecs")


def _data(shape=(40, 50, 60), dtype=np.uint16):
    return np.random.default_rng(0).integers(0, 1000, shape).astype(dtype)


@pytest.mark.parametrize(
    "kw",
    [
        {"compressors": None},
        {"compressors": codecs.ZstdCodec(level=1)},
        {"compressors": codecs.GzipCodec(level=1), "shards": (32, 32, 32)},
    ],
    ids=["uncompressed", "zstd", "sharded"],
)
def test_second_reads_come_from_the_cache(tmp_path, kw):
    data = _data()
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=data.shape, chunks=(16, 16, 16), dtype=data.dtype,
                          fill_value=9, **kw)  # fmt: skip
    z[...] = data
    z[32:40] = 9  # whole chunks of the fill value: not stored in the unsharded arrays
    want = z[...]
    a = BigArray(str(path), cache_bytes=64 << 20)
    assert a.cache_stats["hits"] == 0
    assert np.array_equal(a[3:37, 5:45, 2:58], want[3:37, 5:45, 2:58])
    misses = a.cache_stats["misses"]
    assert misses > 0 and a.cache_stats["entries"] > 0
    # The chunks are gone from the store: the handle still answers from its cache.
    shutil.rmtree(path / "c")
    assert np.array_equal(a[3:37, 5:45, 2:58], want[3:37, 5:45, 2:58])
    assert np.array_equal(a[10:20, 20:30, 30:40], want[10:20, 20:30, 30:40])
    stats = a.cache_stats
    assert stats["misses"] == misses and stats["hits"] > 0
    assert stats["bytes"] <= stats["budget"] == 64 << 20
    # A fresh handle has no cache: it sees the store as it is now.
    assert (BigArray(str(path))[3:37, 5:45, 2:58] == 9).all()


def test_writes_through_the_handle_drop_what_they_touch(tmp_path):
    data = _data()
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=data.shape, chunks=(16, 16, 16), dtype=data.dtype,
                          shards=(32, 32, 32), fill_value=0)  # fmt: skip
    z[...] = data
    a = BigArray(str(path), cache_bytes=64 << 20)
    assert np.array_equal(a[...], data)
    a[5:9, 7:11, 13:50] = 7
    data[5:9, 7:11, 13:50] = 7
    assert np.array_equal(a[...], data)
    assert np.array_equal(zarr.open_array(str(path))[...], data)
    # Every cached inner chunk the write did not touch is still a hit.
    before = a.cache_stats["hits"]
    a[30:40, 40:50, 0:10]
    assert a.cache_stats["hits"] > before


def test_missing_chunks_are_remembered_and_the_budget_holds(tmp_path):
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=(64, 64, 64), chunks=(16, 16, 16), dtype="uint8",
                          fill_value=3, compressors=None)  # fmt: skip
    z[0:16, 0:16, 0:16] = 1
    budget = 3 * 16**3
    a = BigArray(str(path), cache_bytes=budget)
    for _ in range(2):
        got = a[...]
        assert (got[0:16, 0:16, 0:16] == 1).all() and got.sum() == 16**3 + 3 * (64**3 - 16**3)
        assert a.cache_stats["bytes"] <= budget
    # One stored chunk and 63 known-missing ones fit the budget: the second pass hit them all.
    assert a.cache_stats["hits"] == 64
    assert BigArray(str(path)).cache_stats is None


def test_stored_copies_into_a_cached_handle_drop_what_they_replace(tmp_path):
    truth = np.random.default_rng(4).integers(0, 60000, (32, 32, 16)).astype("uint16")
    src = BigArray.create(str(tmp_path / "pre"), shape=truth.shape, dtype="uint16",
                          chunks=(16, 16, 8))  # fmt: skip
    src[src.bounds] = truth
    BigArray.create(str(tmp_path / "z.zarr"), format="zarr", shape=(16, 32, 32),
                    dtype="uint16", chunks=(8, 16, 16), codecs=[{"name": "bytes"}])  # fmt: skip
    z = BigArray(str(tmp_path / "z.zarr"), cache_bytes=1 << 20)
    assert (z[...] == 0).all()  # every chunk now cached as missing
    assert z._xyz().copy_chunks_from(src)  # as stored bytes
    assert np.array_equal(z[...], truth.T)
