"""Copies that move chunks as stored bytes (no re-encoding) when both layers allow it."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from cloudvolume import CloudVolume

from bigarrays import BigArray
from bigarrays.errors import ChunkDecodeError

SHAPE, CHUNKS = (40, 30, 20), (16, 16, 8)


@pytest.fixture
def cv_layer(tmp_path):
    """A gzip layer CloudVolume wrote (level 9: our level 6 would give other bytes), with a
    non-zero offset, clipped edge chunks and one chunk never written."""
    truth = np.random.default_rng(1).integers(0, 50, SHAPE).astype(np.uint16)
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint16",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[5, 0, 3],
        chunk_size=list(CHUNKS),
        volume_size=list(SHAPE),
    )
    cv = CloudVolume(f"file://{tmp_path / 'src'}", info=info, progress=False)
    cv.commit_info()
    cv[5:45, 0:30, 3:23] = truth
    missing = tmp_path / "src" / cv.key / "21-37_0-16_3-11.gz"
    missing.unlink()
    truth[16:32, 0:16, 0:8] = 0
    return tmp_path / "src", cv.key, truth


def chunk_files(root, key):
    return {p.name: p.read_bytes() for p in (root / key).iterdir()}


def test_plain_copy_moves_the_stored_bytes(cv_layer, tmp_path):
    src, key, truth = cv_layer
    dst = BigArray(str(src)).copy_to(str(tmp_path / "dst"))
    np.testing.assert_array_equal(dst[...], truth)
    before, after = chunk_files(src, key), chunk_files(tmp_path / "dst", key)
    assert all(after[name] == data for name, data in before.items())  # untouched bytes
    # The never-written chunk stays missing (it reads as zeros on both sides).
    assert "21-37_0-16_3-11.gz" not in after and after.keys() == before.keys()


def test_sharded_copy_and_partial_boxes(cv_layer, tmp_path):
    src, _, truth = cv_layer
    a = BigArray(str(src))
    dst = a.copy_to(str(tmp_path / "sh"), sharding="auto")
    np.testing.assert_array_equal(dst[...], truth)
    # A box of whole chunks into an existing sharded layer keeps the rest of its shard.
    other = BigArray.create(
        str(tmp_path / "sh2"),
        shape=SHAPE,
        dtype="uint16",
        chunks=CHUNKS,
        voxel_offset=(5, 0, 3),
        sharding="auto",
    )
    other[...] = 7
    a.copy_to(str(tmp_path / "sh2"), bbox=((5, 0, 3), (21, 16, 11)))
    expected = np.full(SHAPE, 7, np.uint16)
    expected[0:16, 0:16, 0:8] = truth[0:16, 0:16, 0:8]
    np.testing.assert_array_equal(other[...], expected)


def test_other_compression_or_encoding_transcodes(cv_layer, tmp_path):
    src, key, truth = cv_layer
    a = BigArray(str(src))
    plain = a.copy_to(str(tmp_path / "plain"), compression=None)
    np.testing.assert_array_equal(plain[...], truth)
    assert not any(n.endswith(".gz") for n in chunk_files(tmp_path / "plain", key))
    png = a.copy_to(str(tmp_path / "png"), encoding="png")
    np.testing.assert_array_equal(png[...], truth)


def test_a_corrupt_source_chunk_fails_the_copy(cv_layer, tmp_path):
    src, key, _ = cv_layer
    victim = src / key / "5-21_0-16_3-11.gz"
    good = gzip.decompress(victim.read_bytes())
    victim.write_bytes(gzip.compress(good[:-2]))  # valid gzip, wrong length
    with pytest.raises(ChunkDecodeError, match="5-21_0-16_3-11"):
        BigArray(str(src)).copy_to(str(tmp_path / "dst"))


@pytest.mark.parametrize("encoding", ["blosc", "blosclz"])
def test_copy_keeps_every_encoding_option(tmp_path, encoding):
    """A copy in the same encoding keeps the scale's encoding options, blosc's included
    (they used to be dropped: Python kept its own, shorter list of option keys)."""
    options = {"blosc_compressor": "zstd", "blosc_clevel": 9, "blosc_shuffle": 2}
    truth = np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE)
    src = BigArray.create(
        str(tmp_path / "src"), shape=SHAPE, dtype="uint16", chunks=CHUNKS,
        encoding=encoding, encoding_options=options,
    )  # fmt: skip
    src[...] = truth
    dst = src.copy_to(str(tmp_path / "dst"))
    scale = dst.info["scales"][0]
    assert {k: scale.get(k) for k in options} == options
    assert scale["encoding"] == encoding
    np.testing.assert_array_equal(dst[...], truth)
