"""Faults between bigarrays and real servers: moto (S3), fake-gcs-server (GCS reads), moto as
the GCS XML API (GCS writes) and ``http.server`` (HTTP), with ``faulty_proxy.FaultyProxy`` in
between returning 500/503, resetting connections, cutting answers short, stalling or
trickling.

Expected: transient faults are retried and the operation succeeds with the right data;
persistent ones fail with ``StoreError`` naming the URL, within a bounded time; a write that
fails raises (never reports success) and leaves the old chunk readable. Every test runs under
a hang guard (``faulthandler``) so a hang is a failure with tracebacks, not a stuck suite.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST, FakeGcs, HttpServer, Moto, RangeHandler
from faulty_proxy import FaultyProxy

import bigarrays
from bigarrays import BigArray

SHAPE = (32, 32, 16)
CHUNKS = (16, 16, 16)  # four chunks
KEY = "1_1_1"  # the scale key of resolution (1, 1, 1)
# Retries enough for every fault a test injects to land on one request; short timeouts.
OPTIONS = {"retries": "3", "timeout": "2", "deadline": "6"}
BOUND_S = 30.0  # "fails within": generous, never a timing assertion on the happy path
# Requests seen and faulted by the proxies, for docs/RELIABILITY.md (printed with -s).
SEEN: Counter[str] = Counter()


@pytest.fixture(autouse=True, scope="module")
def print_figures() -> Iterator[None]:
    yield
    for k in sorted(SEEN):
        print(f"{k}: {SEEN[k]}")


# Kills the run with every thread's traceback if a test hangs (conftest.hang_guard).
pytestmark = pytest.mark.hang_after(60)


def is_chunk(method: str, path: str) -> bool:
    path = urllib.parse.unquote(path.split("?", 1)[0])
    return not path.endswith("/info") and f"/{KEY}/" in path


def chunk_get(method: str, path: str) -> bool:
    return method == "GET" and is_chunk(method, path)


def chunk_put(method: str, path: str) -> bool:
    return method == "PUT" and is_chunk(method, path)


def volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asfortranarray(rng.integers(0, 255, SHAPE, dtype=np.uint8))


def make_local(path: Path, data: np.ndarray) -> None:
    a = BigArray.create(str(path), shape=SHAPE, dtype="uint8", chunks=CHUNKS, compression=None)
    a[a.bounds] = data


class Target:
    """One backend behind a proxy: ``open()`` goes through the proxy, ``direct()`` not."""

    def __init__(self, url: str, proxied: dict[str, Any], direct: dict[str, Any]) -> None:
        self.url = url
        self.proxied = proxied
        self.direct_options = direct

    def open(self, **extra: str) -> BigArray:
        return BigArray(self.url, storage_options={**self.proxied, **OPTIONS, **extra})

    def direct(self) -> BigArray:
        return BigArray(self.url, storage_options=self.direct_options)


def s3_target(moto: Moto, proxy_url: str, data: np.ndarray) -> Target:
    url = f"s3://{moto.bucket()}/faults/em"
    a = BigArray.create(
        url,
        shape=SHAPE,
        dtype="uint8",
        chunks=CHUNKS,
        compression=None,
        storage_options=moto.options(),
    )
    a[a.bounds] = data
    return Target(url, moto.options(endpoint=proxy_url, **FAST), moto.options())


def gcs_target(fake_gcs: FakeGcs, proxy_url: str, tmp: Path, data: np.ndarray) -> Target:
    """fake-gcs-server holds the layer (uploaded through its JSON API); reads only."""
    local = tmp / "gcs-src"
    make_local(local, data)
    bucket = fake_gcs.bucket()
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        fake_gcs.upload(bucket, f"faults/{f.relative_to(local).as_posix()}", f.read_bytes())
    creds = tmp / "via-proxy.json"
    account = json.loads(fake_gcs.credentials.read_text())
    creds.write_text(json.dumps({**account, "gcs_base_url": proxy_url}))
    return Target(
        f"gs://{bucket}/faults",
        {"service_account": str(creds)},
        fake_gcs.options(),
    )


def gcs_write_target(moto: Moto, proxy_url: str, data: np.ndarray) -> Target:
    """moto standing in for the GCS XML API (as in test_cloud_gcs.py): gs:// writes."""
    bucket = moto.gcs_bucket()
    direct = {"google_base_url": moto.endpoint, "bearer_token": "token", **OPTIONS}
    url = f"gs://{bucket}/faults"
    a = BigArray.create(
        url,
        shape=SHAPE,
        dtype="uint8",
        chunks=CHUNKS,
        compression=None,
        storage_options=direct,
    )
    a[a.bounds] = data
    return Target(url, {**direct, "google_base_url": proxy_url}, direct)


def http_target(server: HttpServer, proxy_url: str, data: np.ndarray) -> Target:
    make_local(server.root / "em", data)
    return Target(f"{proxy_url}/em", {}, {})


@pytest.fixture(params=["s3", "gcs", "http"])
def readable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Target, FaultyProxy, np.ndarray]]:
    data = volume(1)
    # Only the server this case needs (each fixture costs its own start and stop).
    server = request.getfixturevalue(
        {"s3": "moto", "gcs": "fake_gcs", "http": "http_server"}[request.param]
    )
    upstream = {"s3": "endpoint", "gcs": "base", "http": "url"}[request.param]
    host, port = getattr(server, upstream).removeprefix("http://").split(":")
    with FaultyProxy((host, int(port)), slow_bytes=512) as proxy:
        if request.param == "s3":
            target = s3_target(server, proxy.url, data)
        elif request.param == "gcs":
            target = gcs_target(server, proxy.url, tmp_path, data)
        else:
            target = http_target(server, proxy.url, data)
        yield target, proxy, data
        SEEN["requests"] += proxy.requests()
        SEEN["faulted"] += proxy.faulted()


@pytest.fixture(params=["s3", "gcs-xml"])
def writable(
    request: pytest.FixtureRequest, moto: Moto
) -> Iterator[tuple[Target, FaultyProxy, np.ndarray]]:
    data = volume(2)
    host, port = moto.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port))) as proxy:
        if request.param == "s3":
            target = s3_target(moto, proxy.url, data)
        else:
            target = gcs_write_target(moto, proxy.url, data)
        yield target, proxy, data
        SEEN["requests"] += proxy.requests()
        SEEN["faulted"] += proxy.faulted()


# -- reads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "503", "reset", "truncate", "slow"])
def test_transient_read_faults_are_retried(
    readable: tuple[Target, FaultyProxy, np.ndarray], fault: str
) -> None:
    target, proxy, data = readable
    a = target.open()
    # Three faults: at most three on any one request, within retries=3.
    proxy.inject(fault, count=3, match=chunk_get)
    np.testing.assert_array_equal(a[a.bounds], data)
    assert proxy.faulted(fault) == 3


@pytest.mark.parametrize("fault", ["503", "reset", "truncate"])
def test_persistent_read_faults_are_a_store_error(
    readable: tuple[Target, FaultyProxy, np.ndarray], fault: str
) -> None:
    target, proxy, _ = readable
    a = target.open()
    proxy.inject(fault, count=None, match=chunk_get)
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=f"/{KEY}/"):
        a[a.bounds]
    assert time.monotonic() - began < BOUND_S
    # One request per try: the first try and three retries, for some chunk.
    assert proxy.faulted(fault) >= 4


def test_stalled_reads_end_within_the_timeout(
    readable: tuple[Target, FaultyProxy, np.ndarray],
) -> None:
    target, proxy, _ = readable
    a = target.open(timeout="1", retries="1", deadline="3")
    proxy.inject("stall", count=None, match=chunk_get)
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=target.url.split("://")[1].split("/")[0]):
        a[a.bounds]
    assert time.monotonic() - began < BOUND_S


def test_one_stall_is_retried(readable: tuple[Target, FaultyProxy, np.ndarray]) -> None:
    target, proxy, data = readable
    a = target.open(timeout="1")
    proxy.inject("stall", count=1, match=chunk_get)
    np.testing.assert_array_equal(a[a.bounds], data)
    assert proxy.faulted("stall") == 1


# -- writes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "reset", "reset_after_upstream", "stall"])
def test_transient_write_faults_are_retried(
    writable: tuple[Target, FaultyProxy, np.ndarray], fault: str
) -> None:
    target, proxy, _ = writable
    a = target.open(timeout="1")
    new = volume(3)
    proxy.inject(fault, count=2, match=chunk_put)
    a[a.bounds] = new
    assert proxy.faulted(fault) == 2
    np.testing.assert_array_equal(target.direct()[a.bounds], new)


@pytest.mark.parametrize("fault", ["503", "reset", "stall"])
def test_failed_writes_raise_and_keep_the_old_chunks(
    writable: tuple[Target, FaultyProxy, np.ndarray], fault: str
) -> None:
    target, proxy, old = writable
    a = target.open(timeout="1", retries="1", deadline="3")
    proxy.inject(fault, count=None, match=chunk_put)
    began = time.monotonic()
    with pytest.raises(bigarrays.StoreError, match=f"/{KEY}/"):
        a[0:16, 0:16, 0:16] = 7  # one whole chunk: written without reading
    with pytest.raises(bigarrays.StoreError, match=f"/{KEY}/"):
        a[3:20, 0:5, 0:16] = 9  # two partial chunks: read, painted, written back
    assert time.monotonic() - began < 2 * BOUND_S
    assert proxy.faulted(fault) >= 4
    np.testing.assert_array_equal(target.direct()[a.bounds], old)


# -- sharded reads pinned to one version of the shard ---------------------------------------


class TaggedRangeHandler(RangeHandler):
    """``RangeHandler`` that sends an ETag (inode, mtime, size), weak (``W/``) with
    ``weak``, as nginx and Apache do."""

    weak = False

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            st = path.stat()
            tag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
            self.send_header("ETag", f"W/{tag}" if self.weak else tag)
        super().end_headers()


@pytest.mark.parametrize("weak", [False, True], ids=["strong-etag", "weak-etag"])
def test_sharded_reads_over_http_follow_a_rewritten_shard(tmp_path: Path, weak: bool) -> None:
    """A reader caches a shard's indexes over HTTP; the shard is rewritten (chunks of other
    sizes) behind its back. The reader's next answer carries another ETag, so the read
    starts again and sees the new data (it raised ChunkDecodeError before)."""
    handler = type("Tagged", (TaggedRangeHandler,), {"weak": weak})
    server = HttpServer(tmp_path / "www", handler)
    server.root.mkdir()
    try:
        root = server.root / "sharded"
        shape = (64, 64, 32)
        local = BigArray.create(
            str(root), shape=shape, dtype="uint8", chunks=CHUNKS, sharding="auto"
        )
        rng = np.random.default_rng(8)
        local[:, :, :] = rng.integers(0, 4, shape, dtype=np.uint8)
        remote = BigArray(f"{server.url}/sharded", storage_options=OPTIONS)
        np.testing.assert_array_equal(remote[:, :, :], local[:, :, :])  # indexes cached
        for _ in range(2):
            new = rng.integers(0, 255, shape, dtype=np.uint8)
            local[:, :, :] = new
            np.testing.assert_array_equal(remote[:, :, :], new)
            np.testing.assert_array_equal(remote[0:16, 0:16, 0:16], new[0:16, 0:16, 0:16])
    finally:
        server.stop()
