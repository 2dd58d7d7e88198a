"""Interoperability with CloudVolume: each side reads, bit for bit, what the other wrote.

Both speak Neuroglancer Precomputed on the local filesystem (``file://``), ``raw`` encoding,
unsharded, with CloudVolume's transport convention (``<key>.gz`` for gzip, plain ``<key>``
when uncompressed). All coordinates are absolute voxel coordinates on both sides.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from cloudvolume import CloudVolume
from volumes import absolute, assert_bit_exact, random_volume, window

from bigarrays import BigArray, MissingChunkError

RESOLUTION = (4, 4, 40)
SCALE_KEY = "4_4_40"

# (dtype, num_channels, chunk size, volume size); no size is a multiple of its chunk size.
DTYPE_CASES = {
    "uint8": ("uint8", 1, (32, 32, 16), (100, 90, 70)),
    "uint16x3": ("uint16", 3, (16, 20, 8), (70, 45, 37)),
    "uint64": ("uint64", 1, (16, 20, 8), (70, 45, 37)),
    "float32": ("float32", 1, (32, 32, 16), (100, 90, 70)),
}
OFFSETS = {
    "zero": (0, 0, 0),
    "negative": (-37, -5, -100),
    "odd": (3, 17, 5),
}
# CloudVolume's ``compress``: None is its default (gzip for raw), False writes plain chunks.
CV_COMPRESS = {"gzip": None, "raw": False}


# -- helpers ---------------------------------------------------------------------------------


def box_shape(key: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(k.stop - k.start for k in key)


def to_ref_index(key: tuple, offset) -> tuple:
    """An absolute, in-bounds spatial key translated into a NumPy key on the reference."""
    out = []
    for k, o in zip(key, offset, strict=False):
        if isinstance(k, slice):
            start = None if k.start is None else k.start - o
            stop = None if k.stop is None else k.stop - o
            assert (start is None or start >= 0) and (stop is None or stop >= 0)
            out.append(slice(start, stop, k.step))
        else:
            assert k - o >= 0
            out.append(k - o)
    return tuple(out) + tuple(key[3:])


def boxes(offset, size, chunks) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Named absolute ``(start, stop)`` boxes for a layer at ``offset`` of ``size``."""
    o, n, c = (np.array(v) for v in (offset, size, chunks))

    def box(start, stop):
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)

    return {
        "aligned_one_chunk": box(o + c, o + 2 * c),
        "aligned_multi_chunk": box(o, o + 2 * c),
        "aligned_edge_chunks": box(o + (n // c) * c, o + n),  # the clipped last chunks
        "unaligned": box(o + (5, 7, 3), o + n - (4, 9, 2)),
        "unaligned_small": box(o + c - (3, 2, 1), o + c + (2, 5, 3)),
        "crossing_low_edge": box(o - (6, 3, 2), o + (9, 11, 4)),
        "crossing_high_edge": box(o + n - (10, 7, 5), o + n + (13, 4, 9)),
        "enclosing_layer": box(o - (2, 1, 3), o + n + (3, 2, 1)),
        "outside_high": box(o + n + (3, 0, 0), o + n + (20, 5, 4)),
        "outside_low": box(o - (50, 40, 30), o - (20, 25, 12)),
        "outside_touching": box(o - (7, 0, 0), o + (0, 8, 8)),
    }


BOX_NAMES = list(boxes((0, 0, 0), (1, 1, 1), (1, 1, 1)))


def stepped_keys(offset, size, chunks, num_channels) -> list[tuple]:
    """Integer and stepped keys in absolute coordinates, all inside the layer."""
    (ox, oy, oz), (nx, ny, nz), (cx, cy, cz) = offset, size, chunks
    keys = [
        (ox + 4, slice(oy + 3, oy + ny - 2), slice(None, None, 2)),
        (slice(None, None, 3), oy + cy, oz + nz - 1),
        (slice(ox + 1, ox + nx, 2), slice(oy + 5, oy + cy + 9, 5), slice(oz, oz + 3 * cz, 3)),
        (ox + nx - 1, oy, oz + cz),
        (slice(ox + cx - 2, ox + cx + 3), oy + ny - 1, slice(oz + 1, None, 4)),
        (slice(None), slice(None, oy + 7), oz + 2),
    ]
    if num_channels > 1:
        keys += [
            (slice(ox + 2, ox + 30, 3), oy + 1, slice(None), num_channels - 1),
            (ox, oy, oz, 1),
            (slice(None, None, 4), slice(oy, oy + 9), oz + 5, slice(0, 2)),
        ]
    return keys


def reference_for(case: str) -> np.ndarray:
    """The reference volume of a dtype case: ``(x, y, z)`` or ``(x, y, z, c)``."""
    dtype, num_channels, _, size = DTYPE_CASES[case]
    seed = sorted(DTYPE_CASES).index(case)
    return random_volume(seed, size + ((num_channels,) if num_channels > 1 else ()), dtype)


def with_channel_axis(ref: np.ndarray) -> np.ndarray:
    """CloudVolume's shape: always ``(x, y, z, c)``."""
    return ref if ref.ndim == 4 else ref[..., np.newaxis]


def cv_create(path, case: str, offset, compress, size=None) -> CloudVolume:
    dtype, num_channels, chunks, default_size = DTYPE_CASES[case]
    info = CloudVolume.create_new_info(
        num_channels=num_channels,
        layer_type="image",
        data_type=dtype,
        encoding="raw",
        resolution=list(RESOLUTION),
        voxel_offset=list(offset),
        volume_size=list(size or default_size),
        chunk_size=list(chunks),
    )
    vol = CloudVolume(f"file://{path}", info=info, compress=compress, progress=False)
    vol.commit_info()
    return vol


def chunk_files(path) -> list[str]:
    return sorted(os.listdir(os.path.join(path, SCALE_KEY)))


def chunk_grid_keys(offset, size, chunks, start=None, stop=None) -> set[str]:
    """The precomputed keys of every chunk of the layer meeting the box ``[start, stop)``."""
    start = offset if start is None else start
    stop = tuple(o + n for o, n in zip(offset, size, strict=True)) if stop is None else stop
    ranges = []
    for o, n, c, a, b in zip(offset, size, chunks, start, stop, strict=True):
        axis = []
        for lo in range(o, o + n, c):
            hi = min(lo + c, o + n)
            if lo < b and hi > a:
                axis.append(f"{lo}-{hi}")
        ranges.append(axis)
    return {f"{x}_{y}_{z}" for x in ranges[0] for y in ranges[1] for z in ranges[2]}


# -- 1. CloudVolume writes, BigArray reads ----------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        (compress, case, offset)
        for compress in CV_COMPRESS
        for case in DTYPE_CASES
        for offset in OFFSETS
    ],
    ids=lambda p: "-".join(p),
)
def cv_written(request, tmp_path_factory):
    """A layer written whole by CloudVolume, with its NumPy reference and BigArray handle."""
    compress, case, offset_name = request.param
    offset = OFFSETS[offset_name]
    path = tmp_path_factory.mktemp(f"cv-{compress}-{case}-{offset_name}")
    ref = reference_for(case)
    vol = cv_create(path, case, offset, CV_COMPRESS[compress])
    vol[vol.bounds] = with_channel_axis(ref)
    files = chunk_files(path)
    assert files and all(f.endswith(".gz") == (compress == "gzip") for f in files)
    _, num_channels, chunks, size = DTYPE_CASES[case]
    assert {f.removesuffix(".gz") for f in files} == chunk_grid_keys(offset, size, chunks)
    return {
        "array": BigArray(str(path)),
        "ref": ref,
        "offset": offset,
        "size": size,
        "chunks": chunks,
        "num_channels": num_channels,
        "path": path,
    }


def test_cloudvolume_layer_metadata(cv_written):
    a, ref, offset = cv_written["array"], cv_written["ref"], cv_written["offset"]
    assert a.shape == ref.shape
    assert a.dtype == ref.dtype
    assert a.chunks == cv_written["chunks"]
    assert a.voxel_offset == offset
    assert a.num_channels == cv_written["num_channels"]
    assert a.bounds == absolute(offset, np.add(offset, cv_written["size"]))
    assert a.info["scales"][0]["key"] == SCALE_KEY
    # the file:// URL form opens the same layer
    b = BigArray(f"file://{cv_written['path']}")
    assert b.shape == a.shape and b.voxel_offset == a.voxel_offset


def test_cloudvolume_whole_layer_bit_exact(cv_written):
    a, ref = cv_written["array"], cv_written["ref"]
    got = a[a.bounds]
    assert got.flags.f_contiguous
    assert_bit_exact(got, ref)
    assert_bit_exact(a[...], ref)
    assert_bit_exact(np.asarray(a), ref)


@pytest.mark.parametrize("box_name", BOX_NAMES)
def test_cloudvolume_cutouts_bit_exact(cv_written, box_name):
    a, ref, offset = cv_written["array"], cv_written["ref"], cv_written["offset"]
    start, stop = boxes(offset, cv_written["size"], cv_written["chunks"])[box_name]
    got = a[absolute(start, stop)]
    expected = window(ref, offset, start, stop)
    assert_bit_exact(got, expected)
    if box_name.startswith("outside"):
        assert not np.any(got.view(f"u{got.dtype.itemsize}"))


def test_cloudvolume_integer_and_stepped_indices(cv_written):
    a, ref, offset = cv_written["array"], cv_written["ref"], cv_written["offset"]
    keys = stepped_keys(offset, cv_written["size"], cv_written["chunks"], a.num_channels)
    for key in keys:
        got = a[key]
        expected = ref[to_ref_index(key, offset)]
        assert_bit_exact(got, expected, context=key)


def test_cloudvolume_stepped_indices_crossing_edges(cv_written):
    a, ref, offset = cv_written["array"], cv_written["ref"], cv_written["offset"]
    (ox, oy, oz), (nx, ny, nz) = offset, cv_written["size"]
    start, stop = (ox - 5, oy + 2, oz - 9), (ox + 20, oy + ny + 6, oz + nz + 4)
    padded = window(ref, offset, start, stop)
    key = (slice(start[0], stop[0], 3), oy + 6, slice(start[2], stop[2], 2))
    assert_bit_exact(a[key], padded[::3, 4, ::2])
    key = (slice(start[0], stop[0]), slice(start[1], stop[1], 7), slice(start[2], stop[2], 5))
    assert_bit_exact(a[key], padded[:, ::7, ::5])
    # z lies outside the layer: all zeros, shaped as NumPy would shape it
    key = (ox + nx - 1, slice(start[1], stop[1], 7), oz - 1)
    expected = window(ref, offset, (ox + nx - 1, start[1], oz - 1), (ox + nx, stop[1], oz))
    got = a[key]
    assert_bit_exact(got, expected[0, ::7, 0])
    assert not np.any(got.view(f"u{got.dtype.itemsize}"))


# -- 2. BigArray writes, CloudVolume reads ----------------------------------------------------

BA_COMPRESSION = {"gzip": "gzip", "none": None}


def ba_create(path, case: str, offset, compression) -> BigArray:
    dtype, num_channels, chunks, size = DTYPE_CASES[case]
    kwargs = {} if compression == "gzip" else {"compression": compression}  # gzip is default
    return BigArray.create(
        str(path),
        shape=size + ((num_channels,) if num_channels > 1 else ()),
        dtype=dtype,
        chunks=chunks,
        voxel_offset=offset,
        resolution=RESOLUTION,
        **kwargs,
    )


def cv_open(path, fill_missing=False) -> CloudVolume:
    return CloudVolume(f"file://{path}", fill_missing=fill_missing, progress=False)


def cv_read_all(path, fill_missing=False) -> np.ndarray:
    vol = cv_open(path, fill_missing)
    return np.asarray(vol[vol.bounds])


@pytest.mark.parametrize("offset_name", list(OFFSETS))
@pytest.mark.parametrize("case", list(DTYPE_CASES))
@pytest.mark.parametrize("compression", list(BA_COMPRESSION))
def test_bigarray_written_read_by_cloudvolume(tmp_path, compression, case, offset_name):
    offset = OFFSETS[offset_name]
    dtype, num_channels, chunks, size = DTYPE_CASES[case]
    ref = reference_for(case)
    a = ba_create(tmp_path, case, offset, BA_COMPRESSION[compression])
    a[a.bounds] = ref

    files = chunk_files(tmp_path)
    assert all(f.endswith(".gz") == (compression == "gzip") for f in files)
    assert {f.removesuffix(".gz") for f in files} == chunk_grid_keys(offset, size, chunks)

    vol = cv_open(tmp_path)  # fill_missing=False: every chunk must be there
    assert tuple(vol.voxel_offset) == offset
    assert tuple(vol.volume_size) == size
    assert tuple(vol.chunk_size) == chunks
    assert vol.num_channels == num_channels
    assert np.dtype(vol.dtype) == np.dtype(dtype)
    assert tuple(vol.resolution) == RESOLUTION
    assert vol.layer_type == "image"
    assert_bit_exact(np.asarray(vol[vol.bounds]), with_channel_axis(ref))

    # CloudVolume's own unaligned, absolute-coordinate cutout
    start, stop = boxes(offset, size, chunks)["unaligned"]
    sl = absolute(start, stop)
    assert_bit_exact(np.asarray(vol[sl]), with_channel_axis(window(ref, offset, start, stop)))

    # Unaligned writes: BigArray reads, modifies and rewrites the chunks they cut through,
    # including the clipped chunks on the layer's far edges; CloudVolume sees old and new.
    o, n, c = np.array(offset), np.array(size), np.array(chunks)
    patches = [
        (o + (5, 7, 3), o + c + (6, 3, 2)),
        (o + n - (11, 6, 4), o + n),  # ends at the layer's clipped edge chunks
        (o + c - (1, 1, 1), o + c + (1, 1, 1)),  # 2x2x2 voxels touching 8 chunks
    ]
    for i, (start, stop) in enumerate(patches):
        sl = absolute(start, stop)
        patch_shape = box_shape(sl) + ref.shape[3:]
        patch = random_volume(100 + i, patch_shape, dtype)
        a[sl] = patch
        ref[to_ref_index(sl, offset)] = patch
    # a scalar, broadcast over an unaligned box
    sl = absolute(o + (2, 30, 1), o + (19, 37, 12))
    a[sl] = 7
    ref[to_ref_index(sl, offset)] = 7

    assert_bit_exact(cv_read_all(tmp_path), with_channel_axis(ref))
    assert_bit_exact(BigArray(str(tmp_path))[a.bounds], ref)


@pytest.mark.parametrize("offset_name", ["zero", "odd", "negative"])
@pytest.mark.parametrize("case", ["uint8", "uint16x3", "float32"])
@pytest.mark.parametrize("compression", list(BA_COMPRESSION))
def test_bigarray_unaligned_write_into_empty_layer(tmp_path, compression, case, offset_name):
    """Edge chunks created from scratch by an unaligned write hold zeros around the data."""
    offset = OFFSETS[offset_name]
    dtype, _, chunks, size = DTYPE_CASES[case]
    ref = np.zeros_like(reference_for(case), order="F")
    path, corner_path = tmp_path / "unaligned", tmp_path / "corner"
    a = ba_create(path, case, offset, BA_COMPRESSION[compression])
    o, n = np.array(offset), np.array(size)
    start, stop = o + (3, 9, 5), o + n - (2, 4, 3)
    sl = absolute(start, stop)
    patch = random_volume(7, box_shape(sl) + ref.shape[3:], dtype)
    a[sl] = patch
    ref[to_ref_index(sl, offset)] = patch
    # every chunk met by the write is complete on disk: CloudVolume needs no fill_missing
    assert_bit_exact(cv_read_all(path, fill_missing=False), with_channel_axis(ref))

    # a write confined to one corner leaves the other chunks absent
    corner = tuple(slice(int(v), int(v) + 2) for v in o + n - 2)
    a2 = ba_create(corner_path, case, offset, BA_COMPRESSION[compression])
    value = random_volume(8, (2, 2, 2) + ref.shape[3:], dtype)
    a2[corner] = value
    ref2 = np.zeros_like(ref)
    ref2[to_ref_index(corner, offset)] = value
    assert len(chunk_files(corner_path)) == 1
    assert_bit_exact(cv_read_all(corner_path, fill_missing=True), with_channel_axis(ref2))


# -- 3. Chunks CloudVolume never wrote ------------------------------------------------------

KEY_PATTERN = re.compile(r"(?<![\w-])-?\d+--?\d+_-?\d+--?\d+_-?\d+--?\d+(?![\w-])")


@pytest.mark.parametrize("offset_name", list(OFFSETS))
@pytest.mark.parametrize("compress", list(CV_COMPRESS))
def test_cloudvolume_missing_chunks(tmp_path, compress, offset_name):
    case = "uint16x3"
    offset = OFFSETS[offset_name]
    _, _, chunks, size = DTYPE_CASES[case]
    full = reference_for(case)
    vol = cv_create(tmp_path, case, offset, CV_COMPRESS[compress])
    o, c = np.array(offset), np.array(chunks)
    # two chunk-aligned regions; everything else is never written
    written = [
        (o, o + (2, 1, 3) * c),
        (o + (3, 1, 2) * c, o + np.array(size)),  # runs into the clipped edge chunks
    ]
    ref = np.zeros_like(full)
    for start, stop in written:
        sl = absolute(start, stop)
        vol[sl] = with_channel_axis(full[to_ref_index(sl, offset)])
        ref[to_ref_index(sl, offset)] = full[to_ref_index(sl, offset)]

    present = {f.removesuffix(".gz") for f in chunk_files(tmp_path)}
    everything = chunk_grid_keys(offset, size, chunks)
    missing = everything - present
    assert present and missing and present < everything

    a = BigArray(str(tmp_path))
    assert_bit_exact(a[a.bounds], ref)
    gap_start, gap_stop = o + (2, 0, 0) * c, o + (3, 1, 1) * c  # one missing chunk
    gap = absolute(gap_start, gap_stop)
    assert not np.any(a[gap])
    assert_bit_exact(a[gap], window(ref, offset, gap_start, gap_stop))

    strict = BigArray(str(tmp_path), fill_missing=False)
    # a box covered by written chunks reads fine
    sl = absolute(written[0][0] + 1, written[0][1] - 1)
    assert_bit_exact(strict[sl], ref[to_ref_index(sl, offset)])
    # a box inside one missing chunk names exactly that chunk
    (gap_key,) = chunk_grid_keys(offset, size, chunks, gap_start, gap_stop)
    assert gap_key in missing
    inner = tuple(slice(s.start + 1, s.stop - 2) for s in gap)
    with pytest.raises(MissingChunkError) as excinfo:
        strict[inner]
    assert isinstance(excinfo.value, KeyError)
    assert gap_key in str(excinfo.value)
    assert KEY_PATTERN.findall(str(excinfo.value)) == [gap_key]
    # the whole layer names some missing chunk (and no present one)
    with pytest.raises(KeyError) as excinfo:
        strict[strict.bounds]
    assert isinstance(excinfo.value, MissingChunkError)
    named = set(KEY_PATTERN.findall(str(excinfo.value)))
    assert named and named <= missing
