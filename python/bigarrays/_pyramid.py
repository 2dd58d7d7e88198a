"""Multi-resolution pyramids: new scales in the ``info`` and their voxels, level by level.

The scale entries are the ones CloudVolume's ``add_scale`` computes (so either tool can
extend the other's pyramid): for a cumulative factor ``F`` relative to scale 0,
``voxel_offset = floor(offset0 / F)``, ``size = ceil(size0 / F)``, ``resolution = res0 * F``,
chunk sizes the divisors of scale 0's closest to 64, and the key the resolution joined by
``_``. Each level is computed from the one above it, block by block, so memory stays
bounded whatever the layer's size.

Resuming: the new scales go into ``info`` before any voxel is computed (handles need them
to write), so an interrupted run leaves them partly filled. ``resume=True`` skips the
blocks whose destination chunks all exist (asked of the store, nothing decoded): each block
is written whole by one call, so a block with all its chunks is a finished block, save
for a chunk cut short by a non-atomic store; chunk writes are atomic in every store but
H5s (which downsample does not write).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._bigarray import BigArray
from ._blocks import (
    Box,
    aligned_blocks,
    block_shape,
    cells_touching,
    chunk_count,
    chunk_pieces,
    intersect,
    run_parallel,
)
from ._ome import next_level
from ._progress import Advance
from ._reduce import METHODS, reduce_blocks
from .errors import InvalidArgumentError


def default_method(a: BigArray) -> str:
    """``mode`` for segmentation layers, ``average`` for images."""
    return "mode" if a.info.get("type") == "segmentation" else "average"


def downsample(
    a: BigArray,
    factor: tuple[int, int, int],
    mips: int,
    method: str | None,
    jobs: int | None,
    progress: Advance,
    resume: bool = False,
) -> list[BigArray]:
    """Adds ``mips`` scales below ``a``'s and fills them; returns handles on the new scales.

    With ``resume``, blocks whose destination chunks all exist are kept as they are."""
    if a.format == "zarr":
        return _downsample_zarr(a, factor, mips, method, jobs, progress, resume)
    if a.format != "precomputed":
        raise InvalidArgumentError(
            f"downsample adds scales to precomputed layers; {a.url} is {a.format!r} "
            "(copy it to a precomputed layer first: a.copy_to(url))"
        )
    factor = _check_factor(factor)
    method = method or default_method(a)
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if mips < 1:
        raise InvalidArgumentError(f"mips must be at least 1, got {mips}")
    info = a.info
    scale0 = info["scales"][0]
    base = [round(r / r0) for r, r0 in zip(a.resolution, scale0["resolution"], strict=True)]
    indices = []
    existed = []
    for level in range(1, mips + 1):
        total = [b * f**level for b, f in zip(base, factor, strict=True)]
        n = len(info["scales"])
        indices.append(_put_scale(info, _scale_entry(scale0, total)))
        existed.append(indices[-1] < n)
    keys = [info["scales"][i]["key"] for i in indices]
    a.update_info(info)
    # Other writers' scales added meanwhile are kept, before ours (update_info merges with
    # what is stored): our scales are found by key in the info as stored.
    stored = [s["key"] for s in a.info["scales"]]
    indices = [stored.index(k) for k in keys]
    levels = [a] + [a.reopen(mip=i) for i in indices]
    for src, dst, old in zip(levels, levels[1:], existed, strict=False):
        step = tuple(round(d / s) for d, s in zip(dst.resolution, src.resolution, strict=True))
        # Blocks without source data are skipped only where the scale holds nothing from
        # before this computation: a replaced scale's old chunks there must be overwritten.
        skip_empty = resume or not old
        _fill(src, dst, step, method, jobs, progress, resume, skip_empty)
    return levels[1:]


def _downsample_zarr(
    a: BigArray,
    factor: tuple[int, int, int],
    mips: int,
    method: str | None,
    jobs: int | None,
    progress: Advance,
    resume: bool,
) -> list[BigArray]:
    """Adds ``mips`` levels after ``a`` (a level of an OME-Zarr image, in its (x, y, z, c)
    view) to the image's ``multiscales`` and fills them. Level ``k`` goes to the image's
    dataset ``k`` where there is one (replacing it), else to a new array at path ``"k"``;
    each is chunked and encoded as ``a``. Returns the new levels in their own axes."""
    factor = _check_factor(factor)
    method = method or "average"
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if mips < 1:
        raise InvalidArgumentError(f"mips must be at least 1, got {mips}")
    found = a.ome_image()
    if found is None:
        raise InvalidArgumentError(
            f"{a.url} is a plain Zarr array, not a level of an OME-Zarr image: downsample "
            "writes an image's levels. Create an image (BigArray.create(url, format='zarr', "
            "ome=True, ...)) and copy this array into it"
        )
    attributes, index = found
    multiscale = attributes.get("ome", attributes)["multiscales"][0]
    axes = multiscale["axes"]
    nd = a.reopen()
    ndim = len(nd.shape)
    # The view's x, y, z are the array's last three axes (reversed).
    factors = [1] * ndim
    for k, f in enumerate(factor):
        if f == 1:
            continue
        axis = ndim - 1 - k
        described = axes[axis] if axis >= 0 else None
        kind = described.get("type") if isinstance(described, dict) else None
        if described is None or kind not in (None, "space"):
            name = "xyz"[k]
            raise InvalidArgumentError(
                f"factor {factor}: the view's {name} axis is "
                + ("missing" if described is None else f"the image's {kind} axis {axis}")
                + f" in {a.url}; downsample only space axes (give {name} a factor of 1)"
            )
        factors[axis] = f
    shape = list(nd.shape)
    scale = [ax["scale"] for ax in nd.axes]
    translation = [ax["translation"] for ax in nd.axes]
    levels = []
    for k in range(index + 1, index + mips + 1):
        shape, scale, translation = next_level(shape, scale, translation, factors)
        kept = False
        if resume and k < len(multiscale["datasets"]):
            kept = list(a.reopen(mip=k).shape) == shape
        if not kept:
            a.add_ome_level(k, shape, scale, translation)
        levels.append(a.reopen(mip=k))
    views = [a] + [level._xyz() for level in levels]
    for src, dst in zip(views, views[1:], strict=False):
        # Every new level starts empty (its old chunks removed): blocks without source data
        # stay unwritten and read as the fill value, as Precomputed's new scales do.
        _fill(src, dst, factor, method, jobs, progress, resume, True)
    return levels


def _fed_chunks(
    src: BigArray,
    dst: BigArray,
    box: Box,
    step: tuple[int, ...],
    have_lo: np.ndarray,
    have_hi: np.ndarray,
) -> list[Box]:
    """The pieces of ``box`` (one per destination chunk) that a chunk stored in ``src``
    feeds: destination voxel ``i`` summarises source voxels ``[i * step, (i + 1) * step)``."""
    have = tuple(slice(int(a), int(b)) for a, b in zip(have_lo, have_hi, strict=True))
    fed: set[tuple[int, int, int]] = set()
    for lo, hi, _ in src.stored_chunks(have) or []:
        foot = (
            tuple(a // s for a, s in zip(lo, step, strict=True)),
            tuple(-(-b // s) for b, s in zip(hi, step, strict=True)),
        )
        inside = intersect(foot, box)  # type: ignore[arg-type]
        if inside is not None:
            fed |= cells_touching(inside, dst.voxel_offset, dst.chunks)
    pieces = chunk_pieces(box, dst.voxel_offset, dst.chunks)
    return [pieces[c] for c in sorted(fed) if c in pieces]


def _check_factor(factor: Any) -> tuple[int, int, int]:
    f = tuple(int(x) for x in factor)
    if len(f) != 3 or min(f) < 1 or f != tuple(factor):
        raise InvalidArgumentError(f"factor must be three positive integers, got {factor!r}")
    return (f[0], f[1], f[2])


def _precision(x: Any) -> int:
    text = str(x)
    return len(text.split(".")[1]) if "." in text else 0


def _closest_divisor(n: int, target: int = 64) -> int:
    # CloudVolume's find_closest_divisor, tie-breaking included (divisors in its order).
    best, distance = n, n
    for i in range(1, math.isqrt(n) + 1):
        if n % i == 0:
            for d in (i, n // i):
                if abs(d - target) < distance:
                    best, distance = d, abs(d - target)
    return best


def _scale_entry(scale0: dict[str, Any], total: list[int]) -> dict[str, Any]:
    res0 = scale0["resolution"]
    integral = max(_precision(r) for r in [*res0, *total]) == 0
    resolution = [r * f if integral else float(r * f) for r, f in zip(res0, total, strict=True)]
    offset0 = scale0.get("voxel_offset", [0, 0, 0])
    entry: dict[str, Any] = {
        "encoding": scale0["encoding"],
        "chunk_sizes": [[_closest_divisor(int(c)) for c in scale0["chunk_sizes"][0]]],
        "resolution": resolution,
        "voxel_offset": [math.floor(o / f) for o, f in zip(offset0, total, strict=True)],
        "size": [math.ceil(s / f) for s, f in zip(scale0["size"], total, strict=True)],
    }
    for key in ("compressed_segmentation_block_size", "jpeg_quality", "png_level"):
        if key in scale0:
            entry[key] = scale0[key]
    if entry["encoding"] == "compressed_segmentation":
        entry.setdefault("compressed_segmentation_block_size", [8, 8, 8])
    entry["key"] = "_".join(str(r) for r in resolution)
    return entry


def _put_scale(info: dict[str, Any], entry: dict[str, Any]) -> int:
    """Replaces the scale of the same resolution (as CloudVolume does) or appends one."""
    for i, scale in enumerate(info["scales"]):
        if np.array_equal(np.asarray(scale["resolution"]), np.asarray(entry["resolution"])):
            info["scales"][i] = entry
            return i
    info["scales"].append(entry)
    return len(info["scales"]) - 1


def _fill(
    src: BigArray,
    dst: BigArray,
    step: tuple[int, ...],
    method: str,
    jobs: int | None,
    progress: Advance,
    resume: bool = False,
    skip_empty: bool = False,
) -> None:
    """Computes every voxel of ``dst`` from ``src``, one chunk-aligned block at a time.

    ``resume``: blocks whose destination chunks all exist are skipped. ``skip_empty``:
    blocks whose source holds no chunk are not written (they would be all zeros)."""
    channels = src.num_channels
    src_lo = np.array(src.voxel_offset)
    src_hi = src_lo + np.array(src.shape[:3])
    voxel_bytes = dst.dtype.itemsize * channels

    def work(box: Box) -> tuple[int, int]:
        lo, hi = np.array(box[0]), np.array(box[1])
        n_chunks = chunk_count(box, dst.voxel_offset, dst.chunks)
        nbytes = int(np.prod(hi - lo)) * voxel_bytes
        if resume:
            held = [s for _, _, s in dst.stored_chunks(_slices(box)) or [] if s > 0]
            if len(held) == n_chunks:
                return nbytes, n_chunks
        want_lo, want_hi = lo * step, hi * step  # the input the block summarises
        have_lo, have_hi = np.maximum(want_lo, src_lo), np.minimum(want_hi, src_hi)
        only = None
        if skip_empty and np.all(have_hi > have_lo):
            only = _fed_chunks(src, dst, box, step, have_lo, have_hi)
            if not only:
                return nbytes, n_chunks
            if len(only) == n_chunks:
                only = None
        shape = tuple(want_hi - want_lo)
        data = np.zeros(shape + (channels,), src.dtype, order="F")
        valid = np.zeros(shape, bool, order="F")
        if np.all(have_hi > have_lo):
            inner = tuple(
                slice(a, b) for a, b in zip(have_lo - want_lo, have_hi - want_lo, strict=True)
            )
            cut = src[tuple(slice(a, b) for a, b in zip(have_lo, have_hi, strict=True))]
            data[inner] = cut.reshape(cut.shape[:3] + (channels,), order="F")
            valid[inner] = True
        out = reduce_blocks(data, valid, step, method)
        # With only: just the chunks some source chunk feeds; the others stay absent (zeros).
        dst.write(_slices(box), out if channels > 1 else out[..., 0], only=only)
        return int(out.nbytes), n_chunks

    block = block_shape(dst.chunks, voxel_bytes * math.prod(step))
    bounds = (dst.voxel_offset, tuple(b.stop for b in dst.bounds))
    run_parallel(aligned_blocks(bounds, dst.voxel_offset, block), work, jobs, progress)


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(box[0], box[1], strict=True))
