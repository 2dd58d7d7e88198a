"""The performance issue's targets against the latest full bench runs: reads the headline
numbers each bench recorded (``benches/data/metrics.json``) and writes the summary at the top
of ``benches/RESULTS.md``. ``make bench`` runs it last."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from common import METRICS, write_section


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    script: str
    metric: str
    met: Callable[[float], bool]
    shown: str = "{:.2f}×"


TARGETS = (
    Target("W1 aligned gzip cutout", "≥ 2× best peer", "bench_read.py",
           "W1 best peer / bigarrays", lambda v: v >= 2),
    Target("W1 against the machine's limit", "≤ 1.15× the limit", "bench_read.py",
           "W1 bigarrays / limit", lambda v: v <= 1.15),
    Target("W1: is 2× best peer possible here?", "2× best peer ≥ the limit", "bench_read.py",
           "W1 2x best peer / limit", lambda v: v >= 1, "2× best peer = {:.2f}× the limit"),
    Target("W2 unaligned gzip cutout", "≥ 2× best peer", "bench_read.py",
           "W2 best peer / bigarrays", lambda v: v >= 2),
    Target("W1u uncompressed", "≤ CloudVolume's time", "bench_read.py",
           "W1u CloudVolume / bigarrays", lambda v: v >= 1),
    Target("W1 on a sparse 2^40-voxel layer", "the same time as dense", "bench_read.py",
           "W1s sparse / W1 dense", lambda v: v <= 1.15, "{:.2f}× the dense time"),
    Target("W3 cold, read_many", "≥ 250 patches/s", "bench_batch.py",
           "W3 cold patches/s", lambda v: v >= 250, "{:,.0f} patches/s"),
    Target("W3 warm cache, read_many", "≥ 10k patches/s", "bench_batch.py",
           "W3 warm patches/s", lambda v: v >= 10_000, "{:,.0f} patches/s"),
    Target("1-voxel read, warm cache", "≤ 50 µs", "bench_batch.py",
           "1-voxel warm read µs", lambda v: v <= 50, "{:.1f} µs"),
    Target("W4 whole seg layer (raw)", "≥ 1.5× TensorStore", "bench_seg.py",
           "W4 raw TensorStore / bigarrays", lambda v: v >= 1.5),
    Target("W4 raw: peak memory", "≤ 1.15× the output", "bench_seg.py",
           "W4 raw peak / output", lambda v: v <= 1.15, "{:.2f}× the output"),
    Target("W4 whole seg layer (compressed_segmentation)", "≥ 1.5× TensorStore",
           "bench_seg.py", "W4 compressed_segmentation TensorStore / bigarrays",
           lambda v: v >= 1.5),
    Target("W4 compressed_segmentation: peak memory", "≤ 1.15× the output", "bench_seg.py",
           "W4 compressed_segmentation peak / output", lambda v: v <= 1.15,
           "{:.2f}× the output"),
    Target("W5 aligned 64 MiB gzip write", "≥ 1.8× TensorStore", "bench_write.py",
           "W5 TensorStore / bigarrays", lambda v: v >= 1.8),
    Target("W5 compression ratio", "≥ TensorStore's", "bench_write.py",
           "W5 compression ratio bigarrays sharded / TensorStore", lambda v: v >= 0.9995,
           "{:.4f}× TensorStore's"),
    Target("W5 against the machine's limit", "(for reference)", "bench_write.py",
           "W5 bigarrays / limit", lambda v: True, "{:.2f}× the limit"),
    Target("Ingest TIFF slices, sharded, 3 mips", "≥ 3× CloudVolume + tinybrain",
           "bench_ingest.py", "ingest time ratio", lambda v: v >= 3),
    Target("Ingest: peak memory", "below CloudVolume + tinybrain's", "bench_ingest.py",
           "ingest peak ratio", lambda v: v < 1, "{:.2f}× theirs"),
)  # fmt: skip


def main() -> None:
    metrics = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    rows = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in TARGETS:
        value = metrics.get(t.script, {}).get(t.metric)
        if value is None:
            rows.append(f"| {t.name} | {t.goal} | not run (`{t.script}`) | - |")
            continue
        rows.append(
            f"| {t.name} | {t.goal} | {t.shown.format(value)} | "
            f"{'yes' if t.met(value) else '**no**'} |"
        )
    body = "\n".join(
        [
            "# Performance targets (summary)",
            "",
            "Written by `benches/targets.py` from the latest full run of each bench below "
            "(`make bench`); every ratio compares libraries measured in the same run on the "
            "same data. Details, methods and the peers' numbers are in each bench's section.",
            "",
            *rows,
        ]
    )
    write_section("targets.py", body, first=True)
    print(body)


if __name__ == "__main__":
    sys.exit(main())
