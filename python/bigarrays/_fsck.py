"""``bigarrays fsck``: check a layer's metadata and every stored chunk, and name the damage.

What is checked, per format and store:

- Every format: the metadata parses (the engine names the bad field), at every scale.
- Every stored chunk decodes: each one the engine lists (``stored_chunks``: file names,
  listings, shard indexes) is read through the same decoders as any cutout, in batches on a
  thread pool (bounded memory: at most ``jobs`` batches of chunks decoded at once). A batch
  that fails is read again chunk by chunk, so each bad chunk is named with the decoder's
  message.
- Precomputed on local disk and in Python mappings, where the keys themselves can be
  listed: chunk keys outside the bounds or off the chunk grid (wrong sizes in the name),
  shard files whose index or minishard indexes point past the end, shards holding chunks
  that belong to another shard or minishard (orphaned: no reader ever finds them), and shard
  files that no shard number names.
- Local disks: temporary files of killed writers (``<key>#<n>``), any format. ``repair``
  removes those older than ``min_age`` seconds; younger ones may belong to a writer still
  running and are left alone.

S3, GCS, HTTP and ``memory://`` layers are checked through the engine only (metadata and
decoding): their raw keys are not reachable from Python here, and they never hold temporary
files (each put is atomic there).
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import _core, errors
from ._bigarray import BigArray

# A killed writer's leftover: the local store writes `<key>#<n>` and renames it over
# `<key>`. Branch `localcas` puts the one test for that name, and the age after which the
# next writer of a key removes one, in Rust (`_core.temporary_of`,
# `_core.TEMPORARY_MAX_AGE_S`); fsck uses them when the extension has them, and until that
# branch merges this same rule (a name with no `#` of its own, `#`, digits) and age.
_RUST_TEMPORARY_OF = getattr(_core, "temporary_of", None)
_TEMPORARY = re.compile(r"^[^#]+#[0-9]+$")

#: Temporary files younger than this may belong to a writer still running: not removed.
TEMP_MIN_AGE_S = float(getattr(_core, "TEMPORARY_MAX_AGE_S", 300.0))

_CHUNK_KEY = re.compile(
    r"^(-?[0-9]+)-(-?[0-9]+)_(-?[0-9]+)-(-?[0-9]+)_(-?[0-9]+)-(-?[0-9]+)(\.gz|\.br|\.zstd)?$"
)
_SHARD_KEY = re.compile(r"^([0-9a-f]+)\.shard$")

#: Chunks decoded per engine call: enough to keep the decoders busy, few enough that a
#: batch's voxels stay small.
_BATCH = 32
#: Largest inflated minishard index accepted (the engine's cap on indexes).
_MAX_INDEX = 256 << 20


def is_temporary(name: str) -> bool:
    """Whether ``name`` (a key, path or file name) is a temporary file of an unfinished put."""
    if _RUST_TEMPORARY_OF is not None:
        return _RUST_TEMPORARY_OF(name) is not None
    return _TEMPORARY.match(name.rsplit("/", 1)[-1]) is not None


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`fsck`.

    Attributes
    ----------
    kind : str
        ``"info"`` (metadata), ``"undecodable"``, ``"outside-bounds"``, ``"off-grid"``,
        ``"shard-index"`` (an index pointing past the end or unreadable), ``"orphaned"``
        (a chunk in a shard or minishard that readers never look in), ``"stray-shard"``,
        ``"temporary"``, ``"read-error"`` (the store failed), and two notes that are not
        damage: ``"unknown-key"`` (a name that is no chunk key) and ``"unchecked"`` (a
        format whose chunks fsck cannot list: HDF5).
    key : str
        The key, file or URL concerned.
    message : str
        What is wrong, with the decoder's or parser's own message where there is one.
    damage : bool
        Whether it makes the layer unclean (every kind but the two notes).
    """

    kind: str
    key: str
    message: str
    damage: bool = True

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.message}"


@dataclass
class FsckReport:
    """What :func:`fsck` found.

    Attributes
    ----------
    url : str
        The layer checked.
    format : str
        Its format (``"precomputed"``, ``"zarr"``, ...), or ``"?"`` when it did not open.
    problems : list of Problem
        Every finding, damage or not, in the order found.
    chunks : int
        Stored chunks decoded.
    objects : int
        Keys listed (local disks and mappings only; 0 elsewhere).
    repaired : list of str
        Keys removed by ``repair`` (old temporary files).
    """

    url: str
    format: str = "?"
    problems: list[Problem] = field(default_factory=list)
    chunks: int = 0
    objects: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing damaged remains (notes such as unknown keys do not count)."""
        return not any(p.damage for p in self.problems)

    @property
    def damage(self) -> list[Problem]:
        """The problems that make the layer unclean."""
        return [p for p in self.problems if p.damage]

    def summary(self) -> str:
        """One line: the verdict and the counts."""
        verdict = "clean" if self.ok else f"{len(self.damage)} problem(s)"
        text = f"{self.url}: {self.format}, {verdict}; {self.chunks} chunk(s) decoded"
        if self.objects:
            text += f", {self.objects} key(s) listed"
        if self.repaired:
            text += f", {len(self.repaired)} temporary file(s) removed"
        return text

    def __str__(self) -> str:
        return "\n".join([*(str(p) for p in self.problems), self.summary()])


def fsck(
    url: str,
    *,
    repair: bool = False,
    store: MutableMapping[str, bytes] | None = None,
    storage_options: dict[str, Any] | None = None,
    jobs: int | None = None,
    min_age: float = TEMP_MIN_AGE_S,
    progress: bool = False,
) -> FsckReport:
    """Checks the layer at ``url``: metadata, every stored chunk, and on local disks and
    mappings the keys themselves (see the module docstring for what each store allows).

    Parameters
    ----------
    url : str
        The layer, as for :class:`~bigarrays.BigArray` (with ``store``, its prefix there).
    repair : bool
        Remove temporary files of killed writers older than ``min_age`` seconds. Nothing
        else is changed: damaged chunks are reported, never rewritten.
    store, storage_options
        As for :class:`~bigarrays.BigArray`.
    jobs : int, optional
        Batches of chunks decoded at once (default: the CPU count).
    min_age : float
        Temporary files younger than this (seconds) are reported but never removed.
    progress : bool
        A progress bar on stderr (shown on a terminal only).

    Returns
    -------
    FsckReport
        ``report.ok`` is False when anything is damaged; ``str(report)`` has one line per
        problem and a summary line.

    Raises
    ------
    LayerNotFoundError
        No layer at ``url``.
    StoreError
        The store failed while listing.
    """
    opened: dict[str, Any] = dict(store=store, storage_options=storage_options)
    report = FsckReport(url=str(url))
    keys = _Keys.for_url(str(url), store)
    try:
        first = BigArray(url, fill_missing=True, **opened)
    except errors.InfoError as e:
        report.problems.append(Problem("info", str(url), str(e)))
        _scan_temporary(keys, report, repair, min_age)
        return report
    report.format = first.format
    tasks: list[_Task] = []
    if first.format == "precomputed":
        for mip in range(first.num_mips):
            try:
                a = first if mip == 0 else BigArray(url, mip=mip, fill_missing=True, **opened)
                # Some fields (the encoding) are checked at the first read: one voxel.
                a[tuple(s.start for s in a.bounds[:3])]
            except errors.InfoError as e:
                report.problems.append(Problem("info", f"{url} mip {mip}", str(e)))
                continue
            tasks += _precomputed_scale(a, keys, report, jobs)
    else:
        tasks += _engine_listed(first, report)
    _scan_temporary(keys, report, repair, min_age)
    _decode_all(tasks, report, jobs, progress)
    return report


# -- keys: what can be listed and read raw --------------------------------------------------


class _Keys:
    """Raw access to a layer's keys where Python can list them: a local directory or a
    mapping. ``None`` stands for stores reached only through the engine."""

    def names(self, dir: str) -> list[tuple[str, int, float]]:
        """(name, size, mtime) of the objects directly in ``dir`` (relative to the layer)."""
        raise NotImplementedError

    def walk(self) -> Iterator[tuple[str, float]]:
        """(key, mtime) of every object under the layer, at any depth."""
        raise NotImplementedError

    def read(self, key: str, start: int, stop: int) -> bytes:
        raise NotImplementedError

    def remove(self, key: str) -> None:
        raise NotImplementedError

    def describe(self, key: str) -> str:
        raise NotImplementedError

    @staticmethod
    def for_url(url: str, store: MutableMapping[str, bytes] | None) -> _Keys | None:
        if store is not None:
            return _MappingKeys(store, url)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return _LocalKeys(Path(unquote(parsed.path)))
        if "://" in url:
            return None
        return _LocalKeys(Path(url))


class _LocalKeys(_Keys):
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self, dir: str) -> list[tuple[str, int, float]]:
        out = []
        try:
            entries = list(os.scandir(self.root / dir))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                out.append((entry.name, st.st_size, st.st_mtime))
        return out

    def walk(self) -> Iterator[tuple[str, float]]:
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    mtime = path.lstat().st_mtime
                except FileNotFoundError:  # renamed into place meanwhile
                    continue
                yield path.relative_to(self.root).as_posix(), mtime

    def read(self, key: str, start: int, stop: int) -> bytes:
        with open(self.root / key, "rb") as f:
            f.seek(start)
            return f.read(max(0, stop - start))

    def remove(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def describe(self, key: str) -> str:
        return str(self.root / key)


class _MappingKeys(_Keys):
    def __init__(self, store: MutableMapping[str, bytes], prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def names(self, dir: str) -> list[tuple[str, int, float]]:
        base = self._full(dir) + "/"
        out = []
        for k in list(self.store.keys()):
            if k.startswith(base) and "/" not in k[len(base) :]:
                # Only shard files need their size here: no other value is fetched twice.
                size = len(self.store[k]) if k.endswith(".shard") else 0
                out.append((k[len(base) :], size, 0.0))
        return out

    def walk(self) -> Iterator[tuple[str, float]]:
        # Mappings take each value whole: no temporary keys (and no ages) to find.
        return iter(())

    def read(self, key: str, start: int, stop: int) -> bytes:
        return bytes(self.store[self._full(key)][start:stop])

    def remove(self, key: str) -> None:
        self.store.pop(self._full(key), None)

    def describe(self, key: str) -> str:
        return self._full(key)


def _scan_temporary(keys: _Keys | None, report: FsckReport, repair: bool, min_age: float) -> None:
    if keys is None:
        return
    now = time.time()
    for key, mtime in keys.walk():
        if not is_temporary(key):
            continue
        age = now - mtime
        where = keys.describe(key)
        if repair and age >= min_age:
            keys.remove(key)
            report.repaired.append(where)
            continue
        young = age < min_age
        note = " (young: may belong to a writer still running; left alone)" if young else ""
        report.problems.append(
            Problem(
                "temporary",
                where,
                f"temporary file of an unfinished write, {age:.0f} s old{note}",
            )
        )


# -- Precomputed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """Boxes to decode: (lo, hi) in the handle's own indexing, each named by ``names``."""

    array: BigArray
    keys: tuple[tuple[slice, ...], ...]
    names: tuple[str, ...]


def _batches(a: BigArray, boxes: Sequence[tuple[slice, ...]], names: Sequence[str]) -> list[_Task]:
    return [
        _Task(a, tuple(boxes[i : i + _BATCH]), tuple(names[i : i + _BATCH]))
        for i in range(0, len(boxes), _BATCH)
    ]


def _box(lo: Sequence[int], hi: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _precomputed_scale(
    a: BigArray, keys: _Keys | None, report: FsckReport, jobs: int | None
) -> list[_Task]:
    scale = a.info["scales"][a.mip]
    if keys is None:
        return _engine_listed(a, report)
    lo = [s.start for s in a.bounds[:3]]
    hi = [s.stop for s in a.bounds[:3]]
    chunk = list(a.read_chunks[:3])
    names = keys.names(scale["key"])
    report.objects += len(names)
    if "sharding" in scale:
        return _sharded_scale(a, scale, keys, names, lo, hi, chunk, report, jobs)
    boxes: list[tuple[slice, ...]] = []
    labels: list[str] = []
    for name, _, _ in names:
        key = f"{scale['key']}/{name}"
        if is_temporary(name):
            continue  # reported by the walk over the whole layer
        m = _CHUNK_KEY.match(name)
        if m is None:
            report.problems.append(
                Problem("unknown-key", keys.describe(key), "not a chunk key", damage=False)
            )
            continue
        v = [int(g) for g in m.groups()[:6]]
        c_lo, c_hi = v[0::2], v[1::2]
        bad = _off_grid(c_lo, c_hi, lo, hi, chunk)
        if bad is not None:
            report.problems.append(Problem(bad[0], keys.describe(key), bad[1]))
            continue
        boxes.append(_box(c_lo, c_hi))
        labels.append(keys.describe(key))
    return _batches(a, boxes, labels)


def _off_grid(
    c_lo: list[int], c_hi: list[int], lo: list[int], hi: list[int], chunk: list[int]
) -> tuple[str, str] | None:
    """Why the chunk key ``c_lo``-``c_hi`` is not one of the scale's, or None."""
    if any(a < b or c > d or a >= c for a, b, c, d in zip(c_lo, lo, c_hi, hi, strict=True)):
        return (
            "outside-bounds",
            f"chunk {_span(c_lo, c_hi)} is not inside the bounds {_span(lo, hi)}",
        )
    want_hi = [min(a + c, h) for a, c, h in zip(c_lo, chunk, hi, strict=True)]
    aligned = all((a - b) % c == 0 for a, b, c in zip(c_lo, lo, chunk, strict=True))
    if not aligned or want_hi != c_hi:
        return (
            "off-grid",
            f"chunk {_span(c_lo, c_hi)} is not on the grid of {_x(chunk)} chunks from "
            f"{_x(lo)} (wrong size or position)",
        )
    return None


def _span(lo: Sequence[int], hi: Sequence[int]) -> str:
    return "_".join(f"{a}-{b}" for a, b in zip(lo, hi, strict=True))


def _x(v: Sequence[int]) -> str:
    return "×".join(str(i) for i in v)


def _engine_listed(a: BigArray, report: FsckReport) -> list[_Task]:
    """Decode tasks for the chunks the engine lists (stores Python cannot list itself)."""
    try:
        units = a.stored_chunks()
    except errors.ChunkDecodeError as e:
        report.problems.append(Problem("shard-index", a.url, str(e)))
        return []
    except errors.StoreError as e:
        report.problems.append(Problem("read-error", a.url, str(e)))
        return []
    if units is None:  # HDF5 layouts: the metadata opened; their chunks are not listed
        note = f"{a.format} layers: the metadata was checked, the chunks were not"
        report.problems.append(Problem("unchecked", a.url, note, damage=False))
        return []
    # Each unit's box indexes ``a`` as it is: (x, y, z) absolute coordinates, or a Zarr
    # array's own axes.
    boxes = [_box(lo, hi) for lo, hi, _ in units]
    names = [f"{a.url} chunk {_span(lo, hi)}" for lo, hi, _ in units]
    return _batches(a, boxes, names)


# -- Precomputed sharding --------------------------------------------------------------------


def _sharded_scale(
    a: BigArray,
    scale: dict[str, Any],
    keys: _Keys,
    names: list[tuple[str, int, float]],
    lo: list[int],
    hi: list[int],
    chunk: list[int],
    report: FsckReport,
    jobs: int | None,
) -> list[_Task]:
    spec = _ShardSpec(scale["sharding"], lo, hi, chunk)
    shards: list[tuple[str, int, int]] = []
    for name, size, _ in names:
        key = f"{scale['key']}/{name}"
        if is_temporary(name):
            continue
        m = _SHARD_KEY.match(name)
        if m is None or len(m.group(1)) != spec.name_width:
            report.problems.append(
                Problem("unknown-key", keys.describe(key), "not a shard file name", damage=False)
            )
            continue
        number = int(m.group(1), 16)
        if number >> spec.shard_bits:
            report.problems.append(
                Problem(
                    "stray-shard",
                    keys.describe(key),
                    f"shard {number} does not exist with shard_bits {spec.shard_bits}: "
                    "nothing reads it",
                )
            )
            continue
        shards.append((key, number, size))
    with ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
        found = list(pool.map(lambda s: _check_shard(keys, spec, *s), shards))
    boxes: list[tuple[slice, ...]] = []
    labels: list[str] = []
    for problems, chunk_boxes in found:
        report.problems += problems
        for box, label in chunk_boxes:
            boxes.append(box)
            labels.append(label)
    return _batches(a, boxes, labels)


class _ShardSpec:
    def __init__(
        self, sharding: dict[str, Any], lo: list[int], hi: list[int], chunk: list[int]
    ) -> None:
        self.preshift = int(sharding["preshift_bits"])
        self.minishard_bits = int(sharding["minishard_bits"])
        self.shard_bits = int(sharding["shard_bits"])
        self.murmur = sharding["hash"] == "murmurhash3_x86_128"
        self.index_gzip = sharding.get("minishard_index_encoding", "raw") == "gzip"
        self.name_width = max(1, (self.shard_bits + 3) // 4)
        self.lo, self.hi, self.chunk = lo, hi, chunk
        self.grid = [-(-(h - lo_) // c) for lo_, h, c in zip(lo, hi, chunk, strict=True)]
        self.bits = [max(0, (n - 1).bit_length()) for n in self.grid]

    def location(self, chunk_id: int) -> tuple[int, int]:
        """(shard, minishard) of a chunk id, as the sharded format's hash places it."""
        h = chunk_id >> self.preshift
        if self.murmur:
            h = murmurhash3_x86_128_low64(h)
        minishard = h & ((1 << self.minishard_bits) - 1)
        shard = (h >> self.minishard_bits) & ((1 << self.shard_bits) - 1)
        return shard, minishard

    def grid_position(self, chunk_id: int) -> list[int] | None:
        """The chunk grid position a compressed Morton code names, or None outside the grid."""
        g = [0, 0, 0]
        j = 0
        for i in range(max(self.bits, default=0)):
            for d in range(3):
                if i < self.bits[d]:
                    g[d] |= ((chunk_id >> j) & 1) << i
                    j += 1
        if chunk_id >> j or any(p >= n for p, n in zip(g, self.grid, strict=True)):
            return None
        return g


def _check_shard(
    keys: _Keys, spec: _ShardSpec, key: str, number: int, size: int
) -> tuple[list[Problem], list[tuple[tuple[slice, ...], str]]]:
    """Parses one shard file's index and minishard indexes; returns its problems and the
    boxes of the chunks it rightly holds (to decode)."""
    where = keys.describe(key)
    problems: list[Problem] = []
    boxes: list[tuple[tuple[slice, ...], str]] = []
    index_len = 16 << spec.minishard_bits
    if size < index_len:
        problems.append(
            Problem("shard-index", where, f"{size} bytes, shorter than its {index_len}-byte index")
        )
        return problems, boxes
    index = keys.read(key, 0, index_len)
    mask = (1 << 64) - 1
    for minishard in range(1 << spec.minishard_bits):
        start, stop = struct.unpack_from("<QQ", index, 16 * minishard)
        if start == stop:
            continue
        if start > stop or index_len + stop > size:
            problems.append(
                Problem(
                    "shard-index",
                    where,
                    f"minishard {minishard}'s index [{start}, {stop}) points past the end of "
                    f"the {size}-byte file",
                )
            )
            continue
        raw = keys.read(key, index_len + start, index_len + stop)
        if spec.index_gzip:
            try:
                d = zlib.decompressobj(wbits=47)
                raw = d.decompress(raw, _MAX_INDEX)
            except zlib.error as e:
                problems.append(
                    Problem("shard-index", where, f"minishard {minishard}'s index: gzip: {e}")
                )
                continue
        if len(raw) % 24:
            problems.append(
                Problem(
                    "shard-index",
                    where,
                    f"minishard {minishard}'s index is {len(raw)} bytes, not 24 per chunk",
                )
            )
            continue
        n = len(raw) // 24
        cols = struct.unpack(f"<{3 * n}Q", raw)
        chunk_id = 0
        offset = 0
        for i in range(n):
            chunk_id = (chunk_id + cols[i]) & mask
            begin = (offset + cols[n + i]) & mask
            length = cols[2 * n + i]
            offset = (begin + length) & mask
            if index_len + begin + length > size:
                problems.append(
                    Problem(
                        "shard-index",
                        where,
                        f"chunk {chunk_id} at [{begin}, {begin + length}) past the index "
                        f"points past the end of the {size}-byte file",
                    )
                )
                continue
            place = spec.location(chunk_id)
            if place != (number, minishard):
                problems.append(
                    Problem(
                        "orphaned",
                        where,
                        f"chunk {chunk_id} is in minishard {minishard} of shard {number}, but "
                        f"belongs in minishard {place[1]} of shard {place[0]}: no reader finds "
                        "it here",
                    )
                )
                continue
            g = spec.grid_position(chunk_id)
            if g is None:
                problems.append(
                    Problem(
                        "outside-bounds",
                        where,
                        f"chunk {chunk_id} lies outside the chunk grid {_x(spec.grid)}",
                    )
                )
                continue
            c_lo = [lo + p * c for lo, p, c in zip(spec.lo, g, spec.chunk, strict=True)]
            c_hi = [min(a + c, h) for a, c, h in zip(c_lo, spec.chunk, spec.hi, strict=True)]
            boxes.append((_box(c_lo, c_hi), f"{where} chunk {_span(c_lo, c_hi)}"))
    return problems, boxes


def murmurhash3_x86_128_low64(x: int) -> int:
    """MurmurHash3_x86_128 (seed 0) of the 8 little-endian bytes of ``x``, low 64 bits: the
    sharded format's ``murmurhash3_x86_128`` hash.

    Written here rather than taken from the ``mmh3`` package: it is one fixed-size case of
    a short public algorithm, and bigarrays adds no dependency for ``fsck`` alone (the tests
    compare it with CloudVolume's copy of mmh3).
    """
    m32 = 0xFFFFFFFF

    def rotl(v: int, r: int) -> int:
        return ((v << r) | (v >> (32 - r))) & m32

    def fmix(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & m32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & m32
        return h ^ (h >> 16)

    c1, c2 = 0x239B961B, 0xAB0E9789
    c3 = 0x38B34AE5
    k1 = x & m32
    k2 = (x >> 32) & m32
    h1 = h2 = h3 = h4 = 0
    # 8 bytes: no full 16-byte block, only the tail's k2 and k1 lanes.
    k2 = (k2 * c2) & m32
    k2 = rotl(k2, 16)
    k2 = (k2 * c3) & m32
    h2 ^= k2
    k1 = (k1 * c1) & m32
    k1 = rotl(k1, 15)
    k1 = (k1 * c2) & m32
    h1 ^= k1
    h1 ^= 8
    h2 ^= 8
    h3 ^= 8
    h4 ^= 8
    h1 = (h1 + h2 + h3 + h4) & m32
    h2 = (h2 + h1) & m32
    h3 = (h3 + h1) & m32
    h4 = (h4 + h1) & m32
    h1, h2, h3, h4 = fmix(h1), fmix(h2), fmix(h3), fmix(h4)
    h1 = (h1 + h2 + h3 + h4) & m32
    h2 = (h2 + h1) & m32
    return h1 | (h2 << 32)


# -- decoding ------------------------------------------------------------------------------


def _decode(task: _Task) -> tuple[int, list[Problem]]:
    """Reads a batch of chunks; on failure, each chunk alone, naming every bad one."""
    try:
        task.array.read_many(list(task.keys))
        return len(task.keys), []
    except errors.BigArrayError:
        pass
    problems = []
    for box, name in zip(task.keys, task.names, strict=True):
        try:
            task.array[box]
        except errors.ChunkDecodeError as e:
            problems.append(Problem("undecodable", name, str(e)))
        except errors.BigArrayError as e:
            problems.append(Problem("read-error", name, str(e)))
    return len(task.keys), problems


def _decode_all(tasks: list[_Task], report: FsckReport, jobs: int | None, progress: bool) -> None:
    total = sum(len(t.keys) for t in tasks)
    advance: Callable[[int], object] = lambda n: None  # noqa: E731
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="fsck", unit="chunk", disable=None)
        advance = bar.update
    try:
        with ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
            # map() keeps results in order; each holds only problems, never voxels.
            for n, problems in pool.map(_decode, tasks):
                report.chunks += n
                report.problems += problems
                advance(n)
    finally:
        if bar is not None:
            bar.close()
