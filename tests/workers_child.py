"""The parent process of ``test_workers.py``: run as a script in a fresh interpreter (so the
test bounds it with a timeout, and its thread counts are its own), it reads from each layer,
then starts DataLoader workers and a ``multiprocessing.Pool`` with one start method and
checks what comes back against the layers' true contents.

``python tests/workers_child.py METHOD SPEC_JSON``; exits non-zero on the first mismatch and
prints a JSON summary on its last line. torch is imported inside the functions that need it,
so that Pool workers (which import this module under spawn) start without it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time
from typing import Any

import numpy as np

import bigarrays
from bigarrays import BigArray, PatchLoader

PATCH = (16, 12, 8)
#: Seconds a DataLoader may wait for one batch, and a Pool for its results: a hang fails.
WAIT = 90


def thread_names() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names


def engine_threads() -> dict[str, int]:
    names = thread_names()
    return {
        "cpu": sum(n.startswith("bigarrays-cpu") for n in names),
        "io": sum(n == "bigarrays-io" for n in names),
        "all": len(names),
    }


def settled_threads(want: int) -> dict[str, int]:
    """This process's engine threads once pools replaced by a new count have wound down
    (their threads exit on their own, shortly after the replacement): up to 10 s for the
    CPU pool's, then up to 2 s for the IO runtime's."""
    for kind, seconds in (("cpu", 10), ("io", 2)):
        end = time.monotonic() + seconds
        while engine_threads()[kind] > want and time.monotonic() < end:
            time.sleep(0.05)
    return engine_threads()


def key(start: list[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in zip(start, PATCH, strict=True))


def expected(truth: np.ndarray, offset: list[int], start: list[int]) -> np.ndarray:
    corner = zip(start, offset, PATCH, strict=True)
    return truth[tuple(slice(s - o, s - o + n) for s, o, n in corner)]


class Patches:
    """A plain map-style dataset (no PatchLoader): one patch per item, read in
    ``__getitem__``, with what the worker's engine threads look like at that moment."""

    def __init__(self, array: BigArray, starts: list[list[int]]) -> None:
        self.array, self.starts = array, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int, int]:
        patch = self.array[key(self.starts[i])]
        n = bigarrays.get_num_threads()
        seen = settled_threads(n)
        return patch, n, seen["cpu"], seen["io"]


def three_threads(worker_id: int) -> None:
    bigarrays.set_num_threads(3)


def pool_read(args: tuple[BigArray, list[int]]) -> tuple[np.ndarray, int]:
    array, start = args
    return array[key(start)], bigarrays.get_num_threads()


def check_loader(ctx: Any, array: BigArray, truth: np.ndarray, offset: list[int]) -> None:
    """PatchLoader (tensors: ``pin_memory``) through DataLoader workers, in stream order."""
    import torch

    loader = PatchLoader(array, PATCH, 4, seed=1, num_batches=6, pin_memory=True)
    data = torch.utils.data.DataLoader(
        loader, batch_size=None, num_workers=2, multiprocessing_context=ctx, timeout=WAIT
    )
    got = list(data)
    assert len(got) == 6, f"{len(got)} batches, not 6"
    for i, batch in enumerate(got):
        assert isinstance(batch, torch.Tensor) and not batch.is_pinned()
        want = np.stack([expected(truth, offset, s) for s in loader.batch_starts(i).tolist()])
        np.testing.assert_array_equal(batch.numpy(), want, err_msg=f"batch {i}")


def check_dataset(
    ctx: Any,
    array: BigArray,
    truth: np.ndarray,
    offset: list[int],
    starts: list[list[int]],
    threads: int,
    init: Any = None,
    check_io: bool = True,
) -> None:
    """A map-style dataset through DataLoader workers: right patches, and each worker's
    engine sized ``threads`` (the default share, or what ``init`` chose). ``check_io``:
    count the IO threads too; not for a bucket in a spawn or forkserver worker, whose first
    IO runtime (started to open the layer, before the worker knew its share) drains only
    when its pooled connections close."""
    import torch

    data = torch.utils.data.DataLoader(
        Patches(array, starts),
        batch_size=4,
        num_workers=2,
        multiprocessing_context=ctx,
        timeout=WAIT,
        worker_init_fn=init,
    )
    patches, sizes, cpus, ios = [], [], [], []
    for patch, n, cpu, io in data:
        patches.extend(patch.numpy())
        sizes.extend(n.tolist())
        cpus.extend(cpu.tolist())
        ios.extend(io.tolist())
    for i, (patch, start) in enumerate(zip(patches, starts, strict=True)):
        np.testing.assert_array_equal(patch, expected(truth, offset, start), err_msg=f"item {i}")
    assert sizes == [threads] * len(starts), f"workers used {sizes} threads, not {threads}"
    assert max(cpus) <= threads, f"workers ran {cpus} CPU threads, more than {threads}"
    if check_io:
        assert max(ios) <= threads, f"workers ran {ios} IO threads, more than {threads}"


def check_pool(
    ctx: Any, array: BigArray, truth: np.ndarray, offset: list[int], starts: list[list[int]]
) -> None:
    with ctx.Pool(2) as pool:
        got = pool.map_async(pool_read, [(array, s) for s in starts]).get(timeout=WAIT)
    for i, ((patch, _), start) in enumerate(zip(got, starts, strict=True)):
        np.testing.assert_array_equal(patch, expected(truth, offset, start), err_msg=f"item {i}")
    # A Pool worker is no DataLoader worker: the machine's count, as in the parent.
    assert {n for _, n in got} == {bigarrays.get_num_threads()}


def main(method: str, spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # before counting the parent's threads: importing it may start some

    ctx = multiprocessing.get_context(method)
    layers = []
    for layer in spec["layers"]:
        array = BigArray(layer["url"], storage_options=layer.get("options"))
        truth = np.load(layer["truth"])
        layers.append((array, truth, layer["offset"], layer["all"]))
    rng = np.random.default_rng(5)
    # The parent reads first, so its engine threads run when the workers start.
    for array, truth, offset, _ in layers:
        lo, hi = np.array(offset), np.array(offset) + truth.shape - PATCH
        starts = rng.integers(lo, hi, size=(8, 3), endpoint=True).tolist()
        for got, s in zip(array.read_many([key(s) for s in starts]), starts, strict=True):
            np.testing.assert_array_equal(got, expected(truth, offset, s))
    assert engine_threads()["cpu"] == bigarrays.get_num_threads()
    before = (len(thread_names()), threading.active_count())
    # The parent's count is the machine's cores (no setting here); two workers share them.
    share = max(1, bigarrays.get_num_threads() // 2)
    for array, truth, offset, everything in layers:
        lo, hi = np.array(offset), np.array(offset) + truth.shape - PATCH
        starts = rng.integers(lo, hi, size=(8, 3), endpoint=True).tolist()
        check_loader(ctx, array, truth, offset)
        local = everything or ctx.get_start_method() == "fork"
        check_dataset(ctx, array, truth, offset, starts, share, check_io=local)
        if everything:
            check_dataset(ctx, array, truth, offset, starts, 3, init=three_threads)
            check_pool(ctx, array, truth, offset, starts)
    # Workers gone, the parent is back to the threads it had (the IO runtime's passing
    # threads may have ended meanwhile, never more).
    end = time.monotonic() + 15
    while len(thread_names()) > before[0] or threading.active_count() > before[1]:
        if time.monotonic() > end:
            raise AssertionError(
                f"the parent has threads {thread_names()} ({threading.active_count()} Python "
                f"threads), more than the {before} it had before the workers"
            )
        time.sleep(0.1)
    del torch
    return {"method": method, "threads_before": before, "share": share}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
