"""OME-Zarr images both ways: ome-zarr-py's images read here, ours (created and downsampled
here) read by ome-zarr-py's reader and zarr-python, level by level."""

from __future__ import annotations

import numpy as np
import pytest

from bigarrays import BigArray
from bigarrays.errors import InvalidArgumentError, LayerExistsError

zarr = pytest.importorskip("zarr")
ome_writer = pytest.importorskip("ome_zarr.writer")
ome_io = pytest.importorskip("ome_zarr.io")
ome_reader = pytest.importorskip("ome_zarr.reader")

AXES = [
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def _values(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def _image_node(path) -> object:
    """ome-zarr-py's reading of the image at ``path``: its first node (the image)."""
    reader = ome_reader.Reader(ome_io.parse_url(str(path)))
    return next(iter(reader()))


def _transforms(node) -> list[tuple[list[float], list[float] | None]]:
    out = []
    for level in node.metadata["coordinateTransformations"]:
        kinds = {t["type"]: t for t in level}
        out.append(
            (
                kinds["scale"]["scale"],
                kinds["translation"]["translation"] if "translation" in kinds else None,
            )
        )
    return out


def _mean2(block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The 2×-average along ``axes`` (even extents), rounded half up, as downsample does."""
    x = block.astype(np.float64)
    for ax in axes:
        n = x.shape[ax] // 2 * 2
        x = np.take(x, range(n), axis=ax)
        shape = list(x.shape)
        shape[ax : ax + 1] = [n // 2, 2]
        x = x.reshape(shape).mean(axis=ax + 1)
    return np.floor(x + 0.5).astype(block.dtype)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_ome_zarr_py_images_read_with_levels_axes_scales(tmp_path, zarr_format):
    data = _values((2, 8, 32, 32), "uint8", seed=1)
    path = tmp_path / "theirs.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    ome_writer.write_image(
        data,
        group=root,
        axes=AXES,
        scale={"c": 1.0, "z": 0.5, "y": 0.25, "x": 0.25},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        storage_options={"chunks": (1, 4, 16, 16)},
    )
    node = _image_node(path)
    a = BigArray(str(path))
    assert a.num_mips == len(node.data) >= 2
    assert [(ax["name"], ax["unit"]) for ax in a.axes] == [
        (ax["name"], ax.get("unit")) for ax in node.metadata["axes"]
    ]
    assert a.axes[1]["unit"] == "micrometer"
    for mip, (scale, translation) in enumerate(_transforms(node)):
        level = BigArray(str(path), mip=mip)
        assert [ax["scale"] for ax in level.axes] == scale
        assert [ax["translation"] for ax in level.axes] == (translation or [0.0] * 4)
        assert level.shape == node.data[mip].shape
        assert np.array_equal(level[...], np.asarray(node.data[mip]))


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_we_create_and_downsample_an_image_readers_see_every_level(tmp_path, zarr_format):
    data = _values((2, 8, 32, 32), seed=2)
    path = tmp_path / "ours.ome.zarr"
    a = BigArray.create(
        str(path),
        format="zarr",
        zarr_format=zarr_format,
        shape=data.shape,
        dtype=data.dtype,
        chunks=(1, 4, 16, 16),
        axes=AXES,
        scale=[1.0, 0.5, 0.25, 0.25],
        translation=[0.0, 10.0, 20.0, 30.0],
        attributes={"lab": "ours"},
    )
    a[...] = data
    assert BigArray(str(path)).axes[1] == {
        "name": "z",
        "unit": "micrometer",
        "scale": 0.5,
        "translation": 10.0,
    }
    levels = a.downsample((2, 2, 2), mips=2)
    assert [lv.shape for lv in levels] == [(2, 4, 16, 16), (2, 2, 8, 8)]

    node = _image_node(path)
    assert [ax["name"] for ax in node.metadata["axes"]] == ["c", "z", "y", "x"]
    assert node.metadata["axes"][3]["unit"] == "micrometer"
    assert [d.shape for d in node.data] == [data.shape, (2, 4, 16, 16), (2, 2, 8, 8)]
    # Scales multiply by the factor; translations move to the centre of the voxels summarised.
    assert _transforms(node) == [
        ([1.0, 0.5, 0.25, 0.25], [0.0, 10.0, 20.0, 30.0]),
        ([1.0, 1.0, 0.5, 0.5], [0.0, 10.25, 20.125, 30.125]),
        ([1.0, 2.0, 1.0, 1.0], [0.0, 10.75, 20.375, 30.375]),
    ]
    want1 = _mean2(data, (1, 2, 3))
    want2 = _mean2(want1, (1, 2, 3))
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    multiscale = (attrs["ome"] if zarr_format == 3 else attrs)["multiscales"][0]
    assert attrs["lab"] == "ours"
    assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2"]
    for mip, want in enumerate([data, want1, want2]):
        ours = BigArray(str(path), mip=mip)
        theirs = group[str(mip)]
        assert theirs.chunks == (1, 4, 16, 16)
        assert np.array_equal(theirs[...], want)
        assert np.array_equal(ours[...], want)
        assert np.array_equal(np.asarray(node.data[mip]), want)
        if zarr_format == 3:
            assert theirs.metadata.dimension_names == ("c", "z", "y", "x")


def test_translations_match_ome_zarr_pys_own_pyramid(tmp_path):
    data = _values((16, 64, 64), "uint8", seed=3)
    theirs = tmp_path / "theirs.ome.zarr"
    ome_writer.write_image(data, group=zarr.open_group(str(theirs), mode="w"), axes="zyx")
    ours = tmp_path / "ours.ome.zarr"
    a = BigArray.create(str(ours), format="zarr", ome=True, shape=data.shape, dtype="uint8")
    a[...] = data
    n = len(_image_node(theirs).data) - 1
    a.downsample((2, 2, 1), mips=n)
    # ome-zarr-py writes a zero translation on level 0, where ours has none: the same place.
    zero = [0.0, 0.0, 0.0]
    theirs_t = [(s, t if t != zero else None) for s, t in _transforms(_image_node(theirs))]
    assert _transforms(_image_node(ours)) == theirs_t
    assert [d.shape for d in _image_node(ours).data] == [d.shape for d in _image_node(theirs).data]


def test_sharded_image_levels_keep_the_codecs_and_sparse_blocks_stay_absent(tmp_path):
    path = tmp_path / "sharded.ome.zarr"
    a = BigArray.create(
        str(path),
        format="zarr",
        ome=True,
        shape=(64, 64),
        dtype="float32",
        chunks=(8, 8),
        shards=(32, 32),
        codecs=[
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "gzip", "configuration": {"level": 5}},
        ],
        fill_value=np.nan,
    )
    a[0:32, 0:32] = 4.0
    (level,) = a.downsample((2, 2, 1))
    group = zarr.open_group(str(path), mode="r")
    assert group["1"].shards == (32, 32) and group["1"].chunks == (8, 8)
    assert [c.__class__.__name__ for c in group["1"].compressors] == ["GzipCodec"]
    got = level[...]
    assert np.all(got[:16, :16] == 4.0) and np.isnan(got[16:, :]).all()
    assert sorted(p.name for p in (path / "1" / "c").iterdir()) == ["0"]


def test_downsample_refuses_plain_arrays_and_channel_axes(tmp_path):
    plain = BigArray.create(str(tmp_path / "plain.zarr"), format="zarr", shape=(8, 8, 8),
                            dtype="uint8")  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="OME-Zarr image"):
        plain.downsample()
    img = BigArray.create(str(tmp_path / "cyx.zarr"), format="zarr", ome=True,
                          shape=(3, 16, 16), dtype="uint8", axes=["c", "y", "x"])  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="channel axis"):
        img.downsample((2, 2, 2))
    (level,) = img.downsample((2, 2, 1))
    assert level.shape == (3, 8, 8)


def test_resume_keeps_levels_and_replacing_a_level_removes_its_chunks(tmp_path):
    path = tmp_path / "img.zarr"
    data = _values((16, 16, 16), "uint8", seed=4)
    a = BigArray.create(str(path), format="zarr", ome=True, shape=data.shape, dtype="uint8",
                        chunks=(8, 8, 8))  # fmt: skip
    a[...] = data
    (first,) = a.downsample((2, 2, 2))
    (again,) = a.downsample((2, 2, 2), resume=True)
    assert np.array_equal(first[...], again[...])
    # Another factor replaces level 1 (same path), its old chunks gone.
    (other,) = a.downsample((2, 2, 1))
    assert other.shape == (16, 8, 8) and BigArray(str(path)).num_mips == 2
    assert np.array_equal(other[...], _mean2(data, (1, 2)))


def test_axes_are_checked_as_ngff_asks(tmp_path):
    url = str(tmp_path / "bad.zarr")
    cases = [
        (["y", "c", "x"], "orders axes"),
        (["t", "c", "x"], "space"),
        ([{"name": "z", "unit": "furlong"}, "y", "x"], "furlong"),
        (["y", "y", "x"], "repeat"),
        (["z", "y"], "2 axes for 3"),
    ]
    for axes, match in cases:
        with pytest.raises(InvalidArgumentError, match=match):
            BigArray.create(url, format="zarr", shape=(4, 4, 4), dtype="uint8", axes=axes)
    with pytest.raises(InvalidArgumentError, match="format='zarr'"):
        BigArray.create(url, shape=(4, 4, 4), dtype="uint8", ome=True)
    BigArray.create(url, format="zarr", ome=True, shape=(4, 4, 4), dtype="uint8")
    with pytest.raises(LayerExistsError):
        BigArray.create(url, format="zarr", ome=True, shape=(4, 4, 4), dtype="uint8")
    again = BigArray.create(url, format="zarr", ome=True, shape=(4, 4), dtype="uint8",
                            overwrite=True)  # fmt: skip
    assert again.shape == (4, 4) and [ax["name"] for ax in again.axes] == ["y", "x"]


def test_image_in_a_bucket_created_downsampled_and_read_by_zarr_python(moto, tmp_path):
    """The group and level metadata and the replaced level's chunks go through S3 as they go
    to disk; zarr-python reads every level of what the bucket holds."""
    bucket = moto.bucket()
    url = f"s3://{bucket}/img.ome.zarr"
    data = _values((8, 16, 16), seed=5)
    opts = moto.options()
    a = BigArray.create(url, format="zarr", ome=True, shape=data.shape, dtype=data.dtype,
                        chunks=(4, 8, 8), storage_options=opts)  # fmt: skip
    a[...] = data
    a.downsample((2, 2, 1))
    (level,) = a.downsample((2, 2, 2))  # replaces level 1
    assert level.shape == (4, 8, 8)
    reopened = BigArray(url, mip=1, storage_options=opts)
    assert np.array_equal(reopened[...], _mean2(data, (0, 1, 2)))
    # What the bucket holds, key for key, opened by zarr-python (its S3 path needs an s3fs
    # that this environment's aiobotocore does not match).
    s3 = moto.client()
    local = tmp_path / "copy"
    for item in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        target = local / item["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    group = zarr.open_group(str(local / "img.ome.zarr"), mode="r")
    assert [d["path"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]] == ["0", "1"]
    assert np.array_equal(group["0"][...], data)
    assert np.array_equal(group["1"][...], _mean2(data, (0, 1, 2)))
