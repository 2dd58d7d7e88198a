"""Codec benchmark: jpeg, compressed_segmentation, compresso, crackle and jxl cutouts,
bigarrays vs TensorStore vs CloudVolume, all reading the same files in one run.

Run from the repository root (``make bench`` does this after the other benches)::

    .venv/bin/python benches/bench_codecs.py

and ``BENCH_SCALE=small`` for a quick end-to-end check on 128×128×128 layers.

* a uint8 ``jpeg`` layer (1 channel): bench_read.py's EM-like voxels, written by CloudVolume
  (quality 85, its default);
* a uint64 ``compressed_segmentation`` layer (block 8×8×8): supervoxel-like labels (a few
  thousand regions: a grid of cells whose borders a smooth displacement field bends, each
  with a random 64-bit id), written by CloudVolume;
* uint64 ``compresso`` and ``crackle`` layers of the same labels, written by CloudVolume
  with its defaults (TensorStore reads neither, so only bigarrays and CloudVolume do);
* uint8 ``jxl`` layers of the jpeg layer's voxels, lossless and at quality 85, written by
  CloudVolume through imagecodecs (TensorStore does not read jxl either).

bigarrays' peak resident memory above its start is reported against the output's size.

Both with 64³ chunks and no transport compression (``compress=False``), so that TensorStore,
which cannot read CloudVolume's local ``.gz`` files, reads the very same files. Workloads: the
whole layer (aligned) and an unaligned cutout. Every reader's output is first checked against
the others (jpeg: bit-exact with CloudVolume, the same libjpeg-turbo decode) and against the
generated labels. The data is cached under ``benches/data/codecs-*`` (gitignored).
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

import numpy as np
import tensorstore as ts
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    cv_file,
    medians,
    report_path,
    time_round_robin,
    ts_file_spec,
    version,
    vs_best,
    write_section,
)
from datasets import CSEG_BLOCK, DATA, LABEL_CHUNKS, LABEL_SCALES, Labels, Scale, generate_slab

from bigarrays import BigArray


def compresso_layer(data: Labels, labels: np.ndarray) -> Path:
    """CloudVolume's compresso layer of the labels, without transport compression (written
    once; ``Labels.ensure`` removes it with the rest when the labels change)."""
    from cloudvolume import CloudVolume

    path = data.root / "compresso"
    if (path / "done").exists():
        return path
    nx, ny, nz = data.p.shape
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="segmentation",
        data_type="uint64",
        encoding="compresso",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        chunk_size=list(LABEL_CHUNKS),
        volume_size=list(data.p.shape),
    )
    vol = CloudVolume(f"file://{path}", info=info, compress=False, progress=False, parallel=1)
    vol.commit_info()
    for z0 in range(0, nz, LABEL_CHUNKS[2]):
        z1 = min(nz, z0 + LABEL_CHUNKS[2])
        vol[0:nx, 0:ny, z0:z1] = np.asarray(labels[:, :, z0:z1])
    (path / "done").write_text("")
    return path


def crackle_layer(data: Labels, labels: np.ndarray) -> Path:
    """CloudVolume's crackle layer of the labels (its defaults: flat labels, no markov
    model), without transport compression, written once like the compresso layer."""
    from cloudvolume import CloudVolume

    path = data.root / "crackle"
    if (path / "done").exists():
        return path
    nx, ny, nz = data.p.shape
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="segmentation", data_type="uint64", encoding="crackle",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], chunk_size=list(LABEL_CHUNKS),
        volume_size=list(data.p.shape),
    )  # fmt: skip
    vol = CloudVolume(f"file://{path}", info=info, compress=False, progress=False, parallel=1)
    vol.commit_info()
    for z0 in range(0, nz, LABEL_CHUNKS[2]):
        z1 = min(nz, z0 + LABEL_CHUNKS[2])
        vol[0:nx, 0:ny, z0:z1] = np.asarray(labels[:, :, z0:z1])
    (path / "done").write_text("")
    return path


def readers(path: Path, tensorstore: bool = True) -> dict:
    ba = BigArray(str(path))
    cv = cv_file(path)
    if not tensorstore:
        return {"bigarrays": lambda s: ba[s], "CloudVolume": lambda s: cv[s][..., 0]}
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


def jxl_layer(data: Labels, quality: int) -> Path:
    """CloudVolume's jxl layer (libjxl through imagecodecs, effort 5) of the jpeg layer's
    EM-like voxels, once per quality (100: lossless), without transport compression."""
    from cloudvolume import CloudVolume

    path = data.root / f"jxl-q{quality}"
    if (path / "done").exists():
        return path
    nx, ny, nz = data.p.shape
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="jxl",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], chunk_size=list(LABEL_CHUNKS),
        volume_size=list(data.p.shape),
    )  # fmt: skip
    info["scales"][0]["jxl_quality"] = quality
    vol = CloudVolume(f"file://{path}", info=info, compress=False, progress=False, parallel=1)
    vol.commit_info()
    rs = Scale(shape=data.p.shape, seed=data.p.seed)
    for z0 in range(0, nz, LABEL_CHUNKS[2]):
        z1 = min(nz, z0 + LABEL_CHUNKS[2])
        vol[0:nx, 0:ny, z0:z1] = generate_slab(rs, z0, z1)
    (path / "done").write_text("")
    return path


def jxl_readers(path: Path) -> dict:
    """TensorStore does not read jxl."""
    ba, cv = BigArray(str(path)), cv_file(path)
    return {"bigarrays": lambda s: ba[s], "CloudVolume": lambda s: cv[s][..., 0]}


def verify(name: str, rs: dict, box, expected: np.ndarray | None, tolerance: int = 0) -> None:
    """All readers agree (and match ``expected`` where the voxels are known exactly), within
    ``tolerance`` grey levels."""
    outs = {k: np.asarray(read(box)) for k, read in rs.items()}
    ref = outs["CloudVolume"] if expected is None else expected
    for k, got in outs.items():
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise SystemExit(f"{name}: {k} differs from the reference (shape)")
        if tolerance and np.abs(got.astype(int) - ref.astype(int)).max() <= tolerance:
            continue
        if not np.array_equal(got, ref):
            bad = np.count_nonzero(got != ref) if got.shape == ref.shape else "shape"
            raise SystemExit(f"{name}: {k} differs from the reference ({bad} voxels)")


def time_all(rs: dict, box, repeats: int, peaks: dict[str, int]) -> dict[str, list[float]]:
    """Round-robin timings of every reader reading ``box``; ``peaks`` gets each reader's peak
    memory above its start (output included) on its last run."""
    runs = {k: lambda read=read: read(box) for k, read in rs.items()}
    return time_round_robin(runs, repeats, peaks=peaks)


def main() -> None:
    scale = bench_scale(LABEL_SCALES)
    p = LABEL_SCALES[scale]
    session = Session()
    data = Labels(DATA / f"codecs-{scale}", p)
    data.ensure()
    labels = data.labels()
    whole = tuple(slice(0, n) for n in p.shape)
    (o, s) = p.unaligned
    unaligned = tuple(slice(a, a + b) for a, b in zip(o, s, strict=True))
    rows = []
    layers = [("jpeg uint8", data.jpeg, 1), ("cseg uint64", data.cseg, 8)]
    layers += [("compresso uint64", compresso_layer(data, labels), 8)]
    layers += [("crackle uint64", crackle_layer(data, labels), 8)]
    layers += [("jxl uint8 lossless", jxl_layer(data, 100), 1)]
    layers += [("jxl uint8 q85", jxl_layer(data, 85), 1)]
    for layer, path, itemsize in layers:
        if layer.startswith("jxl"):
            rs = jxl_readers(path)
        else:
            # TensorStore has no compresso or crackle decoder.
            rs = readers(path, tensorstore=not layer.startswith(("compresso", "crackle")))
        for wname, box in (("whole layer, aligned", whole), ("unaligned", unaligned)):
            size = "×".join(str(b.stop - b.start) for b in box)
            origin = tuple(b.start for b in box)
            label = f"{layer}: {wname} {size} @ {origin}"
            labelled = layer.startswith(("cseg", "compresso", "crackle"))
            expected = np.asarray(labels[box]) if labelled else None
            # Lossy jxl: libjxl (CloudVolume) dithers its 8-bit output, jxl-rs differently.
            verify(label, rs, box, expected, tolerance=1 if layer.endswith("q85") else 0)
            peaks: dict[str, int] = {}
            times = time_all(rs, box, p.repeats, peaks)
            meds = medians(times)
            mib = math.prod(b.stop - b.start for b in box) * itemsize / 2**20
            rows.append((label, meds, mib, peaks["bigarrays"] / (mib * 2**20)))
            print(label, {k: round(v, 4) for k, v in meds.items()}, flush=True)
    session.stop()
    table = [
        "| workload | bigarrays (s) | TensorStore (s) | CloudVolume (s) | best peer / bigarrays "
        "| bigarrays MiB/s | bigarrays peak ÷ output |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m, mib, peak in rows:
        peers = {k: m[k] for k in ("TensorStore", "CloudVolume") if k in m}
        tss = f"{m['TensorStore']:.4f}" if "TensorStore" in m else "—"
        table.append(
            f"| {label} | {m['bigarrays']:.4f} | {tss} | {m['CloudVolume']:.4f} "
            f"| {vs_best(peers, m['bigarrays'])} | {mib / m['bigarrays']:.0f} | {peak:.2f} |"
        )
    shape = "×".join(map(str, p.shape))
    lines = [
        "## Codecs: jpeg, compressed_segmentation, compresso, crackle and jxl",
        "",
        f"Generated by `benches/bench_codecs.py` (scale `{scale}`), started {session.started}; "
        f"{session.load()}. {os.cpu_count()} CPUs, "
        f"{cpu_model()}, {platform.system()}; Python {platform.python_version()}, bigarrays "
        f"{version('bigarrays')}, TensorStore {version('tensorstore')}, CloudVolume "
        f"{version('cloud-volume')} (simplejpeg {version('simplejpeg')}, "
        f"compressed-segmentation {version('compressed-segmentation')}, compresso "
        f"{version('compresso')}, crackle-codec {version('crackle-codec')}, imagecodecs "
        f"{version('imagecodecs')}).",
        "",
        f"- **Data**: every layer {shape}, chunks {'×'.join(map(str, LABEL_CHUNKS))}, written by "
        "CloudVolume with `compress=False` so all three readers read the same files. "
        f"`jpeg`: uint8, bench_read.py's EM-like voxels, quality 85 (ratio "
        f"{data.ratio('jpeg', 1):.1f}). `compressed_segmentation`: uint64, block "
        f"{'×'.join(map(str, CSEG_BLOCK))}, supervoxel-like labels: cells of "
        f"{'×'.join(map(str, p.cell))} voxels whose borders a smooth random displacement "
        f"(standard deviation {p.bend:g} voxels) bends, each with a random 64-bit id "
        f"({len(np.unique(labels[:, :, : LABEL_CHUNKS[2]]))} distinct labels in the first 64 "
        "planes; "
        f"ratio {data.ratio('cseg', 8):.1f}). `compresso`: the same labels, CloudVolume's "
        f"defaults (4×4×1 windows, z index; ratio {data.ratio('compresso', 8):.1f}). "
        "`crackle`: the same labels, CloudVolume's defaults (flat labels, no markov model; "
        f"ratio {data.ratio('crackle', 8):.1f}). TensorStore reads neither. `jxl`: the jpeg "
        "layer's voxels as CloudVolume writes them through imagecodecs (libjxl), lossless "
        "and at quality 85 (effort 5); the lossy one checked within one grey level of "
        "CloudVolume's decode (libjxl dithers its 8-bit output, jxl-rs differently); "
        "TensorStore does not read it.",
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
    report = report_path(scale, data.root / "RESULTS.md")
    write_section("bench_codecs.py", "\n".join(lines), report)
    print("\n".join(table))
    print(f"wrote {report}")


if __name__ == "__main__":
    sys.exit(main())
