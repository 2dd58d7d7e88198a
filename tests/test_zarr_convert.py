"""Precomputed ↔ Zarr conversions (``copy_to``, ``bigarrays cp``), bit-exact both ways, and
``bigarrays info`` / ``serve`` on Zarr arrays and OME-Zarr images."""

from __future__ import annotations

import json
import threading
import urllib.request

import numpy as np
import pytest

from bigarrays import BigArray
from bigarrays._serve import layer_sources, make_server
from bigarrays.cli import run

zarr = pytest.importorskip("zarr")
numcodecs = pytest.importorskip("numcodecs")


def _precomputed(path, shape=(40, 30, 20, 3), dtype="uint16", **kw) -> tuple[BigArray, np.ndarray]:
    truth = np.random.default_rng(0).integers(0, 60000, shape).astype(dtype)
    a = BigArray.create(str(path), shape=shape, dtype=dtype, chunks=(16, 16, 8),
                        resolution=(4, 4, 40), **kw)  # fmt: skip
    a[a.bounds] = truth
    return a, truth


@pytest.mark.parametrize("sharding", [None, "auto"])
def test_precomputed_to_zarr_and_back_bit_exact(tmp_path, sharding):
    src, truth = _precomputed(tmp_path / "pre", sharding=sharding)
    z = src.copy_to(str(tmp_path / "z.zarr"), format="zarr")
    # (x, y, z, c) Fortran is (c, z, y, x) C: the Zarr array holds the transpose.
    assert z.shape == (3, 20, 30, 40)
    theirs = zarr.open_array(str(tmp_path / "z.zarr"), mode="r")
    assert theirs.metadata.dimension_names == ("c", "z", "y", "x")
    assert np.array_equal(theirs[...], truth.transpose(3, 2, 1, 0))
    back = z.copy_to(str(tmp_path / "back"))
    assert back.format == "precomputed" and back.shape == truth.shape
    assert np.array_equal(back[back.bounds], truth)


def test_ome_copy_keeps_resolution_and_one_channel_drops_c(tmp_path):
    src, truth = _precomputed(tmp_path / "pre", shape=(33, 17, 9), dtype="uint8")
    img = src.copy_to(str(tmp_path / "img.zarr"), format="zarr", ome=True)
    assert img.shape == (9, 17, 33)
    assert [(ax["name"], ax["unit"], ax["scale"]) for ax in img.axes] == [
        ("z", "nanometer", 40.0),
        ("y", "nanometer", 4.0),
        ("x", "nanometer", 4.0),
    ]
    assert np.array_equal(img[...], truth.T)
    back = img.copy_to(str(tmp_path / "back"))
    assert back.resolution == (4, 4, 40)
    assert np.array_equal(back[back.bounds], truth)


def test_zarr_python_array_to_precomputed(tmp_path):
    data = np.random.default_rng(1).random((2, 12, 10, 14)).astype("float32")
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(1, 5, 5, 5))
    out = BigArray(str(tmp_path / "in.zarr")).copy_to(str(tmp_path / "pre"))
    assert out.shape == (14, 10, 12, 2)
    assert np.array_equal(out[out.bounds], data.transpose(3, 2, 1, 0))


def test_cli_cp_info_downsample(tmp_path, capsys):
    _, truth = _precomputed(tmp_path / "pre", shape=(32, 32, 16, 2), dtype="uint8")
    img = str(tmp_path / "img.zarr")
    assert run(["cp", str(tmp_path / "pre"), img, "--format", "zarr", "--ome",
                "--no-progress"]) == 0  # fmt: skip
    assert run(["downsample", img, "--factor", "2,2,1", "--mips", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert run(["info", img]) == 0
    out = capsys.readouterr().out
    assert "zarr v3, uint8" in out and "2×16×32×32 (c, z, y, x)" in out
    assert "bytes+gzip 5" in out  # the source's gzip chunks, moved as they are
    assert "z (space, nanometer)" in out and "OME-Zarr 0.5, 3 level(s)" in out
    assert "mip 2        path '2': shape 2×16×8×8, scale 1.0×40.0×16.0×16.0" in out
    assert run(["cp", img, str(tmp_path / "back"), "--no-progress"]) == 0
    back = BigArray(str(tmp_path / "back"))
    assert np.array_equal(back[back.bounds], truth)
    sharded = str(tmp_path / "s.zarr")
    BigArray.create(sharded, format="zarr", zarr_format=3, shape=(64, 64), dtype="int32",
                    chunks=(8, 8), shards=(32, 32))  # fmt: skip
    assert run(["info", sharded]) == 0
    out = capsys.readouterr().out
    assert "8×8 in shards of 32×32" in out and "sharding_indexed(bytes+zstd 0)" in out
    assert "image" not in out
    v2 = str(tmp_path / "v2.zarr")
    BigArray.create(v2, format="zarr", zarr_format=2, shape=(4, 4), dtype="uint8")
    assert run(["info", v2]) == 0
    assert "compressor zstd" in capsys.readouterr().out


@pytest.fixture
def served_zarr(tmp_path):
    root = tmp_path / "root"
    _, truth = _precomputed(tmp_path / "pre", shape=(32, 32, 16), dtype="uint8")
    img = BigArray(str(tmp_path / "pre")).copy_to(str(root / "img.ome.zarr"), format="zarr",
                                                   ome=True)  # fmt: skip
    img.downsample((2, 2, 1))
    v2 = BigArray.create(str(root / "sub" / "v2.zarr"), format="zarr", zarr_format=2,
                         shape=(8, 8), dtype="uint8", chunks=(4, 4))  # fmt: skip
    v2[...] = 5
    server = make_server(root, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", truth, root
    server.shutdown()
    server.server_close()


def test_serve_zarr_for_neuroglancer(served_zarr):
    base, truth, root = served_zarr
    assert layer_sources(root) == [("zarr3", "img.ome.zarr"), ("zarr", "sub/v2.zarr")]
    with urllib.request.urlopen(f"{base}/img.ome.zarr/zarr.json", timeout=10) as r:
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Content-Type"] == "application/json"
        assert json.load(r)["attributes"]["ome"]["multiscales"][0]["datasets"][1]["path"] == "1"
    with urllib.request.urlopen(f"{base}/img.ome.zarr/1/c/0/0/0", timeout=10) as r:
        assert r.status == 200 and r.read()
    with urllib.request.urlopen(f"{base}/sub/v2.zarr/.zarray", timeout=10) as r:
        assert json.load(r)["dimension_separator"] == "."
    with urllib.request.urlopen(f"{base}/sub/v2.zarr/0.0", timeout=10) as r:
        assert r.read()
    pre = urllib.request.Request(f"{base}/img.ome.zarr/zarr.json", method="OPTIONS")
    with urllib.request.urlopen(pre, timeout=10) as r:
        assert r.status == 204 and "GET" in r.headers["Access-Control-Allow-Methods"]
    # Read back over HTTP, every level, as a remote client would.
    remote = BigArray(f"{base}/img.ome.zarr")
    assert np.array_equal(remote[...], truth.T)
    assert BigArray(f"{base}/img.ome.zarr", mip=1).shape == (16, 16, 16)
    assert np.array_equal(BigArray(f"{base}/sub/v2.zarr")[...], np.full((8, 8), 5, "uint8"))


# -- chunks moved as stored bytes ------------------------------------------------------------

# Edge chunks on every axis (40 = 16 + 16 + 8, 30 = 16 + 14, 20 = 8 + 8 + 4).
SHAPE, CHUNKS = (40, 30, 20), (16, 16, 8)


def _gzip_chain(dtype: str) -> list[dict]:
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    return [little if np.dtype(dtype).itemsize > 1 else {"name": "bytes"},
            {"name": "gzip", "configuration": {"level": 5}}]  # fmt: skip


def _zarr_like(path, src: BigArray, zarr_format: int, codecs) -> BigArray:
    """An empty Zarr array of axes (c, z, y, x) on ``src``'s grid, in the (x, y, z, c) view."""
    shape, chunks = [b.stop for b in src.bounds][::-1], list(src.chunks)[::-1]
    if src.num_channels > 1:
        shape, chunks = [src.num_channels, *shape], [src.num_channels, *chunks]
    return BigArray.create(str(path), format="zarr", zarr_format=zarr_format, shape=shape,
                           dtype=src.dtype, chunks=chunks, codecs=codecs)._xyz()  # fmt: skip


def _precomputed_files(root, a: BigArray) -> dict[str, bytes]:
    """Chunk name (x0-x1_y0-y1_z0-z1) -> stored bytes, transport suffixes stripped."""
    key = a.info["scales"][a.mip]["key"]
    return {p.name.removesuffix(".gz"): p.read_bytes() for p in (root / key).iterdir()}


def _zarr_file(root, zarr_format: int, index: tuple[int, ...]) -> bytes:
    name = "c/" + "/".join(map(str, index)) if zarr_format == 3 else ".".join(map(str, index))
    return (root / name).read_bytes()


def _interior_names(src: BigArray) -> list[tuple[str, tuple[int, ...]]]:
    """(Precomputed chunk name, Zarr chunk index) of the chunks inside the bounds."""
    lo, hi = src.voxel_offset, [b.stop for b in src.bounds]
    out = []
    for z in range(lo[2], hi[2] - CHUNKS[2] + 1, CHUNKS[2]):
        for y in range(lo[1], hi[1] - CHUNKS[1] + 1, CHUNKS[1]):
            for x in range(lo[0], hi[0] - CHUNKS[0] + 1, CHUNKS[0]):
                name = f"{x}-{x + CHUNKS[0]}_{y}-{y + CHUNKS[1]}_{z}-{z + CHUNKS[2]}"
                index = (z // CHUNKS[2], y // CHUNKS[1], x // CHUNKS[0])
                out.append((name, (0, *index) if src.num_channels > 1 else index))
    return out


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("channels", [1, 2])
def test_stored_copy_both_ways_bit_exact(tmp_path, zarr_format, compression, channels):
    shape = SHAPE if channels == 1 else (*SHAPE, channels)
    truth = np.random.default_rng(2).integers(0, 60000, shape).astype("uint16")
    src = BigArray.create(str(tmp_path / "pre"), shape=shape, dtype="uint16", chunks=CHUNKS,
                          compression=compression)  # fmt: skip
    src[src.bounds] = truth
    codecs = _gzip_chain("uint16") if compression else [{"name": "bytes"}]
    z = _zarr_like(tmp_path / "z.zarr", src, zarr_format, codecs)
    assert z.stored_form == ("gzip" if compression else "raw")
    assert z.copy_chunks_from(src)  # the stored path, not a fallback
    theirs = zarr.open_array(str(tmp_path / "z.zarr"), mode="r")
    assert np.array_equal(theirs[...], truth.T)
    # Interior chunks are the source's files byte for byte (gzip streams included); the edge
    # ones were re-encoded full-size, as Zarr stores them.
    pre = _precomputed_files(tmp_path / "pre", src)
    for name, index in _interior_names(src):
        assert _zarr_file(tmp_path / "z.zarr", zarr_format, index) == pre[name]
    edge = (0,) * (channels > 1) + (2, 1, 2)
    assert len(_zarr_file(tmp_path / "z.zarr", zarr_format, edge)) > 0
    # And back, into a Precomputed layer of the same form.
    back = BigArray.create(str(tmp_path / "back"), shape=shape, dtype="uint16", chunks=CHUNKS,
                           compression=compression)  # fmt: skip
    assert back.copy_chunks_from(z)
    assert np.array_equal(back[back.bounds], truth)
    assert _precomputed_files(tmp_path / "back", back) == pre


def test_copy_to_zarr_and_back_moves_gzip_streams(tmp_path):
    """copy_to(format="zarr") picks the source's gzip for the Zarr chain, so the default
    round trip never re-encodes an interior chunk; peers read both results."""
    truth = np.random.default_rng(3).integers(0, 255, SHAPE).astype("uint8")
    src = BigArray.create(str(tmp_path / "pre"), shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                          voxel_offset=(16, 0, 8), compression="gzip")  # fmt: skip
    src[src.bounds] = truth
    z = src.copy_to(str(tmp_path / "z.zarr"), format="zarr")
    assert "gzip" in z.encoding
    pre = _precomputed_files(tmp_path / "pre", src)
    # Zarr counts from 0: the chunk at x 16..32 is Zarr's x index 1.
    assert _zarr_file(tmp_path / "z.zarr", 3, (1, 0, 1)) == pre["16-32_0-16_8-16"]
    assert not (tmp_path / "z.zarr" / "c" / "0" / "0" / "0").exists()  # below the offset
    big = np.zeros((28, 30, 56), "uint8")
    big[8:, :, 16:] = truth.T
    assert np.array_equal(zarr.open_array(str(tmp_path / "z.zarr"), mode="r")[...], big)
    ts = pytest.importorskip("tensorstore")
    kvstore = {"driver": "file", "path": str(tmp_path / "z.zarr")}
    t = ts.open({"driver": "zarr3", "kvstore": kvstore}).result()
    assert np.array_equal(t.read().result(), big)
    back = z.copy_to(str(tmp_path / "back"))
    assert np.array_equal(back[16:56, 0:30, 8:28], truth)
    after = _precomputed_files(tmp_path / "back", back)
    assert after["16-32_0-16_8-16"] == pre["16-32_0-16_8-16"]
    cloudvolume = pytest.importorskip("cloudvolume")
    cv = cloudvolume.CloudVolume(f"file://{tmp_path / 'back'}", progress=False)
    assert np.array_equal(cv[16:56, 0:30, 8:28][..., 0], truth)


def test_sparse_source_stays_sparse(tmp_path):
    src = BigArray.create(str(tmp_path / "pre"), shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                          compression="gzip")  # fmt: skip
    src[0:16, 0:16, 8:16] = 7
    src[32:40, 16:30, 16:20] = 9  # an edge chunk
    z = src.copy_to(str(tmp_path / "z.zarr"), format="zarr")
    files = sorted(p.relative_to(tmp_path / "z.zarr").as_posix()
                   for p in (tmp_path / "z.zarr" / "c").rglob("*") if p.is_file())  # fmt: skip
    assert files == ["c/1/0/0", "c/2/1/2"]
    assert np.array_equal(z[...], src[src.bounds].T)
    back = z.copy_to(str(tmp_path / "back"))
    assert sorted(_precomputed_files(tmp_path / "back", back)) == [
        "0-16_0-16_8-16",
        "32-40_16-30_16-20",
    ]


def _v2_array(path, truth: np.ndarray, **kw) -> BigArray:
    z = zarr.create_array(str(path), shape=truth.T.shape, chunks=CHUNKS[::-1], zarr_format=2,
                          dtype=truth.dtype, **kw)  # fmt: skip
    z[...] = truth.T
    return BigArray(str(path))._xyz()


@pytest.mark.parametrize(
    "kind", ["zstd", "transpose", "big-endian", "other-grid", "zlib", "sharded", "offset"]
)
def test_fallbacks_decode_and_stay_exact(tmp_path, kind):
    truth = np.random.default_rng(4).integers(0, 60000, SHAPE).astype("uint16")
    offset = (5, 0, 0) if kind == "offset" else (0, 0, 0)
    pre = BigArray.create(str(tmp_path / "pre"), shape=SHAPE, dtype="uint16", chunks=CHUNKS,
                          compression="gzip", voxel_offset=offset)  # fmt: skip
    pre[pre.bounds] = truth
    gz = numcodecs.GZip(level=5)
    if kind == "zstd":
        z = _zarr_like(tmp_path / "z", pre, 3, None)  # zarr-python's default bytes + zstd
    elif kind == "transpose":
        z = _v2_array(tmp_path / "z", truth, order="F", compressors=gz)
    elif kind == "big-endian":
        z = _v2_array(tmp_path / "z", truth.astype(">u2"), compressors=gz)
    elif kind == "zlib":
        z = _v2_array(tmp_path / "z", truth, compressors=numcodecs.Zlib(level=5))
    elif kind == "sharded":
        z = BigArray.create(str(tmp_path / "z"), format="zarr", shape=SHAPE[::-1],
                            dtype="uint16", chunks=(4, 8, 8), shards=(8, 16, 16),
                            codecs=_gzip_chain("uint16"))._xyz()  # fmt: skip
    elif kind == "other-grid":
        z = BigArray.create(str(tmp_path / "z"), format="zarr", shape=SHAPE[::-1],
                            dtype="uint16", chunks=(4, 8, 8),
                            codecs=_gzip_chain("uint16"))._xyz()  # fmt: skip
    else:  # a Precomputed offset off the Zarr grid
        z = _zarr_like(tmp_path / "z", pre, 3, _gzip_chain("uint16"))
    if kind in ("transpose", "big-endian", "zlib"):
        # The source is the Zarr array (written by zarr-python); copy it into Precomputed.
        back = BigArray.create(str(tmp_path / "back"), shape=SHAPE, dtype="uint16",
                               chunks=CHUNKS, compression="gzip")  # fmt: skip
        assert not back.copy_chunks_from(z)
        out = z.copy_to(str(tmp_path / "back2"))
        assert np.array_equal(out[out.bounds], truth)
        return
    assert not z.copy_chunks_from(pre)
    lo = [b.start for b in pre.bounds]
    out = pre.copy_to(str(tmp_path / "z"))  # into the existing array, by decoding
    got = out._xyz()[lo[0] : lo[0] + 40, 0:30, 0:20]
    assert np.array_equal(got, truth)
    back = out.copy_to(str(tmp_path / "back"))
    assert np.array_equal(back[lo[0] : lo[0] + 40, 0:30, 0:20], truth)


def test_corrupt_source_chunk_fails_the_stored_copy(tmp_path):
    from bigarrays.errors import ChunkDecodeError

    src = BigArray.create(str(tmp_path / "pre"), shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                          compression="gzip")  # fmt: skip
    src[src.bounds] = 3
    name = tmp_path / "pre" / src.info["scales"][0]["key"] / "16-32_0-16_0-8.gz"
    name.write_bytes(name.read_bytes()[:-9])
    z = _zarr_like(tmp_path / "z.zarr", src, 3, _gzip_chain("uint8"))
    with pytest.raises(ChunkDecodeError, match="16-32_0-16_0-8"):
        z.copy_chunks_from(src)


def test_stored_copy_between_s3_and_local(tmp_path, moto):
    truth = np.random.default_rng(5).integers(0, 255, SHAPE).astype("uint8")
    src = BigArray.create(str(tmp_path / "pre"), shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                          compression="gzip")  # fmt: skip
    src[src.bounds] = truth
    bucket = moto.bucket()
    z = src.copy_to(f"s3://{bucket}/z.zarr", format="zarr", storage_options=moto.options())
    stored = moto.client().get_object(Bucket=bucket, Key="z.zarr/c/1/0/1")["Body"].read()
    assert stored == _precomputed_files(tmp_path / "pre", src)["16-32_0-16_8-16"]
    back = z.copy_to(f"s3://{bucket}/back", storage_options=moto.options())
    assert np.array_equal(back[back.bounds], truth)
    obj = moto.client().get_object(Bucket=bucket, Key="back/1_1_1/16-32_0-16_8-16")
    assert obj.get("ContentEncoding") == "gzip" and obj["Body"].read() == stored


@pytest.mark.parametrize(
    "chunks, stored",
    [((1, 2, 8, 16, 16), True), ((1, 1, 8, 16, 16), False), ((2, 2, 8, 16, 16), False)],
    ids=["whole-channels", "split-channels", "padded-t"],
)
def test_dropped_axes_and_channels_of_a_5d_array(tmp_path, chunks, stored):
    """A (t, c, z, y, x) array of one timepoint: its chunks are Precomputed chunks only when
    each holds every channel and one timepoint."""
    data = np.random.default_rng(6).integers(0, 60000, (1, 2, 20, 30, 40)).astype("uint16")
    c = zarr.codecs
    z = zarr.create_array(str(tmp_path / "z.zarr"), shape=data.shape, chunks=chunks,
                          dtype="uint16", serializer=c.BytesCodec(),
                          compressors=[c.GzipCodec(level=5)])  # fmt: skip
    z[...] = data
    src = BigArray(str(tmp_path / "z.zarr"))._xyz()
    truth = data[0].transpose(3, 2, 1, 0)  # (x, y, z, c)
    dst = BigArray.create(str(tmp_path / "pre"), shape=truth.shape, dtype="uint16",
                          chunks=CHUNKS, compression="gzip")  # fmt: skip
    assert dst.copy_chunks_from(src) is stored
    out = src.copy_to(str(tmp_path / "back"))
    assert np.array_equal(out[out.bounds], truth)
