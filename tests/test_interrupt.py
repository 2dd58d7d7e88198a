"""Ctrl-C during long reads and writes (issue 16).

Each case runs a child Python process whose store is slow on purpose (a dict whose reads or
writes sleep), so the operation would take many seconds. Once the child says it has started
the operation, the parent sends SIGINT and measures how long the child takes to exit: it must
raise ``KeyboardInterrupt`` (or what a user's handler raises) within ``PROMPT`` seconds, far
sooner than the operation would end. An interrupted write must leave every chunk whole: old
or new. The child checks that itself before it lets the exception go, and prints what it
saw, since its in-memory store dies with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bigarrays import BigArray, CancelledError
from bigarrays._core import CancelToken, bind_cancel_token

#: Seconds from SIGINT to the child's exit that count as prompt (the engine checks every
#: 50 ms; the rest is Python start-up noise on a loaded machine and the interpreter's exit).
PROMPT = 2.0
#: Seconds every operation below would take uninterrupted, at least.
SLOW = 8.0
#: Seconds each chunk read or write of the slow stores sleeps (as in the children's DELAY).
DELAY = 0.04
#: Seconds after "started" before the signal: the operation is well under way.
LEAD = 0.4

PRELUDE = rf"""
import signal, sys, time
import numpy as np
from bigarrays import BigArray

DELAY = {DELAY}

class SlowStore(dict):
    # A mapping store that sleeps on every chunk read (reads=True) or write of chunk keys.
    def __init__(self, data, reads=True, writes=False):
        super().__init__(data)
        self.reads, self.writes = reads, writes

    def __getitem__(self, key):
        if self.reads and not key.endswith("info"):
            time.sleep(DELAY)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if self.writes and not key.endswith("info"):
            time.sleep(DELAY)
        super().__setitem__(key, value)

def layer(shape=(256, 256, 64), chunks=(16, 16, 16), value=1, **kw):
    data = dict()
    a = BigArray.create("l", store=data, shape=shape, dtype="uint8", chunks=chunks,
                        compression=None, **kw)
    a[:, :, :] = np.uint8(value)
    return data

def started():
    print("started", flush=True)
"""


def run_child(body: str, tmp_path: Path, timeout: float = 60.0) -> tuple[float, str, str]:
    """Runs ``PRELUDE + body`` in a child, sends SIGINT ``LEAD`` s after it prints
    ``started``, and returns (seconds from the signal to its exit, stdout, stderr)."""
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "started", line + (child.stderr.read() if child.stderr else "")
        time.sleep(LEAD)
        assert child.poll() is None, "the operation ended before the signal"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
        return time.monotonic() - sent, line + out, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def assert_interrupted(elapsed: float, err: str, exception: str = "KeyboardInterrupt") -> None:
    print(f"exited {elapsed:.2f} s after SIGINT")  # shown with pytest -s
    assert exception in err, err
    assert "PanicException" not in err and "fatal" not in err.lower(), err
    assert elapsed < PROMPT, f"took {elapsed:.2f} s after SIGINT"


def test_a_read_stops_promptly_on_ctrl_c(tmp_path: Path) -> None:
    # 256 chunks read one after another at 40 ms each (a mapping is called from one task):
    # about 10 s; the signal comes 0.4 s in.
    elapsed, out, err = run_child(
        """
        a = BigArray("l", store=SlowStore(layer(shape=(256, 256, 64))))
        started()
        t = time.monotonic()
        try:
            a[:, :, :]
        finally:
            print(f"stopped after {time.monotonic() - t:.2f}", flush=True)
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err)
    stopped = float(out.split("stopped after")[1])
    assert stopped < LEAD + PROMPT < SLOW <= 256 * DELAY


def test_read_many_stops_promptly_on_ctrl_c(tmp_path: Path) -> None:
    elapsed, out, err = run_child(
        """
        a = BigArray("l", store=SlowStore(layer(shape=(256, 256, 64))))
        started()
        a.read_many([np.s_[0:256, 0:128, 0:64], np.s_[0:256, 128:256, 0:64]])
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err)


def test_a_user_handler_exception_propagates(tmp_path: Path) -> None:
    elapsed, _, err = run_child(
        """
        class Stop(Exception):
            pass

        def handler(signum, frame):
            raise Stop(f"signal {signum}")

        signal.signal(signal.SIGINT, handler)
        a = BigArray("l", store=SlowStore(layer(shape=(256, 256, 64))))
        started()
        a[:, :, :]
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err, exception="Stop: signal 2")
    assert "KeyboardInterrupt" not in err and "StoreError" not in err, err


CHECK_CHUNKS = r"""
def check_chunks(data, old, new, shape, chunks):
    # Every chunk must read back whole: all old or all new.
    a = BigArray("l", store=data, fill_missing=False)
    counts = {old: 0, new: 0}
    for z in range(0, shape[2], chunks[2]):
        for y in range(0, shape[1], chunks[1]):
            for x in range(0, shape[0], chunks[0]):
                c = a[x:x + chunks[0], y:y + chunks[1], z:z + chunks[2]]
                values = set(np.unique(c).tolist())
                assert len(values) == 1 and values <= {old, new}, (x, y, z, values)
                counts[values.pop()] += 1
    print(f"old {counts[old]} new {counts[new]}", flush=True)
"""


def old_new(out: str) -> tuple[int, int]:
    words = out.split("old ")[1].split()
    return int(words[0]), int(words[2])


def test_a_write_stops_promptly_and_leaves_every_chunk_old_or_new(tmp_path: Path) -> None:
    # Puts of 1024 chunks at 40 ms each; the signal lands in a put (the mapping's code runs
    # on the calling thread during writes) or between them.
    body = """
    store = SlowStore(layer(shape=(256, 256, 64), value=1), reads=False, writes=True)
    a = BigArray("l", store=store)
    started()
    try:
        a[:, :, :] = np.uint8(2)
    except BaseException:
        store.writes = False
        check_chunks(store, 1, 2, (256, 256, 64), (16, 16, 16))
        raise
    """
    elapsed, out, err = run_child(CHECK_CHUNKS + textwrap.dedent(body), tmp_path)
    assert_interrupted(elapsed, err)
    old, new = old_new(out)
    assert old + new == 1024 and old > 0, out


def test_an_unaligned_write_stops_while_reading_its_edge_chunks(tmp_path: Path) -> None:
    # Read-modify-write of every chunk (the box is unaligned), with slow reads and writes.
    body = """
    store = SlowStore(layer(shape=(256, 256, 64), value=1), reads=True, writes=True)
    a = BigArray("l", store=store)
    started()
    try:
        a[1:255, 1:255, 1:63] = np.uint8(2)
    except BaseException:
        store.reads = store.writes = False
        inner = BigArray("l", store=store)[1:255, 1:255, 1:63]
        assert set(np.unique(inner).tolist()) <= {1, 2}
        print("ok", flush=True)
        raise
    """
    elapsed, out, err = run_child(CHECK_CHUNKS + textwrap.dedent(body), tmp_path)
    assert_interrupted(elapsed, err)
    assert "ok" in out


def test_a_cpu_bound_write_stops_between_chunks(tmp_path: Path) -> None:
    # Local disk, png (zlib level 9) of incompressible voxels: the time goes into encoding on
    # the CPU pool (seconds) while the calling thread waits and no Python code runs.
    url = str(tmp_path / "png")
    elapsed, out, err = run_child(
        f"""
        url = {url!r}
        shape = (512, 512, 384)
        a = BigArray.create(url, shape=shape, dtype="uint8", chunks=(64, 64, 64),
                            encoding="png")
        values = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        values = np.asfortranarray(values)  # no copy to make once started
        started()
        a[:, :, :] = values
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err)
    # Every chunk on disk reads whole: missing (never written) or all new voxels.
    b = BigArray(url, fill_missing=False)
    values = np.random.default_rng(0).integers(0, 255, (512, 512, 384), dtype=np.uint8)
    written = 0
    for z in range(0, 384, 64):
        for y in range(0, 512, 64):
            for x in range(0, 512, 64):
                box = np.s_[x : x + 64, y : y + 64, z : z + 64]
                try:
                    got = b[box]
                except KeyError:
                    continue
                assert np.array_equal(got, values[box]), box
                written += 1
    assert written < 6 * 8 * 8, "the write was not cut short"


def test_copy_to_stops_promptly_on_ctrl_c(tmp_path: Path) -> None:
    dst = str(tmp_path / "copy")
    elapsed, _, err = run_child(
        f"""
        a = BigArray("l", store=SlowStore(layer(shape=(512, 512, 64))))
        started()
        a.copy_to({dst!r}, jobs=2)
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err)


def test_downsample_stops_promptly_on_ctrl_c(tmp_path: Path) -> None:
    elapsed, _, err = run_child(
        """
        a = BigArray("l", store=SlowStore(layer(shape=(512, 512, 64))))
        started()
        a.downsample(factor=(2, 2, 1), mips=1, jobs=2)
        """,
        tmp_path,
    )
    assert_interrupted(elapsed, err)


class SlowReads(dict):  # type: ignore[type-arg]
    """A mapping store whose chunk reads sleep."""

    def __getitem__(self, key: str) -> bytes:
        if not key.endswith("info"):
            time.sleep(0.02)
        return super().__getitem__(key)


def test_a_cancel_token_stops_calls_on_its_thread() -> None:
    # How copy_to and downsample stop the blocks their worker threads run.
    data: dict[str, bytes] = {}
    a = BigArray.create("l", store=data, shape=(256, 256, 64), dtype="uint8", chunks=(16,) * 3)
    a[:, :, :] = np.uint8(3)
    slow = BigArray("l", store=SlowReads(data))
    token = CancelToken()
    outcome: dict[str, object] = {}

    def read() -> None:
        previous = bind_cancel_token(token)
        try:
            slow[:, :, :]
        except BaseException as e:  # noqa: BLE001 - the test inspects whatever it is
            outcome["error"] = e
        finally:
            outcome["stopped"] = time.monotonic()
            bind_cancel_token(previous)

    t = threading.Thread(target=read)
    t.start()
    time.sleep(LEAD)
    assert t.is_alive()
    cancelled = time.monotonic()
    token.cancel()
    t.join(timeout=30)
    assert isinstance(outcome["error"], CancelledError), outcome
    assert outcome["stopped"] - cancelled < 1.0  # type: ignore[operator]
    # The handle still works, and a thread without the token is not affected.
    assert int(slow[0, 0, 0]) == 3
    assert token.cancelled and bind_cancel_token(None) is None


def test_a_signal_on_the_main_thread_does_not_stop_other_threads_calls() -> None:
    # Only the thread running the call is interrupted: a read on another thread goes on
    # through the main thread's Ctrl-C (here a handler that only records it).
    data: dict[str, bytes] = {}
    a = BigArray.create("l", store=data, shape=(64, 64, 64), dtype="uint8", chunks=(16,) * 3)
    a[:, :, :] = np.uint8(4)
    slow = BigArray("l", store=SlowReads(data))
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        result: dict[str, np.ndarray] = {}
        t = threading.Thread(target=lambda: result.setdefault("v", slow[:, :, :]))
        t.start()
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)
        t.join(timeout=30)
        assert seen == [signal.SIGUSR1]
        assert int(result["v"].min()) == 4
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("kind", ["read", "write"])
def test_short_calls_still_work_with_the_hook(kind: str) -> None:
    a = BigArray.create(
        "memory://interrupt-short",
        shape=(32, 32, 32),
        dtype="uint16",
        chunks=(8,) * 3,
        overwrite=True,
    )
    if kind == "write":
        a[1:31, 2:30, 3:29] = np.uint16(7)
    got = a[:, :, :]
    assert got.shape == (32, 32, 32)
