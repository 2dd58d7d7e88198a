"""Stores (local, memory, any Python mapping), the transport conventions in the wild, and the
error for every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import uuid

import numpy as np
import pytest
import zstandard
from volumes import INFO, values

import bigarrays
from bigarrays import BigArray

LEFT, RIGHT = "0-5_0-6_0-4", "5-10_0-6_0-4"


def write_layer(root, info=INFO, chunks=None):
    os.makedirs(root / "s0", exist_ok=True)
    (root / "info").write_text(info if isinstance(info, str) else json.dumps(info))
    for name, data in (chunks or {}).items():
        (root / "s0" / name).write_bytes(data)


def raw(a: np.ndarray) -> bytes:
    return a.tobytes(order="F")


def tree_digest(root) -> str:
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            h.update(path.encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


@pytest.mark.parametrize(
    "left_name, left_bytes",
    [
        (LEFT, gzip.compress(raw(values(0)))),  # BigArrays.jl: gzip body, no suffix
        (LEFT, zstandard.compress(raw(values(0)))),  # zstd body, no suffix
        (LEFT + ".gz", gzip.compress(raw(values(0)))),  # CloudVolume on disk
        (LEFT + ".zstd", zstandard.compress(raw(values(0)))),
        (LEFT, raw(values(0))),  # plain (TensorStore, static servers)
    ],
)
def test_every_transport_convention_reads(tmp_path, left_name, left_bytes):
    write_layer(
        tmp_path, chunks={left_name: left_bytes, RIGHT + ".gz": gzip.compress(raw(values(500)))}
    )
    got = BigArray(str(tmp_path))[:, :, :]
    np.testing.assert_array_equal(got, np.concatenate([values(0), values(500)]))


def test_zero_length_chunk_is_background(tmp_path):
    write_layer(tmp_path, chunks={LEFT: b"", RIGHT: raw(values(1))})
    got = BigArray(str(tmp_path), fill_missing=False)[:, :, :]
    assert not got[:5].any()
    np.testing.assert_array_equal(got[5:], values(1))


def test_python_mapping_store_round_trips():
    store: dict[str, bytes] = {}
    a = BigArray.create("layers/em", store=store, shape=(30, 20, 10), dtype="float32",
                        chunks=(16, 16, 8), compression=None)  # fmt: skip
    ref = np.random.default_rng(0).standard_normal((30, 20, 10)).astype(np.float32)
    a[a.bounds] = ref
    assert "layers/em/info" in store
    assert "layers/em/1_1_1/0-16_0-16_0-8" in store and len(store) == 1 + 2 * 2 * 2
    np.testing.assert_array_equal(BigArray("layers/em", store=store)[:, :, :], ref)


def test_a_mapping_key_prefix_is_never_taken_for_a_local_file(tmp_path, monkeypatch):
    """With store=, the URL is a key prefix: a local file or directory of that name (an
    ``.h5`` file, an H5s ``config.json``) does not make it an HDF5 layout."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vol.h5").write_bytes(b"not read")
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "config.json").write_text("{}")
    store: dict[str, bytes] = {}
    for prefix in ("vol.h5", "blocks"):
        BigArray.create(prefix, store=store, shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4))
        assert BigArray(prefix, store=store).format == "precomputed"
    with pytest.raises(bigarrays.InvalidArgumentError, match="h5s.*store="):
        BigArray("blocks", store=store, format="h5s")
    with pytest.raises(bigarrays.InvalidArgumentError, match="hdf5.*store="):
        BigArray("vol.h5", store=store, dataset="img")


def test_mapping_store_errors_become_store_errors():
    class Broken(dict):
        def __getitem__(self, key):
            if key.endswith("info"):
                return super().__getitem__(key)
            raise RuntimeError("disk on fire")

    store = Broken()
    BigArray.create("x", store=store, shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4))
    with pytest.raises(bigarrays.StoreError, match="disk on fire") as e:
        BigArray("x", store=store)[:, :, :]
    assert isinstance(e.value, OSError) and "x/1_1_1/0-4_0-4_0-4" in str(e.value)


def test_missing_chunks_fill_or_raise(tmp_path):
    write_layer(tmp_path, chunks={RIGHT: raw(values(3))})
    got = BigArray(str(tmp_path))[:, :, :]
    assert not got[:5].any()
    strict = BigArray(str(tmp_path), fill_missing=False)
    np.testing.assert_array_equal(strict[5:10, :, :], values(3))
    with pytest.raises(bigarrays.MissingChunkError, match=f"s0/{LEFT}") as e:
        strict[0:6, :, :]
    assert isinstance(e.value, KeyError)


@pytest.mark.parametrize(
    "body, reason",
    [
        (raw(values(0))[:-2], "holds 238 bytes, expected 240"),
        (raw(values(0)) + b"xx", "holds 242 bytes, expected 240"),
        (gzip.compress(raw(values(0)) * 2), "inflates past the expected 240 bytes"),
        (gzip.compress(raw(values(0)))[:-10], "gzip"),
        (zstandard.compress(b"\0" * 10_000_000), "zstd"),
    ],
)
def test_corrupt_chunks_raise_chunk_decode_error(tmp_path, body, reason):
    write_layer(tmp_path, chunks={LEFT: body})
    with pytest.raises(bigarrays.ChunkDecodeError, match=reason) as e:
        BigArray(str(tmp_path))[0:1, 0:1, 0:1]
    assert f"s0/{LEFT}" in str(e.value) and isinstance(e.value, ValueError)


def bad_info(**changes):
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


@pytest.mark.parametrize(
    "info, field",
    [
        ("{not json", "info"),
        ("[]", "info"),
        (bad_info(data_type=KeyError), "data_type"),
        (bad_info(data_type="complex128"), "data_type"),
        (bad_info(num_channels=0), "num_channels"),
        (bad_info(num_channels="1"), "num_channels"),
        (bad_info(type=KeyError), "type"),
        (bad_info(scales=[]), "scales"),
        (bad_info(scales__0__size=[10, -6, 4]), "scales[0].size"),
        (bad_info(scales__0__size=[10, 6]), "scales[0].size"),
        (bad_info(scales__0__size=[2**63 - 1, 1, 1]), "scales[0].size"),
        (bad_info(scales__0__chunk_sizes=[[0, 6, 4]]), "scales[0].chunk_sizes"),
        (bad_info(scales__0__chunk_sizes=[]), "scales[0].chunk_sizes"),
        (bad_info(scales__0__key="../../etc"), "scales[0].key"),
        (bad_info(scales__0__key="/etc"), "scales[0].key"),
        (bad_info(scales__0__resolution=KeyError), "scales[0].resolution"),
        (bad_info(scales__0__encoding=5), "scales[0].encoding"),
    ],
)
def test_bad_info_raises_info_error_naming_the_field(tmp_path, info, field):
    write_layer(tmp_path, info=info)
    with pytest.raises(bigarrays.InfoError, match=re.escape(f"'{field}'")) as e:
        BigArray(str(tmp_path))
    assert str(tmp_path) in str(e.value) and isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "info, field",
    [
        (bad_info(scales__0__encoding="zfpc"), "scales[0].encoding"),
        (
            bad_info(scales__0__sharding={"@type": "neuroglancer_uint64_sharded_v1"}),
            "scales[0].sharding",
        ),
    ],
)
def test_unsupported_layers_open_but_refuse_io(tmp_path, info, field):
    write_layer(tmp_path, info=info)
    a = BigArray(str(tmp_path))
    assert a.shape == (10, 6, 4)
    with pytest.raises(bigarrays.InfoError, match=re.escape(field)):
        a[:, :, :]
    with pytest.raises(bigarrays.InfoError, match=re.escape(field)):
        a[:, :, :] = 1


def test_opening_errors(tmp_path):
    with pytest.raises(bigarrays.LayerNotFoundError) as e:
        BigArray(str(tmp_path / "nope"))
    assert isinstance(e.value, FileNotFoundError) and "nope" in str(e.value)
    with pytest.raises(FileNotFoundError):
        BigArray(str(tmp_path))  # a directory with no info
    with pytest.raises(FileNotFoundError):
        BigArray(f"memory://{uuid.uuid4().hex}")
    write_layer(tmp_path)
    with pytest.raises(bigarrays.InvalidArgumentError, match="mip 3"):
        BigArray(str(tmp_path), mip=3)
    with pytest.raises(bigarrays.InvalidArgumentError, match="bogus"):
        BigArray(str(tmp_path), storage_options={"bogus": 1})
    with pytest.raises(bigarrays.InvalidArgumentError, match="xz"):
        BigArray(str(tmp_path), compression="xz")
    with pytest.raises(bigarrays.LayerNotFoundError):  # forced h5s: no config.json here
        BigArray(str(tmp_path), format="h5s")
    with pytest.raises(bigarrays.LayerNotFoundError, match="zarr.json"):  # forced Zarr
        BigArray(str(tmp_path), format="zarr")
    with pytest.raises(bigarrays.InvalidArgumentError, match="zarr_v4"):
        BigArray(str(tmp_path), format="zarr_v4")
    with pytest.raises(bigarrays.InvalidArgumentError, match="ftp://"):
        BigArray("ftp://host/layer")


def test_create_refuses_to_clobber(tmp_path):
    write_layer(tmp_path)
    before = tree_digest(tmp_path)
    with pytest.raises(bigarrays.LayerExistsError) as e:
        BigArray.create(str(tmp_path), shape=(4, 4, 4), dtype="uint8")
    assert isinstance(e.value, FileExistsError)
    assert tree_digest(tmp_path) == before
    a = BigArray.create(str(tmp_path), shape=(4, 4, 4), dtype="uint8", overwrite=True)
    assert a.shape == (4, 4, 4)
    with pytest.raises(bigarrays.InvalidArgumentError, match="zfpc"):
        BigArray.create(str(tmp_path / "j"), shape=(4, 4, 4), dtype="uint8", encoding="zfpc")
    with pytest.raises(bigarrays.InvalidArgumentError, match="complex"):
        BigArray.create(str(tmp_path / "c"), shape=(4, 4, 4), dtype="complex64")


def test_out_of_bounds_write_changes_nothing(tmp_path):
    a = BigArray.create(str(tmp_path), shape=(20, 20, 20), dtype="uint8", chunks=(8, 8, 8),
                        voxel_offset=(10, 0, 0))  # fmt: skip
    a[10:30, 0:20, 0:20] = 1
    before = tree_digest(tmp_path)
    for key in [np.s_[0:15, 0:5, 0:5], np.s_[25:31, 0:5, 0:5], np.s_[10:12, -1:3, 0:5],
                np.s_[10:12, 0:3, 19:21], np.s_[9, 0, 0]]:  # fmt: skip
        with pytest.raises(bigarrays.OutOfBoundsError) as e:
            a[key] = 2
        assert isinstance(e.value, IndexError) and "nothing was written" in str(e.value)
    assert tree_digest(tmp_path) == before
    assert (a[a.bounds] == 1).all()


def test_wrong_value_shape_is_a_value_error():
    a = BigArray.create(f"memory://{uuid.uuid4().hex}", shape=(4, 4, 4), dtype="uint8")
    with pytest.raises(ValueError):
        a[0:2, 0:2, 0:2] = np.zeros((3, 3, 3), np.uint8)


def test_any_mip_and_file_urls(tmp_path):
    info = bad_info()
    info["scales"].append(
        {"key": "s1", "size": [5, 3, 4], "voxel_offset": [0, 0, 0], "resolution": [2, 2, 1],
         "chunk_sizes": [[4, 4, 4]], "encoding": "raw"}
    )  # fmt: skip
    write_layer(tmp_path, info=info, chunks={LEFT: raw(values(0))})
    low = (np.arange(4 * 3 * 4, dtype=np.uint16) + 7).reshape((4, 3, 4), order="F")
    os.makedirs(tmp_path / "s1")
    (tmp_path / "s1" / "0-4_0-3_0-4.gz").write_bytes(gzip.compress(raw(low)))
    a = BigArray(f"file://{tmp_path}", mip=1)
    assert a.mip == 1 and a.num_mips == 2 and a.shape == (5, 3, 4)
    assert a.resolution == (2, 2, 1) and a.url == f"file://{tmp_path}"
    np.testing.assert_array_equal(a[0:4, :, :], low)
    assert not a[4:5, :, :].any()  # chunk 4-5 was never written
    np.testing.assert_array_equal(BigArray(str(tmp_path))[0:5, :, :], values(0))


def test_concurrent_readers_and_writers_from_python_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    a = BigArray.create(str(tmp_path), shape=(64, 64, 64), dtype="uint32", chunks=(16, 16, 16))

    def work(i: int) -> bool:
        z = slice(16 * (i % 4), 16 * (i % 4) + 16)
        a[:, :, z] = i % 4 + 1  # disjoint chunk-aligned slabs
        return bool((a[:, :, z] == i % 4 + 1).all())

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))
    got = BigArray(str(tmp_path))[:, :, :]
    assert [int(got[0, 0, 16 * k]) for k in range(4)] == [1, 2, 3, 4]


def test_file_urls_are_decoded_as_rfc_8089_says(tmp_path):
    # Spaces arrive %-escaped, and file://localhost/ is this machine (drive letters and UNC
    # shares are unit-tested in the engine, for Windows).
    path = tmp_path / "my layer"
    a = BigArray.create(str(path), shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4))
    a[:, :, :] = 9
    for url in (f"file://{path}", f"file://{tmp_path}/my%20layer", f"file://localhost{path}"):
        b = BigArray(url)
        assert b[1, 2, 3] == 9 and b.url == f"file://{path}", url
