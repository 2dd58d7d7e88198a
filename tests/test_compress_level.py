"""``compress_level``: the gzip level a handle writes with changes the stored bytes and never
the voxels; CloudVolume and TensorStore read chunks of any level; a bad level is refused
naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
from click.testing import CliRunner
from cloudvolume import CloudVolume

import bigarrays
from bigarrays import BigArray, InvalidArgumentError
from bigarrays.cli import main

SHAPE = (96, 80, 24)
CHUNKS = (32, 32, 8)


def em(seed: int = 0) -> np.ndarray:
    """Smooth noise, compressible enough for the levels to differ in size."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (SHAPE[0] // 4, SHAPE[1] // 4, SHAPE[2]), dtype=np.uint8)
    fine = rng.integers(0, 8, SHAPE, dtype=np.uint8)
    return np.asfortranarray(coarse.repeat(4, 0).repeat(4, 1) + fine)


def layer(path: Path, data: np.ndarray, sharding=None, **options) -> BigArray:
    a = BigArray.create(
        str(path), shape=SHAPE, dtype="uint8", chunks=CHUNKS, resolution=(4, 4, 40),
        sharding=sharding, **options,
    )  # fmt: skip
    a[a.bounds] = data
    return a


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("sharding", [None, "auto"], ids=["gz-files", "sharded"])
def test_levels_change_the_bytes_not_the_voxels(tmp_path, sharding):
    data = em()
    stored = {}
    for level in (None, 6, 1, 12):
        root = tmp_path / f"l{level}"
        a = layer(root, data, sharding, compress_level=level)
        np.testing.assert_array_equal(a[a.bounds], data)
        # Every handle on the layer reads it, whatever level it would write with.
        np.testing.assert_array_equal(BigArray(str(root), compress_level=3)[a.bounds], data)
        stored[level] = files(root)
    # The default is level 6, bit for bit; the info is the same at every level.
    assert stored[None] == stored[6]
    assert len({s["info"] for s in stored.values()}) == 1
    assert stored[1] != stored[6]
    sizes = {level: sum(map(len, s.values())) for level, s in stored.items()}
    assert sizes[12] <= sizes[6] < sizes[1]


def test_cloudvolume_and_tensorstore_read_level_1(tmp_path):
    data = em(1)
    layer(tmp_path / "gz", data, compress_level=1)
    layer(tmp_path / "sharded", data, "auto", compress_level=1)
    for name in ("gz", "sharded"):
        cv = CloudVolume(f"file://{tmp_path / name}", progress=False, fill_missing=False)
        np.testing.assert_array_equal(np.asarray(cv[cv.bounds])[..., 0], data)
    # TensorStore reads the sharded layer (its data and minishard indexes gzipped at level
    # 1); it does not look for CloudVolume's `.gz` chunk files.
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": str(tmp_path / "sharded")},
    }
    got = ts.open(spec).result().read().result()[..., 0]
    np.testing.assert_array_equal(got, data)


def test_the_level_follows_reopen_copies_and_pyramids(tmp_path):
    data = em(2)
    a = layer(tmp_path / "a", data, compress_level=1)
    a.downsample(mips=1)
    b = layer(tmp_path / "b", data)
    b.downsample(mips=1)
    # Level 1 pyramid chunks differ from level 6 ones; the voxels do not.
    fast, default = files(tmp_path / "a"), files(tmp_path / "b")
    assert fast.keys() == default.keys()
    level1 = [k for k in fast if k.startswith("8_8_40/")]
    assert level1 and all(fast[k] != default[k] for k in level1)
    a1, b1 = a.reopen(mip=1), b.reopen(mip=1)
    np.testing.assert_array_equal(a1[a1.bounds], b1[b1.bounds])
    # A copy that transcodes (raw to gzip) compresses at the level asked for.
    plain = layer(tmp_path / "plain", data, compression=None)
    plain.copy_to(str(tmp_path / "c1"), compression="gzip", compress_level=1)
    plain.copy_to(str(tmp_path / "c6"), compression="gzip")
    c1, c6 = files(tmp_path / "c1"), files(tmp_path / "c6")
    assert c1.keys() == c6.keys() and c1 != c6
    c = BigArray(str(tmp_path / "c1"))
    np.testing.assert_array_equal(c[c.bounds], data)


def test_ingest_writes_at_level_1_unless_told(tmp_path):
    data = em(3)
    stack = np.ascontiguousarray(data.transpose(2, 1, 0))  # (z, y, x)
    kw = dict(chunks=CHUNKS, sharding=True, mips=1, resolution=(4, 4, 40))
    fast = bigarrays.ingest(stack, str(tmp_path / "fast"), **kw)
    six = bigarrays.ingest(stack, str(tmp_path / "six"), compress_level=6, **kw)
    # Level 6 is what a plain write gives; the default (1) is not.
    plain = layer(tmp_path / "plain", data, six.info["scales"][0]["sharding"])
    key = six.info["scales"][0]["key"]
    assert files(tmp_path / "six" / key) == files(tmp_path / "plain" / key)
    assert files(tmp_path / "fast" / key) != files(tmp_path / "six" / key)
    for mip in (0, 1):
        f, s = fast.reopen(mip=mip), six.reopen(mip=mip)
        np.testing.assert_array_equal(f[f.bounds], s[s.bounds])
    np.testing.assert_array_equal(plain[plain.bounds], data)


def test_a_bad_level_names_the_field(tmp_path):
    for bad in (0, 13, -1):
        with pytest.raises(InvalidArgumentError, match=f"compress_level={bad}"):
            BigArray.create(str(tmp_path / "x"), shape=(8, 8, 8), dtype="uint8",
                            compress_level=bad, overwrite=True)  # fmt: skip
    a = BigArray.create(str(tmp_path / "ok"), shape=(8, 8, 8), dtype="uint8")
    with pytest.raises(InvalidArgumentError, match="compress_level=13"):
        BigArray(a.url, compress_level=13)
    with pytest.raises(InvalidArgumentError, match="compress_level"):
        BigArray.create(str(tmp_path / "z"), shape=(8, 8), dtype="uint8", format="zarr",
                        compress_level=1)  # fmt: skip
    vol = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(InvalidArgumentError, match="compress_level=13"):
        bigarrays.ingest(vol, str(tmp_path / "i"), compress_level=13)
    with pytest.raises(InvalidArgumentError, match="compress_level=10"):
        bigarrays.ingest(vol, str(tmp_path / "iz"), format="zarr", compress_level=10)
    with pytest.raises(InvalidArgumentError, match="compress_level"):
        bigarrays.ingest(a.url, str(tmp_path / "lz"), format="zarr", compress_level=2)
    result = CliRunner().invoke(main, ["cp", a.url, str(tmp_path / "c"), "--compress-level", "0"])
    assert result.exit_code == 2 and "--compress-level" in result.output


def test_ingest_to_zarr_states_its_level_in_the_codec(tmp_path):
    vol = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    out = bigarrays.ingest(vol, str(tmp_path / "z"), format="zarr", compress_level=2, mips=0)
    meta = json.loads((tmp_path / "z" / "0" / "zarr.json").read_text())
    assert {"name": "gzip", "configuration": {"level": 2}} in meta["codecs"]
    np.testing.assert_array_equal(out[:, :, :], vol)
