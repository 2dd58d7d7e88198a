"""Layer tools on the em layer: a whole-layer copy and a 3-level pyramid, against the peers.

- **cp**: bigarrays ``copy_to`` of CloudVolume's gzip copy into a sharded gzip layer
  (local → local; the gzip streams move into the shards as stored, each decoded once to
  check it, none re-compressed); TensorStore copying its sharded gzip copy of the same voxels into a
  new sharded gzip layer with the same spec (it cannot read local ``.gz`` chunk files);
  CloudVolume's ``transfer_to`` of its gzip copy into unsharded gzip chunks (its sharded
  writer needs whole shards per call and a separate spec, so it is not used here).
- **downsample**: three (2, 2, 1) levels by averaging. bigarrays ``downsample``;
  CloudVolume + tinybrain the way igneous does it (z slabs read with CloudVolume,
  ``tinybrain.downsample_with_averaging`` for all three levels, written with CloudVolume);
  TensorStore's ``downsample`` driver ("mean") level by level into new scales.

Every output is checked against the first reader's before timing. Writes go to fresh
directories each repetition. Ratio = best peer median / bigarrays median.

``BENCH_SCALE=small`` runs a 256×256×128 version quickly.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorstore as ts
import tinybrain
from cloudvolume import CloudVolume
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    clock,
    cpu_model,
    medians,
    ratio,
    version,
    write_section,
)
from datasets import DATA, SCALES, Dataset

from bigarrays import BigArray

REPEATS = {"full": 3, "small": 3}
LEVELS, FACTOR = 3, (2, 2, 1)


def fresh(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    return path


# -- cp ----------------------------------------------------------------------------------------


def cp_bigarrays(data: Dataset, out: Path) -> Callable[[], None]:
    # The transcode: CloudVolume's gzip chunk files → a sharded gzip layer with the
    # same sharding spec TensorStore writes.
    return lambda: BigArray(data.cv_gzip).copy_to(str(out), sharding=data.sharding)


def cp_cloudvolume(data: Dataset, out: Path) -> Callable[[], None]:
    def run() -> None:
        cv = CloudVolume(f"file://{data.cv_gzip}", progress=False, parallel=1)
        cv.transfer_to(f"file://{out}", cv.bounds, compress="gzip")

    return run


def cp_tensorstore(data: Dataset, out: Path) -> Callable[[], None]:
    def run() -> None:
        ctx = ts.Context(TS_CONTEXT)
        src = ts.open(
            {"driver": "neuroglancer_precomputed", "kvstore": f"file://{data.ts_sharded}/"},
            context=ctx,
        ).result()
        spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": f"file://{out}/",
            "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
            "scale_metadata": {
                "size": list(data.p.shape),
                "resolution": list(data.p.resolution),
                "chunk_size": list(data.p.chunks),
                "encoding": "raw",
                "sharding": data.sharding,
            },
        }
        dst = ts.open(spec, create=True, context=ctx).result()
        dst.write(src).result()

    return run


def cp_result(path: Path, kind: str) -> np.ndarray:
    if kind == "tensorstore":
        return (
            ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}/"})
            .result()[..., 0]
            .read()
            .result()
        )
    a = BigArray(path)
    return a[a.bounds]


# -- downsample --------------------------------------------------------------------------------


def pyramid_base(data: Dataset, out: Path) -> None:
    """A layer directory whose scale 0 is the gzip copy's (linked, not copied)."""
    out.mkdir(parents=True)
    info = json.loads((data.cv_gzip / "info").read_text())
    (out / "info").write_text(json.dumps(info))
    key = info["scales"][0]["key"]
    (out / key).symlink_to(data.cv_gzip / key)


def ds_bigarrays(compression: str | None) -> Callable[[Dataset, Path], Callable[[], None]]:
    """bigarrays' pyramid, writing gzip chunks (its default, as CloudVolume) or raw ones (as
    TensorStore's downsample driver)."""

    def make(data: Dataset, out: Path) -> Callable[[], None]:
        def run() -> None:
            pyramid_base(data, out)
            BigArray(out, compression=compression).downsample(FACTOR, mips=LEVELS, method="average")

        return run

    return make


def ds_cloudvolume(data: Dataset, out: Path) -> Callable[[], None]:
    def run() -> None:
        pyramid_base(data, out)
        cv = CloudVolume(f"file://{out}", progress=False, parallel=1)
        for level in range(1, LEVELS + 1):
            cv.add_scale([f**level for f in FACTOR])
        cv.commit_info()
        outs = [CloudVolume(f"file://{out}", mip=m, progress=False) for m in range(LEVELS + 1)]
        nx, ny, nz = data.p.shape
        step = data.p.chunks[2]  # z slabs of one chunk row, all x and y, like igneous
        for z0 in range(0, nz, step):
            slab = outs[0][0:nx, 0:ny, z0 : z0 + step]
            mips = tinybrain.downsample_with_averaging(slab, FACTOR, num_mips=LEVELS)
            for m, img in enumerate(mips, start=1):
                sx, sy = img.shape[:2]
                outs[m][0:sx, 0:sy, z0 : z0 + img.shape[2]] = img

    return run


def ds_tensorstore(data: Dataset, out: Path) -> Callable[[], None]:
    def run() -> None:
        ctx = ts.Context(TS_CONTEXT)
        src = ts.open(
            {"driver": "neuroglancer_precomputed", "kvstore": f"file://{data.ts_sharded}/"},
            context=ctx,
        ).result()
        for level in range(1, LEVELS + 1):
            down = ts.downsample(src, [*FACTOR, 1], "mean")
            spec = {
                "driver": "neuroglancer_precomputed",
                "kvstore": f"file://{out}/",
                "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
                "scale_metadata": {
                    "size": list(down.shape[:3]),
                    "resolution": [
                        r * f**level for r, f in zip(data.p.resolution, FACTOR, strict=True)
                    ],
                    "chunk_size": list(data.p.chunks),
                    "encoding": "raw",
                },
            }
            dst = ts.open(spec, create=True, context=ctx).result()
            dst.write(down).result()
            src = dst

    return run


def ds_result(path: Path, kind: str, level: int) -> np.ndarray:
    if kind == "tensorstore":
        # TensorStore's output starts empty, so its level L is its scale L - 1.
        spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": f"file://{path}/",
            "scale_index": level - 1,
        }
        return ts.open(spec).result()[..., 0].read().result()
    a = BigArray(path, mip=level)
    return a[a.bounds]


# -- driver ------------------------------------------------------------------------------------

SCALE_NAME = bench_scale(SCALES)
SCALE = SCALES[SCALE_NAME]


def main() -> None:
    scale_name = SCALE_NAME
    session = Session()
    data = Dataset(DATA / scale_name, SCALE)
    data.ensure()
    truth = data.truth()
    work = Path(tempfile.mkdtemp(prefix="bench-tools-", dir=DATA))
    workloads = {
        "cp": {
            "bigarrays": cp_bigarrays,
            "cloudvolume": cp_cloudvolume,
            "tensorstore": cp_tensorstore,
        },
        "downsample, gzip chunks": {
            "bigarrays": ds_bigarrays("gzip"),
            "cloudvolume": ds_cloudvolume,
        },
        "downsample, raw chunks": {
            "bigarrays": ds_bigarrays(None),
            "tensorstore": ds_tensorstore,
        },
    }
    times: dict[str, dict[str, list[float]]] = {}
    notes: list[str] = []
    try:
        for wname, makers in workloads.items():
            times[wname] = {k: [] for k in makers}
            for rep in range(REPEATS[scale_name]):
                for kind, make in makers.items():
                    out = fresh(work, f"{wname}-{kind}")
                    times[wname][kind].append(clock(make(data, out), collect=False))
                    if rep == 0:
                        notes += verify(wname, kind, out, truth)
            meds = ", ".join(f"{k} {v:.2f}s" for k, v in medians(times[wname]).items())
            print(f"{wname}: {meds}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = report(times, notes, scale_name, session)
    if scale_name == "full":
        write_section("bench_tools.py", section)
    print(section)


def verify(wname: str, kind: str, out: Path, truth: np.ndarray) -> list[str]:
    """Checks one output: the copy exactly; pyramids against bigarrays' own levels."""
    if wname == "cp":
        got = cp_result(out, kind)
        if not np.array_equal(got, truth):
            raise SystemExit(f"cp by {kind} differs from the source")
        return []
    notes = []
    for level in range(1, LEVELS + 1):
        got = ds_result(out, kind, level)
        ref = np.asarray(truth, dtype=np.float64)
        for _ in range(level):  # the exact 2x2x1 mean, level by level, for comparison only
            nx, ny = ref.shape[0] // 2 * 2, ref.shape[1] // 2 * 2
            ref = (
                ref[:nx:2, :ny:2] / 4
                + ref[1:nx:2, :ny:2] / 4
                + ref[:nx:2, 1:ny:2] / 4
                + ref[1:nx:2, 1:ny:2] / 4
            )
        diff = np.abs(got[: ref.shape[0], : ref.shape[1]].astype(np.float64) - ref).max()
        if diff > level + 1:
            raise SystemExit(f"downsample by {kind}: level {level} is off by {diff}")
        notes.append(f"{kind} level {level}: max |error| vs the exact mean {diff:.2f}")
    return notes


def report(times, notes, scale_name, session: Session) -> str:
    p = SCALE
    lines = [
        "## Layer tools: cp and downsample",
        "",
        f"Generated by `benches/bench_tools.py` (scale `{scale_name}`), started {session.started}; "
        f"{session.load()}. "
        f"{os.cpu_count()} CPUs, {cpu_model()}; bigarrays {version('bigarrays')}, CloudVolume "
        f"{version('cloud-volume')}, TensorStore {version('tensorstore')}, tinybrain "
        f"{version('tinybrain')}. Data: bench_read.py's uint8 em layer "
        f"{'×'.join(map(str, p.shape))}, chunks {'×'.join(map(str, p.chunks))}. Median of "
        f"{REPEATS[scale_name]} runs, each writing into a fresh directory.",
        "",
        "- **cp**: the whole layer, local → local. bigarrays reads CloudVolume's gzip copy and "
        "writes a sharded gzip layer (TensorStore's spec), moving each chunk's gzip stream "
        "into its shard as stored (decoded once to check it, not re-compressed: "
        "`copy_stored_from`); TensorStore reads its sharded gzip "
        "copy and writes a new sharded gzip layer; CloudVolume (`transfer_to`, `parallel=1`) "
        "copies its gzip chunk files into unsharded gzip chunks (it may move the files "
        "without decoding them).",
        "- **downsample**: 3 levels of (2, 2, 1) averaging from scale 0. CloudVolume + "
        "tinybrain is igneous's recipe (slabs of one chunk in z, all three levels per slab), "
        "writing gzip chunks; TensorStore's `downsample` driver writes raw chunks level by "
        "level. bigarrays runs both ways: gzip chunks (its default) against CloudVolume, "
        "raw chunks (`compression=None`) against TensorStore.",
        "",
        "| workload | bigarrays s | CloudVolume s | TensorStore s | best peer / bigarrays | "
        "TensorStore / bigarrays |",
        "|---|---|---|---|---|---|",
    ]
    for wname, t in times.items():
        med = medians(t)
        best = min(v for k, v in med.items() if k != "bigarrays")
        cells = [f"{med[k]:.2f}" if k in med else "-" for k in ("cloudvolume", "tensorstore")]
        vs_ts = ratio(med["tensorstore"], med["bigarrays"]) if "tensorstore" in med else "-"
        lines.append(
            f"| {wname} | {med['bigarrays']:.2f} | {' | '.join(cells)} | "
            f"**{ratio(best, med['bigarrays'])}** | {vs_ts} |"
        )
    lines += ["", "Pyramid accuracy (checked before timing):", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
