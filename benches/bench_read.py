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

import json
import math
import os
import platform
import statistics
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import deflate  # libdeflate, the fastest gzip decoder here: for the limit
import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    cv_file,
    median_time,
    record_metrics,
    report_path,
    time_round_robin,
    ts_file_spec,
    version,
    vs_best,
    write_section,
)
from datasets import DATA, SCALES, Dataset, Workload
from isal import isal_zlib  # Intel ISA-L, the other contender for the limit

from bigarrays import BigArray

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
    """Times the readers round-robin; also returns each reader's peak memory above its
    starting point (output included), measured on its last run."""
    peaks: dict[str, int] = {}
    runs = {name: lambda read=read: read(w) for name, read in readers.items()}
    return time_round_robin(runs, repeats, peaks=peaks), peaks


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
        cv_note = cv_name.removeprefix("CloudVolume ")
        rows.append(
            f"| {w.describe()} | {ba:.4f} | {cv:.4f} ({cv_note}) | {tsf:.4f} "
            f"| {vs_best({'CloudVolume': cv, 'TensorStore': tsf}, ba)} |"
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
    session: Session,
) -> None:
    results, peaks, limits = measured
    p = data.p
    raw_mib = math.prod(p.shape) / 2**20
    sh = data.sharding
    shard_chunks = "×".join(str(s // c) for s, c in zip(data.shard_shape, p.chunks, strict=True))
    lines = [
        "# Read benchmark: bigarrays vs CloudVolume vs TensorStore",
        "",
        f"Generated by `benches/bench_read.py` (scale `{scale_name}`), started {session.started}.",
        "",
        f"- **Machine**: {os.cpu_count()} CPUs (nproc), {cpu_model()}, "
        f"{platform.system()} {platform.release()}; {session.load()}. Other work (e.g. compiles) "
        "may have shared the machine, which makes the timings noisy.",
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
    scale_name = bench_scale(SCALES)
    p = SCALES[scale_name]
    session = Session()
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
    report = report_path(scale_name, data.root / "RESULTS.md")
    if scale_name == "full":
        record_metrics("bench_read.py", headline(results, limits))
    measured = (results, peaks, limits)
    write_report(report, scale_name, data, measured, session)
    print()
    print("\n".join(main_table(results)))
    print(f"\nwrote {report}")


if __name__ == "__main__":
    sys.exit(main())
