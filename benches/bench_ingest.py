"""W-ingest: a stack of 2D TIFF slices to sharded gzip Precomputed with 3 mips, bigarrays'
``ingest`` against CloudVolume + tinybrain done the way their READMEs show, with each tool's
time and peak memory.

Run from the repository root::

    .venv/bin/python benches/bench_ingest.py

and ``BENCH_SCALE=small`` for a quick check. The slices are EM-like uint8 planes
(datasets.py's generator), one uncompressed TIFF per z: 2048×2048×384 (1.5 GiB) at full
scale, 1024×1024×128 at ``BENCH_SCALE=medium``, 512×512×64 at small scale.

CloudVolume + tinybrain, as their READMEs show it: every slice read into one NumPy array
(tifffile, the same reader bigarrays uses), ``CloudVolume.create_new_info`` with the same
chunks and the same sharding spec bigarrays picks (so both write the same shards), the base
written shard by shard (CloudVolume writes a sharded scale one whole shard per call), then
``tinybrain.downsample_with_averaging(img, (2, 2, 1), num_mips=3)`` and each level written
to a scale from ``add_scale`` (unsharded gzip, as bigarrays' pyramid levels). Each tool runs
in a fresh interpreter; its peak memory is how far the resident set rose above the level
after imports (VmHWM). Each output's size (bytes of its files) is reported beside the times,
so that speed bought with gzip level shows its cost: bigarrays ingests at its default gzip
level (``bigarrays._ingest.GZIP_LEVEL``), CloudVolume compresses at its own default (9).
"""

from __future__ import annotations

import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    Session,
    bench_scale,
    cpu_model,
    ratio,
    record_metrics,
    report_path,
    version,
    write_section,
)
from datasets import DATA, Scale, generate_slab

HERE = Path(__file__).resolve().parent
SHAPES = {"full": (2048, 2048, 384), "medium": (1024, 1024, 128), "small": (512, 512, 64)}
CHUNKS = (128, 128, 32)
MIPS = 3
RESOLUTION = (4, 4, 40)


def ensure_slices(scale: str) -> Path:
    """The TIFF slices (made once, kept under benches/data)."""
    shape = SHAPES[scale]
    root = DATA / f"ingest-{scale}"
    done = root / "complete"
    if done.exists():
        return root / "slices"
    import tifffile

    shutil.rmtree(root, ignore_errors=True)
    (root / "slices").mkdir(parents=True)
    p = Scale(shape=shape)
    for z0 in range(0, shape[2], 32):
        slab = generate_slab(p, z0, min(z0 + 32, shape[2]))
        for k in range(slab.shape[2]):
            tifffile.imwrite(root / "slices" / f"z{z0 + k:05d}.tif", slab[:, :, k].T)
    done.touch()
    return root / "slices"


def run_bigarrays(src: str, dst: str) -> None:
    import bigarrays

    bigarrays.ingest(src, dst, chunks=CHUNKS, sharding=True, mips=MIPS, resolution=RESOLUTION)


def run_cloudvolume(src: str, dst: str) -> None:
    import tifffile
    import tinybrain
    from cloudvolume import CloudVolume
    from cloudvolume.lib import Bbox

    from bigarrays._ingest import shard_spec

    files = sorted(Path(src).iterdir())
    first = tifffile.imread(files[0])
    img = np.zeros((first.shape[1], first.shape[0], len(files)), np.uint8, order="F")
    for z, f in enumerate(files):
        img[:, :, z] = tifffile.imread(f).T
    shape = img.shape
    spec, _ = shard_spec(shape, CHUNKS, 1, "raw")
    info = CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=list(RESOLUTION),
        voxel_offset=[0, 0, 0],
        chunk_size=list(CHUNKS),
        volume_size=list(shape),
    )
    info["scales"][0]["sharding"] = spec
    # compress=False: a shard file is not gzipped whole (its data_encoding compresses chunks).
    vol = CloudVolume(f"file://{dst}", info=info, progress=False, compress=False)
    vol.commit_info()
    # One call per shard: CloudVolume writes a sharded scale one whole shard at a time.
    grid = [math.ceil(s / c) for s, c in zip(shape, CHUNKS, strict=True)]
    k = spec["preshift_bits"] + spec["minishard_bits"]
    from bigarrays._ingest import _morton_axes

    per = [2 ** _morton_axes(grid)[:k].count(a) * c for a, c in enumerate(CHUNKS)]
    for z in range(0, shape[2], per[2]):
        for y in range(0, shape[1], per[1]):
            for x in range(0, shape[0], per[0]):
                box = Bbox((x, y, z), np.minimum((x + per[0], y + per[1], z + per[2]), shape))
                vol[box.to_slices()] = img[box.to_slices()]
    pyramid = tinybrain.downsample_with_averaging(img, (2, 2, 1), num_mips=MIPS)
    for mip in range(1, MIPS + 1):
        vol.add_scale((2**mip, 2**mip, 1), chunk_size=[64, 64, 32])
    vol.commit_info()
    for mip, level in enumerate(pyramid, 1):
        out = CloudVolume(f"file://{dst}", mip=mip, progress=False, compress="gzip")
        out[:, :, :] = level


def child(tool: str, src: str, dst: str) -> None:
    """In a fresh interpreter: the tool's seconds, peak memory above the post-import
    baseline and CPU seconds, printed as three numbers."""
    import cloudvolume  # noqa: F401
    import tifffile  # noqa: F401
    import tinybrain  # noqa: F401

    import bigarrays  # noqa: F401

    def kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(field)

    def cpu() -> float:
        # Every thread's (the engine's included): on a shared machine CPU seconds vary far
        # less than wall time.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    base = kib("VmRSS")
    t, c = time.perf_counter(), cpu()
    (run_bigarrays if tool == "bigarrays" else run_cloudvolume)(src, dst)
    print(time.perf_counter() - t, (kib("VmHWM") - base) * 1024, cpu() - c)


def measure(tool: str, src: Path, dst: Path) -> tuple[float, int, float, int]:
    """Seconds, peak memory, CPU seconds and the output's bytes on disk."""
    shutil.rmtree(dst, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", tool, str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    ).stdout.split()
    return float(out[-3]), int(out[-2]), float(out[-1]), stored_bytes(dst)


def stored_bytes(root: Path) -> int:
    """The sizes of every file under ``root`` (chunks, shards, info)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def check_same(a: Path, b: Path) -> None:
    from bigarrays import BigArray

    for mip in range(MIPS + 1):
        x, y = BigArray(str(a), mip=mip), BigArray(str(b), mip=mip)
        # The base bit for bit; level k within k: bigarrays' average rounds half up,
        # tinybrain's truncates, and each level is computed from the one above.
        # Slab by slab in z, in int16: the whole stack in int64 would be 8 times its size.
        bx, by, bz = x.bounds
        for z in range(bz.start, bz.stop, CHUNKS[2]):
            box = (bx, by, slice(z, min(z + CHUNKS[2], bz.stop)))
            diff = np.abs(x[box].astype(np.int16) - y[box].astype(np.int16)).max()
            assert diff <= mip, f"mip {mip} differs by {diff} in z {z}"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(*sys.argv[2:5])
    scale = bench_scale(SHAPES)
    session = Session()
    src = ensure_slices(scale)
    root = src.parent
    shape = SHAPES[scale]
    nbytes = math.prod(shape)
    runs = {tool: measure(tool, src, root / tool) for tool in ("bigarrays", "cloudvolume")}
    check_same(root / "bigarrays", root / "cloudvolume")
    session.stop()
    ours, theirs = runs["bigarrays"], runs["cloudvolume"]
    lines = [
        "## Ingest: TIFF slices to sharded gzip Precomputed with 3 mips (bench_ingest.py)",
        "",
        f"{'×'.join(map(str, shape))} uint8 ({nbytes / 2**30:.2f} GiB) in {shape[2]} TIFF "
        f"slices, chunks {'×'.join(map(str, CHUNKS))}, same shards; {session.load()}; "
        f"{cpu_model()}; CloudVolume {version('cloud-volume')}, tinybrain "
        f"{version('tinybrain')}. Both results compared: the base bit for bit, level k "
        "within k (bigarrays rounds averages half up, tinybrain truncates).",
        "",
        "| tool | seconds | CPU seconds | MB/s | peak memory (MB) | peak ÷ stack | output (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, (seconds, peak, cpu, size) in runs.items():
        lines.append(
            f"| {tool} | {seconds:.2f} | {cpu:.2f} | {nbytes / seconds / 1e6:.0f} | "
            f"{peak / 1e6:.0f} | {peak / nbytes:.2f} | {size / 1e6:.1f} |"
        )
    from bigarrays._ingest import GZIP_LEVEL

    lines += [
        "",
        f"bigarrays is {ratio(theirs[0], ours[0])} faster than CloudVolume + tinybrain, with "
        f"{ours[1] / theirs[1]:.2f}× its peak memory and {ours[2] / theirs[2]:.2f}× its CPU "
        f"time; its output (gzip level {GZIP_LEVEL}, CloudVolume's 9) is "
        f"{ours[3] / theirs[3]:.3f}× the size of CloudVolume's.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("bench_ingest.py", text, report_path(scale, root / "RESULTS.md"))
    if scale == "full":
        record_metrics(
            "bench_ingest.py",
            {
                "ingest time ratio": theirs[0] / ours[0],
                "ingest peak ratio": ours[1] / theirs[1],
                "ingest size ratio": ours[3] / theirs[3],
            },
        )


if __name__ == "__main__":
    main()
