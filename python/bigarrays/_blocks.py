"""Chunk-aligned work blocks and the thread pool that processes them.

Copying and downsampling both walk a box in blocks aligned to the destination's chunk grid
(so every write covers whole chunks and no two blocks share one), a few chunks per block to
amortise per-call costs while bounding memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ._core import CancelToken, bind_cancel_token
from .errors import CancelledError

Box = tuple[tuple[int, int, int], tuple[int, int, int]]

#: Target bytes per work block (voxel bytes of the destination).
BLOCK_BYTES = 64 << 20


def chunk_count(box: Box, origin: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """How many grid chunks (anchored at ``origin``) ``box`` touches."""
    n = 1
    for a in range(3):
        first = (box[0][a] - origin[a]) // chunks[a]
        last = (box[1][a] - 1 - origin[a]) // chunks[a]
        n *= max(0, last - first + 1)
    return n


Cell = tuple[int, int, int]


def cells_touching(box: Box, origin: tuple[int, ...], chunks: tuple[int, ...]) -> set[Cell]:
    """The cells of the chunk grid (anchored at ``origin``) that ``box`` touches."""
    first = [(box[0][a] - origin[a]) // chunks[a] for a in range(3)]
    last = [(box[1][a] - 1 - origin[a]) // chunks[a] for a in range(3)]
    return {
        (x, y, z)
        for x in range(first[0], last[0] + 1)
        for y in range(first[1], last[1] + 1)
        for z in range(first[2], last[2] + 1)
    }


def chunk_pieces(
    box: Box, origin: tuple[int, ...], chunks: tuple[int, int, int]
) -> dict[Cell, Box]:
    """The pieces of ``box`` cut by the chunk grid, by grid cell."""
    return {
        ((p[0][0] - origin[0]) // chunks[0], (p[0][1] - origin[1]) // chunks[1],
         (p[0][2] - origin[2]) // chunks[2]): p
        for p in aligned_blocks(box, origin, chunks)
    }  # fmt: skip


def intersect(a: Box, b: Box) -> Box | None:
    """The common part of two boxes, or None."""
    lo = tuple(max(x, y) for x, y in zip(a[0], b[0], strict=True))
    hi = tuple(min(x, y) for x, y in zip(a[1], b[1], strict=True))
    if any(x >= y for x, y in zip(lo, hi, strict=True)):
        return None
    return lo, hi  # type: ignore[return-value]


def block_shape(
    chunks: tuple[int, ...],
    voxel_bytes: int,
    target: int = BLOCK_BYTES,
    extent: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """A whole number of chunks per axis, roughly cubic, up to ``target`` bytes; with
    ``extent``, no axis grows past the array's extent (a Zarr ``t`` axis of one)."""
    shape = list(chunks)
    while math.prod(shape) * voxel_bytes * 2 <= target:
        growable = [a for a in range(len(shape)) if extent is None or shape[a] < extent[a]]
        if not growable:
            break
        axis = min(growable, key=lambda a: shape[a])
        shape[axis] *= 2
    return tuple(shape)


def aligned_blocks(box: Box, origin: tuple[int, ...], block: tuple[int, int, int]) -> Iterator[Box]:
    """The pieces of ``box`` cut by a grid of ``block``-sized cells anchored at ``origin``."""
    lo, hi = box
    ranges = []
    for a in range(3):
        first = origin[a] + (lo[a] - origin[a]) // block[a] * block[a]
        edges = list(range(first, hi[a], block[a]))
        ranges.append([(max(e, lo[a]), min(e + block[a], hi[a])) for e in edges])
    for z0, z1 in ranges[2]:
        for y0, y1 in ranges[1]:
            for x0, x1 in ranges[0]:
                yield (x0, y0, z0), (x1, y1, z1)


def run_parallel(
    tasks: Iterator[Box],
    work: Callable[[Box], tuple[int, int]],
    jobs: int | None,
    done: Callable[[int, int], None],
) -> None:
    """Runs ``work`` on every box with ``jobs`` threads, at most ``2 * jobs`` in flight.

    ``done`` receives each task's return value (bytes, chunks) as it finishes. The first
    error, or a ``KeyboardInterrupt`` on the calling thread (Ctrl-C), propagates at once:
    tasks not started are dropped, and those running stop within about 50 ms (their engine
    calls are cancelled) before it does, so nothing is left writing behind the caller's back.
    """
    jobs = jobs or os.cpu_count() or 1
    token = CancelToken()

    def run(box: Box) -> tuple[int, int]:
        # Signal handlers run only on the main thread, so the blocks' engine calls learn of
        # Ctrl-C (or another block's error) through the token bound to their thread.
        if token.cancelled:
            raise CancelledError("cancelled before it started")
        previous = bind_cancel_token(token)
        try:
            return work(box)
        finally:
            bind_cancel_token(previous)

    pending: set[Future[tuple[int, int]]] = set()
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="bigarrays")
    try:
        for box in tasks:
            if len(pending) >= 2 * jobs:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    done(*f.result())
            pending.add(pool.submit(run, box))
        for f in pending:
            done(*f.result())
    except BaseException:
        token.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
