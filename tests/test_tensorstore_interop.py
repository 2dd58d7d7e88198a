"""Interoperability with TensorStore's ``neuroglancer_precomputed`` driver.

TensorStore reads and writes plain (uncompressed) chunk files, ``raw`` encoding, unsharded,
and by default never stores a chunk whose voxels all equal the fill value (0). Its domain is
in absolute voxel coordinates, like BigArray's, with a trailing ``channel`` dimension.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tensorstore as ts
from volumes import absolute, assert_bit_exact, random_volume, window

from bigarrays import BigArray, MissingChunkError

RESOLUTION = (4, 4, 40)
SCALE_KEY = "4_4_40"

# (dtype, num_channels, chunk size, volume size); no size is a multiple of its chunk size.
CASES = {
    "uint8": ("uint8", 1, (32, 32, 16), (100, 90, 70)),
    "uint16x2": ("uint16", 2, (16, 20, 8), (70, 45, 37)),
    "uint32": ("uint32", 1, (16, 20, 8), (70, 45, 37)),
    "int16": ("int16", 1, (32, 32, 16), (100, 90, 70)),
    "uint64": ("uint64", 1, (16, 20, 8), (70, 45, 37)),
    "float32": ("float32", 1, (16, 20, 8), (70, 45, 37)),
}
OFFSETS = {
    "zero": (0, 0, 0),
    "positive": (3, 17, 5),
    "negative": (-37, -5, -100),
}

KEY_PATTERN = re.compile(r"(?<![\w-])-?\d+--?\d+_-?\d+--?\d+_-?\d+--?\d+(?![\w-])")


# -- helpers ---------------------------------------------------------------------------------


def relative(key: tuple[slice, ...], offset) -> tuple[slice, ...]:
    """An absolute in-bounds box as a NumPy key on the reference."""
    out = tuple(slice(k.start - o, k.stop - o) for k, o in zip(key, offset, strict=True))
    assert all(s.start >= 0 for s in out)
    return out


def with_channel_axis(ref: np.ndarray) -> np.ndarray:
    """TensorStore's shape: always ``(x, y, z, channel)``."""
    return ref if ref.ndim == 4 else ref[..., np.newaxis]


def reference_for(case: str) -> np.ndarray:
    dtype, num_channels, _, size = CASES[case]
    seed = 10 + sorted(CASES).index(case)
    return random_volume(
        seed, size + ((num_channels,) if num_channels > 1 else ()), dtype, nonzero=True
    )


def chunk_grid(offset, size, chunks):
    """Every chunk of the layer: ``{key: (start, stop)}`` in absolute coordinates."""
    axes = []
    for o, n, c in zip(offset, size, chunks, strict=True):
        axes.append([(lo, min(lo + c, o + n)) for lo in range(o, o + n, c)])
    return {
        f"{x0}-{x1}_{y0}-{y1}_{z0}-{z1}": ((x0, y0, z0), (x1, y1, z1))
        for x0, x1 in axes[0]
        for y0, y1 in axes[1]
        for z0, z1 in axes[2]
    }


def chunk_files(path) -> set[str]:
    return set(os.listdir(os.path.join(path, SCALE_KEY)))


def ts_create(path, case: str, offset) -> ts.TensorStore:
    dtype, num_channels, chunks, size = CASES[case]
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": f"{path}/"},
        "scale_metadata": {
            "size": list(size),
            "voxel_offset": list(offset),
            "chunk_size": list(chunks),
            "resolution": list(RESOLUTION),
            "encoding": "raw",
        },
        "multiscale_metadata": {"data_type": dtype, "num_channels": num_channels, "type": "image"},
        "create": True,
        "delete_existing": True,
    }
    return ts.open(spec).result()


def ts_open(path) -> ts.TensorStore:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": f"{path}/"}}
    return ts.open(spec, open=True, read=True, write=True).result()


def assert_domain(store: ts.TensorStore, offset, size, num_channels) -> None:
    assert tuple(store.domain.inclusive_min) == (*offset, 0)
    assert tuple(store.domain.exclusive_max) == (
        *(o + n for o, n in zip(offset, size, strict=True)),
        num_channels,
    )


# -- 1. TensorStore writes (skipping all-zero chunks), BigArray reads ---------------------------


def punch_holes(ref: np.ndarray, offset, size, chunks) -> None:
    """Zeroes, in place: a slab of whole chunks, the far corner (clipped) chunk, and an
    unaligned box that only partly covers the chunks it meets."""
    o, n, c = np.array(offset), np.array(size), np.array(chunks)
    last = o + (n - 1) // c * c  # the start of the last (clipped) chunk on each axis
    holes = [
        (o + (c[0], 0, 0), o + (2 * c[0], n[1], 2 * c[2])),
        (last, o + n),
        (o + c + (3, 4, 2), o + 2 * c + (5, 1, 3)),
    ]
    for start, stop in holes:
        ref[relative(absolute(start, stop), offset)] = 0


@pytest.mark.parametrize("offset_name", list(OFFSETS))
@pytest.mark.parametrize("case", list(CASES))
def test_tensorstore_written_read_by_bigarray(tmp_path, case, offset_name):
    offset = OFFSETS[offset_name]
    dtype, num_channels, chunks, size = CASES[case]
    ref = reference_for(case)
    punch_holes(ref, offset, size, chunks)

    store = ts_create(tmp_path, case, offset)
    assert_domain(store, offset, size, num_channels)
    store.write(with_channel_axis(ref)).result()

    # TensorStore stored exactly the chunks holding a non-zero voxel, as plain files
    grid = chunk_grid(offset, size, chunks)
    nonzero = {
        key
        for key, (start, stop) in grid.items()
        if np.any(ref[relative(absolute(start, stop), offset)])
    }
    files = chunk_files(tmp_path)
    assert files == nonzero
    absent = set(grid) - files
    assert len(absent) >= 3, absent

    a = BigArray(str(tmp_path))
    assert a.shape == ref.shape
    assert a.dtype == np.dtype(dtype)
    assert a.chunks == chunks
    assert a.voxel_offset == offset
    assert a.num_channels == num_channels
    assert a.bounds == tuple(slice(o, o + n) for o, n in zip(offset, size, strict=True))

    got = a[a.bounds]
    assert got.flags.f_contiguous
    assert_bit_exact(got, ref)

    o, n, c = np.array(offset), np.array(size), np.array(chunks)
    for start, stop in [
        (o + (5, 7, 3), o + n - (4, 9, 2)),  # unaligned, through holes and stored chunks
        (o + (c[0], 0, 0), o + (2 * c[0], c[1], c[2])),  # one absent chunk: zeros
        (o - (6, 3, 2), o + (9, 11, 4)),  # crosses the low edge
        (o + n - (10, 7, 5), o + n + (13, 4, 9)),  # crosses the high edge
        (o + n + (1, 1, 1), o + n + (9, 5, 7)),  # fully outside
    ]:
        start, stop = tuple(int(v) for v in start), tuple(int(v) for v in stop)
        box = absolute(start, stop)
        assert_bit_exact(a[box], window(ref, offset, start, stop), context=box)
    assert not np.any(a[absolute(o + (c[0], 0, 0), o + (2 * c[0], c[1], c[2]))])

    # fill_missing=False: stored chunks read, an absent one is named in the error
    strict = BigArray(str(tmp_path), fill_missing=False)
    first = absolute(o, o + c)
    assert_bit_exact(strict[first], ref[relative(first, offset)])
    hole = absolute(o + (c[0] + 1, 1, 1), o + (2 * c[0] - 1, 3, 2))
    (hole_key,) = {k for k, (s, e) in grid.items() if s == tuple(o + (c[0], 0, 0)) and k in absent}
    with pytest.raises(MissingChunkError) as excinfo:
        strict[hole]
    assert isinstance(excinfo.value, KeyError)
    assert KEY_PATTERN.findall(str(excinfo.value)) == [hole_key]
    with pytest.raises(KeyError) as excinfo:
        strict[strict.bounds]
    named = set(KEY_PATTERN.findall(str(excinfo.value)))
    assert named and named <= absent


# -- 2. BigArray writes uncompressed, TensorStore reads -------------------------------------


def ba_create(path, case: str, offset) -> BigArray:
    dtype, num_channels, chunks, size = CASES[case]
    return BigArray.create(
        str(path),
        shape=size + ((num_channels,) if num_channels > 1 else ()),
        dtype=dtype,
        chunks=chunks,
        voxel_offset=offset,
        resolution=RESOLUTION,
        compression=None,
    )


@pytest.mark.parametrize("offset_name", list(OFFSETS))
@pytest.mark.parametrize("case", list(CASES))
def test_bigarray_written_read_by_tensorstore(tmp_path, case, offset_name):
    offset = OFFSETS[offset_name]
    dtype, num_channels, chunks, size = CASES[case]
    ref = reference_for(case)
    a = ba_create(tmp_path, case, offset)
    a[a.bounds] = ref

    # every chunk is a plain file named by its (clipped) extent
    grid = chunk_grid(offset, size, chunks)
    assert chunk_files(tmp_path) == set(grid)

    store = ts_open(tmp_path)
    assert_domain(store, offset, size, num_channels)
    assert store.dtype.numpy_dtype == np.dtype(dtype)
    assert_bit_exact(store.read().result(), with_channel_axis(ref))

    o, n, c = np.array(offset), np.array(size), np.array(chunks)
    # TensorStore cutouts in absolute coordinates: the clipped far-corner chunk, one chunk,
    # and an unaligned box
    for start, stop in [
        (o + (n - 1) // c * c, o + n),
        (o + c, o + 2 * c),
        (o + (5, 7, 3), o + n - (4, 9, 2)),
    ]:
        key = absolute(start, stop)
        assert_bit_exact(store[key].read().result(), with_channel_axis(ref[relative(key, offset)]))

    # unaligned BigArray writes rewrite the chunks they cut through (edge chunks included)
    patches = [
        (o + (5, 7, 3), o + c + (6, 3, 2)),
        (o + n - (11, 6, 4), o + n),
        (o + c - (1, 1, 1), o + c + (1, 1, 1)),
    ]
    for i, (start, stop) in enumerate(patches):
        key = absolute(start, stop)
        patch_shape = tuple(s.stop - s.start for s in key) + ref.shape[3:]
        patch = random_volume(100 + i, patch_shape, dtype, nonzero=True)
        a[key] = patch
        ref[relative(key, offset)] = patch
    assert chunk_files(tmp_path) == set(grid)
    assert_bit_exact(ts_open(tmp_path).read().result(), with_channel_axis(ref))

    # and back: TensorStore writes an unaligned box into the BigArray layer
    key = absolute(o + (2, 3, 4), o + n - (3, 2, 1))
    patch = random_volume(
        200, tuple(s.stop - s.start for s in key) + ref.shape[3:], dtype, nonzero=True
    )
    store = ts_open(tmp_path)
    store[key].write(with_channel_axis(patch)).result()
    ref[relative(key, offset)] = patch
    assert_bit_exact(BigArray(str(tmp_path))[a.bounds], ref)


@pytest.mark.parametrize("offset_name", list(OFFSETS))
@pytest.mark.parametrize("case", ["uint16x2", "float32", "int16"])
def test_bigarray_partial_layer_read_by_tensorstore(tmp_path, case, offset_name):
    """Chunks BigArray never wrote are absent; TensorStore reads them as its fill value 0."""
    offset = OFFSETS[offset_name]
    dtype, num_channels, chunks, size = CASES[case]
    a = ba_create(tmp_path, case, offset)
    ref = np.zeros_like(reference_for(case))
    o, n, c = np.array(offset), np.array(size), np.array(chunks)
    for i, (start, stop) in enumerate(
        [
            (o + (1, 2, 3), o + c + (2, 1, 1)),  # unaligned: 8 chunks, mostly zeros
            (o + n - (2, 3, 4), o + n),  # inside the clipped far-corner chunk
        ]
    ):
        key = absolute(start, stop)
        patch_shape = tuple(s.stop - s.start for s in key) + ref.shape[3:]
        patch = random_volume(300 + i, patch_shape, dtype, nonzero=True)
        a[key] = patch
        ref[relative(key, offset)] = patch
    grid = chunk_grid(offset, size, chunks)
    files = chunk_files(tmp_path)
    assert len(files) == 9 and files < set(grid)

    store = ts_open(tmp_path)
    assert_domain(store, offset, size, num_channels)
    assert_bit_exact(store.read().result(), with_channel_axis(ref))
