"""The jxl (JPEG XL) encoding, checked against the peers.

CloudVolume writes jxl layers (libjxl through imagecodecs: one grey frame per channel, an
image of width x and height y·z) → bigarrays reads them: lossless bit-exactly equal to the
source, lossy equal to libjxl's own decode of the same bytes within one grey level (libjxl
dithers 8-bit output, with a pattern that differs between its versions). bigarrays writes
(lossless, one channel) → CloudVolume and libjxl read bit-exactly. Hostile chunks raise
``ChunkDecodeError`` naming the key. Volumes are small, with clipped edge chunks.
"""

from __future__ import annotations

import os
import re

import imagecodecs
import numpy as np
import pytest
from cloudvolume import CloudVolume, chunks

import bigarrays
from bigarrays import BigArray
from bigarrays.cli import run as cli

RESOLUTION = (4, 4, 40)
KEY = "4_4_40"
OFFSET = (3, -5, 7)
SIZE = (45, 29, 11)
CHUNKS = (16, 11, 4)  # no size is a multiple of its chunk size: edge chunks are clipped


def smooth_volume(seed: int, shape) -> np.ndarray:
    """Image-like voxels (a gradient plus noise), what JPEG XL is meant for."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    base = sum(grid) / len(grid) * 200
    return np.asfortranarray((base + rng.integers(0, 40, size=shape)).astype(np.uint8))


def bounds_key():
    return tuple(slice(o, o + n) for o, n in zip(OFFSET, SIZE, strict=True))


def cv_create(path, channels, **scale_options) -> CloudVolume:
    info = CloudVolume.create_new_info(
        num_channels=channels,
        layer_type="image",
        data_type="uint8",
        encoding="jxl",
        resolution=list(RESOLUTION),
        voxel_offset=list(OFFSET),
        volume_size=list(SIZE),
        chunk_size=list(CHUNKS),
    )
    info["scales"][0].update(scale_options)
    vol = CloudVolume(f"file://{path}", info=info, progress=False)
    vol.commit_info()
    return vol


def ba_create(path, channels=1, **kwargs) -> BigArray:
    return BigArray.create(
        str(path),
        shape=(*SIZE, channels),
        dtype="uint8",
        chunks=CHUNKS,
        voxel_offset=OFFSET,
        resolution=RESOLUTION,
        encoding="jxl",
        **kwargs,
    )


def chunk_files(path) -> list[str]:
    return sorted(os.listdir(os.path.join(path, KEY)))


def chunk_range(name: str) -> list[tuple[int, int]]:
    """``"3-19_-5-6_7-11"`` → ``[(3, 19), (-5, 6), (7, 11)]``."""
    parts = [re.fullmatch(r"(-?\d+)-(-?\d+)", p) for p in name.split("_")]
    return [(int(m.group(1)), int(m.group(2))) for m in parts if m]


def libjxl_decode(path, channels: int) -> np.ndarray:
    """The layer decoded chunk by chunk with libjxl (imagecodecs, CloudVolume's decoder): the
    frames are the channels' planes, each an image of width x and height y·z."""
    out = np.zeros((*SIZE, channels), dtype=np.uint8)
    for name in chunk_files(path):
        (x0, x1), (y0, y1), (z0, z1) = chunk_range(name)
        with open(os.path.join(path, KEY, name), "rb") as f:
            planes = imagecodecs.jpegxl_decode(f.read(), numthreads=1)
        shape = (x1 - x0, y1 - y0, z1 - z0, channels)
        tile = planes.reshape(-1).reshape(shape, order="F")
        out[x0 - OFFSET[0] : x1 - OFFSET[0], y0 - OFFSET[1] : y1 - OFFSET[1],
            z0 - OFFSET[2] : z1 - OFFSET[2]] = tile  # fmt: skip
    return out


def read_all(a: BigArray) -> np.ndarray:
    got = np.asarray(a[a.bounds])
    return got if got.ndim == 4 else got[..., np.newaxis]


def write_all(a: BigArray, ref: np.ndarray) -> None:
    a[a.bounds] = ref if ref.shape[3] > 1 else ref[..., 0]


def assert_exact(actual, expected, context: object = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    np.testing.assert_array_equal(actual, expected, err_msg=str(context))


# -- CloudVolume writes, bigarrays reads -------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("effort", [1, 5, 7])
def test_lossless_written_by_cloudvolume_read_bit_exactly(tmp_path, channels, effort):
    ref = smooth_volume(channels + effort, (*SIZE, channels))
    vol = cv_create(tmp_path, channels, jxl_quality=100, jxl_effort=effort)
    vol[bounds_key()] = ref
    a = BigArray(str(tmp_path))
    assert a.encoding == "jxl"
    assert_exact(read_all(a), ref)
    assert_exact(libjxl_decode(tmp_path, channels), ref)  # libjxl agrees: lossless
    # A cutout across chunk borders, one voxel inside the clipped edge.
    box = (slice(10, 40), slice(0, 23), slice(9, 17))
    rel = tuple(slice(s.start - o, s.stop - o) for s, o in zip(box, OFFSET, strict=True))
    got = np.asarray(a[box])
    assert_exact(got if got.ndim == 4 else got[..., np.newaxis], ref[rel])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("quality", [85, 50, 95])
def test_lossy_written_by_cloudvolume_matches_libjxl_within_one_level(tmp_path, channels, quality):
    ref = smooth_volume(quality, (*SIZE, channels))
    vol = cv_create(tmp_path, channels, jxl_quality=quality)
    vol[bounds_key()] = ref
    ours = read_all(BigArray(str(tmp_path)))
    theirs = libjxl_decode(tmp_path, channels)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    # Same decoded image; libjxl 0.11 adds an 8x8 ordered dither before rounding to 8 bits,
    # jxl-rs the blue-noise dither of libjxl 0.12, so values near a rounding edge differ by 1.
    assert diff.max() <= 1, diff.max()
    assert np.abs(ours.astype(int) - ref.astype(int)).mean() < 12  # and it is the image


@pytest.mark.parametrize("quality", [50, 85, 95])
def test_lossy_photograph_differs_from_libjxl_only_by_its_dither(tmp_path, quality):
    """What docs/SEMANTICS.md promises for lossy jxl, on photographic voxels: within one grey
    level of libjxl, about the third of the voxels that two independent dithers predict
    differ, no bias, and the same error against the source."""
    data = pytest.importorskip("skimage.data")
    photo = data.camera()
    # Planes cut from a photograph, each window shifted a little: natural-image statistics.
    shape = (96, 80, 12)
    vol = np.asfortranarray(
        np.stack(
            [photo[100 + 3 * z :, 150 + 2 * z :][: shape[0], : shape[1]] for z in range(12)], 2
        )
    )
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="jxl",
        resolution=list(RESOLUTION), voxel_offset=[0, 0, 0], volume_size=list(shape),
        chunk_size=[32, 32, 4],
    )  # fmt: skip
    info["scales"][0]["jxl_quality"] = quality
    cv = CloudVolume(f"file://{tmp_path}", info=info, progress=False)
    cv.commit_info()
    cv[:, :, :] = vol
    ours = np.asarray(BigArray(str(tmp_path))[0:96, 0:80, 0:12]).astype(int)
    # CloudVolume decodes with libjxl (imagecodecs; checked at the end of this file).
    theirs = np.asarray(CloudVolume(f"file://{tmp_path}", progress=False)[:, :, :])[..., 0]
    theirs = theirs.astype(int)
    diff = ours - theirs
    assert np.abs(diff).max() <= 1
    assert 0.25 < np.count_nonzero(diff) / diff.size < 0.40, np.count_nonzero(diff) / diff.size
    assert abs(diff.mean()) < 0.01
    rms = [np.sqrt(np.mean((x - vol.astype(int)) ** 2)) for x in (ours, theirs)]
    assert abs(rms[0] - rms[1]) < 0.02 * rms[1], rms


@pytest.mark.parametrize("channels", [2, 4])
def test_frames_per_channel_written_by_libjxl_read_bit_exactly(tmp_path, channels):
    """CloudVolume's encoder stops at 3 channels; the layout (one frame per channel) holds 2
    and 4 as well, as neuroglancer reads it."""
    ref = smooth_volume(channels, (*SIZE, channels))
    a = ba_create(tmp_path / "layer", channels)
    os.makedirs(os.path.join(tmp_path, "layer", KEY), exist_ok=True)
    grid = [(x, y, z) for x in range(3, 48, 16) for y in range(-5, 24, 11) for z in range(7, 18, 4)]
    for x0, y0, z0 in grid:
        x1, y1, z1 = min(x0 + 16, 48), min(y0 + 11, 24), min(z0 + 4, 18)
        name = f"{x0}-{x1}_{y0}-{y1}_{z0}-{z1}"
        tile = ref[x0 - 3 : x1 - 3, y0 + 5 : y1 + 5, z0 - 7 : z1 - 7]
        planes = np.ascontiguousarray(tile.T.reshape(channels, (z1 - z0) * (y1 - y0), x1 - x0))
        data = imagecodecs.jpegxl_encode(planes, photometric="GRAY", lossless=True, effort=3)
        with open(os.path.join(tmp_path, "layer", KEY, name), "wb") as f:
            f.write(data)
    assert_exact(read_all(BigArray(str(tmp_path / "layer"))), ref)
    assert a.encoding == "jxl"


# -- bigarrays writes, the peers read ----------------------------------------------------------


@pytest.mark.parametrize("sharded", [False, True])
def test_written_by_bigarrays_read_bit_exactly_by_cloudvolume_and_libjxl(tmp_path, sharded):
    ref = smooth_volume(7, (*SIZE, 1))
    kwargs = {"sharding": "auto"} if sharded else {}
    a = ba_create(tmp_path, 1, **kwargs)
    write_all(a, ref)
    assert_exact(read_all(BigArray(str(tmp_path))), ref)
    vol = CloudVolume(f"file://{tmp_path}", progress=False, fill_missing=False)
    assert_exact(np.asarray(vol[bounds_key()]), ref)
    if not sharded:
        assert_exact(libjxl_decode(tmp_path, 1), ref)
        for name in chunk_files(tmp_path):  # plain JPEG XL codestreams, no transport wrapping
            with open(os.path.join(tmp_path, KEY, name), "rb") as f:
                assert f.read(2) == b"\xff\x0a", name


def test_options_follow_cloudvolumes_names_and_are_kept(tmp_path):
    # We write lossless: a new layer says so unless told otherwise (CloudVolume's default,
    # when the key is absent, is 85: lossy).
    assert ba_create(tmp_path / "default", 1).info["scales"][0]["jxl_quality"] == 100
    a = ba_create(tmp_path, 1, encoding_options={"jxl_quality": 100, "jxl_effort": 3})
    scale = a.info["scales"][0]
    assert scale["jxl_quality"] == 100 and scale["jxl_effort"] == 3
    write_all(a, smooth_volume(3, (*SIZE, 1)))
    assert CloudVolume(f"file://{tmp_path}").meta.compression_params(0)["jxl_effort"] == 3


@pytest.mark.parametrize("made_by", ["CloudVolume", "bigarrays"])
def test_a_lossy_layer_written_by_bigarrays_gets_lossless_chunks(tmp_path, made_by):
    """No pure-Rust lossy JPEG XL encoder can ship under this crate's licence, so chunks we
    write are lossless whatever ``jxl_quality`` says (docs/SEMANTICS.md): into CloudVolume's
    quality-85 layer, or one created here asking for 85, they read back exactly, by
    CloudVolume and libjxl too, and the info keeps the quality for other writers."""
    ref = smooth_volume(5, (*SIZE, 1))
    if made_by == "CloudVolume":
        cv_create(tmp_path, 1, jxl_quality=85)
        a = BigArray(str(tmp_path))
    else:
        a = ba_create(tmp_path, 1, encoding_options={"jxl_quality": 85})
    assert a.info["scales"][0]["jxl_quality"] == 85
    write_all(a, ref)
    assert_exact(read_all(BigArray(str(tmp_path))), ref)
    assert_exact(np.asarray(CloudVolume(f"file://{tmp_path}", progress=False)[bounds_key()]), ref)
    assert_exact(libjxl_decode(tmp_path, 1), ref)
    assert BigArray(str(tmp_path)).info["scales"][0]["jxl_quality"] == 85


def test_cp_to_and_from_jxl(tmp_path):
    ref = smooth_volume(11, (*SIZE, 1))
    src = BigArray.create(str(tmp_path / "raw"), shape=(*SIZE, 1), dtype="uint8", chunks=CHUNKS,
                          voxel_offset=OFFSET, resolution=RESOLUTION)  # fmt: skip
    write_all(src, ref)
    assert cli(["cp", str(tmp_path / "raw"), str(tmp_path / "jxl"), "--encoding", "jxl"]) == 0
    out = BigArray(str(tmp_path / "jxl"))
    assert out.encoding == "jxl"
    assert_exact(read_all(out), ref)
    assert cli(["cp", str(tmp_path / "jxl"), str(tmp_path / "back"), "--encoding", "raw"]) == 0
    assert_exact(read_all(BigArray(str(tmp_path / "back"))), ref)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, channels, options, field",
    [
        ("uint16", 1, None, "data_type"),
        ("uint64", 1, None, "data_type"),
        ("float32", 1, None, "data_type"),
        ("uint8", 5, None, "num_channels"),
        ("uint8", 1, {"jxl_quality": 101}, "jxl_quality"),
        ("uint8", 1, {"jxl_effort": 11}, "jxl_effort"),
    ],
)
def test_impossible_combinations_are_refused_naming_the_field(
    tmp_path, dtype, channels, options, field
):
    with pytest.raises(bigarrays.BigArrayError, match=field) as e:
        BigArray.create(str(tmp_path), shape=(8, 8, 8, channels), dtype=dtype, encoding="jxl",
                        encoding_options=options)  # fmt: skip
    assert isinstance(e.value, ValueError)
    assert not os.path.exists(os.path.join(tmp_path, "info"))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_several_channels_written_by_bigarrays_read_bit_exactly_by_libjxl(tmp_path, channels):
    """One grey frame per channel, as CloudVolume writes (CloudVolume 12.15's own reader
    mixes the channels of 3-channel jxl up, as it does for png and jpeg: libjxl checks)."""
    ref = smooth_volume(channels, (*SIZE, channels))
    a = ba_create(tmp_path, channels)
    write_all(a, ref)
    assert_exact(read_all(BigArray(str(tmp_path))), ref)
    assert_exact(libjxl_decode(tmp_path, channels), ref)


def hostile_variants(good: bytes, other: bytes) -> list[tuple[str, bytes]]:
    flipped = bytearray(good)
    for i in range(2, len(flipped), 3):
        flipped[i] ^= 0xA5
    # A codestream header declaring a 60000 × 60000 image (the decoder must refuse it before
    # allocating): signature, then SizeHeader with ysize and xsize in the 30-bit form.
    bits = [0] + [1, 1] + [int(b) for b in f"{59999:030b}"][::-1] + [0, 0, 0]
    bits += [1, 1] + [int(b) for b in f"{59999:030b}"][::-1]
    bits += [0] * (-len(bits) % 8)
    huge = b"\xff\x0a" + bytes(
        sum(bit << j for j, bit in enumerate(bits[i : i + 8])) for i in range(0, len(bits), 8)
    ) + good[10:]  # fmt: skip
    return [
        ("truncated", good[: len(good) // 2]),
        ("signature only", good[:2]),
        ("flipped", bytes(flipped)),
        ("garbage", b"\x00jxl?" * 40),
        ("another chunk's image", other),
        ("huge declared size", huge),
        ("empty container box", b"\x00\x00\x00\x0cJXL \r\n\x87\n"),
    ]


def test_hostile_chunks_raise_chunk_decode_error_naming_the_key(tmp_path):
    ref = smooth_volume(5, (*SIZE, 1))
    a = ba_create(tmp_path, 1)
    write_all(a, ref)
    names = chunk_files(tmp_path)
    first = os.path.join(tmp_path, KEY, names[0])
    with open(first, "rb") as f:
        good = f.read()
    with open(os.path.join(tmp_path, KEY, names[-1]), "rb") as f:
        other = f.read()  # a clipped edge chunk: another size
    for what, data in hostile_variants(good, other):
        with open(first, "wb") as f:
            f.write(data)
        with pytest.raises(bigarrays.ChunkDecodeError) as e:
            BigArray(str(tmp_path))[a.bounds]
        assert names[0] in str(e.value), (what, str(e.value))
    with open(first, "wb") as f:
        f.write(good)
    assert_exact(read_all(BigArray(str(tmp_path))), ref)


def test_cloudvolume_encode_path_is_what_the_tests_assume():
    """CloudVolume lays a chunk out as an image of width x, height y·z, one frame per channel."""
    vol = smooth_volume(2, (5, 4, 3, 3))
    planes = imagecodecs.jpegxl_decode(chunks.encode(vol, "jxl", compression_params={"level": 100}))
    assert planes.shape == (3, 12, 5)
    assert_exact(planes.reshape(-1).reshape(vol.shape, order="F"), vol)
