"""Uncompressed Zarr chunks in local files are read in place (slabs straight into the output,
see src/format/zarr/read_local.rs): every box shape, overlapping boxes of one read, missing
chunks, edge chunks and damaged chunk files against what zarr-python wrote."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bigarrays import BigArray
from bigarrays.errors import ChunkDecodeError, MissingChunkError

zarr = pytest.importorskip("zarr")


def _array(path, data, chunks, zarr_format=3, fill_value=7, written=None, **kw):
    z = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                          compressors=None, fill_value=fill_value, zarr_format=zarr_format,
                          **kw)  # fmt: skip
    z[written or ...] = data[written or ...]
    return z


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_chunks_larger_than_a_slab_read_in_any_box(tmp_path, zarr_format):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 60000, (37, 300, 530), dtype=np.uint16)
    # 16 x 200 x 512 x 2 bytes = 3.2 MiB per chunk: many slabs; edge chunks on every axis.
    z = _array(tmp_path / "a.zarr", data, (16, 200, 512), zarr_format)
    a = BigArray(str(tmp_path / "a.zarr"))
    want = z[...]
    assert np.array_equal(a[...], want)
    for key in [np.s_[3:35, 7:299, 1:529], np.s_[16:32, 0:200, 0:512], np.s_[5, :, 100],
                np.s_[:, 150, :], np.s_[36, 299, 529], np.s_[10:12, 190:210, 500:520]]:  # fmt: skip
        assert np.array_equal(a[key], want[key]), key
    # Overlapping boxes in one read share the chunks they touch.
    keys = [np.s_[0:20, 100:250, 0:530], np.s_[10:37, 150:300, 400:530], np.s_[:, :, :]]
    for got, key in zip(a.read_many(keys), keys, strict=True):
        assert np.array_equal(got, want[key])


def test_missing_chunks_read_as_the_fill_value(tmp_path):
    data = np.arange(40 * 50 * 60, dtype=np.int32).reshape(40, 50, 60)
    _array(tmp_path / "a.zarr", data, (16, 32, 64), fill_value=-5, written=np.s_[0:16, 0:32])
    a = BigArray(str(tmp_path / "a.zarr"))
    want = np.full(data.shape, -5, np.int32)
    want[0:16, 0:32] = data[0:16, 0:32]
    assert np.array_equal(a[...], want)
    assert np.array_equal(a[10:30, 20:40, 5:55], want[10:30, 20:40, 5:55])
    strict = BigArray(str(tmp_path / "a.zarr"), fill_missing=False)
    with pytest.raises(MissingChunkError, match="c/1/0/0"):
        strict[20:30, 0:10, 0:10]


def test_whole_chunk_reads_large_enough_to_land_in_place(tmp_path):
    # A 32 MiB chunk read on its own: the output is allocated zeroed, so slabs are read
    # straight into it.
    data = np.random.default_rng(2).integers(0, 255, (2, 4096, 4096), dtype=np.uint16)
    z = _array(tmp_path / "a.zarr", data, (1, 4096, 4096))
    a = BigArray(str(tmp_path / "a.zarr"))
    assert np.array_equal(a[1], z[1])
    assert np.array_equal(a[0:2, 4000:4096, :], z[0:2, 4000:4096, :])


@pytest.mark.parametrize(
    "shape,chunks", [((1000,), (300,)), ((3, 4, 50, 60, 7), (2, 3, 16, 32, 7))]
)
def test_one_and_five_dimensions(tmp_path, shape, chunks):
    data = np.random.default_rng(3).standard_normal(shape).astype(np.float64)
    z = _array(tmp_path / "a.zarr", data, chunks, fill_value=float("nan"))
    a = BigArray(str(tmp_path / "a.zarr"))
    assert a[...].tobytes() == z[...].tobytes()
    key = tuple(slice(1, s - 1) for s in shape)
    assert a[key].tobytes() == z[key].tobytes()


@pytest.mark.parametrize("kw", [{"order": "F"}, {"dtype": ">u2"}], ids=["order-F", "big-endian"])
def test_chunks_not_stored_as_read_still_decode(tmp_path, kw):
    # Fortran-ordered (a transpose) and big-endian chunks are not their decoded bytes: the
    # in-place path must not take them.
    data = np.arange(20 * 30 * 40, dtype=np.uint16).reshape(20, 30, 40)
    dtype = kw.get("dtype", "uint16")
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(8, 16, 16),
                          dtype=dtype, compressors=None, zarr_format=2,
                          order=kw.get("order", "C"))  # fmt: skip
    z[...] = data
    a = BigArray(str(tmp_path / "a.zarr"))
    assert np.array_equal(a[...], data)
    assert np.array_equal(a[3:17, 5:25, 1:39], data[3:17, 5:25, 1:39])


def test_damaged_chunk_files(tmp_path):
    data = np.arange(32 * 32 * 32, dtype=np.uint16).reshape(32, 32, 32)
    _array(tmp_path / "a.zarr", data, (16, 32, 32), fill_value=3)
    chunk = tmp_path / "a.zarr" / "c" / "1" / "0" / "0"
    a = BigArray(str(tmp_path / "a.zarr"))
    # Shorter than an uncompressed chunk: an error naming the chunk, never a short read.
    with open(chunk, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ChunkDecodeError, match="c/1/0/0.*100 bytes"):
        a[20:30, :, :]
    assert np.array_equal(a[0:16], data[0:16])
    # Longer: also refused.
    with open(chunk, "wb") as f:
        f.write(b"\0" * (16 * 32 * 32 * 2 + 1))
    with pytest.raises(ChunkDecodeError, match="c/1/0/0"):
        a[...]
    # A directory where the chunk would be holds no chunk: the fill value.
    os.remove(chunk)
    os.mkdir(chunk)
    got = a[...]
    assert np.array_equal(got[0:16], data[0:16]) and (got[16:] == 3).all()
