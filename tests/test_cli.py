"""The ``bigarrays`` command line: every verb against real data, real servers and real peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pyspng
import pytest
import tensorstore as ts
from cloudvolume import CloudVolume

from bigarrays import BigArray
from bigarrays._serve import make_server
from bigarrays._slice import label_colours
from bigarrays.cli import run


def make_layer(path, shape=(40, 30, 20), dtype="uint8", **kw) -> tuple[BigArray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = BigArray.create(path, shape=shape, dtype=dtype, chunks=(16, 16, 8), **kw)
    truth = rng.integers(0, 200, shape).astype(dtype)
    a[a.bounds] = truth
    return a, truth


def test_info_human_and_json(tmp_path, capsys):
    a, _ = make_layer(tmp_path / "l", voxel_offset=(1, 2, 3))
    assert run(["info", str(tmp_path / "l")]) == 0
    out = capsys.readouterr().out
    assert "uint8" in out and "40×30×20" in out and "1×2×3 .. 41×32×23" in out
    assert run(["info", "--json", str(tmp_path / "l")]) == 0
    assert json.loads(capsys.readouterr().out) == a.info


def test_exit_codes_and_messages(tmp_path, capsys):
    url = str(tmp_path / "new")
    assert run(["create", url, "--shape", "8,8,8", "--dtype", "uint16"]) == 0
    assert BigArray(url).dtype == np.uint16
    assert run(["create", url, "--shape", "8,8,8", "--dtype", "uint16"]) == 4
    err = capsys.readouterr().err
    assert "already" in err.lower() and "--overwrite" in err and "overwrite=True" not in err
    assert run(["info", str(tmp_path / "missing")]) == 3
    assert "bigarrays: error:" in capsys.readouterr().err
    assert run(["create", url, "--shape", "8,8", "--dtype", "uint8"]) == 2
    assert run(["create", url, "--shape", "8,8,8", "--dtype", "uint16", "--encoding", "jpeg",
                "--overwrite"]) == 2  # fmt: skip
    assert run(["slice", url, "--z", "99", "-o", str(tmp_path / "x.png")]) == 2
    for verb in ("info", "create", "cp", "downsample", "serve", "view", "slice"):
        assert run([verb, "--help"]) == 0
    assert run(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "dst_scheme, encoding, compression",
    [("file", None, "gzip"), ("memory", "raw", "zstd"), ("s3", None, "none"),
     ("file", "compressed_segmentation", "auto"), ("file", "jpeg", "auto")],
)  # fmt: skip
def test_cp_between_backends_and_encodings(
    tmp_path, request, monkeypatch, dst_scheme, encoding, compression
):
    dtype = "uint32" if encoding == "compressed_segmentation" else "uint8"
    src, truth = make_layer(tmp_path / "src", dtype=dtype, voxel_offset=(-3, 5, 0))
    options = {}
    if dst_scheme == "s3":  # configured the way CLI users do it: the environment
        moto = request.getfixturevalue("moto")
        dst = f"s3://{moto.bucket()}/cp"
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        options = moto.options()
    elif dst_scheme == "memory":
        dst = f"memory://cp-{os.getpid()}-{encoding}"
    else:
        dst = str(tmp_path / "dst")
    args = ["cp", str(tmp_path / "src"), dst, "--compression", compression, "--jobs", "2"]
    if encoding:
        args += ["--encoding", encoding]
    assert run(args) == 0
    out = BigArray(dst, storage_options=options)
    assert out.voxel_offset == src.voxel_offset and out.chunks == src.chunks
    assert out.encoding == (encoding or "raw")
    got = out[out.bounds]
    if encoding == "jpeg":  # lossy: close, not equal
        assert np.abs(got.astype(int) - truth.astype(int)).mean() < 8
    else:
        assert np.array_equal(got, truth)


def test_cp_bbox_and_resume_skips_finished_blocks(tmp_path):
    src, truth = make_layer(tmp_path / "src")
    dst = tmp_path / "dst"
    # A first, partial copy: z 0..8 only (one block row), as if interrupted.
    assert run(["cp", str(tmp_path / "src"), str(dst), "--bbox", "0,0,0,40,30,8"]) == 0
    first = {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file() and p.name != "info"}
    assert first
    victim = sorted(first)[0]  # a lost chunk must be redone
    victim.unlink()
    assert run(["cp", str(tmp_path / "src"), str(dst), "--resume"]) == 0
    assert np.array_equal(BigArray(dst)[:, :, :], truth)
    # Chunks that were there were not rewritten; the lost one was.
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == first[p] for p in first if p != victim)


def test_downsample_verb(tmp_path, capsys):
    make_layer(tmp_path / "l", resolution=(4, 4, 40))
    assert run(["downsample", str(tmp_path / "l"), "--mips", "2", "--no-progress"]) == 0
    assert "mip 2: 10×8×20 at 16.0×16.0×40.0 nm" in capsys.readouterr().out
    assert BigArray(tmp_path / "l").num_mips == 3


def test_slice_png_pixels_equal_the_plane(tmp_path):
    _, truth = make_layer(tmp_path / "img", voxel_offset=(0, 0, 10))
    png = tmp_path / "img.png"
    assert run(["slice", str(tmp_path / "img"), "--z", "13", "-o", str(png)]) == 0
    assert np.array_equal(pyspng.load(png.read_bytes()), truth[:, :, 3].T)

    seg, labels = make_layer(tmp_path / "seg", dtype="uint64", layer_type="segmentation")
    assert run(["slice", str(tmp_path / "seg"), "--z", "0", "-o", str(png)]) == 0
    rgb = pyspng.load(png.read_bytes())
    assert np.array_equal(rgb, label_colours(labels[:, :, 0].T))
    assert len({tuple(c) for c in rgb.reshape(-1, 3)}) > 100  # labels get distinct colours


@pytest.fixture
def served(tmp_path):
    """A gzip layer and a raw copy under one directory, served on a free loopback port."""
    _, truth = make_layer(tmp_path / "root" / "gz", compression="gzip")
    make_layer(tmp_path / "root" / "raw", compression=None)
    server = make_server(tmp_path / "root", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", truth, tmp_path / "root"
    server.shutdown()
    server.server_close()


def test_serve_to_real_clients(served):
    base, truth, _ = served
    assert np.array_equal(BigArray(f"{base}/gz")[:, :, :], truth)
    cv = CloudVolume(f"precomputed://{base}/gz", fill_missing=False)
    assert np.array_equal(cv[cv.bounds][..., 0], truth)
    spec = {"driver": "neuroglancer_precomputed", "kvstore": f"{base}/raw/"}
    assert np.array_equal(ts.open(spec).result().read().result()[..., 0], truth)


def test_serve_gzip_ranges_cors_and_confinement(served):
    base, _, root = served
    chunk = next(p for p in (root / "gz").rglob("*.gz"))
    key = chunk.relative_to(root).as_posix()[: -len(".gz")]
    req = urllib.request.Request(f"{base}/{key}", headers={"Range": "bytes=2-9"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 206 and r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.read() == chunk.read_bytes()[2:10]
    req = urllib.request.Request(f"{base}/{key}", headers={"Range": "bytes=-4"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.read() == chunk.read_bytes()[-4:]
    req = urllib.request.Request(f"{base}/gz/info", method="OPTIONS")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert "Range" in r.headers["Access-Control-Allow-Headers"]
    secret = root.parent / "secret"
    secret.write_text("no")
    for path in ("/../secret", "/%2e%2e/secret"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}{path}", timeout=10)
        assert e.value.code == 404


def test_serve_verb_prints_the_neuroglancer_source(tmp_path):
    make_layer(tmp_path / "root" / "em")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigarrays", "serve", str(tmp_path / "root"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        source = lines[1].split("neuroglancer source: ", 1)[1].strip()
        assert source.startswith("precomputed://http://127.0.0.1:") and source.endswith("/em")
        url = source[len("precomputed://") :]
        assert BigArray(url).shape == (40, 30, 20)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_on_a_busy_port_names_the_port(tmp_path, capsys):
    (tmp_path / "root").mkdir()
    busy = make_server(tmp_path / "root", 0)
    try:
        port = busy.server_address[1]
        assert run(["serve", str(tmp_path / "root"), "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"127.0.0.1:{port}" in err and "--port 0" in err, err
    finally:
        busy.server_close()


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "bigarrays"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "downsample" in out.stdout


def test_cp_precomputed_to_h5s_and_back(tmp_path):
    import h5py

    _, truth = make_layer(tmp_path / "src", voxel_offset=(4, 0, 2))
    h5s = tmp_path / "h5s"
    args = ["cp", str(tmp_path / "src"), str(h5s), "--format", "h5s", "--chunks", "32,32,16"]
    assert run(args) == 0
    assert BigArray(h5s).format == "h5s"
    block = sorted(h5s.glob("*.h5"))[0]
    with h5py.File(block) as f:  # BigArrays.jl's axes: h5py sees (z, y, x)
        assert f["img"].shape == (16, 32, 32)
    assert run(["cp", str(h5s), str(tmp_path / "back"), "--encoding", "raw"]) == 0
    back = BigArray(tmp_path / "back")
    assert back.voxel_offset == (4, 0, 2)
    np.testing.assert_array_equal(back[back.bounds], truth)
    assert run(["cp", str(h5s), str(tmp_path / "x"), "--format", "h5s", "--sharding", "auto"]) == 2


def test_cp_to_sharded_and_back(tmp_path):
    _, truth = make_layer(tmp_path / "src", voxel_offset=(0, 8, 0))
    assert run(["cp", str(tmp_path / "src"), str(tmp_path / "sh"), "--sharding", "auto"]) == 0
    sharded = BigArray(tmp_path / "sh")
    assert sharded.info["scales"][0]["sharding"]["@type"] == "neuroglancer_uint64_sharded_v1"
    spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{tmp_path / 'sh'}/"}
    got = ts.open(spec).result()[..., 0].read().result()  # TensorStore reads what cp wrote
    np.testing.assert_array_equal(got, truth)
    assert run(["cp", str(tmp_path / "sh"), str(tmp_path / "flat")]) == 0
    assert "sharding" not in BigArray(tmp_path / "flat").info["scales"][0]
    np.testing.assert_array_equal(BigArray(tmp_path / "flat")[:, :, :], truth)


def _every_format(tmp_path) -> dict[str, tuple[str, np.ndarray]]:
    """The same volume as Precomputed, H5s and a single HDF5 file, by URL."""
    import h5py

    _, truth = make_layer(tmp_path / "pre")
    h5s = BigArray.create(tmp_path / "h5s", shape=truth.shape, dtype="uint8", chunks=(16, 16, 8),
                          format="h5s")  # fmt: skip
    h5s[h5s.bounds] = truth
    with h5py.File(tmp_path / "vol.h5", "w") as f:  # h5py's axes are reversed (z, y, x)
        f.create_dataset("img", data=np.ascontiguousarray(truth.T), chunks=(8, 16, 16))
    return {
        "precomputed": (str(tmp_path / "pre"), truth),
        "h5s": (str(tmp_path / "h5s"), truth),
        "hdf5": (str(tmp_path / "vol.h5"), truth),
    }


@pytest.mark.parametrize("fmt", ["precomputed", "h5s", "hdf5"])
def test_info_slice_and_cp_on_every_format(tmp_path, capsys, fmt):
    url, truth = _every_format(tmp_path)[fmt]
    assert run(["info", url]) == 0
    out = capsys.readouterr().out
    assert f"format       {fmt}" in out and "40×30×20" in out and "0×0×0 .. 40×30×20" in out
    assert run(["info", "--json", url]) == 0
    assert json.loads(capsys.readouterr().out) == BigArray(url).info
    png = tmp_path / "plane.png"
    assert run(["slice", url, "--z", "5", "-o", str(png)]) == 0
    assert np.array_equal(pyspng.load(png.read_bytes()), truth[:, :, 5].T)
    assert run(["cp", url, str(tmp_path / "copy"), "--no-progress"]) == 0
    np.testing.assert_array_equal(BigArray(tmp_path / "copy")[:, :, :], truth)


@pytest.mark.parametrize("fmt", ["h5s", "hdf5"])
def test_downsample_refuses_formats_without_scales(tmp_path, capsys, fmt):
    url, _ = _every_format(tmp_path)[fmt]
    assert run(["downsample", url, "--mips", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "adds scales to precomputed layers" in err and "copy it to a precomputed layer" in err
