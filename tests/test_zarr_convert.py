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
    assert "bytes+zstd 0" in out
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
