"""HDF5 read benchmark: bigarrays against h5py on the same files, in one run.

Run from the repository root::

    .venv/bin/python benches/bench_hdf5.py

(``BENCH_SCALE=small`` for a quick check on 256x256x128). The voxels are bench_read.py's
EM-like uint8 volume (same generator, same seed), stored twice:

* ``h5s``: a BigArrays.jl H5s directory, 512x512x128 blocks, 128x128x64 HDF5 chunks, the
  Blosc filter (32001, blosclz level 5, byte shuffle) as BigArrays.jl writes;
* ``h5s-gzip``: the same blocks with shuffle + deflate level 4 (BigArrays.jl's older data);
* ``file``: one HDF5 file, dataset ``img``, 128x128x64 chunks, gzip level 4 (h5py's default).

Workloads are bench_read.py's W1 (aligned 512x512x256 at (256,256,128)) and W2 (unaligned
500x500x250 at (37,59,13)). h5py reads the single file with one hyperslab read; for the H5s
directory it reads each block's hyperslab and places it, which is what a user of h5py has
to write. Both return (x, y, z) arrays; h5py's are transposed views, not copies. Neither
caches decoded chunks across reads: bigarrays has no chunk cache, and h5py's files are
opened with ``rdcc_nbytes=0``. With h5py's default chunk cache a repeated read of one H5s
block's share of W1 (8 chunks) was served from that cache (measured 3x faster on the second
read), which times the cache, not the reader.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from common import (
    Session,
    bench_scale,
    cpu_model,
    medians,
    ratio,
    report_path,
    time_round_robin,
    version,
    write_section,
)
from datasets import SCALES, Scale, Workload, generate_slab

from bigarrays import BigArray

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "hdf5"  # gitignored
BLOCK = (512, 512, 128)
CHUNK = (128, 128, 64)
GENERATOR_VERSION = 1


def stamp(p: Scale) -> dict:
    return {"hdf5_bench": GENERATOR_VERSION, "block": BLOCK, "chunk": CHUNK, **p.stamp()}


def block_name(g: tuple[int, int, int]) -> str:
    return (
        "block_"
        + "_".join(f"{gi * b + 1}-{(gi + 1) * b}" for gi, b in zip(g, BLOCK, strict=True))
        + ".h5"
    )


def ensure(root: Path, p: Scale) -> None:
    """Writes the H5s directory and the single file unless the stamp matches."""
    want = json.dumps(stamp(p), sort_keys=True)
    stamp_file = root / "stamp.json"
    if stamp_file.exists() and stamp_file.read_text() == want:
        return
    root.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = p.shape
    h5s = root / "h5s"
    h5s.mkdir(exist_ok=True)
    (h5s / "config.json").write_text(
        json.dumps(
            {
                "h5FilePrefix": "block_",
                "dataType": "UInt8",
                "globalOffset": [0, 0, 0],
                "blockSize": list(BLOCK),
                "chunkSize": list(CHUNK),
                "compression": "blosc",
            }
        )
    )
    blosc = hdf5plugin.Blosc(cname="blosclz", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    hchunk = tuple(reversed(CHUNK))
    with h5py.File(root / "volume.h5", "w") as single:
        img = single.create_dataset(
            "img", shape=(nz, ny, nx), dtype=np.uint8, chunks=hchunk, compression="gzip"
        )
        bz = min(BLOCK[2], nz)
        for z0 in range(0, nz, bz):
            slab = generate_slab(p, z0, min(nz, z0 + bz))  # (x, y, z) Fortran
            zyx = np.ascontiguousarray(slab.T)
            img[z0 : z0 + zyx.shape[0]] = zyx
            for gx in range(-(-nx // BLOCK[0])):
                for gy in range(-(-ny // BLOCK[1])):
                    full = np.zeros(tuple(reversed(BLOCK)), np.uint8)
                    part = zyx[
                        :, gy * BLOCK[1] : (gy + 1) * BLOCK[1], gx * BLOCK[0] : (gx + 1) * BLOCK[0]
                    ]
                    full[: part.shape[0], : part.shape[1], : part.shape[2]] = part
                    with h5py.File(h5s / block_name((gx, gy, z0 // BLOCK[2])), "w") as f:
                        f.create_dataset("img", data=full, chunks=hchunk, **blosc)
            print(f"  generated z {z0}..{z0 + zyx.shape[0]}", flush=True)
    stamp_file.write_text(want)


def ensure_gzip_blocks(root: Path) -> None:
    """The H5s blocks again, with shuffle + deflate (converted from the Blosc ones)."""
    src, dst = root / "h5s", root / "h5s-gzip"
    done = dst / "converted.json"
    want = (root / "stamp.json").read_text()
    if done.exists() and done.read_text() == want:
        return
    dst.mkdir(exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "compression": "deflate"}))
    for name in sorted(os.listdir(src)):
        if name.endswith(".h5"):
            with h5py.File(src / name, "r") as f, h5py.File(dst / name, "w") as g:
                g.create_dataset(
                    "img",
                    data=f["img"][...],
                    chunks=f["img"].chunks,
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
    done.write_text(want)


def h5py_file_reader(path: Path):
    f = h5py.File(path, "r", rdcc_nbytes=0)
    ds = f["img"]

    def read(w: Workload) -> np.ndarray:
        (x0, y0, z0), (sx, sy, sz) = w.origin, w.size
        return ds[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx].T

    return read


def h5py_h5s_reader(root: Path):
    files: dict[tuple[int, int, int], h5py.Dataset] = {}

    def read(w: Workload) -> np.ndarray:
        lo = w.origin
        hi = tuple(o + s for o, s in zip(w.origin, w.size, strict=True))
        out = np.zeros(tuple(reversed(w.size)), np.uint8)  # (z, y, x), C order
        g0 = [lo[i] // BLOCK[i] for i in range(3)]
        g1 = [-(-hi[i] // BLOCK[i]) for i in range(3)]
        for gx in range(g0[0], g1[0]):
            for gy in range(g0[1], g1[1]):
                for gz in range(g0[2], g1[2]):
                    g = (gx, gy, gz)
                    if g not in files:
                        path = root / block_name(g)
                        if not path.exists():
                            continue
                        files[g] = h5py.File(path, "r", rdcc_nbytes=0)["img"]
                    a = [max(lo[i], g[i] * BLOCK[i]) for i in range(3)]
                    b = [min(hi[i], (g[i] + 1) * BLOCK[i]) for i in range(3)]
                    src = tuple(
                        slice(a[i] - g[i] * BLOCK[i], b[i] - g[i] * BLOCK[i]) for i in (2, 1, 0)
                    )
                    dst = tuple(slice(a[i] - lo[i], b[i] - lo[i]) for i in (2, 1, 0))
                    out[dst] = files[g][src]
        return out.T

    return read


def bigarrays_reader(url: str):
    a = BigArray(url)

    def read(w: Workload) -> np.ndarray:
        return a[w.slices]

    return read


def main() -> None:
    scale_name = bench_scale(SCALES)
    p = SCALES[scale_name]
    root = DATA / scale_name
    t0 = time.perf_counter()
    ensure(root, p)
    ensure_gzip_blocks(root)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    session = Session()
    workloads = [w for w in p.workloads if w.name in ("W1", "W2")]
    stores = {
        "h5s": {
            "bigarrays": bigarrays_reader(str(root / "h5s")),
            "h5py": h5py_h5s_reader(root / "h5s"),
        },
        "h5s-gzip": {
            "bigarrays": bigarrays_reader(str(root / "h5s-gzip")),
            "h5py": h5py_h5s_reader(root / "h5s-gzip"),
        },
        "file": {
            "bigarrays": bigarrays_reader(str(root / "volume.h5")),
            "h5py": h5py_file_reader(root / "volume.h5"),
        },
    }
    rows = []
    for store, readers in stores.items():
        for w in workloads:
            results = {name: r(w) for name, r in readers.items()}  # warm-up and check
            ref = results["h5py"]
            assert np.array_equal(results["bigarrays"], ref), f"{store} {w.name} differ"
            runs = {name: lambda r=r, w=w: r(w) for name, r in readers.items()}
            times = time_round_robin(runs, p.repeats, collect=False, free_in_timing=True)
            med = medians(times)
            mb = np.prod(w.size) / 1e6
            rows.append((store, w, med, mb))
            print(
                f"{store:5} {w.name}: bigarrays {med['bigarrays'] * 1e3:.0f} ms, "
                f"h5py {med['h5py'] * 1e3:.0f} ms, ratio {ratio(med['h5py'], med['bigarrays'])}",
                flush=True,
            )
    lines = [
        "## HDF5: bigarrays vs h5py (`benches/bench_hdf5.py`)",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, h5py {version('h5py')} "
        f"(HDF5 {h5py.version.hdf5_version}), hdf5plugin {version('hdf5plugin')}, "
        f"numpy {np.__version__}. Volume uint8 {'×'.join(map(str, p.shape))} "
        f"(bench_read.py's generator), HDF5 chunks {'×'.join(map(str, CHUNK))}; "
        f"`h5s`: BigArrays.jl blocks {'×'.join(map(str, BLOCK))}, Blosc filter 32001 "
        "(blosclz 5, shuffle; it barely compresses this noisy data, so its decode is a copy); "
        "`h5s-gzip`: the same blocks with shuffle + deflate 4; `file`: one dataset, gzip "
        "level 4. h5py opens files with `rdcc_nbytes=0` (no chunk cache, as bigarrays). Median of "
        f"{p.repeats} runs after a warm-up; ratio = h5py time / bigarrays time (>1: bigarrays "
        "faster). Both readers return the same voxels (checked each run); "
        f"{session.load()}: other work (compiles) shared the 2 CPUs, so the timings are noisy; "
        "the ratios are steadier.",
        "",
        "| store | workload | bigarrays ms | h5py ms | ratio | bigarrays MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for store, w, med, mb in rows:
        lines.append(
            f"| {store} | {w.name} {'×'.join(map(str, w.size))} @ {w.origin} | "
            f"{med['bigarrays'] * 1e3:.0f} | "
            f"{med['h5py'] * 1e3:.0f} | {ratio(med['h5py'], med['bigarrays'])} | "
            f"{mb / med['bigarrays']:.0f} |"
        )
    body = "\n".join(lines)
    write_section("bench_hdf5.py", body, report_path(scale_name, root / "RESULTS.md"))
    print(body)


if __name__ == "__main__":
    main()
