"""The jpeg, png, compressed_segmentation and blosc encodings, checked against the peers.

CloudVolume writes, bigarrays reads (bit-exactly; jpeg against CloudVolume's own decode of
the same files); bigarrays writes, CloudVolume and TensorStore read. compressed_segmentation
is also checked chunk by chunk against the ``compressed-segmentation`` package, blosc against
the ``blosc`` package. Corrupt chunks of every codec raise ``ChunkDecodeError`` naming the key.
Volumes are small, with odd chunk sizes and clipped edge chunks.
"""

from __future__ import annotations

import gzip
import os
import re

import blosc
import brotli
import compressed_segmentation as cseg
import numpy as np
import pyspng
import pytest
import simplejpeg
import tensorstore as ts
from cloudvolume import CloudVolume

import bigarrays
from bigarrays import BigArray

RESOLUTION = (4, 4, 40)
KEY = "4_4_40"
OFFSET = (3, -5, 7)
SIZE = (45, 29, 11)
CHUNKS = (16, 11, 4)  # no size is a multiple of its chunk size: edge chunks are clipped


def smooth_volume(seed: int, shape, dtype: str) -> np.ndarray:
    """Image-like voxels (a gradient plus mild noise): what jpeg is meant for."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    grid = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    base = sum(grid) / len(grid) * top * 0.8
    noise = rng.integers(0, max(top // 20, 2), size=shape)
    return np.asfortranarray((base + noise).astype(dtype))


def random_volume(seed: int, shape, dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return np.asfortranarray(
        rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    )


def labels(seed: int, shape, dtype: str, distinct: int) -> np.ndarray:
    """Segmentation-like labels: exactly ``distinct`` values (when the shape holds that many
    voxels) drawn from the whole dtype range."""
    rng = np.random.default_rng(seed)
    pool = np.unique(rng.integers(0, np.iinfo(dtype).max, size=2 * distinct + 8, dtype=dtype))
    pool = rng.permutation(pool)[:distinct]
    flat = pool[rng.integers(0, distinct, size=int(np.prod(shape)))]
    n = min(distinct, flat.size)
    flat[:n] = pool[:n]
    return np.asfortranarray(rng.permutation(flat).reshape(shape, order="F"))


def with_channels(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 4 else a[..., np.newaxis]


def bounds_key():
    return tuple(slice(o, o + n) for o, n in zip(OFFSET, SIZE, strict=True))


def cv_create(path, dtype, channels, encoding, compress=None, **extra) -> CloudVolume:
    info = CloudVolume.create_new_info(
        num_channels=channels,
        layer_type="segmentation" if encoding == "compressed_segmentation" else "image",
        data_type=dtype,
        encoding=encoding,
        resolution=list(RESOLUTION),
        voxel_offset=list(OFFSET),
        volume_size=list(SIZE),
        chunk_size=list(CHUNKS),
        **extra,
    )
    vol = CloudVolume(f"file://{path}", info=info, compress=compress, progress=False)
    vol.commit_info()
    return vol


def ba_create(path, dtype, channels, encoding, **kwargs) -> BigArray:
    return BigArray.create(
        str(path),
        shape=(*SIZE, channels),
        dtype=dtype,
        chunks=CHUNKS,
        voxel_offset=OFFSET,
        resolution=RESOLUTION,
        encoding=encoding,
        **kwargs,
    )


def chunk_range(name: str) -> list[tuple[int, int]]:
    """``"3-19_-5-6_7-11"`` → ``[(3, 19), (-5, 6), (7, 11)]``."""
    parts = [re.fullmatch(r"(-?\d+)-(-?\d+)", p) for p in name.split("_")]
    return [(int(m.group(1)), int(m.group(2))) for m in parts if m]


def turbo_decode(path, channels: int) -> np.ndarray:
    """The layer decoded chunk by chunk with libjpeg-turbo (simplejpeg, CloudVolume's
    decoder), channels de-interleaved correctly."""
    out = np.zeros((*SIZE, channels), dtype=np.uint8)
    for name in chunk_files(path):
        (x0, x1), (y0, y1), (z0, z1) = chunk_range(name)
        with open(os.path.join(path, KEY, name), "rb") as f:
            img = simplejpeg.decode_jpeg(f.read(), colorspace="GRAY" if channels == 1 else "RGB")
        tile = img.reshape(z1 - z0, y1 - y0, x1 - x0, channels).transpose(2, 1, 0, 3)
        out[x0 - OFFSET[0] : x1 - OFFSET[0], y0 - OFFSET[1] : y1 - OFFSET[1],
            z0 - OFFSET[2] : z1 - OFFSET[2]] = tile  # fmt: skip
    return out


def chunk_files(path) -> list[str]:
    return sorted(os.listdir(os.path.join(path, KEY)))


def ts_read(path) -> np.ndarray:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(path)}}
    return ts.open(spec, read=True).result().read().result()


def assert_exact(actual, expected, context: object = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    np.testing.assert_array_equal(actual, expected, err_msg=str(context))


# -- CloudVolume writes, bigarrays reads ------------------------------------------------------

PNG_CASES = [(d, c) for d in ("uint8", "uint16") for c in (1, 2, 3, 4)]
# CloudVolume encodes png with pyspng, which refuses 16-bit grey and 16-bit RGB.
CV_PNG_CASES = [case for case in PNG_CASES if case not in (("uint16", 1), ("uint16", 3))]


@pytest.mark.parametrize("dtype, channels", CV_PNG_CASES)
def test_png_written_by_cloudvolume_read_bit_exactly(tmp_path, dtype, channels):
    ref = random_volume(channels, (*SIZE, channels), dtype)
    vol = cv_create(tmp_path, dtype, channels, "png")
    vol[bounds_key()] = ref
    assert not any(f.endswith(".gz") for f in chunk_files(tmp_path))
    a = BigArray(str(tmp_path))
    assert a.encoding == "png"
    assert_exact(with_channels(a[a.bounds]), ref)
    # A cutout across chunk borders, one voxel inside the clipped edge.
    box = (slice(10, 40), slice(0, 23), slice(9, 17))
    rel = tuple(slice(s.start - o, s.stop - o) for s, o in zip(box, OFFSET, strict=True))
    assert_exact(with_channels(a[box]), ref[rel])


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_written_by_cloudvolume_matches_cloudvolumes_own_decode(tmp_path, channels):
    ref = smooth_volume(channels, (*SIZE, channels), "uint8")
    vol = cv_create(tmp_path, "uint8", channels, "jpeg")
    vol[bounds_key()] = ref
    # CloudVolume's own read of RGB jpeg is planar-confused; decode its files as it would.
    cv_decoded = turbo_decode(tmp_path, channels)
    if channels == 1:
        assert_exact(np.asarray(vol[bounds_key()]), cv_decoded)
    a = BigArray(str(tmp_path))
    # The same library with the same settings (libjpeg-turbo, accurate integer DCT, smooth
    # upsampling): every sample equal, clipped edge chunks included.
    assert_exact(with_channels(a[a.bounds]), cv_decoded)
    box = (slice(10, 40), slice(0, 23), slice(9, 17))
    rel = tuple(slice(s.start - o, s.stop - o) for s, o in zip(box, OFFSET, strict=True))
    assert_exact(with_channels(a[box]), cv_decoded[rel])
    assert np.abs(cv_decoded.astype(int) - ref.astype(int)).mean() < 6


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("block", [(8, 8, 8), (3, 5, 2)])
def test_compressed_segmentation_written_by_cloudvolume_read_bit_exactly(tmp_path, dtype, block):
    ref = labels(1, (*SIZE, 1), dtype, 40)
    vol = cv_create(
        tmp_path, dtype, 1, "compressed_segmentation", compressed_segmentation_block_size=block
    )
    vol[bounds_key()] = ref
    assert all(f.endswith(".gz") for f in chunk_files(tmp_path))
    a = BigArray(str(tmp_path))
    assert_exact(with_channels(a[a.bounds]), ref)


# -- bigarrays writes, CloudVolume and TensorStore read ---------------------------------------


@pytest.mark.parametrize("dtype, channels", PNG_CASES)
def test_png_written_by_bigarrays_read_by_peers(tmp_path, dtype, channels):
    ref = random_volume(10 + channels, (*SIZE, channels), dtype)
    a = ba_create(tmp_path, dtype, channels, "png", encoding_options={"png_level": 3})
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    assert not any(f.endswith(".gz") for f in chunk_files(tmp_path))  # CloudVolume's default
    assert_exact(ts_read(tmp_path), ref)
    if (dtype, channels) == ("uint8", 1):
        # CloudVolume 12.15 reads multi-channel images as if planar (it cannot round-trip
        # its own), and pyspng loads 16-bit grey as bytes: only this case is comparable.
        assert_exact(CloudVolume(f"file://{tmp_path}", progress=False)[bounds_key()], ref)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_written_by_bigarrays_read_by_peers_in_orientation(tmp_path, channels):
    # A gradient along x only, then one along y: a transposed or flipped tile cannot pass.
    x = np.linspace(0, 250, SIZE[0])[:, None, None]
    y = np.linspace(0, 250, SIZE[1])[None, :, None]
    planes = [x + 0 * y, y + 0 * x, (x + y) / 2][:channels]
    ref = np.stack([np.broadcast_to(p, SIZE) for p in planes], axis=-1).astype(np.uint8)
    a = ba_create(tmp_path, "uint8", channels, "jpeg", encoding_options={"jpeg_quality": 95})
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    assert a.info["scales"][0]["jpeg_quality"] == 95
    assert not any(f.endswith(".gz") for f in chunk_files(tmp_path))
    readers = [
        ("tensorstore", ts_read(tmp_path)),
        ("bigarrays", with_channels(BigArray(str(tmp_path))[a.bounds])),
    ]
    if channels == 1:  # CloudVolume reads RGB images as if planar (see the png test)
        cv = CloudVolume(f"file://{tmp_path}", progress=False)
        readers.append(("cloudvolume", np.asarray(cv[bounds_key()])))
    for name, got in readers:
        err = np.abs(got.astype(int) - ref.astype(int))
        assert got.shape == ref.shape and err.mean() < 3 and err.max() < 40, (name, err.max())
    # Our files decode to the same samples in libjpeg-turbo (CloudVolume's decoder) as here.
    assert_exact(readers[1][1], turbo_decode(tmp_path, channels))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_written_by_bigarrays_is_what_cloudvolume_writes(tmp_path, channels):
    """Same library, same settings: byte for byte CloudVolume's files. Only at quality >= 96,
    because below it CloudVolume's simplejpeg (TurboJPEG's old API) silently switches to the
    fast, less accurate integer DCT, where we keep the accurate one at every quality."""
    ref = smooth_volume(40 + channels, (*SIZE, channels), "uint8")
    a = ba_create(tmp_path, "uint8", channels, "jpeg", encoding_options={"jpeg_quality": 97})
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    for name in chunk_files(tmp_path):
        (x0, x1), (y0, y1), (z0, z1) = chunk_range(name)
        tile = ref[x0 - OFFSET[0] : x1 - OFFSET[0], y0 - OFFSET[1] : y1 - OFFSET[1],
                   z0 - OFFSET[2] : z1 - OFFSET[2]]  # fmt: skip
        img = np.ascontiguousarray(tile.transpose(2, 1, 0, 3).reshape(-1, x1 - x0, channels))
        space = "GRAY" if channels == 1 else "RGB"
        theirs = simplejpeg.encode_jpeg(img, 97, space, "Gray" if channels == 1 else "444")
        with open(os.path.join(tmp_path, KEY, name), "rb") as f:
            assert f.read() == theirs, name


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("channels", [1, 2])
def test_compressed_segmentation_written_by_bigarrays_read_by_peers(tmp_path, dtype, channels):
    ref = labels(3, (*SIZE, channels), dtype, 25)
    a = ba_create(
        tmp_path,
        dtype,
        channels,
        "compressed_segmentation",
        encoding_options={"compressed_segmentation_block_size": [4, 3, 2]},
    )
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    assert all(f.endswith(".gz") for f in chunk_files(tmp_path))
    assert_exact(ts_read_gz_free(tmp_path, a, ref), ref)
    assert_exact(CloudVolume(f"file://{tmp_path}", progress=False)[bounds_key()], ref)


def ts_read_gz_free(path, a: BigArray, ref) -> np.ndarray:
    """TensorStore ignores ``.gz`` files: rewrite the layer with plain chunks, then read."""
    plain = BigArray(str(path), compression=None)
    plain[plain.bounds] = ref if a.num_channels > 1 else ref[..., 0]
    assert not any(f.endswith(".gz") for f in chunk_files(path))
    return ts_read(path)


# -- compressed_segmentation against the reference package ------------------------------------

# The package hangs on a block of more than 65536 distinct labels (32-bit indices): 70000 is
# checked against TensorStore instead, below.
DISTINCT = [1, 2, 3, 4, 5, 16, 17, 255, 257, 4097, 65536]


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_compressed_segmentation_matches_the_package(tmp_path, dtype):
    # One chunk = one block of 64·64·32 voxels, so a block holds up to 70000 distinct labels.
    shape, block = (64, 64, 32), (64, 64, 32)
    a = BigArray.create(str(tmp_path), shape=shape, dtype=dtype, chunks=shape,
                        encoding="compressed_segmentation", compression=None,
                        encoding_options={"compressed_segmentation_block_size": block})  # fmt: skip
    path = os.path.join(tmp_path, KEY_1, "0-64_0-64_0-32")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for distinct in DISTINCT:
        ref = labels(distinct, shape, dtype, distinct)
        assert len(np.unique(ref)) == distinct
        theirs = cseg.compress(ref, block_size=block, order="F")
        with open(path, "wb") as f:
            f.write(theirs)
        assert_exact(a[0:64, 0:64, 0:32], ref, distinct)
        a[0:64, 0:64, 0:32] = ref
        with open(path, "rb") as f:
            ours = f.read()
        back = cseg.decompress(ours, shape, dtype, block_size=block, order="F")
        assert_exact(back.reshape(shape, order="F"), ref, distinct)
        assert ours == theirs, distinct


KEY_1 = "1_1_1"


def test_compressed_segmentation_32_bit_blocks_read_by_tensorstore(tmp_path):
    shape = (64, 64, 32)
    a = BigArray.create(str(tmp_path), shape=shape, dtype="uint64", chunks=shape,
                        encoding="compressed_segmentation", compression=None,
                        encoding_options={"compressed_segmentation_block_size": shape})  # fmt: skip
    ref = labels(70000, shape, "uint64", 70000)
    a[0:64, 0:64, 0:32] = ref
    with open(os.path.join(tmp_path, KEY_1, "0-64_0-64_0-32"), "rb") as f:
        assert f.read()[4 + 3] == 32  # encodedBits of the one block
    assert_exact(ts_read(tmp_path)[..., 0], ref)
    assert_exact(BigArray(str(tmp_path))[0:64, 0:64, 0:32], ref)


@pytest.mark.parametrize("block", [(8, 8, 8), (3, 5, 2), (16, 1, 7)])
def test_compressed_segmentation_clipped_chunks_match_the_package(tmp_path, block):
    ref = labels(7, (*SIZE, 1), "uint64", 50)
    a = ba_create(tmp_path, "uint64", 1, "compressed_segmentation", compression=None,
                  encoding_options={"compressed_segmentation_block_size": list(block)})  # fmt: skip
    a[a.bounds] = ref[..., 0]
    for name in chunk_files(tmp_path):
        (x0, x1), (y0, y1), (z0, z1) = chunk_range(name)
        with open(os.path.join(tmp_path, KEY, name), "rb") as f:
            ours = f.read()
        part = ref[x0 - OFFSET[0] : x1 - OFFSET[0], y0 - OFFSET[1] : y1 - OFFSET[1],
                   z0 - OFFSET[2] : z1 - OFFSET[2], 0]  # fmt: skip
        shape = part.shape
        back = cseg.decompress(ours, shape, "uint64", block_size=block, order="F")
        assert_exact(back.reshape(shape, order="F"), part, name)
        assert ours == cseg.compress(np.asfortranarray(part), block_size=block, order="F"), name


# -- blosc ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["blosc", "blosclz"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "uint64"])
def test_blosc_round_trip_and_package_buffers(tmp_path, encoding, dtype):
    ref = random_volume(5, (*SIZE, 2), "uint16").astype(dtype)
    a = ba_create(tmp_path, dtype, 2, encoding)
    a[a.bounds] = ref
    assert not any(f.endswith(".gz") for f in chunk_files(tmp_path))
    assert_exact(BigArray(str(tmp_path))[a.bounds], ref)
    # Buffers from Python's blosc package (several compressors) read the same.
    for name in chunk_files(tmp_path):
        p = os.path.join(tmp_path, KEY, name)
        with open(p, "rb") as f:
            raw = blosc.decompress(f.read())
        for cname in ("blosclz", "lz4", "zstd", "zlib"):
            packed = blosc.compress(raw, typesize=np.dtype(dtype).itemsize, cname=cname)
            with open(p, "wb") as f:
                f.write(packed)
            b = BigArray(str(tmp_path))
            assert_exact(b[b.bounds], ref, (name, cname))
        break


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, channels, encoding, options, field",
    [
        ("uint16", 1, "jpeg", None, "data_type"),
        ("uint8", 2, "jpeg", None, "num_channels"),
        ("float32", 1, "png", None, "data_type"),
        ("uint8", 5, "png", None, "num_channels"),
        ("float32", 1, "compressed_segmentation", None, "data_type"),
        ("uint8", 1, "compressed_segmentation", None, "data_type"),
        ("uint8", 1, "jpeg", {"jpeg_quality": 101}, "jpeg_quality"),
        ("uint8", 1, "png", {"png_level": 10}, "png_level"),
        ("uint32", 1, "compressed_segmentation",
         {"compressed_segmentation_block_size": [8, 0, 8]}, "compressed_segmentation_block_size"),
        ("uint8", 1, "blosc", {"blosc_compressor": "snappy"}, "blosc_compressor"),
        ("uint8", 1, "jpeg", {"jpeg_qualty": 5}, "jpeg_qualty"),
    ],
)  # fmt: skip
def test_impossible_combinations_are_refused_naming_the_field(
    tmp_path, dtype, channels, encoding, options, field
):
    with pytest.raises(bigarrays.BigArrayError, match=field) as e:
        ba_create(tmp_path, dtype, channels, encoding, encoding_options=options)
    assert isinstance(e.value, ValueError)
    assert not os.path.exists(os.path.join(tmp_path, "info"))


def test_jpeg_chunks_beyond_jpegs_size_limit_are_refused(tmp_path):
    a = BigArray.create(str(tmp_path), shape=(8, 300, 300), dtype="uint8", chunks=(8, 300, 300),
                        encoding="jpeg")  # fmt: skip
    with pytest.raises(bigarrays.InvalidArgumentError, match="65535"):
        a[:, :, :] = 1


CORRUPT_CASES = [
    ("uint8", 3, "jpeg"),
    ("uint16", 2, "png"),
    ("uint64", 1, "compressed_segmentation"),
    ("uint32", 2, "blosc"),
]


@pytest.mark.parametrize("dtype, channels, encoding", CORRUPT_CASES)
def test_corrupt_chunks_raise_chunk_decode_error_naming_the_key(
    tmp_path, dtype, channels, encoding
):
    ref = random_volume(9, (*SIZE, channels), dtype)
    a = ba_create(tmp_path, dtype, channels, encoding, compression=None)
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    name = chunk_files(tmp_path)[0]
    path = os.path.join(tmp_path, KEY, name)
    with open(path, "rb") as f:
        good = f.read()
    rng = np.random.default_rng(0)
    bads = [good[: len(good) // 2], good[:3], b"\x00" * 64, rng.bytes(len(good))]
    bads += [bytes(b ^ 0xFF if i % 11 == 5 else b for i, b in enumerate(good))]
    bads.append(gzip.compress(b"\x00" * (50 << 20)))  # a bomb far beyond any chunk's size
    for bad in bads:
        with open(path, "wb") as f:
            f.write(bad)
        try:
            a[a.bounds]
        except bigarrays.ChunkDecodeError as e:
            assert name in str(e)
        else:  # some corruptions still parse (flipped pixels); truncation never does
            assert bad is not bads[0] and bad is not bads[1]


def test_compression_defaults_follow_cloudvolume(tmp_path):
    for encoding, dtype, gz in [("raw", "uint8", True), ("png", "uint8", False),
                                ("jpeg", "uint8", False), ("blosc", "uint8", False),
                                ("compressed_segmentation", "uint32", True)]:  # fmt: skip
        path = tmp_path / encoding
        a = ba_create(path, dtype, 1, encoding)
        a[a.bounds] = 1
        assert all(f.endswith(".gz") == gz for f in chunk_files(path)), encoding
        b = BigArray(str(path), compression="zstd")
        b[a.bounds] = 2
        assert all(f.endswith(".zstd") for f in chunk_files(path)), encoding
        assert (BigArray(str(path))[a.bounds] == 2).all()


@pytest.mark.parametrize(
    "dtype, channels, encoding",
    [("uint16", 2, "raw"), ("uint64", 1, "compressed_segmentation"), ("uint8", 3, "jpeg")],
)
def test_brotli_transport_both_ways_with_cloudvolume(tmp_path, dtype, channels, encoding):
    """CloudVolume's ``compress="br"`` writes ``<key>.br`` files: we read them, and what we
    write with ``compression="br"`` CloudVolume reads."""
    if encoding == "compressed_segmentation":
        ref = labels(30, (*SIZE, channels), dtype, 20)
    elif encoding == "jpeg":
        ref = smooth_volume(30, (*SIZE, channels), dtype)
    else:
        ref = random_volume(30, (*SIZE, channels), dtype)
    vol = cv_create(tmp_path / "cv", dtype, channels, encoding, compress="br")
    vol[bounds_key()] = ref
    assert chunk_files(tmp_path / "cv") and all(
        f.endswith(".br") for f in chunk_files(tmp_path / "cv")
    )
    got = with_channels(BigArray(str(tmp_path / "cv"))[bounds_key()])
    if encoding == "jpeg":  # compare with libjpeg-turbo's decode of the same jpeg bytes
        expected = np.zeros_like(ref)
        for name in chunk_files(tmp_path / "cv"):
            with open(os.path.join(tmp_path, "cv", KEY, name), "rb") as f:
                img = simplejpeg.decode_jpeg(brotli.decompress(f.read()), colorspace="RGB")
            (x0, x1), (y0, y1), (z0, z1) = chunk_range(name.removesuffix(".br"))
            expected[x0 - OFFSET[0] : x1 - OFFSET[0], y0 - OFFSET[1] : y1 - OFFSET[1],
                     z0 - OFFSET[2] : z1 - OFFSET[2]] = (
                img.reshape(z1 - z0, y1 - y0, x1 - x0, 3).transpose(2, 1, 0, 3)
            )  # fmt: skip
        assert_exact(got, expected)
        return  # CloudVolume reads RGB jpeg as if planar: the reverse is not comparable
    assert_exact(got, ref)
    a = ba_create(tmp_path / "ba", dtype, channels, encoding, compression="br")
    a[a.bounds] = ref if channels > 1 else ref[..., 0]
    assert all(f.endswith(".br") for f in chunk_files(tmp_path / "ba"))
    cv = CloudVolume(f"file://{tmp_path / 'ba'}", progress=False)
    assert_exact(np.asarray(cv[bounds_key()]), ref)
    assert_exact(with_channels(BigArray(str(tmp_path / "ba"))[a.bounds]), ref)


def test_brotli_bombs_and_corrupt_brotli_raise_chunk_decode_error(tmp_path):
    a = ba_create(tmp_path, "uint32", 1, "compressed_segmentation", compression="br")
    a[a.bounds] = labels(31, (*SIZE, 1), "uint32", 5)[..., 0]
    name = chunk_files(tmp_path)[0]
    path = os.path.join(tmp_path, KEY, name)
    with open(path, "rb") as f:
        good = f.read()
    bomb = brotli.compress(b"\x00" * (200 << 20), quality=1)
    for bad in (bomb, good[: len(good) // 2], b"\x00" * 40):
        with open(path, "wb") as f:
            f.write(bad)
        with pytest.raises(bigarrays.ChunkDecodeError) as e:
            a[a.bounds]
        assert name.removesuffix(".br") in str(e.value)


# -- TensorStore writes, bigarrays reads; other image geometries ------------------------------


def ts_create(path, dtype, channels, encoding, **scale) -> ts.TensorStore:
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": f"{path}/"},
        "scale_metadata": {
            "size": list(SIZE),
            "voxel_offset": list(OFFSET),
            "chunk_size": list(CHUNKS),
            "resolution": list(RESOLUTION),
            "encoding": encoding,
            **scale,
        },
        "multiscale_metadata": {"data_type": dtype, "num_channels": channels, "type": "image"},
        "create": True,
    }
    return ts.open(spec).result()


@pytest.mark.parametrize(
    "dtype, channels, encoding, scale",
    [
        ("uint8", 1, "png", {}),
        ("uint16", 3, "png", {}),
        ("uint8", 4, "png", {}),
        ("uint32", 2, "compressed_segmentation", {"compressed_segmentation_block_size": [4, 3, 2]}),
        ("uint64", 1, "compressed_segmentation", {"compressed_segmentation_block_size": [8, 8, 8]}),
    ],
)  # fmt: skip
def test_tensorstore_written_read_bit_exactly(tmp_path, dtype, channels, encoding, scale):
    if encoding == "png":
        ref = random_volume(21, (*SIZE, channels), dtype)
    else:
        ref = labels(21, (*SIZE, channels), dtype, 30)
    ts_create(tmp_path, dtype, channels, encoding, **scale).write(ref).result()
    a = BigArray(str(tmp_path))
    assert_exact(with_channels(a[a.bounds]), ref)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_written_by_tensorstore_matches_libjpeg_turbo(tmp_path, channels):
    ref = smooth_volume(22, (*SIZE, channels), "uint8")
    ts_create(tmp_path, "uint8", channels, "jpeg").write(ref).result()
    got = with_channels(BigArray(str(tmp_path))[bounds_key()])
    assert_exact(got, turbo_decode(tmp_path, channels))


def test_png_of_any_geometry_with_the_right_pixel_count_reads(tmp_path):
    # Older TensorStore wrote width cx·cy and height cz; neuroglancer accepts any product.
    ref = random_volume(23, (*SIZE, 2), "uint16")
    a = ba_create(tmp_path, "uint16", 2, "png")
    a[a.bounds] = ref
    for name in chunk_files(tmp_path):
        (x0, x1), (y0, y1), (z0, z1) = chunk_range(name)
        p = os.path.join(tmp_path, KEY, name)
        with open(p, "rb") as f:
            img = pyspng.load(f.read())
        wide = np.ascontiguousarray(img.reshape(z1 - z0, (y1 - y0) * (x1 - x0), 2))
        with open(p, "wb") as f:
            f.write(pyspng.encode(wide))
    assert_exact(BigArray(str(tmp_path))[a.bounds], ref)


def test_create_docstring_names_every_encoding_and_option():
    """The codec registry is the list of encodings; BigArray.create's docstring must keep up."""
    doc = BigArray.create.__doc__ or ""
    for name, keys in bigarrays._core.encoding_option_keys().items():
        assert f'"{name}"' in doc, name
        for key in keys:
            assert f"``{key}``" in doc, key
