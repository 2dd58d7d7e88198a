"""Zarr benchmark: bigarrays against TensorStore, zarr-python and zarr-python with the zarrs
codec pipeline, reading the same Zarr v3 arrays from local disk (issue 18, "Speed").

Run from the repository root::

    .venv/bin/python benches/bench_zarr.py

(``BENCH_SCALE=small`` for a quick check). The data follows zarr_benchmarks (the zarrs
project's reference), scaled to this machine: an N³ uint16 array whose element at
``(i0, i1, i2)`` is ``(i2 + i1²/32 + i0³) mod 65536``, written by TensorStore as

* ``uncompressed`` - chunks of (N/2)³, ``bytes`` only,
* ``zstd``         - the same chunks, zstd level 0,
* ``sharded``      - shards of (N/2)³ holding inner chunks of (N/8)³, zstd level 0,

plus ``em gzip``: datasets.py's EM-like uint8 volume (its generator at N³) as chunks of
64×128×128 (z, y, x), gzip level 1. It is generated once into ``benches/data/zarr-<scale>/``.

Each reader reads each array whole (read-all) and one storage chunk or shard per call in a
loop (chunk-by-chunk), warm page cache, timed round-robin; the medians, the ratios against
the fastest peer, bigarrays' peak resident memory above its baseline relative to the output,
and bigarrays' read-all on 1 and 2 cores (a fresh interpreter pinned with
``sched_setaffinity``, as bench_scaling.py does) go to the ``bench_zarr.py`` section of
``benches/RESULTS.md`` (a small run's to ``benches/data/zarr-small/RESULTS.md``).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    median_time,
    medians,
    ratio,
    record_metrics,
    report_path,
    time_round_robin,
    version,
    vs_best,
    write_section,
)
from datasets import DATA, Scale, generate_slab

HERE = Path(__file__).resolve().parent
GENERATOR_VERSION = 1
# Edge of the arrays and repeats per scale.
SIZES = {"full": 512, "small": 128}
REPEATS = {"full": 5, "small": 3}
CORE_COUNTS = (1, 2)
# The targets.
READ_ALL_TARGET = 1.2  # x the fastest peer
CHUNKWISE_TARGET = 1.5  # x TensorStore
PEAK_TARGET = 1.15  # x the output's bytes

ZSTD0 = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


def arrays(n: int) -> dict[str, dict]:
    """Name → the data type, the stored objects' (chunks' or shards') shape and the codecs."""
    c, inner = n // 2, n // 8
    em_chunks = [min(64, n), min(128, n), min(128, n)]
    return {
        "uncompressed": {"dtype": "uint16", "chunks": [c] * 3, "codecs": [BYTES]},
        "zstd": {"dtype": "uint16", "chunks": [c] * 3, "codecs": [BYTES, ZSTD0]},
        "sharded": {
            "dtype": "uint16",
            "chunks": [c] * 3,
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [inner] * 3,
                        "codecs": [BYTES, ZSTD0],
                        "index_codecs": [BYTES, {"name": "crc32c"}],
                        "index_location": "end",
                    },
                }
            ],
        },
        "em gzip": {
            "dtype": "uint8",
            "chunks": em_chunks,
            "codecs": [BYTES, {"name": "gzip", "configuration": {"level": 1}}],
        },
    }


def zarrbench_values(n: int, i0: range) -> np.ndarray:
    """zarr_benchmarks' values for the planes ``i0`` of an n³ array (C order)."""
    a = np.arange(i0.start, i0.stop, dtype=np.uint64)[:, None, None] ** 3
    b = (np.arange(n, dtype=np.uint64) ** 2 // 32)[None, :, None]
    c = np.arange(n, dtype=np.uint64)[None, None, :]
    return ((a + b + c) % 65536).astype(np.uint16)


def em_values(n: int) -> np.ndarray:
    """datasets.py's EM-like volume at n³, as a C-ordered (z, y, x) array."""
    p = Scale(shape=(n, n, n))
    vol = np.empty((n, n, n), np.uint8)
    step = p.chunks[2]
    for z0 in range(0, n, step):
        vol[z0 : z0 + step] = generate_slab(p, z0, min(n, z0 + step)).T
    return vol


def truth(name: str, n: int) -> np.ndarray:
    return em_values(n) if name == "em gzip" else zarrbench_values(n, range(n))


def ensure(root: Path, n: int) -> dict[str, np.ndarray]:
    """Writes the arrays (once; again when the generator or its parameters change) and
    returns each one's values."""
    import tensorstore as ts

    stamp = {"generator_version": GENERATOR_VERSION, "n": n, "arrays": arrays(n)}
    stamp_path = root / "stamp.json"
    values = {name: truth(name, n) for name in arrays(n)}
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return values
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name, spec in arrays(n).items():
        store = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(root / slug(name))},
                "metadata": {
                    "shape": [n] * 3,
                    "data_type": spec["dtype"],
                    "chunk_grid": {
                        "name": "regular",
                        "configuration": {"chunk_shape": spec["chunks"]},
                    },
                    "codecs": spec["codecs"],
                    "fill_value": 0,
                    "dimension_names": ["z", "y", "x"],
                },
            },
            create=True,
        ).result()
        store.write(values[name]).result()
    stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    return values


def slug(name: str) -> str:
    return name.replace(" ", "_")


def chunk_boxes(n: int, chunks: list[int]) -> list[tuple[slice, ...]]:
    """Every stored object's box (a chunk, or a whole shard), C order."""
    starts = [range(0, n, c) for c in chunks]
    return [
        tuple(slice(s, min(s + c, n)) for s, c in zip(corner, chunks, strict=True))
        for corner in itertools.product(*starts)
    ]


Reader = Callable[[tuple[slice, ...]], np.ndarray]


def make_readers(path: Path) -> dict[str, Reader]:
    import tensorstore as ts
    import zarr

    from bigarrays import BigArray

    ba = BigArray(str(path))
    tss = ts.open(
        {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}},
        read=True,
        context=ts.Context(TS_CONTEXT),
    ).result()
    zp = zarr.open_array(str(path), mode="r")
    # The pipeline is chosen when an array is opened: this handle keeps zarrs'.
    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
        zr = zarr.open_array(str(path), mode="r")
    if "Zarrs" not in type(zr._async_array.codec_pipeline).__name__:
        raise SystemExit(f"zarr-python did not take the zarrs pipeline for {path}")
    return {
        "bigarrays": lambda s: ba[s],
        "TensorStore": lambda s: tss[s].read().result(),
        "zarr-python": lambda s: zp[s],
        "zarrs-python": lambda s: zr[s],
    }


def child(path: str, repeats: int) -> None:
    """bigarrays' read-all median on the cores this process was given; prints JSON."""
    from bigarrays import BigArray

    a = BigArray(path)
    whole = (slice(None),) * 3
    print(json.dumps({"read_all": median_time(lambda: a[whole], repeats)}))


def run_pinned(cores: list[int], path: Path, repeats: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    ).stdout
    return json.loads(out.splitlines()[-1])["read_all"]


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2], int(sys.argv[3]))
    scale = bench_scale(SIZES)
    n, repeats = SIZES[scale], REPEATS[scale]
    root = DATA / f"zarr-{scale}"
    values = ensure(root, n)
    session = Session()
    whole = (slice(None),) * 3
    rows_all, rows_chunk, rows_peak, metrics = [], [], [], {}
    all_met = {"read-all": True, "chunk-by-chunk": True, "peak": True}
    for name, spec in arrays(n).items():
        path = root / slug(name)
        readers = make_readers(path)
        expected = values[name]
        # The check is each reader's warm-up (page cache, pools, handles).
        for reader, read in readers.items():
            if not np.array_equal(np.asarray(read(whole)), expected):
                raise SystemExit(f"{name}: {reader} differs from the generated data")
        peaks: dict[str, int] = {}
        t_all = medians(
            time_round_robin(
                {r: (lambda read=read: read(whole)) for r, read in readers.items()},
                repeats,
                free_in_timing=True,
                peaks=peaks,
            )
        )
        boxes = chunk_boxes(n, spec["chunks"])

        def each_chunk(read: Reader, boxes=boxes) -> None:
            for box in boxes:
                read(box)

        t_chunk = medians(
            time_round_robin(
                {r: (lambda read=read: each_chunk(read)) for r, read in readers.items()},
                repeats,
            )
        )
        print(name, "read-all", {k: round(v, 4) for k, v in t_all.items()}, flush=True)
        print(name, "chunk-by-chunk", {k: round(v, 4) for k, v in t_chunk.items()}, flush=True)
        out_bytes = expected.nbytes
        peers_all = {k: v for k, v in t_all.items() if k != "bigarrays"}
        peers_chunk = {k: v for k, v in t_chunk.items() if k != "bigarrays"}
        best_all = min(peers_all.values()) / t_all["bigarrays"]
        vs_ts = t_chunk["TensorStore"] / t_chunk["bigarrays"]
        peak = peaks["bigarrays"] / out_bytes
        all_met["read-all"] &= best_all >= READ_ALL_TARGET
        all_met["chunk-by-chunk"] &= vs_ts >= CHUNKWISE_TARGET
        all_met["peak"] &= peak <= PEAK_TARGET
        metrics[f"{name} read-all vs best peer"] = round(best_all, 3)
        metrics[f"{name} chunk-by-chunk vs TensorStore"] = round(vs_ts, 3)
        metrics[f"{name} peak / output"] = round(peak, 3)
        cols = ("bigarrays", "TensorStore", "zarr-python", "zarrs-python")
        rows_all.append(
            f"| {name} | "
            + " | ".join(f"{t_all[c]:.4f}" for c in cols)
            + f" | {vs_best(peers_all, t_all['bigarrays'])} |"
        )
        rows_chunk.append(
            f"| {name} ({len(boxes)} objects) | "
            + " | ".join(f"{t_chunk[c]:.4f}" for c in cols)
            + f" | {ratio(t_chunk['TensorStore'], t_chunk['bigarrays'])} "
            f"| {vs_best(peers_chunk, t_chunk['bigarrays'])} |"
        )
        rows_peak.append(
            f"| {name} | {out_bytes / 2**20:.0f} | "
            + " | ".join(f"{peaks[c] / out_bytes:.2f}" for c in cols)
            + " |"
        )
        del readers
    available = sorted(os.sched_getaffinity(0))
    counts = [c for c in CORE_COUNTS if c <= len(available)]
    scaling = {
        name: {c: run_pinned(available[:c], root / slug(name), repeats) for c in counts}
        for name in arrays(n)
    }
    session.stop()

    header = "| bigarrays (s) | TensorStore (s) | zarr-python (s) | zarrs-python (s) |"
    rule = "---:|" * 4
    scale_rows = [
        f"| {name} | "
        + " | ".join(f"{t[c]:.4f} ({ratio(t[counts[0]], t[c])})" for c in counts)
        + " |"
        for name, t in scaling.items()
    ]
    specs = arrays(n)
    lines = [
        "## Zarr: bigarrays vs TensorStore vs zarr-python vs zarrs-python",
        "",
        f"Generated by `benches/bench_zarr.py` (scale `{scale}`), started {session.started}; "
        f"{session.load()} (other work shared the machine).",
        "",
        f"- **Machine**: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} "
        f"{platform.release()}.",
        f"- **Software**: bigarrays {version('bigarrays')}, TensorStore "
        f"{version('tensorstore')}, zarr-python {version('zarr')}, zarrs-python "
        f"{version('zarrs')}.",
        f"- **Data** (zarr_benchmarks at {n}³): uint16 `(i2 + i1²/32 + i0³) mod 65536`, "
        f"Zarr v3 written by TensorStore: uncompressed chunks of "
        f"{'×'.join(map(str, specs['zstd']['chunks']))}; the same with zstd level 0; shards "
        f"of that shape holding {n // 8}³ inner chunks, zstd 0. Plus datasets.py's EM-like "
        f"uint8 volume at {n}³ in chunks of {'×'.join(map(str, specs['em gzip']['chunks']))} "
        "(z, y, x), gzip level 1. Local disk, warm page cache.",
        f"- **Method**: handles opened once; each reader's read-all checked against the "
        f"generated values first (the warm-up), then read-all and chunk-by-chunk (each "
        f"stored chunk or shard read as its own cutout, one after another) timed "
        f"round-robin {repeats} times, median reported. TensorStore `zarr3` with no cache "
        "pool; zarr-python's default pipeline; zarrs-python = zarr-python with "
        "`codec_pipeline.path = zarrs.ZarrsCodecPipeline`. Peak = the resident set's rise "
        "above its level before the last read-all (output included) over the output's bytes.",
        "",
        "Ratio = peer median / bigarrays median; > 1 means bigarrays is faster.",
        "",
        "### Read-all",
        "",
        f"| array {header} bigarrays vs fastest peer |",
        "|---|" + rule + "---:|",
        *rows_all,
        "",
        "### Chunk-by-chunk",
        "",
        f"| array {header} bigarrays vs TensorStore | bigarrays vs fastest peer |",
        "|---|" + rule + "---:|---:|",
        *rows_chunk,
        "",
        "### Peak memory of a read-all, over the output's bytes",
        "",
        "| array | output (MiB) | bigarrays | TensorStore | zarr-python | zarrs-python |",
        "|---|---:|---:|---:|---:|---:|",
        *rows_peak,
        "",
        "### bigarrays read-all on 1 and 2 cores (speed-up against 1)",
        "",
        "| array | " + " | ".join(f"{c} core{'s' * (c > 1)} (s)" for c in counts) + " |",
        "|---|" + "---:|" * len(counts),
        *scale_rows,
        "",
        "### Targets (issue 18)",
        "",
        f"- Read-all >= {READ_ALL_TARGET}× the fastest peer on every array: "
        f"{met(all_met['read-all'])}.",
        f"- Chunk-by-chunk >= {CHUNKWISE_TARGET}× TensorStore on every array: "
        f"{met(all_met['chunk-by-chunk'])}.",
        f"- Peak <= {PEAK_TARGET}× the output on every array: {met(all_met['peak'])}.",
        "",
        "Reproduce: `.venv/bin/python benches/bench_zarr.py` (part of `make bench`).",
    ]
    record_metrics("bench_zarr.py", metrics)
    report = report_path(scale, root / "RESULTS.md")
    write_section("bench_zarr.py", "\n".join(lines), report)
    print("\n".join(lines[lines.index("### Read-all") :]))
    print(f"wrote {report}")


if __name__ == "__main__":
    sys.exit(main())
