"""Precomputed <-> Zarr copies, with chunks moved as stored bytes against decoding and
re-encoding every chunk (issue 18, "Conversion").

Run from the repository root::

    .venv/bin/python benches/bench_zconv.py

(``BENCH_SCALE=small`` for a quick check). The source is datasets.py's EM-like uint8
volume at 512×512×256 (256×256×128 small) as a gzip Precomputed layer of 128×128×64 chunks
on local disk. Each round copies it to a Zarr v3 array (``bytes`` + ``gzip``) and that array
back to a gzip Precomputed layer, twice: as ``copy_to`` does it (interior chunks moved as
their gzip streams, each inflated once to check it), and with the stored-bytes step turned
off (every chunk decoded and gzipped again, as before). Timed round-robin, medians, to the
``bench_zconv.py`` section of ``benches/RESULTS.md``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_scale, clock, cpu_model, medians, ratio, report_path, write_section
from datasets import SCALES, generate_slab

from bigarrays import BigArray, _copy

SHAPES = {"full": (512, 512, 256), "small": (256, 256, 128)}
ROUNDS = 5


def main() -> None:
    scale = bench_scale(SHAPES)
    p = replace(SCALES["small"], shape=SHAPES[scale], workloads=())
    work = Path(tempfile.mkdtemp(prefix="bench-zconv-"))
    try:
        truth = generate_slab(p, 0, p.shape[2])
        src = BigArray.create(
            str(work / "src"),
            shape=p.shape,
            dtype="uint8",
            chunks=p.chunks,
            resolution=p.resolution,
            compression="gzip",
        )
        src[src.bounds] = truth
        stored_formats = set(_copy._STORED_FORMATS)

        def round_trip(stored: bool, name: str) -> tuple[float, float]:
            """Seconds of the copy to Zarr and of the copy back."""
            _copy._STORED_FORMATS = stored_formats if stored else {"precomputed"}
            try:
                zarr_url, back_url = str(work / f"{name}-z.zarr"), str(work / f"{name}-back")
                to = clock(lambda: src.copy_to(zarr_url, format="zarr"))
                z = BigArray(zarr_url)
                return to, clock(lambda: z.copy_to(back_url))
            finally:
                _copy._STORED_FORMATS = stored_formats

        times: dict[str, list[float]] = {k: [] for k in ("to-s", "to-d", "back-s", "back-d")}
        for i in range(ROUNDS):
            for stored, tag in ((True, "s"), (False, "d")):
                to, back = round_trip(stored, f"{tag}{i}")
                times[f"to-{tag}"].append(to)
                times[f"back-{tag}"].append(back)
                if i == 0:
                    out = BigArray(str(work / f"{tag}{i}-back"))
                    assert np.array_equal(out[out.bounds], truth), "round trip not exact"
        m = medians(times)
        load = os.getloadavg()[0]
        size = "×".join(map(str, p.shape))
        mb = truth.nbytes / 1e6
        lines = [
            f"### Precomputed <-> Zarr copies, {size} uint8 EM-like, gzip, local disk",
            "",
            f"{cpu_model()}; medians of {ROUNDS} rounds (alternating); {mb:.0f} MB of voxels; "
            f"load {load:.1f} at the end (a shared machine: the ratio, from the same run, is "
            "what to compare).",
            "",
            "| copy | decode + re-encode | stored bytes | speed-up |",
            "|---|---|---|---|",
            f"| Precomputed -> Zarr | {m['to-d']:.2f} s | {m['to-s']:.2f} s | "
            f"{ratio(m['to-d'], m['to-s'])} |",
            f"| Zarr -> Precomputed | {m['back-d']:.2f} s | {m['back-s']:.2f} s | "
            f"{ratio(m['back-d'], m['back-s'])} |",
        ]
        report = report_path(scale, Path(__file__).resolve().parent / "data" / f"zconv-{scale}")
        write_section("bench_zconv.py", "\n".join(lines), report)
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
