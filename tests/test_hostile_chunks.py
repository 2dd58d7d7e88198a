"""Hostile chunks: truncated, oversized, garbage, decompression bombs (gzip, zstd, brotli,
blosc, and images whose headers claim huge sizes), corrupt shard and minishard indexes; in
plain and sharded layers, on local disk and in a Python mapping. Each read must raise
``ChunkDecodeError`` naming the chunk or shard, never panic, abort or hang, and a bomb must
cost memory bounded by the chunk's size, not by what it inflates to (measured in a child
process: the peak RSS, reset before each read through ``/proc/self/clear_refs``).

More corrupt-chunk cases live in test_codecs.py (six corruptions of each image codec, a
brotli bomb), test_stores_and_errors.py (raw lengths, gzip/zstd) and test_sharding.py
(shard-index offsets); this file adds what those do not cover."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import blosc
import brotli
import numpy as np
import pytest
import zstandard

import bigarrays
from bigarrays import BigArray

CHUNK = (64, 64, 8)
KEY = "s0"
CHUNK_NAME = "0-64_0-64_0-8"
BOMB = 256 << 20  # what each bomb inflates to
RSS_BOUND = 32 << 20  # what a bomb may cost, far below BOMB (chunks here are 64-320 KiB)

ENCODINGS = {  # encoding -> (dtype, values)
    "raw": ("uint16", lambda rng: rng.integers(0, 2**16, CHUNK, dtype=np.uint16)),
    "jpeg": ("uint8", lambda rng: np.full(CHUNK, 77, np.uint8)),
    "png": ("uint8", lambda rng: rng.integers(0, 256, CHUNK, dtype=np.uint8)),
    "compressed_segmentation": ("uint32", lambda rng: rng.integers(0, 9, CHUNK, dtype=np.uint32)),
    "blosc": ("uint32", lambda rng: rng.integers(0, 2**32, CHUNK, dtype=np.uint32)),
}


def info(encoding: str, sharded: bool) -> dict:
    scale = {
        "key": KEY, "size": list(CHUNK), "voxel_offset": [0, 0, 0], "resolution": [1, 1, 1],
        "chunk_sizes": [list(CHUNK)], "encoding": encoding,
    }  # fmt: skip
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = [8, 8, 8]
    if sharded:
        scale["sharding"] = {
            "@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity",
            "minishard_bits": 0, "shard_bits": 0, "minishard_index_encoding": "raw",
            "data_encoding": "raw",
        }  # fmt: skip
    dtype = ENCODINGS[encoding][0]
    return {"type": "image", "data_type": dtype, "num_channels": 1, "scales": [scale]}


def shard_file(chunk: bytes, index: bytes | None = None, table: bytes | None = None) -> bytes:
    """A one-minishard shard holding chunk id 0: the 16-byte shard index, the chunk, the
    minishard index (ids, offsets, sizes; offsets relative to the shard index's end)."""
    if index is None:
        index = struct.pack("<3Q", 0, 0, len(chunk))
    if table is None:
        table = struct.pack("<2Q", len(chunk), len(chunk) + len(index))
    return table + chunk + index


def good_chunk(encoding: str) -> tuple[bytes, np.ndarray]:
    """A chunk the encoder wrote (no transport compression), and its voxels."""
    store: dict[str, bytes] = {}
    dtype, make = ENCODINGS[encoding]
    a = BigArray.create("l", store=store, shape=CHUNK, dtype=dtype, chunks=CHUNK,
                        encoding=encoding, compression=None)  # fmt: skip
    a[:, :, :] = make(np.random.default_rng(len(encoding)))
    key = next(k for k in store if k.endswith(CHUNK_NAME))
    return store[key], a[:, :, :]


class Layer:
    """One-chunk layer holding `stored` as its chunk (plain or inside a shard), on local disk
    or in a dict, opened as a BigArray."""

    def __init__(self, tmp: Path, backend: str, encoding: str, sharded: bool) -> None:
        self.backend, self.sharded, self.tmp = backend, sharded, tmp
        self.store: dict[str, bytes] = {}
        self.put("info", json.dumps(info(encoding, sharded)).encode())
        self.name = f"{KEY}/0.shard" if sharded else f"{KEY}/{CHUNK_NAME}"

    def put(self, key: str, data: bytes) -> None:
        if self.backend == "local":
            path = self.tmp / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            self.store[f"layer/{key}"] = data

    def set_chunk(self, data: bytes, suffix: str = "") -> None:
        self.put(self.name + suffix, shard_file(data) if self.sharded else data)

    def open(self) -> BigArray:
        if self.backend == "local":
            return BigArray(str(self.tmp))
        return BigArray("layer", store=self.store)


def corruptions(good: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    return {
        "one-byte": good[:1],
        "half": good[: len(good) // 2],
        "minus-one": good[:-1],
        "doubled": good + good,
        "garbage": rng.bytes(len(good) + 13),
        "garbage-10x": rng.bytes(10 * len(good) + 1),
        "zeros": b"\0" * (len(good) + 1),
        "gzip-of-garbage": gzip.compress(rng.bytes(len(good) + 1)),
        "gzip-truncated": gzip.compress(good)[:-9],
        "zstd-truncated": zstandard.compress(good)[:-5],
        "gzip-crc": gzip.compress(good)[:-8] + b"\0" * 8,
    }


# Corruptions an image decoder may legitimately accept, as libjpeg-turbo and libpng do:
# bytes after the end-of-image marker, or a damaged last byte of the end marker (the image
# data is complete before it). The voxels must then be exactly right.
MAY_DECODE = {(e, w) for e in ("jpeg", "png") for w in ("doubled", "minus-one")}
MAY_DECODE.add(("compressed_segmentation", "doubled"))  # its offsets never reach the tail

CASES = [
    (backend, sharded, encoding, what)
    for backend in ("local", "mapping")
    for sharded in (False, True)
    for encoding in ENCODINGS
    for what in corruptions(b"x" * 64)
]


@pytest.fixture(scope="module")
def goods() -> dict[str, tuple[bytes, np.ndarray]]:
    return {e: good_chunk(e) for e in ENCODINGS}


@pytest.mark.parametrize(
    "backend, sharded, encoding, what",
    CASES,
    ids=[f"{b}-{'sharded' if s else 'plain'}-{e}-{w}" for b, s, e, w in CASES],
)
def test_corrupt_chunk_is_a_chunk_decode_error_naming_the_key(
    tmp_path, goods, backend, sharded, encoding, what
):
    good, voxels = goods[encoding]
    layer = Layer(tmp_path, backend, encoding, sharded)
    layer.set_chunk(good)
    np.testing.assert_array_equal(layer.open()[:, :, :], voxels)  # the good one reads
    layer.set_chunk(corruptions(good)[what])
    a = layer.open()
    if (encoding, what) in MAY_DECODE:
        try:
            np.testing.assert_array_equal(a[:, :, :], voxels)
        except bigarrays.ChunkDecodeError as e:
            assert layer.name in str(e)
        return
    with pytest.raises(bigarrays.ChunkDecodeError) as e:
        a[:, :, :]
    assert layer.name in str(e.value) and isinstance(e.value, ValueError)


# -- corrupt shard and minishard indexes, beyond test_sharding.py's offset cases ------------

U64 = 2**64 - 1


def index(*rows: tuple[int, int, int]) -> bytes:
    ids, offsets, sizes = zip(*rows, strict=True) if rows else ((), (), ())
    return struct.pack(f"<{3 * len(rows)}Q", *ids, *offsets, *sizes)


SHARD_CASES = {
    # the 16-byte shard index
    "table-short": lambda c: shard_file(c, table=b"\0" * 7),
    "table-reversed": lambda c: shard_file(c, table=struct.pack("<2Q", 50, 10)),
    "table-past-end": lambda c: shard_file(c, table=struct.pack("<2Q", len(c), 2**40)),
    "table-wraps": lambda c: shard_file(c, table=struct.pack("<2Q", U64 - 3, U64)),
    # the minishard index
    "index-not-rows": lambda c: shard_file(c, index=b"\0" * 23),
    "index-size-past-end": lambda c: shard_file(c, index=index((0, 0, 2**62))),
    "index-size-max": lambda c: shard_file(c, index=index((0, 0, U64))),
    "index-offset-wraps": lambda c: shard_file(c, index=index((0, U64 - 15, 32))),
    "index-offset-past-end": lambda c: shard_file(c, index=index((0, 2**40, len(c)))),
    "index-overlap": lambda c: shard_file(
        c, index=index((0, 0, len(c)), (1, U64 - len(c) + 1, len(c)))
    ),
    "index-gzip-garbage": lambda c: shard_file(c, index=b"\x1f\x8b" + b"\x07" * 40),
}


@pytest.mark.parametrize("backend", ["local", "mapping"])
@pytest.mark.parametrize("what", sorted(SHARD_CASES))
def test_corrupt_shard_index_is_a_chunk_decode_error(tmp_path, goods, backend, what):
    good, _ = goods["raw"]
    layer = Layer(tmp_path, backend, "raw", sharded=True)
    layer.put(layer.name, SHARD_CASES[what](good))
    with pytest.raises(bigarrays.ChunkDecodeError) as e:
        layer.open()[:, :, :]
    assert layer.name in str(e.value)


def test_shard_pointing_the_chunk_at_its_own_index_is_refused_or_exact(tmp_path, goods):
    # A chunk range covering the shard index (a negative offset delta) is inside the file:
    # the bytes it names are read, and decoded as a chunk of the wrong size.
    good, _ = goods["raw"]
    layer = Layer(tmp_path, "local", "raw", sharded=True)
    layer.put(layer.name, shard_file(good, index=index((0, U64 - 15, 16))))
    with pytest.raises(bigarrays.ChunkDecodeError, match="holds 16 bytes"):
        layer.open()[:, :, :]


# -- bombs, with the memory they cost measured in a child process ---------------------------


def stream(compressor, n: int) -> bytes:
    """``n`` zero bytes through a streaming compressor, without holding them in memory."""
    block, out = b"\0" * (1 << 20), []
    for _ in range(n >> 20):
        out.append(compressor.compress(block))
    out.append(compressor.flush())
    return b"".join(out)


def gzip_bomb(n: int = BOMB) -> bytes:
    return stream(zlib.compressobj(9, zlib.DEFLATED, 31), n)


def zstd_bomb(n: int = BOMB) -> bytes:
    return stream(zstandard.ZstdCompressor(level=3).compressobj(), n)


def brotli_bomb(n: int = BOMB) -> bytes:
    c = brotli.Compressor(quality=1)
    block, out = b"\0" * (1 << 20), []
    for _ in range(n >> 20):
        out.append(c.process(block))
    out.append(c.finish())
    return b"".join(out)


def png_bomb() -> bytes:
    """A PNG whose header says 65535 x 65535 grey pixels, with a deflate stream of zeros
    that would inflate to all of them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 65535, 65535, 8, 0, 0, 0, 0)
    idat = stream(zlib.compressobj(9), BOMB)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bomb(good: bytes) -> bytes:
    """The good jpeg with its frame header claiming 65500 x 65500 pixels."""
    data = bytearray(good)
    at = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[at + 5 : at + 9] = struct.pack(">HH", 65500, 65500)
    return bytes(data)


def blosc_bomb() -> bytes:
    """A valid blosc buffer of 64 MiB of zeros (its header says so): a few KiB."""
    return blosc.compress(b"\0" * (64 << 20), typesize=4, cname="lz4")


def cseg_bomb() -> bytes:
    """compressed_segmentation whose block header points its table far past the end."""
    header = struct.pack("<II", 2**24 - 1 | (32 << 24), 2**31 - 1)
    return struct.pack("<I", 1) + header * 64


# (id, encoding, sharded, suffix of the stored key, bytes)
def bomb_cases(goods) -> list[tuple[str, str, bool, str, bytes]]:
    g, z, b = gzip_bomb(), zstd_bomb(), brotli_bomb()
    cases = []
    for sharded in (False, True):
        s = "sharded" if sharded else "plain"
        cases += [
            (f"{s}-raw-gzip", "raw", sharded, "", g),
            (f"{s}-raw-zstd", "raw", sharded, "", z),
            (f"{s}-jpeg-gzip", "jpeg", sharded, "", g),
            (f"{s}-png-zstd", "png", sharded, "", z),
            (f"{s}-cseg-gzip", "compressed_segmentation", sharded, "", g),
            (f"{s}-blosc-zstd", "blosc", sharded, "", z),
            (f"{s}-png-header", "png", sharded, "", png_bomb()),
            (f"{s}-jpeg-header", "jpeg", sharded, "", jpeg_bomb(goods["jpeg"][0])),
            (f"{s}-blosc-header", "blosc", sharded, "", blosc_bomb()),
            (f"{s}-cseg-header", "compressed_segmentation", sharded, "", cseg_bomb()),
        ]
    cases += [
        ("plain-raw-gz-suffix", "raw", False, ".gz", g),
        ("plain-raw-br-suffix", "raw", False, ".br", b),
        ("plain-cseg-br-suffix", "compressed_segmentation", False, ".br", b),
        ("plain-raw-zstd-suffix", "raw", False, ".zstd", z),
    ]
    return cases


CHILD = textwrap.dedent(
    """
    import json, sys
    import bigarrays
    from bigarrays import BigArray

    def status(field):
        with open("/proc/self/status") as f:
            line = next(l for l in f if l.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    def reset_peak():
        # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS, so
        # each case's peak is its own, not an earlier case's.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status("VmRSS")

    def peak():
        return status("VmHWM")

    out = {}
    for case in json.loads(sys.argv[1]):
        name, backend, path = case
        if backend == "local":
            a = BigArray(path)
        else:
            import pathlib
            root = pathlib.Path(path)
            store = {"layer/" + str(p.relative_to(root)): p.read_bytes()
                     for p in root.rglob("*") if p.is_file()}
            a = BigArray("layer", store=store)
        before = reset_peak()
        try:
            a[:, :, :]
            out[name] = ["no error", 0]
        except bigarrays.ChunkDecodeError as e:
            out[name] = [str(e), peak() - before]
        except Exception as e:
            out[name] = [f"{type(e).__name__}: {e}", peak() - before]
    # The control: touching 64 MiB must show, or the measurement proves nothing.
    before = reset_peak()
    ballast = b"\\1" * (64 << 20)
    out["control"] = ["", peak() - before + 0 * len(ballast)]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory, goods) -> dict[str, tuple[str, str, int]]:
    """Every bomb case, read on both backends by one child process (timeout: no hang).
    A warm-up read of a good layer first, so that thread pools and buffers are counted
    in the baseline."""
    root = tmp_path_factory.mktemp("bombs")
    cases, expected = [], {}
    warm = Layer(root / "warm", "local", "raw", False)
    warm.set_chunk(goods["raw"][0])
    cases.append(("warm-up", "local", str(root / "warm")))
    for name, encoding, sharded, suffix, data in bomb_cases(goods):
        for backend in ("local", "mapping"):
            layer = Layer(root / f"{backend}-{name}", "local", encoding, sharded)
            layer.set_chunk(data, suffix)
            cases.append((f"{backend}-{name}", backend, str(root / f"{backend}-{name}")))
            expected[f"{backend}-{name}"] = layer.name
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]  # a panic or an abort would show here
    got = json.loads(run.stdout)
    assert got.pop("warm-up")[0] == "no error"
    assert got.pop("control")[1] >= 60 << 20  # the peak RSS sees a 64 MiB allocation
    return {k: (v[0], expected[k], v[1]) for k, v in got.items()}


def _bomb_ids() -> list[str]:
    """The ids ``bomb_cases`` makes (listed here so collection needs no bombs)."""
    names = [
        f"{s}-{n}"
        for s in ("plain", "sharded")
        for n in ("raw-gzip", "raw-zstd", "jpeg-gzip", "png-zstd", "cseg-gzip", "blosc-zstd",
                  "png-header", "jpeg-header", "blosc-header", "cseg-header")
    ]  # fmt: skip
    names += ["plain-raw-gz-suffix", "plain-raw-br-suffix", "plain-cseg-br-suffix",
              "plain-raw-zstd-suffix"]  # fmt: skip
    return [f"{b}-{n}" for n in names for b in ("local", "mapping")]


@pytest.mark.parametrize("case", _bomb_ids())
def test_bombs_are_chunk_decode_errors_in_bounded_memory(bomb_results, case):
    message, name, grew = bomb_results[case]
    assert message != "no error"
    assert name in message, message  # a ChunkDecodeError naming the chunk or shard
    assert not message.startswith(("MemoryError", "PanicException", "BigArrayError")), message
    assert grew < RSS_BOUND, f"{case}: peak RSS grew by {grew >> 20} MiB"


def test_minishard_index_bomb_is_refused(tmp_path, goods):
    # A gzip minishard index inflating to 320 MiB stops at the 256 MiB cap for indexes.
    good, _ = goods["raw"]
    layer = Layer(tmp_path, "local", "raw", sharded=True)
    spec = info("raw", True)
    spec["scales"][0]["sharding"]["minishard_index_encoding"] = "gzip"
    layer.put("info", json.dumps(spec).encode())
    layer.put(layer.name, shard_file(good, index=gzip_bomb(320 << 20)))
    with pytest.raises(bigarrays.ChunkDecodeError, match="inflates past") as e:
        layer.open()[:, :, :]
    assert layer.name in str(e.value)
