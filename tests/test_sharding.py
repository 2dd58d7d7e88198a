"""Sharded precomputed (``neuroglancer_uint64_sharded_v1``), checked against the peers.

TensorStore writes sharded volumes (identity and murmurhash hashes, shards that are grid
blocks and shards that are not, raw and gzip data and minishard-index encodings, raw,
compressed_segmentation and jpeg chunks) and bigarrays reads them; bigarrays writes sharded
volumes and TensorStore and CloudVolume read them; CloudVolume writes shards too. Partial
shard writes must keep every other chunk of the shard. Corrupt shards raise
``ChunkDecodeError`` naming the shard file. The Morton-code and murmurhash test vectors are
Rust unit tests (``src/format/precomputed/sharding.rs``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse

import numpy as np
import pytest
import tensorstore as ts
from cloudvolume import CloudVolume
from conftest import FAST, FakeGcs, HttpServer, Moto
from faulty_proxy import FaultyProxy
from volumes import absolute, assert_bit_exact, random_volume, window

import bigarrays
from bigarrays import BigArray

RESOLUTION = (4, 4, 40)
KEY = "4_4_40"


def sharding(preshift, hash_, minishard, shard, index="gzip", data="gzip") -> dict:
    return {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": preshift,
        "hash": hash_,
        "minishard_bits": minishard,
        "shard_bits": shard,
        "minishard_index_encoding": index,
        "data_encoding": data,
    }


# (dtype, channels, encoding, chunk, size, offset, sharding). Grids: (100,90,70)/(16,16,8)
# is 7×6×9 chunks (10 Morton bits); (70,45,37)/(16,20,8) is 5×3×5 (8 bits).
CASES = {
    # identity, every Morton bit inside preshift+minishard+shard: shards are grid blocks
    "identity-blocks-raw": (
        "uint8", 1, "raw", (16, 16, 8), (100, 90, 70), (3, -17, 5),
        sharding(1, "identity", 2, 7, "raw", "raw"),
    ),
    # identity with too few shard bits: shard numbers wrap, shards are not blocks
    "identity-wrapping-gzip": (
        "float32", 1, "raw", (16, 20, 8), (70, 45, 37), (0, 0, 0),
        sharding(0, "identity", 2, 2),
    ),
    "murmur-2ch-gzip-index": (
        "uint16", 2, "raw", (16, 20, 8), (70, 45, 37), (-37, -5, -100),
        sharding(1, "murmurhash3_x86_128", 2, 3, "gzip", "raw"),
    ),
    "murmur-gzip-data": (
        "uint64", 1, "raw", (16, 20, 8), (70, 45, 37), (5, 6, 7),
        sharding(0, "murmurhash3_x86_128", 3, 2, "raw", "gzip"),
    ),
    "cseg": (
        "uint32", 1, "compressed_segmentation", (16, 16, 8), (100, 90, 70), (0, 0, 0),
        sharding(2, "identity", 1, 7),
    ),
    "jpeg": (
        "uint8", 1, "jpeg", (16, 16, 8), (100, 90, 70), (0, 0, 0),
        sharding(0, "identity", 3, 7, "gzip", "raw"),
    ),
}  # fmt: skip


def reference(case: str) -> np.ndarray:
    dtype, channels, encoding, _, size, _, _ = CASES[case]
    shape = size + ((channels,) if channels > 1 else ())
    seed = sorted(CASES).index(case)
    if encoding == "compressed_segmentation":
        rng = np.random.default_rng(seed)
        return np.asfortranarray(rng.integers(1, 40, size=shape).astype(dtype))
    if encoding == "jpeg":
        x, y, z = np.meshgrid(*(np.arange(n) for n in size), indexing="ij")
        noise = np.random.default_rng(seed).integers(0, 8, size=size)
        return np.asfortranarray(((x + 2 * y + 3 * z) % 200 + noise + 20).astype(dtype))
    return random_volume(seed, shape, dtype, nonzero=True)


def punch_holes(ref: np.ndarray, chunk) -> None:
    """Zero two whole chunks and a stretch of a third, so some chunks are never stored."""
    c = np.array(chunk)
    ref[: 2 * c[0], : c[1], : c[2]] = 0
    ref[c[0] + 3 : 2 * c[0], c[1] : 2 * c[1], c[2] : 2 * c[2] - 1] = 0


def ts_spec(path, case: str | None = None) -> dict:
    """Opens the layer at ``path``, or creates it as ``case`` describes."""
    spec: dict = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}/"}
    if case is not None:
        dtype, channels, encoding, chunk, size, offset, shard = CASES[case]
        scale = {
            "size": list(size),
            "voxel_offset": list(offset),
            "chunk_size": list(chunk),
            "resolution": list(RESOLUTION),
            "encoding": encoding,
            "sharding": shard,
        }
        if encoding == "compressed_segmentation":
            scale["compressed_segmentation_block_size"] = [8, 8, 4]
        spec |= {
            "scale_metadata": scale,
            "multiscale_metadata": {"data_type": dtype, "num_channels": channels, "type": "image"},
            "create": True,
            "delete_existing": True,
        }
    return spec


def ts_read(path) -> np.ndarray:
    store = ts.open(ts_spec(path), open=True, read=True).result()
    out = store.read().result()
    return np.asfortranarray(out if out.shape[3] > 1 else out[..., 0])


def with_channels(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 4 else a[..., np.newaxis]


def shard_files(path) -> list[str]:
    return sorted(f for f in os.listdir(path / KEY) if f.endswith(".shard"))


def boxes(offset, size, chunk):
    o, n, c = np.array(offset), np.array(size), np.array(chunk)
    for start, stop in [
        (o + (5, 7, 3), o + n - (4, 9, 2)),  # unaligned, across shards and holes
        (o, o + c),  # one absent chunk
        (o - (6, 3, 2), o + (9, 11, 4)),  # crosses the low edge
        (o + n - (10, 7, 5), o + n + (13, 4, 9)),  # crosses the high edge
        (o + (3, 1, 2), o + (4, 2, 3)),  # one voxel
    ]:
        yield tuple(int(v) for v in start), tuple(int(v) for v in stop)


# -- TensorStore writes, bigarrays reads -----------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_tensorstore_written_shards_read_by_bigarray(tmp_path, case):
    dtype, channels, encoding, chunk, size, offset, _ = CASES[case]
    ref = reference(case)
    punch_holes(ref, chunk)
    store = ts.open(ts_spec(tmp_path, case)).result()
    store.write(with_channels(ref)).result()
    assert shard_files(tmp_path), os.listdir(tmp_path / KEY)
    if encoding == "jpeg":
        # Lossy: compare with TensorStore's own decode of the same shards (libjpeg-turbo
        # there, zune-jpeg here; the integer IDCTs may round a sample by one).
        ref = ts_read(tmp_path)

    a = BigArray(str(tmp_path))
    assert a.shape == ref.shape and a.dtype == np.dtype(dtype) and a.voxel_offset == offset
    got = a[a.bounds]
    if encoding == "jpeg":
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
        return
    assert_bit_exact(got, ref)
    for start, stop in boxes(offset, size, chunk):
        assert_bit_exact(a[absolute(start, stop)], window(ref, offset, start, stop), (start, stop))
    # A second handle with fill_missing=False names the shard of a chunk it cannot find.
    strict = BigArray(str(tmp_path), fill_missing=False)
    o, c = np.array(offset), np.array(chunk)
    with pytest.raises(bigarrays.MissingChunkError, match=r"\.shard"):
        strict[absolute(o, o + c)]


# -- bigarrays writes, TensorStore and CloudVolume read --------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_bigarray_written_shards_read_by_tensorstore(tmp_path, case):
    dtype, channels, encoding, chunk, size, offset, shard = CASES[case]
    ref = reference(case)
    options = {"compressed_segmentation_block_size": [8, 8, 4]} if encoding != "raw" else None
    if encoding == "jpeg":
        options = {"jpeg_quality": 95}
    a = BigArray.create(
        str(tmp_path), shape=ref.shape, dtype=dtype, chunks=chunk, voxel_offset=offset,
        resolution=RESOLUTION, encoding=encoding, encoding_options=options, sharding=shard,
    )  # fmt: skip
    assert a.info["scales"][0]["sharding"] == shard
    a[a.bounds] = ref
    got = ts_read(tmp_path)
    mine = a[a.bounds]
    if encoding == "jpeg":
        assert np.abs(got.astype(int) - mine.astype(int)).max() <= 1
        assert np.abs(mine.astype(int) - ref.astype(int)).mean() < 3
        return
    assert_bit_exact(got, ref)
    assert_bit_exact(mine, ref)


def test_partial_shard_writes_keep_the_other_chunks(tmp_path):
    """Unaligned writes over block shards (identity) and scattered shards (murmur): every
    write merges into the shards it touches, and TensorStore sees the same result."""
    size, chunk = (50, 40, 30), (8, 8, 8)  # 7×5×4 chunks, 8 Morton bits
    for name, shard in [
        ("blocks", sharding(1, "identity", 2, 5)),
        ("murmur", sharding(0, "murmurhash3_x86_128", 2, 2, "raw", "raw")),
    ]:
        path = tmp_path / name
        a = BigArray.create(str(path), shape=size, dtype="uint16", chunks=chunk, sharding=shard)
        model = np.zeros(size, dtype="uint16")
        rng = np.random.default_rng(7)
        for start, stop in [
            ((0, 0, 0), (50, 40, 30)),  # everything
            ((3, 5, 7), (20, 11, 9)),  # part of a few chunks, part of a few shards
            ((8, 8, 8), (24, 24, 24)),  # whole chunks, part of shards
            ((49, 39, 29), (50, 40, 30)),  # the last voxel
            ((0, 17, 0), (50, 18, 30)),  # a thin slab through every shard row
        ]:
            box = absolute(start, stop)
            values = rng.integers(
                1, 60000, size=tuple(b - a for a, b in zip(start, stop, strict=True))
            )
            a[box] = values.astype("uint16")
            model[box] = values
            assert_bit_exact(a[a.bounds], model, (name, start, stop))
        assert_bit_exact(BigArray(str(path))[a.bounds], model)
        assert_bit_exact(ts_read(path), model)


def test_auto_sharding_picks_block_shards_read_by_peers(tmp_path):
    size, chunk = (200, 150, 90), (32, 32, 16)  # 7×5×6 chunks; 16 KiB chunks
    ref = random_volume(3, size, "uint8")
    a = BigArray.create(
        str(tmp_path), shape=size, dtype="uint8", chunks=chunk, resolution=RESOLUTION,
        sharding="auto",
    )  # fmt: skip
    spec = a.info["scales"][0]["sharding"]
    # The whole layer (3.5 MB) is below the shard budget: one shard, identity hash.
    assert spec["hash"] == "identity" and spec["shard_bits"] == 0
    assert spec["preshift_bits"] + spec["minishard_bits"] == 3 + 3 + 3
    assert spec["data_encoding"] == "gzip"
    a[a.bounds] = ref
    assert shard_files(tmp_path) == ["0.shard"]
    assert_bit_exact(ts_read(tmp_path), ref)
    cv = CloudVolume(f"file://{tmp_path}", fill_missing=True, progress=False)
    assert_bit_exact(np.asarray(cv[:, :, :])[..., 0], ref)


@pytest.mark.parametrize("hash_", ["identity", "murmurhash3_x86_128"])
def test_bigarray_written_shards_read_by_cloudvolume(tmp_path, hash_):
    size, chunk = (70, 45, 37), (16, 20, 8)
    ref = random_volume(4, size, "uint32", nonzero=True)
    shard = sharding(1, hash_, 2, 3 if hash_ != "identity" else 5, "gzip", "gzip")
    a = BigArray.create(
        str(tmp_path), shape=size, dtype="uint32", chunks=chunk, voxel_offset=(3, 4, 5),
        sharding=shard,
    )  # fmt: skip
    a[a.bounds] = ref
    cv = CloudVolume(f"file://{tmp_path}", fill_missing=True, progress=False)
    assert_bit_exact(np.asarray(cv[3:73, 4:49, 5:42])[..., 0], ref)


@pytest.mark.parametrize("hash_", ["identity", "murmurhash3_x86_128"])
def test_cloudvolume_written_shards_read_by_bigarray(tmp_path, hash_):
    """CloudVolume writes one whole shard per call; with shard_bits 0 that is the layer."""
    size, chunk = (64, 48, 40), (16, 16, 8)
    ref = random_volume(5, size, "uint16", nonzero=True)
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint16", encoding="raw",
        resolution=list(RESOLUTION), voxel_offset=[0, 0, 0], volume_size=list(size),
        chunk_size=list(chunk),
    )  # fmt: skip
    info["scales"][0]["sharding"] = sharding(1, hash_, 3, 0, "gzip", "gzip")
    cv = CloudVolume(f"file://{tmp_path}", info=info, progress=False)
    cv.commit_info()
    cv[:, :, :] = ref
    assert shard_files(tmp_path) == ["0.shard"]
    a = BigArray(str(tmp_path))
    assert_bit_exact(a[a.bounds], ref)
    for start, stop in boxes((0, 0, 0), size, chunk):
        assert_bit_exact(a[absolute(start, stop)], window(ref, (0, 0, 0), start, stop))


# -- errors -----------------------------------------------------------------------------------


def test_corrupt_shards_raise_chunk_decode_error_naming_the_shard(tmp_path):
    size, chunk = (32, 32, 32), (8, 8, 8)
    shard = sharding(0, "identity", 2, 0, "raw", "raw")
    a = BigArray.create(
        str(tmp_path), shape=size, dtype="uint8", chunks=chunk, resolution=RESOLUTION,
        sharding=shard,
    )  # fmt: skip
    a[a.bounds] = random_volume(1, size, "uint8")
    path = tmp_path / KEY / "0.shard"
    good = path.read_bytes()
    index_end = 16 << 2

    def corrupted(edit) -> None:
        data = bytearray(good)
        edit(data)
        path.write_bytes(bytes(data))
        with pytest.raises(bigarrays.ChunkDecodeError, match=r"0\.shard") as e:
            BigArray(str(tmp_path))[a.bounds]
        assert isinstance(e.value, ValueError)

    def entry(data, m, start, end):
        data[16 * m : 16 * m + 16] = np.array([start, end], "<u8").tobytes()

    start, end = np.frombuffer(good[:16], "<u8")
    # A minishard index past the end of the file.
    corrupted(lambda d: entry(d, 0, start, len(good) * 4))
    # A minishard index whose length is not a multiple of 24.
    corrupted(lambda d: entry(d, 0, start, end - 1))

    # A chunk size past the end (the size row of minishard 0 holds its last 8 bytes).
    def huge_size(d):
        at = index_end + int(end)
        d[at - 8 : at] = np.array([2**62], "<u8").tobytes()

    corrupted(huge_size)

    # Overlapping chunks: the second chunk's offset delta goes back by one byte.
    def overlap(d):
        n = (int(end) - int(start)) // 24
        at = index_end + int(start) + 8 * (n + 1)
        d[at : at + 8] = np.array([2**64 - 1], "<u8").tobytes()

    corrupted(overlap)
    # Files cut short inside the chunk data, and inside the shard index.
    for cut in (len(good) // 2, 10):
        path.write_bytes(good[:cut])
        with pytest.raises(bigarrays.ChunkDecodeError, match=r"0\.shard"):
            BigArray(str(tmp_path))[a.bounds]


def test_bad_sharding_arguments(tmp_path):
    with pytest.raises(bigarrays.InvalidArgumentError, match="hash"):
        BigArray.create(
            str(tmp_path), shape=(8, 8, 8), dtype="uint8", sharding=sharding(0, "md5", 0, 0)
        )
    with pytest.raises(bigarrays.InvalidArgumentError, match="minishard_bits"):
        BigArray.create(
            str(tmp_path), shape=(8, 8, 8), dtype="uint8", sharding=sharding(0, "identity", 24, 0)
        )
    with pytest.raises(bigarrays.InvalidArgumentError, match="sharding"):
        BigArray.create(str(tmp_path), shape=(8, 8, 8), dtype="uint8", sharding="big")
    # A layer whose sharding is malformed opens, and IO names the field.
    a = BigArray.create(str(tmp_path), shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4))
    info = a.info
    info["scales"][0]["sharding"] = sharding(0, "identity", 40, 0)
    (tmp_path / "info").write_text(json.dumps(info))
    b = BigArray(str(tmp_path))
    with pytest.raises(bigarrays.InfoError, match=re.escape("scales[0].sharding.minishard_bits")):
        b[:, :, :]


# -- cloud stores: range reads ----------------------------------------------------------------


def test_sharded_over_http_reads_ranges_not_shards(http_range_server: HttpServer):
    """A small cutout fetches index entries, a minishard index and a few chunks: far less
    than the shard file. Repeating it hits the index cache."""
    root = http_range_server.root / "layer"
    size, chunk = (128, 128, 64), (16, 16, 16)
    ref = random_volume(9, size, "uint16", nonzero=True)
    a = BigArray.create(
        str(root), shape=size, dtype="uint16", chunks=chunk, resolution=RESOLUTION, sharding="auto"
    )
    a[a.bounds] = ref
    (shard,) = shard_files(root)
    shard_size = (root / KEY / shard).stat().st_size
    remote = BigArray(f"{http_range_server.url}/layer/", storage_options=FAST)
    faults = http_range_server.faults
    start, stop = (20, 20, 5), (30, 30, 12)  # inside one chunk
    box = absolute(start, stop)
    before = faults.served
    assert_bit_exact(remote[box], window(ref, (0, 0, 0), start, stop))
    first = faults.served - before
    assert 0 < first < shard_size / 50, (first, shard_size)
    requests = faults.requests
    assert_bit_exact(remote[box], window(ref, (0, 0, 0), start, stop))
    assert faults.requests - requests == 1  # the cached indexes leave one data request
    assert_bit_exact(remote[remote.bounds], ref)


def test_sharded_over_s3(moto: Moto):
    url = f"s3://{moto.bucket()}/layers/sharded"
    size, chunk = (70, 45, 37), (16, 20, 8)
    ref = random_volume(11, size, "float32")
    shard = sharding(1, "identity", 2, 5)
    a = BigArray.create(
        url, shape=size, dtype="float32", chunks=chunk, resolution=RESOLUTION, sharding=shard,
        storage_options=moto.options(),
    )  # fmt: skip
    a[a.bounds] = ref
    a[3:20, 5:9, 30:37] = 0  # a partial-shard rewrite in the bucket
    ref[3:20, 5:9, 30:37] = 0
    b = BigArray(url, storage_options=moto.options())
    assert_bit_exact(b[b.bounds], ref)
    assert_bit_exact(b[10:50, 1:44, 2:3], ref[10:50, 1:44, 2:3])
    client = moto.client()
    bucket, prefix = url[5:].split("/", 1)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    shards = [k for k in keys if k.endswith(".shard")]
    assert shards and all(k.startswith(f"{prefix}/{KEY}/") for k in shards)
    for key in shards:  # range reads need plain objects
        assert "ContentEncoding" not in client.head_object(Bucket=bucket, Key=key)


def test_sharded_read_many_looks_each_index_up_once_and_warm_reads_fetch_data_only(moto: Moto):
    """Round trips, counted by kind in the proxy's log (never timed): a cold ``read_many`` of
    patches across shards fetches each shard's index once (whole, as it is small) and each
    minishard index it needs once; the same batch again sends chunk data requests only.
    (tests in src/format/precomputed/source/sharded.rs count the rounds themselves.)"""
    url = f"s3://{moto.bucket()}/layers/rounds"
    # 8x8x4 chunks, ids of 8 bits; random voxels, so each minishard's chunks (128 KiB) keep
    # its index and the next one's too far apart to share a request.
    size, chunk = (256, 256, 128), (32, 32, 32)
    ref = random_volume(12, size, "uint8")
    spec = sharding(2, "identity", 2, 4)  # 16 shards of 4 minishards
    a = BigArray.create(
        url, shape=size, dtype="uint8", chunks=chunk, resolution=RESOLUTION, sharding=spec,
        storage_options=moto.options(),
    )  # fmt: skip
    a[a.bounds] = ref
    client = moto.client()
    bucket, prefix = url[5:].split("/", 1)
    index_len = 16 << spec["minishard_bits"]
    minishard_indexes = {}
    for o in client.list_objects_v2(Bucket=bucket)["Contents"]:
        if o["Key"].endswith(".shard"):
            got = client.get_object(Bucket=bucket, Key=o["Key"], Range=f"bytes=0-{index_len - 1}")
            entries = np.frombuffer(got["Body"].read(), "<u8").reshape(-1, 2) + index_len
            minishard_indexes[o["Key"]] = {(int(b), int(e)) for b, e in entries if b != e}
    assert len(minishard_indexes) == 16

    def kind(r) -> tuple[str, str, tuple[int, int]] | None:
        """(kind, key, byte range) of a ranged GET of a shard; None for anything else."""
        key = urllib.parse.unquote(r.path.split("?", 1)[0]).lstrip("/").split("/", 1)[1]
        if r.method != "GET" or not r.range or key not in minishard_indexes:
            return None
        first, last = r.range.removeprefix("bytes=").split("-")
        span = (int(first), int(last) + 1)
        if span[1] <= index_len:
            return "shard index", key, span
        if span in minishard_indexes[key]:
            return "minishard index", key, span
        return "data", key, span

    rng = np.random.default_rng(3)
    starts = [rng.integers(0, np.array(size) - 20, endpoint=True) for _ in range(24)]
    patches = [tuple(slice(int(s), int(s) + 20) for s in o) for o in starts]
    host, port = moto.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port))) as proxy:
        b = BigArray(url, storage_options=moto.options(endpoint=proxy.url))
        del proxy.log[:]
        for p, got in zip(patches, b.read_many(patches), strict=True):
            assert_bit_exact(got, ref[p])
        cold = [k for k in map(kind, proxy.log) if k is not None]
        shard_index = [k for k in cold if k[0] == "shard index"]
        minishard_index = [k for k in cold if k[0] == "minishard index"]
        touched = {k[1] for k in cold}
        assert len(touched) > 4, touched  # the batch spans many shards
        assert len(shard_index) == len(touched), shard_index  # one request per shard
        assert all(k[2] == (0, index_len) for k in shard_index)  # the whole index
        assert minishard_index, cold
        assert len(set(minishard_index)) == len(minishard_index), minishard_index  # once each
        del proxy.log[:]
        for p, got in zip(patches, b.read_many(patches), strict=True):
            assert_bit_exact(got, ref[p])
        warm = [kind(r) for r in proxy.log]
        assert warm and all(k is not None and k[0] == "data" for k in warm), warm


def test_sharded_over_fake_gcs(tmp_path, fake_gcs: FakeGcs):
    """TensorStore writes murmur-hashed shards; they are served by fake-gcs-server."""
    case = "murmur-2ch-gzip-index"
    _, _, _, chunk, size, offset, _ = CASES[case]
    ref = reference(case)
    ts.open(ts_spec(tmp_path, case)).result().write(ref).result()
    bucket = fake_gcs.bucket()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            fake_gcs.upload(bucket, f"l/{f.relative_to(tmp_path)}", f.read_bytes())
    a = BigArray(f"gs://{bucket}/l", storage_options=fake_gcs.options())
    assert_bit_exact(a[a.bounds], ref)
    for start, stop in boxes(offset, size, chunk):
        assert_bit_exact(a[absolute(start, stop)], window(ref, offset, start, stop), (start, stop))
