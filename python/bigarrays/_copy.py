"""Copying a box of one layer into another, transcoding on the way.

The destination is created with the source's geometry (voxel offset, resolution, chunks,
channels, dtype, layer type) unless it exists; the copy walks the box in blocks aligned to
the destination's chunks, so every write covers whole chunks and memory stays bounded.

Which chunks exist is learned from the stores without fetching chunk data
(``BigArray.stored_chunks``: file metadata, HEAD requests, listings, shard indexes). A
destination chunk is written only where a source chunk overlapping it exists, so a sparse
source stays sparse; an interrupted copy resumes by skipping the destination chunks that
exist with a nonzero size, and ``verify`` also decodes those and recopies the ones that fail.
"""

from __future__ import annotations

import math
from typing import Any

from . import _core
from ._bigarray import BigArray
from ._blocks import (
    Box,
    Cell,
    aligned_blocks,
    block_shape,
    cells_touching,
    chunk_count,
    chunk_pieces,
    intersect,
    run_parallel,
)
from ._progress import progress_bar
from .errors import (
    ChunkDecodeError,
    InvalidArgumentError,
    LayerNotFoundError,
    MissingChunkError,
)

#: Each encoding's option keys (the Rust codec registry): the source scale's are carried
#: over when the encoding stays the same.
_ENCODING_KEYS: dict[str, list[str]] = _core.encoding_option_keys()


#: Formats whose layers may exchange chunks as stored bytes (``BigArray.copy_chunks_from``).
_STORED_FORMATS = {"precomputed", "zarr"}


def copy(
    src: BigArray,
    dst_url: str,
    *,
    bbox: Box | None = None,
    encoding: str | None = None,
    compression: str | None = "auto",
    compress_level: int | None = None,
    sharding: Any = None,
    chunks: tuple[int, int, int] | None = None,
    resume: bool = False,
    verify: bool = False,
    jobs: int | None = None,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
    format: str | None = None,
    ome: bool = False,
    overwrite: bool = False,
) -> BigArray:
    """Copies ``bbox`` of ``src`` (default: all of it) into the layer at ``dst_url``.

    See :meth:`BigArray.copy_to` for the parameters.
    """
    box = _clip(src, bbox)
    if ome and format != "zarr":
        raise InvalidArgumentError("ome=True makes an OME-Zarr image: pass format='zarr'")
    if overwrite and (resume or verify):
        raise InvalidArgumentError("overwrite excludes resume and verify")
    dst, created = _destination(src, dst_url, encoding, compression, sharding, chunks,
                                storage_options, format, ome, compress_level,
                                overwrite)  # fmt: skip
    resume = resume or verify
    plan = _Plan(src, dst, created, resume, verify)
    # Formats whose chunks may move as stored bytes (see _copy_block): Precomputed to
    # Precomputed, and between Precomputed and Zarr where the chunks' bytes agree.
    as_stored = {src.format, dst.format} <= _STORED_FORMATS

    def work(block: Box) -> tuple[int, int]:
        todo, zeros, all_of_block = plan.chunks_to_write(block)
        if all_of_block:
            _copy_block(src, dst, block, as_stored, None)
        elif todo:
            _copy_block(src, dst, block, as_stored, todo)
        for chunk in zeros:
            # Data the destination held where the source has none: zeros, as the source reads.
            dst[_slices(chunk)] = 0
        return _nbytes(block, src), chunk_count(block, dst.voxel_offset, dst.chunks)

    voxel_bytes = src.dtype.itemsize * src.num_channels
    block = block_shape(dst.chunks, voxel_bytes)
    total = _nbytes(box, src)
    n_chunks = chunk_count(box, dst.voxel_offset, dst.chunks)
    with progress_bar(progress, "copy", total, n_chunks) as bar:
        run_parallel(aligned_blocks(box, dst.voxel_offset, block), work, jobs, bar)
    # The copy worked in the (x, y, z) view; a Zarr destination is handed back in its own axes.
    return dst.reopen() if dst.format == "zarr" else dst


class _Plan:
    """Decides, block by block, which destination chunks a copy writes."""

    def __init__(
        self, src: BigArray, dst: BigArray, created: bool, resume: bool, verify: bool
    ) -> None:
        self.src, self.dst = src, dst
        self.resume, self.verify = resume, verify
        # Precomputed layers tell which chunks exist without decoding them; HDF5 layouts do not.
        self.dst_listed = _lists_chunks(dst)
        # A source whose missing chunks are left unwritten. Not into an existing HDF5
        # destination, whose data there could only be found by decoding: it gets zeros.
        self.src_sparse = _lists_chunks(src) and (self.dst_listed or created)
        # A layer this copy created holds nothing yet: no need to ask what it holds.
        self.check_dst = resume or (self.dst_listed and not created)
        self.checker = dst.reopen(fill_missing=False) if resume else None

    def chunks_to_write(self, block: Box) -> tuple[list[Box], list[Box], bool]:
        """The destination chunks of ``block`` to copy, those to zero (the destination
        holds data there, the source none), and whether the copy is the whole block."""
        grid = (self.dst.voxel_offset, self.dst.chunks)
        chunks = chunk_pieces(block, *grid)
        needed = set(chunks)
        if self.src_sparse:
            needed = set()
            for lo, hi, _ in self.src.stored_chunks(_slices(block)) or []:
                inside = intersect((lo, hi), block)
                if inside is not None:
                    needed |= cells_touching(inside, *grid)
        zeros: set[Cell] = set()
        if self.check_dst:
            held = self._held(block, chunks)
            if self.resume:
                # Complete chunks are done; with verify only those that decode.
                done = held if not self.verify else self._decoding(held, chunks)
                needed -= done
            else:
                zeros = held - needed
        all_of_block = needed == set(chunks) and not zeros
        todo = [chunks[c] for c in sorted(needed)]
        return todo, [chunks[c] for c in sorted(zeros)], all_of_block

    def _held(self, block: Box, chunks: dict[Cell, Box]) -> set[Cell]:
        """The destination chunks of ``block`` that exist: with a nonzero size when
        resuming (a zero-length file is no finished chunk), with any size otherwise."""
        if not self.dst_listed:
            assert self.checker is not None  # only resumes ask an HDF5 destination
            return {c for c, box in chunks.items() if _present(self.checker, box)}
        least = 1 if self.resume else 0
        held: set[Cell] = set()
        for lo, hi, size in self.dst.stored_chunks(_slices(block)) or []:
            if size >= least:
                held |= cells_touching((lo, hi), self.dst.voxel_offset, self.dst.chunks)
        return held & set(chunks)

    def _decoding(self, held: set[Cell], chunks: dict[Cell, Box]) -> set[Cell]:
        """The chunks of ``held`` that read back (``verify``): each is decoded."""
        assert self.checker is not None
        good = set()
        for c in held:
            try:
                self.checker[_slices(chunks[c])]
            except (ChunkDecodeError, MissingChunkError):
                continue
            good.add(c)
        return good


def _copy_block(
    src: BigArray, dst: BigArray, block: Box, as_stored: bool, only: list[Box] | None
) -> None:
    """Copies one chunk-aligned block (with ``only``, just those of its chunks): as stored
    bytes when both scales share grid, encoding and compression, or (Precomputed <-> Zarr)
    store chunks as the same bytes (no re-encoding; each chunk is still decoded once to
    check it; chunks the source lacks are not written), otherwise by decoding and
    re-encoding."""
    if as_stored and dst.copy_chunks_from(src, _slices(block), only=only):
        return
    dst.write(_slices(block), src[_slices(block)], only=only)


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
    ome: bool = False,
    compress_level: int | None = None,
    overwrite: bool = False,
) -> tuple[BigArray, bool]:
    """The destination layer, and whether this copy created it (replacing an existing one
    with ``overwrite``)."""
    if compress_level is not None and format in ("zarr", "h5s"):
        raise InvalidArgumentError(
            f"compress_level applies to Precomputed destinations, not format={format!r}"
        )
    options = dict(
        compression=compression, storage_options=storage_options, compress_level=compress_level
    )
    try:
        dst = None if overwrite else BigArray(url, **options)._xyz()
    except LayerNotFoundError:
        dst = None
    if dst is not None:
        if dst.dtype != src.dtype or dst.num_channels != src.num_channels:
            raise InvalidArgumentError(
                f"{dst.url} holds {dst.num_channels}-channel {dst.dtype}, the source "
                f"{src.num_channels}-channel {src.dtype}"
            )
        return dst, False
    geometry: dict[str, Any] = dict(
        shape=src.shape,
        dtype=src.dtype,
        chunks=chunks or src.chunks,
        voxel_offset=src.voxel_offset,
        overwrite=overwrite,
    )
    if format == "h5s":
        if encoding is not None or sharding is not None:
            raise InvalidArgumentError(
                "h5s layers take no encoding or sharding: choose compression "
                "('auto'/'blosc', 'gzip' or None); chunks= is the block size"
            )
        return BigArray.create(url, format="h5s", compression=compression, **geometry), True
    if format == "zarr":
        dst = _zarr_destination(
            src, url, encoding, compression, sharding, chunks, storage_options, ome, overwrite
        )
        return dst, True
    if format not in (None, "precomputed"):
        raise InvalidArgumentError(
            f"format={format!r}: copies write 'precomputed', 'zarr' or 'h5s'"
        )
    # From an HDF5 layout: raw chunks unless told otherwise, no encoding options.
    precomputed = src.format == "precomputed"
    scale = src.info["scales"][src.mip] if precomputed else {}
    src_encoding = src.encoding if precomputed else "raw"
    same_encoding = encoding in (None, src_encoding)
    encoding_options = (
        {k: scale[k] for k in _ENCODING_KEYS.get(src_encoding.lower(), ()) if k in scale}
        if same_encoding
        else None
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
    return BigArray.create(url, **create_args), True


def _zarr_destination(
    src: BigArray,
    url: str,
    encoding: str | None,
    compression: str | None,
    sharding: Any,
    chunks: tuple[int, int, int] | None,
    storage_options: dict[str, Any] | None,
    ome: bool = False,
    overwrite: bool = False,
) -> BigArray:
    """A new Zarr v3 array for the (x, y, z[, c]) source, in the (x, y, z, c) view: its axes
    are ``(c, z, y, x)`` (``(z, y, x)`` with one channel), C-ordered, so each chunk holds
    the bytes of a Fortran-ordered Precomputed chunk. Zarr indexes from 0, so the array
    reaches from 0 to the source's upper bounds (chunks below a voxel offset stay absent).

    With ``ome``, an OME-Zarr image (NGFF 0.5) whose level 0 is that array, its space axes
    in nanometres at the source's resolution, so that the copy back to Precomputed (and
    neuroglancer) sees the same voxel size.

    Its codecs follow ``compression``: ``bytes`` plus ``gzip`` or ``zstd`` (level 0), or
    ``bytes`` alone for None; ``"auto"`` stores chunks as the source stores them where it
    stores its voxels as they are or gzipped (a ``raw`` Precomputed scale), so that chunks
    move as stored bytes, and zarr-python's default (``zstd``) otherwise."""
    if encoding is not None or sharding is not None:
        raise InvalidArgumentError(
            "format='zarr' copies take chunks= (and BigArray.create's codecs= for other "
            "chains); encoding= and sharding= are Precomputed's"
        )
    hi = [b.stop for b in src.bounds][:3]
    if any(b.start < 0 for b in src.bounds[:3]):
        raise InvalidArgumentError(
            f"{src.url}: voxel offset {src.voxel_offset} is negative; a Zarr array starts at 0"
        )
    chunk = list(chunks or src.chunks)
    shape, grid = hi[::-1], chunk[::-1]
    names: list[str | None] = ["z", "y", "x"]
    scale = [float(r) for r in src.resolution][::-1]
    if src.num_channels > 1:
        shape, grid, names = [src.num_channels, *shape], [src.num_channels, *grid], ["c", *names]
        scale = [1.0, *scale]
    naming: dict[str, Any] = dict(dimension_names=names)
    if ome:
        axes = [{"name": n, "unit": "nanometer"} if n != "c" else "c" for n in names]
        naming = dict(axes=axes, scale=scale)
    return BigArray.create(
        url,
        format="zarr",
        shape=tuple(shape),
        dtype=src.dtype,
        chunks=tuple(grid),
        codecs=_zarr_codecs(src, compression),
        storage_options=storage_options,
        overwrite=overwrite,
        **naming,
    )._xyz()


def _zarr_codecs(src: BigArray, compression: str | None) -> list[dict[str, Any]] | None:
    """The codec chain of a Zarr copy of ``src`` (see ``_zarr_destination``); None: the
    default."""
    if compression == "auto":
        compression = src.stored_form
        if compression is None:
            return None
    little: dict[str, Any] = {"name": "bytes"}
    if src.dtype.itemsize > 1:
        little["configuration"] = {"endian": "little"}
    chains: dict[str | None, list[dict[str, Any]]] = {
        None: [little],
        "raw": [little],
        "gzip": [little, {"name": "gzip", "configuration": {"level": 5}}],
        "zstd": [little, {"name": "zstd", "configuration": {"level": 0, "checksum": False}}],
    }
    if compression not in chains:
        raise InvalidArgumentError(
            f"compression={compression!r}: a Zarr copy takes 'auto', 'gzip', 'zstd' or None"
        )
    return chains[compression]


def _lists_chunks(a: BigArray) -> bool:
    """Whether ``a``'s format tells which chunks exist without decoding them (asked of an
    empty box, so nothing is listed)."""
    return a.stored_chunks(tuple(slice(o, o) for o in a.voxel_offset)) is not None


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(box[0], box[1], strict=True))


def _present(checker: BigArray, box: Box) -> bool:
    """Whether every chunk ``box`` touches exists in an HDF5 destination (``checker``, opened
    with ``fill_missing=False``, raises for missing ones)."""
    try:
        checker[_slices(box)]
    except MissingChunkError:
        return False
    return True
