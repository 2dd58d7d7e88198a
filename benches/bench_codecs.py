"""Codec benchmark: jpeg and compressed_segmentation cutouts, bigarrays vs TensorStore vs
CloudVolume, all reading the same files in one run.

Run from the repository root (``make bench`` does this after the other benches)::

    .venv/bin/python benches/bench_codecs.py

and ``BENCH_SCALE=small`` for a quick end-to-end check on 128×128×128 layers.

* a uint8 ``jpeg`` layer (1 channel): bench_read.py's EM-like voxels, written by CloudVolume
  (quality 85, its default);
* a uint64 ``compressed_segmentation`` layer (block 8×8×8): supervoxel-like labels (a few
  thousand regions: a grid of cells whose borders a smooth displacement field bends, each
  with a random 64-bit id), written by CloudVolume.

Both with 64³ chunks and no transport compression (``compress=False``), so that TensorStore,
which cannot read CloudVolume's local ``.gz`` files, reads the very same files. Workloads: the
whole layer (aligned) and an unaligned cutout. Every reader's output is first checked against
the others (jpeg: bit-exact with CloudVolume, the same libjpeg-turbo decode) and against the
generated labels. The data is cached under ``benches/data/codecs-*`` (gitignored).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorstore as ts
from bench_read import Scale as ReadScale
from bench_read import generate_slab, smooth_field
from cloudvolume import CloudVolume
from common import TS_CONTEXT, cpu_model, cv_file, ts_file_spec, version, write_section

from bigarrays import BigArray

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GENERATOR_VERSION = 1
CHUNKS = (64, 64, 64)
CSEG_BLOCK = (8, 8, 8)


@dataclass(frozen=True)
class Params:
    shape: tuple[int, int, int]
    cell: tuple[int, int, int]  # label cell size before bending
    bend: float  # displacement amplitude (voxels) of the label borders
    unaligned: tuple[tuple[int, int, int], tuple[int, int, int]]  # origin, size
    repeats: int
    seed: int = 20240611


SCALES = {
    "full": Params((512, 512, 256), (24, 24, 12), 6.0, ((37, 59, 13), (400, 400, 200)), 5),
    "small": Params((128, 128, 128), (16, 16, 8), 4.0, ((17, 9, 5), (100, 90, 70)), 3),
}


def label_slab(p: Params, read_scale: ReadScale, ids: np.ndarray, z0: int, z1: int):
    """Labels of planes z0..z1: the index of the (bent) cell each voxel falls in, mapped to
    its random 64-bit id."""
    nx, ny, _ = p.shape
    dx = smooth_field(read_scale, 10, 31, z0, z1) * p.bend
    dy = smooth_field(read_scale, 11, 31, z0, z1) * p.bend
    x = np.arange(nx, dtype=np.float32)[:, None, None] + dx
    y = np.arange(ny, dtype=np.float32)[None, :, None] + dy
    z = np.arange(z0, z1, dtype=np.float32)[None, None, :]
    gx, gy, gz = (math.ceil(s / c) + 2 for s, c in zip(p.shape, p.cell, strict=True))
    cx = np.clip(np.floor(x / p.cell[0]).astype(np.int64) + 1, 0, gx - 1)
    cy = np.clip(np.floor(y / p.cell[1]).astype(np.int64) + 1, 0, gy - 1)
    cz = np.broadcast_to(np.floor(z / p.cell[2]).astype(np.int64) + 1, cx.shape)
    return np.asfortranarray(ids[(cz * gy + cy) * gx + cx])


class Data:
    def __init__(self, root: Path, p: Params) -> None:
        self.root, self.p = root, p
        self.jpeg, self.cseg = root / "jpeg", root / "cseg"
        self.labels_path = root / "labels.npy"
        self.stamp_path = root / "stamp.json"

    def stamp(self) -> dict:
        return json.loads(json.dumps({"v": GENERATOR_VERSION, **self.p.__dict__}))

    def ensure(self) -> None:
        if self.stamp_path.exists() and json.loads(self.stamp_path.read_text()) == self.stamp():
            print(f"data: reusing {self.root}")
            return
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        t = time.perf_counter()
        self._generate()
        self.stamp_path.write_text(json.dumps(self.stamp()) + "\n")
        print(f"data: generated in {time.perf_counter() - t:.0f} s")

    def _generate(self) -> None:
        p = self.p
        nx, ny, nz = p.shape
        rs = ReadScale(shape=p.shape, seed=p.seed)
        rng = np.random.default_rng(p.seed)
        cells = math.prod(math.ceil(s / c) + 2 for s, c in zip(p.shape, p.cell, strict=True))
        ids = rng.integers(1, 2**63, size=cells, dtype=np.uint64)
        labels = np.lib.format.open_memmap(
            self.labels_path, mode="w+", dtype=np.uint64, shape=p.shape, fortran_order=True
        )
        vols = {}
        for path, dtype, encoding in (
            (self.jpeg, "uint8", "jpeg"),
            (self.cseg, "uint64", "compressed_segmentation"),
        ):
            info = CloudVolume.create_new_info(
                num_channels=1,
                layer_type="image" if encoding == "jpeg" else "segmentation",
                data_type=dtype,
                encoding=encoding,
                resolution=[4, 4, 40],
                voxel_offset=[0, 0, 0],
                chunk_size=list(CHUNKS),
                volume_size=list(p.shape),
                compressed_segmentation_block_size=list(CSEG_BLOCK),
            )
            vol = CloudVolume(
                f"file://{path}", info=info, compress=False, progress=False, parallel=1
            )
            vol.commit_info()
            vols[encoding] = vol
        for z0 in range(0, nz, CHUNKS[2]):
            z1 = min(nz, z0 + CHUNKS[2])
            vols["jpeg"][0:nx, 0:ny, z0:z1] = generate_slab(rs, z0, z1)
            slab = label_slab(p, rs, ids, z0, z1)
            labels[:, :, z0:z1] = slab
            vols["compressed_segmentation"][0:nx, 0:ny, z0:z1] = slab
            print(f"data: planes {z0}..{z1} of {nz}", end="\r", flush=True)
        print()
        labels.flush()

    def labels(self) -> np.ndarray:
        return np.load(self.labels_path, mmap_mode="r")

    def ratio(self, layer: str, itemsize: int) -> float:
        files = [f for f in (self.root / layer).rglob("*-*_*-*_*-*") if f.is_file()]
        return math.prod(self.p.shape) * itemsize / sum(f.stat().st_size for f in files)


def readers(path: Path) -> dict:
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
        "TensorStore": lambda s: tss[(*s, 0)].read(order="F").result(),
    }


def verify(name: str, rs: dict, box, expected: np.ndarray | None) -> None:
    """All readers agree (and match ``expected`` where the voxels are known exactly)."""
    outs = {k: np.asarray(read(box)) for k, read in rs.items()}
    ref = outs["CloudVolume"] if expected is None else expected
    for k, got in outs.items():
        if got.shape != ref.shape or got.dtype != ref.dtype or not np.array_equal(got, ref):
            bad = np.count_nonzero(got != ref) if got.shape == ref.shape else "shape"
            raise SystemExit(f"{name}: {k} differs from the reference ({bad} voxels)")


def time_all(rs: dict, box, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in rs}
    for _ in range(repeats):
        for k, read in rs.items():
            gc.collect()
            t = time.perf_counter()
            out = read(box)
            times[k].append(time.perf_counter() - t)
            del out
    return times


def main() -> None:
    scale = os.environ.get("BENCH_SCALE", "full")
    if scale not in SCALES:
        raise SystemExit(f"BENCH_SCALE must be one of {sorted(SCALES)}, got {scale!r}")
    p = SCALES[scale]
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load0 = os.getloadavg()[0]
    data = Data(DATA / f"codecs-{scale}", p)
    data.ensure()
    labels = data.labels()
    whole = tuple(slice(0, n) for n in p.shape)
    (o, s) = p.unaligned
    unaligned = tuple(slice(a, a + b) for a, b in zip(o, s, strict=True))
    rows = []
    for layer, path, itemsize in (("jpeg uint8", data.jpeg, 1), ("cseg uint64", data.cseg, 8)):
        rs = readers(path)
        for wname, box in (("whole layer, aligned", whole), ("unaligned", unaligned)):
            size = "×".join(str(b.stop - b.start) for b in box)
            origin = tuple(b.start for b in box)
            label = f"{layer}: {wname} {size} @ {origin}"
            expected = np.asarray(labels[box]) if layer.startswith("cseg") else None
            verify(label, rs, box, expected)
            times = time_all(rs, box, p.repeats)
            meds = {k: statistics.median(v) for k, v in times.items()}
            mib = math.prod(b.stop - b.start for b in box) * itemsize / 2**20
            rows.append((label, meds, mib))
            print(label, {k: round(v, 4) for k, v in meds.items()}, flush=True)
    load1 = os.getloadavg()[0]
    table = [
        "| workload | bigarrays (s) | TensorStore (s) | CloudVolume (s) | best peer / bigarrays "
        "| bigarrays MiB/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, m, mib in rows:
        peer = min(m["TensorStore"], m["CloudVolume"])
        who = "TensorStore" if m["TensorStore"] <= m["CloudVolume"] else "CloudVolume"
        table.append(
            f"| {label} | {m['bigarrays']:.4f} | {m['TensorStore']:.4f} | {m['CloudVolume']:.4f} "
            f"| {peer / m['bigarrays']:.2f}× (vs {who}) | {mib / m['bigarrays']:.0f} |"
        )
    shape = "×".join(map(str, p.shape))
    lines = [
        "## Codecs: jpeg and compressed_segmentation",
        "",
        f"Generated by `benches/bench_codecs.py` (scale `{scale}`), started {started}; load "
        f"average (1 min) {load0:.2f} at start, {load1:.2f} at end. {os.cpu_count()} CPUs, "
        f"{cpu_model()}, {platform.system()}; Python {platform.python_version()}, bigarrays "
        f"{version('bigarrays')}, TensorStore {version('tensorstore')}, CloudVolume "
        f"{version('cloud-volume')} (simplejpeg {version('simplejpeg')}, "
        f"compressed-segmentation {version('compressed-segmentation')}).",
        "",
        f"- **Data**: two layers {shape}, chunks {'×'.join(map(str, CHUNKS))}, written by "
        "CloudVolume with `compress=False` so all three readers read the same files. "
        f"`jpeg`: uint8, bench_read.py's EM-like voxels, quality 85 (ratio "
        f"{data.ratio('jpeg', 1):.1f}). `compressed_segmentation`: uint64, block "
        f"{'×'.join(map(str, CSEG_BLOCK))}, supervoxel-like labels: cells of "
        f"{'×'.join(map(str, p.cell))} voxels whose borders a smooth random displacement "
        f"(standard deviation {p.bend:g} voxels) bends, each with a random 64-bit id "
        f"({len(np.unique(labels[:, :, : CHUNKS[2]]))} distinct labels in the first 64 planes; "
        f"ratio {data.ratio('cseg', 8):.1f}).",
        "- **Method**: handles opened once, outside the timing; every reader's output checked "
        "first (jpeg: all three equal to CloudVolume's decode, bit for bit; labels: equal to "
        "the generated ones), which is also the warm-up; then timed round-robin "
        f"{p.repeats} times, median reported. Warm page cache, no chunk caches (CloudVolume "
        "`parallel=1, cache=False, lru_bytes=0`; TensorStore cache pool 0, `order='F'`, "
        "2 copy threads).",
        "",
        "Ratio = best peer median / bigarrays median; > 1 means bigarrays is faster.",
        "",
        *table,
        "",
        "Reproduce: `.venv/bin/python benches/bench_codecs.py` (part of `make bench`).",
    ]
    report = HERE / "RESULTS.md" if scale == "full" else data.root / "RESULTS.md"
    write_section("bench_codecs.py", "\n".join(lines), report)
    print("\n".join(table))
    print(f"wrote {report}")


if __name__ == "__main__":
    sys.exit(main())
