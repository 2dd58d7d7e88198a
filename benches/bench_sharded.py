"""Sharded benchmark: bigarrays against TensorStore and CloudVolume on a sharded layer.

Run from the repository root::

    .venv/bin/python benches/bench_sharded.py

(``BENCH_SCALE=small`` for a quick check). The data is ``benches/bench_read.py``'s: the same
generated uint8 layer and the same TensorStore-written sharded gzip copy
(``neuroglancer_uint64_sharded_v1``, identity hash, gzip data and minishard indexes), built
by its ``Dataset`` into ``benches/data/`` when missing. Every reader reads that one copy:

* W1      - an aligned cutout,
* W2      - an unaligned cutout,
* patches - 256 random small cutouts (seeded), read one after another,

and a whole-layer sharded write (the same sharding spec) times bigarrays against
TensorStore. Results go to stdout and to the ``bench_sharded.py`` section of
``benches/RESULTS.md`` (a small run's to ``benches/data/small/``).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorstore as ts
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    clock,
    cpu_model,
    cv_file,
    report_path,
    time_round_robin,
    ts_file_spec,
    version,
    vs_best,
    write_section,
)
from datasets import DATA, SCALES, Dataset

from bigarrays import BigArray

PATCH = (64, 64, 32)
PATCHES = 256

# name -> list of (origin, size) boxes read one after another
Workloads = dict[str, list[tuple[tuple[int, int, int], tuple[int, int, int]]]]


def workloads(scale_name: str, shape) -> Workloads:
    p = SCALES[scale_name]
    out: Workloads = {w.name: [(w.origin, w.size)] for w in p.workloads if w.layer == "gzip"}
    rng = np.random.default_rng(5)
    out["patches"] = [
        (tuple(int(rng.integers(0, n - s + 1)) for n, s in zip(shape, PATCH, strict=True)), PATCH)
        for _ in range(PATCHES)
    ]
    return out


def slices(origin, size) -> tuple[slice, slice, slice]:
    return tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))


Reader = Callable[[tuple[slice, slice, slice]], np.ndarray]


def make_readers(path: Path) -> dict[str, Reader]:
    ba = BigArray(str(path))
    cv = cv_file(path)
    tss = ts.open(
        ts_file_spec(path),
        read=True,
        context=ts.Context(TS_CONTEXT),
    ).result()
    return {
        "bigarrays": lambda s: ba[s],
        "CloudVolume": lambda s: cv[s][..., 0],
        "TensorStore order=F": lambda s: tss[(*s, 0)].read(order="F").result(),
    }


def verify(boxes, readers: dict[str, Reader], truth: np.ndarray, name: str) -> None:
    for origin, size in boxes[:16]:
        expected = np.asarray(truth[slices(origin, size)])
        for reader, read in readers.items():
            if not np.array_equal(np.asarray(read(slices(origin, size))), expected):
                raise SystemExit(f"{name}: {reader} differs from the generated data at {origin}")


def time_reads(boxes, readers: dict[str, Reader], repeats: int) -> dict[str, list[float]]:
    def read_all(read: Reader) -> None:
        for origin, size in boxes:
            read(slices(origin, size))

    runs = {name: lambda read=read: read_all(read) for name, read in readers.items()}
    return time_round_robin(runs, repeats)


def time_writes(data: Dataset, truth: np.ndarray, repeats: int) -> dict[str, list[float]]:
    p = data.p
    times: dict[str, list[float]] = {"bigarrays": [], "TensorStore": []}
    root = Path(tempfile.mkdtemp(prefix="bench_sharded_", dir=DATA))
    try:
        for i in range(repeats):
            ba_path, ts_path = root / f"ba{i}", root / f"ts{i}"

            def ba_write(ba_path: Path = ba_path) -> None:
                a = BigArray.create(
                    str(ba_path), shape=p.shape, dtype="uint8", chunks=p.chunks,
                    resolution=p.resolution, sharding=data.sharding,
                )  # fmt: skip
                a[a.bounds] = truth

            def ts_write(ts_path: Path = ts_path) -> None:
                store = ts.open(
                    {
                        "driver": "neuroglancer_precomputed",
                        "kvstore": {"driver": "file", "path": str(ts_path)},
                        "multiscale_metadata": {
                            "type": "image", "data_type": "uint8", "num_channels": 1,
                        },
                        "scale_metadata": {
                            "size": list(p.shape), "voxel_offset": [0, 0, 0],
                            "resolution": list(p.resolution), "chunk_size": list(p.chunks),
                            "encoding": "raw", "sharding": data.sharding,
                        },
                    },
                    create=True,
                    context=ts.Context(TS_CONTEXT),
                ).result()  # fmt: skip
                store[..., 0].write(truth).result()

            times["bigarrays"].append(clock(ba_write))
            times["TensorStore"].append(clock(ts_write))
            if i == 0:  # each reads the other's layer back exactly
                back = ts.open(
                    {"driver": "neuroglancer_precomputed",
                     "kvstore": {"driver": "file", "path": str(ba_path)}},
                    read=True,
                ).result()  # fmt: skip
                if not np.array_equal(back[..., 0].read(order="F").result(), truth):
                    raise SystemExit("TensorStore reads back different voxels from bigarrays")
                ours = BigArray(str(ts_path))
                if not np.array_equal(ours[ours.bounds], truth):
                    raise SystemExit("bigarrays reads back different voxels from TensorStore")
            shutil.rmtree(ba_path)
            shutil.rmtree(ts_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return times


def med(t: list[float]) -> float:
    return statistics.median(t)


def main() -> None:
    scale_name = bench_scale(SCALES)
    p = SCALES[scale_name]
    session = Session()
    data = Dataset(DATA / scale_name, p)
    data.ensure()
    truth = data.truth()
    readers = make_readers(data.ts_sharded)
    reads = {}
    for name, boxes in workloads(scale_name, p.shape).items():
        verify(boxes, readers, truth, name)
        # The patch run is long (256 reads per repeat): fewer repeats.
        reads[name] = time_reads(boxes, readers, p.repeats if name != "patches" else 3)
        print(name, {k: round(med(v), 4) for k, v in reads[name].items()}, flush=True)
    truth_mem = np.asarray(truth)
    writes = time_writes(data, truth_mem, 3)
    print("write", {k: round(med(v), 4) for k, v in writes.items()}, flush=True)

    sh = data.sharding
    shard_chunks = "×".join(str(s // c) for s, c in zip(data.shard_shape, p.chunks, strict=True))
    w = {x.name: x for x in p.workloads}
    rows = [
        "| workload | bigarrays median (s) | CloudVolume median (s) | TensorStore median (s) "
        "| bigarrays vs best peer |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in reads.items():
        ba, cv, tsf = med(t["bigarrays"]), med(t["CloudVolume"]), med(t["TensorStore order=F"])
        what = (
            f"{name}: {'×'.join(map(str, w[name].size))} @ {w[name].origin}"
            if name in w
            else f"{PATCHES} random {'×'.join(map(str, PATCH))} patches, one after another"
        )
        rows.append(
            f"| {what} | {ba:.4f} | {cv:.4f} | {tsf:.4f} "
            f"| {vs_best({'CloudVolume': cv, 'TensorStore': tsf}, ba)} |"
        )
    ba_w, ts_w = med(writes["bigarrays"]), med(writes["TensorStore"])
    rows.append(
        f"| whole-layer sharded write ({math.prod(p.shape) / 2**20:.0f} MiB) | {ba_w:.4f} | - "
        f"| {ts_w:.4f} | {vs_best({'TensorStore': ts_w}, ba_w)} |"
    )
    lines = [
        "# Sharded benchmark: bigarrays vs CloudVolume vs TensorStore",
        "",
        f"Generated by `benches/bench_sharded.py` (scale `{scale_name}`), "
        f"started {session.started}.",
        "",
        f"- **Machine**: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} "
        f"{platform.release()}; {session.load()} (other work may have shared the machine).",
        f"- **Software**: bigarrays {version('bigarrays')}, CloudVolume "
        f"{version('cloud-volume')}, TensorStore {version('tensorstore')}.",
        f"- **Data**: `bench_read.py`'s uint8 layer {'×'.join(map(str, p.shape))}, chunks "
        f"{'×'.join(map(str, p.chunks))}, as TensorStore wrote it sharded: identity hash, "
        f"preshift/minishard/shard bits {sh['preshift_bits']}/{sh['minishard_bits']}/"
        f"{sh['shard_bits']} ({shard_chunks} chunks per shard), gzip data and minishard "
        f"indexes. All three readers read this one copy from local disk (warm page cache).",
        f"- **Method**: handles opened once; each reader's output checked against the "
        f"generated data first (the warm-up), then timed round-robin {p.repeats} times (the "
        "patch run 3 times), median reported. No chunk caches (CloudVolume "
        "`cache=False, lru_bytes=0`, TensorStore `cache_pool` 0); bigarrays keeps its "
        "minishard-index cache and CloudVolume its in-memory shard/minishard index caches "
        "(TensorStore caches nothing with a zero cache pool). The write: 3 runs each of "
        "creating a new sharded layer with the same spec and writing the whole volume in "
        "one call; each library reads the other's output back exactly.",
        "",
        "Ratio = best peer median / bigarrays median; > 1 means bigarrays is faster.",
        "",
        *rows,
        "",
    ]
    report = report_path(scale_name, data.root / "RESULTS.md")
    write_section("bench_sharded.py", "\n".join(lines), report)
    print("\n".join(rows))
    print(f"\nwrote {report}")


if __name__ == "__main__":
    sys.exit(main())
