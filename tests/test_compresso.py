"""The ``compresso`` encoding against its real peers: the PyPI ``compresso`` package (whose
``compress`` our encoder matches byte for byte) and CloudVolume, which writes and reads
compresso layers through it. Hostile chunks must give ``ChunkDecodeError``."""

from __future__ import annotations

import gzip
import os
import struct

import compresso
import numpy as np
import pytest
from click.testing import CliRunner
from cloudvolume import CloudVolume

import bigarrays
from bigarrays import BigArray
from bigarrays.cli import main

SCALE_KEY = "1_1_1"
DTYPES = ["uint8", "uint16", "uint32", "uint64"]


def labels(kind: str, shape: tuple[int, int, int], dtype: str, seed: int) -> np.ndarray:
    """A label field of one of a few characters, Fortran-ordered."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    top = np.iinfo(dt).max
    n = int(np.prod(shape))
    if kind == "blobs":  # segmentation-like: large regions with ragged borders
        coarse = rng.integers(1, 40, size=tuple(-(-s // 5) for s in shape))
        vol = coarse.repeat(5, 0).repeat(5, 1).repeat(5, 2)[: shape[0], : shape[1], : shape[2]]
        noise = rng.random(shape) < 0.05
        vol = np.where(noise, rng.integers(1, 40, size=shape), vol)
    elif kind == "few":
        vol = rng.integers(0, 3, size=shape)
    elif kind == "many":
        vol = rng.integers(0, min(int(top), 2**40) + 1, size=shape, dtype=np.uint64)
    elif kind == "distinct":
        # astype wraps these to the dtype: every label distinct where the dtype allows it
        vol = np.arange(n, dtype=np.uint64).reshape(shape, order="F")
    elif kind == "equal":
        vol = np.full(shape, min(7, int(top)))
    elif kind == "top":  # labels at the top of the range take the escaped location form
        vol = top - rng.integers(0, 10, size=shape).astype(dt)
    elif kind == "huge" and dt == np.uint64:  # ids above 2^53 that floats would round
        vol = (2**53 + 1 + rng.integers(0, 4, size=shape).astype(np.uint64) * (2**60 + 3)).astype(
            np.uint64
        )
    else:
        vol = rng.integers(0, 5, size=shape)
    return np.asfortranarray(np.asarray(vol).astype(dt))


KINDS = ["blobs", "few", "many", "distinct", "equal", "top", "huge"]


def chunk_files(path) -> dict[str, bytes]:
    """Every chunk file of the layer's only scale, transport compression undone."""
    out = {}
    scale = os.path.join(path, SCALE_KEY)
    for name in os.listdir(scale):
        with open(os.path.join(scale, name), "rb") as f:
            data = f.read()
        if name.endswith(".gz"):
            data, name = gzip.decompress(data), name.removesuffix(".gz")
        out[name] = data
    return out


def chunk_box(name: str) -> tuple[slice, ...]:
    return tuple(slice(*map(int, r.split("-"))) for r in name.split("_"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_our_chunks_equal_pypi_compress_byte_for_byte(tmp_path, dtype, kind):
    # 23 x 21 x 6 in 16 x 16 x 4 chunks: full chunks and clipped edge chunks of odd sizes.
    shape = (23, 21, 6)
    ref = labels(kind, shape, dtype, seed=KINDS.index(kind))
    a = BigArray.create(
        str(tmp_path),
        shape=shape,
        dtype=dtype,
        chunks=(16, 16, 4),
        encoding="compresso",
        layer_type="segmentation",
        compression=None,
    )
    a[:, :, :] = ref
    files = chunk_files(tmp_path)
    assert files
    for name, data in files.items():
        chunk = np.asfortranarray(ref[chunk_box(name)])
        assert data == compresso.compress(chunk), name
        np.testing.assert_array_equal(compresso.decompress(data), chunk)
    np.testing.assert_array_equal(BigArray(str(tmp_path))[:, :, :], ref)


@pytest.mark.parametrize("seed", range(12))
def test_random_shapes_equal_pypi(tmp_path, seed):
    """Property test over random shapes (1 voxel thin included), label counts and dtypes."""
    rng = np.random.default_rng(1000 + seed)
    shape = tuple(int(s) for s in rng.integers(1, 40, size=3))
    dtype = DTYPES[seed % 4]
    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    ref = labels(kind, shape, dtype, seed)
    a = BigArray.create(
        str(tmp_path),
        shape=shape,
        dtype=dtype,
        chunks=shape,
        encoding="compresso",
        compression=None,
    )
    a[:, :, :] = ref
    (data,) = chunk_files(tmp_path).values()
    assert data == compresso.compress(ref)
    np.testing.assert_array_equal(BigArray(str(tmp_path))[:, :, :], ref)


@pytest.mark.parametrize("connectivity", [4, 6])
@pytest.mark.parametrize("steps", [(4, 4, 1), (8, 8, 1), (2, 2, 2), (3, 1, 5)])
@pytest.mark.parametrize("z_index", [True, False])
def test_we_read_every_variant_pypi_writes(tmp_path, connectivity, steps, z_index):
    shape = (19, 17, 7)
    ref = labels("blobs", shape, "uint32", 5)
    BigArray.create(
        str(tmp_path),
        shape=shape,
        dtype="uint32",
        chunks=shape,
        encoding="compresso",
        compression=None,
    )
    data = compresso.compress(
        ref, steps=steps, connectivity=connectivity, random_access_z_index=z_index
    )
    os.makedirs(os.path.join(tmp_path, SCALE_KEY), exist_ok=True)
    with open(os.path.join(tmp_path, SCALE_KEY, "0-19_0-17_0-7"), "wb") as f:
        f.write(data)
    np.testing.assert_array_equal(BigArray(str(tmp_path))[:, :, :], ref)


# -- CloudVolume ---------------------------------------------------------------------------


def cv_info(dtype, size, chunks, sharding=None):
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="segmentation",
        data_type=dtype,
        encoding="compresso",
        resolution=[1, 1, 1],
        voxel_offset=[3, -2, 5],
        volume_size=list(size),
        chunk_size=list(chunks),
    )
    return info


@pytest.mark.parametrize("dtype", DTYPES)
def test_cloudvolume_writes_we_read_bit_exact_and_write_the_same_bytes(tmp_path, dtype):
    size, chunks = (40, 37, 11), (16, 16, 8)
    ref = labels("blobs" if dtype != "uint64" else "huge", size, dtype, 11)
    cv_path = tmp_path / "cv"
    vol = CloudVolume(f"file://{cv_path}", info=cv_info(dtype, size, chunks), progress=False)
    vol.commit_info()
    vol[vol.bounds] = ref[..., np.newaxis]
    a = BigArray(str(cv_path))
    np.testing.assert_array_equal(a[a.bounds], ref)
    # an unaligned cutout (the layer starts at (3, -2, 5))
    np.testing.assert_array_equal(a[8:34, 0:30, 7:14], ref[5:31, 2:32, 2:9])

    ours = tmp_path / "ours"
    b = BigArray.create(
        str(ours),
        shape=size,
        dtype=dtype,
        chunks=chunks,
        voxel_offset=(3, -2, 5),
        encoding="compresso",
        layer_type="segmentation",
    )
    b[b.bounds] = ref
    assert chunk_files(os.fspath(ours)) == chunk_files(os.fspath(cv_path))
    got = CloudVolume(f"file://{ours}", progress=False)
    np.testing.assert_array_equal(np.asarray(got[got.bounds])[..., 0], ref)


def test_sharded_layer_round_trips_through_cloudvolume(tmp_path):
    size, chunks = (64, 48, 16), (16, 16, 8)
    ref = labels("blobs", size, "uint64", 21)
    b = BigArray.create(
        str(tmp_path),
        shape=size,
        dtype="uint64",
        chunks=chunks,
        encoding="compresso",
        layer_type="segmentation",
        sharding="auto",
    )
    b[b.bounds] = ref
    assert "sharding" in b.info["scales"][0]
    vol = CloudVolume(f"file://{tmp_path}", progress=False)
    np.testing.assert_array_equal(np.asarray(vol[vol.bounds])[..., 0], ref)
    np.testing.assert_array_equal(BigArray(str(tmp_path))[b.bounds], ref)


def test_cp_encoding_compresso(tmp_path):
    size = (30, 20, 9)
    ref = labels("blobs", size, "uint32", 2)
    src = BigArray.create(str(tmp_path / "src"), shape=size, dtype="uint32", chunks=(16, 16, 4))
    src[:, :, :] = ref
    result = CliRunner().invoke(
        main,
        [
            "cp",
            str(tmp_path / "src"),
            str(tmp_path / "dst"),
            "--encoding",
            "compresso",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    dst = BigArray(str(tmp_path / "dst"))
    assert dst.info["scales"][0]["encoding"] == "compresso"
    np.testing.assert_array_equal(dst[:, :, :], ref)
    vol = CloudVolume(f"file://{tmp_path / 'dst'}", progress=False)
    np.testing.assert_array_equal(np.asarray(vol[vol.bounds])[..., 0], ref)


@pytest.mark.parametrize(
    "dtype, channels, field",
    [("float32", 1, "data_type"), ("int32", 1, "data_type"), ("uint32", 2, "num_channels")],
)
def test_create_refuses_what_compresso_cannot_hold_naming_the_field(
    tmp_path, dtype, channels, field
):
    with pytest.raises(ValueError, match=field):
        BigArray.create(
            str(tmp_path),
            shape=(8, 8, 8),
            dtype=dtype,
            num_channels=channels,
            encoding="compresso",
        )


# -- hostile chunks ------------------------------------------------------------------------


def hostile(good: bytes) -> dict[str, bytes]:
    head = bytearray(good[:36])

    def with_field(offset: int, fmt: str, value: int) -> bytes:
        h = bytearray(head)
        struct.pack_into(fmt, h, offset, value)
        return bytes(h) + good[36:]

    return {
        "magic": b"cpsx" + good[4:],
        "truncated-header": good[:20],
        "truncated-body": good[: len(good) // 2],
        "header-only": good[:36],
        "version": with_field(4, "<B", 7),
        "width": with_field(5, "<B", 3),
        "wrong-width": with_field(5, "<B", 8),
        "shape": with_field(6, "<H", 65535),
        "zero-steps": with_field(12, "<B", 0),
        "huge-steps": with_field(12, "<B", 255),
        "huge-ids": with_field(15, "<Q", 2**64 - 1),
        "ids-past-end": with_field(15, "<Q", len(good)),
        "huge-values": with_field(23, "<I", 2**32 - 1),
        "huge-locations": with_field(27, "<Q", 2**63),
        "locations-past-end": with_field(27, "<Q", len(good) // 4),
        "connectivity": with_field(35, "<B", 5),
        "no-locations": with_field(27, "<Q", 0)[: len(good) - 10],
    }


@pytest.mark.parametrize("what", sorted(hostile(b"\0" * 64)))
def test_hostile_chunks_are_chunk_decode_errors(tmp_path, what):
    shape = (20, 18, 5)
    ref = labels("blobs", shape, "uint32", 9)
    good = compresso.compress(ref)
    BigArray.create(
        str(tmp_path),
        shape=shape,
        dtype="uint32",
        chunks=shape,
        encoding="compresso",
        compression=None,
    )
    os.makedirs(os.path.join(tmp_path, SCALE_KEY), exist_ok=True)
    path = os.path.join(tmp_path, SCALE_KEY, "0-20_0-18_0-5")
    with open(path, "wb") as f:
        f.write(hostile(good)[what])
    try:
        got = BigArray(str(tmp_path))[:, :, :]
    except bigarrays.ChunkDecodeError as e:
        assert "0-20_0-18_0-5" in str(e)
        return
    # A change that leaves a well-formed stream may decode, but only to the same shape.
    assert got.shape == shape and what in {"no-locations", "truncated-body"}
