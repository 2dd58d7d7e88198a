"""The benches' data: what each generates, and the cached copies of it the peers wrote.

- The EM-like uint8 volume (``Scale``, ``generate_slab``) and ``Dataset``, its copies under
  ``benches/data/<scale>/`` (CloudVolume's gzip and plain chunk files, TensorStore's sharded
  gzip copy, a sparse 2^40-voxel layer): bench_read.py's data, which most benches share.
- Supervoxel-like uint64 labels (``LabelParams``, ``label_slab``) and ``Labels``, their
  jpeg and compressed_segmentation layers under ``benches/data/codecs-<scale>/``:
  bench_codecs.py's data, which bench_seg.py and the scaling benches share.

Everything is deterministic (seeded per plane) and regenerated only when its parameters
change. Only NumPy is imported up front; the peers that write the copies (CloudVolume,
TensorStore) are imported where they write, so a machine that only reads (bench_device.py's)
needs neither.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"  # gitignored

# -- the EM-like volume --------------------------------------------------------------------

# Bump when the generator's output changes in a way the stamp parameters do not capture.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Workload:
    name: str
    # Which copies are read: "gzip", "raw", or "sparse" (the gzip chunk files placed in a
    # layer of 2^40 voxels, the rest of it never written).
    layer: str
    origin: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + s) for o, s in zip(self.origin, self.size, strict=True))

    def describe(self) -> str:
        kind = "aligned" if self.name.startswith("W1") else "unaligned"
        size = "×".join(map(str, self.size))
        layer = {"sparse": "gzip, in a sparse 2^40-voxel layer"}.get(self.layer, self.layer)
        return f"{self.name}: {kind} {size} @ {self.origin}, {layer}"

    def expected(self, truth: np.ndarray) -> np.ndarray:
        """The generated voxels of this cutout (zeros where the sparse layer is unwritten)."""
        out = np.zeros(self.size, truth.dtype, order="F")
        inside = tuple(
            slice(min(o, n), min(o + s, n))
            for o, s, n in zip(self.origin, self.size, truth.shape, strict=True)
        )
        at = tuple(slice(0, i.stop - i.start) for i in inside)
        out[at] = truth[inside]
        return out


@dataclass(frozen=True)
class Scale:
    """Everything that defines the generated data (the stamp) plus the workloads to time."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int] = (128, 128, 64)
    seed: int = 20240611
    resolution: tuple[int, int, int] = (4, 4, 40)
    # EM-like content: a low-contrast smooth "cytoplasm" texture, dark "membranes" where a
    # second, coarser smooth field crosses zero, and a little per-voxel shot noise. The
    # amplitudes are tuned so that CloudVolume's gzip (level 9) compresses about 1.8x.
    background: float = 150.0
    texture_amp: float = 3.0
    texture_width_xy: int = 7
    membrane_depth: float = 60.0
    membrane_halfwidth: float = 0.1  # in standard deviations of the membrane field
    membrane_width_xy: int = 15
    width_z: int = 3  # box width along z (anisotropic voxels, 4x4x40 nm)
    blur_passes: int = 2  # two box passes approximate a smooth (triangular) kernel
    noise: float = 1.2
    # Workloads and repeats are not part of the stamp: they do not change the data.
    workloads: tuple[Workload, ...] = field(default=(), compare=False)
    repeats: int = field(default=7, compare=False)

    def stamp(self) -> dict:
        d = asdict(self)
        del d["workloads"], d["repeats"]
        return {"generator_version": GENERATOR_VERSION, **d}


SCALES = {
    "full": Scale(
        shape=(1024, 1024, 512),
        workloads=(
            Workload("W1", "gzip", (256, 256, 128), (512, 512, 256)),
            Workload("W2", "gzip", (37, 59, 13), (500, 500, 250)),
            Workload("W1u", "raw", (256, 256, 128), (512, 512, 256)),
            Workload("W1s", "sparse", (256, 256, 128), (512, 512, 256)),
            Workload("W1s-empty", "sparse", (8192, 8192, 2048), (512, 512, 256)),
        ),
        repeats=7,
    ),
    "small": Scale(
        shape=(256, 256, 128),
        workloads=(
            Workload("W1", "gzip", (0, 128, 0), (256, 128, 128)),
            Workload("W2", "gzip", (37, 59, 13), (150, 150, 75)),
            Workload("W1u", "raw", (0, 128, 0), (256, 128, 128)),
            Workload("W1s", "sparse", (0, 128, 0), (256, 128, 128)),
            Workload("W1s-empty", "sparse", (8192, 8192, 2048), (256, 128, 128)),
        ),
        repeats=5,
    ),
}


# -- data generation ---------------------------------------------------------------------


def box_blur(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Centred moving average of odd ``width`` along ``axis`` (edges clamped), via cumsum."""
    if width <= 1:
        return a
    half = width // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half + 1, half)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    n = a.shape[axis]
    hi = [slice(None)] * a.ndim
    lo = [slice(None)] * a.ndim
    hi[axis], lo[axis] = slice(width, width + n), slice(0, n)
    out = c[tuple(hi)]
    out -= c[tuple(lo)]
    out /= width
    return out


def blur_std(widths: tuple[int, int, int], passes: int) -> float:
    """Standard deviation of white N(0, 1) noise after the blur (interior voxels).

    Normalising by this constant rather than by each slab's own std keeps slabs seamless.
    """
    var = 1.0
    for w in widths:
        k = np.ones(1)
        for _ in range(passes):
            k = np.convolve(k, np.ones(w) / w)
        var *= float(np.sum(k**2))
    return math.sqrt(var)


def noise_planes(p: Scale, field_id: int, z0: int, z1: int) -> np.ndarray:
    """White noise for planes z0..z1 as (x, y, z); each plane has its own seed, so any slab
    (with any halo) can be generated independently and deterministically."""
    nx, ny, _ = p.shape
    out = np.empty((nx, ny, z1 - z0), dtype=np.float32, order="F")
    for z in range(z0, z1):
        rng = np.random.default_rng([p.seed, field_id, z])
        out[:, :, z - z0] = rng.standard_normal((nx, ny), dtype=np.float32)
    return out


def smooth_field(p: Scale, field_id: int, width_xy: int, z0: int, z1: int) -> np.ndarray:
    """Blurred noise with unit std for planes z0..z1, exact across slab boundaries."""
    nz = p.shape[2]
    halo = p.blur_passes * (p.width_z // 2)  # planes that influence the slab along z
    lo, hi = max(0, z0 - halo), min(nz, z1 + halo)
    f = noise_planes(p, field_id, lo, hi)
    for _ in range(p.blur_passes):
        for axis, w in ((0, width_xy), (1, width_xy), (2, p.width_z)):
            f = box_blur(f, w, axis)
    f = f[:, :, z0 - lo : z1 - lo]
    f /= blur_std((width_xy, width_xy, p.width_z), p.blur_passes)
    return f


def generate_slab(p: Scale, z0: int, z1: int) -> np.ndarray:
    """Voxels of planes z0..z1 as a Fortran-ordered uint8 (x, y, z) array."""
    texture = smooth_field(p, 0, p.texture_width_xy, z0, z1)
    membrane = smooth_field(p, 1, p.membrane_width_xy, z0, z1)
    img = p.background + p.texture_amp * texture
    del texture
    membrane /= p.membrane_halfwidth
    np.square(membrane, out=membrane)
    img -= p.membrane_depth * np.exp(-membrane)
    del membrane
    img += p.noise * noise_planes(p, 2, z0, z1)
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return np.asfortranarray(img.astype(np.uint8))


def sharding_spec(p: Scale) -> tuple[dict, tuple[int, int, int]]:
    """A neuroglancer_uint64_sharded_v1 spec with up to 64 chunks per shard, and the shard
    shape in voxels (so writes can cover whole shards).

    With the identity hash a shard is a run of compressed Morton codes; its low bits
    interleave x, y, z (skipping axes whose bits are used up), so 6 bits give 4x4x4 chunks.
    """
    grid = [math.ceil(s / c) for s, c in zip(p.shape, p.chunks, strict=True)]
    bits = [max(0, math.ceil(math.log2(g))) for g in grid]
    per_shard = min(6, sum(bits))
    preshift = min(3, per_shard)
    spec = {
        "@type": "neuroglancer_uint64_sharded_v1",
        "hash": "identity",
        "preshift_bits": preshift,
        "minishard_bits": per_shard - preshift,
        "shard_bits": sum(bits) - per_shard,
        "minishard_index_encoding": "gzip",
        "data_encoding": "gzip",
    }
    shard_chunks, used, left = [1, 1, 1], [0, 0, 0], per_shard
    while left:
        for d in range(3):
            if left and used[d] < bits[d]:
                shard_chunks[d] *= 2
                used[d] += 1
                left -= 1
    shard_shape = tuple(n * c for n, c in zip(shard_chunks, p.chunks, strict=True))
    return spec, shard_shape


class Dataset:
    """The cached data for one scale: ground truth and the three on-disk copies."""

    def __init__(self, root: Path, p: Scale) -> None:
        self.root, self.p = root, p
        self.truth_path = root / "volume.npy"  # ground truth, independent of every reader
        self.cv_gzip = root / "cv_gzip"
        self.cv_raw = root / "cv_raw"
        self.ts_sharded = root / "ts_sharded"
        self.sparse = root / "sparse"
        self.stamp_path = root / "stamp.json"
        self.sharding, self.shard_shape = sharding_spec(p)

    def stamp(self) -> dict:
        """The parameters as they read back from ``stamp.json`` (JSON has no tuples)."""
        return json.loads(json.dumps({**self.p.stamp(), "sharding": self.sharding}))

    def ensure(self) -> None:
        """Regenerates everything unless the stamp matches (it is written last, so an
        interrupted generation is redone)."""
        if self.stamp_path.exists():
            if json.loads(self.stamp_path.read_text()) == self.stamp():
                print(f"data: reusing {self.root}")
                return
            print("data: parameters changed, regenerating")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        t = time.perf_counter()
        self._generate()
        self.stamp_path.write_text(json.dumps(self.stamp(), indent=1) + "\n")
        print(f"data: generated in {time.perf_counter() - t:.0f} s")

    def _generate(self) -> None:
        from cloudvolume import CloudVolume

        p = self.p
        nx, ny, nz = p.shape
        cz = p.chunks[2]
        truth = np.lib.format.open_memmap(
            self.truth_path, mode="w+", dtype=np.uint8, shape=p.shape, fortran_order=True
        )
        info = CloudVolume.create_new_info(
            num_channels=1,
            layer_type="image",
            data_type="uint8",
            encoding="raw",
            resolution=list(p.resolution),
            voxel_offset=[0, 0, 0],
            chunk_size=list(p.chunks),
            volume_size=list(p.shape),
        )
        cvs = []
        for path, compress in ((self.cv_gzip, None), (self.cv_raw, False)):
            # compress=None is CloudVolume's default for raw encoding (gzip, level 9, .gz
            # files); compress=False writes plain chunk files.
            cv = CloudVolume(
                f"file://{path}", info=info, compress=compress, progress=False, parallel=1
            )
            cv.commit_info()
            cvs.append(cv)
        # One slab of whole chunks along z at a time bounds memory (~2 GiB at full scale).
        for z0 in range(0, nz, cz):
            z1 = min(nz, z0 + cz)
            slab = generate_slab(p, z0, z1)
            truth[:, :, z0:z1] = slab
            for cv in cvs:
                cv[0:nx, 0:ny, z0:z1] = slab
            print(f"data: planes {z0}..{z1} of {nz}", end="\r", flush=True)
        truth.flush()
        print()
        self._write_tensorstore(truth)
        del truth
        if not any(self.cv_gzip.rglob("*.gz")) or any(self.cv_raw.rglob("*.gz")):
            raise SystemExit("CloudVolume did not write the expected gzip / plain chunk files")

    def _write_tensorstore(self, truth: np.ndarray) -> None:
        import tensorstore as ts

        p = self.p
        nx, ny, nz = p.shape
        if nx % self.shard_shape[0] or ny % self.shard_shape[1]:
            raise SystemExit(f"shard shape {self.shard_shape} does not tile {p.shape}")
        store = ts.open(
            {
                "driver": "neuroglancer_precomputed",
                "kvstore": {"driver": "file", "path": str(self.ts_sharded)},
                "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
                "scale_metadata": {
                    "size": list(p.shape),
                    "voxel_offset": [0, 0, 0],
                    "resolution": list(p.resolution),
                    "chunk_size": list(p.chunks),
                    "encoding": "raw",
                    "sharding": self.sharding,
                },
            },
            create=True,
            delete_existing=True,
        ).result()
        # Slabs of whole shards: a partial shard would be read, modified and rewritten.
        sz = self.shard_shape[2]
        for z0 in range(0, nz, sz):
            z1 = min(nz, z0 + sz)
            store[:, :, z0:z1, 0].write(np.asarray(truth[:, :, z0:z1])).result()

    def ensure_sparse(self) -> None:
        """A layer of 2^40 voxels (16384×16384×4096) whose only stored chunks are the gzip
        copy's, hard-linked: it costs no disk, and W1 on it must cost what W1 costs on the
        dense layer, since a read's cost should grow with the cutout, not the layer."""
        info = json.loads((self.cv_gzip / "info").read_text())
        info["scales"][0]["size"] = [16384, 16384, 4096]
        if self.sparse.exists() and json.loads((self.sparse / "info").read_text()) == info:
            return
        shutil.rmtree(self.sparse, ignore_errors=True)
        key = info["scales"][0]["key"]
        (self.sparse / key).mkdir(parents=True)
        for f in (self.cv_gzip / key).iterdir():
            os.link(f, self.sparse / key / f.name)
        (self.sparse / "info").write_text(json.dumps(info))

    def chunk_files(self, w: Workload) -> list[Path]:
        """The gzip copy's files of the chunks a (dense-layer) workload touches."""
        key = json.loads((self.cv_gzip / "info").read_text())["scales"][0]["key"]
        ranges = [
            range(o // c * c, o + s, c)
            for o, s, c in zip(w.origin, w.size, self.p.chunks, strict=True)
        ]
        cx, cy, cz = self.p.chunks
        return [
            self.cv_gzip / key / f"{x}-{x + cx}_{y}-{y + cy}_{z}-{z + cz}.gz"
            for z in ranges[2]
            for y in ranges[1]
            for x in ranges[0]
        ]

    def truth(self) -> np.ndarray:
        return np.load(self.truth_path, mmap_mode="r")

    def gzip_ratio(self) -> float:
        """Raw bytes over the bytes of CloudVolume's ``.gz`` chunk files."""
        packed = sum(f.stat().st_size for f in self.cv_gzip.rglob("*.gz"))
        return math.prod(self.p.shape) / packed

    def sharded_ratio(self) -> float:
        """Raw bytes over TensorStore's shard files (indices included)."""
        packed = sum(f.stat().st_size for f in self.ts_sharded.rglob("*.shard"))
        return math.prod(self.p.shape) / packed


def generate_volume(p: Scale) -> np.ndarray:
    """The whole volume in memory, Fortran-ordered (for benches whose layer is small)."""
    nz, cz = p.shape[2], p.chunks[2]
    vol = np.empty(p.shape, dtype=np.uint8, order="F")
    for z0 in range(0, nz, cz):
        vol[:, :, z0 : z0 + cz] = generate_slab(p, z0, min(nz, z0 + cz))
    return vol


# -- the labels ---------------------------------------------------------------------------

LABELS_GENERATOR_VERSION = 1
LABEL_CHUNKS = (64, 64, 64)
CSEG_BLOCK = (8, 8, 8)


@dataclass(frozen=True)
class LabelParams:
    shape: tuple[int, int, int]
    cell: tuple[int, int, int]  # label cell size before bending
    bend: float  # displacement amplitude (voxels) of the label borders
    unaligned: tuple[tuple[int, int, int], tuple[int, int, int]]  # origin, size
    repeats: int
    seed: int = 20240611


LABEL_SCALES = {
    "full": LabelParams((512, 512, 256), (24, 24, 12), 6.0, ((37, 59, 13), (400, 400, 200)), 5),
    "small": LabelParams((128, 128, 128), (16, 16, 8), 4.0, ((17, 9, 5), (100, 90, 70)), 3),
}


def label_slab(p: LabelParams, read_scale: Scale, ids: np.ndarray, z0: int, z1: int):
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


class Labels:
    """The cached label data for one scale: the labels themselves and CloudVolume's jpeg
    layer (of the EM voxels) and compressed_segmentation layer (of the labels), both without
    transport compression; ``ensure_raw`` adds a raw-encoded copy of the labels."""

    def __init__(self, root: Path, p: LabelParams) -> None:
        self.root, self.p = root, p
        self.jpeg, self.cseg, self.raw = root / "jpeg", root / "cseg", root / "seg_raw"
        self.labels_path = root / "labels.npy"
        self.stamp_path = root / "stamp.json"

    def stamp(self) -> dict:
        return json.loads(json.dumps({"v": LABELS_GENERATOR_VERSION, **self.p.__dict__}))

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
        from cloudvolume import CloudVolume

        p = self.p
        nx, ny, nz = p.shape
        rs = Scale(shape=p.shape, seed=p.seed)
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
                chunk_size=list(LABEL_CHUNKS),
                volume_size=list(p.shape),
                compressed_segmentation_block_size=list(CSEG_BLOCK),
            )
            vol = CloudVolume(
                f"file://{path}", info=info, compress=False, progress=False, parallel=1
            )
            vol.commit_info()
            vols[encoding] = vol
        for z0 in range(0, nz, LABEL_CHUNKS[2]):
            z1 = min(nz, z0 + LABEL_CHUNKS[2])
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

    def ensure_raw(self) -> Path:
        """CloudVolume's uncompressed raw-encoded copy of the labels (once)."""
        from cloudvolume import CloudVolume

        path = self.raw
        if (path / "done").exists():
            return path
        labels = self.labels()
        info = CloudVolume.create_new_info(
            num_channels=1,
            layer_type="segmentation",
            data_type="uint64",
            encoding="raw",
            resolution=[4, 4, 40],
            voxel_offset=[0, 0, 0],
            chunk_size=list(LABEL_CHUNKS),
            volume_size=list(labels.shape),
        )
        vol = CloudVolume(f"file://{path}", info=info, compress=False, progress=False, parallel=1)
        vol.commit_info()
        nx, ny, nz = labels.shape
        step = LABEL_CHUNKS[2]
        for z0 in range(0, nz, step):
            vol[0:nx, 0:ny, z0 : z0 + step] = np.asarray(labels[:, :, z0 : z0 + step])
        (path / "done").touch()
        return path
