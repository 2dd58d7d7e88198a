"""The soak, short (tens of seconds a case): writers SIGKILLed at random, readers, and the
model check of every read, checkpoint and final state (``make soak`` runs it for long).
Also: the checker itself fails on hand-made histories with a lost update and torn chunks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import run_soak, serialising_proxy  # noqa: E402
from history import INF, Grid, Observation, Write, check  # noqa: E402

# Seconds per case: S3 writes go through moto (Python) one at a time, so S3 cases need
# longer to make a few dozen writes; SOAK_TEST_SECONDS scales them all.
SCALE = float(os.environ.get("SOAK_TEST_SECONDS", "10")) / 10
SECONDS = {"memory": 4 * SCALE, "s3": 20 * SCALE, "local": 6 * SCALE}


@pytest.fixture(scope="module")
def s3_endpoint(moto) -> Iterator[str]:
    with serialising_proxy(moto) as endpoint:
        yield endpoint


CASES = [
    pytest.param("memory", False, id="memory-threads"),
    pytest.param("memory", True, id="memory-threads-sharded"),
    pytest.param("s3", False, id="s3"),
    pytest.param("s3", True, id="s3-sharded"),
    pytest.param("local", False, id="local"),
    pytest.param("local", True, id="local-sharded"),
]  # fmt: skip


@pytest.mark.parametrize("backend, sharded", CASES)
def test_soak(backend, sharded, tmp_path, request, capsys):
    extra = {}
    if backend == "s3":
        extra = {"moto": request.getfixturevalue("moto"),
                 "endpoint": request.getfixturevalue("s3_endpoint")}  # fmt: skip
    threaded = backend == "memory"
    seconds = SECONDS[backend]
    # Smaller boxes on S3 (fewer chunks a write), so that a short run completes a few.
    stats = run_soak(backend=backend, sharded=sharded, seconds=seconds, workdir=tmp_path,
                     writers=2, kill_every=4.0, checkpoint_every=seconds * 0.6,
                     max_extent=8 if backend == "s3" else 12, seed=7, **extra)  # fmt: skip
    with capsys.disabled():
        print(f"\n{stats.line()}")
        for v in stats.violations[:10]:
            print(f"  {v}")
    assert stats.errors == []
    assert stats.writes > 0 and stats.reads > 0 and stats.checkpoints >= 1
    if threaded:
        assert stats.completed > 0
    else:
        # On a loaded machine a short S3 run may complete only a write or two (each goes
        # through moto one request at a time, and the checkpoint restarts every writer);
        # it still checks the interrupted ones, and `make soak` runs long.
        assert stats.kills > 0
    assert stats.state_violations == [], [str(v) for v in stats.state_violations[:10]]
    assert stats.reader_violations == [], [str(v) for v in stats.reader_violations[:10]]
    assert stats.read_errors == []


# -- the checker can fail --------------------------------------------------------------------

GRID = Grid((0, 0, 0), (8, 8, 4), (4, 4, 4))
CHUNK0 = ((0, 0, 0), (4, 4, 4))


def state(paint: list[tuple[tuple[slice, ...], int]]) -> np.ndarray:
    data = np.zeros((8, 8, 4), dtype=np.uint32)
    for box, value in paint:
        data[box] = value
    return data


def final(data: np.ndarray, t: float = 100.0) -> Observation:
    return Observation(((0, 0, 0), (8, 8, 4)), t, t + 1, data, "final")


def w(wid: int, lo, hi, start: float, end: float = INF) -> Write:
    return Write(wid, (lo, hi), start, end)


def test_the_checker_passes_real_orders():
    writes = {
        1: w(1, (0, 0, 0), (4, 4, 4), 1, 4),  # whole chunk 0
        2: w(2, (0, 0, 0), (4, 4, 4), 2, 5),  # concurrent with 1: either may be on top
        3: w(3, (2, 0, 0), (6, 4, 4), 10),  # interrupted, over chunks 0 and 1
    }
    # 2 landed after 1; 3 landed in chunk 1 and not in chunk 0: allowed (per chunk whole).
    data = state([(np.s_[0:4, 0:4, :], 2), (np.s_[4:6, 0:4, :], 3)])
    assert check(writes, [final(data)], GRID) == []
    # 1 on top of 2 (they overlapped in time): allowed too.
    data = state([(np.s_[0:4, 0:4, :], 1)])
    assert check(writes, [final(data)], GRID) == []
    # A read while 2 ran: chunk 0 wholly 1's, 2 not landed yet.
    read = Observation(((0, 0, 0), (4, 4, 4)), 4.5, 4.8, state([(np.s_[0:4, 0:4, :], 1)])[:4, :4],
                       "reader read 1")  # fmt: skip
    assert check(writes, [read], GRID) == []


def test_the_checker_finds_a_lost_update():
    writes = {
        1: w(1, (0, 0, 0), (4, 4, 4), 1, 2),  # the chunk, then
        2: w(2, (0, 0, 0), (2, 4, 4), 3, 4),  # its left half, then
        3: w(3, (2, 0, 0), (4, 4, 4), 5, 6),  # its right half, read-modify-written from the
    }  # chunk as it was before 2: 2's voxels lost
    data = state([(np.s_[0:2, 0:4, :], 1), (np.s_[2:4, 0:4, :], 3)])
    found = check(writes, [final(data)], GRID)
    assert len(found) == 1 and found[0].chunk == CHUNK0, found
    assert "lost update: write 1" in found[0].what
    # The same with nothing under 2: its voxels read 0.
    data = state([(np.s_[2:4, 0:4, :], 3)])
    found = check({2: writes[2], 3: writes[3]}, [final(data)], GRID)
    assert len(found) == 1 and "read 0 where writes [2]" in found[0].what


def test_the_checker_finds_torn_chunks():
    writes = {
        1: w(1, (0, 0, 0), (4, 4, 4), 1, 5),
        2: w(2, (0, 0, 0), (4, 4, 4), 2, 6),  # concurrent, both the whole chunk
        3: w(3, (0, 0, 0), (8, 4, 4), 10),  # interrupted, over two chunks
    }
    # Half 1, half 2: each covers the other's voxels, so neither order gives it.
    data = state([(np.s_[0:2, 0:4, :], 1), (np.s_[2:4, 0:4, :], 2)])
    found = check(writes, [final(data)], GRID)
    assert len(found) == 1 and "torn" in found[0].what and found[0].chunk == CHUNK0
    # An interrupted write in part of a chunk (its other half still 2's).
    data = state([(np.s_[0:2, 0:4, :], 3), (np.s_[2:4, 0:4, :], 2)])
    found = check(writes, [final(data)], GRID)
    assert len(found) == 1 and found[0].chunk == CHUNK0
    # A reader that saw half of 2 over 1 after both had ended.
    read = Observation(CHUNK0, 7, 8, state([(np.s_[0:2, 0:4, :], 1),
                       (np.s_[2:4, 0:4, :], 2)])[:4, :4], "reader read 9")  # fmt: skip
    assert [v.label for v in check(writes, [read], GRID)] == ["reader read 9"]


def test_the_checker_finds_values_from_nowhere_or_the_future():
    writes = {1: w(1, (0, 0, 0), (2, 2, 2), 1, 2), 2: w(2, (0, 0, 0), (4, 4, 4), 50, 60)}
    data = state([(np.s_[0:3, 0:2, 0:2], 1)])  # 1 outside its box
    assert "outside its box" in check(writes, [final(data)], GRID)[0].what
    data = state([(np.s_[0:4, 0:4, :], 2)])  # 2 seen by a read that ended before it began
    read = Observation(((0, 0, 0), (8, 8, 4)), 10, 11, data, "reader read 1")
    assert "started after the read ended" in check(writes, [read], GRID)[0].what
    data = state([(np.s_[0:1, 0:1, 0:1], 77)])
    assert "no write wrote" in check(writes, [final(data)], GRID)[0].what


@pytest.mark.parametrize("where", ["memory", "local"])
def test_a_chunk_added_to_a_cached_minishard_is_seen(tmp_path, where):
    """The soak's first finding, in four lines: chunks (0, 0, 0) and (8, 0, 0) share a
    minishard; a handle that read the first before the second existed read the second as
    missing, from its cached minishard index."""
    from driver import CHUNKS, SHAPE, SHARDING

    from bigarrays import BigArray

    url = f"memory://stale-{tmp_path.name}" if where == "memory" else str(tmp_path / "l")
    BigArray.create(url, shape=SHAPE, dtype="uint32", chunks=CHUNKS, sharding=SHARDING)
    reader, writer = BigArray(url), BigArray(url)
    writer[0:8, 0:8, 0:8] = 1
    assert reader[0:8, 0:8, 0:8].max() == 1
    writer[8:16, 0:8, 0:8] = 2
    assert BigArray(url)[8:16, 0:8, 0:8].max() == 2
    assert reader[8:16, 0:8, 0:8].max() == 2
