"""W4: the whole segmentation layer in one read, bigarrays vs TensorStore vs CloudVolume, with
each reader's peak memory.

Run from the repository root (``make bench`` does this)::

    .venv/bin/python benches/bench_seg.py

and ``BENCH_SCALE=small`` for a quick check. The labels are bench_codecs.py's (uint64
supervoxel-like ids, 512×512×256 = 512 MiB at full scale, 64³ chunks). Two copies, both
written by CloudVolume without transport compression so all three readers read the same
files: ``raw`` (the memory-bandwidth case: decoding is a copy) and ``compressed_segmentation``
(bench_codecs.py's layer). A reader's peak memory is how far the process's resident set rose
above its level at the start of the read, output included; the target is at most 1.15× the
output. The machine's limit for the raw case is one copy of the output: timed as NumPy
copying the labels, already in memory, into a fresh Fortran-ordered array.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_codecs import CHUNKS, DATA, SCALES, Data, readers, time_all
from cloudvolume import CloudVolume
from common import cpu_model, peak_rss_above_baseline, record_metrics, version, write_section

HERE = Path(__file__).resolve().parent


def ensure_raw_copy(data: Data, labels: np.ndarray) -> Path:
    """CloudVolume's uncompressed raw-encoded copy of the labels (once)."""
    path = data.root / "seg_raw"
    if (path / "done").exists():
        return path
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="segmentation",
        data_type="uint64",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        chunk_size=list(CHUNKS),
        volume_size=list(labels.shape),
    )
    vol = CloudVolume(f"file://{path}", info=info, compress=False, progress=False, parallel=1)
    vol.commit_info()
    nx, ny, nz = labels.shape
    for z0 in range(0, nz, CHUNKS[2]):
        vol[0:nx, 0:ny, z0 : z0 + CHUNKS[2]] = np.asarray(labels[:, :, z0 : z0 + CHUNKS[2]])
    (path / "done").touch()
    return path


def peak_in_fresh_process(layer_path: Path, reader: str, box) -> int:
    """A reader's peak memory for one read, in a fresh interpreter: allocators that keep
    freed memory (TensorStore's) would otherwise hide their peak behind earlier runs."""
    starts = ",".join(str(b.start) for b in box)
    stops = ",".join(str(b.stop) for b in box)
    out = subprocess.run(
        [sys.executable, __file__, "--peak", str(layer_path), reader, starts, stops],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    ).stdout
    return int(out.split()[-1])


def print_peak(layer_path: str, reader: str, starts: str, stops: str) -> None:
    bounds = zip(starts.split(","), stops.split(","), strict=True)
    box = tuple(slice(int(a), int(b)) for a, b in bounds)
    read = readers(Path(layer_path))[reader]
    _, peak = peak_rss_above_baseline(lambda: read(box))
    print(peak)


def copy_limit(labels: np.ndarray, repeats: int) -> float:
    """One copy of the whole output: resident source into a fresh Fortran array."""
    src = np.asfortranarray(labels)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = np.empty(src.shape, src.dtype, order="F")
        np.copyto(out, src)
        ts.append(time.perf_counter() - t)
        del out
    return statistics.median(ts)


def main() -> None:
    if sys.argv[1:2] == ["--peak"]:
        return print_peak(*sys.argv[2:6])
    scale = os.environ.get("BENCH_SCALE", "full")
    if scale not in SCALES:
        raise SystemExit(f"BENCH_SCALE must be one of {sorted(SCALES)}, got {scale!r}")
    p = SCALES[scale]
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load0 = os.getloadavg()[0]
    data = Data(DATA / f"codecs-{scale}", p)
    data.ensure()
    labels = data.labels()
    raw = ensure_raw_copy(data, labels)
    whole = tuple(slice(0, n) for n in p.shape)
    out_bytes = math.prod(p.shape) * 8
    limit = copy_limit(labels, p.repeats)
    rows = []
    for layer, path in (("raw", raw), ("compressed_segmentation", data.cseg)):
        rs = readers(path)
        expected = np.asarray(labels)
        for name, read in rs.items():  # check, and warm up
            if not np.array_equal(np.asarray(read(whole)), expected):
                raise SystemExit(f"W4 {layer}: {name} differs from the generated labels")
        del expected
        gc.collect()
        times = time_all(rs, whole, p.repeats)  # round-robin
        measured = {name: (times[name], peak_in_fresh_process(path, name, whole)) for name in rs}
        rows.append((layer, measured))
        print(layer, {k: (round(statistics.median(t), 4), pk) for k, (t, pk) in measured.items()})
    load1 = os.getloadavg()[0]

    table = [
        "| layer | bigarrays (s) | TensorStore (s) | CloudVolume (s) | TensorStore / bigarrays "
        "| peak memory ÷ output: bigarrays / TensorStore / CloudVolume |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for layer, m in rows:
        med = {k: statistics.median(t) for k, (t, _) in m.items()}
        peaks = " / ".join(
            f"{m[k][1] / out_bytes:.2f}" for k in ("bigarrays", "TensorStore", "CloudVolume")
        )
        table.append(
            f"| {layer} | {med['bigarrays']:.4f} | {med['TensorStore']:.4f} "
            f"| {med['CloudVolume']:.4f} | {med['TensorStore'] / med['bigarrays']:.2f}× "
            f"| {peaks} |"
        )
    shape = "×".join(map(str, p.shape))
    lines = [
        "## W4: a whole segmentation layer in one read",
        "",
        f"Generated by `benches/bench_seg.py` (scale `{scale}`), started {started}; load "
        f"average (1 min) {load0:.2f} at start, {load1:.2f} at end. {os.cpu_count()} CPUs, "
        f"{cpu_model()}, {platform.system()}; bigarrays {version('bigarrays')}, TensorStore "
        f"{version('tensorstore')}, CloudVolume {version('cloud-volume')}.",
        "",
        f"- **Data**: bench_codecs.py's uint64 labels, {shape} ({out_bytes / 2**20:.0f} MiB), "
        f"chunks {'×'.join(map(str, CHUNKS))}; a `raw` copy and the `compressed_segmentation` "
        "copy, both without transport compression (all three readers read the same files).",
        "- **Method**: handles opened once; each reader's output checked against the labels "
        f"first (the warm-up), then timed round-robin {p.repeats} times, median reported. "
        "Peak memory: in a fresh interpreter per reader, after opening the handle, how far the "
        "resident set rose above its level at the start of one read (`/proc/self/clear_refs`), "
        "output included, ÷ the output's size. No chunk caches; TensorStore `order='F'`, "
        "cache pool 0; CloudVolume `parallel=1`.",
        f"- **Limit** (raw): one copy of the output, NumPy copying the resident labels into a "
        f"fresh Fortran array: **{limit:.4f} s**.",
        "",
        *table,
        "",
        "Reproduce: `.venv/bin/python benches/bench_seg.py` (part of `make bench`).",
    ]
    report = HERE / "RESULTS.md" if scale == "full" else data.root / "RESULTS.md"
    write_section("bench_seg.py", "\n".join(lines), report)
    if scale == "full":
        metrics = {}
        for layer, m in rows:
            med = {k: statistics.median(t) for k, (t, _) in m.items()}
            metrics[f"W4 {layer} TensorStore / bigarrays"] = med["TensorStore"] / med["bigarrays"]
            metrics[f"W4 {layer} peak / output"] = m["bigarrays"][1] / out_bytes
        record_metrics("bench_seg.py", metrics)
    print("\n".join(table))
    print(f"wrote {report}")


if __name__ == "__main__":
    sys.exit(main())
