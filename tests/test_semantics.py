"""Indexing semantics, dtypes, channels, writes and properties against NumPy references."""

from __future__ import annotations

import itertools
import os
import pickle
import uuid

import numpy as np
import pytest

from bigarrays import BigArray

DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
          "float32", "float64"]  # fmt: skip


def random_volume(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def memory_url() -> str:
    return f"memory://{uuid.uuid4().hex}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_channels", [1, 3])
def test_every_dtype_round_trips(tmp_path, dtype, num_channels):
    rng = np.random.default_rng(1)
    shape = (23, 17, 11)
    full = shape + ((num_channels,) if num_channels > 1 else ())
    ref = random_volume(rng, full, dtype)
    a = BigArray.create(
        str(tmp_path), shape=shape, dtype=dtype, chunks=(8, 7, 5), num_channels=num_channels,
        voxel_offset=(-5, 3, 100),
    )  # fmt: skip
    a[a.bounds] = ref
    b = BigArray(str(tmp_path))
    assert b.shape == full and b.dtype == np.dtype(dtype) and b.ndim == len(full)
    got = b[b.bounds]
    assert got.flags.f_contiguous
    np.testing.assert_array_equal(got, ref)
    if num_channels > 1:
        np.testing.assert_array_equal(b[0:10, 5:9, 101, 1], ref[5:15, 2:6, 1, 1])
        np.testing.assert_array_equal(b[..., -1], ref[..., -1])


def test_coordinates_are_absolute_and_outside_reads_zero():
    rng = np.random.default_rng(2)
    ref = random_volume(rng, (40, 30, 20), "uint16")
    a = BigArray.create(memory_url(), shape=ref.shape, dtype="uint16", chunks=(16, 16, 8),
                        voxel_offset=(-20, 10, 5))  # fmt: skip
    a[a.bounds] = ref
    assert a.bounds == (slice(-20, 20), slice(10, 40), slice(5, 25))
    np.testing.assert_array_equal(a[-20:-10, 10:12, 5], ref[0:10, 0:2, 0])
    np.testing.assert_array_equal(a[:, :, :], ref)  # open bounds mean the layer bounds
    crossing = a[-30:-15, 35:45, 0:10]
    expected = np.zeros((15, 10, 10), np.uint16)
    expected[10:15, 0:5, 5:10] = ref[0:5, 25:30, 0:5]
    np.testing.assert_array_equal(crossing, expected)
    assert not a[100:110, 0:5, 0:5].any()
    assert a[100:110, 0:5, 0:5].shape == (10, 5, 5)
    assert a[5:3, 10:20, 5:6].shape == (0, 10, 1)  # an empty box, as NumPy gives


def test_integer_indices_and_steps_follow_numpy():
    rng = np.random.default_rng(3)
    ref = random_volume(rng, (30, 20, 10), "float32")
    a = BigArray.create(memory_url(), shape=ref.shape, dtype="float32", chunks=(7, 6, 5))
    a[a.bounds] = ref
    for key in [(3, slice(None), slice(None)), (slice(2, 29, 3), 4, slice(None, None, 2)),
                (1, 2, 3), (Ellipsis, 4), (slice(None, None, 5), Ellipsis)]:  # fmt: skip
        got, expected = a[key], ref[key]
        assert np.shape(got) == np.shape(expected), key
        np.testing.assert_array_equal(got, expected)
    assert isinstance(a[1, 2, 3], np.floating)
    with pytest.raises(IndexError):
        a[::-1, :, :]
    with pytest.raises(IndexError):
        a[0, 0, 0, 0]
    with pytest.raises(TypeError):
        a[[1, 2], 0, 0]


def test_writes_cast_broadcast_and_keep_neighbours():
    a = BigArray.create(memory_url(), shape=(20, 20, 20), dtype="uint8", chunks=(8, 8, 8))
    ref = np.zeros((20, 20, 20), np.uint8)
    a[3:17, 5:6, 2:19] = 7  # scalar, unaligned: read-modify-write of edge chunks
    ref[3:17, 5:6, 2:19] = 7
    a[0:20, 0:20, 4] = np.arange(20, dtype=np.uint8)  # broadcast along y, integer index on z
    ref[0:20, 0:20, 4] = np.arange(20)
    value = np.array([300.7, -1.5])  # steps and unsafe casting, as ndarray.__setitem__ does
    a.write((slice(None, None, 3), 1, slice(1, 3)), value, casting="unsafe")
    ref[::3, 1, 1:3] = value
    a.write((1, 1, 1), 3.9, casting="unsafe")
    ref[1, 1, 1] = 3.9
    np.testing.assert_array_equal(a[:, :, :], ref)


def test_partial_channel_write_keeps_other_channels():
    a = BigArray.create(memory_url(), shape=(10, 10, 4, 2), dtype="int16", chunks=(4, 4, 4))
    a[:, :, :] = np.stack([np.full((10, 10, 4), 1), np.full((10, 10, 4), 2)], axis=-1)
    a[2:5, 2:5, 1, 0] = -9
    got = a[:, :, :]
    assert (got[2:5, 2:5, 1, 0] == -9).all()
    assert (got[..., 1] == 2).all()
    assert (got[..., 0] == -9).sum() == 9


def test_fully_covered_chunks_are_written_without_reading(tmp_path):
    a = BigArray.create(str(tmp_path), shape=(16, 16, 16), dtype="uint8", chunks=(8, 8, 8))
    chunk = tmp_path / "1_1_1" / "0-8_0-8_0-8.gz"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(b"garbage that is not a chunk")  # a read would fail on this
    a[0:8, 0:8, 0:8] = 5
    assert (a[0:8, 0:8, 0:8] == 5).all()


def test_compression_choices_and_stale_variants(tmp_path):
    url = str(tmp_path)
    a = BigArray.create(url, shape=(8, 8, 8), dtype="uint16", chunks=(8, 8, 8))
    key = tmp_path / "1_1_1" / "0-8_0-8_0-8"
    a[:, :, :] = 1
    assert os.path.exists(f"{key}.gz") and not key.exists()
    for compression, suffix in [(None, ""), ("zstd", ".zstd"), ("gzip", ".gz")]:
        b = BigArray(url, compression=compression)
        b[:, :, :] = len(suffix)
        present = sorted(p.name for p in key.parent.iterdir())
        assert present == [key.name + suffix], present
        assert (BigArray(url)[:, :, :] == len(suffix)).all()


def test_properties_and_info():
    url = memory_url()
    a = BigArray.create(url, shape=(100, 50, 10), dtype="uint32", chunks=(32, 32, 8),
                        voxel_offset=(1, 2, 3), resolution=(4, 4.5, 40),
                        layer_type="segmentation")  # fmt: skip
    b = BigArray(url)
    assert b.url == url
    assert b.chunks == (32, 32, 8) and b.voxel_offset == (1, 2, 3)
    assert b.resolution == (4, 4.5, 40) and b.mip == 0 and b.num_mips == 1
    assert b.encoding == "raw" and b.num_channels == 1
    assert b.nbytes == 100 * 50 * 10 * 4
    info = b.info
    assert info["type"] == "segmentation" and info["data_type"] == "uint32"
    assert info["scales"][0]["key"] == "4.0_4.5_40.0"  # as CloudVolume's create_new_info
    assert "BigArray('memory://" in repr(a)


def test_memory_urls_share_data_and_pickle_reopens():
    url = memory_url()
    a = BigArray.create(url, shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4))
    a[0:4, 0:4, 0:4] = 9
    b = pickle.loads(pickle.dumps(BigArray(url)))
    assert (b[0:4, 0:4, 0:4] == 9).all() and not b[4:8, :, :].any()


def test_cutouts_touching_many_chunks():
    rng = np.random.default_rng(4)
    ref = random_volume(rng, (64, 64, 64), "uint8")
    a = BigArray.create(memory_url(), shape=ref.shape, dtype="uint8", chunks=(4, 4, 4))
    a[a.bounds] = ref  # 4096 chunks
    for x, y, z in itertools.product([0, 3, 31], [0, 17], [1, 60]):
        np.testing.assert_array_equal(
            a[x : x + 30, y : y + 40, z : z + 4], ref[x : x + 30, y : y + 40, z : z + 4]
        )


# -- iteration, masks, help ---------------------------------------------------------------


@pytest.mark.parametrize("num_channels", [1, 2])
def test_iteration_goes_over_x_inside_the_bounds(num_channels):
    rng = np.random.default_rng(7)
    shape = (19, 6, 5)
    full = shape + ((num_channels,) if num_channels > 1 else ())
    ref = random_volume(rng, full, "uint16")
    a = BigArray.create(memory_url(), shape=shape, dtype="uint16", chunks=(4, 4, 4),
                        voxel_offset=(-7, 2, 3), num_channels=num_channels)  # fmt: skip
    a[a.bounds] = ref
    assert len(a) == 19
    planes = list(a)  # ends: integer indexing never raises, so this used to run forever
    assert len(planes) == len(a)
    for i, plane in enumerate(planes):
        np.testing.assert_array_equal(plane, ref[i])
        np.testing.assert_array_equal(plane, a[a.voxel_offset[0] + i])
        assert plane.flags.f_contiguous
    assert [p.shape for p in iter(a)] == [full[1:]] * 19


def test_iteration_reads_in_slabs_when_a_plane_is_large(monkeypatch):
    import bigarrays._bigarray as module

    monkeypatch.setattr(module, "_SLAB_BYTES", 100)  # smaller than one chunk-thick slab
    a = BigArray.create(memory_url(), shape=(10, 8, 3), dtype="uint8", chunks=(4, 4, 3))
    ref = np.arange(240, dtype=np.uint8).reshape(10, 8, 3)
    a[a.bounds] = ref
    np.testing.assert_array_equal(np.stack(list(a)), ref)


def test_in_is_numpys_any_equal():
    a = BigArray.create(memory_url(), shape=(30, 5, 4), dtype="uint8", chunks=(8, 8, 4))
    a[25, 3, 2] = 77
    assert 77 in a
    assert 0 in a
    assert 78 not in a


def test_masks_and_index_arrays_are_refused_clearly():
    a = BigArray.create(memory_url(), shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4))
    mask = np.zeros((8, 8, 8), bool)
    for key in [mask, (mask[:, 0, 0], 1, 1), np.array([1, 2]), ([1, 2], 0, 0), True]:
        with pytest.raises(IndexError, match="masks and integer arrays are not supported"):
            a[key]
        with pytest.raises(IndexError, match="a\\[box\\]\\[mask\\]"):
            a[key] = 1


def test_help_explains_indexing():
    assert "absolute voxel coordinates" in BigArray.__getitem__.__doc__
    assert "never counted from the end" in BigArray.__getitem__.__doc__
    assert "read as 0" in BigArray.__getitem__.__doc__
    assert "casting" in BigArray.__setitem__.__doc__
