"""Random reads and writes against a NumPy reference of the same layer (hypothesis)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from volumes import window

import bigarrays
from bigarrays import BigArray

OFFSET, SIZE = np.array([-7, 3, 11]), np.array([37, 29, 13])


def boxes(margin: int):
    """Boxes in absolute coordinates, reaching up to `margin` voxels past the bounds."""

    def axis(d: int):
        lo, hi = int(OFFSET[d]) - margin, int(OFFSET[d] + SIZE[d]) + margin
        return st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(sorted)

    return st.tuples(axis(0), axis(1), axis(2))


@pytest.mark.parametrize("channels", [1, 2])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.tuples(st.integers(1, 16), st.integers(1, 16), st.integers(1, 8)),
    ops=st.lists(st.tuples(st.booleans(), boxes(margin=6), st.integers(0, 2**16 - 1)), max_size=8),
)
def test_random_reads_and_writes_match_numpy(channels, chunks, ops):
    shape = tuple(int(n) for n in SIZE) + ((channels,) if channels > 1 else ())
    a = BigArray.create(
        f"memory://{uuid.uuid4().hex}", shape=shape, dtype="uint16", chunks=chunks,
        voxel_offset=tuple(int(o) for o in OFFSET),
    )  # fmt: skip
    ref = np.zeros(shape, np.uint16)
    for is_write, box, seed in ops:
        key = tuple(slice(lo, hi) for lo, hi in box)
        if is_write:
            values = np.random.default_rng(seed).integers(
                0, 2**16, size=tuple(hi - lo for lo, hi in box) + shape[3:], dtype=np.uint16
            )
            inside = all(
                OFFSET[d] <= lo and hi <= OFFSET[d] + SIZE[d] for d, (lo, hi) in enumerate(box)
            )
            empty = any(lo == hi for lo, hi in box)
            if inside or empty:
                a[key] = values
                if not empty:
                    ref[
                        tuple(
                            slice(lo - OFFSET[d], hi - OFFSET[d]) for d, (lo, hi) in enumerate(box)
                        )
                    ] = values
            else:
                with pytest.raises(bigarrays.OutOfBoundsError):
                    a[key] = values
        else:
            np.testing.assert_array_equal(a[key], window(ref, OFFSET, *zip(*box, strict=True)))
    np.testing.assert_array_equal(a[a.bounds], ref)


# Beyond uint16 in memory: every dtype family, lossless encodings, sharded layers (block
# shards and murmur-hashed ones), on local disk, with unaligned boxes.
LAYOUTS = [
    ("uint8", "raw", None),
    ("int8", "raw", "auto"),
    ("int32", "blosc", None),
    ("uint32", "compressed_segmentation", "auto"),
    ("uint64", "compressed_segmentation", "murmur"),
    ("float32", "raw", "murmur"),
    ("float64", "raw", None),
    ("uint8", "png", "auto"),
    ("int64", "blosc", "murmur"),
]
MURMUR = {
    "@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 1,
    "hash": "murmurhash3_x86_128", "minishard_bits": 2, "shard_bits": 2,
    "minishard_index_encoding": "gzip", "data_encoding": "gzip",
}  # fmt: skip


def voxels(dtype: np.dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    # segmentation-like values (few labels) half the time, the full range otherwise
    if seed % 2:
        return rng.integers(0, 5, size=shape).astype(dtype) * (info.max // 7)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize(
    "dtype, encoding, shard", LAYOUTS, ids=[f"{d}-{e}-{s}" for d, e, s in LAYOUTS]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    chunks=st.tuples(st.integers(2, 16), st.integers(2, 16), st.integers(1, 8)),
    ops=st.lists(st.tuples(st.booleans(), boxes(margin=4), st.integers(0, 2**16 - 1)), max_size=6),
)
def test_dtypes_encodings_and_shards_match_numpy(tmp_path, dtype, encoding, shard, chunks, ops):
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in SIZE)
    sharding = MURMUR if shard == "murmur" else shard
    a = BigArray.create(
        str(tmp_path / uuid.uuid4().hex), shape=shape, dtype=str(dtype), chunks=chunks,
        voxel_offset=tuple(int(o) for o in OFFSET), encoding=encoding, sharding=sharding,
    )  # fmt: skip
    ref = np.zeros(shape, dtype)
    for is_write, box, seed in ops:
        key = tuple(slice(lo, hi) for lo, hi in box)
        inside = all(
            OFFSET[d] <= lo and hi <= OFFSET[d] + SIZE[d] for d, (lo, hi) in enumerate(box)
        )
        if is_write and inside and all(lo < hi for lo, hi in box):
            values = voxels(dtype, tuple(hi - lo for lo, hi in box), seed)
            a[key] = values
            ref[tuple(slice(lo - OFFSET[d], hi - OFFSET[d]) for d, (lo, hi) in enumerate(box))] = (
                values
            )
        else:
            got = a[key]
            np.testing.assert_array_equal(got, window(ref, OFFSET, *zip(*box, strict=True)))
    np.testing.assert_array_equal(BigArray(a.url)[a.bounds], ref)
