"""The HDF5 layouts of BigArrays.jl (H5s block directories, aligned 2D sections) and single
HDF5 datasets, against fixtures h5py writes in exactly those layouts, and h5py reading what
bigarrays writes."""

from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin
import numpy as np
import pytest

from bigarrays import (
    BigArray,
    ChunkDecodeError,
    LayerNotFoundError,
    MissingChunkError,
    OutOfBoundsError,
)

BLOSC_FILTER_ID = 32001


def _blosc() -> dict:
    """BigArrays.jl's filter: Blosc (32001), blosclz level 5, byte shuffle."""
    return dict(hdf5plugin.Blosc(cname="blosclz", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _block_name(prefix: str, g: tuple[int, ...], block: tuple[int, ...]) -> str:
    """1-based inclusive ranges relative to globalOffset, as BigArrays.jl names blocks."""
    return (
        prefix + "_".join(f"{gi * b + 1}-{(gi + 1) * b}" for gi, b in zip(g, block, strict=True))
    ) + ".h5"


def _write_h5s(
    root,
    ref: np.ndarray,
    *,
    offset: tuple[int, int, int],
    block: tuple[int, ...],
    chunk: tuple[int, ...],
    config: dict,
    dataset: str = "img",
    filters: dict | None = None,
    skip: tuple[int, int, int] | None = None,
    prefix: str = "block_",
) -> None:
    """Writes `ref` (x, y, z[, c]) as H5s blocks: h5py dataset axes reversed, full blocks."""
    root.mkdir(exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    grid = [-(-ref.shape[i] // block[i]) for i in range(3)]
    for gx in range(grid[0]):
        for gy in range(grid[1]):
            for gz in range(grid[2]):
                if (gx, gy, gz) == skip:
                    continue
                full = np.zeros(block, ref.dtype)
                sl = tuple(
                    slice(g * b, (g + 1) * b) for g, b in zip((gx, gy, gz), block[:3], strict=True)
                )
                part = ref[sl]
                full[tuple(slice(0, n) for n in part.shape)] = part
                g = (gx, gy, gz) + ((0,) if len(block) == 4 else ())
                with h5py.File(root / _block_name(prefix, g, block), "w") as f:
                    f.create_dataset(
                        dataset,
                        data=np.ascontiguousarray(full.T),  # Julia (x,y,z[,c]) -> h5py reversed
                        chunks=tuple(reversed(chunk)),
                        **(filters if filters is not None else _blosc()),
                    )


def _expected(ref: np.ndarray, offset, lo, hi) -> np.ndarray:
    """`ref` placed at `offset`, cut at [lo, hi) with zeros outside."""
    out = np.zeros(tuple(h - low for low, h in zip(lo, hi, strict=True)) + ref.shape[3:], ref.dtype)
    src, dst = [], []
    for i in range(3):
        a = max(lo[i], offset[i])
        b = min(hi[i], offset[i] + ref.shape[i])
        if a >= b:
            return out
        src.append(slice(a - offset[i], b - offset[i]))
        dst.append(slice(a - lo[i], b - lo[i]))
    out[tuple(dst)] = ref[tuple(src)]
    return out


@pytest.fixture(scope="module")
def h5s_blosc(tmp_path_factory):
    """uint16, non-zero globalOffset, Blosc, one block missing."""
    root = tmp_path_factory.mktemp("h5s") / "layer"
    rng = np.random.default_rng(1)
    block, chunk, offset = (40, 32, 12), (16, 16, 4), (100, -50, 7)
    ref = rng.integers(0, 60000, size=(80, 64, 24), dtype=np.uint16)
    _write_h5s(
        root,
        ref,
        offset=offset,
        block=block,
        chunk=chunk,
        skip=(1, 0, 1),
        config={
            "h5FilePrefix": "block_",
            "dataType": "UInt16",
            "globalOffset": list(offset),
            "blockSize": list(block),
            "chunkSize": list(chunk),
            "compression": "blosc",
        },
    )
    ref = ref.copy()
    ref[40:80, 0:32, 12:24] = 0  # the missing block
    return root, ref, offset


def test_h5s_reads_bit_exactly(h5s_blosc):
    root, ref, offset = h5s_blosc
    a = BigArray(str(root))
    assert a.encoding == "h5s"
    assert a.shape == ref.shape and a.dtype == np.uint16
    assert a.voxel_offset == offset
    assert a.chunks == (40, 32, 12)
    whole = a[a.bounds]
    assert whole.flags.f_contiguous
    np.testing.assert_array_equal(whole, ref)
    rng = np.random.default_rng(2)
    for _ in range(20):
        lo = [int(rng.integers(o - 10, o + s)) for o, s in zip(offset, ref.shape, strict=True)]
        hi = [int(low + rng.integers(1, 50)) for low in lo]
        cut = a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.testing.assert_array_equal(cut, _expected(ref, offset, lo, hi))
    assert a[offset[0] + 5, offset[1] + 6, offset[2] + 7] == ref[5, 6, 7]


def test_h5s_missing_block_can_raise(h5s_blosc):
    root, _, offset = h5s_blosc
    a = BigArray(str(root), fill_missing=False)
    with pytest.raises(MissingChunkError, match="block_41-80_1-32_13-24.h5"):
        a[offset[0] + 40 : offset[0] + 41, offset[1] : offset[1] + 1, offset[2] + 12 :]


def test_h5s_old_spellings_four_d_deflate(tmp_path):
    """2016 data: `prefix`, `blocksz`/`chunksz`, dataset `main`, shuffle+deflate, channels."""
    root = tmp_path / "old"
    rng = np.random.default_rng(3)
    block, chunk = (16, 16, 8, 3), (8, 8, 4, 3)
    ref = rng.random((32, 20, 8, 3), dtype=np.float32)
    _write_h5s(
        root,
        ref,
        offset=(0, 0, 0),
        block=block,
        chunk=chunk,
        dataset="main",
        prefix="chunk_",
        filters=dict(compression="gzip", compression_opts=4, shuffle=True),
        config={
            "prefix": "chunk_",
            "dataType": "Float32",
            "globalOffset": [0, 0, 0, 0],
            "blocksz": list(block),
            "chunksz": list(chunk),
            "compression": "deflate",
        },
    )
    a = BigArray(str(root))
    assert a.shape == (32, 32, 8, 3) and a.num_channels == 3 and a.dtype == np.float32
    expected = np.zeros((32, 32, 8, 3), np.float32)
    expected[:, :20] = ref
    np.testing.assert_array_equal(a[:, :, :], expected)
    np.testing.assert_array_equal(a[3:29, 5:19, 2:7, 1], expected[3:29, 5:19, 2:7, 1])
    # An unaligned write into the old layout lands in its `main` datasets, channels last.
    box = rng.random((10, 9, 5, 3), dtype=np.float32)
    a[12:22, 14:23, 1:6] = box
    expected[12:22, 14:23, 1:6] = box
    np.testing.assert_array_equal(BigArray(str(root))[:, :, :], expected)
    with h5py.File(root / "chunk_17-32_1-16_1-8_1-3.h5", "r") as f:
        np.testing.assert_array_equal(f["main"][...].T, expected[16:32, 0:16, 0:8])
    # Handles pickle as their path and options.
    again = pickle.loads(pickle.dumps(a))
    assert again.encoding == "h5s" and again.shape == a.shape
    np.testing.assert_array_equal(again[0:5, 0:5, 0:5], expected[0:5, 0:5, 0:5])


def test_h5s_concurrent_reads(h5s_blosc):
    root, ref, offset = h5s_blosc
    shared = BigArray(str(root))
    rng = np.random.default_rng(4)
    boxes = []
    for _ in range(48):
        lo = [int(rng.integers(o, o + s)) for o, s in zip(offset, ref.shape, strict=True)]
        hi = [int(low + rng.integers(1, 40)) for low in lo]
        boxes.append((lo, hi))

    def cut(i: int) -> bool:
        lo, hi = boxes[i]
        a = shared if i % 2 else BigArray(str(root))  # one handle shared, and fresh ones
        got = a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        return np.array_equal(got, _expected(ref, offset, lo, hi))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(cut, range(len(boxes))))


def test_corrupt_and_truncated_files_name_the_file(h5s_blosc, tmp_path):
    root, _, offset = h5s_blosc
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(root):
        (broken / name).write_bytes((root / name).read_bytes())
    victim = broken / "block_1-40_1-32_1-12.h5"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    a = BigArray(str(broken))
    with pytest.raises(ChunkDecodeError, match="block_1-40_1-32_1-12.h5"):
        a[offset[0] : offset[0] + 40, offset[1] : offset[1] + 32, offset[2] : offset[2] + 12]
    victim.write_bytes(b"not an HDF5 file at all" * 100)
    with pytest.raises(ChunkDecodeError, match="block_1-40_1-32_1-12.h5"):
        BigArray(str(broken))[offset[0], offset[1], offset[2]]


def _write_aligned(root, fields: int):
    """Sections of differing sizes at offsets; z=2 listed but its file missing; z=4 blank."""
    root.mkdir()
    rng = np.random.default_rng(5 + fields)
    sections = [
        ("1,1_a", 10, 20, 50, 40),
        ("1,2_b", 0, 25, 64, 30),
        ("1,3_missing", 5, 5, 30, 30),
        ("1,4_c", 30, 0, 20, 70),
    ]
    lines, images = [], {}
    for name, xoff, yoff, xdim, ydim in sections:
        img = rng.integers(1, 255, size=(xdim, ydim), dtype=np.uint8)  # Julia (x, y)
        images[name] = img
        extra = "0 " if fields == 7 else ""
        lines.append(f"{name} {extra}{xoff} {yoff} {xdim} {ydim} tf.txt")
        if "missing" not in name:
            with h5py.File(root / f"{name}.h5", "w") as f:
                f.create_dataset("img", data=np.ascontiguousarray(img.T), chunks=(16, 16))
    lines.append("")
    (root / "registry.txt").write_text("\n".join(lines) + "\n")
    lo = (0, 0)
    hi = (64, 70)
    ref = np.zeros((hi[0] - lo[0], hi[1] - lo[1], len(lines)), np.uint8)
    for z, (name, xoff, yoff, xdim, ydim) in enumerate(sections):
        if "missing" not in name:
            ref[xoff : xoff + xdim, yoff : yoff + ydim, z] = images[name]
    return ref


@pytest.mark.parametrize("fields", [6, 7])
def test_aligned_sections(tmp_path, fields):
    root = tmp_path / "aligned"
    ref = _write_aligned(root, fields)
    a = BigArray(str(root))
    assert a.encoding == "aligned" and a.dtype == np.uint8
    assert a.shape == ref.shape and a.voxel_offset == (0, 0, 0)
    np.testing.assert_array_equal(a[:, :, :], ref)
    np.testing.assert_array_equal(
        a[-5:40, 22:90, 1:3], _expected(ref, (0, 0, 0), (-5, 22, 1), (40, 90, 3))
    )
    # The registry file itself names the layer too.
    np.testing.assert_array_equal(BigArray(str(root / "registry.txt"))[:, :, 3], ref[:, :, 3])
    with pytest.raises(MissingChunkError, match="1,3_missing.h5"):
        BigArray(str(root), fill_missing=False)[:, :, 2]


def test_single_hdf5_dataset(tmp_path):
    rng = np.random.default_rng(6)
    zyx = rng.integers(-1000, 1000, size=(20, 70, 50), dtype=np.int32)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=zyx, chunks=(8, 32, 32), compression="gzip")
        f.create_dataset("contiguous", data=zyx[:, :, :7].astype(">f8"))  # library fallback
        f.create_dataset("blosc", data=zyx, chunks=(5, 16, 16), **_blosc())
    xyz = zyx.transpose(2, 1, 0)
    a = BigArray(str(path))
    assert a.encoding == "hdf5" and a.shape == (50, 70, 20) and a.dtype == np.int32
    np.testing.assert_array_equal(a[:, :, :], xyz)
    np.testing.assert_array_equal(
        a[3:60, -4:33, 5:19], _expected(xyz, (0, 0, 0), (3, -4, 5), (60, 33, 19))
    )
    b = pickle.loads(pickle.dumps(BigArray(str(path), dataset="blosc")))
    np.testing.assert_array_equal(b[1:49, 2:69, 0:20], xyz[1:49, 2:69, 0:20])
    # Chunked gzip and Blosc datasets are decoded here; the contiguous one through libhdf5.
    assert a.info["reads_by_address"] and b.info["reads_by_address"]
    c = BigArray(str(path), dataset="contiguous")
    assert not c.info["reads_by_address"]
    assert c.dtype == np.float64
    np.testing.assert_array_equal(c[:, 3:50, 2:9], xyz[:7, 3:50, 2:9].astype(np.float64))


@pytest.mark.parametrize("compression", ["blosc", "gzip"])
def test_h5s_written_blocks_read_back_with_h5py(tmp_path, compression):
    root = tmp_path / "new"
    offset, block = (10, 20, 30), (32, 24, 8)
    a = BigArray.create(
        str(root),
        format="h5s",
        shape=(64, 48, 16),
        dtype="uint16",
        chunks=block,
        voxel_offset=offset,
        encoding_options={"chunk_size": (16, 8, 4)},
        compression=compression,
    )
    config = json.loads((root / "config.json").read_text())
    assert config["dataType"] == "UInt16" and config["blockSize"] == list(block)
    assert config["globalOffset"] == list(offset) and config["chunkSize"] == [16, 8, 4]
    rng = np.random.default_rng(7)
    ref = np.zeros((64, 48, 16), np.uint16)
    # Unaligned: first a box inside one block, then one across blocks (hyperslab writes
    # into the existing files keep their other voxels).
    for lo, hi in [((3, 2, 1), (20, 15, 7)), ((15, 10, 4), (60, 40, 13))]:
        box = rng.integers(
            1, 60000, size=tuple(h - low for low, h in zip(lo, hi, strict=True)), dtype=np.uint16
        )
        ref[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = box
        a[
            offset[0] + lo[0] : offset[0] + hi[0],
            offset[1] + lo[1] : offset[1] + hi[1],
            offset[2] + lo[2] : offset[2] + hi[2],
        ] = box
    np.testing.assert_array_equal(BigArray(str(root))[a.bounds], ref)
    names = sorted(n for n in os.listdir(root) if n.endswith(".h5"))
    assert "block_1-32_1-24_1-8.h5" in names and "block_33-64_25-48_9-16.h5" in names
    for name in names:
        ranges = [tuple(int(v) for v in r.split("-")) for r in name[6:-3].split("_")]
        with h5py.File(root / name, "r") as f:
            ds = f["img"]
            assert ds.shape == tuple(reversed(block)) and ds.chunks == (4, 8, 16)
            filters = [
                ds.id.get_create_plist().get_filter(i)[0]
                for i in range(ds.id.get_create_plist().get_nfilters())
            ]
            assert (BLOSC_FILTER_ID in filters) == (compression == "blosc")
            xyz = ds[...].transpose(2, 1, 0)
        sl = tuple(slice(a0 - 1, b0) for a0, b0 in ranges)
        np.testing.assert_array_equal(xyz, ref[sl])
    with pytest.raises(OutOfBoundsError):
        a[offset[0] : offset[0] + 65, offset[1], offset[2]] = 1


def test_a_missing_dataset_is_layer_not_found_naming_what_is_there(tmp_path):
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=np.zeros((4, 4, 4), np.uint8))
        f.create_dataset("main", data=np.zeros((4, 4, 4), np.uint8))
        f.create_group("meta")
    with pytest.raises(LayerNotFoundError) as e:
        BigArray(str(path), dataset="nope")
    message = str(e.value)
    assert "no dataset 'nope'" in message and "vol.h5" in message, message
    assert "it has: img, main" in message, message
    with pytest.raises(LayerNotFoundError, match="it has: img, main"):
        BigArray(str(path), dataset="meta")  # a group is not a dataset
    with pytest.raises(LayerNotFoundError, match="absent.h5: no such file"):
        BigArray(str(tmp_path / "absent.h5"), dataset="img")
