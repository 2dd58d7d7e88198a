"""The crackle encoding against its peers: CloudVolume and the ``crackle-codec`` package.

CloudVolume writes crackle layers, bigarrays reads them bit-exactly; bigarrays writes them
(sharded or not), CloudVolume reads them bit-exactly and every chunk equals what
``crackle.compress`` writes for the same voxels, byte for byte. Every variant the package
writes (markov models, pins, each label width) reads bit-exactly. Hostile chunks raise
``ChunkDecodeError`` naming the key, quickly. Volumes are small, with clipped edge chunks.
"""

from __future__ import annotations

import gzip
import os
import re
import time

import crackle
import numpy as np
import pytest
from cloudvolume import CloudVolume

import bigarrays
from bigarrays import BigArray
from bigarrays.cli import run

RESOLUTION = (4, 4, 40)
KEY = "4_4_40"
OFFSET = (3, -5, 7)
SIZE = (45, 29, 11)
CHUNKS = (16, 11, 4)  # no size is a multiple of its chunk size: edge chunks are clipped
DTYPES = ["uint8", "uint16", "uint32", "uint64"]


def segmentation(seed: int, shape, dtype: str, kind: str = "blocks") -> np.ndarray:
    """Label fields of several kinds: ``blocks`` (a coarse field of few labels, upsampled),
    ``many`` (blocks of many labels), ``noise`` (few labels, no structure), ``distinct`` (every
    voxel its own label), ``equal`` (one label), ``huge`` (uint64 ids above 2^53)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    n = int(np.prod(shape))
    if kind == "equal":
        return np.full(shape, rng.integers(0, top, dtype=dtype, endpoint=True), dtype, order="F")
    if kind == "distinct":
        return np.asfortranarray(np.arange(n, dtype=np.uint64).astype(dtype).reshape(shape))
    if kind == "noise":
        pool = rng.integers(0, top, size=4, dtype=dtype, endpoint=True)
        return np.asfortranarray(pool[rng.integers(0, 4, size=shape)])
    if kind == "huge":
        pool = np.uint64(2**53) + rng.integers(0, 2**62, size=9, dtype=np.uint64)
        return np.asfortranarray(pool[rng.integers(0, 9, size=shape)].astype(dtype))
    pool = rng.integers(0, top, size=5 if kind == "blocks" else 400, dtype=dtype, endpoint=True)
    coarse = [max(1, s // int(rng.integers(2, 6))) for s in shape]
    small = pool[rng.integers(0, pool.size, size=coarse)]
    reps = [-(-s // c) for s, c in zip(shape, coarse, strict=True)]
    big = np.kron(small, np.ones(reps, dtype=dtype))
    return np.asfortranarray(big[tuple(slice(0, s) for s in shape)].astype(dtype))


def bounds_key():
    return tuple(slice(o, o + n) for o, n in zip(OFFSET, SIZE, strict=True))


def cv_create(path, dtype: str, **extra) -> CloudVolume:
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="segmentation",
        data_type=dtype,
        encoding="crackle",
        resolution=list(RESOLUTION),
        voxel_offset=list(OFFSET),
        volume_size=list(SIZE),
        chunk_size=list(CHUNKS),
        **extra,
    )
    vol = CloudVolume(f"file://{path}", info=info, progress=False)
    vol.commit_info()
    return vol


def ba_create(path, dtype: str, **kwargs) -> BigArray:
    return BigArray.create(
        str(path),
        shape=SIZE,
        dtype=dtype,
        chunks=CHUNKS,
        voxel_offset=OFFSET,
        resolution=RESOLUTION,
        encoding="crackle",
        layer_type="segmentation",
        **kwargs,
    )


def chunk_files(path) -> list[str]:
    return sorted(os.listdir(os.path.join(path, KEY)))


def chunk_box(name: str):
    """``"3-19_-5-6_7-11[.gz]"`` → the chunk's slices relative to the layer's offset."""
    parts = [re.fullmatch(r"(-?\d+)-(-?\d+)", p) for p in name.split(".")[0].split("_")]
    return tuple(
        slice(int(m.group(1)) - o, int(m.group(2)) - o) for m, o in zip(parts, OFFSET, strict=True)
    )


def read_chunk(path, name: str) -> bytes:
    with open(os.path.join(path, KEY, name), "rb") as f:
        data = f.read()
    return gzip.decompress(data) if name.endswith(".gz") else data


def assert_exact(actual, expected, context: object = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    np.testing.assert_array_equal(actual, expected, err_msg=str(context))


# -- CloudVolume writes, bigarrays reads ------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["blocks", "noise"])
def test_written_by_cloudvolume_read_bit_exactly(tmp_path, dtype, kind):
    ref = segmentation(DTYPES.index(dtype), SIZE, dtype, kind)
    cv_create(tmp_path, dtype)[bounds_key()] = ref
    assert all(f.endswith(".gz") for f in chunk_files(tmp_path))
    a = BigArray(str(tmp_path))
    assert a.encoding == "crackle"
    assert_exact(a[a.bounds], ref)
    # An unaligned cutout across chunk borders, into the clipped edge chunks.
    box = (slice(10, 40), slice(0, 23), slice(9, 17))
    rel = tuple(slice(s.start - o, s.stop - o) for s, o in zip(box, OFFSET, strict=True))
    assert_exact(a[box], ref[rel])


# -- bigarrays writes, CloudVolume and the package read ---------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sharded", [False, True])
def test_written_by_bigarrays_read_by_cloudvolume_and_the_package(tmp_path, dtype, sharded):
    ref = segmentation(10 + DTYPES.index(dtype), SIZE, dtype, "many")
    a = ba_create(tmp_path, dtype, sharding="auto" if sharded else None)
    a[a.bounds] = ref
    assert_exact(CloudVolume(f"file://{tmp_path}", progress=False)[bounds_key()][..., 0], ref)
    assert_exact(BigArray(str(tmp_path))[a.bounds], ref)
    if sharded:
        return
    names = chunk_files(tmp_path)
    assert names and all(f.endswith(".gz") for f in names)
    for name in names:
        ours = read_chunk(tmp_path, name)
        part = np.asfortranarray(ref[chunk_box(name)])
        assert_exact(crackle.decompress(ours), part, name)
        assert ours == crackle.compress(part), name


KINDS = ["blocks", "many", "noise", "distinct", "equal", "huge"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_random_fields_match_the_package_both_ways(tmp_path, dtype, kind):
    """One chunk per layer: the package's stream reads as the labels, and ours is the
    package's stream, byte for byte, for shapes from one voxel up."""
    rng = np.random.default_rng(10 * DTYPES.index(dtype) + KINDS.index(kind))
    for trial in range(4):
        shape = tuple(int(rng.integers(1, m)) for m in (70, 50, 9))
        ref = segmentation(trial, shape, dtype, kind)
        path = tmp_path / f"t{trial}"
        a = BigArray.create(str(path), shape=shape, dtype=dtype, chunks=shape,
                            encoding="crackle", compression=None)  # fmt: skip
        name = "_".join(f"0-{s}" for s in shape)
        chunk = os.path.join(path, "1_1_1", name)
        os.makedirs(os.path.dirname(chunk), exist_ok=True)
        theirs = crackle.compress(ref)
        with open(chunk, "wb") as f:
            f.write(theirs)
        assert_exact(a[a.bounds], ref, (shape, kind))
        a[a.bounds] = ref
        with open(chunk, "rb") as f:
            ours = f.read()
        assert ours == theirs, (shape, kind)


@pytest.mark.parametrize(
    "options",
    [
        {"markov_model_order": 1},
        {"markov_model_order": 5},
        {"markov_model_order": 9},
        {"allow_pins": 1},
        {"allow_pins": 2},
        {"allow_pins": 1, "markov_model_order": 3},
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_variant_the_package_writes_reads_bit_exactly(tmp_path, options, dtype):
    shape = (37, 23, 7)
    a = BigArray.create(str(tmp_path), shape=shape, dtype=dtype, chunks=shape,
                        encoding="crackle", compression=None)  # fmt: skip
    chunk = os.path.join(tmp_path, "1_1_1", "0-37_0-23_0-7")
    os.makedirs(os.path.dirname(chunk), exist_ok=True)
    for seed, kind in enumerate(["blocks", "many", "noise"]):
        ref = segmentation(seed, shape, dtype, kind)
        stream = crackle.compress(ref, **options)
        with open(chunk, "wb") as f:
            f.write(stream)
        assert_exact(a[a.bounds], ref, (kind, crackle.header(stream).details()))


# -- checks, copies and hostile chunks --------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, channels, field",
    [("float32", 1, "data_type"), ("float64", 1, "data_type"), ("int32", 1, "data_type"),
     ("uint32", 2, "num_channels")],
)  # fmt: skip
def test_impossible_combinations_are_refused_naming_the_field(tmp_path, dtype, channels, field):
    with pytest.raises(bigarrays.BigArrayError, match=field) as e:
        BigArray.create(str(tmp_path), shape=(*SIZE, channels), dtype=dtype, chunks=CHUNKS,
                        encoding="crackle")  # fmt: skip
    assert isinstance(e.value, ValueError)
    assert not os.path.exists(os.path.join(tmp_path, "info"))


def test_cp_to_and_from_crackle(tmp_path):
    ref = segmentation(5, SIZE, "uint64", "blocks")
    src = BigArray.create(str(tmp_path / "src"), shape=SIZE, dtype="uint64", chunks=CHUNKS,
                          voxel_offset=OFFSET, resolution=RESOLUTION)  # fmt: skip
    src[src.bounds] = ref
    assert run(["cp", str(tmp_path / "src"), str(tmp_path / "ckl"), "--encoding", "crackle"]) == 0
    out = BigArray(str(tmp_path / "ckl"))
    assert out.encoding == "crackle"
    assert_exact(out[out.bounds], ref)
    assert_exact(CloudVolume(f"file://{tmp_path / 'ckl'}", progress=False)[bounds_key()][..., 0],
                 ref)  # fmt: skip
    assert run(["cp", str(tmp_path / "ckl"), str(tmp_path / "raw"), "--encoding", "raw"]) == 0
    assert_exact(BigArray(str(tmp_path / "raw"))[out.bounds], ref)


def test_hostile_chunks_raise_chunk_decode_error_naming_the_key(tmp_path):
    ref = segmentation(9, SIZE, "uint32", "many")
    a = ba_create(tmp_path, "uint32", compression=None)
    a[a.bounds] = ref
    name = chunk_files(tmp_path)[0]
    path = os.path.join(tmp_path, KEY, name)
    with open(path, "rb") as f:
        good = f.read()
    rng = np.random.default_rng(0)
    header = crackle.header(good)
    # (An empty object reads as background, as CloudVolume reads it.)
    bads = [good[:n] for n in (3, 28, 29, len(good) // 2, len(good) - 1)]
    bads += [rng.bytes(len(good)), good[:29] + rng.bytes(len(good) - 29)]
    bads += [bytes(b ^ 0xFF if i % 11 == 5 else b for i, b in enumerate(good))]
    # A header (CRC fixed up) claiming a markov model of order 15 and a label section far
    # larger than the chunk: refused before anything that size is allocated.
    for edit in (lambda h: setattr(h, "markov_model_order", 15),
                 lambda h: setattr(h, "num_label_bytes", 2**60)):  # fmt: skip
        h = crackle.header(good)
        edit(h)
        bads.append(h.tobytes() + good[header.header_bytes :])
    bads.append(gzip.compress(b"\x00" * (50 << 20)))  # a bomb far beyond any chunk's size
    for bad in bads:
        with open(path, "wb") as f:
            f.write(bad)
        start = time.monotonic()
        with pytest.raises(bigarrays.ChunkDecodeError) as e:
            a[a.bounds]
        assert name in str(e.value)
        assert time.monotonic() - start < 5
    # One flipped byte at a time: a CRC catches it, or it lay in the padding after a
    # slice's last move and the chunk still reads right.
    for i in range(0, len(good), max(1, len(good) // 60)):
        with open(path, "wb") as f:
            f.write(good[:i] + bytes([good[i] ^ 0x5A]) + good[i + 1 :])
        try:
            got = a[a.bounds]
        except bigarrays.ChunkDecodeError as e:
            assert name in str(e)
        else:
            assert_exact(got, ref, i)
