"""Pyramids: every method against a slow NumPy reference, and the info against CloudVolume's."""

from __future__ import annotations

import collections
import itertools
import json
import re

import numpy as np
import pytest
from cloudvolume import CloudVolume

from bigarrays import BigArray
from bigarrays.errors import InfoError, InvalidArgumentError


def reference_level(
    src: np.ndarray, src_lo: tuple, dst_lo: tuple, dst_shape: tuple, factor: tuple, method: str
) -> np.ndarray:
    """Level L from level L-1 the slow way: one output voxel at a time, by the docstring."""
    channels = src.shape[3]
    out = np.zeros(tuple(dst_shape) + (channels,), src.dtype)
    fx, fy, fz = factor
    for i, j, k in itertools.product(*(range(n) for n in dst_shape)):
        ox, oy, oz = dst_lo[0] + i, dst_lo[1] + j, dst_lo[2] + k
        for c in range(channels):
            vals = []
            for dz, dy, dx in itertools.product(range(fz), range(fy), range(fx)):  # x fastest
                p = (ox * fx + dx - src_lo[0], oy * fy + dy - src_lo[1], oz * fz + dz - src_lo[2])
                if all(0 <= q < n for q, n in zip(p, src.shape[:3], strict=True)):
                    vals.append(src[p + (c,)].item())
            out[i, j, k, c] = reduce_one(vals, method, src.dtype) if vals else 0
    return out


def reduce_one(vals: list, method: str, dtype: np.dtype):
    if method == "average":
        if dtype.kind == "f":
            return sum(vals) / len(vals)
        if dtype == np.bool_:
            return 2 * sum(vals) >= len(vals)
        return (2 * sum(vals) + len(vals)) // (2 * len(vals))
    if method == "mode":
        counts = collections.Counter(vals)
        top = max(counts.values())
        return next(v for v in vals if counts[v] == top)
    return {"min": min, "max": max, "nearest": lambda v: v[0]}[method](vals)


def check_pyramid(a: BigArray, truth: np.ndarray, factor, mips: int, method: str | None):
    levels = a.downsample(factor=factor, mips=mips, method=method, jobs=2)
    assert [lv.mip for lv in levels] == list(range(1, mips + 1))
    method = method or ("mode" if a.info["type"] == "segmentation" else "average")
    expected, lo = truth.reshape(truth.shape[:3] + (-1,), order="F"), a.voxel_offset
    for level in levels:
        expected = reference_level(
            expected, lo, level.voxel_offset, level.shape[:3], factor, method
        )
        lo = level.voxel_offset
        got = level[level.bounds]
        assert np.array_equal(got.reshape(expected.shape, order="F"), expected), (
            f"mip {level.mip} ({method})"
        )
    return levels


@pytest.mark.parametrize("method", ["average", "mode", "min", "max", "nearest"])
@pytest.mark.parametrize("factor", [(2, 2, 1), (2, 2, 2), (3, 1, 2)])
def test_methods_match_reference_with_odd_sizes_and_offsets(tmp_path, method, factor):
    rng = np.random.default_rng(hash((method, factor)) & 0xFFFF)
    shape, offset = (13, 11, 7), (3, -5, 1)
    a = BigArray.create(
        tmp_path / "l", shape=shape, dtype="uint8", chunks=(4, 4, 3), voxel_offset=offset
    )
    # Few distinct values so that modes and ties are common.
    truth = rng.integers(0, 4 if method == "mode" else 256, shape, dtype=np.uint8)
    a[a.bounds] = truth
    check_pyramid(a, truth, factor, 2, method)


@pytest.mark.parametrize(
    "dtype", ["uint16", "int8", "int64", "uint64", "float32", "float64", "bool"]
)
def test_average_is_exact_for_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(1)
    shape = (9, 7, 5)
    a = BigArray.create(tmp_path / "l", shape=shape, dtype=dtype, chunks=(4, 4, 4))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)  # extreme values: a naive sum would overflow
        truth = rng.integers(info.max - 3, info.max, shape, dtype=dtype, endpoint=True)
        truth[::2] = rng.integers(info.min, info.min + 3, truth[::2].shape, dtype=dtype)
    elif dtype == "bool":
        truth = rng.random(shape) < 0.5
    else:
        truth = rng.standard_normal(shape).astype(dtype)
    a[a.bounds] = truth
    check_pyramid(a, truth, (2, 2, 2), 1, "average")


def test_segmentation_defaults_to_mode_with_channels(tmp_path):
    rng = np.random.default_rng(2)
    shape = (10, 9, 4, 2)
    a = BigArray.create(
        tmp_path / "seg",
        shape=shape,
        dtype="uint64",
        chunks=(4, 4, 4),
        layer_type="segmentation",
        encoding="compressed_segmentation",
    )
    truth = rng.integers(0, 3, shape, dtype=np.uint64) + np.uint64(2**40)
    a[a.bounds] = truth
    levels = check_pyramid(a, truth, (2, 2, 1), 2, None)
    assert levels[0].encoding == "compressed_segmentation"


def test_info_matches_cloudvolume_and_cloudvolume_reads_the_pyramid(tmp_path):
    rng = np.random.default_rng(3)
    a = BigArray.create(
        tmp_path / "em",
        shape=(50, 37, 9),
        dtype="uint8",
        chunks=(32, 32, 8),
        voxel_offset=(5, 3, 2),
        resolution=(4, 4, 40),
    )
    truth = rng.integers(0, 256, (50, 37, 9), dtype=np.uint8)
    a[a.bounds] = truth
    original = a.info
    a.downsample(factor=(2, 2, 1), mips=3)

    # CloudVolume's own scales for the same layer.
    other = tmp_path / "cv"
    other.mkdir()
    (other / "info").write_text(json.dumps(original))
    cv = CloudVolume(f"file://{other}")
    for level in range(1, 4):
        cv.add_scale((2**level, 2**level, 1))
    assert json.loads(json.dumps(cv.info["scales"])) == BigArray(tmp_path / "em").info["scales"]

    for mip in range(1, 4):
        ours = BigArray(tmp_path / "em", mip=mip)
        theirs = CloudVolume(f"file://{tmp_path / 'em'}", mip=mip, fill_missing=False)
        assert np.array_equal(theirs[theirs.bounds][..., 0], ours[ours.bounds])


def test_bad_arguments_name_the_problem(tmp_path):
    a = BigArray.create(tmp_path / "l", shape=(8, 8, 8), dtype="uint8")
    with pytest.raises(InvalidArgumentError, match="method"):
        a.downsample(method="median")
    with pytest.raises(InvalidArgumentError, match="factor"):
        a.downsample(factor=(2, 0, 1))
    with pytest.raises(InvalidArgumentError, match="mips"):
        a.downsample(mips=0)
    assert a.num_mips == 1  # nothing was added


def test_info_updates_cannot_reinterpret_stored_chunks(tmp_path):
    a = BigArray.create(tmp_path / "l", shape=(8, 8, 8), dtype="uint8")
    for field, change in [
        ("data_type", lambda i: i.update(data_type="uint16")),
        ("num_channels", lambda i: i.update(num_channels=2)),
        ("scales[0].size", lambda i: i["scales"][0].update(size=[9, 8, 8])),
        ("scales[0].chunk_sizes", lambda i: i["scales"][0].update(chunk_sizes=[[4, 4, 4]])),
    ]:
        info = a.info
        change(info)
        with pytest.raises(InfoError, match=re.escape(field)):
            a.update_info(info)
    assert BigArray(tmp_path / "l").info == a.info


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "bool"])
@pytest.mark.parametrize("factor", [(2, 2, 1), (2, 2, 2), (3, 2, 2)])
def test_average_of_large_blocks_matches_exact_sums(dtype, factor):
    """Blocks of several MB with channels: the fast path sums them a piece at a time (and
    uint8 x pairs as uint16s); every piece must agree with an exact int64 mean."""
    from bigarrays._reduce import reduce_blocks

    rng = np.random.default_rng(7)
    shape = (factor[0] * 120, factor[1] * 100, factor[2] * 60, 2)
    if dtype == "bool":
        data = rng.random(shape) < 0.5
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    data = np.asfortranarray(data)
    got = reduce_blocks(data, np.broadcast_to(np.True_, shape[:3]), factor, "average")
    (x, y, z, c), (fx, fy, fz) = shape, factor
    blocks = data.reshape(fx, x // fx, fy, y // fy, fz, z // fz, c, order="F")
    total = blocks.sum(axis=(0, 2, 4), dtype=np.int64)
    n = fx * fy * fz
    want = 2 * total >= n if dtype == "bool" else ((2 * total + n) // (2 * n)).astype(dtype)
    assert got.dtype == want.dtype and np.array_equal(got, want)
