"""Zarr v2 and v3 arrays against the real peers: zarr-python 3 and TensorStore write, we read
bit-exactly, and the reverse; sharded arrays, fill values, edge chunks, 1-D to 5-D, every
dtype; errors for what the metadata cannot mean."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import bigarrays
from bigarrays import BigArray
from bigarrays.errors import InvalidArgumentError, OutOfBoundsError

zarr = pytest.importorskip("zarr")
codecs_mod = pytest.importorskip("zarr.codecs")
numcodecs = pytest.importorskip("numcodecs")

DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
          "float16", "float32", "float64", "complex64", "complex128"]  # fmt: skip


def _values(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    """Bit-exact equality (NaNs included)."""
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_python_writes_every_dtype_we_read_it(tmp_path, dtype, zarr_format):
    path = tmp_path / "a.zarr"
    data = _values((13, 7, 5), dtype)
    z = zarr.create_array(str(path), shape=data.shape, chunks=(4, 4, 4), dtype=dtype,
                          zarr_format=zarr_format)  # fmt: skip
    z[...] = data
    a = BigArray(str(path))
    assert a.format == "zarr"
    assert a.shape == data.shape and a.dtype == np.dtype(dtype)
    _same(a[...], data)
    _same(a[2:11, 1:6, 3], data[2:11, 1:6, 3])
    _same(a[-3:, ::2, 1:4], data[-3:, ::2, 1:4])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_we_write_every_dtype_zarr_python_reads_it(tmp_path, dtype, zarr_format):
    path = tmp_path / "b.zarr"
    data = _values((9, 10, 3), dtype, seed=1)
    a = BigArray.create(str(path), format="zarr", zarr_format=zarr_format, shape=data.shape,
                        dtype=dtype, chunks=(4, 4, 2))  # fmt: skip
    a[...] = data
    a[1:3, 2:9, 1] = data[1:3, 2:9, 1]  # an unaligned rewrite: read-modify-write
    _same(zarr.open_array(str(path), mode="r")[...], data)


def _v3_chains() -> dict[str, tuple[list, object, list]]:
    """Codec chains as zarr-python takes them: (filters, serializer, compressors)."""
    c = codecs_mod
    little, big = c.BytesCodec(), c.BytesCodec(endian="big")
    return {
        "raw": ([], little, []),
        "gzip": ([], little, [c.GzipCodec(level=5)]),
        "zstd": ([], little, [c.ZstdCodec(level=3, checksum=True)]),
        "blosc": ([], little, [c.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]),
        "blosc-bit": ([], little, [c.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")]),
        "crc32c": ([], little, [c.Crc32cCodec()]),
        "big-endian": ([], big, [c.GzipCodec()]),
        "transpose": ([c.TransposeCodec(order=(2, 0, 1))], little, [c.ZstdCodec()]),
    }


@pytest.mark.parametrize("name", list(_v3_chains()))
def test_v3_codecs_both_ways(tmp_path, name):
    filters, serializer, compressors = _v3_chains()[name]
    data = _values((20, 17, 6), "uint16", seed=2)
    theirs = tmp_path / "theirs.zarr"
    z = zarr.create_array(
        str(theirs),
        shape=data.shape,
        chunks=(8, 8, 4),
        dtype="uint16",
        filters=filters,
        serializer=serializer,
        compressors=compressors,
    )
    z[...] = data
    _same(BigArray(str(theirs))[...], data)
    ours = tmp_path / "ours.zarr"
    spec = json.loads((theirs / "zarr.json").read_text())["codecs"]
    a = BigArray.create(
        str(ours), format="zarr", shape=data.shape, dtype="uint16", chunks=(8, 8, 4), codecs=spec
    )
    a[...] = data
    _same(zarr.open_array(str(ours), mode="r")[...], data)
    assert json.loads((ours / "zarr.json").read_text())["codecs"] == spec


V2_COMPRESSORS = {
    "none": None,
    "zlib": numcodecs.Zlib(level=4),
    "gzip": numcodecs.GZip(level=6),
    "blosc": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
    "zstd": numcodecs.Zstd(level=2),
    "lz4": numcodecs.LZ4(acceleration=1),
}


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("name", list(V2_COMPRESSORS))
def test_v2_compressors_and_orders_we_read(tmp_path, name, order):
    path = tmp_path / "v2.zarr"
    data = _values((11, 9, 5), "int32", seed=3)
    z = zarr.create_array(str(path), shape=data.shape, chunks=(4, 4, 4), dtype=">i4",
                          zarr_format=2, order=order,
                          compressors=V2_COMPRESSORS[name])  # fmt: skip
    z[...] = data
    a = BigArray(str(path))
    assert a.dtype == np.dtype("int32")
    _same(a[...], data.astype("int32"))
    # And back: our write of the same array, read by zarr-python.
    a[0:5, 0:5, 0:5] = data[0:5, 0:5, 0:5][::-1]
    expect = data.astype("int32").copy()
    expect[0:5, 0:5, 0:5] = expect[0:5, 0:5, 0:5][::-1].copy()
    _same(np.asarray(zarr.open_array(str(path), mode="r")[...]).astype("int32"), expect)


@pytest.mark.parametrize("fill", [7, float("nan"), float("-inf")])
def test_missing_chunks_read_as_the_fill_value(tmp_path, fill):
    path = tmp_path / "fill.zarr"
    z = zarr.create_array(str(path), shape=(10, 10), chunks=(4, 4), dtype="float32",
                          fill_value=fill)  # fmt: skip
    z[0:4, 0:4] = 1.5
    a = BigArray(str(path))
    want = np.asarray(z[...])
    _same(a[...], want)
    assert np.isnan(a.fill_value) if np.isnan(fill) else a.fill_value == fill
    # Past the end: the fill value too (this project's contract), never an error.
    out = a[8:14, 0:2]
    _same(out[:2], want[8:10, 0:2])
    _same(out[2:], np.full((4, 2), fill, "float32"))


def test_codecs_without_configuration_are_written_with_their_defaults(tmp_path):
    path = tmp_path / "defaults.zarr"
    a = BigArray.create(
        str(path), format="zarr", shape=(6, 6), dtype="uint16", chunks=(4, 4),
        codecs=[{"name": "bytes"}, {"name": "gzip"}],
    )  # fmt: skip
    a[...] = 5
    codecs = json.loads((path / "zarr.json").read_text())["codecs"]
    assert codecs[0]["configuration"]["endian"] == "little"
    assert "level" in codecs[1]["configuration"]
    _same(zarr.open_array(str(path), mode="r")[...], np.full((6, 6), 5, "uint16"))


def test_chunks_all_fill_are_not_stored(tmp_path):
    path = tmp_path / "sparse.zarr"
    a = BigArray.create(str(path), format="zarr", shape=(8, 8), dtype="uint8", chunks=(4, 4),
                        fill_value=3)  # fmt: skip
    a[...] = 3
    assert not (path / "c").exists()
    a[0, 0] = 1
    assert sorted(p.name for p in (path / "c").rglob("*") if p.is_file()) == ["0"]
    # Back to all-fill by a write covering the chunk in part: kept, as fill values, since a
    # delete cannot be conditional and local puts are (another writer's voxels are safe).
    a[0, 0] = 3
    assert sorted(p.name for p in (path / "c").rglob("*") if p.is_file()) == ["0"]
    _same(zarr.open_array(str(path), mode="r")[...], np.full((8, 8), 3, "uint8"))
    a[0:4, 0:4] = 3  # covered whole: removed, as zarr-python's write_empty_chunks=False
    assert not [p for p in (path / "c").rglob("*") if p.is_file()]
    _same(zarr.open_array(str(path), mode="r")[...], np.full((8, 8), 3, "uint8"))


@pytest.mark.parametrize("index_location", ["end", "start"])
def test_sharded_arrays_both_ways(tmp_path, index_location):
    data = _values((40, 33, 8), "uint16", seed=4)
    theirs = tmp_path / "theirs.zarr"
    z = zarr.create_array(str(theirs), shape=data.shape, shards=(16, 16, 8), chunks=(8, 8, 4),
                          dtype="uint16", compressors=[codecs_mod.ZstdCodec(level=1)])  # fmt: skip
    z[...] = data
    z[16:24, 0:8, 0:4] = 0  # one inner chunk all fill: missing from its shard's index
    expect = np.asarray(z[...])
    a = BigArray(str(theirs))
    assert a.chunks == (16, 16, 8)
    _same(a[...], expect)
    _same(a[3:5, 30:33, 7], expect[3:5, 30:33, 7])  # a few inner chunks: ranged reads
    ours = tmp_path / "ours.zarr"
    b = BigArray.create(str(ours), format="zarr", shape=data.shape, dtype="uint16",
                        chunks=(8, 8, 4), shards=(16, 16, 8))  # fmt: skip
    meta = json.loads((ours / "zarr.json").read_text())
    if index_location == "start":
        meta["codecs"][0]["configuration"]["index_location"] = "start"
        (ours / "zarr.json").write_text(json.dumps(meta))
        b = BigArray(str(ours))
    b[...] = data
    # Partial shard writes merge with what the shard holds.
    b[5:20, 5:20, 2:5] = data[5:20, 5:20, 2:5] // 2
    want = data.copy()
    want[5:20, 5:20, 2:5] //= 2
    _same(zarr.open_array(str(ours), mode="r")[...], want)
    _same(b[...], want)


@pytest.mark.parametrize("ndim", [0, 1, 2, 4, 5])
def test_any_rank(tmp_path, ndim):
    shape = (5, 4, 3, 6, 7)[:ndim]
    data = _values(shape, "int16", seed=ndim)
    path = tmp_path / "n.zarr"
    z = zarr.create_array(str(path), shape=shape, chunks=tuple(max(1, n // 2) for n in shape),
                          dtype="int16")  # fmt: skip
    z[...] = data
    a = BigArray(str(path))
    assert a.shape == shape and a.ndim == ndim
    _same(a[...], data)
    a[...] = data + 1
    _same(np.asarray(zarr.open_array(str(path), mode="r")[...]), data + 1)


def test_tensorstore_zarr_and_zarr3_both_ways(tmp_path):
    ts = pytest.importorskip("tensorstore")
    data = _values((30, 20, 10), "float32", seed=5)
    for driver in ("zarr", "zarr3"):
        path = str(tmp_path / f"{driver}.zarr")
        t = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": path}},
                    create=True, dtype=ts.float32, shape=data.shape,
                    chunk_layout=ts.ChunkLayout(read_chunk_shape=[8, 8, 8])).result()  # fmt: skip
        t[...].write(data).result()
        _same(BigArray(path)[...], data)
        ours = str(tmp_path / f"ours-{driver}.zarr")
        a = BigArray.create(ours, format="zarr", zarr_format=2 if driver == "zarr" else 3,
                            shape=data.shape, dtype="float32", chunks=(8, 8, 8))  # fmt: skip
        a[...] = data
        back = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": ours}}).result()
        _same(back.read().result(), data)


def test_ome_zarr_levels_and_axes(tmp_path):
    ome_writer = pytest.importorskip("ome_zarr.writer")
    from ome_zarr.io import parse_url

    data = _values((1, 2, 16, 32, 32), "uint8", seed=6)
    path = tmp_path / "img.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    chunks = {"chunks": (1, 1, 8, 16, 16)}
    ome_writer.write_image(data, group=root, axes="tczyx", storage_options=chunks)
    del parse_url
    a = BigArray(str(path))
    assert a.shape == data.shape
    assert [ax["name"] for ax in a.axes] == list("tczyx")
    assert a.num_mips >= 2
    _same(a[...], data)
    level1 = BigArray(str(path), mip=1)
    group = zarr.open_group(str(path), mode="r")
    level1_path = group.attrs["multiscales"][0]["datasets"][1]["path"]
    want = np.asarray(group[level1_path][...])
    _same(level1[...], want)
    assert level1.axes[-1]["scale"] == 2 * a.axes[-1]["scale"]
    # The (x, y, z, c) view drops t (one timepoint): Precomputed copies work on it.
    assert a.num_channels == 2 and a.resolution[0] == a.axes[-1]["scale"]


def test_memory_and_mapping_stores(tmp_path):
    data = _values((6, 6), "uint32", seed=7)
    a = BigArray.create("memory://zarr-test", format="zarr", shape=(6, 6), dtype="uint32",
                        chunks=(4, 4))  # fmt: skip
    a[...] = data
    _same(BigArray("memory://zarr-test")[...], data)
    mapping: dict[str, bytes] = {}
    b = BigArray.create("img", store=mapping, format="zarr", zarr_format=2, shape=(6, 6),
                        dtype="uint32", chunks=(4, 4))  # fmt: skip
    b[...] = data
    assert "img/.zarray" in mapping and "img/0.0" in mapping
    _same(BigArray("img", store=mapping)[...], data)
    # The mapping holds exactly what zarr-python reads from a directory.
    for key, value in mapping.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(value)
    _same(zarr.open_array(str(tmp_path / "img"), mode="r")[...], data)


def test_errors_name_what_is_wrong(tmp_path):
    path = tmp_path / "bad.zarr"
    path.mkdir()
    meta = {"zarr_format": 3, "node_type": "array", "shape": [10], "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
            "codecs": [{"name": "bytes"}, {"name": "zfp"}]}  # fmt: skip
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidArgumentError, match="zfp"):
        BigArray(str(path))
    meta["codecs"] = [{"name": "bytes"}]
    meta["data_type"] = "string"
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidArgumentError, match="string"):
        BigArray(str(path))
    meta["data_type"] = "uint8"
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [-4]
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(bigarrays.errors.BigArrayError):
        BigArray(str(path))
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [4]
    (path / "zarr.json").write_text(json.dumps(meta))
    a = BigArray(str(path))
    with pytest.raises(OutOfBoundsError):
        a[8:12] = 1
    (path / "c").mkdir()
    (path / "c" / "0").write_bytes(b"\x01\x02")  # 2 bytes where 4 belong
    with pytest.raises(bigarrays.errors.ChunkDecodeError, match="c/0"):
        a[0:4]


@pytest.mark.parametrize("shape, chunks", [((10, 20), (4, 8)), ((3, 10, 20, 30), (1, 4, 8, 16)),
                                           ((10, 20, 30), (4, 8, 16)), ((7,), (3,))])  # fmt: skip
def test_stored_chunks_in_the_arrays_own_axes(tmp_path, shape, chunks):
    path = tmp_path / "s.zarr"
    z = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="uint8", fill_value=0)
    z[...] = 1
    z[(slice(0, chunks[0]),) + (slice(None),) * (len(shape) - 1)] = 0  # first row: all fill
    a = BigArray(str(path))
    units = a.stored_chunks()
    grid = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    expect = sorted(
        (lo, tuple(min(o + c, n) for o, c, n in zip(lo, chunks, shape, strict=True)))
        for lo in itertools.product(*grid)
        if lo[0] > 0
    )
    assert sorted((lo, hi) for lo, hi, _ in units) == expect
    assert all(n > 0 for _, _, n in units)
    # A box: the chunks touching it, whole (clipped to the array only).
    box = tuple(slice(c, c + 1) for c in chunks)
    inside = a.stored_chunks(box)
    assert [(lo, hi) for lo, hi, _ in inside] == [
        (chunks, tuple(min(2 * c, n) for c, n in zip(chunks, shape, strict=True)))
    ]
