"""Writes a few valid seed inputs per fuzz target into ``fuzz/corpus/<target>/``.

Each decoder input is four layout bytes (see ``src/fuzzing.rs``: shape
``[a % 64 + 1, b % 64 + 1, c % 16 + 1]``, channel count and dtype picked by ``d``) followed by
a chunk that the peers' encoders wrote for exactly that layout, so the fuzzer starts from
well-formed data. Run with the project's venv: ``.venv/bin/python fuzz/make_seeds.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import blosc
import brotli
import compressed_segmentation as cseg
import compresso
import crackle
import numpy as np
import pyspng
import simplejpeg
import zstandard

CORPUS = Path(__file__).resolve().parent / "corpus"


def layout(shape: tuple[int, int, int], d: int) -> bytes:
    return bytes([shape[0] - 1, shape[1] - 1, shape[2] - 1, d])


def save(target: str, data: bytes) -> None:
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def volume(shape, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    base = np.linspace(0, top, int(np.prod(shape)) * channels) % (top + 1)
    noise = rng.integers(0, max(top // 16, 2), size=base.size)
    return np.clip(base + noise, 0, top).astype(dtype).reshape((*shape, channels), order="F")


def image(vol: np.ndarray) -> np.ndarray:
    """The chunk as CloudVolume lays it out in an image: width x, height y·z."""
    x, y, z, c = vol.shape
    return np.ascontiguousarray(vol.transpose(2, 1, 0, 3).reshape(z * y, x, c))


def main() -> None:
    shape = (8, 6, 3)
    # jpeg: channels 1 (d >> 4 == 0) and 3 (d >> 4 == 1), uint8.
    for d, channels in ((0x00, 1), (0x10, 3)):
        img = image(volume(shape, channels, "uint8", d))
        space = "GRAY" if channels == 1 else "RGB"
        sub = "Gray" if channels == 1 else "444"
        save("decode_jpeg", layout(shape, d) + simplejpeg.encode_jpeg(img, 85, space, sub))
    # png: channels [1, 2, 3, 4] by d >> 4, dtypes [u8, u16] by d & 15.
    for d, channels, dtype in ((0x00, 1, "uint8"), (0x11, 2, "uint16"), (0x30, 4, "uint8")):
        img = image(volume(shape, channels, dtype, d))
        save("decode_png", layout(shape, d) + pyspng.encode(img))
    # compressed_segmentation: channels [1, 2, 3], dtypes [u32, u64]; the harness uses block
    # size 8×8×8 (the encoding's default).
    for d, dtype in ((0x00, "uint32"), (0x01, "uint64")):
        labels = np.asfortranarray(
            np.random.default_rng(d).integers(0, 5, size=shape).astype(dtype) * 1000003
        )
        save(
            "decode_compressed_segmentation",
            layout(shape, d) + cseg.compress(labels, block_size=(8, 8, 8), order="F"),
        )
    # crackle: channel 1, dtypes [u8, u16, u32, u64]; the default variant (flat labels) on
    # noise and blocks, and pins with a markov model.
    rng = np.random.default_rng(7)
    blocks = np.kron(rng.integers(1, 4, size=(4, 3, 2)), np.ones((2, 2, 2)))[:, :, :3]
    for d, dtype, labels, opts in (
        (0x00, "uint8", rng.integers(0, 3, size=shape), {}),
        (0x02, "uint32", blocks * 1000003, {}),
        (0x01, "uint16", blocks * 1000, {"allow_pins": 1, "markov_model_order": 2}),
        (0x03, "uint64", blocks * 2**60 + 7, {"markov_model_order": 1}),
    ):
        labels = np.asfortranarray(labels.astype(dtype))
        save("decode_crackle", layout(shape, d) + crackle.compress(labels, **opts))
    # blosc: channels [1, 2], dtypes [u8, u16, u32, f64].
    for d, itemsize, cname in ((0x00, 1, "lz4"), (0x12, 4, "zstd"), (0x03, 8, "blosclz")):
        raw = volume(shape, 1 + (d >> 4), "uint8", d).tobytes() * itemsize
        save("decode_blosc", layout(shape, d) + blosc.compress(raw, itemsize, cname=cname))
    # brotli around raw: channels [1, 2], dtypes [u8, u32].
    for d, itemsize in ((0x00, 1), (0x11, 4)):
        raw = volume(shape, 1 + (d >> 4), "uint8", d).tobytes() * itemsize
        save("decode_brotli", layout(shape, d) + brotli.compress(raw, quality=5))
    # info files: a raw image layer and a jpeg + compressed_segmentation pair of scales.
    scale = {
        "key": "4_4_40", "size": [45, 29, 11], "voxel_offset": [3, -5, 7],
        "chunk_sizes": [[16, 11, 4]], "resolution": [4, 4, 40], "encoding": "raw",
    }  # fmt: skip
    infos = [
        {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [scale]},
        {
            "type": "segmentation", "data_type": "uint64", "num_channels": 1,
            "scales": [
                {**scale, "encoding": "compressed_segmentation",
                 "compressed_segmentation_block_size": [8, 8, 8]},
                {**scale, "key": "8_8_40", "resolution": [8, 8, 40], "encoding": "jpeg",
                 "jpeg_quality": 90},
            ],
        },
    ]  # fmt: skip
    for info in infos:
        save("parse_info", json.dumps(info).encode())
    transport_seeds()
    compresso_seeds()
    shard_seeds()
    zarr_seeds()
    zarr_metadata_seeds()
    zarr_read_seeds()
    jxl_seeds()


def compresso_seeds() -> None:
    """decode_compresso: one channel, dtypes [u8, u16, u32, u64] by d & 15; the package's
    defaults (what CloudVolume writes), 8x8x1 windows, connectivity 6 and no z index."""
    shape = (8, 6, 3)
    variants = (
        (0x00, "uint8", {}),
        (0x01, "uint16", {"random_access_z_index": False}),
        (0x02, "uint32", {"connectivity": 6}),
        (0x03, "uint64", {"steps": (8, 8, 1)}),
    )
    for d, dtype, kwargs in variants:
        rng = np.random.default_rng(d)
        labels = rng.integers(0, 4, size=(4, 3, 3)).repeat(2, 0).repeat(2, 1).astype(dtype)
        labels[rng.random(shape) < 0.1] = np.iinfo(dtype).max - d  # escaped location labels
        save("decode_compresso", layout(shape, d) + compresso.compress(labels, **kwargs))


def transport_seeds() -> None:
    """decode_transport: two bytes giving the expected size (a * 64 + b), then a gzip, zstd
    or brotli body of exactly that size."""
    for n, compress in ((300, gzip.compress), (4000, zstandard.compress), (77, brotli.compress)):
        body = volume((n, 1, 1), 1, "uint8", n).tobytes()
        save("decode_transport", bytes([n // 64, n % 64]) + compress(body))


def header(minishard_bits: int, index_gzip: bool, data_gzip: bool, murmur: bool) -> int:
    """The first byte of a parse_shard / parse_minishard_index input for this spec."""
    flags = 0x08 * index_gzip | 0x10 * data_gzip | 0x20 * murmur
    return next(h for h in range(256) if h % 5 == minishard_bits and h & 0x38 == flags)


def minishard_index(entries: list[tuple[int, int, int]], start: int) -> bytes:
    """Rows of delta-coded ids, offsets (relative to the previous chunk's end, the first to
    `start`) and sizes, as neuroglancer_uint64_sharded_v1 lays them out."""
    ids, offsets, sizes, prev_id, end = [], [], [], 0, start
    for cid, offset, size in entries:
        ids.append(cid - prev_id)
        offsets.append(offset - end)
        sizes.append(size)
        prev_id, end = cid, offset + size
    return struct.pack(f"<{3 * len(entries)}Q", *ids, *offsets, *sizes)


def shard_file(minishard_bits: int, index_gzip: bool, chunks: dict[int, bytes]) -> bytes:
    """One shard (identity hash, preshift 0): shard index, then per minishard its chunks
    and its index. Offsets in the shard index are relative to the index's end."""
    index_len = 16 << minishard_bits
    by_minishard: dict[int, list[int]] = {}
    for cid in sorted(chunks):
        by_minishard.setdefault(cid & ((1 << minishard_bits) - 1), []).append(cid)
    body, table = b"", [(0, 0)] * (1 << minishard_bits)
    for m, ids in sorted(by_minishard.items()):
        entries = []
        for cid in ids:
            entries.append((cid, len(body), len(chunks[cid])))
            body += chunks[cid]
        index = minishard_index(entries, 0)
        index = gzip.compress(index) if index_gzip else index
        table[m] = (len(body), len(body) + len(index))
        body += index
    return b"".join(struct.pack("<QQ", a, b) for a, b in table) + body


def shard_seeds() -> None:
    chunks = {cid: bytes([cid]) * (3 + cid % 5) for cid in (0, 1, 2, 5, 6, 9)}
    for bits, index_gzip in ((0, False), (1, True), (2, False), (3, True)):
        h = header(bits, index_gzip, False, False)
        save("parse_shard", bytes([h, 0]) + shard_file(bits, index_gzip, chunks))
    for index_gzip in (False, True):
        h = header(0, index_gzip, False, False)
        index = minishard_index([(3, 16, 5), (4, 21, 7), (10, 40, 2)], 16)
        index = gzip.compress(index) if index_gzip else index
        save("parse_minishard_index", bytes([h, 0, 64]) + index)


def zarr_seeds() -> None:
    """decode_zarr_chain: the chunks and shards zarr-python and numcodecs wrote for the codec
    tests, each behind its chain as JSON; parse_zarr_shard_index: uint8 shards that
    zarr-python writes for the harness's configurations (see ``src/fuzzing.rs``)."""
    import tempfile

    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

    cases = Path(__file__).resolve().parent.parent / "tests/data/zarr_codecs"
    manifest = json.loads((cases / "cases.json").read_text())
    for case in manifest["cases"]:
        head = {k: case[k] for k in ("codecs", "shape", "dtype")}
        text = json.dumps(head, separators=(",", ":")).encode()
        stored = (cases / f"{case['name']}.bin").read_bytes()
        save("decode_zarr_chain", struct.pack(">H", len(text)) + text + stored)
    for h, dims in ((0x00, [3]), (0x0D, [1, 2]), (0x1A, [2, 0, 3]), (0x09, [0])):
        rank = 1 + h % 3
        per = [1 + d % 4 for d in dims[:rank]]
        shape = tuple(2 * p for p in per)
        index_codecs = [BytesCodec(endian="big" if h & 16 else "little")]
        if h & 8:
            index_codecs.append(Crc32cCodec())
        with tempfile.TemporaryDirectory() as tmp:
            arr = zarr.create_array(
                store=zarr.storage.LocalStore(tmp), shape=shape, chunks=shape, dtype="uint8",
                fill_value=0, compressors=None, filters=None,
                serializer=ShardingCodec(
                    chunk_shape=(2,) * rank, codecs=[BytesCodec()], index_codecs=index_codecs,
                    index_location="start" if h & 4 else "end",
                ),
            )  # fmt: skip
            data = (np.arange(int(np.prod(shape))) % 7).astype("uint8").reshape(shape)
            if np.prod(per) > 1:
                data[(slice(0, 2),) * rank] = 0  # a missing inner chunk
            arr[...] = data
            stored = (Path(tmp) / ("c/" + "/".join("0" * rank))).read_bytes()
        save("parse_zarr_shard_index", bytes([h, *dims[:rank]]) + stored)


def zarr_read_seeds() -> None:
    """read_zarr_array: one byte (0 for ``zarr.json``, 1 for ``.zarray``), the metadata's
    length (two bytes, big-endian), the metadata zarr-python wrote, then its one chunk or
    shard (the harness's store holds it under every chunk key)."""
    import tempfile

    import zarr
    from zarr.codecs import BytesCodec, GzipCodec, ShardingCodec, ZstdCodec

    def one(which: int, meta: str, **kw: object) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            shape = (6, 10)
            arr = zarr.create_array(store=zarr.storage.LocalStore(tmp), shape=shape, **kw)
            arr[...] = (np.arange(60) % 11).reshape(shape).astype(arr.dtype)
            chunk = next(p for p in sorted(Path(tmp).rglob("*")) if p.is_file() and
                         not p.name.startswith((".z", "zarr.json")))  # fmt: skip
            text = (Path(tmp) / meta).read_bytes()
            save("read_zarr_array", bytes([which]) + struct.pack(">H", len(text)) + text
                 + chunk.read_bytes())  # fmt: skip

    one(0, "zarr.json", chunks=(6, 10), dtype="uint16", compressors=ZstdCodec(level=1))
    one(0, "zarr.json", chunks=(3, 4), dtype="float32", fill_value=float("nan"),
        compressors=GzipCodec())  # fmt: skip
    one(0, "zarr.json", chunks=(6, 10), dtype="int8", compressors=None, serializer=ShardingCodec(
        chunk_shape=(3, 5), codecs=[BytesCodec(), ZstdCodec(level=1)]))  # fmt: skip
    one(1, ".zarray", chunks=(6, 10), dtype="uint8", zarr_format=2)


def zarr_metadata_seeds() -> None:
    """parse_zarr_metadata: one byte picking the parser (0 v3 array, 1 v2 array, 2 v3 group,
    3 v2 group attributes), then a file that zarr-python, TensorStore or ome-zarr-py wrote
    (the fixtures of ``tests/data/zarr_metadata``, made by its ``generate.py``)."""
    fixtures = CORPUS.parent.parent / "tests/data/zarr_metadata"
    for case in sorted(p for p in fixtures.iterdir() if p.is_dir()):
        node = json.loads((case / "expected.json").read_text())["node"]
        files = {
            "array": ((0, "zarr.json"), (1, ".zarray")),
            "group": ((2, "zarr.json"), (3, ".zattrs")),
        }
        for which, name in files[node]:
            if (case / name).exists():
                save("parse_zarr_metadata", bytes([which]) + (case / name).read_bytes())


def jxl_seeds() -> None:
    """jxl chunks as CloudVolume writes them (libjxl through imagecodecs): channels [1, 2, 3, 4]
    by d >> 4, one grey frame per channel; lossless and lossy."""
    from cloudvolume import chunks

    shape = (8, 6, 3)
    for d, channels, level in ((0x00, 1, 100), (0x00, 1, 85), (0x20, 3, 100), (0x20, 3, 70)):
        vol = volume(shape, channels, "uint8", d + level)
        encoded = chunks.encode(vol, "jxl", compression_params={"level": level, "jxl_effort": 5})
        save("decode_jxl", layout(shape, d) + encoded)


if __name__ == "__main__":
    main()
