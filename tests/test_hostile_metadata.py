"""Hostile metadata: ``info`` files (and H5s ``config.json``, aligned ``registry.txt``) that
are not JSON, miss fields, have wrong types, absurd or negative sizes, escaping keys,
unknown encodings or dtypes, impossible sharding specs. Each must be an ``InfoError`` naming
the field, raised when the layer is opened or at the latest when it is first read or
written, and nothing outside the layer directory may ever be read or written."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from volumes import INFO

import bigarrays
from bigarrays import BigArray

BIG = 2**62  # info coordinates must stay below this
SHARDING = {
    "@type": "neuroglancer_uint64_sharded_v1",
    "preshift_bits": 0,
    "hash": "identity",
    "minishard_bits": 1,
    "shard_bits": 1,
    "minishard_index_encoding": "raw",
    "data_encoding": "raw",
}


def bomb(compressor, n: int, block: bytes = b" " * (1 << 20)) -> bytes:
    """``n`` bytes of ``block`` through a streaming compressor (never all in memory)."""
    out = [compressor.compress(block) for _ in range(n // len(block))]
    return b"".join(out) + compressor.flush()


def info_with(**changes) -> dict:
    """INFO with ``a__b__0__c=value`` changes (``KeyError`` deletes the key)."""
    info = json.loads(json.dumps(INFO))
    for path, value in changes.items():
        target = info
        *parents, last = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return info


def scale(**changes) -> dict:
    return info_with(**{f"scales__0__{k}": v for k, v in changes.items()})


def sharded(**changes) -> dict:
    spec = {k: v for k, v in {**SHARDING, **changes}.items() if v is not KeyError}
    return scale(sharding=spec)


# (id, info (dict, or the file's text/bytes), the field the error must name)
CASES = [
    # not JSON, or JSON of the wrong shape
    ("empty", b"", "info"),
    ("not-json", "{not json", "info"),
    ("binary", bytes(range(256)), "info"),
    ("utf16", json.dumps(INFO).encode("utf-16"), "info"),
    ("truncated", json.dumps(INFO)[:-7], "info"),
    ("null", "null", "info"),
    ("number", "42", "info"),
    ("string", '"info"', "info"),
    ("list", "[]", "info"),
    ("deep-nesting", "[" * 100_000 + "]" * 100_000, "info"),
    ("trailing-garbage", json.dumps(INFO) + " x", "info"),
    ("over-64MiB", json.dumps(INFO).encode() + b" " * (64 << 20), "info"),
    ("gzip-bomb", bomb(zlib.compressobj(9, zlib.DEFLATED, 31), 80 << 20), "info"),
    ("zstd-bomb", bomb(zstandard.ZstdCompressor().compressobj(), 80 << 20), "info"),
    ("gzip-corrupt", gzip.compress(json.dumps(INFO).encode())[:-12], "info"),
    ("gzip-of-garbage", gzip.compress(bytes(range(256))), "info"),
    # missing fields
    ("no-data_type", info_with(data_type=KeyError), "data_type"),
    ("no-num_channels", info_with(num_channels=KeyError), "num_channels"),
    ("no-type", info_with(type=KeyError), "type"),
    ("no-scales", info_with(scales=KeyError), "scales"),
    ("no-key", scale(key=KeyError), "scales[0].key"),
    ("no-size", scale(size=KeyError), "scales[0].size"),
    ("no-chunk_sizes", scale(chunk_sizes=KeyError), "scales[0].chunk_sizes"),
    ("no-resolution", scale(resolution=KeyError), "scales[0].resolution"),
    ("no-encoding", scale(encoding=KeyError), "scales[0].encoding"),
    # wrong types
    ("data_type-int", info_with(data_type=5), "data_type"),
    ("data_type-list", info_with(data_type=["uint8"]), "data_type"),
    ("num_channels-str", info_with(num_channels="1"), "num_channels"),
    ("num_channels-float", info_with(num_channels=1.5), "num_channels"),
    ("num_channels-bool", info_with(num_channels=True), "num_channels"),
    ("type-int", info_with(type=1), "type"),
    ("scales-dict", info_with(scales={"0": INFO["scales"][0]}), "scales"),
    ("scales-str", info_with(scales="s0"), "scales"),
    ("scales-empty", info_with(scales=[]), "scales"),
    ("scale-int", info_with(scales=[5]), "scales[0]"),
    ("scale-null", info_with(scales=[None]), "scales[0]"),
    ("second-scale-bad", info_with(scales=[INFO["scales"][0], {"key": "s1"}]), "scales[1].size"),
    ("key-int", scale(key=5), "scales[0].key"),
    ("key-null", scale(key=None), "scales[0].key"),
    ("size-str", scale(size="10,6,4"), "scales[0].size"),
    ("size-2d", scale(size=[10, 6]), "scales[0].size"),
    ("size-4d", scale(size=[10, 6, 4, 1]), "scales[0].size"),
    ("size-float", scale(size=[10.5, 6, 4]), "scales[0].size"),
    ("size-bool", scale(size=[True, 6, 4]), "scales[0].size"),
    ("size-null", scale(size=[None, 6, 4]), "scales[0].size"),
    ("voxel_offset-str", scale(voxel_offset=["0", 0, 0]), "scales[0].voxel_offset"),
    ("voxel_offset-2d", scale(voxel_offset=[0, 0]), "scales[0].voxel_offset"),
    ("chunk_sizes-flat", scale(chunk_sizes=[5, 6, 4]), "scales[0].chunk_sizes"),
    ("chunk_sizes-str", scale(chunk_sizes="5,6,4"), "scales[0].chunk_sizes"),
    ("chunk_sizes-empty", scale(chunk_sizes=[]), "scales[0].chunk_sizes"),
    ("chunk_sizes-float", scale(chunk_sizes=[[5.5, 6, 4]]), "scales[0].chunk_sizes"),
    ("resolution-2d", scale(resolution=[1, 1]), "scales[0].resolution"),
    ("resolution-str", scale(resolution=["a", 1, 1]), "scales[0].resolution"),
    ("encoding-int", scale(encoding=5), "scales[0].encoding"),
    ("encoding-null", scale(encoding=None), "scales[0].encoding"),
    # negative and zero sizes
    ("num_channels-zero", info_with(num_channels=0), "num_channels"),
    ("num_channels-negative", info_with(num_channels=-1), "num_channels"),
    ("size-negative", scale(size=[10, -6, 4]), "scales[0].size"),
    ("chunk-zero", scale(chunk_sizes=[[0, 6, 4]]), "scales[0].chunk_sizes"),
    ("chunk-negative", scale(chunk_sizes=[[5, -6, 4]]), "scales[0].chunk_sizes"),
    # absurd sizes
    ("size-2^63", scale(size=[2**63, 1, 1]), "scales[0].size"),
    ("size-2^63-1", scale(size=[2**63 - 1, 1, 1]), "scales[0].size"),
    ("size-2^62", scale(size=[BIG, 1, 1]), "scales[0].size"),
    ("size-2^64", scale(size=[2**64, 1, 1]), "scales[0].size"),
    ("size-2^100", scale(size=[2**100, 1, 1]), "scales[0].size"),
    ("size-1e300", scale(size=[1e300, 1, 1]), "scales[0].size"),
    ("offset-2^63", scale(voxel_offset=[0, -(2**63), 0]), "scales[0].voxel_offset"),
    ("offset-2^62", scale(voxel_offset=[0, 0, BIG]), "scales[0].voxel_offset"),
    ("chunk-2^63", scale(chunk_sizes=[[2**63 - 1, 1, 1]]), "scales[0].chunk_sizes"),
    ("chunk-over-4GiB", scale(chunk_sizes=[[2**12, 2**12, 2**12]]), "scales[0].chunk_sizes"),
    # chunk volume × bytes per voxel overflows u64 (each edge alone is fine)
    ("chunk-product-overflow", scale(chunk_sizes=[[2**30, 2**30, 2**30]]), "scales[0].chunk_sizes"),
    (
        "chunk-bytes-overflow",
        info_with(num_channels=65536, scales__0__chunk_sizes=[[2**20, 2**20, 2**4]]),
        "scales[0].chunk_sizes",
    ),
    ("num_channels-2^16+1", info_with(num_channels=65537), "num_channels"),
    ("num_channels-2^64", info_with(num_channels=2**64), "num_channels"),
    # keys that would leave the layer
    ("key-dotdot", scale(key=".."), "scales[0].key"),
    ("key-parent", scale(key="../secret"), "scales[0].key"),
    ("key-parents", scale(key="../../etc"), "scales[0].key"),
    ("key-inner-parents", scale(key="a/../../secret"), "scales[0].key"),
    ("key-absolute", scale(key="/etc"), "scales[0].key"),
    ("key-absolute-tmp", scale(key="/tmp/secret"), "scales[0].key"),
    ("key-backslash", scale(key="..\\secret"), "scales[0].key"),
    ("key-drive", scale(key="C:\\secret"), "scales[0].key"),
    ("key-url", scale(key="file:///etc"), "scales[0].key"),
    ("key-s3", scale(key="s3://bucket/x"), "scales[0].key"),
    ("key-empty", scale(key=""), "scales[0].key"),
    ("key-dot", scale(key="."), "scales[0].key"),
    ("key-slashes", scale(key="//"), "scales[0].key"),
    ("key-nul", scale(key="s0\x00/../../x"), "scales[0].key"),
    # unknown dtypes; encoding parameters out of range
    ("dtype-complex", info_with(data_type="complex64"), "data_type"),
    ("dtype-object", info_with(data_type="object"), "data_type"),
    ("dtype-empty", info_with(data_type=""), "data_type"),
    ("dtype-int128", info_with(data_type="int128"), "data_type"),
    ("dtype-float16", info_with(data_type="float16"), "data_type"),
    ("dtype-u8-endian", info_with(data_type=">u2"), "data_type"),
    ("jpeg_quality-101", scale(encoding="jpeg", jpeg_quality=101), "scales[0].jpeg_quality"),
    ("jpeg_quality-str", scale(encoding="jpeg", jpeg_quality="85"), "scales[0].jpeg_quality"),
    ("png_level-10", scale(encoding="png", png_level=10), "scales[0].png_level"),
    (
        "cseg-block-zero",
        scale(encoding="compressed_segmentation", compressed_segmentation_block_size=[0, 8, 8]),
        "scales[0].compressed_segmentation_block_size",
    ),
    (
        "cseg-block-2d",
        scale(encoding="compressed_segmentation", compressed_segmentation_block_size=[8, 8]),
        "scales[0].compressed_segmentation_block_size",
    ),
    (
        "cseg-block-2^40",
        scale(encoding="compressed_segmentation", compressed_segmentation_block_size=[2**40, 1, 1]),
        "scales[0].compressed_segmentation_block_size",
    ),
    (
        "blosc-compressor",
        scale(encoding="blosc", blosc_compressor="xz"),
        "scales[0].blosc_compressor",
    ),
    ("blosc-clevel", scale(encoding="blosc", blosc_clevel=10), "scales[0].blosc_clevel"),
    ("blosc-shuffle", scale(encoding="blosc", blosc_shuffle=-1), "scales[0].blosc_shuffle"),
    # unknown encodings and encodings that cannot hold the dtype: open, refuse IO
    ("encoding-zfpc", scale(encoding="zfpc"), "scales[0].encoding"),
    ("encoding-empty", scale(encoding=""), "scales[0].encoding"),
    ("encoding-path", scale(encoding="../raw"), "scales[0].encoding"),
    ("jpeg-uint16", scale(encoding="jpeg"), "data_type"),
    (
        "png-channels",
        info_with(num_channels=5, scales__0__encoding="png", data_type="uint8"),
        "num_channels",
    ),
    ("cseg-uint16", scale(encoding="compressed_segmentation"), "data_type"),
    # sharding specs
    ("sharding-str", scale(sharding="yes"), "scales[0].sharding"),
    ("sharding-list", scale(sharding=[1]), "scales[0].sharding"),
    ("sharding-no-type", sharded(**{"@type": KeyError}), "scales[0].sharding.@type"),
    ("sharding-wrong-type", sharded(**{"@type": "zarr"}), "scales[0].sharding.@type"),
    ("sharding-hash", sharded(hash="md5"), "scales[0].sharding.hash"),
    ("sharding-no-hash", sharded(hash=KeyError), "scales[0].sharding.hash"),
    ("sharding-bits-negative", sharded(shard_bits=-1), "scales[0].sharding.shard_bits"),
    ("sharding-bits-str", sharded(preshift_bits="1"), "scales[0].sharding.preshift_bits"),
    ("sharding-bits-float", sharded(minishard_bits=1.5), "scales[0].sharding.minishard_bits"),
    ("sharding-preshift-65", sharded(preshift_bits=65), "scales[0].sharding.preshift_bits"),
    ("sharding-shard-2^64", sharded(shard_bits=2**64), "scales[0].sharding.shard_bits"),
    ("sharding-minishard-33", sharded(minishard_bits=33), "scales[0].sharding.minishard_bits"),
    ("sharding-sum-65", sharded(minishard_bits=32, shard_bits=33), "scales[0].sharding.shard_bits"),
    (
        "sharding-sum-128",
        sharded(minishard_bits=32, shard_bits=64),
        "scales[0].sharding.shard_bits",
    ),
    ("sharding-no-bits", sharded(minishard_bits=KeyError), "scales[0].sharding.minishard_bits"),
    (
        "sharding-data-zstd",
        sharded(data_encoding="zstd"),
        "scales[0].sharding.data_encoding",
    ),
    (
        "sharding-index-int",
        sharded(minishard_index_encoding=1),
        "scales[0].sharding.minishard_index_encoding",
    ),
]


def write_info(root: Path, info) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(info, dict):
        info = json.dumps(info)
    (root / "info").write_bytes(info if isinstance(info, bytes) else info.encode())


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def use(a: BigArray) -> None:
    """Read, then write: every way a hostile scale could be reached."""
    a[0:1, 0:1, 0:1]
    a[0:1, 0:1, 0:1] = 1


def check_info_error(e: pytest.ExceptionInfo, field: str, url: str) -> None:
    assert isinstance(e.value, ValueError) and isinstance(e.value, bigarrays.BigArrayError)
    assert re.search(re.escape(f"'{field}'"), str(e.value)), str(e.value)
    assert url in str(e.value), str(e.value)


@pytest.mark.parametrize("info, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_info_is_an_info_error_naming_the_field(tmp_path, info, field):
    # A sentinel layer next to this one, with chunks at every key an escape could reach.
    secret = tmp_path / "secret"
    (secret / "s0").mkdir(parents=True)
    for name in ("0-5_0-6_0-4", "0-1_0-1_0-1", "s0/0-5_0-6_0-4"):
        (secret / name).write_bytes(b"\x07" * 240)
    root = tmp_path / "layer"
    write_info(root, info)
    before = tree(tmp_path)
    with pytest.raises(bigarrays.InfoError) as e:
        use(BigArray(str(root)))  # open, read, write: the error may come at any of them
    check_info_error(e, field, str(root))
    assert tree(tmp_path) == before  # nothing read is observable, nothing written anywhere


@pytest.mark.parametrize(
    "info, field",
    [c[1:] for c in CASES if c[0].startswith(("key-", "size-", "chunk-", "sharding-sum"))],
    ids=[c[0] for c in CASES if c[0].startswith(("key-", "size-", "chunk-", "sharding-sum"))],
)
def test_hostile_info_in_a_python_mapping_store(info, field):
    store = {"layer/info": json.dumps(info).encode()}
    with pytest.raises(bigarrays.InfoError) as e:
        use(BigArray("layer", store=store))
    check_info_error(e, field, "layer")
    assert list(store) == ["layer/info"]


def test_zero_sized_layers_open_and_read_empty(tmp_path):
    # Zero is a legal extent (an empty layer), not an error: it reads and writes nothing.
    write_info(tmp_path, scale(size=[0, 6, 4]))
    a = BigArray(str(tmp_path))
    assert a.shape == (0, 6, 4) and a[:, :, :].shape == (0, 6, 4)
    with pytest.raises(bigarrays.OutOfBoundsError):
        a[0:1, 0:1, 0:1] = 1
    assert sorted(os.listdir(tmp_path)) == ["info"]


def test_a_normalised_key_stays_inside_the_layer(tmp_path):
    # "a/../s0" is "s0": allowed, and it reads the layer's own chunk, not a sibling's.
    root = tmp_path / "layer"
    write_info(root, scale(key="a/../s0/."))
    (root / "s0").mkdir()
    (root / "s0" / "0-5_0-6_0-4").write_bytes(np.full(120, 3, "<u2").tobytes())
    a = BigArray(str(root))
    assert (a[0:5, :, :] == 3).all()
    a[5:10, :, :] = 9
    assert sorted(os.listdir(root / "s0")) == ["0-5_0-6_0-4", "5-10_0-6_0-4.gz"]
    assert sorted(os.listdir(tmp_path)) == ["layer"]


def test_percent_encoded_dots_are_a_plain_directory_name(tmp_path):
    # "%2e%2e" is not ".." to the local store: a layer keyed so writes below itself.
    root = tmp_path / "layer"
    write_info(root, scale(key="%2e%2e"))
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "0-5_0-6_0-4").write_bytes(b"\x07" * 240)
    a = BigArray(str(root), fill_missing=True)
    assert not a[0:5, :, :].any()
    a[0:5, :, :] = 1
    outside = {p for p in tree(tmp_path) if not p.startswith("layer/")}
    assert outside == {"secret/0-5_0-6_0-4"}


# --- BigArrays.jl's H5s config.json -----------------------------------------------------

H5S = {"dataType": "UInt8", "blockSize": [8, 8, 4], "chunkSize": [4, 4, 2], "size": [8, 8, 4]}

H5S_CASES = [
    ("not-json", "{", "(file)"),
    ("list", "[1, 2]", "(file)"),
    ("binary", bytes(range(256)), "(file)"),
    ("no-dataType", {**H5S, "dataType": None}, "dataType"),
    ("dataType-int", {**H5S, "dataType": 8}, "dataType"),
    ("dataType-unknown", {**H5S, "dataType": "Complex64"}, "dataType"),
    ("prefix-int", {**H5S, "h5FilePrefix": 5}, "h5FilePrefix"),
    ("prefix-parent", {**H5S, "h5FilePrefix": "../secret/block_"}, "h5FilePrefix"),
    ("prefix-absolute", {**H5S, "h5FilePrefix": "/tmp/block_"}, "h5FilePrefix"),
    ("prefix-backslash", {**H5S, "h5FilePrefix": "..\\block_"}, "h5FilePrefix"),
    ("prefix-dotdot", {**H5S, "h5FilePrefix": ".."}, "h5FilePrefix"),
    ("block-zero", {**H5S, "blockSize": [0, 8, 4]}, "blockSize"),
    ("block-negative", {**H5S, "blockSize": [-8, 8, 4]}, "blockSize"),
    ("block-2d", {**H5S, "blockSize": [8, 8]}, "blockSize"),
    ("block-str", {**H5S, "blockSize": "8,8,4"}, "blockSize"),
    ("block-2^63", {**H5S, "blockSize": [2**63, 8, 4]}, "blockSize"),
    (
        "block-channels-2^40",
        {**H5S, "blockSize": [8, 8, 4, 2**40], "chunkSize": [4, 4, 2, 1]},
        "blockSize",
    ),
    ("chunk-zero", {**H5S, "chunkSize": [4, 0, 2]}, "chunkSize"),
    ("chunk-rank", {**H5S, "chunkSize": [4, 4]}, "chunkSize"),
    ("offset-str", {**H5S, "globalOffset": ["0", 0, 0]}, "globalOffset"),
    ("offset-2d", {**H5S, "globalOffset": [0, 0]}, "globalOffset"),
    ("offset-channel", {**H5S, "globalOffset": [0, 0, 0, 1]}, "globalOffset"),
    ("offset-2^63", {**H5S, "globalOffset": [-(2**63), 0, 0]}, "globalOffset"),
    ("offset-2^62", {**H5S, "globalOffset": [2**62, 0, 0]}, "globalOffset"),
    ("size-negative", {**H5S, "size": [-8, 8, 4]}, "size"),
    ("size-2^63", {**H5S, "size": [2**63, 8, 4]}, "size"),
    ("size-2^62", {**H5S, "size": [2**62, 8, 4]}, "size"),
    ("size-2d", {**H5S, "size": [8, 8]}, "size"),
    ("compression-unknown", {**H5S, "compression": "lzma"}, "compression"),
    ("compression-int", {**H5S, "compression": 1}, "compression"),
]


@pytest.mark.parametrize("config, field", [c[1:] for c in H5S_CASES], ids=[c[0] for c in H5S_CASES])
def test_hostile_h5s_config_is_an_info_error_naming_the_field(tmp_path, config, field):
    root = tmp_path / "layer"
    root.mkdir()
    text = json.dumps(config) if isinstance(config, dict) else config
    (root / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "secret").mkdir()
    before = tree(tmp_path)
    with pytest.raises(bigarrays.InfoError) as e:
        use(BigArray(str(root), format="h5s"))
    check_info_error(e, field, str(root))
    assert tree(tmp_path) == before


def test_h5s_block_names_with_absurd_ranges_are_ignored(tmp_path):
    # Block files are found by name when config.json declares no size; a name whose ranges
    # would overflow i64 arithmetic (offset 5 + 2^63 - 1) is not a block of this layer.
    root = tmp_path / "layer"
    root.mkdir()
    config = {k: v for k, v in H5S.items() if k != "size"}
    (root / "config.json").write_text(json.dumps({**config, "globalOffset": [5, 0, 0]}))
    for name in (
        "block_1-9223372036854775807_1-8_1-4.h5",
        "block_-9223372036854775808-1_1-8_1-4.h5",
    ):
        (root / name).write_bytes(b"")
    a = BigArray(str(root), format="h5s")
    assert a.shape == (0, 0, 0)


# --- BigArrays.jl's aligned registry.txt -------------------------------------------------

REGISTRY_CASES = [
    ("fields-3", "sec 0 0 8", "line 1"),
    ("fields-8", "sec 0 0 0 8 8 0 9", "line 1"),
    ("xoff-str", "sec zero 0 8 8 0", "line 1"),
    ("ydim-float", "sec 0 0 8 8.5 0", "line 1"),
    ("xdim-negative", "sec 0 0 -8 8 0", "line 1"),
    ("xoff-2^63", f"sec {2**63} 0 8 8 0", "line 1"),
    ("xoff-2^62", f"sec {2**62} 0 8 8 0", "line 1"),
    ("ydim-2^62", f"sec 0 0 8 {2**62} 0", "line 1"),
    ("xoff-1e300", "sec 1e300 0 8 8 0", "line 1"),
    ("second-line", "sec 0 0 8 8 0\nsec 0 0 8", "line 2"),
    ("name-parent", "../secret/sec 0 0 8 8 0", "line 1"),
    ("name-absolute", "/tmp/sec 0 0 8 8 0", "line 1"),
    ("name-dotdot", ".. 0 0 8 8 0", "line 1"),
    ("name-backslash", "..\\sec 0 0 8 8 0", "line 1"),
    ("binary", b"\xff\xfe 0 0 8 8 0", "(file)"),
]


@pytest.mark.parametrize(
    "registry, field", [c[1:] for c in REGISTRY_CASES], ids=[c[0] for c in REGISTRY_CASES]
)
def test_hostile_registry_is_an_info_error_naming_the_line(tmp_path, registry, field):
    root = tmp_path / "layer"
    root.mkdir()
    data = registry if isinstance(registry, bytes) else registry.encode()
    (root / "registry.txt").write_bytes(data + b"\n")
    (tmp_path / "secret").mkdir()
    before = tree(tmp_path)
    with pytest.raises(bigarrays.InfoError) as e:
        BigArray(str(root), format="aligned")[0:1, 0:1, 0:1]
    check_info_error(e, field, str(root))
    assert tree(tmp_path) == before


def test_a_compressed_info_within_the_bound_still_opens(tmp_path):
    # The bounds above refuse bombs, not compression: a gzip or zstd info opens.
    for i, compress in enumerate((gzip.compress, zstandard.compress)):
        write_info(tmp_path / str(i), compress(json.dumps(INFO).encode()))
        assert BigArray(str(tmp_path / str(i))).shape == (10, 6, 4)
