"""Hostile Zarr metadata and chunks: each a named error that says which file or field is
wrong, never a crash, a hang or a huge allocation.

Metadata: huge and overflowing shapes, negative and zero chunks, 33 dimensions, absurd codec
chains (1000 codecs, unknown ones, bytes-to-bytes before array-to-bytes), fill values of the
wrong type, a v2 ``.zarray`` with filters, a group where an array is expected, non-UTF-8 and
100 MB files. Data: shard indexes pointing past the end, overflowing or overlapping, truncated
shards, and decompression bombs (a few KiB of zstd or gzip inflating to 100 MB for a chunk
of 16 bytes). A watchdog ends the run on a hang; the process's peak memory bounds what a
bomb may allocate.
"""

from __future__ import annotations

import gzip
import json
import resource
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bigarrays import BigArray
from bigarrays.errors import ChunkDecodeError, InfoError, InvalidArgumentError

METADATA_ERRORS = (InfoError, InvalidArgumentError)


# Kills the run with every thread's traceback if a test hangs (conftest.hang_guard).
pytestmark = pytest.mark.hang_after(120)


def v3(shape: list[Any], chunks: list[Any], **kw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}],
    }
    meta.update(kw)
    return meta


def array_dir(tmp_path: Path, meta: dict[str, Any] | bytes, name: str = "zarr.json") -> Path:
    path = tmp_path / "a.zarr"
    path.mkdir(exist_ok=True)
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    (path / name).write_bytes(text)
    return path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- metadata --------------------------------------------------------------------------------

BYTES = {"name": "bytes"}
GZIP = {"name": "gzip", "configuration": {"level": 1}}

HOSTILE_METADATA = {
    "overflowing shape": (v3([2**64], [1]), "shape"),
    "negative chunk": (v3([10], [-4]), "chunk"),
    "zero chunk": (v3([10], [0]), "chunk"),
    "chunk larger than memory": (v3([2**40], [2**40]), "chunk"),
    "33 dimensions": (v3([1] * 33, [1] * 33), "33"),
    "1000 codecs": (v3([8], [8], codecs=[BYTES] + [GZIP] * 999), "codecs"),
    "unknown codec": (v3([8], [8], codecs=[BYTES, {"name": "evil"}]), "evil"),
    "bytes codec twice": (v3([8], [8], codecs=[BYTES, BYTES]), "bytes"),
    "gzip before bytes": (v3([8], [8], codecs=[GZIP, BYTES]), "gzip"),
    "no array-to-bytes codec": (v3([8], [8], codecs=[GZIP]), "array-to-bytes"),
    "codecs not a list": (v3([8], [8], codecs={"name": "bytes"}), "codecs"),
    "string fill for uint8": (v3([8], [8], fill_value="abc"), "fill_value"),
    "fill out of range": (v3([8], [8], fill_value=300), "fill_value"),
    "float fill for uint8": (v3([8], [8], fill_value=1.5), "fill_value"),
    "unknown data type": (v3([8], [8], data_type="uint128"), "uint128"),
    "shape not a list": (v3(8, [8]), "shape"),
    "chunk rank differs": (v3([8, 8], [8]), "chunk"),
}


@pytest.mark.parametrize("case", HOSTILE_METADATA, ids=list(HOSTILE_METADATA))
def test_hostile_zarr_json_is_a_named_error(tmp_path: Path, case: str) -> None:
    meta, field = HOSTILE_METADATA[case]
    path = array_dir(tmp_path, meta)
    t = time.monotonic()
    with pytest.raises(METADATA_ERRORS) as err:
        BigArray(str(path))
    assert time.monotonic() - t < 10
    # The metadata file, or the array's URL for what the codec chain refuses.
    assert "a.zarr/" in str(err.value), err.value
    assert field in str(err.value), err.value


def test_a_huge_shape_opens_and_reads_fill_where_nothing_is_stored(tmp_path: Path) -> None:
    """2^62 elements is a valid (sparse) array: small boxes read, nothing is allocated for
    the whole, and a read of all of it is refused as too large."""
    path = array_dir(tmp_path, v3([2**62], [1024], fill_value=7))
    a = BigArray(str(path))
    assert a.shape == (2**62,)
    np.testing.assert_array_equal(a[2**61 : 2**61 + 4], [7] * 4)
    with pytest.raises(Exception) as err:
        a[...]
    assert type(err.value).__module__.startswith("bigarrays"), err.value


def test_a_v2_array_with_filters_is_a_named_error(tmp_path: Path) -> None:
    zarray = {"zarr_format": 2, "shape": [8], "chunks": [4], "dtype": "<i4", "order": "C",
              "compressor": None, "fill_value": 0,
              "filters": [{"id": "delta", "dtype": "<i4"}]}  # fmt: skip
    path = array_dir(tmp_path, zarray, ".zarray")
    with pytest.raises(METADATA_ERRORS, match=r"\.zarray.*(filters|delta)"):
        BigArray(str(path))


def test_a_group_where_an_array_is_expected_is_a_named_error(tmp_path: Path) -> None:
    path = array_dir(tmp_path, {"zarr_format": 3, "node_type": "group", "attributes": {}})
    with pytest.raises(METADATA_ERRORS, match="group"):
        BigArray(str(path))
    with pytest.raises(METADATA_ERRORS, match="group"):
        BigArray(str(path), format="zarr")


def test_non_utf8_metadata_is_a_named_error(tmp_path: Path) -> None:
    text = json.dumps(v3([8], [8])).encode().replace(b"uint8", b"uint\xff8")
    with pytest.raises(METADATA_ERRORS, match="zarr.json"):
        BigArray(str(array_dir(tmp_path, text)))
    with pytest.raises(METADATA_ERRORS, match="zarr.json"):
        BigArray(str(array_dir(tmp_path, b"\xff\xfe\x00{")))


def test_a_100_mb_metadata_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    path.mkdir()
    with open(path / "zarr.json", "wb") as f:
        f.write(b'{"zarr_format": 3, "node_type": "array", "pad": "')
        for _ in range(100):
            f.write(b"x" * (1 << 20))
        f.write(b'"}')
    t = time.monotonic()
    with pytest.raises(METADATA_ERRORS, match="zarr.json.*bytes"):
        BigArray(str(path))
    assert time.monotonic() - t < 10


def oversized(name: str, limit: int) -> bytes:
    """A metadata file one MiB over ``limit`` (its content never matters: it is refused
    unparsed)."""
    head = b'{"zarr_format": 3, "node_type": "array", "pad": "' if name == "zarr.json" else b"{"
    return head + b" " * (limit + (1 << 20))


def test_oversized_metadata_over_http_is_refused_having_read_little(http_range_server) -> None:
    """One ranged read of the limit plus one byte, not the whole file."""
    root = http_range_server.root
    (root / "a.zarr").mkdir()
    (root / "a.zarr" / "zarr.json").write_bytes(oversized("zarr.json", 16 << 20))
    with pytest.raises(METADATA_ERRORS, match=r"a\.zarr/zarr\.json.*bytes or more"):
        BigArray(f"{http_range_server.url}/a.zarr")
    assert http_range_server.faults.served <= (16 << 20) + 1
    (root / "pre").mkdir()
    (root / "pre" / "info").write_bytes(oversized("info", 64 << 20))
    served = http_range_server.faults.served
    with pytest.raises(InfoError, match=r"pre/info.*bytes or more"):
        BigArray(f"{http_range_server.url}/pre")
    assert http_range_server.faults.served - served <= (64 << 20) + 1


def test_oversized_metadata_in_s3_is_refused(moto) -> None:
    bucket = moto.bucket()
    client = moto.client()
    client.put_object(Bucket=bucket, Key="a.zarr/zarr.json", Body=oversized("zarr.json", 16 << 20))
    client.put_object(Bucket=bucket, Key="pre/info", Body=oversized("info", 64 << 20))
    with pytest.raises(METADATA_ERRORS, match=f"s3://{bucket}/a\\.zarr/zarr\\.json"):
        BigArray(f"s3://{bucket}/a.zarr", storage_options=moto.options())
    with pytest.raises(InfoError, match=f"s3://{bucket}/pre/info"):
        BigArray(f"s3://{bucket}/pre", storage_options=moto.options())


# -- chunks and shards -----------------------------------------------------------------------

# A shard of 8 uint8 elements in two inner chunks of 4, its index (offset, length pairs,
# little-endian, no checksum) at the end, so the tests can write any index they like.
SHARDED = v3([8], [8], codecs=[{"name": "sharding_indexed", "configuration": {
    "chunk_shape": [4], "codecs": [BYTES],
    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    "index_location": "end"}}])  # fmt: skip


def shard(data: bytes, entries: list[tuple[int, int]]) -> bytes:
    return data + b"".join(struct.pack("<QQ", o, n) for o, n in entries)


def sharded_array(tmp_path: Path, stored: bytes) -> BigArray:
    path = array_dir(tmp_path, SHARDED)
    (path / "c").mkdir(exist_ok=True)
    (path / "c" / "0").write_bytes(stored)
    return BigArray(str(path))


def test_a_well_formed_handmade_shard_reads(tmp_path: Path) -> None:
    """The control: the hand-made layout the hostile shards below break."""
    a = sharded_array(tmp_path, shard(bytes(range(1, 9)), [(0, 4), (4, 4)]))
    np.testing.assert_array_equal(a[...], range(1, 9))


HOSTILE_SHARDS = {
    "entry past the end": shard(bytes(8), [(0, 4), (1000, 4)]),
    "length past the end": shard(bytes(8), [(0, 4), (4, 1000)]),
    "offset + length overflows": shard(bytes(8), [(0, 4), (2**64 - 2, 4)]),
    "inner chunk of the wrong size": shard(bytes(8), [(0, 4), (4, 3)]),
    "truncated index": shard(bytes(8), [(0, 4), (4, 4)])[:-5],
    "truncated to nothing": b"",
    "shorter than the index": bytes(10),
}


@pytest.mark.parametrize("case", HOSTILE_SHARDS, ids=list(HOSTILE_SHARDS))
def test_hostile_shards_are_chunk_decode_errors(tmp_path: Path, case: str) -> None:
    a = sharded_array(tmp_path, HOSTILE_SHARDS[case])
    with pytest.raises(ChunkDecodeError, match="c/0"):
        a[...]
    with pytest.raises(ChunkDecodeError, match="c/0"):
        a[1:7]


def test_overlapping_shard_entries_read_what_they_point_at(tmp_path: Path) -> None:
    """The spec does not forbid two entries sharing bytes (zarr-python reads them): the
    reader follows the index, and stays inside the file."""
    a = sharded_array(tmp_path, shard(bytes(range(1, 7)), [(0, 4), (2, 4)]))
    np.testing.assert_array_equal(a[...], [1, 2, 3, 4, 3, 4, 5, 6])


def zstd_bomb(n: int) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    c = zstandard.ZstdCompressor(level=3).compressobj()
    block = bytes(1 << 20)
    return b"".join([*(c.compress(block) for _ in range(n >> 20)), c.flush()])


def gzip_bomb(n: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    block = bytes(1 << 20)
    return b"".join([*(c.compress(block) for _ in range(n >> 20)), c.flush()])


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_decompression_bombs_are_refused_without_inflating(tmp_path: Path, codec: str) -> None:
    size = 100 << 20
    bomb = zstd_bomb(size) if codec == "zstd" else gzip_bomb(size)
    assert len(bomb) < 200_000
    compressor = {"name": codec, "configuration": {"level": 1}}
    if codec == "zstd":
        compressor["configuration"]["checksum"] = False
    path = array_dir(tmp_path, v3([16], [16], codecs=[BYTES, compressor]))
    (path / "c").mkdir()
    (path / "c" / "0").write_bytes(bomb)
    a = BigArray(str(path))
    before = peak_mib()
    t = time.monotonic()
    with pytest.raises(ChunkDecodeError, match="c/0"):
        a[...]
    assert time.monotonic() - t < 10
    assert peak_mib() - before < 50, "the bomb was inflated"


def test_a_v2_zlib_bomb_is_refused(tmp_path: Path) -> None:
    zarray = {"zarr_format": 2, "shape": [16], "chunks": [16], "dtype": "|u1", "order": "C",
              "compressor": {"id": "zlib", "level": 1}, "fill_value": 0,
              "filters": None}  # fmt: skip
    path = array_dir(tmp_path, zarray, ".zarray")
    c = zlib.compressobj(9)
    bomb = b"".join([*(c.compress(bytes(1 << 20)) for _ in range(100)), c.flush()])
    (path / "0").write_bytes(bomb)
    before = peak_mib()
    with pytest.raises(ChunkDecodeError, match="0"):
        BigArray(str(path))[...]
    assert peak_mib() - before < 50, "the bomb was inflated"


def test_a_gzip_chunk_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = array_dir(tmp_path, v3([16], [16], codecs=[BYTES, GZIP]))
    (path / "c").mkdir()
    for stored in (gzip.compress(bytes(15)), gzip.compress(bytes(17)), b"\x1f\x8b junk"):
        (path / "c" / "0").write_bytes(stored)
        with pytest.raises(ChunkDecodeError, match="c/0"):
            BigArray(str(path))[...]
