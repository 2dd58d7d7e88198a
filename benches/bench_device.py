"""Scaling from 1 to 16 cores against TensorStore, on a lent many-core machine that has only
NumPy, TensorStore and a copy of the built bigarrays package (no CloudVolume, no compiler).

The data are bench_read.py's EM volume (W1: the aligned 512×512×256 cutout of the gzip
layer; TensorStore reads its own sharded gzip copy, as in bench_read.py) and bench_seg.py's
labels (W4: the whole 512×512×256 uint64 layer, raw and compressed_segmentation, the same
files for both readers), generated here with the same generators and written by bigarrays.
Each core count runs in a fresh interpreter pinned with ``sched_setaffinity``, and
TensorStore's copy concurrency is set to the same count. Results go to ``$OUT/scaling.json``
and a Markdown table on stdout; they are copied into RESULTS.md by hand, with the machine.

    PYTHONPATH=<dir with bigarrays> python benches/bench_device.py
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tensorstore as ts

# Both import only NumPy and the standard library up front: datasets.py imports the peers
# that write its cached copies (CloudVolume) where they write, which never runs here.
from common import medians, ratio, time_round_robin
from datasets import (
    CSEG_BLOCK,
    LABEL_CHUNKS,
    LABEL_SCALES,
    SCALES,
    Scale,
    generate_slab,
    label_slab,
    sharding_spec,
)

from bigarrays import BigArray

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("BENCH_DEVICE_DATA", "/tmp/bigarrays-bench"))
OUT = Path(os.environ.get("OUT", DATA))
CORE_COUNTS = (1, 2, 4, 8, 16)
REPEATS = 5
SCALE = os.environ.get("BENCH_SCALE", "full")  # "small": a quick check of the script


def generate() -> None:
    """The EM volume (gzip for bigarrays, sharded gzip for TensorStore) and the labels (raw
    and compressed_segmentation, plain files read by both)."""
    p = SCALES[SCALE]
    nx, ny, nz = p.shape
    em = BigArray.create(
        str(DATA / "em_gzip"), shape=p.shape, dtype="uint8", chunks=p.chunks,
        resolution=p.resolution, compression="gzip",
    )  # fmt: skip
    spec, shard_shape = sharding_spec(p)
    tss = ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": {"driver": "file", "path": str(DATA / "em_ts_sharded")},
            "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
            "scale_metadata": {
                "size": list(p.shape), "voxel_offset": [0, 0, 0],
                "resolution": list(p.resolution), "chunk_size": list(p.chunks),
                "encoding": "raw", "sharding": spec,
            },
        },
        create=True, delete_existing=True,
    ).result()  # fmt: skip
    for z0 in range(0, nz, shard_shape[2]):
        z1 = min(nz, z0 + shard_shape[2])
        slab = generate_slab(p, z0, z1)
        em[0:nx, 0:ny, z0:z1] = slab
        tss[:, :, z0:z1, 0].write(slab).result()
    lp = LABEL_SCALES[SCALE]
    rs = Scale(shape=lp.shape, seed=lp.seed)
    rng = np.random.default_rng(lp.seed)
    cells = math.prod(math.ceil(s / c) + 2 for s, c in zip(lp.shape, lp.cell, strict=True))
    ids = rng.integers(1, 2**63, size=cells, dtype=np.uint64)
    layers = [
        BigArray.create(
            str(DATA / name),
            shape=lp.shape,
            dtype="uint64",
            chunks=LABEL_CHUNKS,
            encoding=encoding,
            encoding_options=options,
            layer_type="segmentation",
            compression=None,
        )
        for name, encoding, options in (
            ("seg_raw", "raw", None),
            ("cseg", "compressed_segmentation", {"compressed_segmentation_block_size": CSEG_BLOCK}),
        )
    ]
    for z0 in range(0, lp.shape[2], LABEL_CHUNKS[2]):
        z1 = min(lp.shape[2], z0 + LABEL_CHUNKS[2])
        slab = label_slab(lp, rs, ids, z0, z1)
        for layer in layers:
            layer[:, :, z0:z1] = slab


def workloads() -> dict[str, tuple[str, str, tuple[slice, ...]]]:
    """Name → (bigarrays layer, TensorStore layer, box)."""
    w1 = next(w for w in SCALES[SCALE].workloads if w.name == "W1")
    box = tuple(slice(o, o + s) for o, s in zip(w1.origin, w1.size, strict=True))
    whole = tuple(slice(0, s) for s in LABEL_SCALES[SCALE].shape)
    return {
        "W1 gzip cutout": ("em_gzip", "em_ts_sharded", box),
        "W4 raw seg layer": ("seg_raw", "seg_raw", whole),
        "W4 compressed_segmentation layer": ("cseg", "cseg", whole),
    }


def child() -> None:
    """Times both readers on the cores this process was given; prints JSON medians."""
    cores = len(os.sched_getaffinity(0))
    context = ts.Context(
        {
            "cache_pool": {"total_bytes_limit": 0},
            "data_copy_concurrency": {"limit": cores},
            "file_io_concurrency": {"limit": max(8, cores)},
        }
    )
    results: dict[str, dict[str, float]] = {}
    for name, (ours, theirs, box) in workloads().items():
        a = BigArray(str(DATA / ours))
        kvstore = {"driver": "file", "path": str(DATA / theirs)}
        spec = {"driver": "neuroglancer_precomputed", "kvstore": kvstore}
        t = ts.open(spec, read=True, context=context).result()
        readers = {
            "bigarrays": lambda a=a, box=box: a[box],
            "TensorStore": lambda t=t, box=box: t[(*box, 0)].read(order="F").result(),
        }
        first = {k: r() for k, r in readers.items()}  # warm-up, and a check
        if not np.array_equal(first["bigarrays"], first["TensorStore"]):
            raise SystemExit(f"{name}: the readers disagree")
        del first
        times = time_round_robin(readers, REPEATS, collect=False, free_in_timing=True)
        results[name] = medians(times)
    print(json.dumps(results))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child()
    DATA.mkdir(parents=True, exist_ok=True)
    if not (DATA / "done").exists():
        started = time.perf_counter()
        generate()
        (DATA / "done").touch()
        print(f"data generated in {time.perf_counter() - started:.0f} s", flush=True)
    available = sorted(os.sched_getaffinity(0))
    results = {}
    for n in [c for c in CORE_COUNTS if c <= len(available)]:
        out = subprocess.run(
            [sys.executable, __file__, "--child"], check=True, capture_output=True, text=True,
            cwd=HERE, preexec_fn=lambda n=n: os.sched_setaffinity(0, available[:n]),
        ).stdout  # fmt: skip
        results[n] = json.loads(out.splitlines()[-1])
        print(n, json.dumps(results[n]), flush=True)
    machine = {
        "cpus": len(available), "platform": platform.platform(),
        "cpu": next((line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "?"),
        "tensorstore": version("tensorstore"), "numpy": np.__version__,
        "python": sys.version.split()[0],
    }  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scaling.json").write_text(json.dumps({"machine": machine, "results": results}))
    names = list(workloads())
    print(
        "| cores | "
        + " | ".join(f"{n}: bigarrays s (speed-up), TensorStore s, ratio" for n in names)
        + " |"
    )
    one = results[min(results)]
    for n, r in results.items():
        cells = [
            f"{r[k]['bigarrays']:.4f} ({ratio(one[k]['bigarrays'], r[k]['bigarrays'])}), "
            f"{r[k]['TensorStore']:.4f}, {ratio(r[k]['TensorStore'], r[k]['bigarrays'])}"
            for k in names
        ]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(json.dumps(machine))


if __name__ == "__main__":
    sys.exit(main())
