"""The napari reader plugin, headless: the npe2 manifest as napari's plugin manager finds it,
the reader through npe2 (as napari calls it), and the layers napari builds from what it
returns (no Qt, no viewer)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bigarrays import BigArray

npe2 = pytest.importorskip("npe2")
layers = pytest.importorskip("napari.layers")


@pytest.fixture(scope="module")
def plugins():
    manager = npe2.PluginManager.instance()
    manager.discover()
    return manager


@pytest.fixture
def seg(tmp_path):
    labels = np.zeros((64, 48, 16), dtype=np.uint64)
    labels[10:40, 5:30, 2:12] = 7
    labels[45:50, 40:45, 3:4] = 2**40
    a = BigArray.create(tmp_path / "seg", shape=labels.shape, dtype="uint64", chunks=(16, 16, 8),
                        voxel_offset=(10, 20, 3), resolution=(4, 4, 40),
                        layer_type="segmentation")  # fmt: skip
    a[a.bounds] = labels
    a.downsample((2, 2, 1), mips=2)
    return a, labels


def test_the_manifest_is_found_and_valid(plugins):
    manifest = plugins.get_manifest("bigarrays")
    assert manifest.contributions.readers[0].accepts_directories
    npe2.PluginManifest.from_distribution("bigarrays").validate_imports()


def test_a_local_segmentation_is_a_lazy_multiscale_labels_layer(plugins, seg):
    a, labels = seg
    ((data, meta, kind),) = npe2.read([str(a.url)], stack=False, plugin_name="bigarrays")
    assert kind == "labels" and meta["multiscale"]
    assert [d.shape for d in data] == [(16, 48, 64), (16, 24, 32), (16, 12, 16)]
    assert all(type(d).__module__.startswith("dask") for d in data)  # lazy
    assert meta["scale"] == [40.0, 4.0, 4.0] and meta["translate"] == [120.0, 80.0, 40.0]
    assert meta["axis_labels"] == ["z", "y", "x"]
    layer = layers.Layer.create(data, meta, kind)
    assert isinstance(layer, layers.Labels) and layer.multiscale
    assert list(layer.scale) == [40.0, 4.0, 4.0]
    assert int(layer.data[0][5, 10, 20].compute()) == int(labels[20, 10, 5]) == 7
    assert np.array_equal(np.asarray(layer.data[0][3]), labels[:, :, 3].T)


def test_a_layer_url_over_http(plugins, seg, http_server):
    a, labels = seg
    shutil.copytree(a.url.removeprefix("file://"), http_server.root / "seg")
    url = f"{http_server.url}/seg"
    ((data, meta, kind),) = npe2.read([url], stack=False, plugin_name="bigarrays")
    assert kind == "labels" and meta["metadata"]["url"].startswith("http://")
    assert np.array_equal(np.asarray(data[2]), BigArray(a.url, mip=2)[...].T)


def test_image_channels_and_ome_zarr(plugins, tmp_path):
    rgb = BigArray.create(tmp_path / "rgb", shape=(32, 32, 4, 3), dtype="uint8",
                          chunks=(16, 16, 4))  # fmt: skip
    rgb[rgb.bounds] = 9
    ((data, meta, kind),) = npe2.read([str(tmp_path / "rgb")], stack=False,
                                      plugin_name="bigarrays")  # fmt: skip
    assert kind == "image" and data.shape == (3, 4, 32, 32) and meta["channel_axis"] == 0
    assert meta["axis_labels"] == ["z", "y", "x"]
    # What napari's viewer does with channel_axis: one image layer per channel.
    from napari.layers.utils.stack_utils import split_channels

    kwargs = {k: v for k, v in meta.items() if k != "channel_axis"}
    channels = [layers.Layer.create(*d) for d in split_channels(data, 0, **kwargs)]
    assert len(channels) == 3 and channels[2].data.shape == (4, 32, 32)
    img = BigArray.create(str(tmp_path / "img.ome.zarr"), format="zarr", shape=(2, 8, 32, 32),
                          dtype="uint16", chunks=(1, 4, 16, 16), axes=[
                              {"name": "c", "type": "channel"},
                              {"name": "z", "type": "space", "unit": "micrometer"},
                              {"name": "y", "type": "space", "unit": "micrometer"},
                              {"name": "x", "type": "space", "unit": "micrometer"}],
                          scale=[1.0, 0.5, 0.25, 0.25])  # fmt: skip
    img[...] = 3
    img.downsample((2, 2, 1), mips=1)
    ((data, meta, kind),) = npe2.read([str(tmp_path / "img.ome.zarr")], stack=False,
                                      plugin_name="bigarrays")  # fmt: skip
    assert kind == "image" and meta["multiscale"] and meta["channel_axis"] == 0
    assert [d.shape for d in data] == [(2, 8, 32, 32), (2, 8, 16, 16)]
    assert meta["scale"] == [0.5, 0.25, 0.25] and meta["units"] == ["micrometer"] * 3
    assert meta["name"] == "img.ome.zarr"


def test_not_ours_is_left_to_other_readers(tmp_path):
    from bigarrays._napari import get_reader

    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing")) is None
    assert get_reader([str(tmp_path), str(tmp_path)]) is None


def test_napari_opens_urls_and_directories_headless(plugins, seg, http_server, tmp_path):
    """napari's own open path (ViewerModel is the viewer without Qt)."""
    from napari.components import ViewerModel

    a, labels = seg
    shutil.copytree(a.url.removeprefix("file://"), http_server.root / "seg")
    viewer = ViewerModel()
    (local,) = viewer.open(a.url.removeprefix("file://"), plugin="bigarrays")
    (remote,) = viewer.open(f"{http_server.url}/seg", plugin="bigarrays")
    for layer in (local, remote):
        assert isinstance(layer, layers.Labels) and layer.multiscale
        assert np.array_equal(np.asarray(layer.data[0][4]), labels[:, :, 4].T)
    BigArray.create(tmp_path / "rgb", shape=(16, 16, 4, 2), dtype="uint8", chunks=(16, 16, 4))
    opened = viewer.open(str(tmp_path / "rgb"), plugin="bigarrays")
    assert [layer.data.shape for layer in opened] == [(4, 16, 16)] * 2  # a layer per channel
    (tmp_path / "notes").mkdir()
    with pytest.raises(ValueError, match="refused"):
        viewer.open(str(tmp_path / "notes"), plugin="bigarrays")
