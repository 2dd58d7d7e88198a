"""Scale keys: new scales are named as CloudVolume names them (``4_4_40``, then ``8_8_40``
below it; ``4.5_4.5_40.0`` when a resolution is fractional), by ``create``, ``downsample``
and ``ingest`` alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume

import bigarrays
from bigarrays import BigArray


def cloudvolume_keys(tmp_path: Path, resolution, mips: int = 2) -> list[str]:
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=list(resolution), voxel_offset=[0, 0, 0], chunk_size=[32, 32, 8],
        volume_size=[96, 80, 24],
    )  # fmt: skip
    cv = CloudVolume(f"file://{tmp_path / 'cv'}", info=info, progress=False)
    for mip in range(1, mips + 1):
        cv.add_scale((2**mip, 2**mip, 1))
    return [s["key"] for s in cv.info["scales"]]


@pytest.mark.parametrize("resolution", [(4, 4, 40), (4.5, 4.5, 40)], ids=["integral", "fraction"])
def test_new_scales_are_named_as_cloudvolume_names_them(tmp_path, resolution):
    want = cloudvolume_keys(tmp_path, resolution)
    a = BigArray.create(str(tmp_path / "a"), shape=(96, 80, 24), dtype="uint8",
                        chunks=(32, 32, 8), resolution=resolution)  # fmt: skip
    a.downsample(mips=2)
    assert [s["key"] for s in BigArray(a.url).info["scales"]] == want
    vol = np.zeros((24, 80, 96), np.uint8)
    out = bigarrays.ingest(vol, str(tmp_path / "i"), chunks=(32, 32, 8), mips=2,
                           resolution=resolution)  # fmt: skip
    assert [s["key"] for s in out.info["scales"]] == want
    if resolution == (4, 4, 40):
        assert want == ["4_4_40", "8_8_40", "16_16_40"]


def test_layers_made_before_keep_naming_their_scales_as_before(tmp_path):
    # Layers this package made before stated integral resolutions as floats: their levels
    # were, and still are, named as CloudVolume's add_scale names them for that info.
    a = BigArray.create(str(tmp_path / "old"), shape=(96, 80, 24), dtype="uint8",
                        chunks=(32, 32, 8), resolution=(4, 4, 40))  # fmt: skip
    info = a.info
    info["scales"][0]["resolution"] = [4.0, 4.0, 40.0]
    (tmp_path / "old" / "info").write_text(json.dumps(info))
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "info").write_text(json.dumps(info))
    BigArray(str(tmp_path / "old")).downsample(mips=1)
    cv = CloudVolume(f"file://{tmp_path / 'cv'}", progress=False)
    cv.add_scale((2, 2, 1))
    keys = [s["key"] for s in BigArray(str(tmp_path / "old")).info["scales"]]
    assert keys == [s["key"] for s in cv.info["scales"]] == ["4_4_40", "8.0_8.0_40.0"]
