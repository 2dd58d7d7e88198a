"""`make demo`: create a sample volume on local disk, write and read cutouts, say what happened.

Usage: python examples/demo.py DIR
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np

from bigarrays import BigArray


def main(root: str) -> None:
    url = os.path.join(root, "em")
    shutil.rmtree(url, ignore_errors=True)
    shape, chunks, offset = (512, 512, 128), (128, 128, 64), (1000, 2000, 30)
    a = BigArray.create(
        url, shape=shape, dtype="uint8", chunks=chunks, voxel_offset=offset, resolution=(4, 4, 40)
    )
    print(f"created  {a}")

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, size=shape, dtype=np.uint8)
    t = time.perf_counter()
    a[a.bounds] = volume
    dt = time.perf_counter() - t
    files = sum(len(f) for _, _, f in os.walk(url)) - 1
    mib = volume.nbytes / 2**20
    print(f"wrote    the whole layer ({mib:.0f} MiB) in {dt:.2f} s as {files} gzip chunks")

    x0, y0, z0 = offset
    box = (slice(x0 + 37, x0 + 300), slice(y0 + 59, y0 + 400), slice(z0 + 13, z0 + 100))
    t = time.perf_counter()
    cut = a[box]
    dt = time.perf_counter() - t
    expected = volume[37:300, 59:400, 13:100]
    equal = np.array_equal(cut, expected)
    print(f"read     an unaligned {cut.shape} cutout in {dt * 1000:.1f} ms, equal: {equal}")

    a[x0 + 10 : x0 + 20, y0 : y0 + 5, z0] = 255  # unaligned write: read-modify-write
    volume[10:20, 0:5, 0] = 255
    ok = np.array_equal(BigArray(url)[a.bounds], volume)
    print(f"wrote    an unaligned patch; reopened layer equals the reference: {ok}")

    outside = a[x0 - 64 : x0 + 64, y0 : y0 + 8, z0 : z0 + 8]
    print(f"read     a box crossing the bounds: zeros outside: {not outside[:64].any()}")
    if not ok:
        sys.exit("demo failed: data mismatch")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo-data")
