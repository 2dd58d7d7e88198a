"""HTTP(S) stores (read-only) against Python's threaded ``http.server``, and the faults every
remote store must survive or report: injected 500s, 403, a stalled server, a stopped
server, a truncated object."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume
from conftest import FAST, HttpServer

import bigarrays
from bigarrays import BigArray


def make_layer(root: Path, compression: str | None) -> np.ndarray:
    a = BigArray.create(
        str(root), shape=(20, 12, 8), dtype="uint16", chunks=(8, 8, 8), compression=compression,
        voxel_offset=(4, 0, -8),
    )  # fmt: skip
    data = np.arange(20 * 12 * 8, dtype=np.uint16).reshape((20, 12, 8), order="F")
    a[a.bounds] = data
    return data


@pytest.mark.parametrize("compression", [None, "gzip", "zstd", "br"])
def test_reads_every_suffix_convention(http_server: HttpServer, compression: str | None) -> None:
    """A static server serves CloudVolume's ``<key>.gz`` files as they are: probing works."""
    data = make_layer(http_server.root / "layer", compression)
    a = BigArray(f"{http_server.url}/layer/", storage_options=FAST)
    np.testing.assert_array_equal(a[a.bounds], data)
    np.testing.assert_array_equal(a[5:13, 3:4, -7:-1], data[1:9, 3:4, 1:7])
    assert a.url == f"{http_server.url}/layer"


def test_reads_what_cloudvolume_wrote(http_server: HttpServer) -> None:
    root = http_server.root / "cv"
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], chunk_size=[8, 8, 8],
        volume_size=[20, 10, 9],
    )  # fmt: skip
    cv = CloudVolume(f"file://{root}", info=info, progress=False)
    cv.commit_info()
    data = np.asfortranarray(np.random.default_rng(1).integers(0, 255, (20, 10, 9), dtype=np.uint8))
    cv[:, :, :] = data
    np.testing.assert_array_equal(
        BigArray(f"{http_server.url}/cv", storage_options=FAST)[:, :, :], data
    )


def test_http_is_read_only(http_server: HttpServer) -> None:
    make_layer(http_server.root / "ro", None)
    a = BigArray(f"{http_server.url}/ro", storage_options=FAST)
    assert not a.writable
    with pytest.raises(bigarrays.StoreError, match="read-only"):
        a[4:12, 0:8, -8:0] = 1
    # The same layer through its directory takes the write.
    BigArray(http_server.root / "ro")[4:12, 0:8, -8:0] = 1
    with pytest.raises(bigarrays.InvalidArgumentError, match="aws_region"):
        BigArray(f"{http_server.url}/ro", storage_options={"aws_region": "x"})
    with pytest.raises(bigarrays.LayerNotFoundError):
        BigArray(f"{http_server.url}/nothing", storage_options=FAST)


def test_injected_500s_are_retried(http_server: HttpServer) -> None:
    data = make_layer(http_server.root / "flaky", "gzip")
    a = BigArray(f"{http_server.url}/flaky", storage_options=FAST)
    http_server.faults.fail_next_500 = 2  # within retries=2 for any single request
    np.testing.assert_array_equal(a[a.bounds], data)
    assert http_server.faults.fail_next_500 == 0


def test_persistent_500s_are_a_store_error(http_server: HttpServer) -> None:
    make_layer(http_server.root / "down", None)
    a = BigArray(f"{http_server.url}/down", storage_options=FAST)
    http_server.faults.fail_next_500 = 10_000
    with pytest.raises(bigarrays.StoreError, match=f"{http_server.url}/down/"):
        a[a.bounds]


def test_403_is_a_permission_error(http_server: HttpServer) -> None:
    make_layer(http_server.root / "secret", None)
    a = BigArray(f"{http_server.url}/secret", storage_options=FAST)
    http_server.faults.forbidden = True
    with pytest.raises(bigarrays.PermissionDeniedError, match=f"{http_server.url}/secret/"):
        a[a.bounds]


def test_stalled_server_hits_the_deadline(http_server: HttpServer) -> None:
    make_layer(http_server.root / "slow", None)
    options = {"retries": 0, "timeout": 0.5, "deadline": 1}
    a = BigArray(f"{http_server.url}/slow", storage_options=options)
    http_server.faults.stall.set()
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=f"{http_server.url}/slow/"):
        a[a.bounds]
    assert time.monotonic() - began < 5


def test_stopped_server_is_a_store_error(http_server: HttpServer) -> None:
    make_layer(http_server.root / "gone", None)
    a = BigArray(f"{http_server.url}/gone", storage_options=FAST)
    http_server.stop()
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=f"{http_server.url}/gone/"):
        a[a.bounds]
    assert time.monotonic() - began < 10


def test_server_dying_mid_read_is_a_store_error(http_server: HttpServer) -> None:
    make_layer(http_server.root / "dies", None)
    a = BigArray(f"{http_server.url}/dies", storage_options={**FAST, "concurrency": 2})
    http_server.faults.die_after = 2  # serves two chunks, then drops connections and stops
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=f"{http_server.url}/dies/"):
        a[a.bounds]
    assert time.monotonic() - began < 10
    assert http_server.faults.dead.is_set()


def test_truncated_chunk_names_the_key(http_server: HttpServer) -> None:
    make_layer(http_server.root / "cut", "gzip")
    chunk = sorted((http_server.root / "cut").glob("*/*.gz"))[-1]
    chunk.write_bytes(chunk.read_bytes()[:20])
    a = BigArray(f"{http_server.url}/cut", storage_options=FAST)
    with pytest.raises(bigarrays.ChunkDecodeError, match=chunk.stem):
        a[a.bounds]


def test_credentials_in_the_url_never_show(http_server: HttpServer) -> None:
    make_layer(http_server.root / "auth", None)
    secret_url = http_server.url.replace("http://", "http://reader:s3cr3t@") + "/auth"
    a = BigArray(secret_url, storage_options=FAST)
    assert "s3cr3t" not in a.url and "s3cr3t" not in repr(a)
    http_server.faults.forbidden = True
    with pytest.raises(bigarrays.PermissionDeniedError) as e:
        a[a.bounds]
    assert "s3cr3t" not in str(e.value) and "reader" not in str(e.value)
