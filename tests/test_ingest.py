"""``bigarrays ingest``: stacks written by tifffile, Pillow and NumPy become layers that
bigarrays, CloudVolume and TensorStore read back bit-exactly; labels get mode pyramids; a
killed ingest resumes to the same layer; memory stays bounded by slabs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import tifffile
from cloudvolume import CloudVolume
from PIL import Image

import bigarrays
from bigarrays import BigArray, InvalidArgumentError, LayerExistsError

ROOT = Path(__file__).resolve().parent.parent


def stack(shape=(12, 40, 56), dtype="uint8", seed=0) -> np.ndarray:
    """A (z, y, x) stack, as tifffile and np.stack lay images out."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is None:
        return rng.random(shape).astype(dtype)
    return rng.integers(0, min(info.max, 1 << 20), shape, dtype=dtype, endpoint=True)


def xyz(vol: np.ndarray) -> np.ndarray:
    """A (z, y, x[, c]) stack in the layer's (x, y, z[, c]) axes."""
    return vol.transpose((2, 1, 0, 3) if vol.ndim == 4 else (2, 1, 0))


def slices(tmp_path: Path, vol: np.ndarray, name="z{}.tif", **kwargs) -> Path:
    d = tmp_path / "slices"
    d.mkdir()
    # Written in a shuffled order, named z0 .. z11: only a natural sort gets z right.
    for z in np.random.default_rng(1).permutation(len(vol)):
        path = d / name.format(z)
        if path.suffix == ".tif":
            tifffile.imwrite(path, vol[z], **kwargs)
        else:
            Image.fromarray(vol[z]).save(path, **kwargs)
    return d


def cv_read(path: Path, mip: int = 0) -> np.ndarray:
    cv = CloudVolume(f"file://{path}", mip=mip, progress=False, fill_missing=False)
    return np.asarray(cv[cv.bounds])


def ts_read(path: Path, mip: int = 0) -> np.ndarray:
    key = BigArray(str(path), mip=mip).info["scales"][mip]["key"]
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": str(path)},
        "scale_metadata": {"key": key},
    }
    return ts.open(spec).result().read().result()


def test_slice_directory_read_back_by_all_three(tmp_path):
    vol = stack()
    src = slices(tmp_path, vol)
    dst = tmp_path / "layer"
    # Sharded: TensorStore reads shards' gzip chunks (it does not read CloudVolume's .gz
    # chunk files); mips auto: until one 32×32 chunk covers x and y (56 -> 28).
    a = bigarrays.ingest(src, str(dst), chunks=(32, 32, 4), sharding=True, resolution=(4, 4, 40))
    want = xyz(vol)
    assert a.shape == (56, 40, 12) and a.resolution == (4, 4, 40)
    assert a.info["type"] == "image" and a.num_mips == 2
    assert "sharding" in a.info["scales"][0]
    np.testing.assert_array_equal(a[a.bounds], want)
    np.testing.assert_array_equal(cv_read(dst)[..., 0], want)
    np.testing.assert_array_equal(ts_read(dst)[..., 0], want)
    # The pyramid level is the average of 2×2 blocks, as CloudVolume reads it.
    level = BigArray(str(dst), mip=1)
    assert level.shape == (28, 20, 12)
    np.testing.assert_array_equal(cv_read(dst, 1)[..., 0], level[level.bounds])


def test_multipage_bigtiff_compressed_and_16_bit(tmp_path):
    vol = stack((9, 33, 47), "uint16")
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, vol, bigtiff=True, compression="zstd")  # zstd: imagecodecs
    a = bigarrays.ingest(str(path), str(tmp_path / "layer"), mips=0, compression=None)
    assert a.dtype == np.uint16 and a.num_mips == 1
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    np.testing.assert_array_equal(ts_read(tmp_path / "layer")[..., 0], xyz(vol))


def test_ome_tiff_physical_sizes_become_the_resolution(tmp_path):
    vol = stack((5, 20, 24), "uint8")
    path = tmp_path / "stack.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 0.008, "PhysicalSizeY": 0.008}
    metadata.update(PhysicalSizeZ=40, PhysicalSizeZUnit="nm")
    tifffile.imwrite(path, vol, ome=True, metadata=metadata)
    a = bigarrays.ingest(str(path), str(tmp_path / "layer"), mips=1)
    assert a.resolution == pytest.approx((8, 8, 40))
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    assert BigArray(str(tmp_path / "layer"), mip=1).resolution == pytest.approx((16, 16, 40))
    # Channels as pages (fluorescence): C becomes the layer's channels.
    czyx = stack((2, 5, 20, 24), "uint16")
    tifffile.imwrite(tmp_path / "c.ome.tif", czyx, ome=True, metadata={"axes": "CZYX"})
    b = bigarrays.ingest(str(tmp_path / "c.ome.tif"), str(tmp_path / "channels"), mips=0)
    assert b.num_channels == 2
    np.testing.assert_array_equal(b[b.bounds], czyx.transpose(3, 2, 1, 0))


def test_png_16_bit_and_rgb_jpeg_as_pillow_decodes_them(tmp_path):
    vol = stack((4, 24, 30), "uint16")
    src = slices(tmp_path, vol, name="s{}.png")
    a = bigarrays.ingest(src, str(tmp_path / "png"), mips=0)
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    rgb = stack((3, 24, 30, 3), "uint8")
    files = []
    for z in range(3):
        files.append(str(tmp_path / f"c{z}.jpg"))
        Image.fromarray(rgb[z]).save(files[-1], quality=80)
    decoded = np.stack([np.asarray(Image.open(f)) for f in files])  # lossy: as Pillow reads
    b = bigarrays.ingest(files, str(tmp_path / "jpeg"), mips=0)
    assert b.num_channels == 3
    np.testing.assert_array_equal(b[b.bounds], xyz(decoded))
    np.testing.assert_array_equal(cv_read(tmp_path / "jpeg"), xyz(decoded))


def test_npy_hdf5_and_float(tmp_path):
    h5py = pytest.importorskip("h5py")
    vol = stack((6, 20, 18), "float32")
    np.save(tmp_path / "v.npy", vol)
    a = bigarrays.ingest(str(tmp_path / "v.npy"), str(tmp_path / "npy"), mips=0)
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("g/raw", data=vol)
        f.create_dataset("g/other", data=vol[:1])
    b = bigarrays.ingest(f"{tmp_path / 'v.h5'}:/g/raw", str(tmp_path / "h5"), mips=0)
    np.testing.assert_array_equal(b[b.bounds], xyz(vol))
    with pytest.raises(InvalidArgumentError, match="2 datasets"):
        bigarrays.ingest(str(tmp_path / "v.h5"), str(tmp_path / "h5b"))


def test_labels_get_segmentation_and_mode_pyramids_cloudvolume_reads(tmp_path):
    rng = np.random.default_rng(2)
    blocks = rng.integers(1, 2**40, (8, 10, 12), dtype=np.uint64)
    # Constant over 2×2 blocks in x and y: each mip 1 voxel's mode is that block's label.
    vol = blocks.repeat(2, axis=1).repeat(2, axis=2)
    np.save(tmp_path / "labels.npy", vol)
    dst = tmp_path / "seg"
    a = bigarrays.ingest(str(tmp_path / "labels.npy"), str(dst), chunks=(8, 8, 4))
    assert a.info["type"] == "segmentation" and a.encoding == "compressed_segmentation"
    np.testing.assert_array_equal(cv_read(dst)[..., 0], xyz(vol))
    np.testing.assert_array_equal(cv_read(dst, 1)[..., 0], xyz(blocks))


def test_bad_input_names_the_file(tmp_path):
    vol = stack((4, 16, 16))
    src = slices(tmp_path, vol)
    tifffile.imwrite(src / "z2.tif", vol[0, :8])
    with pytest.raises(InvalidArgumentError, match=r"z2\.tif: 16×8 \(x×y\) uint8.*z0\.tif"):
        bigarrays.ingest(src, str(tmp_path / "a"))
    tifffile.imwrite(src / "z2.tif", vol[0].astype("uint16"))
    with pytest.raises(InvalidArgumentError, match=r"z2\.tif: .*uint16"):
        bigarrays.ingest(src, str(tmp_path / "a"))
    (src / "z2.tif").write_bytes(b"not a tiff")
    with pytest.raises(InvalidArgumentError, match=r"z2\.tif: cannot read it"):
        bigarrays.ingest(src, str(tmp_path / "a"))
    (src / "z2.tif").unlink()
    bigarrays.ingest(src, str(tmp_path / "a"), mips=0)
    with pytest.raises(LayerExistsError, match="--resume.*--overwrite"):
        bigarrays.ingest(src, str(tmp_path / "a"))
    bigarrays.ingest(src, str(tmp_path / "a"), mips=0, overwrite=True)
    with pytest.raises(InvalidArgumentError, match="cannot resume.*chunks"):
        bigarrays.ingest(src, str(tmp_path / "a"), mips=0, resume=True, chunks=(8, 8, 2))


INGEST_CHILD = """
import sys
import bigarrays
bigarrays.ingest(sys.argv[1], sys.argv[2], chunks=(64, 64, 1), jobs=1, resume=len(sys.argv) > 3)
"""


def layer_arrays(path: Path) -> list[np.ndarray]:
    a = BigArray(str(path))
    return [
        BigArray(str(path), mip=m)[BigArray(str(path), mip=m).bounds] for m in range(a.num_mips)
    ]


def wait_for_chunks(proc: subprocess.Popen, scale_dir: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if scale_dir.is_dir() and len(list(scale_dir.iterdir())) >= count:
            return
        time.sleep(0.02)


def test_resumed_after_sigkill_equals_uninterrupted(tmp_path):
    vol = stack((48, 128, 160))
    src = slices(tmp_path, vol)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    child = [sys.executable, "-c", INGEST_CHILD, str(src)]
    subprocess.run([*child, str(whole)], check=True, timeout=120)
    proc = subprocess.Popen([*child, str(killed)])
    try:
        wait_for_chunks(proc, killed / "1_1_1", 20)
        interrupted = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    subprocess.run([*child, str(killed), "resume"], check=True, timeout=120)
    for got, want in zip(layer_arrays(killed), layer_arrays(whole), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(layer_arrays(killed)[0], xyz(vol))
    if not interrupted:
        pytest.skip("the child finished before it could be killed (machine too fast)")


def test_ctrl_c_exits_130_and_resume_finishes(tmp_path):
    vol = stack((48, 128, 160))
    src = slices(tmp_path, vol)
    dst = tmp_path / "layer"
    cmd = [sys.executable, "-m", "bigarrays", "ingest", str(src), str(dst), "--quiet"]
    cmd += ["--chunks", "64,64,1", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    wait_for_chunks(proc, dst / "1_1_1", 20)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted" in err
    else:
        proc.communicate(timeout=30)
    # Chunk writes are atomic: no temporary file is left, every chunk present decodes.
    assert not [p for p in dst.rglob("*") if "#" in p.name]
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "neuroglancer-demo.appspot.com" in done.stdout and "bigarrays serve" in done.stdout
    np.testing.assert_array_equal(layer_arrays(dst)[0], xyz(vol))


MEMORY_CHILD = """
import sys
import bigarrays

def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))

import tifffile, numpy  # what ingest loads, loaded before the baseline
base = status_kib("VmRSS")
bigarrays.ingest(sys.argv[1], sys.argv[2], chunks=(128, 128, 8), mips=0, compression=None)
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a
# large process (pytest) would report its parent's size.
print((status_kib("VmHWM") - base) * 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_bounded_by_slabs_not_the_stack(tmp_path):
    """A 200 MB stack with 8-slice slabs (8 MB each) stays under 120 MB above the
    interpreter's baseline."""
    d = tmp_path / "big"
    d.mkdir()
    plane = np.arange(1000 * 1000, dtype=np.uint32).reshape(1000, 1000)
    for z in range(200):
        tifffile.imwrite(d / f"z{z}.tif", ((plane * (z + 1)) >> 3).astype(np.uint8))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(d), str(tmp_path / "layer")],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    peak = int(out.stdout.split()[-1])
    assert peak < 120e6, f"peak {peak / 1e6:.0f} MB above baseline"
    a = BigArray(str(tmp_path / "layer"))
    np.testing.assert_array_equal(a[:, :, 199], ((plane * 200) >> 3).astype(np.uint8).T)


def test_existing_layer_is_copied_and_pyramided(tmp_path):
    vol = stack((8, 40, 48))
    src = BigArray.create(str(tmp_path / "src"), shape=(48, 40, 8), dtype="uint8",
                          chunks=(16, 16, 8), resolution=(4, 4, 40))  # fmt: skip
    src[src.bounds] = xyz(vol)
    a = bigarrays.ingest(str(tmp_path / "src"), str(tmp_path / "dst"), mips=1)
    assert a.num_mips == 2 and a.resolution == (4, 4, 40)
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    # An existing destination is refused, and replaced whole with overwrite (here one of
    # another dtype and shape, whose old chunks must not survive).
    old = BigArray.create(str(tmp_path / "old"), shape=(64, 64, 16), dtype="uint16",
                          chunks=(16, 16, 8))  # fmt: skip
    old[old.bounds] = np.uint16(7)
    old_chunks = tmp_path / "old" / old.info["scales"][0]["key"]
    assert any(old_chunks.iterdir())
    with pytest.raises(LayerExistsError, match="--resume.*--overwrite"):
        bigarrays.ingest(str(tmp_path / "src"), str(tmp_path / "old"), mips=0)
    b = bigarrays.ingest(str(tmp_path / "src"), str(tmp_path / "old"), mips=1, overwrite=True)
    assert b.dtype == np.uint8 and b.shape[:3] == (48, 40, 8) and b.num_mips == 2
    np.testing.assert_array_equal(b[b.bounds], xyz(vol))
    assert not old_chunks.exists() or not any(old_chunks.iterdir())


def test_zarr_destination_is_an_ome_zarr_image(tmp_path):
    vol = stack((6, 20, 300))  # 3 chunks along x (the last axis), 1 along z
    np.save(tmp_path / "v.npy", vol)
    a = bigarrays.ingest(
        str(tmp_path / "v.npy"), str(tmp_path / "z"), format="zarr", mips=1, resolution=(4, 4, 40)
    )
    np.testing.assert_array_equal(a[:], vol)
    assert a.ome_image() is not None and a.num_mips == 2
    # Resuming a finished image finds every slab complete and rewrites no chunk.
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "z").rglob("*") if p.is_file()}
    b = bigarrays.ingest(
        str(tmp_path / "v.npy"), str(tmp_path / "z"), format="zarr", mips=1, resume=True
    )
    np.testing.assert_array_equal(b[:], vol)
    chunks = [p for p in files if not p.name.startswith(("zarr.json", ".z"))]
    assert chunks and all(p.stat().st_mtime_ns == files[p] for p in chunks)


def test_ingest_into_s3_and_the_summary_names_the_bucket(tmp_path, moto):
    from bigarrays._ingest import summary

    vol = stack((4, 20, 24))
    np.save(tmp_path / "v.npy", vol)
    url = f"s3://{moto.bucket()}/em"
    a = bigarrays.ingest(str(tmp_path / "v.npy"), url, storage_options=moto.options(), mips=1)
    np.testing.assert_array_equal(a[a.bounds], xyz(vol))
    text = summary(url, 1.0, storage_options=moto.options())
    assert "mip 1: 12×10×4" in text and ".s3.amazonaws.com/em" in text
    assert "precomputed%3A%2F%2Fs3%3A%2F%2F" in text  # the link's source, URL-encoded


def test_cli_help_lists_ingest():
    out = subprocess.run(
        [sys.executable, "-m", "bigarrays", "ingest", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "SRC... DST" in out and "--resume" in out
