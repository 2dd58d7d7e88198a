"""Read benchmark: bigarrays against CloudVolume and TensorStore on Neuroglancer Precomputed.

Run from the repository root (``make bench`` does exactly this)::

    .venv/bin/python benches/bench_read.py

and ``BENCH_SCALE=small`` for a quick end-to-end check on a 256x256x128 layer.

Every reader reads the same generated volume in the same run, so the ratios are meaningful:

* W1  - an aligned cutout from the gzip-compressed layer,
* W2  - an unaligned cutout from the gzip-compressed layer,
* W1u - W1 from the uncompressed layer.

CloudVolume writes the reference copies (gzip ``.gz`` files, and plain files). TensorStore
cannot read CloudVolume's local ``.gz`` files, so for the gzip rows it reads its own sharded,
gzip-encoded copy of the same voxels; for W1u it reads CloudVolume's uncompressed copy.
The data is cached under ``benches/data/`` and regenerated only when its parameters change.
Results go to stdout and to ``benches/RESULTS.md`` (a small run's to ``benches/data/small/``,
so it never replaces the full report).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import deflate  # libdeflate, the fastest gzip decoder here: for the limit
import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from common import (
    TS_CONTEXT,
    cpu_model,
    cv_file,
    median_time,
    peak_rss_above_baseline,
    record_metrics,
    ts_file_spec,
    version,
    write_section,
)
from isal import isal_zlib  # Intel ISA-L, the other contender for the limit

from bigarrays import BigArray

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"  # gitignored

# Bump when the generator's output changes in a way the stamp parameters do not capture.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Workload:
    name: str
    # Which copies are read: "gzip", "raw", or "sparse" (the gzip chunk files placed in a
    # layer of 2^40 voxels, the rest of it never written).
    layer: str
    origin: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + s) for o, s in zip(self.origin, self.size, strict=True))

    def describe(self) -> str:
        kind = "aligned" if self.name.startswith("W1") else "unaligned"
        size = "×".join(map(str, self.size))
        layer = {"sparse": "gzip, in a sparse 2^40-voxel layer"}.get(self.layer, self.layer)
        return f"{self.name}: {kind} {size} @ {self.origin}, {layer}"

    def expected(self, truth: np.ndarray) -> np.ndarray:
        """The generated voxels of this cutout (zeros where the sparse layer is unwritten)."""
        out = np.zeros(self.size, truth.dtype, order="F")
        inside = tuple(
            slice(min(o, n), min(o + s, n))
            for o, s, n in zip(self.origin, self.size, truth.shape, strict=True)
        )
        at = tuple(slice(0, i.stop - i.start) for i in inside)
        out[at] = truth[inside]
        return out


@dataclass(frozen=True)
class Scale:
    """Everything that defines the generated data (the stamp) plus the workloads to time."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int] = (128, 128, 64)
    seed: int = 20240611
    resolution: tuple[int, int, int] = (4, 4, 40)
    # EM-like content: a low-contrast smooth "cytoplasm" texture, dark "membranes" where a
    # second, coarser smooth field crosses zero, and a little per-voxel shot noise. The
    # amplitudes are tuned so that CloudVolume's gzip (level 9) compresses about 1.8x.
    background: float = 150.0
    texture_amp: float = 3.0
    texture_width_xy: int = 7
    membrane_depth: float = 60.0
    membrane_halfwidth: float = 0.1  # in standard deviations of the membrane field
    membrane_width_xy: int = 15
    width_z: int = 3  # box width along z (anisotropic voxels, 4x4x40 nm)
    blur_passes: int = 2  # two box passes approximate a smooth (triangular) kernel
    noise: float = 1.2
    # Workloads and repeats are not part of the stamp: they do not change the data.
    workloads: tuple[Workload, ...] = field(default=(), compare=False)
    repeats: int = field(default=7, compare=False)

    def stamp(self) -> dict:
        d = asdict(self)
        del d["workloads"], d["repeats"]
        return {"generator_version": GENERATOR_VERSION, **d}


SCALES = {
    "full": Scale(
        shape=(1024, 1024, 512),
        workloads=(
            Workload("W1", "gzip", (256, 256, 128), (512, 512, 256)),
            Workload("W2", "gzip", (37, 59, 13), (500, 500, 250)),
            Workload("W1u", "raw", (256, 256, 128), (512, 512, 256)),
            Workload("W1s", "sparse", (256, 256, 128), (512, 512, 256)),
            Workload("W1s-empty", "sparse", (8192, 8192, 2048), (512, 512, 256)),
        ),
        repeats=7,
    ),
    "small": Scale(
        shape=(256, 256, 128),
        workloads=(
            Workload("W1", "gzip", (0, 128, 0), (256, 128, 128)),
            Workload("W2", "gzip", (37, 59, 13), (150, 150, 75)),
            Workload("W1u", "raw", (0, 128, 0), (256, 128, 128)),
            Workload("W1s", "sparse", (0, 128, 0), (256, 128, 128)),
            Workload("W1s-empty", "sparse", (8192, 8192, 2048), (256, 128, 128)),
        ),
        repeats=5,
    ),
}


# -- data generation ---------------------------------------------------------------------


def box_blur(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Centred moving average of odd ``width`` along ``axis`` (edges clamped), via cumsum."""
    if width <= 1:
        return a
    half = width // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half + 1, half)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    n = a.shape[axis]
    hi = [slice(None)] * a.ndim
    lo = [slice(None)] * a.ndim
    hi[axis], lo[axis] = slice(width, width + n), slice(0, n)
    out = c[tuple(hi)]
    out -= c[tuple(lo)]
    out /= width
    return out


def blur_std(widths: tuple[int, int, int], passes: int) -> float:
    """Standard deviation of white N(0, 1) noise after the blur (interior voxels).

    Normalising by this constant rather than by each slab's own std keeps slabs seamless.
    """
    var = 1.0
    for w in widths:
        k = np.ones(1)
        for _ in range(passes):
            k = np.convolve(k, np.ones(w) / w)
        var *= float(np.sum(k**2))
    return math.sqrt(var)


def noise_planes(p: Scale, field_id: int, z0: int, z1: int) -> np.ndarray:
    """White noise for planes z0..z1 as (x, y, z); each plane has its own seed, so any slab
    (with any halo) can be generated independently and deterministically."""
    nx, ny, _ = p.shape
    out = np.empty((nx, ny, z1 - z0), dtype=np.float32, order="F")
    for z in range(z0, z1):
        rng = np.random.default_rng([p.seed, field_id, z])
        out[:, :, z - z0] = rng.standard_normal((nx, ny), dtype=np.float32)
    return out


def smooth_field(p: Scale, field_id: int, width_xy: int, z0: int, z1: int) -> np.ndarray:
    """Blurred noise with unit std for planes z0..z1, exact across slab boundaries."""
    nz = p.shape[2]
    halo = p.blur_passes * (p.width_z // 2)  # planes that influence the slab along z
    lo, hi = max(0, z0 - halo), min(nz, z1 + halo)
    f = noise_planes(p, field_id, lo, hi)
    for _ in range(p.blur_passes):
        for axis, w in ((0, width_xy), (1, width_xy), (2, p.width_z)):
            f = box_blur(f, w, axis)
    f = f[:, :, z0 - lo : z1 - lo]
    f /= blur_std((width_xy, width_xy, p.width_z), p.blur_passes)
    return f


def generate_slab(p: Scale, z0: int, z1: int) -> np.ndarray:
    """Voxels of planes z0..z1 as a Fortran-ordered uint8 (x, y, z) array."""
    texture = smooth_field(p, 0, p.texture_width_xy, z0, z1)
    membrane = smooth_field(p, 1, p.membrane_width_xy, z0, z1)
    img = p.background + p.texture_amp * texture
    del texture
    membrane /= p.membrane_halfwidth
    np.square(membrane, out=membrane)
    img -= p.membrane_depth * np.exp(-membrane)
    del membrane
    img += p.noise * noise_planes(p, 2, z0, z1)
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return np.asfortranarray(img.astype(np.uint8))


def sharding_spec(p: Scale) -> tuple[dict, tuple[int, int, int]]:
    """A neuroglancer_uint64_sharded_v1 spec with up to 64 chunks per shard, and the shard
    shape in voxels (so writes can cover whole shards).

    With the identity hash a shard is a run of compressed Morton codes; its low bits
    interleave x, y, z (skipping axes whose bits are used up), so 6 bits give 4x4x4 chunks.
    """
    grid = [math.ceil(s / c) for s, c in zip(p.shape, p.chunks, strict=True)]
    bits = [max(0, math.ceil(math.log2(g))) for g in grid]
    per_shard = min(6, sum(bits))
    preshift = min(3, per_shard)
    spec = {
        "@type": "neuroglancer_uint64_sharded_v1",
        "hash": "identity",
        "preshift_bits": preshift,
        "minishard_bits": per_shard - preshift,
        "shard_bits": sum(bits) - per_shard,
        "minishard_index_encoding": "gzip",
        "data_encoding": "gzip",
    }
    shard_chunks, used, left = [1, 1, 1], [0, 0, 0], per_shard
    while left:
        for d in range(3):
            if left and used[d] < bits[d]:
                shard_chunks[d] *= 2
                used[d] += 1
                left -= 1
    shard_shape = tuple(n * c for n, c in zip(shard_chunks, p.chunks, strict=True))
    return spec, shard_shape


class Dataset:
    """The cached data for one scale: ground truth and the three on-disk copies."""

    def __init__(self, root: Path, p: Scale) -> None:
        self.root, self.p = root, p
        self.truth_path = root / "volume.npy"  # ground truth, independent of every reader
        self.cv_gzip = root / "cv_gzip"
        self.cv_raw = root / "cv_raw"
        self.ts_sharded = root / "ts_sharded"
        self.sparse = root / "sparse"
        self.stamp_path = root / "stamp.json"
        self.sharding, self.shard_shape = sharding_spec(p)

    def stamp(self) -> dict:
        """The parameters as they read back from ``stamp.json`` (JSON has no tuples)."""
        return json.loads(json.dumps({**self.p.stamp(), "sharding": self.sharding}))

    def ensure(self) -> None:
        """Regenerates everything unless the stamp matches (it is written last, so an
        interrupted generation is redone)."""
        if self.stamp_path.exists():
            if json.loads(self.stamp_path.read_text()) == self.stamp():
                print(f"data: reusing {self.root}")
                return
            print("data: parameters changed, regenerating")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        t = time.perf_counter()
        self._generate()
        self.stamp_path.write_text(json.dumps(self.stamp(), indent=1) + "\n")
        print(f"data: generated in {time.perf_counter() - t:.0f} s")

    def _generate(self) -> None:
        p = self.p
        nx, ny, nz = p.shape
        cz = p.chunks[2]
        truth = np.lib.format.open_memmap(
            self.truth_path, mode="w+", dtype=np.uint8, shape=p.shape, fortran_order=True
        )
        info = CloudVolume.create_new_info(
            num_channels=1,
            layer_type="image",
            data_type="uint8",
            encoding="raw",
            resolution=list(p.resolution),
            voxel_offset=[0, 0, 0],
            chunk_size=list(p.chunks),
            volume_size=list(p.shape),
        )
        cvs = []
        for path, compress in ((self.cv_gzip, None), (self.cv_raw, False)):
            # compress=None is CloudVolume's default for raw encoding (gzip, level 9, .gz
            # files); compress=False writes plain chunk files.
            cv = CloudVolume(
                f"file://{path}", info=info, compress=compress, progress=False, parallel=1
            )
            cv.commit_info()
            cvs.append(cv)
        # One slab of whole chunks along z at a time bounds memory (~2 GiB at full scale).
        for z0 in range(0, nz, cz):
            z1 = min(nz, z0 + cz)
            slab = generate_slab(p, z0, z1)
            truth[:, :, z0:z1] = slab
            for cv in cvs:
                cv[0:nx, 0:ny, z0:z1] = slab
            print(f"data: planes {z0}..{z1} of {nz}", end="\r", flush=True)
        truth.flush()
        print()
        self._write_tensorstore(truth)
        del truth
        if not any(self.cv_gzip.rglob("*.gz")) or any(self.cv_raw.rglob("*.gz")):
            raise SystemExit("CloudVolume did not write the expected gzip / plain chunk files")

    def _write_tensorstore(self, truth: np.ndarray) -> None:
        p = self.p
        nx, ny, nz = p.shape
        if nx % self.shard_shape[0] or ny % self.shard_shape[1]:
            raise SystemExit(f"shard shape {self.shard_shape} does not tile {p.shape}")
        store = ts.open(
            {
                "driver": "neuroglancer_precomputed",
                "kvstore": {"driver": "file", "path": str(self.ts_sharded)},
                "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
                "scale_metadata": {
                    "size": list(p.shape),
                    "voxel_offset": [0, 0, 0],
                    "resolution": list(p.resolution),
                    "chunk_size": list(p.chunks),
                    "encoding": "raw",
                    "sharding": self.sharding,
                },
            },
            create=True,
            delete_existing=True,
        ).result()
        # Slabs of whole shards: a partial shard would be read, modified and rewritten.
        sz = self.shard_shape[2]
        for z0 in range(0, nz, sz):
            z1 = min(nz, z0 + sz)
            store[:, :, z0:z1, 0].write(np.asarray(truth[:, :, z0:z1])).result()

    def ensure_sparse(self) -> None:
        """A layer of 2^40 voxels (16384×16384×4096) whose only stored chunks are the gzip
        copy's, hard-linked: it costs no disk, and W1 on it must cost what W1 costs on the
        dense layer, since a read's cost should grow with the cutout, not the layer."""
        info = json.loads((self.cv_gzip / "info").read_text())
        info["scales"][0]["size"] = [16384, 16384, 4096]
        if self.sparse.exists() and json.loads((self.sparse / "info").read_text()) == info:
            return
        shutil.rmtree(self.sparse, ignore_errors=True)
        key = info["scales"][0]["key"]
        (self.sparse / key).mkdir(parents=True)
        for f in (self.cv_gzip / key).iterdir():
            os.link(f, self.sparse / key / f.name)
        (self.sparse / "info").write_text(json.dumps(info))

    def chunk_files(self, w: Workload) -> list[Path]:
        """The gzip copy's files of the chunks a (dense-layer) workload touches."""
        key = json.loads((self.cv_gzip / "info").read_text())["scales"][0]["key"]
        ranges = [
            range(o // c * c, o + s, c)
            for o, s, c in zip(w.origin, w.size, self.p.chunks, strict=True)
        ]
        cx, cy, cz = self.p.chunks
        return [
            self.cv_gzip / key / f"{x}-{x + cx}_{y}-{y + cy}_{z}-{z + cz}.gz"
            for z in ranges[2]
            for y in ranges[1]
            for x in ranges[0]
        ]

    def truth(self) -> np.ndarray:
        return np.load(self.truth_path, mmap_mode="r")

    def gzip_ratio(self) -> float:
        """Raw bytes over the bytes of CloudVolume's ``.gz`` chunk files."""
        packed = sum(f.stat().st_size for f in self.cv_gzip.rglob("*.gz"))
        return math.prod(self.p.shape) / packed

    def sharded_ratio(self) -> float:
        """Raw bytes over TensorStore's shard files (indices included)."""
        packed = sum(f.stat().st_size for f in self.ts_sharded.rglob("*.shard"))
        return math.prod(self.p.shape) / packed


# -- readers -------------------------------------------------------------------------------

# A reader takes a workload and returns its voxels as an (x, y, z) array.
Reader = Callable[[Workload], np.ndarray]


def make_readers(data: Dataset, layer: str) -> dict[str, Reader]:
    """Every configuration timed for one layer. Handles are opened once, outside timing."""
    if layer == "sparse":
        # TensorStore cannot read `.gz` chunk files, and the point is bigarrays' own scaling.
        ba = BigArray(str(data.sparse))
        cv = CloudVolume(
            f"file://{data.sparse}", progress=False, parallel=1, cache=False, fill_missing=True
        )
        return {
            "bigarrays": lambda w: ba[w.slices],
            "CloudVolume parallel=1": lambda w: cv[w.slices][..., 0],
        }
    cv_path = data.cv_gzip if layer == "gzip" else data.cv_raw
    ts_path = data.ts_sharded if layer == "gzip" else data.cv_raw
    ba = BigArray(str(cv_path))
    cv1, cv2 = cv_file(cv_path, parallel=1), cv_file(cv_path, parallel=2)
    tss = ts.open(
        ts_file_spec(ts_path),
        read=True,
        context=ts.Context(TS_CONTEXT),
    ).result()

    def ts_read(order: str) -> Reader:
        return lambda w: tss[(*w.slices, 0)].read(order=order).result()

    return {
        "bigarrays": lambda w: ba[w.slices],
        # CloudVolume returns (x, y, z, channel), Fortran-ordered.
        "CloudVolume parallel=1": lambda w: cv1[w.slices][..., 0],
        "CloudVolume parallel=2": lambda w: cv2[w.slices][..., 0],
        "TensorStore order=F": ts_read("F"),
        "TensorStore order=C": ts_read("C"),
    }


def verify(w: Workload, readers: dict[str, Reader], truth: np.ndarray) -> None:
    """Every reader must return exactly the generated voxels; doubles as the warm-up read."""
    expected = w.expected(truth)
    for name, read in readers.items():
        got = np.asarray(read(w))
        if got.shape != expected.shape or got.dtype != expected.dtype:
            raise SystemExit(
                f"{w.name}: {name} returned {got.shape} {got.dtype}, "
                f"expected {expected.shape} {expected.dtype}"
            )
        if not np.array_equal(got, expected):
            diff = got != expected
            first = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
            raise SystemExit(
                f"{w.name}: {name} differs from the generated data at "
                f"{np.count_nonzero(diff)} voxels, first at offset {first} of the cutout"
            )


def time_workload(
    w: Workload, readers: dict[str, Reader], repeats: int
) -> tuple[dict[str, list], dict[str, int]]:
    """Times round-robin over readers, so background load (the machine may be busy) spreads
    over all of them instead of landing on whichever happened to run at the time. Also
    returns each reader's peak memory above its starting point (output included), measured
    on its last run."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    peaks: dict[str, int] = {}
    for i in range(repeats):
        for name, read in readers.items():
            gc.collect()
            if i == repeats - 1:
                t = time.perf_counter()
                out, peaks[name] = peak_rss_above_baseline(lambda read=read: read(w))
            else:
                t = time.perf_counter()
                out = read(w)
            times[name].append(time.perf_counter() - t)
            del out
    return times, peaks


@dataclass
class Limit:
    """What the machine can do for one gzip workload, measured in the same run: reading the
    compressed bytes, decoding them single-threaded with each decoder, and one copy of the
    decoded voxels into a fresh output array."""

    read: float
    decode: dict[str, float]  # decoder -> seconds, single-threaded
    copy: float

    @property
    def fastest(self) -> str:
        return min(self.decode, key=self.decode.get)

    @property
    def limit(self) -> float:
        """The issue's formula: read + fastest decode ÷ cores + one copy."""
        return self.read + self.decode[self.fastest] / CORES + self.copy

    @property
    def all_parallel(self) -> float:
        """A stricter bound: all three steps spread perfectly over every core."""
        return (self.read + self.decode[self.fastest] + self.copy) / CORES


CORES = os.cpu_count() or 1


def measure_limit(w: Workload, data: Dataset, repeats: int) -> Limit:
    files = data.chunk_files(w)

    def read_all() -> list[bytes]:
        return [f.read_bytes() for f in files]

    stored = read_all()
    decoders = {
        "libdeflate": lambda b: deflate.gzip_decompress(b),
        "isa-l": lambda b: isal_zlib.decompress(b, wbits=31),
        "zlib": lambda b: zlib.decompress(b, wbits=31),
    }
    decode = {
        name: median_time(lambda f=f: [f(b) for b in stored], repeats)
        for name, f in decoders.items()
    }
    # Each chunk's part of the cutout, copied out of the decoded chunk (Fortran x, y, z).
    shape = data.p.chunks
    chunks = [
        np.frombuffer(deflate.gzip_decompress(b), np.uint8).reshape(shape, order="F")
        for b in stored
    ]
    parts = []
    for f, chunk in zip(files, chunks, strict=True):
        lo = [int(r.split("-")[0]) for r in f.name.removesuffix(".gz").split("_")]
        src, dst = [], []
        for d in range(3):
            a = max(lo[d], w.origin[d])
            b = min(lo[d] + shape[d], w.origin[d] + w.size[d])
            src.append(slice(a - lo[d], b - lo[d]))
            dst.append(slice(a - w.origin[d], b - w.origin[d]))
        parts.append((tuple(dst), chunk[tuple(src)]))

    def copy() -> None:
        out = np.empty(w.size, np.uint8, order="F")
        for dst, part in parts:
            out[dst] = part

    return Limit(median_time(read_all, repeats), decode, median_time(copy, repeats))


# -- report --------------------------------------------------------------------------------


def best(times: dict[str, list], prefix: str) -> tuple[str, float]:
    """The fastest configuration (by median) of one library."""
    meds = {k: statistics.median(v) for k, v in times.items() if k.startswith(prefix)}
    name = min(meds, key=meds.get)
    return name, meds[name]


def main_table(results: dict[Workload, dict[str, list]]) -> list[str]:
    rows = [
        "| workload | bigarrays median (s) | CloudVolume median (s) | TensorStore median (s) "
        "| bigarrays vs best peer |",
        "|---|---:|---:|---:|---:|",
    ]
    for w, times in results.items():
        if w.layer == "sparse":
            continue  # in the sparse table
        ba = statistics.median(times["bigarrays"])
        cv_name, cv = best(times, "CloudVolume")
        # Only order=F returns the same layout as the other readers; order=C is in the details.
        tsf = statistics.median(times["TensorStore order=F"])
        peer = min(cv, tsf)
        peer_name = "CloudVolume" if cv <= tsf else "TensorStore"
        cv_note = cv_name.removeprefix("CloudVolume ")
        rows.append(
            f"| {w.describe()} | {ba:.4f} | {cv:.4f} ({cv_note}) | {tsf:.4f} "
            f"| {peer / ba:.2f}× (vs {peer_name}) |"
        )
    return rows


def limit_table(results: dict[Workload, dict[str, list]], limits: dict[str, Limit]) -> list[str]:
    rows = [
        "| workload | read compressed (s) | decode, 1 thread (s) | one copy (s) "
        f"| limit = read + decode ÷ {CORES} + copy (s) | all ÷ {CORES} (s) "
        "| bigarrays (s) | bigarrays ÷ limit |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for w, times in results.items():
        if w.name not in limits:
            continue
        lim, ba = limits[w.name], statistics.median(times["bigarrays"])
        decode = ", ".join(
            f"{'**' if k == lim.fastest else ''}{k} {v:.3f}{'**' if k == lim.fastest else ''}"
            for k, v in lim.decode.items()
        )
        rows.append(
            f"| {w.name} | {lim.read:.4f} | {decode} | {lim.copy:.4f} | {lim.limit:.4f} "
            f"| {lim.all_parallel:.4f} | {ba:.4f} | {ba / lim.limit:.2f} |"
        )
    return rows


def sparse_table(results: dict[Workload, dict[str, list]]) -> list[str]:
    dense = {
        w.size: statistics.median(t["bigarrays"]) for w, t in results.items() if w.name == "W1"
    }
    rows = [
        "| workload | bigarrays median (s) | bigarrays ÷ W1 on the dense layer "
        "| CloudVolume median (s) |",
        "|---|---:|---:|---:|",
    ]
    for w, times in results.items():
        if w.layer != "sparse":
            continue
        ba, cv = statistics.median(times["bigarrays"]), best(times, "CloudVolume")[1]
        vs = f"{ba / dense[w.size]:.2f}" if w.size in dense else "-"
        rows.append(f"| {w.describe()} | {ba:.4f} | {vs} | {cv:.4f} |")
    return rows


def detail_table(results: dict[Workload, dict[str, list]], peaks: dict) -> list[str]:
    rows = [
        "| workload | reader | median (s) | min (s) | max (s) | MiB/s (median) "
        "| peak memory ÷ output |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for w, times in results.items():
        out = math.prod(w.size)
        for name, t in times.items():
            med = statistics.median(t)
            rows.append(
                f"| {w.name} | {name} | {med:.4f} | {min(t):.4f} | {max(t):.4f} "
                f"| {out / 2**20 / med:.0f} | {peaks[w][name] / out:.2f} |"
            )
    return rows


def headline(results: dict[Workload, dict[str, list]], limits: dict[str, Limit]) -> dict:
    """The numbers the performance targets are judged by (see targets.py)."""
    by_name = {w.name: {k: statistics.median(v) for k, v in t.items()} for w, t in results.items()}
    out = {}
    for name in ("W1", "W2", "W1u"):
        m = by_name[name]
        ours = m["bigarrays"]
        out[f"{name} best peer / bigarrays"] = (
            min(
                min(v for k, v in m.items() if k.startswith("CloudVolume")),
                m["TensorStore order=F"],
            )
            / ours
        )
        out[f"{name} CloudVolume / bigarrays"] = (
            min(v for k, v in m.items() if k.startswith("CloudVolume")) / ours
        )
    for name, lim in limits.items():
        out[f"{name} bigarrays / limit"] = by_name[name]["bigarrays"] / lim.limit
        out[f"{name} bigarrays / all-parallel bound"] = (
            by_name[name]["bigarrays"] / lim.all_parallel
        )
        out[f"{name} 2x best peer / limit"] = (
            min(
                v
                for k, v in by_name[name].items()
                if not k.startswith("bigarrays") and k != "TensorStore order=C"
            )
            / 2
            / lim.limit
        )
    out["W1s sparse / W1 dense"] = by_name["W1s"]["bigarrays"] / by_name["W1"]["bigarrays"]
    return out


def write_report(
    path: Path,
    scale_name: str,
    data: Dataset,
    measured: tuple[dict, dict, dict],
    load: tuple,
    started: str,
) -> None:
    results, peaks, limits = measured
    p = data.p
    raw_mib = math.prod(p.shape) / 2**20
    sh = data.sharding
    shard_chunks = "×".join(str(s // c) for s, c in zip(data.shard_shape, p.chunks, strict=True))
    lines = [
        "# Read benchmark: bigarrays vs CloudVolume vs TensorStore",
        "",
        f"Generated by `benches/bench_read.py` (scale `{scale_name}`), started {started}.",
        "",
        f"- **Machine**: {os.cpu_count()} CPUs (nproc), {cpu_model()}, "
        f"{platform.system()} {platform.release()}; load average (1 min) "
        f"{load[0]:.2f} at start, {load[1]:.2f} at end. Other work (e.g. compiles) may have "
        "shared the machine, which makes the timings noisy.",
        f"- **Software**: Python {platform.python_version()}, bigarrays {version('bigarrays')}, "
        f"CloudVolume {version('cloud-volume')}, TensorStore {version('tensorstore')}, "
        f"NumPy {np.__version__}.",
        f"- **Data**: one uint8 layer {'×'.join(map(str, p.shape))} ({raw_mib:.0f} MiB), chunks "
        f"{'×'.join(map(str, p.chunks))}, raw encoding, voxel offset 0, seed {p.seed}. EM-like "
        "content: a low-contrast blurred-noise texture, dark membranes along the zero set of a "
        "coarser blurred-noise field, plus per-voxel noise.",
        f"- **Copies**: CloudVolume's gzip copy (`.gz` files, level 9; compression ratio "
        f"**{data.gzip_ratio():.2f}**), CloudVolume's uncompressed copy, and a TensorStore "
        f"sharded copy (`neuroglancer_uint64_sharded_v1`, identity hash, preshift/minishard/"
        f"shard bits {sh['preshift_bits']}/{sh['minishard_bits']}/{sh['shard_bits']} = "
        f"{shard_chunks} chunks per shard, gzip data and minishard indices; ratio "
        f"{data.sharded_ratio():.2f} including indices).",
        "- **Who reads what**: bigarrays and CloudVolume read CloudVolume's copies. TensorStore "
        "cannot read local `.gz` chunk files, so for the gzip rows it reads its sharded copy "
        "(same voxels, same chunking and codec, but a few large shard files instead of one "
        "file per chunk); for W1u it reads CloudVolume's uncompressed copy.",
        f"- **Method**: each handle is opened once, outside the timing. Per workload, every "
        f"reader's output is first checked voxel-for-voxel against the generated data (this is "
        f"also the warm-up read), then the readers are timed round-robin {p.repeats} times and "
        "the median is reported. Dropping the OS page cache is not possible here, so every "
        "reader reads from a warm page cache: this measures decoding and assembly, not disk. "
        "No reader caches chunks across reads: bigarrays has no chunk cache, CloudVolume runs "
        "with `cache=False, lru_bytes=0`, TensorStore with "
        '`"cache_pool": {"total_bytes_limit": 0}` (context: '
        f"`{json.dumps({k: v for k, v in TS_CONTEXT.items() if k != 'cache_pool'})}`).",
        "- **Outputs**: bigarrays returns a Fortran-ordered (x, y, z) array; CloudVolume a "
        "Fortran-ordered (x, y, z, 1) array (the channel axis is dropped by a view); TensorStore "
        "is read with `order='F'` for the main table, so all three deliver the same layout "
        "(`order='C'`, TensorStore's default, adds a transposing copy; it is listed below). "
        "CloudVolume is run with `parallel=1` and `parallel=2` and the faster is shown "
        "(`parallel=2` starts two new `spawn` interpreters, which re-import this script, on "
        "every call, a fixed cost of most of a second on this machine); "
        "`cv.image.download(bbox, 0)` timed the same as slicing, so only slicing is run.",
        "",
        "Ratio = best peer median / bigarrays median; > 1 means bigarrays is faster.",
        "",
        *main_table(results),
        "",
        "## Distance to the machine's limit",
        "",
        "Measured in the same run on the same files, single-threaded in Python: reading the "
        "compressed chunk files the cutout touches (`Path.read_bytes`), decoding them with "
        "each gzip decoder (libdeflate through `deflate`, Intel ISA-L through `isal`, zlib), "
        "and copying each decoded chunk's part into a fresh Fortran-ordered output array "
        "(NumPy). The limit follows the performance issue: read + fastest decode ÷ cores + one "
        "copy; the stricter column spreads all three over the cores.",
        "",
        *limit_table(results, limits),
        "",
        "## Cost grows with the cutout, not the layer",
        "",
        "The gzip copy's chunk files hard-linked into a layer declared 16384×16384×4096 (2^40 "
        "voxels), nothing else stored. `W1s` is W1 on it; `W1s-empty` reads a never-written "
        "region of the same size (all zeros).",
        "",
        *sparse_table(results),
        "",
        "## All configurations",
        "",
        "Peak memory: how far the process's peak resident set rose above its level at the "
        "start of the reader's last timed run (`/proc/self/clear_refs`), output included, "
        "divided by the output's size.",
        "",
        *detail_table(results, peaks),
        "",
        "## Reproduce",
        "",
        "`make bench` (the full run; the data is generated once into `benches/data/`, which "
        "takes a few minutes). `BENCH_SCALE=small .venv/bin/python benches/bench_read.py` runs "
        "a 256×256×128 version in seconds.",
        "",
    ]
    write_section("bench_read.py", "\n".join(lines), path)


def main() -> None:
    scale_name = os.environ.get("BENCH_SCALE", "full")
    if scale_name not in SCALES:
        raise SystemExit(f"BENCH_SCALE must be one of {sorted(SCALES)}, got {scale_name!r}")
    p = SCALES[scale_name]
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_start = os.getloadavg()[0]
    data = Dataset(DATA / scale_name, p)
    data.ensure()
    print(f"data: gzip ratio {data.gzip_ratio():.2f}, sharded ratio {data.sharded_ratio():.2f}")
    truth = data.truth()

    data.ensure_sparse()
    results, peaks, limits = {}, {}, {}
    for w in p.workloads:
        readers = make_readers(data, w.layer)
        verify(w, readers, truth)
        results[w], peaks[w] = time_workload(w, readers, p.repeats)
        meds = ", ".join(f"{k} {statistics.median(v):.4f}" for k, v in results[w].items())
        print(f"{w.name}: {meds}", flush=True)
        if w.layer == "gzip":
            limits[w.name] = measure_limit(w, data, p.repeats)
            print(f"{w.name}: limit {limits[w.name]}", flush=True)

    # Only the full run replaces the committed report; a small run's report stays with its data.
    report = HERE / "RESULTS.md" if scale_name == "full" else data.root / "RESULTS.md"
    if scale_name == "full":
        record_metrics("bench_read.py", headline(results, limits))
    measured = (results, peaks, limits)
    write_report(report, scale_name, data, measured, (load_start, os.getloadavg()[0]), started)
    print()
    print("\n".join(main_table(results)))
    print(f"\nwrote {report}")


if __name__ == "__main__":
    sys.exit(main())
