"""Concurrent writers and readers of one layer (local disk unless said otherwise).

Safe, and tested here: N threads sharing one handle, N threads with a handle each, and N
processes, writing disjoint chunk-aligned boxes (nothing lost, compared with a NumPy model);
readers running during writes (every chunk they see is one that was written whole); processes
writing disjoint shards of a sharded layer.

Not safe in a Python mapping without ``compare_and_set``, and demonstrated here
deterministically (a mapping store whose reads wait at a barrier, so both writers read before
either writes): two writers painting different voxels of the same chunk (read-modify-write of
a partial chunk) lose one update; two writers of different chunks of the same shard lose one
at shard granularity (the last rewrite wins). Local disks, buckets, memory and mappings with
``compare_and_set`` put conditionally and lose nothing (here for S3 and memory;
test_local_conditional.py for local disks and mappings).
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Moto, run_threads
from faulty_proxy import FaultyProxy
from volumes import SMALL_SHARDING

from bigarrays import BigArray

SHAPE = (128, 128, 64)
CHUNKS = (16, 16, 16)
N = 8  # writers
SHARDING = SMALL_SHARDING  # 16 shards of 4 × 2 × 2 chunks


# Kills the run with every thread's traceback if a test hangs (conftest.hang_guard).
pytestmark = pytest.mark.hang_after(120)


def model(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asfortranarray(rng.integers(1, 255, SHAPE, dtype=np.uint8))


def boxes(worker: int, n: int = N) -> list[tuple[slice, slice, slice]]:
    """Worker ``worker``'s disjoint chunk-aligned boxes: every n-th 16-wide x slab, split
    into a few writes of different shapes."""
    out = []
    for x in range(worker * 16, SHAPE[0], n * 16):
        out.append((slice(x, x + 16), slice(0, 48), slice(0, 64)))
        out.append((slice(x, x + 16), slice(48, 128), slice(0, 32)))
        out.append((slice(x, x + 16), slice(48, 128), slice(32, 64)))
    return out


def write_boxes(url: str, worker: int, n: int, compression: str | None) -> None:
    a = BigArray(url, compression=compression)
    data = model()
    for box in boxes(worker, n):
        a[box] = data[box]


def create(root: Path, **kw: Any) -> BigArray:
    return BigArray.create(str(root), shape=SHAPE, dtype="uint8", chunks=CHUNKS, **kw)


# -- disjoint aligned writers: nothing lost -------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", None])
def test_threads_sharing_one_handle(tmp_path: Path, compression: str | None) -> None:
    a = create(tmp_path / "l", compression=compression)
    data = model()

    def worker(i: int) -> Any:
        return lambda: [a.__setitem__(box, data[box]) for box in boxes(i)]

    run_threads([worker(i) for i in range(N)])
    np.testing.assert_array_equal(BigArray(str(tmp_path / "l"))[:, :, :], data)


def test_threads_with_a_handle_each(tmp_path: Path) -> None:
    create(tmp_path / "l")
    url = str(tmp_path / "l")
    run_threads([lambda i=i: write_boxes(url, i, N, "gzip") for i in range(N)])
    np.testing.assert_array_equal(BigArray(url)[:, :, :], model())


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_processes(tmp_path: Path, method: str) -> None:
    url = str(tmp_path / "l")
    a = create(tmp_path / "l")
    if method == "fork":
        a[0:16, 0:16, 0:16]  # a read first: the child rebuilds the IO runtime
    n = 4
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(n) as pool:
        pool.starmap(write_boxes, [(url, i, n, "gzip") for i in range(n)])
    np.testing.assert_array_equal(BigArray(url)[:, :, :], model())


def test_processes_writing_disjoint_shards(tmp_path: Path) -> None:
    """Each process writes whole shards (blocks of 64 × 32 × 32 voxels) of its own."""
    url = str(tmp_path / "l")
    create(tmp_path / "l", sharding=SHARDING)
    n = 4
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n) as pool:
        pool.starmap(write_shards, [(url, i, n) for i in range(n)])
    np.testing.assert_array_equal(BigArray(url)[:, :, :], model())
    assert len(list((tmp_path / "l").rglob("*.shard"))) == 16


def shard_boxes(worker: int, n: int) -> list[tuple[slice, slice, slice]]:
    out = []
    blocks = [(x, y, z) for x in range(0, 128, 64) for y in range(0, 128, 32) for z in (0, 32)]
    for k, (x, y, z) in enumerate(blocks):
        if k % n == worker:
            out.append((slice(x, x + 64), slice(y, y + 32), slice(z, z + 32)))
    return out


def write_shards(url: str, worker: int, n: int) -> None:
    a = BigArray(url)
    data = model()
    for box in shard_boxes(worker, n):
        a[box] = data[box]


# -- readers during writes -------------------------------------------------------------------


@pytest.mark.parametrize("sharded", [False, True], ids=["chunks", "sharded"])
def test_readers_never_see_torn_chunks(tmp_path: Path, sharded: bool) -> None:
    """A writer repaints the layer (an unaligned box, so edge chunks are read-modify-written)
    with value r in round r while readers read it whole: every chunk a reader sees holds one
    value inside the box, one a writer wrote (or the initial 0)."""
    url = str(tmp_path / "l")
    create(tmp_path / "l", **({"sharding": SHARDING} if sharded else {"compression": "gzip"}))
    rounds = 60 if sharded else 8  # sharded rounds are quick: 16 shard files
    box = (slice(5, 123), slice(3, 125), slice(2, 62))
    inside = np.zeros(SHAPE, dtype=bool)
    inside[box] = True
    done = threading.Event()
    seen = {"reads": 0, "values": set()}

    def writer() -> None:
        a = BigArray(url)
        try:
            for r in range(1, rounds + 1):
                a[box] = r
        finally:
            done.set()

    def reader(fresh: bool) -> None:
        a = BigArray(url, fill_missing=True)
        while not done.is_set():
            got = (BigArray(url) if fresh else a)[:, :, :]
            seen["reads"] += 1
            assert not got[~inside].any(), "a voxel outside the written box changed"
            for g in np.ndindex(8, 8, 4):
                sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(g, CHUNKS, strict=True))
                vals = np.unique(got[sl][inside[sl]])
                assert len(vals) == 1, f"torn chunk {g}: {vals}"
                assert 0 <= vals[0] <= rounds
                seen["values"].add(int(vals[0]))

    run_threads([writer, lambda: reader(False), lambda: reader(True)])
    assert seen["reads"] >= 2
    # The readers saw the layer change under them, or they tested nothing.
    assert len(seen["values"]) > 1, seen


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_cached_shard_indexes_never_outlive_the_shard(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """A reader caches a shard's minishard indexes; another handle (another process, as far
    as the reader knows) rewrites the shard with chunks of other sizes. The reader's next
    read must see the new chunks, not decode the new file at the old offsets (it raised
    ChunkDecodeError, or could return another chunk's voxels, before shard reads were
    pinned to one version of the file by its ETag)."""
    options: dict[str, Any] = {}
    if where == "local":
        url = str(tmp_path / "l")
    elif where == "memory":
        url = f"memory://cached-shards-{id(tmp_path)}"
    else:
        moto = request.getfixturevalue("moto")
        url = f"s3://{moto.bucket()}/l"
        options = {"storage_options": moto.options()}
    BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS, sharding=SHARDING, **options)
    reader, writer = BigArray(url, **options), BigArray(url, **options)
    rng = np.random.default_rng(5)
    box = (slice(0, 64), slice(0, 32), slice(0, 32))  # shard 0, whole
    writer[box] = rng.integers(0, 4, (64, 32, 32), dtype=np.uint8)  # compresses well
    np.testing.assert_array_equal(reader[box], writer[box])  # indexes now cached
    for _ in range(3):
        new = rng.integers(0, 255, (64, 32, 32), dtype=np.uint8)  # compresses badly
        writer[box] = new
        np.testing.assert_array_equal(reader[box], new)
        np.testing.assert_array_equal(reader[0:16, 0:16, 0:16], new[0:16, 0:16, 0:16])


# -- what is not safe: overlapping read-modify-writes in a plain mapping ---------------------


class GatedStore(dict):  # type: ignore[type-arg]
    """A dict store (no ``compare_and_set``, so last-writer-wins) whose reads of keys
    containing ``gate`` wait until ``parties`` readers have read: every writer reads the old
    value before any writes back."""

    def __init__(self, gate: str | None = None, parties: int = 2) -> None:
        super().__init__()
        self.gate = gate
        self.barrier = threading.Barrier(parties, timeout=20)

    def __getitem__(self, key: str) -> bytes:
        value = super().__getitem__(key)
        if self.gate is not None and self.gate in key:
            self.barrier.wait()
        return value


def test_overlapping_partial_chunk_writes_can_lose_an_update() -> None:
    store = GatedStore()
    BigArray.create("l", store=store, shape=(16, 16, 16), dtype="uint8", chunks=CHUNKS)
    # The chunk must exist: a writer that finds none reads nothing, so would never reach the
    # barrier, and the other would wait there alone.
    BigArray("l", store=store)[:, :, :] = 5
    store.gate = "0-16_0-16_0-16"
    a, b = BigArray("l", store=store), BigArray("l", store=store)

    def left() -> None:
        a[0:8, :, :] = 1  # half the chunk: read, paint, write back

    def right() -> None:
        b[8:16, :, :] = 2

    run_threads([left, right])
    store.gate = None
    got = BigArray("l", store=store)[:, :, :]
    assert len(np.unique(got[0:8])) == 1 and len(np.unique(got[8:16])) == 1
    halves = (int(got[0, 0, 0]), int(got[8, 0, 0]))
    # Both read the chunk before either wrote it back: the later write erased the other.
    assert halves in ((1, 5), (5, 2)), halves


def test_different_chunks_of_one_shard_last_writer_wins() -> None:
    store = GatedStore()
    BigArray.create("l", store=store, shape=SHAPE, dtype="uint8", chunks=CHUNKS, sharding=SHARDING)
    base = BigArray("l", store=store)
    base[0:64, 0:32, 0:32] = 5  # shard 0 exists
    store.gate = ".shard"
    a, b = BigArray("l", store=store), BigArray("l", store=store)

    def first() -> None:
        a[0:16, 0:16, 0:16] = 1  # one chunk of shard 0

    def second() -> None:
        b[16:32, 0:16, 0:16] = 2  # another chunk of shard 0

    run_threads([first, second])
    store.gate = None
    got = BigArray("l", store=store)[:, :, :]
    chunk_a, chunk_b = int(got[0, 0, 0]), int(got[16, 0, 0])
    assert (chunk_a, chunk_b) in ((1, 5), (5, 2)), (chunk_a, chunk_b)
    assert (got[32:64, 0:32, 0:32] == 5).all()  # the rest of the shard survives


def test_disjoint_chunks_with_gated_reads_lose_nothing() -> None:
    """The control: chunk-aligned writes of different chunks never read, so the same
    interleaving loses nothing."""
    store = GatedStore()
    BigArray.create("l", store=store, shape=(32, 16, 16), dtype="uint8", chunks=CHUNKS)
    a, b = BigArray("l", store=store), BigArray("l", store=store)
    store.gate = "never-read"
    run_threads(
        [
            lambda: a.__setitem__((slice(0, 16),) * 3, 1),
            lambda: b.__setitem__((slice(16, 32), slice(0, 16), slice(0, 16)), 2),
        ]
    )
    got = BigArray("l", store=store)[:, :, :]
    assert (got[0:16] == 1).all() and (got[16:32] == 2).all()


# -- overlapping writers where the store puts conditionally ----------------------------------


def overlapping_bands(a: BigArray, b: BigArray) -> None:
    """Two writers paint different halves of the one chunk of a layer holding 5s."""
    run_threads(
        [
            lambda: a.__setitem__((slice(0, 8), slice(None), slice(None)), 1),
            lambda: b.__setitem__((slice(8, 16), slice(None), slice(None)), 2),
        ]
    )


@pytest.mark.parametrize("conditional", [True, False])
def test_overlapping_partial_chunk_writes_in_s3(moto: Moto, conditional: bool) -> None:
    """The gated interleaving of test_overlapping_partial_chunk_writes_can_lose_an_update, in
    S3: both writers read the chunk before either writes it back. The second write's
    condition (If-Match the ETag it read) fails, so it reads the chunk again and repaints;
    with conditional puts turned off (for S3 look-alikes without them) it erases the first."""
    host, port = moto.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port)), serialize_writes=True) as proxy:
        url = f"s3://{moto.bucket()}/l"
        options = moto.options(endpoint=proxy.url)
        if not conditional:
            options["conditional_put"] = "disabled"
        layer = BigArray.create(
            url, shape=(16, 16, 16), dtype="uint8", chunks=CHUNKS, storage_options=options
        )
        layer[:, :, :] = 5
        chunk = "0-16_0-16_0-16"
        proxy.inject("gate", count=2, match=lambda m, p: m == "GET" and chunk in p)
        a, b = (BigArray(url, storage_options=options) for _ in range(2))
        overlapping_bands(a, b)
        got = BigArray(url, storage_options=options)[:, :, :]
        halves = (int(got[0, 0, 0]), int(got[8, 0, 0]))
        assert len(np.unique(got[0:8])) == 1 and len(np.unique(got[8:16])) == 1
        puts = [r for r in proxy.log if r.method == "PUT" and chunk in r.path]
        if conditional:
            assert halves == (1, 2)
            assert len(puts) == 1 + 3, "the initial write, both writers, and one repaint"
        else:
            assert halves in ((1, 5), (5, 2)), halves
            assert len(puts) == 1 + 2


def test_a_partial_write_of_an_absent_s3_chunk_asks_for_each_variant_once(moto: Moto) -> None:
    """Reading for a conditional put costs no extra request: the name the chunk will be
    written under is asked for first (for its ETag), then only the other variants."""
    host, port = moto.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port))) as proxy:
        url = f"s3://{moto.bucket()}/l"
        options = moto.options(endpoint=proxy.url)
        layer = BigArray.create(
            url, shape=(16, 16, 16), dtype="uint8", chunks=CHUNKS, storage_options=options
        )
        layer[0:8, :, :] = 1
        chunk = "0-16_0-16_0-16"
        gets = [r.path for r in proxy.log if r.method == "GET" and chunk in r.path]
        assert len(gets) == len(set(gets)) == 4, gets  # plain, .gz, .zst, .br
        np.testing.assert_array_equal(layer[0:9, 0, 0], [1] * 8 + [0])


def test_overlapping_writers_lose_nothing_in_memory() -> None:
    """Eight threads, each painting its own band of the same two chunks (and, sharded, of
    the same shard) ten times over: every write is a read-modify-write racing the others."""
    for sharding in (None, SMALL_SHARDING):
        url = f"memory://overlapping-{sharding is not None}"
        layer = BigArray.create(
            url, shape=(32, 32, 16), dtype="uint8", chunks=CHUNKS, sharding=sharding
        )

        def writer(t: int, url: str = url) -> None:
            handle = BigArray(url)  # a handle each, as separate workers would have
            for round in range(1, 11):
                handle[4 * t : 4 * t + 4, :, :] = 10 * round + t

        run_threads([lambda t=t: writer(t) for t in range(8)])
        got = layer[:, :, :]
        for t in range(8):
            assert (got[4 * t : 4 * t + 4] == 100 + t).all(), (sharding, t)
