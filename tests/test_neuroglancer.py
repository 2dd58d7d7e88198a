"""Neuroglancer links: the state in the link loaded by neuroglancer's own Python package
(``neuroglancer.parse_url``), for bucket, HTTP and served local layers, and ``bigarrays
view``."""

from __future__ import annotations

import json
import posixpath
import select
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from conftest import FakeGcs, Moto

from bigarrays import BigArray, InvalidArgumentError
from bigarrays.cli import run

neuroglancer = pytest.importorskip("neuroglancer")

VIEWER = "https://neuroglancer-demo.appspot.com"


def make(url: str, **options) -> BigArray:
    a = BigArray.create(url, shape=(64, 48, 20), chunks=(32, 16, 10), voxel_offset=(100, -8, 3),
                        resolution=(4, 6, 40), **options)  # fmt: skip
    a[a.bounds] = 1
    return a


def parse(link: str):
    assert link.startswith(VIEWER + "/#!")
    return neuroglancer.parse_url(link)


def test_a_local_layer_needs_serve_and_its_state_loads(tmp_path):
    a = make(str(tmp_path / "em"), dtype="uint8")
    with pytest.raises(InvalidArgumentError, match="bigarrays serve"):
        a.neuroglancer_url()
    state = parse(a.neuroglancer_url(serve="http://127.0.0.1:8000/em"))
    assert list(state.dimensions.names) == ["x", "y", "z"]
    assert state.dimensions.scales.tolist() == pytest.approx([4e-9, 6e-9, 40e-9])
    assert list(state.dimensions.units) == ["m", "m", "m"]
    # The centre, in voxels: voxel_offset + shape / 2.
    assert state.position.tolist() == [100 + 32, -8 + 24, 3 + 10]
    (layer,) = state.layers
    assert layer.name == "em" and layer.type == "image"
    assert layer.source[0].url == "precomputed://http://127.0.0.1:8000/em"


def test_segmentation_by_layer_type_and_by_dtype(tmp_path):
    seg = make(str(tmp_path / "seg"), dtype="uint8", layer_type="segmentation")
    assert parse(seg.neuroglancer_url(serve="http://h:1/seg")).layers[0].type == "segmentation"
    ids = BigArray.create(str(tmp_path / "ids.zarr"), format="zarr", shape=(8, 8, 8),
                          dtype="uint64")  # fmt: skip
    assert parse(ids.neuroglancer_url(serve="http://h:1/ids.zarr")).layers[0].type == (
        "segmentation"
    )


def test_buckets_keep_their_scheme(moto: Moto, fake_gcs: FakeGcs, tmp_path):
    s3 = make(f"s3://{moto.bucket()}/layers/em", dtype="uint8",
              storage_options=moto.options())  # fmt: skip
    state = parse(s3.neuroglancer_url())
    assert state.layers[0].source[0].url == f"precomputed://{s3.url}"
    assert s3.url.startswith("s3://")
    # fake-gcs-server takes uploads through the JSON API only: the layer's info goes up so.
    local = make(str(tmp_path / "em"), dtype="uint32", layer_type="segmentation")
    bucket = fake_gcs.bucket()
    fake_gcs.upload(bucket, "em/info", json.dumps(local.info).encode())
    gcs = BigArray(f"gs://{bucket}/em", storage_options=fake_gcs.options())
    state = parse(gcs.neuroglancer_url())
    assert state.layers[0].source[0].url == f"precomputed://{gcs.url}"
    assert gcs.url.startswith("gs://") and state.layers[0].type == "segmentation"


def test_zarr_versions_and_ome_images(tmp_path, http_server):
    v2 = BigArray.create(str(http_server.root / "v2.zarr"), format="zarr", zarr_format=2,
                         shape=(8, 16, 16), dtype="uint8")  # fmt: skip
    v3 = BigArray.create(str(http_server.root / "v3.zarr"), format="zarr", shape=(8, 16, 16),
                         dtype="uint8")  # fmt: skip
    for version, array in (("2", v2), ("3", v3)):
        served = f"{http_server.url}/{posixpath.basename(array.url)}"
        source = parse(BigArray(served).neuroglancer_url()).layers[0].source[0].url
        assert source == f"zarr{version}://{served}"
    img = BigArray.create(str(http_server.root / "img.ome.zarr"), format="zarr",
                          shape=(2, 8, 32, 32), dtype="uint16", chunks=(1, 4, 16, 16), axes=[
                              {"name": "c", "type": "channel"},
                              {"name": "z", "type": "space", "unit": "micrometer"},
                              {"name": "y", "type": "space", "unit": "micrometer"},
                              {"name": "x", "type": "space", "unit": "micrometer"}],
                          scale=[1.0, 0.5, 0.25, 0.25], translation=[0, 1.0, 2.0, 3.0])  # fmt: skip
    img.downsample((2, 2, 1), mips=1)
    level1 = BigArray(f"{http_server.url}/img.ome.zarr", mip=1)
    state = parse(level1.neuroglancer_url())
    # The image, not its level, so that neuroglancer finds the levels and axes itself.
    assert state.layers[0].source[0].url == f"zarr3://{http_server.url}/img.ome.zarr"
    assert state.layers[0].name == "img.ome.zarr"
    assert list(state.dimensions.names) == ["z", "y", "x"]
    assert state.dimensions.scales.tolist() == pytest.approx([0.5e-6, 0.5e-6, 0.5e-6])
    # Centre in units of this level's voxels: translation / scale + shape / 2.
    axes = zip(level1.axes, level1.shape, strict=True)
    want = [ax["translation"] / ax["scale"] + n / 2 for ax, n in axes]
    assert state.position.tolist() == pytest.approx(want[1:])
    assert want[1] == 2 + 4  # z is not downsampled: 1.0 / 0.5 + 8 / 2


def test_hdf5_layouts_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["img"] = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(InvalidArgumentError, match="neuroglancer reads Precomputed and Zarr"):
        BigArray(str(tmp_path / "a.h5")).neuroglancer_url(serve="http://h:1/a")
    assert run(["view", str(tmp_path / "a.h5")]) == 2  # refused before serving anything


def test_view_verb_for_an_http_layer_and_open(tmp_path, http_server, capsys):
    make(str(http_server.root / "em"), dtype="uint8", compression=None)
    url = f"{http_server.url}/em"
    assert run(["view", url]) == 0
    state = parse(capsys.readouterr().out.strip())
    assert state.layers[0].source[0].url == f"precomputed://{url}"
    # --open hands the link to the browser $BROWSER names (here a script that records it).
    opened = tmp_path / "opened"
    browser = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'w').write(sys.argv[2])\""
    env = {"BROWSER": f"{browser} {opened} %s", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "bigarrays", "view", url, "--open"],
                         capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert opened.read_text() == out.stdout.strip()


def test_view_verb_serves_a_local_layer(tmp_path):
    a = make(str(tmp_path / "em"), dtype="uint8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigarrays", "view", str(tmp_path / "em"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "bigarrays view printed no link within 60 s"
        state = parse(proc.stdout.readline().strip())
        source = state.layers[0].source[0].url
        assert source.startswith("precomputed://http://127.0.0.1:")
        assert state.layers[0].name == "em"
        served = source.removeprefix("precomputed://")
        with urllib.request.urlopen(f"{served}/info", timeout=10) as reply:
            assert json.load(reply)["scales"][0]["size"] == [64, 48, 20]
        assert np.array_equal(BigArray(served)[...], a[...])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
