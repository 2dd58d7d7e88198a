"""Sliding-window inference: overlapping blocks of a region, read ahead in order, and a
writer that blends the predictions with a weight window and writes each output chunk
once, when every block touching it is done.

The blocks of a region ``lo..hi`` along an axis start at ``lo, lo + stride, ...`` with
``stride = block - overlap``, the last one moved back to end at ``hi``, so every block is
whole and the region is covered; they go x fastest, then y, then z, the order the chunks
are stored in, so that neighbours share decoded chunks (open the input with
``cache_bytes`` of at least one row of blocks to reuse them).

The writer keeps, for every output chunk some block has touched and not every block has,
the weighted sum of the predictions over the chunk's part of the region; a chunk's sum is
normalised (by the sum of weights, a product of one precomputed sum per axis), cast,
written and dropped as soon as its last block arrives.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._bigarray import BigArray
from .errors import InvalidArgumentError

Box = tuple[tuple[int, int, int], tuple[int, int, int]]
Cell = tuple[int, int, int]

WINDOWS = ("cosine", "gaussian", "uniform")


def _triple(value: Any, name: str, least: int) -> tuple[int, int, int]:
    try:
        out = tuple(int(n) for n in value)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be 3 ints (x, y, z), got {value!r}") from None
    if len(out) != 3 or min(out) < least:
        which = "positive" if least > 0 else "non-negative"
        raise InvalidArgumentError(f"{name} must be 3 {which} ints (x, y, z), got {value!r}")
    return out  # type: ignore[return-value]


def _region(array: BigArray, region: Any) -> Box:
    """``region`` (None, a box or a tuple of slices) as a box inside ``array``'s bounds."""
    bounds = array.bounds[:3]
    if region is None:
        return tuple(b.start for b in bounds), tuple(b.stop for b in bounds)  # type: ignore[return-value]
    if all(isinstance(s, slice) for s in region):
        lo, hi = tuple(s.start for s in region), tuple(s.stop for s in region)
    else:
        lo, hi = region
    box = _triple(lo, "region start", -(2**62)), _triple(hi, "region stop", -(2**62))
    for a in range(3):
        if not bounds[a].start <= box[0][a] < box[1][a] <= bounds[a].stop:
            raise InvalidArgumentError(
                f"region {box} is empty or not inside {array.url}'s bounds "
                f"{tuple((b.start, b.stop) for b in bounds)}"
            )
    return box


def weight_window(kind: str, shape: Sequence[int]) -> np.ndarray:
    """The weight window over a block: a product of one profile per axis, all positive.

    ``"cosine"``: ``sin²(π (i + 0.5) / n)``; ``"gaussian"``: ``exp(-((i + 0.5 - n/2) /
    (n/8))² / 2)`` (σ = n/8, as nnU-Net blends); ``"uniform"``: 1.
    """
    x, y, z = (_profile(kind, n) for n in shape)
    return x[:, None, None] * y[None, :, None] * z[None, None, :]


def _profile(kind: str, n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    if kind == "cosine":
        return np.sin(np.pi * i / n) ** 2
    if kind == "gaussian":
        return np.exp(-0.5 * ((i - n / 2) / (n / 8)) ** 2)
    if kind == "uniform":
        return np.ones(n)
    raise InvalidArgumentError(f"window must be one of {WINDOWS}, not {kind!r}")


class BlockGrid:
    """The overlapping blocks of a region, in x-fastest order."""

    def __init__(self, region: Box, block: Any, overlap: Any) -> None:
        self.region = region
        self.block = _triple(block, "block", 1)
        self.overlap = _triple(overlap, "overlap", 0)
        self.starts: list[list[int]] = []
        for a, axis in enumerate("xyz"):
            lo, hi = region[0][a], region[1][a]
            b, o = self.block[a], self.overlap[a]
            if o >= b:
                raise InvalidArgumentError(
                    f"overlap {self.overlap} must be smaller than block {self.block} along "
                    f"every axis ({axis}: {o} >= {b})"
                )
            if b > hi - lo:
                raise InvalidArgumentError(
                    f"block {self.block} does not fit in the region {region} along {axis} "
                    f"({b} > {hi - lo}); use a smaller block or a larger region"
                )
            count = math.ceil((hi - lo - b) / (b - o)) + 1
            self.starts.append([min(lo + k * (b - o), hi - b) for k in range(count)])
        self.index = [{s: k for k, s in enumerate(axis)} for axis in self.starts]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Blocks along x, y and z."""
        return tuple(len(s) for s in self.starts)  # type: ignore[return-value]

    def box(self, k: Sequence[int]) -> Box:
        lo = tuple(self.starts[a][k[a]] for a in range(3))
        return lo, tuple(s + n for s, n in zip(lo, self.block, strict=True))  # type: ignore[return-value]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        nx, ny, nz = self.shape
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    yield x, y, z

    def locate(self, box: Any) -> tuple[int, int, int]:
        """The grid index of ``box``, which must be one of the blocks."""
        try:
            lo, hi = (tuple(int(v) for v in p) for p in box)
            k = tuple(self.index[a][lo[a]] for a in range(3))
        except (KeyError, TypeError, ValueError):
            k = None
        if k is None or self.box(k) != (lo, hi):
            raise InvalidArgumentError(
                f"box {box} is not one of the blocks (block={self.block}, "
                f"overlap={self.overlap}, region={self.region})"
            )
        return k  # type: ignore[return-value]


def _read_ahead(
    array: BigArray, boxes: Iterator[Box], prefetch: int
) -> Iterator[tuple[np.ndarray, Box]]:
    def read(box: Box) -> np.ndarray:
        return array[tuple(slice(a, b) for a, b in zip(*box, strict=True))]

    if prefetch == 0:
        for box in boxes:
            yield read(box), box
        return
    with ThreadPoolExecutor(prefetch, thread_name_prefix="bigarrays-blocks") as pool:
        ahead: deque[tuple[Future[np.ndarray], Box]] = deque()
        try:
            for box in boxes:
                ahead.append((pool.submit(read, box), box))
                if len(ahead) > prefetch:
                    f, b = ahead.popleft()
                    yield f.result(), b
            while ahead:
                f, b = ahead.popleft()
                yield f.result(), b
        finally:
            for f, _ in ahead:
                f.cancel()


def _check_covers(array: BigArray, region: Box) -> None:
    bounds = array.bounds[:3]
    if any(not b.start <= lo < hi <= b.stop for b, lo, hi in zip(bounds, *region, strict=True)):
        raise InvalidArgumentError(
            f"region {region} is not inside {array.url}'s bounds "
            f"{tuple((b.start, b.stop) for b in bounds)}"
        )


def sliding_blocks(
    array: BigArray,
    block: tuple[int, int, int],
    overlap: tuple[int, int, int],
    *,
    region: Any = None,
    prefetch: int = 2,
) -> Iterator[tuple[np.ndarray, Box]]:
    """The overlapping blocks of a region, read ahead in background threads.

    Parameters
    ----------
    array : BigArray
        The layer to read (indexed ``(x, y, z[, c])``).
    block : (int, int, int)
        Block size in voxels.
    overlap : (int, int, int)
        Voxels shared by neighbouring blocks, smaller than ``block``. Blocks start every
        ``block - overlap`` voxels from the region's start; the last one along an axis is
        moved back to end at the region's end. A stride that is a multiple of the chunk
        size, from a chunk-aligned start, makes blocks start on chunk boundaries.
    region : box or tuple of slices, optional
        ``((x0, y0, z0), (x1, y1, z1))`` or ``np.s_[x0:x1, y0:y1, z0:z1]`` in absolute
        coordinates; default: the whole layer.
    prefetch : int
        Blocks read ahead (default 2).

    Yields
    ------
    (ndarray, box)
        The block's voxels and its box ``((x0, y0, z0), (x1, y1, z1))``, x fastest, then
        y, then z: neighbours share chunks, which ``cache_bytes`` keeps decoded.
    """
    grid = BlockGrid(_region(array, region), block, overlap)
    return _read_ahead(array, (grid.box(k) for k in grid), int(prefetch))


class BlendedWriter:
    """Blends overlapping block predictions into a layer, writing each chunk once.

    Parameters
    ----------
    out : BigArray
        The layer to write (``(x, y, z[, c])``, any store, any dtype and channel count; it
        shares voxel coordinates with the input).
    block, overlap : (int, int, int)
        The block grid, as for :func:`sliding_blocks`.
    region : box or tuple of slices, optional
        What to compute; default: the whole of ``out``.
    window : {"cosine", "gaussian", "uniform"}
        The weight of each block's voxels (see :func:`bigarrays.weight_window`):
        ``cosine`` is ``sin²(π (i + 0.5) / n)`` per axis, ``gaussian`` has σ = n/8,
        ``uniform`` averages. A voxel's output is ``Σ w_b p_b / Σ w_b`` over the blocks
        ``b`` covering it.
    resume : bool
        Take the output chunks already stored in ``region`` as done (asked of the store,
        nothing decoded): :meth:`blocks` skips the blocks all of whose chunks are done, and
        those chunks are not written again. Since each chunk is written once, whole, a
        stored chunk is a finished one; start from an empty layer to compute it all.
    jobs : int, optional
        Threads writing finished chunks in the background (default: one per core), with
        at most ``2 * jobs`` writes in flight.

    Notes
    -----
    Feed it with ``for x, box in writer.blocks(src): writer.add(box, model(x))``, from
    one thread, blocks in any order. Integer outputs are rounded and clipped to the type's
    range (scale probabilities before adding them, e.g. ``255 * p`` for uint8); bool
    outputs are ``blend >= 0.5``.

    Finished chunks are written in background threads while the next blocks compute; the
    writer waits for them when :meth:`blocks` is exhausted or the last chunk is in. A
    failed write raises from a later :meth:`add` or :meth:`flush`. Stopping early, call
    :meth:`close` (or use the writer in a ``with`` block) to wait for the writes in
    flight.

    Memory: for every output chunk touched but not finished, one float32 array (float64
    for float64 outputs) of the chunk's size times channels. In the blocks' order these
    are the chunks within about ``block_z + chunk_z`` of the current z along the region's
    whole x-y extent, plus one row of blocks: ``≈ X × Y × (block_z + chunk_z) × 4 ×
    channels`` bytes. :attr:`open_bytes` tells it. If that is too much, compute adjacent
    regions with one writer each: each is blended on its own, so the seams between them
    are predicted from block edges, as the region's own edges are.
    """

    def __init__(
        self,
        out: BigArray,
        block: tuple[int, int, int],
        overlap: tuple[int, int, int],
        *,
        region: Any = None,
        window: str = "cosine",
        resume: bool = False,
        jobs: int | None = None,
    ) -> None:
        self.out = out
        self.grid = BlockGrid(_region(out, region), block, overlap)
        self.window_name = window
        # x-fastest, as the arrays read from and written to the layers are.
        self.window = np.asfortranarray(weight_window(window, self.grid.block))
        # The blocks form a product grid and the window is a product of profiles, so the
        # sum of the weights at a voxel is a product of one sum per axis: three short
        # arrays over the region instead of a weight sum per open chunk.
        self.norms = []
        for a in range(3):
            lo, n = self.grid.region[0][a], self.grid.block[a]
            norm = np.zeros(self.grid.region[1][a] - lo)
            for start in self.grid.starts[a]:
                norm[start - lo : start - lo + n] += _profile(window, n)
            self.norms.append(norm)
        # Sums in float32 unless the output keeps more (float64): half the memory.
        self.sum_type = np.float64 if out.dtype.itemsize > 4 else np.float32
        self.channels = out.num_channels
        self.origin = tuple(out.voxel_offset[:3])
        self.chunks = tuple(out.chunks[:3])
        # Per axis, the chunk cells each block index touches, and how many blocks touch
        # each cell: a cell's block count is the product of its three axes' counts.
        self.cells_of: list[list[range]] = []
        self.blocks_per_cell: list[dict[int, int]] = []
        for a in range(3):
            ranges: list[range] = []
            count: dict[int, int] = {}
            for s in self.grid.starts[a]:
                first = (s - self.origin[a]) // self.chunks[a]
                last = (s + self.grid.block[a] - 1 - self.origin[a]) // self.chunks[a]
                ranges.append(range(first, last + 1))
                for c in ranges[-1]:
                    count[c] = count.get(c, 0) + 1
            self.cells_of.append(ranges)
            self.blocks_per_cell.append(count)
        self.added = np.zeros(self.grid.shape, dtype=bool)
        self.remaining: dict[Cell, int] = {}
        self.sums: dict[Cell, tuple[Box, np.ndarray]] = {}
        self.done: set[Cell] = set()
        self.written = 0
        self.jobs = max(1, int(jobs or os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None
        self._writing: deque[tuple[Future[None], Cell]] = deque()
        if resume:
            units = out.stored_chunks(
                tuple(slice(a, b) for a, b in zip(*self.grid.region, strict=True))
            )
            if units is None:
                raise InvalidArgumentError(
                    f"resume: {out.url} cannot tell which chunks are stored ({out.format})"
                )
            self.done = {self._cell(lo) for lo, _, n in units if n > 0}

    # -- geometry ------------------------------------------------------------------------

    def _cell(self, point: Sequence[int]) -> Cell:
        return tuple((p - o) // c for p, o, c in zip(point, self.origin, self.chunks, strict=True))  # type: ignore[return-value]

    def _cells(self, k: Sequence[int]) -> Iterator[Cell]:
        rx, ry, rz = (self.cells_of[a][k[a]] for a in range(3))
        for z in rz:
            for y in ry:
                for x in rx:
                    yield x, y, z

    def _cell_box(self, cell: Cell) -> Box:
        """The chunk's part of the region."""
        lo = tuple(
            max(o + c * n, r)
            for o, c, n, r in zip(self.origin, cell, self.chunks, self.grid.region[0], strict=True)
        )
        hi = tuple(
            min(o + (c + 1) * n, r)
            for o, c, n, r in zip(self.origin, cell, self.chunks, self.grid.region[1], strict=True)
        )
        return lo, hi  # type: ignore[return-value]

    # -- the blocks ----------------------------------------------------------------------

    @property
    def boxes(self) -> list[Box]:
        """Every block of the region, in order."""
        return [self.grid.box(k) for k in self.grid]

    def pending(self) -> list[Box]:
        """The blocks still to add: not added yet, and touching a chunk not yet written."""
        return [
            self.grid.box(k)
            for k in self.grid
            if not self.added[k] and any(c not in self.done for c in self._cells(k))
        ]

    def blocks(self, src: BigArray, *, prefetch: int = 2) -> Iterator[tuple[np.ndarray, Box]]:
        """The pending blocks of ``src``, read ahead, as :func:`sliding_blocks` yields them.

        ``src`` shares voxel coordinates with the output and must cover the region.
        """
        _check_covers(src, self.grid.region)
        return self._blocks(src, int(prefetch))

    def _blocks(self, src: BigArray, prefetch: int) -> Iterator[tuple[np.ndarray, Box]]:
        yield from _read_ahead(src, iter(self.pending()), prefetch)
        self.flush()  # the caller's loop is over: its last chunks are on their way

    # -- blending ------------------------------------------------------------------------

    def add(self, box: Any, prediction: Any) -> None:
        """Adds one block's prediction; writes the chunks it was the last block of.

        Parameters
        ----------
        box : ((x0, y0, z0), (x1, y1, z1))
            One of the blocks, as :meth:`blocks` gave it.
        prediction : array-like
            ``block`` shaped, plus a last axis of ``out.num_channels`` when that is above
            1 (a CPU torch tensor works; detach it first).
        """
        k = self.grid.locate(box)
        lo, hi = self.grid.box(k)
        if self.added[k]:
            raise InvalidArgumentError(f"block {(lo, hi)} was already added")
        values = np.asarray(prediction)
        want = self.grid.block + ((self.channels,) if self.channels > 1 else ())
        if values.shape != want:
            raise InvalidArgumentError(
                f"prediction for block {(lo, hi)} has shape {values.shape}; {self.out.url} "
                f"needs {want} (block, then {self.channels} channel(s) when more than one)"
            )
        self.added[k] = True
        for cell in self._cells(k):
            if cell in self.done:
                continue
            cbox = self._cell_box(cell)
            if cell not in self.sums:
                shape = tuple(b - a for a, b in zip(*cbox, strict=True))
                extra = (self.channels,) if self.channels > 1 else ()
                self.sums[cell] = cbox, np.zeros(shape + extra, self.sum_type, order="F")
                self.remaining[cell] = math.prod(self.blocks_per_cell[a][cell[a]] for a in range(3))
            _, total = self.sums[cell]
            # The overlap of the block and the chunk, in each one's own indices.
            plo = [max(a, b) for a, b in zip(lo, cbox[0], strict=True)]
            phi = [min(a, b) for a, b in zip(hi, cbox[1], strict=True)]
            if all(a < b for a, b in zip(plo, phi, strict=True)):
                src = tuple(slice(a - s, b - s) for a, b, s in zip(plo, phi, lo, strict=True))
                dst = tuple(slice(a - s, b - s) for a, b, s in zip(plo, phi, cbox[0], strict=True))
                w = self.window[src]
                total[dst] += values[src] * (w[..., None] if self.channels > 1 else w)
            self.remaining[cell] -= 1
            if self.remaining[cell] == 0:
                self._finish(cell)
        if len(self.done) + len(self._writing) == self._cell_count:
            self.close()

    def _finish(self, cell: Cell) -> None:
        cbox, total = self.sums.pop(cell)
        del self.remaining[cell]
        nx, ny, nz = (
            self.norms[a][cbox[0][a] - self.grid.region[0][a] : cbox[1][a] - self.grid.region[0][a]]
            for a in range(3)
        )
        weight = np.multiply.outer(np.multiply.outer(nz, ny), nx).T  # x-fastest, as total
        blended: np.ndarray = total / (weight[..., None] if self.channels > 1 else weight)
        dtype = self.out.dtype
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            blended = np.clip(np.rint(blended), info.min, info.max)
        elif dtype.kind == "b":
            blended = np.greater_equal(blended, 0.5)
        key = tuple(slice(a, b) for a, b in zip(*cbox, strict=True))
        # Written in background threads (encoding and the store's put release the GIL),
        # so the model computes the next blocks meanwhile; a few writes in flight at most.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="bigarrays-blend")
        future = self._pool.submit(self.out.write, key, blended.astype(dtype), casting="unsafe")
        self._writing.append((future, cell))
        while len(self._writing) > 2 * self.jobs:
            self._collect()

    def _collect(self) -> None:
        """Waits for the oldest write in flight (raising its error)."""
        future, cell = self._writing.popleft()
        future.result()
        self.done.add(cell)
        self.written += 1

    def flush(self) -> None:
        """Waits for the chunk writes in flight; raises the first that failed (rerun with
        ``resume=True`` to finish)."""
        while self._writing:
            self._collect()

    def close(self) -> None:
        """Waits for the chunk writes in flight and stops the writing threads; done by
        itself when the last chunk is written. Call it (or use ``with``) when stopping
        early."""
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> BlendedWriter:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        # Already failing: wait for the writes, but let the first error be the one seen.
        try:
            self.close()
        except Exception:
            pass

    # -- state ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether every output chunk of the region is written."""
        return len(self.done) == self._cell_count

    @property
    def _cell_count(self) -> int:
        return math.prod(len(c) for c in self.blocks_per_cell)

    @property
    def open_chunks(self) -> int:
        """Output chunks with some blocks added and not all."""
        return len(self.sums)

    @property
    def open_bytes(self) -> int:
        """Bytes of the accumulators held now."""
        return sum(t.nbytes for _, t in self.sums.values())

    def __repr__(self) -> str:
        return (
            f"BlendedWriter({self.out.url!r}, block={self.grid.block}, "
            f"overlap={self.grid.overlap}, window={self.window_name!r}, "
            f"blocks={math.prod(self.grid.shape)}, written={self.written}, "
            f"open={self.open_chunks})"
        )
