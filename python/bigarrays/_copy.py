"""Copying a box of one layer into another, transcoding on the way.

The destination is created with the source's geometry (voxel offset, resolution, chunks,
channels, dtype, layer type) unless it exists; the copy walks the box in blocks aligned to
the destination's chunks, so every write covers whole chunks, memory stays bounded, and an
interrupted copy can resume by skipping the chunks already present.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._blocks import Box, aligned_blocks, block_shape, chunk_count, run_parallel
from ._progress import progress_bar
from .errors import InvalidArgumentError, LayerNotFoundError, MissingChunkError

if TYPE_CHECKING:
    from ._bigarray import BigArray

#: Encoding options of the source's scale carried over when the encoding stays the same.
_ENCODING_KEYS = ("jpeg_quality", "png_level", "compressed_segmentation_block_size")


def copy(
    src: BigArray,
    dst_url: str,
    *,
    bbox: Box | None = None,
    encoding: str | None = None,
    compression: str | None = "auto",
    sharding: Any = None,
    chunks: tuple[int, int, int] | None = None,
    resume: bool = False,
    jobs: int | None = None,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
    format: str | None = None,
) -> BigArray:
    """Copies ``bbox`` of ``src`` (default: all of it) into the layer at ``dst_url``.

    See :meth:`BigArray.copy_to` for the parameters.
    """
    box = _clip(src, bbox)
    dst = _destination(
        src, dst_url, encoding, compression, sharding, chunks, storage_options, format
    )
    checker = dst._reopen(fill_missing=False) if resume else None
    # Same format on both sides: chunks may move as stored bytes (see _copy_block).
    as_stored = src.format == dst.format == "precomputed"

    def work(block: Box) -> tuple[int, int]:
        if checker is None:
            _copy_block(src, dst, block, as_stored)
        elif not _present(checker, block):
            # Resuming: copy only the chunks of this block that are missing.
            for chunk in aligned_blocks(block, dst.voxel_offset, dst.chunks):
                if not _present(checker, chunk):
                    _copy_block(src, dst, chunk, as_stored)
        return _nbytes(block, src), chunk_count(block, dst.voxel_offset, dst.chunks)

    voxel_bytes = src.dtype.itemsize * src.num_channels
    block = block_shape(dst.chunks, voxel_bytes)
    total = _nbytes(box, src)
    n_chunks = chunk_count(box, dst.voxel_offset, dst.chunks)
    with progress_bar(progress, "copy", total, n_chunks) as bar:
        run_parallel(aligned_blocks(box, dst.voxel_offset, block), work, jobs, bar)
    return dst


def _copy_block(src: BigArray, dst: BigArray, block: Box, as_stored: bool) -> None:
    """Copies one chunk-aligned block: as stored bytes when both scales share grid, encoding
    and compression (no re-encoding; each chunk is still decoded once to check it),
    otherwise by decoding and re-encoding."""
    if as_stored and dst._layer.copy_stored_from(src._layer, block[0], block[1]):
        return
    dst[_slices(block)] = src[_slices(block)]


def _nbytes(box: Box, a: BigArray) -> int:
    size = math.prod(hi - lo for lo, hi in zip(box[0], box[1], strict=True))
    return size * a.dtype.itemsize * a.num_channels


def _clip(src: BigArray, bbox: Box | None) -> Box:
    lo = tuple(b.start for b in src.bounds)
    hi = tuple(b.stop for b in src.bounds)
    if bbox is None:
        return lo, hi  # type: ignore[return-value]
    start = tuple(max(a, b) for a, b in zip(bbox[0], lo, strict=True))
    stop = tuple(min(a, b) for a, b in zip(bbox[1], hi, strict=True))
    if any(a >= b for a, b in zip(start, stop, strict=True)):
        raise InvalidArgumentError(
            f"bbox {bbox} does not overlap the source's bounds {lo}..{hi} ({src.url})"
        )
    return start, stop  # type: ignore[return-value]


def _destination(
    src: BigArray,
    url: str,
    encoding: str | None,
    compression: str | None,
    sharding: Any,
    chunks: tuple[int, int, int] | None,
    storage_options: dict[str, Any] | None,
    format: str | None,
) -> BigArray:
    from ._bigarray import BigArray

    options = dict(compression=compression, storage_options=storage_options)
    try:
        dst = BigArray(url, **options)
    except LayerNotFoundError:
        pass
    else:
        if dst.dtype != src.dtype or dst.num_channels != src.num_channels:
            raise InvalidArgumentError(
                f"{dst.url} holds {dst.num_channels}-channel {dst.dtype}, the source "
                f"{src.num_channels}-channel {src.dtype}"
            )
        return dst
    geometry: dict[str, Any] = dict(
        shape=src.shape, dtype=src.dtype, chunks=chunks or src.chunks, voxel_offset=src.voxel_offset
    )
    if format == "h5s":
        if encoding is not None or sharding is not None:
            raise InvalidArgumentError(
                "h5s layers take no encoding or sharding: choose compression "
                "('auto'/'blosc', 'gzip' or None); chunks= is the block size"
            )
        return BigArray.create(url, format="h5s", compression=compression, **geometry)
    if format not in (None, "precomputed"):
        raise InvalidArgumentError(f"format={format!r}: copies write 'precomputed' or 'h5s'")
    # From an HDF5 layout: raw chunks unless told otherwise, no encoding options.
    precomputed = src.format == "precomputed"
    scale = src.info["scales"][src.mip] if precomputed else {}
    src_encoding = src.encoding if precomputed else "raw"
    same_encoding = encoding in (None, src_encoding)
    encoding_options = (
        {k: scale[k] for k in _ENCODING_KEYS if k in scale} if same_encoding else None
    )
    create_args: dict[str, Any] = dict(
        resolution=src.resolution,
        encoding=encoding or src_encoding,
        encoding_options=encoding_options,
        layer_type=src.info.get("type", "image") if precomputed else "image",
        **geometry,
        **options,
    )
    if sharding is not None:
        create_args["sharding"] = sharding
    return BigArray.create(url, **create_args)


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(box[0], box[1], strict=True))


def _present(checker: BigArray, box: Box) -> bool:
    """Whether every chunk ``box`` touches exists (``checker`` raises for missing ones)."""
    try:
        checker[_slices(box)]
    except MissingChunkError:
        return False
    return True
