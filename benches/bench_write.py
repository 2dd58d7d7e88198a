"""W5: an aligned 64 MiB gzip write, bigarrays vs TensorStore vs CloudVolume.

Run from the repository root (``make bench`` does this)::

    .venv/bin/python benches/bench_write.py

and ``BENCH_SCALE=small`` for a quick check. The voxels are bench_read.py's EM-like volume
(its cached ``volume.npy``): the 512×512×256 block at (256, 256, 128), written whole into a
new 512×512×256 layer with 128×128×64 chunks. TensorStore writes gzip only inside shards, so
the like-for-like pair is a sharded gzip layer with bench_read.py's spec (4×4×4 chunks per
shard: one shard here); bigarrays and CloudVolume also write plain gzip chunk files. Every
output is read back and compared, and its compression ratio reported, since a faster write
at a worse ratio is no win. The limit: libdeflate at level 6 compressing the 64 chunks
single-threaded, divided by the cores.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import deflate
import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from common import (
    Session,
    bench_scale,
    clock,
    cpu_model,
    median_time,
    medians,
    ratio,
    record_metrics,
    report_path,
    version,
    write_section,
)
from datasets import DATA, SCALES, Dataset, Scale, sharding_spec

from bigarrays import BigArray

CHUNKS = (128, 128, 64)
CORES = os.cpu_count() or 1


def block_of(scale: str) -> np.ndarray:
    """The voxels to write: the centre half of bench_read.py's volume along each axis."""
    data = Dataset(DATA / scale, SCALES[scale])
    data.ensure()
    truth = data.truth()
    lo = [n // 4 for n in truth.shape]
    box = tuple(slice(a, a + n // 2) for a, n in zip(lo, truth.shape, strict=True))
    return np.asfortranarray(truth[box])


def writers(block: np.ndarray, root: Path) -> dict[str, tuple[Callable, Callable]]:
    """Per writer: ``prepare(path)`` (creates the empty layer, not timed) returning
    ``write()`` (timed)."""
    shape = block.shape
    spec, _ = sharding_spec(Scale(shape=shape, chunks=CHUNKS))
    whole = tuple(slice(0, n) for n in shape)

    def ba(sharding):
        def prepare(path: Path):
            a = BigArray.create(
                str(path), shape=shape, dtype="uint8", chunks=CHUNKS, sharding=sharding
            )
            return lambda: a.__setitem__(whole, block)

        return prepare

    def tensorstore(path: Path):
        store = ts.open(
            {
                "driver": "neuroglancer_precomputed",
                "kvstore": {"driver": "file", "path": str(path)},
                "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
                "scale_metadata": {
                    "size": list(shape),
                    "voxel_offset": [0, 0, 0],
                    "resolution": [4, 4, 40],
                    "chunk_size": list(CHUNKS),
                    "encoding": "raw",
                    "sharding": spec,
                },
            },
            create=True,
            delete_existing=True,
        ).result()
        return lambda: store[..., 0].write(block).result()

    def cloudvolume(path: Path):
        info = CloudVolume.create_new_info(
            num_channels=1,
            layer_type="image",
            data_type="uint8",
            encoding="raw",
            resolution=[4, 4, 40],
            voxel_offset=[0, 0, 0],
            chunk_size=list(CHUNKS),
            volume_size=list(shape),
        )
        cv = CloudVolume(f"file://{path}", info=info, progress=False, parallel=1)
        cv.commit_info()
        return lambda: cv.__setitem__(whole, block)

    return {
        "bigarrays sharded": ba(spec),
        "TensorStore sharded": tensorstore,
        "bigarrays chunk files": ba(None),
        "CloudVolume chunk files": cloudvolume,
    }


def stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "info")


def compress_limit(block: np.ndarray, repeats: int) -> float:
    """libdeflate level 6 over every chunk, single-threaded, divided by the cores."""
    chunks = [
        np.asfortranarray(block[x : x + CHUNKS[0], y : y + CHUNKS[1], z : z + CHUNKS[2]])
        for z in range(0, block.shape[2], CHUNKS[2])
        for y in range(0, block.shape[1], CHUNKS[1])
        for x in range(0, block.shape[0], CHUNKS[0])
    ]

    def compress() -> None:
        for c in chunks:
            deflate.gzip_compress(c.tobytes(order="F"), 6)

    return median_time(compress, repeats, warm_up=False) / CORES


def main() -> None:
    scale = bench_scale(SCALES)
    repeats = 5 if scale == "full" else 3
    session = Session()
    block = block_of(scale)
    root = DATA / f"write-{scale}"
    shutil.rmtree(root, ignore_errors=True)
    ws = writers(block, root)
    times: dict[str, list[float]] = {k: [] for k in ws}
    ratios: dict[str, float] = {}
    for i in range(repeats + 1):  # the first round is the warm-up, checked and not timed
        for name, prepare in ws.items():
            path = root / name.replace(" ", "-") / str(i)
            elapsed = clock(prepare(path))
            if i == 0:
                back = BigArray(str(path))[...]
                if not np.array_equal(back, block):
                    raise SystemExit(f"W5: {name}'s layer does not read back as written")
                ratios[name] = block.nbytes / stored_bytes(path)
            else:
                times[name].append(elapsed)
            shutil.rmtree(path)
    limit = compress_limit(block, repeats)
    session.stop()
    shutil.rmtree(root, ignore_errors=True)

    med = medians(times)
    mib = block.nbytes / 2**20
    table = [
        "| writer | median (s) | MiB/s | compression ratio | TensorStore / this |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        table.append(
            f"| {name} | {m:.3f} | {mib / m:.0f} | {ratios[name]:.3f} "
            f"| {ratio(med['TensorStore sharded'], m)} |"
        )
    shape = "×".join(map(str, block.shape))
    lines = [
        "## W5: an aligned 64 MiB gzip write",
        "",
        f"Generated by `benches/bench_write.py` (scale `{scale}`), started {session.started}; "
        f"{session.load()}. {CORES} CPUs, "
        f"{cpu_model()}, {platform.system()}; bigarrays {version('bigarrays')}, TensorStore "
        f"{version('tensorstore')}, CloudVolume {version('cloud-volume')}.",
        "",
        f"- **Data**: bench_read.py's EM-like voxels, the block {shape} (uint8, "
        f"{mib:.0f} MiB) at its centre, written whole into a new layer of that size with "
        f"{'×'.join(map(str, CHUNKS))} chunks ({math.prod(block.shape) // math.prod(CHUNKS)} "
        "chunks), on local disk (page cache).",
        "- **Writers**: TensorStore writes gzip only inside shards, so the like-for-like pair "
        "is sharded (bench_read.py's spec: identity hash, 4×4×4 chunks per shard, gzip data "
        "and indexes); bigarrays (gzip via libdeflate level 6) and CloudVolume (gzip, "
        "`parallel=1`) also write plain `.gz` chunk files. Each write goes into a fresh layer "
        "created outside the timing; every output is read back and compared first.",
        f"- **Method**: one warm-up round, then {repeats} rounds, writers round-robin, median "
        "reported. Compression ratio: 64 MiB ÷ bytes stored (shard indexes included).",
        f"- **Limit**: libdeflate level 6 compressing the chunks single-threaded ÷ {CORES} "
        f"cores: **{limit:.3f} s**.",
        "",
        *table,
        "",
        "Reproduce: `.venv/bin/python benches/bench_write.py` (part of `make bench`).",
    ]
    report = report_path(scale, root.parent / "write-RESULTS.md")
    write_section("bench_write.py", "\n".join(lines), report)
    if scale == "full":
        ours = min(med["bigarrays sharded"], med["bigarrays chunk files"])
        record_metrics(
            "bench_write.py",
            {
                "W5 TensorStore / bigarrays": med["TensorStore sharded"] / ours,
                "W5 bigarrays / limit": ours / limit,
                "W5 compression ratio bigarrays sharded / TensorStore": ratios["bigarrays sharded"]
                / ratios["TensorStore sharded"],
            },
        )
    print("\n".join(table))
    print(f"limit {limit:.3f} s; wrote {report}")


if __name__ == "__main__":
    sys.exit(main())
