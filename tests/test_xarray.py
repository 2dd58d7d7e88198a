"""The xarray backend (``engine="bigarrays"``) with xarray and dask from PyPI: named axes,
physical coordinates, lazy reads of only what is selected, and a computed result written
back with ``write_dask``."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from bigarrays import BigArray, MissingChunkError

xr = pytest.importorskip("xarray")
pytest.importorskip("dask.array")

OFFSET = (-37, 5, 11)  # negative and unaligned: coordinates must follow the voxel offset
RESOLUTION = (4, 6, 40)
AXES = [
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


@pytest.fixture
def layer(tmp_path):
    truth = np.random.default_rng(3).integers(0, 2**16, (70, 45, 33), dtype=np.uint16)
    a = BigArray.create(tmp_path / "em", shape=truth.shape, dtype="uint16", chunks=(16, 16, 8),
                        voxel_offset=OFFSET, resolution=RESOLUTION)  # fmt: skip
    a[a.bounds] = truth
    a.downsample((2, 2, 1), mips=1)
    return a, truth


def test_the_entry_point_is_registered():
    assert "bigarrays" in xr.backends.list_engines()


def test_dims_coordinates_and_attributes(layer):
    a, truth = layer
    ds = xr.open_dataset(a.url, engine="bigarrays")
    assert list(ds.data_vars) == ["em"]
    em = ds["em"]
    assert em.dims == ("x", "y", "z") and em.shape == truth.shape and em.dtype == truth.dtype
    for axis, lo, res in zip("xyz", OFFSET, RESOLUTION, strict=True):
        n = truth.shape["xyz".index(axis)]
        assert np.array_equal(em[axis].values, (lo + np.arange(n)) * res)
        assert em[axis].attrs["units"] == "nanometer"
    assert em.attrs["resolution"] == list(RESOLUTION)
    assert em.attrs["resolution_units"] == "nanometer" and "units" not in em.attrs
    assert em.attrs["voxel_offset"] == list(OFFSET)
    assert em.attrs["layer_type"] == "image" and em.attrs["mip"] == 0
    assert em.encoding["chunks"] == (16, 16, 8)


def test_sel_isel_read_only_the_selection(layer):
    a, truth = layer
    # The last column of chunks (x from 27 on) is gone: opening and selecting elsewhere
    # must not touch it, reading it must.
    removed = list((Path(a.url.removeprefix("file://")) / "4_6_40").glob("27-33_*"))
    assert removed
    for path in removed:
        path.unlink()
    em = xr.open_dataarray(a.url, engine="bigarrays", fill_missing=False)
    # By physical coordinate: x = (-37 + 10) * 4 nm is index 10.
    picked = em.sel(x=(OFFSET[0] + 10) * 4, y=slice(10 * 6, 20 * 6))
    assert np.array_equal(picked.values, truth[10, 5:16, :])
    strided = em.isel(x=slice(64), z=3, y=slice(2, 40, 3))
    assert np.array_equal(strided.values, truth[:64, 2:40:3, 3])
    assert np.array_equal(em.isel(x=[3, 1, 60]).values, truth[[3, 1, 60]])
    assert np.array_equal(em[63::-1, 0, 0].values, truth[63::-1, 0, 0])
    with pytest.raises(MissingChunkError):
        em.isel(x=65).values  # noqa: B018 (reading is the point)


def test_mean_with_dask_on_the_storage_grid(layer):
    a, truth = layer
    em = xr.open_dataarray(a.url, engine="bigarrays", chunks="auto")
    assert em.encoding["preferred_chunks"] == {"x": 16, "y": 16, "z": 8}
    for chunks in ("auto", {}, {"x": 32, "z": 16}):
        blocks = xr.open_dataarray(a.url, engine="bigarrays", chunks=chunks).chunks
        for sizes, chunk in zip(blocks, a.chunks, strict=True):
            assert all(s % chunk == 0 for s in sizes[:-1])  # whole storage chunks per block
    assert float(em.mean().compute()) == pytest.approx(truth.mean())
    # Tasks pickle the layer as its URL and options, for workers in other processes.
    assert float(pickle.loads(pickle.dumps(em)).max().compute()) == truth.max()
    profile = em.mean(dim=("x", "y")).compute()
    assert np.allclose(profile.values, truth.mean(axis=(0, 1)))
    assert np.array_equal(profile["z"].values, em["z"].values)


def test_channels_are_a_dim_without_coordinates(tmp_path):
    values = np.random.default_rng(8).integers(0, 255, (32, 16, 8, 3), dtype=np.uint8)
    a = BigArray.create(tmp_path / "rgb", shape=values.shape, dtype="uint8", chunks=(16, 16, 8))
    a[a.bounds] = values
    rgb = xr.open_dataarray(a.url, engine="bigarrays", chunks={})
    assert rgb.dims == ("x", "y", "z", "c") and list(rgb.coords) == ["x", "y", "z"]
    assert rgb.encoding["chunks"] == (16, 16, 8, 3) and rgb.chunks[3] == (3,)
    assert np.array_equal(rgb.isel(c=2).values, values[..., 2])


def test_mip_selects_a_level(layer):
    a, _ = layer
    em1 = xr.open_dataarray(a.url, engine="bigarrays", mip=1)
    low = BigArray(a.url, mip=1)
    assert em1.shape == low.shape and em1.attrs["mip"] == 1
    assert em1.attrs["resolution"] == [8, 12, 40]
    assert em1["x"].values[0] == low.voxel_offset[0] * 8
    assert np.array_equal(em1.values, low[low.bounds])


def test_a_computed_result_written_back_with_write_dask(layer, tmp_path):
    a, truth = layer
    em = xr.open_dataarray(a.url, engine="bigarrays", chunks={})
    result = (em.astype("float32") / 2).astype("uint16")
    out = BigArray.create(tmp_path / "half", shape=em.shape, dtype="uint16", chunks=a.chunks,
                          voxel_offset=a.voxel_offset, resolution=a.resolution)  # fmt: skip
    out.write_dask(result.data)
    assert np.array_equal(out[out.bounds], truth // 2)
    back = xr.open_dataarray(out.url, engine="bigarrays")
    assert np.array_equal(back["x"].values, em["x"].values)


def test_ome_zarr_axes_scale_translation_and_levels(tmp_path):
    data = np.random.default_rng(4).integers(0, 255, (2, 8, 32, 32), dtype=np.uint8)
    path = str(tmp_path / "img.ome.zarr")
    a = BigArray.create(path, format="zarr", shape=data.shape, dtype="uint8",
                        chunks=(1, 4, 16, 16), axes=AXES, scale=[1.0, 0.5, 0.25, 0.25],
                        translation=[0.0, 10.0, 20.0, 30.0])  # fmt: skip
    a[...] = data
    a.downsample((2, 2, 1), mips=1)  # factors in (x, y, z)
    img = xr.open_dataarray(path, engine="bigarrays")
    assert img.dims == ("c", "z", "y", "x") and "c" not in img.coords
    assert np.array_equal(img["z"].values, 10.0 + 0.5 * np.arange(8))
    assert img["x"].attrs["units"] == "micrometer"
    assert np.array_equal(img.sel(c=1, z=11.0).values, data[1, 2])
    level1 = xr.open_dataarray(path, engine="bigarrays", mip=1)
    low = BigArray(path, mip=1)
    assert level1.shape == (2, 8, 16, 16)
    assert level1["x"].values[1] - level1["x"].values[0] == 0.5
    assert level1["x"].values[0] == low.axes[3]["translation"]


def test_zarr_dimension_names_and_unnamed_axes(tmp_path):
    zarr = pytest.importorskip("zarr")
    named = zarr.create_array(str(tmp_path / "named.zarr"), shape=(4, 6), chunks=(2, 3),
                              dtype="int16", dimension_names=["time", "cell"])  # fmt: skip
    named[...] = np.arange(24, dtype=np.int16).reshape(4, 6)
    v = xr.open_dataarray(str(tmp_path / "named.zarr"), engine="bigarrays")
    assert v.dims == ("time", "cell") and v["time"].dtype == np.int64
    assert int(v.sel(time=2, cell=5)) == 17
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(4, 6), chunks=(2, 3), dtype="int16",
                      zarr_format=2)  # fmt: skip
    assert xr.open_dataarray(str(tmp_path / "plain.zarr"), engine="bigarrays").dims == (
        "dim_0",
        "dim_1",
    )


def test_guessing_the_engine_and_refusals(layer, tmp_path):
    a, _ = layer
    assert "em" in xr.open_dataset(str(tmp_path / "em")).data_vars  # no engine= needed
    entry = xr.backends.list_engines()["bigarrays"]
    assert not entry.guess_can_open(str(tmp_path))  # a directory with no layer metadata
    assert not entry.guess_can_open("s3://bucket/em")  # remote: only with engine=
    with pytest.raises(FileNotFoundError, match="missing"):
        xr.open_dataset(str(tmp_path / "missing"), engine="bigarrays")


def test_the_readme_section_runs(tmp_path, capsys):
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## xarray, napari and neuroglancer")[1].split("\n## ")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code.splitlines()) < 15
    truth = np.random.default_rng(6).integers(0, 255, (256, 256, 48), dtype=np.uint8)
    em = BigArray.create(tmp_path / "data/em", shape=truth.shape, dtype="uint8",
                         chunks=(64, 64, 16), resolution=(4, 4, 40))  # fmt: skip
    em[em.bounds] = truth
    em.downsample((2, 2, 1), mips=2)
    exec(compile(code.replace('"/data/', f'"{tmp_path}/data/'), "README.md", "exec"), {})
    mask = BigArray(str(tmp_path / "data/mask"))
    assert np.array_equal(mask[mask.bounds], (truth > 128).astype(np.uint8))
    link = capsys.readouterr().out.strip()
    neuroglancer = pytest.importorskip("neuroglancer")
    source = neuroglancer.parse_url(link).layers[0].source[0].url
    assert source == "precomputed://http://127.0.0.1:8000/em"


def test_a_bucket_layer_with_storage_options(moto):
    values = np.random.default_rng(9).integers(0, 255, (40, 24, 8), dtype=np.uint8)
    url = f"s3://{moto.bucket()}/layers/em"
    a = BigArray.create(url, shape=values.shape, dtype="uint8", chunks=(16, 16, 8),
                        resolution=(8, 8, 30), storage_options=moto.options())  # fmt: skip
    a[a.bounds] = values
    em = xr.open_dataarray(url, engine="bigarrays", storage_options=moto.options(), chunks={})
    assert em.attrs["url"] == url and float(em.mean()) == pytest.approx(values.mean())
    assert np.array_equal(em.sel(x=slice(80, 160), z=30).values, values[10:21, :, 1])
