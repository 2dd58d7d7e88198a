"""``BigArray.create(..., overwrite=True)`` over an existing layer leaves an empty layer: the
chunks and shards of every scale of the old ``info`` are removed first, in every store, and
nothing outside those scales' directories is touched."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST, Moto

from bigarrays import BigArray

SHAPE, CHUNKS = (40, 30, 20), (16, 16, 8)


class Place:
    """A layer location in one kind of store, with a sibling layer whose name starts with
    the layer's, and a way to see every key of both."""

    def __init__(self, kind: str, tmp_path: Path, moto: Moto | None) -> None:
        self.kind = kind
        self.options: dict[str, Any] = {}
        self.mapping: dict[str, bytes] | None = None
        name = uuid.uuid4().hex[:8]
        if kind == "disk":
            self.url, self.sibling = str(tmp_path / "em"), str(tmp_path / "em_2")
        elif kind == "memory":
            self.url, self.sibling = f"memory://ow-{name}/em", f"memory://ow-{name}/em_2"
        elif kind == "mapping":
            self.mapping = {}
            self.url, self.sibling = "layers/em", "layers/em_2"
        elif kind == "s3":
            assert moto is not None
            self.moto, self.bucket = moto, moto.bucket()
            self.url = f"s3://{self.bucket}/layers/em"
            self.sibling = f"s3://{self.bucket}/layers/em_2"
            self.options = {"storage_options": moto.options()}
        else:  # gs://, through moto standing in for the GCS XML API (see test_cloud_gcs)
            assert moto is not None
            self.moto, self.bucket = moto, moto.gcs_bucket()
            self.url = f"gs://{self.bucket}/layers/em"
            self.sibling = f"gs://{self.bucket}/layers/em_2"
            options = {"google_base_url": moto.endpoint, "bearer_token": "token", **FAST}
            self.options = {"storage_options": options}
        if self.mapping is not None:
            self.options = {"store": self.mapping}

    def keys(self, url: str) -> set[str] | None:
        """Every key under the layer at ``url``, where the test can see them."""
        if self.kind == "disk":
            root = Path(url)
            return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if self.kind == "mapping":
            assert self.mapping is not None
            return {k[len(url) + 1 :] for k in self.mapping if k.startswith(url + "/")}
        if self.kind in ("s3", "gs"):
            prefix = url.split(self.bucket + "/", 1)[1] + "/"
            listed = self.moto.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
            return {o["Key"][len(prefix) :] for o in listed.get("Contents", [])}
        return None  # memory://: only through the engine

    def create(self, url: str, **kwargs: Any) -> BigArray:
        return BigArray.create(url, shape=SHAPE, chunks=CHUNKS, **self.options, **kwargs)


@pytest.fixture(params=["disk", "memory", "mapping", "s3", "gs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    moto = request.getfixturevalue("moto") if request.param in ("s3", "gs") else None
    return Place(request.param, tmp_path, moto)


@pytest.mark.parametrize("sharding", [None, "auto"])
def test_overwrite_empties_every_scale_and_nothing_else(place: Place, sharding: Any) -> None:
    rng = np.random.default_rng(0)
    old = place.create(place.url, dtype="uint8", resolution=(4, 4, 40), sharding=sharding)
    old[old.bounds] = rng.integers(1, 255, SHAPE, dtype=np.uint8)
    old.downsample(factor=(2, 2, 1), mips=1)  # a second scale, also the layer's
    sibling = place.create(place.sibling, dtype="uint8", sharding=sharding)
    sibling[sibling.bounds] = 9
    sibling_keys = place.keys(place.sibling)

    new = place.create(
        place.url, dtype="uint16", resolution=(4, 4, 40), overwrite=True, sharding=sharding
    )
    # Zeros (the fill), not stale chunks, and no ChunkDecodeError for the new data type.
    assert new.num_mips == 1 and not np.any(new[new.bounds])
    assert new.stored_chunks() == []
    keys = place.keys(place.url)
    assert keys is None or keys == {"info"}
    # The sibling layer, whose name starts with this one's, is untouched.
    assert place.keys(place.sibling) == sibling_keys
    assert np.all(BigArray(place.sibling, **place.options)[...] == 9)
    # The new layer writes and reads as any other.
    new[0:16, 0:16, 0:8] = 1000
    assert int(new[0, 0, 0]) == 1000 and int(new[20, 20, 10]) == 0


def test_overwrite_keeps_files_outside_the_scales(tmp_path: Path) -> None:
    url = tmp_path / "em"
    a = BigArray.create(str(url), shape=SHAPE, dtype="uint8", chunks=CHUNKS)
    a[a.bounds] = 3
    (url / "provenance").write_text("{}")
    (url / "meshes").mkdir()
    (url / "meshes" / "1:0").write_bytes(b"mesh")
    # A killed writer's temporary file inside the scale goes with the scale.
    key = a.info["scales"][0]["key"]
    (url / key / "0-16_0-16_0-8#1234").write_bytes(b"partial")
    BigArray.create(str(url), shape=SHAPE, dtype="uint8", chunks=CHUNKS, overwrite=True)
    assert sorted(p.name for p in url.rglob("*")) == ["1:0", "info", "meshes", "provenance"]


def test_overwrite_with_an_old_info_naming_keys_outside_the_layer(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    url = tmp_path / "em"
    BigArray.create(str(url), shape=SHAPE, dtype="uint8", chunks=CHUNKS)
    info = (url / "info").read_text()
    # A hand-edited info whose scale keys point elsewhere: never followed.
    (url / "info").write_text(info.replace('"key": "1_1_1"', '"key": "../outside"'))
    b = BigArray.create(str(url), shape=SHAPE, dtype="uint8", chunks=CHUNKS, overwrite=True)
    assert (outside / "keep").exists() and not np.any(b[...])


def test_overwrite_of_an_h5s_layer_removes_its_blocks(tmp_path: Path) -> None:
    url = str(tmp_path / "h5s")
    kwargs: dict[str, Any] = dict(format="h5s", shape=SHAPE, chunks=(16, 16, 8))
    a = BigArray.create(url, dtype="uint8", **kwargs)
    a[a.bounds] = 7
    (tmp_path / "h5s" / "notes.txt").write_text("mine")
    assert len(list((tmp_path / "h5s").glob("block_*.h5"))) == 18
    b = BigArray.create(url, dtype="uint16", overwrite=True, **kwargs)
    assert list((tmp_path / "h5s").glob("block_*.h5")) == []
    assert (tmp_path / "h5s" / "notes.txt").exists()
    assert b.dtype == np.uint16 and not np.any(b[...])
    b[0:4, 0:4, 0:4] = 300
    assert int(BigArray(url)[1, 1, 1]) == 300


def test_cli_create_overwrite_is_empty(tmp_path: Path) -> None:
    from bigarrays.cli import run

    url = str(tmp_path / "em")
    assert run(["create", url, "--shape", "32,32,8", "--dtype", "uint8"]) == 0
    BigArray(url)[...] = 5
    assert run(["create", url, "--shape", "32,32,8", "--dtype", "float32", "--overwrite"]) == 0
    assert not np.any(BigArray(url)[...])
    assert os.listdir(url) == ["info"]
