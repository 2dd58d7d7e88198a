"""Overlapping writers on a local disk lose nothing, and killed writers' temporary files are
cleaned up by the next writer of their key (issue 22).

A local put writes ``<key>#<n>`` and renames it over the key under an exclusive lock on the
key's directory, after checking that the key is still the version the writer read (or still
absent): the same read-modify-write protocol as S3's If-Match (``src/store/local_write.rs``).

Overlapping writers: four processes each own every fourth x-plane of a layer and write them
one plane at a time (unaligned boxes, so every write read-modify-writes chunks or shards the
others are writing too; in an H5s layer, block files, which are replaced the same way:
``src/format/hdf5/h5s.rs``); afterwards every voxel reads back as its owner wrote it. Python
mappings with ``compare_and_set`` get the same guarantee (a deterministic interleaving: both
writers read before either writes, and the second repaints).

Temporary files: left beside a key (as a killed writer leaves them, and by a real SIGKILL),
they are never listed or read as data; the next put of their key removes the old ones and
keeps the young ones, which may be a live writer's.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CasMapping, run_threads
from volumes import SMALL_SHARDING

from bigarrays import BigArray, _core

SHAPE = (64, 32, 32)
CHUNKS = (16, 16, 16)
WRITERS = 4
# Old enough for the next writer to remove (store::TEMPORARY_MAX_AGE), with a margin.
OLD = _core.TEMPORARY_MAX_AGE_S + 60


# Kills the run with every thread's traceback if a test hangs (conftest.hang_guard).
pytestmark = pytest.mark.hang_after(150)


def model() -> np.ndarray:
    rng = np.random.default_rng(22)
    return np.asfortranarray(rng.integers(1, 255, SHAPE, dtype=np.uint8))


def write_planes(url: str, worker: int, start_at: float) -> None:
    """Worker ``worker``'s x-planes, one write each, three times over (zeros first, then
    the model twice), so the writers overlap for long."""
    a = BigArray(url)
    data = model()
    time.sleep(max(0.0, start_at - time.time()))
    for values in (np.zeros_like(data), data, data):
        for x in range(worker, SHAPE[0], WRITERS):
            # Also unaligned in y and z: two boxes per plane.
            a[x : x + 1, 0:20, :] = values[x : x + 1, 0:20, :]
            a[x : x + 1, 20:32, :] = values[x : x + 1, 20:32, :]


@pytest.mark.parametrize("layout", ["chunks", "sharded", "h5s"])
def test_overlapping_writer_processes_lose_nothing(tmp_path: Path, layout: str) -> None:
    url = str(tmp_path / "layer")
    if layout == "h5s":
        # Two block files of 32³, so the four writers share each block and every write
        # rebuilds a block file the others are rebuilding too.
        BigArray.create(url, format="h5s", shape=SHAPE, dtype="uint8", chunks=(32, 32, 32),
                        encoding_options={"chunk_size": CHUNKS})  # fmt: skip
    else:
        sharding = SMALL_SHARDING if layout == "sharded" else None
        BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS, sharding=sharding)
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4  # past the children's start-up
    with ctx.Pool(WRITERS) as pool:
        result = pool.starmap_async(write_planes, [(url, w, start_at) for w in range(WRITERS)])
        result.get(timeout=120)
    np.testing.assert_array_equal(BigArray(url)[...], model())
    left = [p.name for p in tmp_path.rglob("*#*")]
    assert not left, f"temporary files left by live writers: {left}"


def test_overlapping_writer_threads_lose_nothing(tmp_path: Path) -> None:
    """Threads with a handle each (one process: the lock is per open directory, so threads
    exclude each other too)."""
    url = str(tmp_path / "layer")
    BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS, sharding=SMALL_SHARDING)
    start_at = time.time()
    run_threads([lambda w=w: write_planes(url, w, start_at) for w in range(WRITERS)])
    np.testing.assert_array_equal(BigArray(url)[...], model())


def test_the_local_store_has_conditional_puts(tmp_path: Path) -> None:
    ran = set(_core._store_conformance(str(tmp_path / "layer")))
    assert {"put_modes", "races", "leftovers"} <= ran, ran


# -- Python mappings with compare_and_set -----------------------------------------------------


class GatedCasMapping(CasMapping):
    """A ``CasMapping`` whose reads of keys containing ``gate`` wait until two readers have
    read: both writers read the old chunk before either writes back."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: str | None = None
        self.barrier = threading.Barrier(2, timeout=20)

    def __getitem__(self, key: str) -> bytes:
        value = super().__getitem__(key)
        if self.gate is not None and self.gate in key:
            self.barrier.wait()
        return value

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes) -> bool:
        stored = super().compare_and_set(key, expected, value)
        if not stored:
            self.gate = None  # the loser's repaint reads alone
        return stored


@pytest.mark.parametrize("sharded", [False, True], ids=["chunks", "sharded"])
def test_a_mapping_with_compare_and_set_loses_nothing(sharded: bool) -> None:
    """The interleaving that loses an update in a plain dict (test_concurrency.py's
    GatedStore): here the second put's compare_and_set fails, and that writer reads the
    chunk again and repaints it."""
    store = GatedCasMapping()
    sharding = SMALL_SHARDING if sharded else None
    BigArray.create("l", store=store, shape=(64, 32, 32), dtype="uint8", chunks=CHUNKS,
                    sharding=sharding)  # fmt: skip
    BigArray("l", store=store)[...] = 5
    store.gate = ".shard" if sharded else "0-16_0-16_0-16"
    a, b = BigArray("l", store=store), BigArray("l", store=store)
    run_threads(
        [
            lambda: a.__setitem__((slice(0, 8), slice(0, 16), slice(0, 16)), 1),
            lambda: b.__setitem__((slice(8, 16), slice(0, 16), slice(0, 16)), 2),
        ]
    )
    store.gate = None
    got = BigArray("l", store=store)[...]
    assert (got[0:8, 0:16, 0:16] == 1).all() and (got[8:16, 0:16, 0:16] == 2).all()
    assert (got[16:, :, :] == 5).all() and (got[:, 16:, :] == 5).all()
    assert store.refused >= 1, "the writers never raced: the test tested nothing"


def test_mapping_threads_with_compare_and_set_lose_nothing() -> None:
    store = CasMapping()
    BigArray.create("l", store=store, shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                    sharding=SMALL_SHARDING)  # fmt: skip

    def writer(w: int) -> None:
        a = BigArray("l", store=store)
        data = model()
        for x in range(w, SHAPE[0], WRITERS):
            a[x : x + 1, :, :] = data[x : x + 1, :, :]

    run_threads([lambda w=w: writer(w) for w in range(WRITERS)])
    np.testing.assert_array_equal(BigArray("l", store=store)[...], model())


# -- temporary files of killed writers --------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_next_writer_removes_old_temporary_files_and_keeps_young_ones(tmp_path: Path) -> None:
    url = str(tmp_path / "layer")
    a = BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS)
    a[0:16, 0:16, 0:16] = 3
    (chunk,) = [p for p in tmp_path.rglob("0-16_0-16_0-16*") if "#" not in p.name]
    temporary = [chunk.with_name(f"{chunk.name}#{n}") for n in (1, 2, 3, 4)]
    for n, path in enumerate(temporary):
        path.write_bytes(b"torn" * n)  # what a killed writer leaves: anything, often short
    age(temporary[0], OLD)
    age(temporary[2], OLD)
    assert [_core.temporary_of(p.name) for p in temporary] == [chunk.name] * 4
    assert _core.temporary_of(chunk.name) is None
    # Never data: not listed, not read, not copied.
    assert a.stored_chunks() == [((0, 0, 0), (16, 16, 16), chunk.stat().st_size)]
    assert (a[0:16, 0:16, 0:16] == 3).all()
    a[0:16, 0:16, 0:16] = 4  # the next writer of that key
    assert [p.exists() for p in temporary] == [False, True, False, True]
    assert (a[0:16, 0:16, 0:16] == 4).all()
    # Another key's writer leaves them alone.
    age(temporary[1], OLD)
    a[16:32, 0:16, 0:16] = 4
    assert temporary[1].exists()


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from bigarrays import BigArray

    a = BigArray(sys.argv[1])
    print("ready", flush=True)
    for i in range(1_000_000):
        a[...] = np.full(a.shape, i % 200 + 1, np.uint8)
    """
)


def test_sigkilled_writers_leave_nothing_a_reader_sees_and_the_next_writer_cleans_up(
    tmp_path: Path,
) -> None:
    """A writer repainting a layer of 256 chunks (up to 64 puts in flight) is SIGKILLed at
    random moments until it leaves temporary files (usually the first kill does); readers
    and listings never see them, every chunk is old or new whole, and once old they go with
    the next write of their chunks."""
    url = str(tmp_path / "layer")
    shape, chunks = (128, 128, 64), (16, 16, 16)
    layer = BigArray.create(url, shape=shape, dtype="uint8", chunks=chunks)
    layer[...] = 1
    rng = random.Random(22)
    left: list[Path] = []
    for _ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, url], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        got = layer[...]
        for x in range(0, shape[0], 16):
            for y in range(0, shape[1], 16):
                for z in range(0, shape[2], 16):
                    block = got[x : x + 16, y : y + 16, z : z + 16]
                    assert (block == block[0, 0, 0]).all(), f"a torn chunk at {(x, y, z)}"
        assert len(layer.stored_chunks() or []) == 256
        left = [p for p in tmp_path.rglob("*#*")]
        if left:
            break
    assert left, "no kill landed inside a write in 8 tries"
    for path in left:
        age(path, OLD)
    layer[...] = 7
    gone = [p for p in left if not p.exists()]
    assert gone == left, f"kept: {set(left) - set(gone)}"
    assert (layer[...] == 7).all()
