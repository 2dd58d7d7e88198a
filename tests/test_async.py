"""asyncio (issue 24): ``read_async``, ``read_many_async`` and ``write_async`` give what the
blocking calls give, on every format, without blocking the event loop, and cancellation
(explicit, or an ``asyncio.wait_for`` timeout) stops the engine: a cancelled read frees its
buffers, a cancelled write leaves every chunk old or new.

The slow stores are Python mappings whose chunk reads or writes sleep, so an operation takes
seconds; a mapping is called from one engine task at a time, so the times are predictable.
Every wait has a bound, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Moto

from bigarrays import BigArray, MissingChunkError

#: Seconds each chunk read or write of a slow store sleeps.
DELAY = 0.04
#: Seconds any one asyncio run below may take before the test fails.
BOUND = 60.0


class SlowStore(dict):
    """A mapping store whose chunk reads (and, with ``writes``, chunk writes) sleep, and
    which counts the chunk calls it served."""

    def __init__(self, data: dict[str, Any], *, writes: bool = False) -> None:
        super().__init__(data)
        self.writes = writes
        self.calls = 0

    def __getitem__(self, key: str) -> Any:
        if not key.endswith("info"):
            self.calls += 1
            time.sleep(DELAY)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if self.writes and not key.endswith("info"):
            self.calls += 1
            time.sleep(DELAY)
        super().__setitem__(key, value)


def run(coro: Any) -> Any:
    """Runs ``coro`` on a fresh event loop, failing after ``BOUND`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def threads_now() -> int:
    """This process's OS threads (the engine's are not in ``threading.enumerate``)."""
    return len(os.listdir("/proc/self/task"))


def slow_layer(
    shape: tuple[int, int, int], value: int = 1, *, writes: bool = False
) -> tuple[BigArray, SlowStore]:
    data: dict[str, Any] = {}
    a = BigArray.create(
        "l", store=data, shape=shape, dtype="uint8", chunks=(16, 16, 16), compression=None
    )
    a[:, :, :] = np.uint8(value)
    store = SlowStore(data, writes=writes)
    return BigArray("l", store=store), store


def random_boxes(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> list[tuple]:
    boxes = []
    for _ in range(n):
        lo = [int(rng.integers(0, s - 1)) for s in shape]
        hi = [
            int(rng.integers(low + 1, min(s, low + 24) + 1))
            for low, s in zip(lo, shape, strict=True)
        ]
        boxes.append(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)))
    return boxes


def layers(tmp_path: Path) -> dict[str, tuple[BigArray, np.ndarray]]:
    """One written layer per format, with the voxels written."""
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 60000, size=(70, 50, 30), dtype=np.uint16)
    out = {}
    a = BigArray.create(str(tmp_path / "pre"), shape=ref.shape, dtype="uint16", chunks=(16, 16, 8))
    a[:, :, :] = ref
    out["precomputed"] = (BigArray(str(tmp_path / "pre")), ref)
    sharded = BigArray.create(
        str(tmp_path / "shard"),
        shape=ref.shape,
        dtype="uint16",
        chunks=(16, 16, 8),
        sharding="auto",
    )
    sharded[:, :, :] = ref
    out["sharded"] = (BigArray(str(tmp_path / "shard")), ref)
    z = BigArray.create(
        str(tmp_path / "z.zarr"), shape=ref.shape, dtype="uint16", chunks=(16, 16, 8), format="zarr"
    )
    z[:, :, :] = ref
    out["zarr"] = (BigArray(str(tmp_path / "z.zarr")), ref)
    return out


@pytest.mark.parametrize("fmt", ["precomputed", "sharded", "zarr"])
def test_many_concurrent_reads_equal_the_blocking_reads(tmp_path: Path, fmt: str) -> None:
    a, ref = layers(tmp_path)[fmt]
    boxes = random_boxes(np.random.default_rng(5), ref.shape, 200)
    before = threads_now()
    peak = [before]

    async def main() -> list[np.ndarray]:
        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], threads_now())
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            singles = await asyncio.gather(*(a.read_async(b) for b in boxes))
            many = await a.read_many_async(boxes)
        finally:
            watcher.cancel()
        return list(singles) + many

    got = run(main())
    for i, b in enumerate(boxes + boxes):
        np.testing.assert_array_equal(got[i], ref[b], err_msg=f"box {i}")
        np.testing.assert_array_equal(got[i], a[b])
        assert got[i].flags.f_contiguous == a[b].flags.f_contiguous
    # 200 reads in flight did not take a thread each (the runners are few and batch them).
    assert peak[0] - before < 40, (before, peak[0])


def test_h5s_reads_under_asyncio(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    import json

    root = tmp_path / "h5s"
    root.mkdir()
    ref = np.random.default_rng(2).integers(0, 255, size=(32, 32, 16), dtype=np.uint8)
    (root / "config.json").write_text(
        json.dumps(
            {
                "h5FilePrefix": "block_",
                "dataType": "UInt8",
                "globalOffset": [0, 0, 0],
                "blockSize": [32, 32, 16],
                "chunkSize": [16, 16, 8],
            }
        )
    )
    with h5py.File(root / "block_1-32_1-32_1-16.h5", "w") as f:
        f.create_dataset("img", data=np.ascontiguousarray(ref.T), chunks=(8, 16, 16))
    a = BigArray(str(root))
    assert a.format == "h5s"
    boxes = random_boxes(np.random.default_rng(1), ref.shape, 50)

    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(a.read_async(b) for b in boxes)))

    for got, b in zip(run(main()), boxes, strict=True):
        np.testing.assert_array_equal(got, ref[b])


def test_zarr_reads_and_writes_in_its_own_axes(tmp_path: Path) -> None:
    z = BigArray.create(
        str(tmp_path / "z.zarr"),
        shape=(3, 20, 30),
        dtype="float32",
        chunks=(1, 8, 8),
        format="zarr",
    )
    value = np.arange(3 * 20 * 30, dtype=np.float32).reshape(3, 20, 30)

    async def main() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        await z.write_async(..., value)
        await z.write_async((1, slice(2, 5), slice(None, None, 2)), -1.0)
        whole = await z.read_async(...)
        plane = await z.read_async((2, 5))
        many = await z.read_many_async([(0,), (slice(1, 3), 7)])
        return whole, plane, many

    whole, plane, many = run(main())
    value[1, 2:5, ::2] = -1.0
    np.testing.assert_array_equal(whole, value)
    np.testing.assert_array_equal(plane, value[2, 5])
    np.testing.assert_array_equal(many[0], value[0])
    np.testing.assert_array_equal(many[1], value[1:3, 7])
    np.testing.assert_array_equal(z[...], value)


def test_writes_give_what_blocking_writes_give(tmp_path: Path) -> None:
    a = BigArray.create(str(tmp_path / "w"), shape=(40, 40, 20), dtype="uint8", chunks=(16, 16, 8))
    b = BigArray.create(str(tmp_path / "b"), shape=(40, 40, 20), dtype="uint8", chunks=(16, 16, 8))
    rng = np.random.default_rng(0)
    values = [rng.integers(0, 255, size=(4, 4, 4), dtype=np.uint8) for _ in range(10)]
    keys = [(slice(4 * i, 4 * i + 4), slice(3, 7), slice(2, 6)) for i in range(10)]

    async def main() -> None:
        await asyncio.gather(*(a.write_async(k, v) for k, v in zip(keys, values, strict=True)))
        await a.write_async((slice(0, 40, 3), 0, slice(None)), 7)
        value = np.full((40, 40, 20), 5, np.uint8)
        await a.write_async((slice(0, 40), slice(20, 40), slice(0, 20)), value[:, 20:])
        value[:] = 9  # the write copied what it needed: changing it now changes nothing

    run(main())
    for k, v in zip(keys, values, strict=True):
        b[k] = v
    b[slice(0, 40, 3), 0, :] = 7
    b[:, 20:40, :] = 5
    np.testing.assert_array_equal(a[:, :, :], b[:, :, :])


def test_one_failing_read_does_not_fail_the_others(tmp_path: Path) -> None:
    a = BigArray.create(str(tmp_path / "m"), shape=(64, 16, 8), dtype="uint8", chunks=(16, 16, 8))
    a[0:32, :, :] = 3  # chunks 0 and 1 exist; 2 and 3 do not
    strict = BigArray(str(tmp_path / "m"), fill_missing=False)

    async def main() -> list[Any]:
        reads = [strict.read_async((slice(0, 16),)) for _ in range(20)]
        reads.insert(7, strict.read_async((slice(40, 48),)))
        return await asyncio.gather(*reads, return_exceptions=True)

    results = run(main())
    assert isinstance(results[7], MissingChunkError), results[7]
    for r in results[:7] + results[8:]:
        assert isinstance(r, np.ndarray) and (r == 3).all()


def test_the_event_loop_keeps_running_during_a_long_read() -> None:
    a, store = slow_layer((128, 128, 32))  # 128 chunks at 40 ms: about 5 s

    async def main() -> tuple[np.ndarray, float, int]:
        gaps = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        try:
            out = await a.read_async((slice(None),) * 3)
        finally:
            tick.cancel()
        return out, max(gaps), len(gaps)

    started = time.monotonic()
    out, max_gap, ticks = run(main())
    took = time.monotonic() - started
    print(f"read took {took:.2f} s; {ticks} ticks, longest gap {max_gap * 1000:.0f} ms")
    assert (out == 1).all() and store.calls == 128
    assert took > 2.0, "the read was too short to say anything"
    # A liveness check, not a speed claim: the loop was never held for long.
    assert max_gap < 0.5, max_gap


def wait_until_quiet(store: SlowStore, seconds: float = 10.0) -> int:
    """Waits until the store serves no more calls for a while; the count then."""
    end = time.monotonic() + seconds
    calls = store.calls
    while time.monotonic() < end:
        time.sleep(0.3)
        if store.calls == calls:
            return calls
        calls = store.calls
    raise AssertionError("the engine kept calling the store")


def test_a_timed_out_read_stops_and_the_array_still_works() -> None:
    a, store = slow_layer((256, 256, 32))  # 512 chunks at 40 ms: about 20 s
    threads = threads_now()

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.read_async((slice(None),) * 3), 0.3)

    started = time.monotonic()
    run(main())
    assert time.monotonic() - started < 2.0
    calls = wait_until_quiet(store)
    assert calls < 100, calls  # stopped long before the 512 chunks
    # Later reads are right, and nothing stayed behind.
    assert (run(a.read_async((slice(0, 40), slice(0, 40), slice(0, 20)))) == 1).all()
    assert threads_now() <= threads + 10


def test_a_cancelled_read_frees_its_buffers() -> None:
    a, store = slow_layer((512, 512, 256))  # 64 MiB out, 16384 chunks: minutes
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]

        async def main() -> int:
            task = asyncio.create_task(a.read_async((slice(None),) * 3))
            await asyncio.sleep(0.3)
            held = tracemalloc.get_traced_memory()[0] - baseline
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return held

        held = run(main())
        wait_until_quiet(store)
        gc.collect()
        freed = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    print(f"held {held >> 20} MiB during the read, {freed >> 10} KiB after")
    assert held >= 64 << 20  # the output buffer was there...
    assert freed < 4 << 20  # ...and is gone
    assert (run(a.read_async((slice(0, 20),) * 3)) == 1).all()


def test_a_cancelled_write_leaves_every_chunk_old_or_new() -> None:
    a, store = slow_layer((256, 256, 32), value=1, writes=True)  # 512 puts at 40 ms: 20 s

    async def main() -> None:
        task = asyncio.create_task(a.write_async((slice(None),) * 3, np.uint8(2)))
        await asyncio.sleep(0.5)
        while store.calls < 2:  # a loaded machine may be slow to start the puts
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    # The cancellation was raised once the engine had stopped: nothing is written after.
    snapshot = dict(store)
    time.sleep(0.3)
    assert dict(store) == snapshot
    store.writes = False
    store.calls = 0
    reader = BigArray("l", store=dict(snapshot))
    values = reader[:, :, :]
    chunks = values.reshape(16, 16, 16, 16, 2, 16).transpose(0, 2, 4, 1, 3, 5)
    chunks = chunks.reshape(16 * 16 * 2, -1)
    old = (chunks == 1).all(axis=1)
    new = (chunks == 2).all(axis=1)
    assert (old | new).all(), "a torn chunk"
    assert new.any() and old.any(), (new.sum(), old.sum())
    # The array still works: writing the box again completes it.
    run(a.write_async((slice(None),) * 3, np.uint8(2)))
    # Read back from a copy: through the slow store, 512 reads would take 20 s.
    assert (BigArray("l", store=dict(store))[:, :, :] == 2).all()


def test_reads_and_writes_over_s3_with_latency(moto: Moto) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
    from delay_proxy import delay_proxy

    url = f"s3://{moto.bucket()}/async"
    ref = np.random.default_rng(4).integers(0, 255, size=(64, 64, 32), dtype=np.uint8)
    a = BigArray.create(
        url, shape=ref.shape, dtype="uint8", chunks=(16, 16, 16), storage_options=moto.options()
    )
    boxes = random_boxes(np.random.default_rng(6), ref.shape, 100)
    with delay_proxy(moto.endpoint, 0.02) as endpoint:
        far = BigArray(url, storage_options=moto.options(endpoint=endpoint))

        async def main() -> list[np.ndarray]:
            await far.write_async((slice(None),) * 3, ref)
            return list(await asyncio.gather(*(far.read_async(b) for b in boxes)))

        got = run(main())
    for g, b in zip(got, boxes, strict=True):
        np.testing.assert_array_equal(g, ref[b])
    np.testing.assert_array_equal(a[:, :, :], ref)


async def gather_reads(a: BigArray, boxes: list[tuple]) -> list[np.ndarray]:
    return list(await asyncio.gather(*(a.read_async(b) for b in boxes)))


def test_reads_from_many_event_loops_at_once(tmp_path: Path) -> None:
    a, ref = layers(tmp_path)["precomputed"]
    boxes = random_boxes(np.random.default_rng(8), ref.shape, 30)
    failures: list[BaseException] = []

    def one_loop() -> None:
        try:
            got = run(gather_reads(a, boxes))
            for g, b in zip(got, boxes, strict=True):
                np.testing.assert_array_equal(g, ref[b])
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=one_loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=BOUND)
    assert not failures, failures[0]


def test_exiting_with_reads_still_running_in_the_engine(tmp_path: Path) -> None:
    """``asyncio.run`` ends with a read cancelled but still stopping in the engine (and a
    timed-out one), then the interpreter exits: the engine's thread must not take the GIL
    once finalization began (that aborts the process), so exit waits for it."""
    import subprocess
    import textwrap

    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, time
            from bigarrays import BigArray

            class Slow(dict):
                def __getitem__(self, key):
                    if not key.endswith("info"):
                        time.sleep(0.04)
                    return super().__getitem__(key)

            data = {}
            a = BigArray.create("l", store=data, shape=(256, 256, 32), dtype="uint8",
                                chunks=(16, 16, 16), compression=None)
            a[:, :, :] = 1
            slow = BigArray("l", store=Slow(data))

            async def main():
                try:
                    await asyncio.wait_for(slow.read_async(...), 0.2)
                except asyncio.TimeoutError:
                    print("timed out")
                asyncio.create_task(slow.read_async(...))
                await asyncio.sleep(0.2)

            asyncio.run(main())
            print("exiting", flush=True)
            """
        )
    )
    for _ in range(2):
        child = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 0, child.stderr[-2000:]
        assert child.stdout.split() == ["timed", "out", "exiting"]
