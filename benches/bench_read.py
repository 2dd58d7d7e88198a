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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from report import cpu_model, version, write_section

from bigarrays import BigArray

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"  # gitignored

# Bump when the generator's output changes in a way the stamp parameters do not capture.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Workload:
    name: str
    layer: str  # "gzip" or "raw": which copies are read
    origin: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + s) for o, s in zip(self.origin, self.size, strict=True))

    def describe(self) -> str:
        kind = "aligned" if self.name.startswith("W1") else "unaligned"
        size = "×".join(map(str, self.size))
        return f"{self.name}: {kind} {size} @ {self.origin}, {self.layer}"


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
        ),
        repeats=7,
    ),
    "small": Scale(
        shape=(256, 256, 128),
        workloads=(
            Workload("W1", "gzip", (0, 128, 0), (256, 128, 128)),
            Workload("W2", "gzip", (37, 59, 13), (150, 150, 75)),
            Workload("W1u", "raw", (0, 128, 0), (256, 128, 128)),
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

# TensorStore: no cache pool, so a repeated read decodes again instead of hitting memory;
# two copy threads for two cores.
TS_CONTEXT = {
    "cache_pool": {"total_bytes_limit": 0},
    "data_copy_concurrency": {"limit": 2},
    "file_io_concurrency": {"limit": 8},
}

# A reader takes a workload and returns its voxels as an (x, y, z) array.
Reader = Callable[[Workload], np.ndarray]


def make_readers(data: Dataset, layer: str) -> dict[str, Reader]:
    """Every configuration timed for one layer. Handles are opened once, outside timing."""
    cv_path = data.cv_gzip if layer == "gzip" else data.cv_raw
    ts_path = data.ts_sharded if layer == "gzip" else data.cv_raw
    ba = BigArray(str(cv_path))
    # cache=False and lru_bytes=0 are CloudVolume's defaults; spelled out because they matter.
    cv1 = CloudVolume(f"file://{cv_path}", progress=False, parallel=1, cache=False, lru_bytes=0)
    cv2 = CloudVolume(f"file://{cv_path}", progress=False, parallel=2, cache=False, lru_bytes=0)
    tss = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(ts_path)}},
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
    expected = np.asarray(truth[w.slices])
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


def time_workload(w: Workload, readers: dict[str, Reader], repeats: int) -> dict[str, list]:
    """Round-robin over readers, so background load (the machine may be busy) spreads over
    all of them instead of landing on whichever happened to run at the time."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, read in readers.items():
            gc.collect()
            t = time.perf_counter()
            out = read(w)
            times[name].append(time.perf_counter() - t)
            del out
    return times


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


def detail_table(results: dict[Workload, dict[str, list]]) -> list[str]:
    rows = [
        "| workload | reader | median (s) | min (s) | max (s) | MiB/s (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for w, times in results.items():
        mib = math.prod(w.size) / 2**20
        for name, t in times.items():
            med = statistics.median(t)
            rows.append(
                f"| {w.name} | {name} | {med:.4f} | {min(t):.4f} | {max(t):.4f} | {mib / med:.0f} |"
            )
    return rows


def write_report(
    path: Path, scale_name: str, data: Dataset, results: dict, load: tuple, started: str
) -> None:
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
        "## All configurations",
        "",
        *detail_table(results),
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

    results = {}
    for w in p.workloads:
        readers = make_readers(data, w.layer)
        verify(w, readers, truth)
        results[w] = time_workload(w, readers, p.repeats)
        meds = ", ".join(f"{k} {statistics.median(v):.4f}" for k, v in results[w].items())
        print(f"{w.name}: {meds}", flush=True)

    # Only the full run replaces the committed report; a small run's report stays with its data.
    report = HERE / "RESULTS.md" if scale_name == "full" else data.root / "RESULTS.md"
    write_report(report, scale_name, data, results, (load_start, os.getloadavg()[0]), started)
    print()
    print("\n".join(main_table(results)))
    print(f"\nwrote {report}")


if __name__ == "__main__":
    sys.exit(main())
