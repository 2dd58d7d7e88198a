"""Smoke test of an installed wheel: `make wheel-test` and the release workflow run it in a
fresh virtual environment holding only the wheel and its dependencies, with no compiler on
PATH. Not collected by pytest (its name does not start with ``test_``): it checks an
installation, not the source tree.

Every codec and library the wheel links statically is exercised once: gzip and zstd
transport compression, jpeg (libjpeg-turbo), png, blosc (c-blosc), and HDF5 (libhdf5, with
its gzip and blosc filters); then the command line. Exits non-zero on the first failure.

Usage: python wheel_smoke.py [--isolated]

--isolated: also require that no compiler or build tool is on PATH (the caller sanitised it,
as `make wheel-test` does), so that nothing could have been built on the fly.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

import bigarrays
from bigarrays import BigArray

# What a manylinux wheel may load from the system (PEP 600's policy, less the X11 and GLib
# libraries this wheel has no use for). Anything else was linked from the build machine.
MANYLINUX_LIBS = (
    "linux-vdso.so",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libdl.so",
    "librt.so",
    "libpthread.so",
    "libgcc_s.so",
    "libstdc++.so",
    "libz.so",
)
COMPILERS = ("cargo", "rustc", "cc", "gcc", "clang", "zig", "cmake", "nasm")


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"wheel smoke test failed: {what}")
    print(f"ok   {what}")


def installed_not_source(isolated: bool) -> None:
    """The package comes from site-packages, not from a source tree on sys.path."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    where = Path(bigarrays.__file__).resolve()
    check(site in where.parents, f"bigarrays is imported from the installation ({where})")
    if not isolated:
        return
    leaked = [c for c in COMPILERS if shutil.which(c)]
    check(not leaked, f"no compiler or build tool on PATH (found: {leaked or 'none'})")


def links_only_system_libraries() -> None:
    if not sys.platform.startswith("linux"):
        return
    core = next(Path(bigarrays.__file__).parent.glob("_core*.so"))
    ldd = shutil.which("ldd", path="/usr/bin:/bin")
    if ldd is None:
        check(False, "ldd exists to list the extension's shared libraries")
        return
    out = subprocess.run([ldd, str(core)], capture_output=True, text=True, check=True).stdout
    libs = [line.split()[0] for line in out.splitlines() if line.strip()]
    foreign = [lib for lib in libs if not any(Path(lib).name.startswith(a) for a in MANYLINUX_LIBS)]
    check(
        not foreign and "not found" not in out,
        f"{core.name} needs only manylinux system libraries ({', '.join(libs)})",
    )


def version_has_one_source() -> None:
    dist = importlib.metadata.version("bigarrays")
    check(bigarrays.__version__ == dist, f"__version__ {bigarrays.__version__} == wheel's {dist}")


def integrations_are_registered() -> None:
    """xarray and napari find the backend and the reader through entry points, and napari
    reads the manifest from the package: both must be in the wheel (xarray and napari
    themselves are not installed here)."""
    groups = {"xarray.backends": "bigarrays._xarray", "napari.manifest": "bigarrays:napari.yaml"}
    for group, target in groups.items():
        found = [e.value for e in importlib.metadata.entry_points(group=group)]
        check(any(v.startswith(target) for v in found), f"{group} entry point ({found})")
    manifest = Path(bigarrays.__file__).parent / "napari.yaml"
    check(manifest.is_file() and "bigarrays._napari" in manifest.read_text(), "napari.yaml")


def raw_gzip_and_zstd(root: Path) -> str:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 1000, size=(96, 80, 40), dtype=np.uint16)
    url = str(root / "raw")
    a = BigArray.create(url, shape=ref.shape, dtype="uint16", chunks=(64, 64, 32))
    a[a.bounds] = ref
    again = BigArray(url)
    check(np.array_equal(again[again.bounds], ref), "raw layer: write, reopen, read back")
    gz = list(Path(url).rglob("*.gz"))
    check(len(gz) == 8, f"raw layer: chunks stored gzip-compressed ({len(gz)} .gz files)")
    zurl = str(root / "zstd")
    z = BigArray.create(zurl, shape=ref.shape, dtype="uint16", compression="zstd")
    z[z.bounds] = ref
    check(np.array_equal(BigArray(zurl)[z.bounds], ref), "zstd-compressed layer reads back")
    return url


def jpeg_png_blosc(root: Path) -> None:
    x, y, z = np.meshgrid(np.arange(128), np.arange(128), np.arange(16), indexing="ij")
    smooth = ((x + y + 4 * z) % 256).astype(np.uint8)
    url = str(root / "jpeg")
    a = BigArray.create(
        url, shape=smooth.shape, dtype="uint8", chunks=(64, 64, 16), encoding="jpeg"
    )
    a[a.bounds] = smooth
    back = BigArray(url)[a.bounds].astype(int)
    err = float(np.abs(back - smooth.astype(int)).mean())
    check(err < 4, f"jpeg layer (libjpeg-turbo) reads back within tolerance (mean error {err:.2f})")
    for encoding in ("png", "blosc"):
        url = str(root / encoding)
        a = BigArray.create(url, shape=smooth.shape, dtype="uint8", encoding=encoding)
        a[a.bounds] = smooth
        check(np.array_equal(BigArray(url)[a.bounds], smooth), f"{encoding} layer reads back")


def hdf5(root: Path) -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 60000, size=(48, 40, 12), dtype=np.uint16)
    for compression in ("gzip", "blosc"):
        url = root / f"h5s-{compression}"
        a = BigArray.create(
            str(url),
            format="h5s",
            shape=ref.shape,
            dtype="uint16",
            chunks=(32, 24, 8),
            encoding_options={"chunk_size": (16, 8, 4)},
            compression=compression,
        )
        a[a.bounds] = ref
        back = BigArray(str(url))
        check(back.encoding == "h5s", f"HDF5 ({compression}) block directory reopens as h5s")
        check(np.array_equal(back[back.bounds], ref), f"HDF5 ({compression}) blocks read back")
    # One block is an ordinary HDF5 file: open it on its own (libhdf5 reads the file).
    block = url / "block_1-32_1-24_1-8.h5"
    single = BigArray(str(block))
    check(
        single.encoding == "hdf5" and np.array_equal(single[single.bounds], ref[:32, :24, :8]),
        f"single HDF5 file {block.name} opens and reads",
    )


def cli(layer: str) -> None:
    scripts = Path(sysconfig.get_paths()["scripts"])
    exe = scripts / ("bigarrays.exe" if os.name == "nt" else "bigarrays")
    check(exe.exists(), f"the bigarrays command is installed ({exe})")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    check(
        out.returncode == 0 and bigarrays.__version__ in out.stdout,
        f"bigarrays --version: {out.stdout.strip() or out.stderr.strip()}",
    )
    out = subprocess.run([str(exe), "info", layer], capture_output=True, text=True)
    check(
        out.returncode == 0 and "96" in out.stdout,
        "bigarrays info prints the layer" + ("" if out.returncode == 0 else f": {out.stderr}"),
    )


def main() -> None:
    installed_not_source("--isolated" in sys.argv[1:])
    links_only_system_libraries()
    version_has_one_source()
    integrations_are_registered()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        layer = raw_gzip_and_zstd(root)
        jpeg_png_blosc(root)
        hdf5(root)
        cli(layer)
    print("wheel smoke test passed")


if __name__ == "__main__":
    main()
