"""``ingest``: image stacks and arrays to a pyramided layer that neuroglancer can show.

The base scale is written in slabs: all of x and y, and in z one storage unit's height (a
chunk's, or a shard's when sharded, so that every write covers whole units and nothing is
read back and merged). Two slabs are in flight at once, each read by a pool of threads
(tifffile, Pillow and NumPy release the GIL while decoding and copying) and then written by
the engine, which encodes its chunks in parallel; memory is those slabs, whatever the
stack's depth. The pyramid follows, level by level (``BigArray.downsample``).

Resuming: each slab is written by one call, and chunk and shard writes are atomic, so a
slab whose storage units all exist (asked of the store, nothing decoded) is finished; a
killed run leaves at most the slabs it was writing unfinished, and ``resume`` rewrites only
those. The pyramid resumes the same way (``downsample(resume=True)``).
"""

from __future__ import annotations

import json
import math
import os
import queue
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._bigarray import BigArray
from ._blocks import Box, chunk_count, run_parallel
from ._progress import progress_bar
from ._pyramid import _put_scale, _scale_entry
from ._reduce import METHODS, reduce_blocks
from ._sources import ArraySource, Source, open_source
from .errors import InvalidArgumentError, LayerExistsError, LayerNotFoundError

#: Memory the slabs in flight may take together (unless one slab alone is larger).
SLAB_BUDGET = 1 << 30
#: Slabs read or written at once: one read while another is written.
SLABS_IN_FLIGHT = 2
#: ``sharding="auto"`` shards a base scale larger than this (uncompressed): past about a
#: thousand chunk files, listing, copying and deleting them costs more than range reads.
SHARD_ABOVE = 1 << 30
#: Uncompressed bytes per shard at most (as ``BigArray.create``'s ``sharding="auto"``).
SHARD_BYTES = 256 << 20
#: The gzip level ingest writes Precomputed chunks with unless told otherwise: gzip is most
#: of ingest's CPU time, and at level 1 an ingest takes less than half the CPU time it
#: takes at level 6 for about 3 % more bytes (bench_ingest); plain writes keep level 6.
GZIP_LEVEL = 1
#: A Zarr image's gzip level unless told otherwise (zarr-python's ``GZip`` default).
ZARR_GZIP_LEVEL = 5

NEUROGLANCER = "https://neuroglancer-demo.appspot.com/"
#: Files that make a directory a layer (Precomputed, Zarr v3, Zarr v2 array or group).
_LAYER_FILES = ("info", "zarr.json", ".zarray", ".zgroup")


def ingest(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | np.ndarray,
    dst: str,
    *,
    format: str | None = None,
    chunks: tuple[int, int, int] | None = None,
    sharding: Any = "auto",
    encoding: str | None = None,
    compression: str | None = "auto",
    compress_level: int | None = None,
    resolution: tuple[float, float, float] | None = None,
    offset: tuple[int, int, int] = (0, 0, 0),
    mips: int | str = "auto",
    factor: tuple[int, int, int] = (2, 2, 1),
    layer_type: str | None = None,
    method: str | None = None,
    axes: str = "zyx",
    jobs: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> BigArray:
    """Writes an image stack (or an array, or another layer) into a new pyramided layer.

    Parameters
    ----------
    sources : str, path, list of them, or ndarray
        A directory or glob of 2D slices (TIFF, PNG, JPEG; sorted naturally, ``z2``
        before ``z10``), a list of slice files in z order, a multi-page TIFF (BigTIFF,
        OME-TIFF), a ``.npy`` file (memory-mapped), an HDF5 dataset (``file.h5:/path``, or
        ``file.h5`` holding one dataset), a NumPy array, or the URL of an existing layer
        (Precomputed or Zarr: then it is copied and pyramided). A slice ``(y, x[, c])``
        becomes the plane ``z`` of ``(x, y, z[, c])``; arrays are ``(z, y, x[, c])``
        unless ``axes="xyz"``.
    dst : str
        The new layer's URL (local path, ``gs://``, ``s3://``, ...).
    format : {None, "precomputed", "zarr"}
        Precomputed (default), or an OME-Zarr image (``(c,) z, y, x`` arrays, unsharded).
    chunks : (int, int, int), optional
        Default: 128×128×32 for 1- and 2-byte voxels, 64×64×32 for wider ones, clipped to
        the stack.
    sharding : "auto", bool or dict
        ``"auto"`` shards a base scale over 1 GiB (uncompressed); True always, False
        never; a dict is the ``sharding`` spec itself. Ingest picks identity-hashed shards
        of up to 256 MiB whose z height keeps two slabs within 1 GiB.
    encoding : str, optional
        Default ``compressed_segmentation`` for segmentation, ``raw`` (gzip-compressed,
        as CloudVolume writes) for images.
    compression : {"auto", "gzip", "zstd", None}
        Transport compression of unsharded chunks (see :class:`BigArray`).
    compress_level : int, optional
        The gzip level, as CloudVolume's ``compress_level``. Precomputed: 1 (fastest) to 12
        (smallest), for gzipped chunks, shard data and minishard indexes; default
        :data:`GZIP_LEVEL` (1: gzip is most of an ingest's work, and at level 1 an ingest
        takes less than half the CPU time it takes at the library's default 6, for about
        3 % more bytes).
        It is a write-time choice, not stored in the ``info``: later writes through other
        handles use theirs. Zarr: the ``gzip`` codec's level in the array's metadata, 1
        to 9 (default 5).
    resolution : (float, float, float), optional
        nm per voxel; default the OME-TIFF's physical sizes, else 1, 1, 1.
    offset : (int, int, int)
        Voxel offset of the first voxel.
    mips : int or "auto"
        Pyramid levels below the base; ``"auto"``: until one chunk covers x and y.
    factor : (int, int, int)
        Reduction per pyramid level (default 2, 2, 1).
    layer_type : {"image", "segmentation"}, optional
        Default: segmentation for one-channel uint32 and uint64 stacks, image otherwise.
    method : str, optional
        Pyramid reduction; default ``mode`` for segmentation, ``average`` for images.
    axes : {"zyx", "xyz"}
        How an array source's axes map to the layer's.
    jobs : int, optional
        Threads reading slices, and blocks computed at once by the pyramid (default: the
        CPU count).
    resume : bool
        Finish an interrupted ingest into ``dst``: slabs whose chunks all exist are kept.
    overwrite : bool
        Replace an existing layer at ``dst``.
    progress : bool
        Progress bars on stderr (only on a terminal).
    storage_options : dict, optional
        As for :class:`BigArray`.

    Returns
    -------
    BigArray
        The base scale (mip 0) of the new layer.

    Raises
    ------
    LayerExistsError
        ``dst`` exists and neither ``resume`` nor ``overwrite`` is set.
    InvalidArgumentError
        Unreadable files, slices of different sizes or types (the first odd file named), a
        missing optional package (named with the extra that brings it).
    """
    if resume and overwrite:
        raise InvalidArgumentError("resume and overwrite exclude each other")
    if format not in (None, "precomputed", "zarr"):
        raise InvalidArgumentError(f"format={format!r}: ingest writes 'precomputed' or 'zarr'")
    layer = _layer_source(sources)
    if layer is not None and (resolution is not None or any(offset) or layer_type is not None):
        raise InvalidArgumentError(
            f"{layer.url} is a layer: it keeps its own resolution, offset and type "
            "(resolution=, offset= and layer_type= are for files and arrays)"
        )
    level = _level(compress_level, format)
    if layer is not None and format == "zarr" and compress_level is not None:
        raise InvalidArgumentError(
            f"{layer.url} is a layer: a Zarr copy of it takes its codecs from compression= "
            "(compress_level= is for Precomputed destinations and Zarr ingests of files)"
        )
    if layer is not None:
        return _from_layer(layer, dst, format, chunks, sharding, encoding, mips, factor,
                           method, jobs, resume, overwrite, progress, storage_options,
                           level)  # fmt: skip
    if isinstance(sources, np.ndarray):
        source: Source = ArraySource(sources, "array", axes)
    else:
        names = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        if not names:
            raise InvalidArgumentError("no source given")
        source = open_source([os.fspath(n) for n in names], axes)
    try:
        return _from_source(source, dst, format, chunks, sharding, encoding, compression,
                            level, resolution, offset, mips, factor, layer_type, method, jobs,
                            resume, overwrite, progress, storage_options)  # fmt: skip
    finally:
        source.close()


def _level(compress_level: int | None, format: str | None) -> int:
    """The gzip level to write with: the one asked for (checked here for Zarr, whose
    codec takes 1 to 9; the engine checks Precomputed's) or the format's default."""
    if compress_level is None:
        return ZARR_GZIP_LEVEL if format == "zarr" else GZIP_LEVEL
    if format == "zarr" and (
        isinstance(compress_level, bool)
        or not isinstance(compress_level, int)
        or not 1 <= compress_level <= 9
    ):
        raise InvalidArgumentError(
            f"compress_level={compress_level!r}: a Zarr gzip level is 1 (fastest) to 9 (smallest)"
        )
    return compress_level


def _layer_source(sources: Any) -> BigArray | None:
    """The layer ``sources`` names, if it is one URL or directory holding a layer."""
    if isinstance(sources, np.ndarray):
        return None
    if not isinstance(sources, (str, os.PathLike)):
        if len(sources) != 1:
            return None
        sources = sources[0]
    text = os.fspath(sources)
    local = "://" not in text or text.startswith("file://")
    path = text[len("file://") :] if text.startswith("file://") else text
    if local and not (
        os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in _LAYER_FILES)
    ):
        return None
    return BigArray(text)


def _default_chunks(shape: tuple[int, int, int], voxel_bytes: int) -> tuple[int, int, int]:
    xy = 128 if voxel_bytes <= 2 else 64
    return (min(xy, shape[0]), min(xy, shape[1]), min(32, shape[2]))


def _morton_axes(grid: Sequence[int]) -> list[int]:
    """Which axis each bit of a chunk's compressed Morton code comes from, lowest first
    (neuroglancer's ``compressed_morton_code``: axes take turns while they have bits)."""
    bits = [max(0, math.ceil(math.log2(g))) if g > 1 else 0 for g in grid]
    order = []
    for i in range(max(bits, default=0)):
        order += [a for a in range(3) if i < bits[a]]
    return order


def shard_spec(
    shape: tuple[int, int, int],
    chunks: tuple[int, int, int],
    voxel_bytes: int,
    encoding: str,
    budget: int = SLAB_BUDGET,
) -> tuple[dict[str, Any], int]:
    """An identity-hashed ``sharding`` spec for a stack, and its shards' height in chunks.

    A shard holds ``2**k`` chunks, a block of the chunk grid whose shape the Morton order
    decides; ``k`` is the largest with shards of at most ``SHARD_BYTES`` (uncompressed) and
    ``SLABS_IN_FLIGHT`` slabs of one shard's height within ``budget``."""
    grid = [math.ceil(s / c) for s, c in zip(shape, chunks, strict=True)]
    order = _morton_axes(grid)
    chunk_bytes = math.prod(chunks) * voxel_bytes
    plane_bytes = shape[0] * shape[1] * chunks[2] * voxel_bytes
    k = len(order)
    while k > 0:
        z_chunks = 2 ** order[:k].count(2)
        fits = (2**k) * chunk_bytes <= SHARD_BYTES
        if fits and SLABS_IN_FLIGHT * plane_bytes * z_chunks <= budget:
            break
        k -= 1
    minishard = min(6, k)
    spec = {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": k - minishard,
        "hash": "identity",
        "minishard_bits": minishard,
        "shard_bits": len(order) - k,
        "minishard_index_encoding": "gzip",
        "data_encoding": "raw" if encoding in ("jpeg", "png", "jxl") else "gzip",
    }
    return spec, 2 ** order[:k].count(2)


def _shard_height(spec: dict[str, Any], shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Chunks per shard along z for an identity-hashed spec (else 1: any write may merge)."""
    if spec.get("hash") != "identity":
        return 1
    grid = [math.ceil(s / c) for s, c in zip(shape[:3], chunks[:3], strict=True)]
    k = int(spec.get("preshift_bits", 0)) + int(spec.get("minishard_bits", 0))
    return 2 ** _morton_axes(grid)[:k].count(2)


def _auto_mips(shape: tuple[int, ...], chunks: tuple[int, ...], factor: Sequence[int]) -> int:
    """Levels until one chunk covers the level in every axis that shrinks."""
    size = list(shape[:3])
    n = 0
    while any(s > c and f > 1 for s, c, f in zip(size, chunks, factor, strict=True)) and n < 32:
        size = [math.ceil(s / f) for s, f in zip(size, factor, strict=True)]
        n += 1
    return n


def _exists(dst: str, storage_options: dict[str, Any] | None) -> BigArray | None:
    try:
        return BigArray(dst, storage_options=storage_options)
    except LayerNotFoundError:
        return None


def _refuse_existing(dst: str) -> LayerExistsError:
    return LayerExistsError(
        f"{dst}: a layer already exists here; pass resume=True (--resume) to finish an "
        "interrupted ingest or overwrite=True (--overwrite) to replace it"
    )


def _from_source(
    source: Source,
    dst: str,
    format: str | None,
    chunks: tuple[int, int, int] | None,
    sharding: Any,
    encoding: str | None,
    compression: str | None,
    level: int,
    resolution: tuple[float, float, float] | None,
    offset: tuple[int, int, int],
    mips: int | str,
    factor: tuple[int, int, int],
    layer_type: str | None,
    method: str | None,
    jobs: int | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    storage_options: dict[str, Any] | None,
) -> BigArray:
    shape, channels, dtype = source.shape, source.channels, source.dtype
    voxel_bytes = dtype.itemsize * channels
    if layer_type is None:
        labels = channels == 1 and dtype in (np.dtype("uint32"), np.dtype("uint64"))
        layer_type = "segmentation" if labels else "image"
    if layer_type not in ("image", "segmentation"):
        raise InvalidArgumentError(f"layer_type={layer_type!r}: 'image' or 'segmentation'")
    method = method or ("mode" if layer_type == "segmentation" else "average")
    if encoding is None:
        encoding = "compressed_segmentation" if layer_type == "segmentation" else "raw"
    chunks = tuple(int(c) for c in chunks) if chunks else _default_chunks(shape, voxel_bytes)  # type: ignore[assignment]
    resolution = tuple(resolution or source.resolution or (1.0, 1.0, 1.0))  # type: ignore[assignment]
    offset = tuple(int(o) for o in offset)  # type: ignore[assignment]
    assert chunks is not None and resolution is not None
    total = math.prod(shape) * voxel_bytes
    spec: Any = None
    if format == "zarr":
        if sharding not in ("auto", None, False):
            raise InvalidArgumentError("format='zarr': ingest writes unsharded Zarr arrays")
        if any(offset):
            raise InvalidArgumentError("format='zarr': a Zarr array starts at 0 (no offset)")
    elif isinstance(sharding, dict):
        spec = sharding
    elif sharding is True or (sharding == "auto" and total > SHARD_ABOVE):
        spec, _ = shard_spec(shape, chunks, voxel_bytes, encoding)
    elif sharding not in ("auto", None, False):
        raise InvalidArgumentError(f"sharding={sharding!r}: 'auto', True, False or a dict")
    height = chunks[2] * (_shard_height(spec, shape, chunks) if spec else 1)

    existing = _exists(dst, storage_options)
    if existing is not None and not (resume or overwrite):
        raise _refuse_existing(dst)
    if existing is not None and resume:
        out = existing if format == "zarr" else existing.reopen(compress_level=level)
        _check_same(out, dst, shape, channels, dtype, chunks, offset, format)
    else:
        out = _create(dst, format, shape, channels, dtype, chunks, offset, resolution, encoding,
                      compression, level, layer_type, spec, overwrite,
                      storage_options)  # fmt: skip

    slabs = list(_slabs(shape, offset, height))
    levels = _auto_mips(shape, chunks, factor) if mips == "auto" else int(mips)  # type: ignore[arg-type]
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    # With no reduction in z, each slab's pyramid is computed from the slab in memory and
    # written with it (level k's chunks are no taller than the base's, so the slab covers
    # them whole): the base is never read back and decoded.
    fused = format != "zarr" and levels > 0 and factor[2] == 1
    pyramid = _add_levels(out, levels, factor) if fused else []
    handles = [out, *pyramid]
    todo = [s for s in slabs if not (resume and all(_complete(h, s, format) for h in handles))]
    reads = ThreadPoolExecutor(jobs or os.cpu_count() or 1, thread_name_prefix="bigarrays-read")
    # The slabs' memory is allocated once and reused: freeing and allocating slabs of tens
    # of MB over and over leaves the allocator holding several times that.
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(min(SLABS_IN_FLIGHT, len(todo))):
        buffers.put(np.empty(shape[0] * shape[1] * height * channels, dtype))

    def work(box: Box) -> tuple[int, int]:
        (_, _, z0), (_, _, z1) = box
        n = z1 - z0
        flat = buffers.get()
        try:
            dims = shape[:2] + (n,) + ((channels,) if channels > 1 else ())
            slab = np.ndarray(dims, dtype, buffer=flat, order="F")
            source.read(z0 - offset[2], z1 - offset[2], slab, reads)
            if format == "zarr":
                # The array's axes are (c,) z, y, x: the Fortran (x, y, z, c) slab transposed.
                out[(slice(None),) * (channels > 1) + (slice(z0, z1),)] = slab.T
            else:
                out[_slices(box)] = slab
                _cascade(slab, box, pyramid, factor, method, channels)
        finally:
            buffers.put(flat)
        return slab.nbytes, n

    plane = shape[0] * shape[1] * voxel_bytes
    with progress_bar(progress, "ingest", total, shape[2], unit="slices") as bar:
        bar(plane * (shape[2] - sum(b[1][2] - b[0][2] for b in todo)), 0)
        try:
            run_parallel(iter(todo), work, SLABS_IN_FLIGHT, bar)
        finally:
            reads.shutdown(wait=True, cancel_futures=True)
    if levels > 0 and not fused:
        out.downsample(factor, levels, method, resume=resume, jobs=jobs, progress=progress)
    return out.reopen(mip=0)


def _add_levels(out: BigArray, levels: int, factor: tuple[int, int, int]) -> list[BigArray]:
    """Adds ``levels`` scales below the base to the ``info`` (the entries ``downsample``
    writes, so that CloudVolume's ``add_scale`` agrees) and returns handles on them."""
    info = out.info
    scale0 = info["scales"][0]
    indices = [
        _put_scale(info, _scale_entry(scale0, [f**level for f in factor]))
        for level in range(1, levels + 1)
    ]
    out.update_info(info)
    return [out.reopen(mip=i) for i in indices]


def _cascade(
    slab: np.ndarray,
    box: Box,
    pyramid: list[BigArray],
    factor: tuple[int, int, int],
    method: str,
    channels: int,
) -> None:
    """Writes the slab's part of each pyramid level, each level reduced from the one above
    (as ``downsample`` computes it: output voxel ``i`` summarises input voxels
    ``[i * f, (i + 1) * f)`` in absolute coordinates, voxels outside the layer not counted)."""
    cur = slab if channels > 1 else slab[..., None]
    lo, hi = np.array(box[0]), np.array(box[1])
    f = np.array(factor)
    for level in pyramid:
        new_lo, new_hi = lo // f, -(-hi // f)
        want_lo, want_hi = new_lo * f, new_hi * f
        if (want_lo == lo).all() and (want_hi == hi).all():
            # Every voxel counts: a broadcast mask costs no memory.
            data, valid = cur, np.broadcast_to(np.True_, cur.shape[:3])
        else:
            shape = tuple(int(n) for n in want_hi - want_lo)
            inner = _between(lo - want_lo, hi - want_lo)
            data = np.zeros(shape + (cur.shape[3],), cur.dtype, order="F")
            data[inner] = cur
            valid = np.zeros(shape, bool, order="F")
            valid[inner] = True
        reduced = reduce_blocks(data, valid, factor, method)
        del data, valid
        # Clipped to the level's bounds (an odd voxel offset can reach one voxel past them).
        start = np.maximum(new_lo, [b.start for b in level.bounds[:3]])
        stop = np.minimum(new_hi, [b.stop for b in level.bounds[:3]])
        part = reduced[_between(start - new_lo, stop - new_lo)]
        level[_between(start, stop)] = part if channels > 1 else part[..., 0]
        cur, lo, hi = reduced, new_lo, new_hi


def _create(
    dst: str,
    format: str | None,
    shape: tuple[int, int, int],
    channels: int,
    dtype: np.dtype,
    chunks: tuple[int, int, int],
    offset: tuple[int, int, int],
    resolution: tuple[float, float, float],
    encoding: str,
    compression: str | None,
    level: int,
    layer_type: str,
    spec: Any,
    overwrite: bool,
    storage_options: dict[str, Any] | None,
) -> BigArray:
    if format == "zarr":
        names = ["z", "y", "x"]
        zshape, zchunks, scale = list(shape[::-1]), list(chunks[::-1]), list(resolution[::-1])
        if channels > 1:
            names, zshape, zchunks = ["c", *names], [channels, *zshape], [channels, *zchunks]
            scale = [1.0, *scale]
        axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in names]
        if channels > 1:
            axes[0] = {"name": "c", "type": "channel"}
        little: dict[str, Any] = {"name": "bytes"}
        if dtype.itemsize > 1:
            little["configuration"] = {"endian": "little"}
        gzip = {"name": "gzip", "configuration": {"level": level}}
        return BigArray.create(
            dst, format="zarr", shape=tuple(zshape), dtype=dtype, chunks=tuple(zchunks),
            codecs=[little, gzip], ome=True, axes=axes, scale=scale, overwrite=overwrite,
            storage_options=storage_options,
        )  # fmt: skip
    return BigArray.create(
        dst,
        shape=shape + ((channels,) if channels > 1 else ()),
        dtype=dtype,
        chunks=chunks,
        voxel_offset=offset,
        resolution=resolution,
        encoding=encoding,
        compression=compression,
        compress_level=level,
        layer_type=layer_type,
        sharding=spec,
        overwrite=overwrite,
        storage_options=storage_options,
    )


def _check_same(
    out: BigArray,
    dst: str,
    shape: tuple[int, int, int],
    channels: int,
    dtype: np.dtype,
    chunks: tuple[int, int, int],
    offset: tuple[int, int, int],
    format: str | None,
) -> None:
    """Refuses to resume into a layer that another stack (or other options) made."""
    have: tuple[Any, ...]
    want: tuple[Any, ...]
    if format == "zarr":
        want_shape = ((channels,) if channels > 1 else ()) + shape[::-1]
        have = (tuple(out.shape), out.dtype, (0, 0, 0))
        want = (want_shape, dtype, offset)
        got_chunks, want_chunks = tuple(out.chunks)[-3:], chunks[::-1]
    else:
        have = (tuple(out.shape[:3]), out.dtype, tuple(out.voxel_offset))
        want = (shape, dtype, offset)
        got_chunks, want_chunks = tuple(out.chunks), chunks
        if out.num_channels != channels:
            have, want = (*have, out.num_channels), (*want, channels)
    if have != want or tuple(got_chunks) != tuple(want_chunks):
        raise InvalidArgumentError(
            f"{dst}: cannot resume: it holds shape/dtype/offset {have} with chunks "
            f"{got_chunks}, this ingest makes {want} with chunks {want_chunks} "
            "(same sources and options as the interrupted run, or overwrite)"
        )


def _slabs(shape: tuple[int, int, int], offset: tuple[int, int, int], height: int) -> Iterator[Box]:
    lo, hi = offset, tuple(o + s for o, s in zip(offset, shape, strict=True))
    for z0 in range(lo[2], hi[2], height):
        yield (lo[0], lo[1], z0), (hi[0], hi[1], min(z0 + height, hi[2]))


def _complete(out: BigArray, box: Box, format: str | None) -> bool:
    """Whether every storage chunk of the slab exists with a nonzero size."""
    key = _slices(box)
    if format == "zarr":
        # A Zarr handle lists its chunks in its own axes (..., z, y, x), from 0 (no voxel
        # offset).
        z0, z1 = box[0][2], box[1][2]
        key = (slice(None),) * (out.ndim - 3) + (slice(z0, z1), slice(None), slice(None))
        grid = tuple(out.chunks)[-3:][::-1]
        want = chunk_count(box, (0, 0, 0), grid)
    else:
        want = chunk_count(box, out.voxel_offset, out.chunks)
    units = out.stored_chunks(key)
    if units is None:
        return False
    return sum(1 for _, _, n in units if n > 0) == want


def _between(lo: Any, hi: Any) -> tuple[slice, ...]:
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(box[0], box[1], strict=True))


def _from_layer(
    src: BigArray,
    dst: str,
    format: str | None,
    chunks: tuple[int, int, int] | None,
    sharding: Any,
    encoding: str | None,
    mips: int | str,
    factor: tuple[int, int, int],
    method: str | None,
    jobs: int | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    storage_options: dict[str, Any] | None,
    level: int,
) -> BigArray:
    """An existing layer: copied (``copy_to``, which resumes by chunk) and pyramided."""
    # A Zarr destination's gzip level is in its codecs, which copy_to derives.
    precomputed = format != "zarr"
    if _exists(dst, storage_options) is not None and not (resume or overwrite):
        raise _refuse_existing(dst)
    shard: Any = None if sharding in ("auto", False, None) else sharding
    if shard is True:
        shard = "auto"
    out = src.copy_to(
        dst,
        encoding=encoding,
        compress_level=level if precomputed else None,
        sharding=shard,
        chunks=chunks,
        resume=resume,
        jobs=jobs,
        progress=progress,
        storage_options=storage_options,
        format=format,
        ome=format == "zarr",
        overwrite=overwrite,
    )
    base = BigArray(
        dst, storage_options=storage_options, compress_level=level if precomputed else None
    )
    chunk = tuple(base.chunks)[-3:][:: -1 if format == "zarr" else 1]
    size = tuple(base.shape)[-3:][::-1] if format == "zarr" else tuple(base.shape[:3])
    levels = _auto_mips(size, chunk, factor) if mips == "auto" else int(mips)  # type: ignore[arg-type]
    if levels > 0:
        base.downsample(factor, levels, method, resume=resume, jobs=jobs, progress=progress)
    return out.reopen(mip=0)


# -- the summary and the link ---------------------------------------------------------


def summary(
    url: str,
    seconds: float,
    serve_port: int = 8000,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """What ``ingest`` wrote at ``url``: shape, chunks, mips, bytes, compression ratio, time,
    and a neuroglancer link."""
    base = BigArray(url, storage_options=storage_options)
    lines = [f"wrote {url} ({base.format}, {base.dtype}, {base.num_channels} channel(s))"]
    voxels = stored = 0
    for mip in range(base.num_mips):
        level = base if mip == 0 else base.reopen(mip=mip)
        units = level.stored_chunks() or []
        size = sum(n for _, _, n in units)
        nbytes = math.prod(level.shape) * level.dtype.itemsize
        voxels, stored = voxels + nbytes, stored + size
        lines.append(
            f"  mip {mip}: {_x(level.shape)}, chunks {_x(level.chunks)}, {_mb(size)} stored"
        )
    ratio = f"{voxels / stored:.2f}:1" if stored else "n/a"
    rate = f", {_mb(voxels / seconds)}/s" if seconds > 0 else ""
    lines.append(
        f"  {_mb(voxels)} of voxels in {_mb(stored)} stored (compression {ratio}), "
        f"{seconds:.1f} s{rate}"
    )
    lines += neuroglancer_hint(url, base, serve_port)
    return "\n".join(lines)


def neuroglancer_hint(url: str, base: BigArray, port: int = 8000) -> list[str]:
    """How to look at the layer: ``bigarrays serve`` for a local one, the bucket's public
    address for gs:// and s3://."""
    kind = "zarr" if base.format == "zarr" else "precomputed"
    layer_type = "segmentation" if base.info.get("type") == "segmentation" else "image"
    parsed = urllib.parse.urlparse(url)
    lines = []
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else url).resolve()
        source = f"{kind}://http://127.0.0.1:{port}/{path.name}"
        lines.append(f"view it: bigarrays serve {path.parent} --port {port}, then open")
    elif parsed.scheme in ("gs", "s3"):
        public = (
            f"https://storage.googleapis.com/{parsed.netloc}{parsed.path}"
            if parsed.scheme == "gs"
            else f"https://{parsed.netloc}.s3.amazonaws.com{parsed.path}"
        )
        source = f"{kind}://{url}"
        lines.append(f"public URL (if the bucket is readable): {public}; neuroglancer link:")
    elif parsed.scheme in ("http", "https"):
        source = f"{kind}://{url}"
        lines.append("neuroglancer link:")
    else:
        return []
    name = Path(parsed.path.rstrip("/") or url).name or "layer"
    state = {"layers": [{"type": layer_type, "source": source, "name": name}]}
    fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")
    lines.append(f"  {NEUROGLANCER}#!{fragment}")
    return lines


def _x(values: Sequence[Any]) -> str:
    return "×".join(str(v) for v in values)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def timed(*args: Any, **kwargs: Any) -> tuple[BigArray, float]:
    """``ingest`` and the seconds it took."""
    t = time.perf_counter()
    out = ingest(*args, **kwargs)
    return out, time.perf_counter() - t
