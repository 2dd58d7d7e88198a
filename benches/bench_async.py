"""Concurrent reads under asyncio: bigarrays' ``read_async`` against TensorStore's awaitable
reads, and against bigarrays' blocking reads in ``asyncio.to_thread`` (what users write
without an async API), on a local layer and on S3 through a delay proxy.

Run from the repository root::

    .venv/bin/python benches/bench_async.py

Each workload awaits ``asyncio.gather`` of ``PATCHES`` random unaligned patches in one event
loop, while a ticker task sleeps 1 ms at a time: the longest gap between its ticks is how
long the loop was held. Every reader's output is checked against the written voxels first.
The layer is a raw Precomputed one written by ``BigArray.create`` (plain chunk files on disk,
gzip ``Content-Encoding`` on S3); on S3 moto serves it
and ``delay_proxy.py`` holds every request ``BENCH_LATENCY_MS`` (default 25) ms.

``BENCH_SCALE=small`` is a quick check (a smaller layer, fewer patches and repeats); its
report goes to ``benches/data/small/RESULTS.md``, never to the committed one.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import boto3
import numpy as np
import tensorstore as ts
from common import (
    KEY,
    SECRET,
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    moto_server,
    report_path,
    version,
    write_section,
)
from delay_proxy import delay_proxy

from bigarrays import BigArray

SCALE = bench_scale(["full", "small"])
SHAPE, PATCHES, REPEATS = {
    "full": ((512, 512, 128), 400, 5),
    "small": ((256, 256, 64), 100, 2),
}[SCALE]
CHUNKS = (64, 64, 32)
PATCH = (40, 40, 20)
DELAY = float(os.environ.get("BENCH_LATENCY_MS", "25")) / 1000
DATA = Path(__file__).resolve().parent / "data"

Box = tuple[slice, slice, slice]


def patches(n: int) -> list[Box]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(n):
        lo = [int(rng.integers(0, s - p)) for s, p in zip(SHAPE, PATCH, strict=True)]
        out.append(tuple(slice(a, a + p) for a, p in zip(lo, PATCH, strict=True)))
    return out


async def timed(reads: Callable[[], list[Awaitable[np.ndarray]]]) -> tuple[float, float, list]:
    """Seconds to gather ``reads()``, the longest gap of a 1 ms ticker meanwhile, results."""
    gaps = [0.0]

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t = time.perf_counter()
    out = await asyncio.gather(*reads())
    took = time.perf_counter() - t
    tick.cancel()
    return took, max(gaps), out


def measure(readers: dict[str, Callable[[Box], Awaitable[np.ndarray]]], ref: np.ndarray) -> dict:
    boxes = patches(PATCHES)
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in readers}
    for name, read in readers.items():  # warm-up and check
        _, _, out = asyncio.run(timed(lambda read=read: [read(b) for b in boxes]))
        for got, b in zip(out, boxes, strict=True):
            assert np.array_equal(np.asarray(got), ref[b]), name
    for _ in range(REPEATS):  # round robin: each repeat sees the same machine
        for name, read in readers.items():
            took, gap, _ = asyncio.run(timed(lambda read=read: [read(b) for b in boxes]))
            results[name][0].append(took)
            results[name][1].append(gap)
    return {n: (statistics.median(t), max(g)) for n, (t, g) in results.items()}


def readers(a: BigArray, t: ts.TensorStore) -> dict[str, Callable[[Box], Awaitable[np.ndarray]]]:
    return {
        "bigarrays read_async": a.read_async,
        "bigarrays to_thread(a[box])": lambda b: asyncio.to_thread(a.__getitem__, b),
        "TensorStore await t[box].read()": lambda b: t[b + (0,)].read(),
    }


def table(title: str, rows: dict) -> str:
    ours = rows["bigarrays read_async"][0]
    lines = [
        f"{title}: {PATCHES} patches {PATCH} gathered at once",
        "",
        "| reader | seconds | vs read_async | longest loop gap (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, (took, gap) in rows.items():
        lines.append(f"| {name} | {took:.3f} | {took / ours:.2f}x | {gap * 1000:.1f} |")
    return "\n".join(lines)


def main() -> None:
    session = Session()
    ref = np.random.default_rng(1).integers(0, 255, size=SHAPE, dtype=np.uint8)
    sections = []
    with tempfile.TemporaryDirectory(dir=DATA if DATA.exists() else None) as tmp:
        path = Path(tmp) / "layer"
        # Plain chunk files: TensorStore reads no ".gz" chunk files.
        a = BigArray.create(str(path), shape=SHAPE, dtype="uint8", chunks=CHUNKS, compression=None)
        a[:, :, :] = ref
        spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}/"}
        t = ts.open(spec, read=True, context=ts.Context(TS_CONTEXT)).result()
        sections.append(table("Local disk", measure(readers(BigArray(str(path)), t), ref)))

    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = KEY, SECRET
    with moto_server() as endpoint:
        bucket = f"b{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        options = {
            "endpoint": endpoint,
            "aws_access_key_id": KEY,
            "aws_secret_access_key": SECRET,
            "region": "us-east-1",
        }
        url = f"s3://{bucket}/layer"
        w = BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS, storage_options=options)
        w[:, :, :] = ref
        with delay_proxy(endpoint, DELAY) as proxy:
            spec = {
                "driver": "neuroglancer_precomputed",
                "kvstore": {
                    "driver": "s3",
                    "bucket": bucket,
                    "path": "layer/",
                    "endpoint": proxy,
                    "aws_region": "us-east-1",
                },
            }
            ctx = {k: v for k, v in TS_CONTEXT.items() if k != "file_io_concurrency"}
            t = ts.open(spec, read=True, context=ts.Context(ctx)).result()
            a = BigArray(url, storage_options={**options, "endpoint": proxy})
            rows = measure(readers(a, t), ref)
            sections.append(table(f"S3 (moto) through a {DELAY * 1000:.0f} ms delay proxy", rows))
    session.stop()
    body = "\n\n".join(
        [
            f"{session.started}, {cpu_model()}, {os.cpu_count()} cores, {session.load()}; "
            f"TensorStore {version('tensorstore')}; median of {REPEATS} repeats; scale {SCALE}.",
            *sections,
        ]
    )
    print(body)
    write_section(
        "bench_async.py",
        "## Concurrent reads under asyncio (bench_async.py)\n\n" + body,
        report_path(SCALE, DATA / "small" / "RESULTS.md"),
    )


if __name__ == "__main__":
    sys.exit(main())
