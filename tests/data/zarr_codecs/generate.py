"""Writes small encoded Zarr chunks and shards with zarr-python 3, numcodecs and TensorStore
(cases named ts_*), for the
bit-exactness tests in src/format/zarr/codecs/tests.rs.

Each case is one chunk (the whole array is one chunk or one shard): `<name>.bin` holds the
stored bytes zarr-python wrote, `<name>.raw` the decoded elements (C order, little-endian),
and `cases.json` the codec chain as zarr.json names it, the shape, data type and fill value.
Run from the repository root: .venv/bin/python tests/data/zarr_codecs/generate.py
"""

import gzip
import json
import pathlib
import shutil
import tempfile

import numcodecs
import numpy as np
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

OUT = pathlib.Path(__file__).resolve().parent


class _Epoch:
    """numcodecs' GZip stamps the current time into the gzip header; time 0 keeps the
    committed outputs reproducible (and equal to what we write)."""

    @staticmethod
    def time():
        return 0


gzip.time = _Epoch


def pattern(shape, dtype):
    """Deterministic, compressible but not trivial data."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    v = (i * 7 + (i // 5) * 13 + (i * i) % 11) % 251
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return (v % 3 == 0).reshape(shape)
    if dt.kind == "f":
        return (v / 3.0 - 20.0).astype(dt).reshape(shape)
    if dt.kind == "c":
        return (v / 3.0 + 1j * (v % 17)).astype(dt).reshape(shape)
    return (v - (50 if dt.kind == "i" else 0)).astype(dt).reshape(shape)


def le_bytes(a):
    dt = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
    return np.ascontiguousarray(a, dtype=dt).tobytes()


def fill_hex(fill, dtype):
    return le_bytes(np.array([fill], dtype=dtype))


CASES = []


def v3(
    name,
    shape,
    dtype,
    *,
    fill=0,
    chunks=None,
    serializer="auto",
    compressors="auto",
    filters="auto",
    blank=None,
):
    """One array of `shape` written as a single chunk (or shard); `blank` lists inner-chunk
    index slices left at the fill value."""
    data = pattern(shape, dtype)
    if blank:
        for sl in blank:
            data[sl] = fill
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        kwargs = dict(
            store=zarr.storage.LocalStore(tmp),
            shape=shape,
            dtype=dtype,
            fill_value=fill,
            serializer=serializer,
            compressors=compressors,
            filters=filters,
            zarr_format=3,
        )
        if chunks is None:
            kwargs["chunks"] = shape
        else:
            kwargs["chunks"] = chunks
            kwargs["shards"] = shape
        arr = zarr.create_array(**kwargs)
        arr[...] = data
        meta = json.loads((tmp / "zarr.json").read_text())
        key = "c/" + "/".join("0" for _ in shape) if shape else "c"
        stored = (tmp / key).read_bytes()
    finally:
        shutil.rmtree(tmp)
    add(name, meta["codecs"], shape, dtype, fill, stored, data)


def add(name, codecs, shape, dtype, fill, stored, data):
    (OUT / f"{name}.bin").write_bytes(stored)
    (OUT / f"{name}.raw").write_bytes(le_bytes(data))
    CASES.append(
        {
            "name": name,
            "codecs": codecs,
            "shape": list(shape),
            "dtype": np.dtype(dtype).name,
            "fill_value": fill_hex(fill, dtype).hex(),
        }
    )


def v2(name, shape, dtype, codec, spec):
    """A numcodecs compressor on raw little-endian bytes, as a v2 chunk (C order)."""
    data = pattern(shape, dtype)
    # Zarr v2 hands the compressor the chunk array, whose item size is Blosc's typesize.
    chunk = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    add(
        name,
        [{"name": "bytes", "configuration": {"endian": "little"}}, spec],
        shape,
        dtype,
        0,
        codec.encode(chunk),
        data,
    )


def ts_v3(name, shape, dtype, codecs, *, fill=0, blank=None):
    """TensorStore's zarr3 driver writing one chunk (or shard) of `shape`."""
    import tensorstore as ts

    data = pattern(shape, dtype)
    for sl in blank or []:
        data[sl] = fill
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        meta = {
            "shape": list(shape), "data_type": np.dtype(dtype).name, "fill_value": fill,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shape)}},
            "chunk_key_encoding": {"name": "default"}, "codecs": codecs,
        }  # fmt: skip
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp)}}
        arr = ts.open({**spec, "metadata": meta}, create=True).result()
        arr.write(data).result()
        written = json.loads((tmp / "zarr.json").read_text())
        stored = (tmp / ("c/" + "/".join("0" for _ in shape))).read_bytes()
    finally:
        shutil.rmtree(tmp)
    add(name, written["codecs"], shape, dtype, fill, stored, data)


def ts_v2(name, shape, dtype, compressor, spec):
    """TensorStore's zarr (v2) driver writing one chunk; `spec` is the compressor as the
    v3 codec that metadata translates it to."""
    import tensorstore as ts

    data = pattern(shape, dtype)
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        meta = {
            "shape": list(shape), "chunks": list(shape), "dtype": np.dtype(dtype).str,
            "compressor": compressor, "order": "C", "fill_value": 0,
        }  # fmt: skip
        kv = {"driver": "file", "path": str(tmp)}
        arr = ts.open({"driver": "zarr", "kvstore": kv, "metadata": meta}, create=True).result()
        arr.write(data).result()
        stored = (tmp / ".".join("0" for _ in shape)).read_bytes()
    finally:
        shutil.rmtree(tmp)
    add(name, [{"name": "bytes", "configuration": {"endian": "little"}}, spec], shape, dtype,
        0, stored, data)  # fmt: skip


def tensorstore_cases():
    le = {"name": "bytes", "configuration": {"endian": "little"}}
    ts_v3("ts_gzip_u16", (16, 24), "uint16", [le, {"name": "gzip", "configuration": {"level": 6}}])
    ts_v3("ts_zstd_crc_f32", (10, 12), "float32",
          [le, {"name": "zstd", "configuration": {"level": 3, "checksum": True}},
           {"name": "crc32c"}])  # fmt: skip
    ts_v3("ts_blosc_u16", (16, 16), "uint16",
          [le, {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5,
                                                   "shuffle": "shuffle", "typesize": 2,
                                                   "blocksize": 0}}])  # fmt: skip
    ts_v3("ts_transpose_be_i32", (4, 6, 5), "int32",
          [{"name": "transpose", "configuration": {"order": [2, 0, 1]}},
           {"name": "bytes", "configuration": {"endian": "big"}}])  # fmt: skip
    inner = [le, {"name": "zstd", "configuration": {"level": 1}}]
    for loc in ("start", "end"):
        ts_v3(f"ts_shard_{loc}_u16", (12, 20), "uint16",
              [{"name": "sharding_indexed", "configuration": {
                  "chunk_shape": [4, 4], "codecs": inner, "index_location": loc,
                  "index_codecs": [le, {"name": "crc32c"}]}}],
              fill=3, blank=[np.s_[0:4, 4:8], np.s_[8:12, 0:20]])  # fmt: skip
    ts_v2("ts_v2_zlib_u16", (16, 24), "uint16", {"id": "zlib", "level": 5},
          {"name": "zlib", "configuration": {"level": 5}})  # fmt: skip
    ts_v2("ts_v2_blosc_i16", (16, 16), "int16",
          {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2, "blocksize": 0},
          {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 3, "shuffle": 2,
                                              "blocksize": 0}})  # fmt: skip


def main():
    for f in OUT.glob("*.bin"):
        f.unlink()
    for f in OUT.glob("*.raw"):
        f.unlink()
    v3("bytes_le_u16", (12, 20), "uint16", compressors=None)
    v3("bytes_be_i32", (9, 10), ">i4", serializer=BytesCodec(endian="big"), compressors=None)
    v3("bytes_u8_3d", (4, 5, 6), "uint8", compressors=None)
    v3("bytes_be_c64", (7, 5), ">c8", serializer=BytesCodec(endian="big"), compressors=None)
    v3("bytes_f16", (6, 7), "float16", compressors=None)
    v3("bytes_bool", (10, 10), "bool", compressors=None)
    v3("gzip_u16", (16, 24), "uint16", compressors=GzipCodec(level=5))
    v3("gzip9_f32", (10, 13), "float32", compressors=GzipCodec(level=9))
    v3("zstd_u16", (16, 24), "uint16", compressors=ZstdCodec(level=0))
    v3("zstd_checksum_i64", (8, 9), "int64", compressors=ZstdCodec(level=3, checksum=True))
    v3(
        "blosc_lz4_shuffle_u16",
        (16, 24),
        "uint16",
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    )
    v3(
        "blosc_zstd_bitshuffle_f32",
        (12, 12),
        "float32",
        compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    )
    v3(
        "blosc_blosclz_noshuffle_u8",
        (20, 20),
        "uint8",
        compressors=BloscCodec(cname="blosclz", clevel=9, shuffle="noshuffle"),
    )
    v3(
        "blosc_zlib_f64",
        (6, 11),
        "float64",
        compressors=BloscCodec(cname="zlib", clevel=4, shuffle="shuffle"),
    )
    v3("crc32c_u32", (5, 6), "uint32", compressors=Crc32cCodec())
    v3(
        "transpose_gzip_u16",
        (4, 6, 8),
        "uint16",
        filters=TransposeCodec(order=(2, 0, 1)),
        compressors=GzipCodec(level=1),
    )
    v3(
        "transpose_be_i16",
        (5, 7),
        ">i2",
        filters=TransposeCodec(order=(1, 0)),
        serializer=BytesCodec(endian="big"),
        compressors=None,
    )
    # Sharded: index at the end (default) and at the start, missing inner chunks, a
    # non-power-of-two inner grid (Morton order with uneven bits), nested sharding.
    v3(
        "shard_end_u16",
        (16, 16),
        "uint16",
        chunks=(4, 4),
        fill=7,
        compressors=ZstdCodec(level=1),
        blank=[np.s_[0:4, 4:8], np.s_[8:16, 12:16]],
    )
    v3(
        "shard_start_f32",
        (12, 20),
        "float32",
        fill=float("nan"),
        serializer=ShardingCodec(
            chunk_shape=(4, 4),
            codecs=[BytesCodec(), Crc32cCodec(), ZstdCodec(level=5)],
            index_location="start",
        ),
        compressors=None,
        chunks=None,
        blank=[np.s_[4:8, 0:20]],
    )
    v3(
        "shard_3d_u8",
        (8, 12, 6),
        "uint8",
        chunks=(4, 4, 3),
        compressors=None,
        blank=[np.s_[4:8, 0:4, 0:3]],
    )
    v3(
        "shard_nested_i16",
        (16, 16),
        "int16",
        serializer=ShardingCodec(
            chunk_shape=(8, 8),
            codecs=[ShardingCodec(chunk_shape=(4, 4), codecs=[BytesCodec(), ZstdCodec(level=2)])],
            index_codecs=[BytesCodec(), Crc32cCodec()],
        ),
        compressors=None,
        chunks=None,
        blank=[np.s_[8:16, 0:8], np.s_[0:4, 0:4]],
    )
    v3("shard_contiguous_u16", (8, 8), "uint16", chunks=(4, 8), filters=None, compressors=None)
    v2(
        "v2_zlib_u16",
        (16, 24),
        "uint16",
        numcodecs.Zlib(level=1),
        {"name": "zlib", "configuration": {"level": 1}},
    )
    v2(
        "v2_lz4_i32",
        (10, 12),
        "int32",
        numcodecs.LZ4(acceleration=1),
        {"name": "lz4", "configuration": {"acceleration": 1}},
    )
    v2(
        "v2_blosc_int_shuffle_u16",
        (16, 16),
        "uint16",
        numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1, blocksize=0),
        {
            "name": "blosc",
            "configuration": {"cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
        },
    )
    v2(
        "v2_gzip_u8",
        (20, 20),
        "uint8",
        numcodecs.GZip(level=1),
        {"name": "gzip", "configuration": {"level": 1}},
    )
    v2(
        "v2_zlib9_u16",
        (16, 24),
        "uint16",
        numcodecs.Zlib(level=9),
        {"name": "zlib", "configuration": {"level": 9}},
    )
    v2(
        "v2_zstd_u16",
        (16, 16),
        "uint16",
        numcodecs.Zstd(level=1),
        {"name": "zstd", "configuration": {"level": 1, "checksum": False}},
    )
    tensorstore_cases()
    (OUT / "cases.json").write_text(
        json.dumps(
            {
                "zarr": zarr.__version__,
                "numcodecs": numcodecs.__version__,
                "cases": CASES,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
