"""The soak's model checker: is every observed chunk a state some real-time order of the
writes can give? (docs/RELIABILITY.md, "Soak", states the rule; this is its code.)

A write ``w`` paints its box with its own value ``w.id`` (never 0, which is "never
written"). It is logged before it starts (``start``, fsynced) and after it returns
(``end``, fsynced; ``inf`` when it never returned: killed, or failed). Each chunk is a
linearisable register of whole-chunk replacements: the part of ``w`` inside a chunk lands
at one moment between ``start`` and ``end`` (or, for an interrupted write, at some moment
after ``start``, or never). Chunks are independent: a write is not a transaction.

An observation is a box read between ``t0`` and ``t1``. Per chunk it touches, the voxels
seen must be what applying a set ``S`` of writes in some order gives, where

- ``S`` holds every write that completed before the read began (``end < t0``), every write
  whose value is seen, and every completed write that ended before a seen write started
  (those must have landed first); no write that started after the read ended;
- the order puts ``a`` before ``b`` whenever ``a.end < b.start`` (real time);
- each voxel shows the value of the last write in ``S`` covering it, or 0 if none does.

Writes outside ``S`` (interrupted ones not seen, completed ones not forced in) may be left
out: leaving one out only removes constraints. The check is exact and needs no search: the
seen values ``V`` of a chunk are few, and an order exists iff the graph on ``V`` with these
edges is acyclic:

- ``a -> b`` when ``a.end < b.start``;
- ``a -> b`` when ``a``'s box covers a voxel showing ``b`` (``a`` landed first there);
- ``a -> b`` when some write ``u`` of ``S`` other than ``b`` covers a voxel showing ``b``
  and ``a.end < u.start`` (``a`` before ``u`` before ``b``; ``a == b`` gives the self-loop
  of a lost update: ``u`` started after ``b`` ended, yet ``b`` is on top);

plus: every seen value is a known write whose box holds all of its voxels and which
started before the read ended, and no write of ``S`` covers a voxel showing 0. Paths
through writes of ``S`` that are not seen reduce to these edges (their only edges in are
real-time ones), so a cycle among all of ``S`` exists iff one exists on ``V``.

Per chunk the observations are swept in order of ``T`` = max(``t0``, the latest start of a
seen write), painting each completed write into per-voxel "latest start" maps (the top
two, with the owner of the first) once, when ``T`` passes its end: the whole history is
checked in one pass over the writes per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INF = math.inf
Box = tuple[tuple[int, int, int], tuple[int, int, int]]


@dataclass(frozen=True)
class Write:
    id: int
    box: Box
    start: float
    end: float = INF  # inf: never returned (killed or failed)

    @property
    def completed(self) -> bool:
        return self.end != INF


@dataclass
class Observation:
    """``data`` is the box's voxels (x, y, z), uint32, read between ``t0`` and ``t1``."""

    box: Box
    t0: float
    t1: float
    data: np.ndarray
    label: str


@dataclass(frozen=True)
class Violation:
    label: str
    chunk: Box
    what: str

    def __str__(self) -> str:
        (x0, y0, z0), (x1, y1, z1) = self.chunk
        return f"{self.label}: chunk {x0}-{x1}_{y0}-{y1}_{z0}-{z1}: {self.what}"


@dataclass(frozen=True)
class Grid:
    origin: tuple[int, int, int]
    size: tuple[int, int, int]
    chunk: tuple[int, int, int]

    def chunks_of(self, box: Box) -> list[Box]:
        lo, hi = box
        ranges = []
        for d in range(3):
            a = max(lo[d], self.origin[d])
            b = min(hi[d], self.origin[d] + self.size[d])
            if a >= b:
                return []
            first = (a - self.origin[d]) // self.chunk[d]
            last = (b - 1 - self.origin[d]) // self.chunk[d]
            ranges.append(range(first, last + 1))
        out = []
        for i in ranges[0]:
            for j in ranges[1]:
                for k in ranges[2]:
                    c_lo = tuple(self.origin[d] + (i, j, k)[d] * self.chunk[d] for d in range(3))
                    c_hi = tuple(
                        min(c_lo[d] + self.chunk[d], self.origin[d] + self.size[d])
                        for d in range(3)
                    )
                    out.append((c_lo, c_hi))  # type: ignore[arg-type]
        return out


def _intersect(a: Box, b: Box) -> Box | None:
    lo = tuple(max(a[0][d], b[0][d]) for d in range(3))
    hi = tuple(min(a[1][d], b[1][d]) for d in range(3))
    if any(lo[d] >= hi[d] for d in range(3)):
        return None
    return lo, hi  # type: ignore[return-value]


def _slices(box: Box, origin: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(box[0][d] - origin[d], box[1][d] - origin[d]) for d in range(3))


class _Latest:
    """Per voxel of one chunk: the latest and second-latest start of the writes painted
    over it, and who owns the latest."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.top1 = np.full(shape, -INF)
        self.owner = np.zeros(shape, dtype=np.int64)
        self.top2 = np.full(shape, -INF)

    def copy(self) -> _Latest:
        c = _Latest.__new__(_Latest)
        c.top1, c.owner, c.top2 = self.top1.copy(), self.owner.copy(), self.top2.copy()
        return c

    def paint(self, region: tuple[slice, ...], start: float, wid: int) -> None:
        t1, own, t2 = self.top1[region], self.owner[region], self.top2[region]
        above = start > t1
        second = ~above & (start > t2)
        t2[above] = t1[above]
        t1[above] = start
        own[above] = wid
        t2[second] = start


def check(
    writes: dict[int, Write], observations: Sequence[Observation], grid: Grid
) -> list[Violation]:
    """Every violation of the rule above in ``observations`` (empty when all are fine)."""
    by_chunk: dict[Box, list[Observation]] = {}
    for obs in observations:
        for c in grid.chunks_of(obs.box):
            by_chunk.setdefault(c, []).append(obs)
    writes_in: dict[Box, list[Write]] = {}
    for w in writes.values():
        for c in grid.chunks_of(w.box):
            writes_in.setdefault(c, []).append(w)
    out: list[Violation] = []
    for chunk, seen in by_chunk.items():
        out += _check_chunk(chunk, seen, writes_in.get(chunk, []), writes)
    return out


def _check_chunk(
    chunk: Box, seen: list[Observation], covering: list[Write], writes: dict[int, Write]
) -> list[Violation]:
    out: list[Violation] = []
    shape = tuple(chunk[1][d] - chunk[0][d] for d in range(3))
    prepared = []
    for obs in seen:
        region = _intersect(obs.box, chunk)
        assert region is not None
        values = obs.data[_slices(region, obs.box[0])]
        ids = [int(v) for v in np.unique(values) if v != 0]
        bad = [v for v in ids if v not in writes]
        if bad:
            out.append(Violation(obs.label, chunk, f"values no write wrote: {bad[:5]}"))
            continue
        t = max([obs.t0, *(writes[v].start for v in ids)])
        prepared.append((t, obs, region, values, ids))
    prepared.sort(key=lambda p: p[0])
    done = sorted((w for w in covering if w.completed), key=lambda w: w.end)
    latest = _Latest(shape)
    painted: set[int] = set()
    i = 0
    for t, obs, region, values, ids in prepared:
        while i < len(done) and done[i].end < t:
            w = done[i]
            part = _intersect(w.box, chunk)
            assert part is not None
            latest.paint(_slices(part, chunk[0]), w.start, w.id)
            painted.add(w.id)
            i += 1
        out += _check_state(obs, chunk, region, values, ids, latest, painted, writes)
    return out


def _check_state(
    obs: Observation,
    chunk: Box,
    region: Box,
    values: np.ndarray,
    ids: list[int],
    latest: _Latest,
    painted: set[int],
    writes: dict[int, Write],
) -> list[Violation]:
    def bad(what: str) -> list[Violation]:
        return [Violation(obs.label, chunk, what)]

    uniq, inv, counts = np.unique(values, return_inverse=True, return_counts=True)
    inv = inv.reshape(values.shape)
    index = {int(v): i for i, v in enumerate(uniq)}
    own = _slices(region, chunk[0])
    # Painting the seen writes not yet painted: they are in S too.
    local = _Latest.__new__(_Latest)
    local.top1 = latest.top1[own].copy()
    local.owner = latest.owner[own].copy()
    local.top2 = latest.top2[own].copy()
    under: dict[int, set[int]] = {}  # the values seen under each seen write's box
    for v in ids:
        w = writes[v]
        if w.start > obs.t1:
            return bad(f"write {v} started after the read ended")
        inside = _intersect(w.box, region)
        if inside is None:
            return bad(f"write {v} seen outside its box {w.box}")
        part = inv[_slices(inside, region[0])]
        if np.count_nonzero(part == index[v]) != counts[index[v]]:
            return bad(f"write {v} seen outside its box {w.box}")
        under[v] = {int(uniq[k]) for k in np.unique(part)}
        if v not in painted:
            local.paint(_slices(inside, region[0]), w.start, v)
    landed = local.top1 > -INF
    zero = values == 0
    if (zero & landed).any():
        who = sorted({int(x) for x in local.owner[zero & landed]})[:5]
        return bad(f"voxels read 0 where writes {who} (which must have landed) wrote")
    # G_b: the latest start of another write of S covering a voxel showing b (the second
    # latest where the latest is b itself).
    other = np.where(local.owner == values, local.top2, local.top1)
    g = np.full(len(uniq), -INF)
    np.maximum.at(g, inv.ravel(), other.ravel())
    edges: dict[int, set[int]] = {v: set() for v in ids}
    for b in ids:
        gb, wb = g[index[b]], writes[b]
        for a in ids:
            wa = writes[a]
            if wa.end < gb or (a != b and (wa.end < wb.start or b in under[a])):
                edges[a].add(b)
    cycle = _find_cycle(edges)
    if cycle:
        path = " -> ".join(str(c) for c in cycle)
        if len(cycle) == 2:
            return bad(f"lost update: write {cycle[0]} is on top, yet another write of S "
                       f"over its voxels started after it ended")  # fmt: skip
        return bad(f"torn: no order of the writes gives this chunk (cycle {path})")
    return []


def _find_cycle(edges: dict[int, set[int]]) -> list[int] | None:
    """A cycle in the small graph ``edges`` (as a closed path), or None."""
    colour: dict[int, int] = {}
    stack: list[int] = []

    def visit(n: int) -> list[int] | None:
        colour[n] = 1
        stack.append(n)
        for m in edges[n]:
            if colour.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in colour:
                found = visit(m)
                if found:
                    return found
        colour[n] = 2
        stack.pop()
        return None

    for n in edges:
        if n not in colour:
            found = visit(n)
            if found:
                return found
    return None
