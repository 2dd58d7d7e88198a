"""The ``BigArray`` class: a thin, NumPy-shaped face over the Rust engine."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from copy import copy as _shallow_copy
from typing import Any

import numpy as np

from . import _async, _core, _ndselection, _secrets, _selection
from ._memory import memory_bytes
from .errors import InvalidArgumentError, RequestTooLargeError

#: Value dtypes that have no meaningful cast to voxels (NumPy would drop the imaginary part
#: with a warning, or fail deep inside with an unrelated message).
_UNCASTABLE_KINDS = {"c": "complex", "O": "object", "S": "bytes", "U": "string",
                     "V": "structured", "M": "datetime", "m": "timedelta"}  # fmt: skip
#: NumPy's casting rules, loosest last; writes default to "same_kind", as TensorStore
#: refuses implicit lossy conversions.
_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
#: Bytes read at a time when iterating (a slab of whole chunks along x where it fits).
_SLAB_BYTES = 64 << 20


def _values_to_write(value: Any, dtype: np.dtype, casting: str, url: str) -> Any:
    """``value`` ready to be assigned into voxels of ``dtype``, or an error if the cast would
    lose what NumPy's ``casting`` rule protects (nothing is written then).

    Arrays and NumPy scalars follow ``np.can_cast``. Python numbers (and lists of them)
    have no dtype of their own, as in NumPy 2: an integer must fit the voxel type, and a
    float may go into floats only. Other libraries' arrays (torch, dask) are converted
    once, here.
    """
    if casting not in _CASTINGS:
        raise InvalidArgumentError(f"casting must be one of {_CASTINGS}, got {casting!r}")
    python_numbers = not hasattr(value, "dtype")
    values = value if isinstance(value, (np.ndarray, np.generic)) else np.asarray(value)
    if python_numbers and values.dtype.kind in "fO" and dtype.kind in "iu":
        # NumPy turns [2**64 - 1, 0] into floats and 2**70 into an object: keep the
        # integers exact, to check them against the voxel type's range below.
        exact = np.asarray(value, dtype=object)
        if _all_ints(exact):
            values = exact
    kind = values.dtype.kind
    ints = python_numbers and (kind in "iu" or (kind == "O" and _all_ints(values)))
    # Complex values go into complex arrays (Zarr has them) by the casting rule below.
    if kind in _UNCASTABLE_KINDS and not ints and not (kind == "c" == dtype.kind):
        raise TypeError(
            f"{url}: cannot write {_UNCASTABLE_KINDS[kind]} values into a {dtype} layer; "
            "pass numbers"
        )
    if casting == "unsafe":
        return values
    if ints and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise OverflowError(
                f"{url}: Python integer {_extreme(values, info)} is out of range for the "
                f"{dtype} layer [{info.min}, {info.max}]"
            )
        return values.astype(dtype)
    if kind == "O" or not np.can_cast(values.dtype, dtype, casting):
        raise TypeError(
            f"{url}: writing {values.dtype} values into a {dtype} layer would lose data, "
            f"which casting={casting!r} refuses (NumPy's rule); convert them first "
            f"(value.astype({dtype.name!r})) or write with a.write(key, value, "
            "casting='unsafe')"
        )
    return values


def _all_ints(values: np.ndarray) -> bool:
    """Whether an object array holds only Python integers (too large for int64)."""
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values.flat)


def _extreme(values: np.ndarray, info: np.iinfo) -> int:
    """The first value of ``values`` outside ``info``'s range, for the message."""
    low, high = values.min(), values.max()
    return int(low) if low < info.min else int(high)


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if n < 1024 or unit == "ZiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def _option_text(key: str, value: Any) -> str:
    """One storage option as the text object_store's configuration expects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidArgumentError(
        f"storage_options[{key!r}] must be a str, int, float or bool, not {type(value).__name__}"
    )


def _engine_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Splits ``storage_options`` into ``concurrency`` and the store's own options.

    The engine validates the store's keys against the URL's scheme: an unknown key is an
    error, never silently dropped.
    """
    options = dict(storage_options or {})
    engine: dict[str, Any] = {}
    if "concurrency" in options:
        engine["concurrency"] = options.pop("concurrency")
    if options:
        engine["storage_options"] = {str(k): _option_text(str(k), v) for k, v in options.items()}
    return engine


#: A point in absolute voxel coordinates, and a box ``[start, stop)`` of them.
Point = tuple[int, int, int]
Box = tuple[Point, Point]


def _point(p: Sequence[int]) -> Point:
    return (int(p[0]), int(p[1]), int(p[2]))


def _box(b: Sequence[Sequence[int]]) -> Box:
    return (_point(b[0]), _point(b[1]))


def _check_cache_bytes(cache_bytes: int) -> None:
    if cache_bytes < 0:
        raise InvalidArgumentError(f"cache_bytes must be ≥ 0, got {cache_bytes}")


class BigArray:
    """One scale of a chunked layer, indexed like a NumPy array in absolute voxel coordinates.

    Parameters
    ----------
    url : str
        A local path, ``file://...``, ``memory://name`` (shared by every ``BigArray`` on
        that name in this process), ``s3://bucket/path``, ``gs://bucket/path`` or
        ``http(s)://host/path`` (read-only). With ``store``, the key prefix inside the mapping.
    mip : int
        Index into ``info["scales"]``; 0 is full resolution.
    format : str, optional
        ``None`` (auto-detect: a directory with ``info`` is ``"precomputed"``, with
        ``config.json`` ``"h5s"``, with ``registry.txt`` ``"aligned"``; a ``.h5`` file is
        ``"hdf5"``), or one of those names to force it. The HDF5 formats (BigArrays.jl's
        H5s block directories and aligned 2D sections, and single HDF5 datasets) read local
        files only; ``"aligned"`` and ``"hdf5"`` are read-only.
    dataset : str, optional
        With a single HDF5 file: the dataset to open (default ``"img"``). Its h5py axes are
        reversed, as BigArrays.jl (Julia) wrote them: ``BigArray(f, dataset="img")[x, y, z]``
        is ``h5py.File(f)["img"][z, y, x]``, and a 4D dataset ``(c, z, y, x)`` has channels.
    store : MutableMapping[str, bytes], optional
        Any mapping to use as the key-value store instead of the URL's backend.
    fill_missing : bool
        Missing chunks read as 0 (default) or raise :class:`~bigarrays.errors.MissingChunkError`.
    compression : {"auto", "gzip", "zstd", "br", None}
        Transport compression of the chunks this handle writes (``"br"``: brotli, as
        CloudVolume's ``compress="br"`` writes it). ``"auto"`` (default) is
        ``"gzip"`` for the ``raw`` and ``compressed_segmentation`` encodings (CloudVolume's
        ``<key>.gz`` files) and ``None`` for ``jpeg``, ``png`` and ``blosc``, as CloudVolume
        does; ``None`` writes plain chunks that TensorStore and a static web server can read.
    compress_level : int, optional
        The gzip level of the chunks this handle writes (Precomputed: gzip transport, shard
        ``data_encoding`` and minishard indexes), as CloudVolume's ``compress_level``: 1
        (fastest) to 12 (smallest; libdeflate's levels); default 6. It only changes how
        small the gzip streams are and how long writing takes: any level reads the same,
        and it is not stored in the ``info`` (Precomputed has no field for it), so each
        handle chooses it when it writes. Chunks copied as their stored bytes keep theirs;
        zstd and brotli keep their own levels, and a Zarr array's gzip level is its codec's
        configuration.
    storage_options : dict, optional
        ``"concurrency"``: store requests in flight at once (default 64). For ``s3://``,
        ``gs://`` and ``http(s)://`` URLs also ``"retries"`` (default 5), ``"timeout"``
        (seconds per request, default 30), ``"deadline"`` (seconds per operation, retries
        included, default 120), ``"anonymous"`` (unsigned requests, for public buckets),
        ``"profile"`` (S3: a profile of ``~/.aws/credentials``/``config``), and any
        object_store configuration key for the scheme (``"aws_access_key_id"``,
        ``"endpoint"``, ``"region"``, ``"service_account"``, ``"allow_http"``, ...); these
        override the environment. Unknown keys raise
        :class:`~bigarrays.errors.InvalidArgumentError`.
    cache_bytes : int
        Keep up to this many bytes of decoded chunks in memory (an LRU shared by every read
        on this handle and thread-safe), so that repeated reads of the same chunks skip the
        store and the decoder. 0 (default): no cache. Chunks this handle writes are dropped
        from it; changes made by other handles or processes are not seen while cached.
        :attr:`cache_stats` tells hits and misses.

    Examples
    --------
    >>> a = BigArray.create("memory://doc", shape=(256, 256, 64), dtype="uint8",
    ...                     chunks=(64, 64, 64))
    >>> a[0:64, 0:64, 0:64] = 7
    >>> int(a[10, 10, 10])
    7
    """

    def __init__(
        self,
        url: str,
        *,
        mip: int = 0,
        format: str | None = None,
        store: MutableMapping[str, bytes] | None = None,
        fill_missing: bool = True,
        compression: str | None = "auto",
        storage_options: Mapping[str, Any] | None = None,
        cache_bytes: int = 0,
        dataset: str | None = None,
        compress_level: int | None = None,
    ) -> None:
        _check_cache_bytes(cache_bytes)
        self._init_args = dict(
            mip=mip,
            format=format,
            dataset=dataset,
            store=store,
            fill_missing=fill_missing,
            compression=compression,
            storage_options=storage_options,
            cache_bytes=cache_bytes,
            compress_level=compress_level,
        )
        self._url = str(url)
        self._layer = _core.Layer.open(
            self._url,
            format=format,
            dataset=dataset,
            mip=mip,
            fill_missing=fill_missing,
            compression=compression,
            compress_level=compress_level,
            store=store,
            cache_bytes=cache_bytes,
            **_engine_options(storage_options),
        )
        self._setup()

    def _setup(self) -> None:
        layer = self._layer
        nd = layer.nd_shape
        # Arrays with axes of their own (Zarr) are indexed in those axes, C-ordered.
        self._nd: tuple[int, ...] | None = None if nd is None else tuple(nd)
        self._dtype = np.dtype(layer.dtype)
        self._lo = tuple(layer.voxel_offset)
        self._hi = tuple(o + s for o, s in zip(layer.voxel_offset, layer.size, strict=True))

    @classmethod
    def create(
        cls,
        url: str,
        *,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...] | None = None,
        voxel_offset: tuple[int, int, int] = (0, 0, 0),
        resolution: tuple[float, float, float] = (1, 1, 1),
        num_channels: int | None = None,
        encoding: str = "raw",
        encoding_options: Mapping[str, Any] | None = None,
        compression: str | None = "auto",
        compress_level: int | None = None,
        layer_type: str = "image",
        sharding: Any = None,
        overwrite: bool = False,
        store: MutableMapping[str, bytes] | None = None,
        fill_missing: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        cache_bytes: int = 0,
        format: str | None = None,
        zarr_format: int = 3,
        shards: tuple[int, ...] | None = None,
        codecs: Sequence[Mapping[str, Any]] | None = None,
        fill_value: Any = None,
        dimension_names: Sequence[str | None] | None = None,
        attributes: Mapping[str, Any] | None = None,
        ome: bool = False,
        axes: Sequence[str | Mapping[str, Any]] | None = None,
        scale: Sequence[float] | None = None,
        translation: Sequence[float] | None = None,
    ) -> BigArray:
        """Creates a new layer (Neuroglancer Precomputed; a Zarr array with
        ``format="zarr"``; a BigArrays.jl H5s directory with ``format="h5s"``) and opens it.

        Parameters
        ----------
        url : str
            Where to create it (a local path, ``file://``, ``memory://``, ``s3://`` or
            ``gs://``).
        shape : tuple of int
            ``(x, y, z)``, or ``(x, y, z, c)`` to give the channel count.
        dtype : numpy dtype
            bool, (u)int8-64, float32 or float64.
        chunks : tuple of int, optional
            Chunk size (default ``(64, 64, 64)``; for Zarr, 64 or the whole extent along
            each axis, whichever is smaller).
        voxel_offset, resolution : tuple
            The absolute coordinate of the first voxel, and voxel size in nm (Precomputed).
        num_channels : int, optional
            Channels per voxel (default 1, or ``shape[3]``).
        encoding : str
            Chunk encoding: ``"raw"`` (default); ``"jpeg"`` (uint8, 1 or 3 channels, lossy);
            ``"png"`` (uint8 or uint16, 1 to 4 channels); ``"jxl"`` (JPEG XL, uint8, 1 to 4
            channels; written lossless); ``"compressed_segmentation"``
            (uint32 or uint64); ``"blosc"`` or ``"blosclz"`` (any type; BigArrays.jl's name);
            ``"compresso"`` (uint8 to uint64 labels, 1 channel); ``"crackle"`` (unsigned
            integer labels, 1 channel).
            An impossible combination raises
            :class:`~bigarrays.errors.InvalidArgumentError` naming the field.
        encoding_options : dict, optional
            Scale keys of the ``info`` that parameterise the encoding: ``jpeg_quality``
            (0-100, default 85), ``png_level`` (0-9, default 9),
            ``compressed_segmentation_block_size`` (default ``[8, 8, 8]``),
            ``blosc_compressor`` (``"lz4"`` default, ``"zstd"``, ``"blosclz"``),
            ``blosc_clevel`` (0-9, default 5), ``blosc_shuffle`` (0, 1 default, 2),
            ``jxl_quality`` (0-100, default 100 for new layers: we write lossless whatever it
            says, CloudVolume lossy below 100), ``jxl_effort`` (default 5) and
            ``jxl_decodingspeed`` (default 0), both kept for other writers.
        compression : {"auto", "gzip", "zstd", "br", None}
            Transport compression of written chunks (see :class:`BigArray`).
        compress_level : int, optional
            The gzip level this handle writes with, 1 (fastest) to 12 (smallest), default 6
            (see :class:`BigArray`). Precomputed only; not stored in the ``info``.
        layer_type : str
            ``"image"`` or ``"segmentation"`` (neuroglancer's default rendering).
        sharding : None, "auto" or dict
            ``None`` (default) stores one object per chunk. Otherwise the scale is sharded
            (``neuroglancer_uint64_sharded_v1``): chunks are packed into shard files read
            by range requests, as TensorStore, CloudVolume and neuroglancer read them.
            ``"auto"`` picks identity hashing, so each shard is a rectangular block of
            ``2**k`` chunks, ``k`` the largest with ``2**k * chunk bytes <= 256 MiB``
            uncompressed (128-256 MiB per shard unless the layer is smaller, in which case
            one shard holds it all); up to 64 minishards per shard; gzip data encoding
            except for jpeg and png; gzip minishard indexes. A dict gives the ``sharding``
            object itself (``preshift_bits``, ``hash``, ``minishard_bits``,
            ``shard_bits``, ``minishard_index_encoding``, ``data_encoding``). Writes build
            the shards a box covers whole directly; a shard covered in part is read, merged
            and rewritten, so its other chunks are kept. ``compression`` does not apply:
            ``data_encoding`` is the chunks' compression inside shards.
        overwrite : bool
            Replace an existing layer with an empty one; otherwise an existing layer raises
            :class:`~bigarrays.errors.LayerExistsError`. The new ``info`` replaces the old
            one whole, so every scale of the old ``info`` was the layer's: the chunks and
            shards under each old scale's key (and the new scales' keys) are removed before
            the new ``info`` is written, in any store. Nothing else under the layer (meshes,
            skeletons, other files) and nothing outside it is touched; keys that would reach
            outside the layer (``..``) are ignored. For ``format="h5s"``, the block files
            (named as blocks with the old or new prefix) are removed.
        zarr_format : {3, 2}
            With ``format="zarr"``: the Zarr version (default 3).
        shards : tuple of int, optional
            With ``format="zarr"`` (v3): pack chunks into shards of this shape (whole
            multiples of ``chunks``), as zarr-python's ``shards=`` does: one object per
            shard, its chunks read by range requests.
        codecs : list of dict, optional
            With ``format="zarr"``: the v3 codec chain of each chunk, e.g.
            ``[{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "gzip",
            "configuration": {"level": 5}}]`` (default ``bytes`` + ``zstd`` level 0, as
            zarr-python). For v2 the chain translates into ``order``, the dtype's byte order
            and one ``compressor``.
        fill_value : scalar, optional
            With ``format="zarr"``: what missing chunks read as (default 0; NaN and
            infinities allowed).
        dimension_names : list of str, optional
            With ``format="zarr"`` (v3): the axes' names.
        attributes : dict, optional
            With ``format="zarr"``: the array's user attributes (with ``ome``, the image
            group's).
        ome : bool
            With ``format="zarr"``: make an OME-Zarr image, a group whose ``multiscales``
            (NGFF 0.5 for ``zarr_format=3``, 0.4 for 2) name its axes and levels, with level
            0 (this array) at path ``"0"``. :meth:`downsample` adds the next levels;
            ``BigArray(url, mip=k)`` opens level k. Implied by ``axes``.
        axes : list of str or dict, optional
            The image's axes, slowest first, one per dimension of ``shape``: names
            (``"t"``, ``"c"``, ``"z"``, ``"y"``, ``"x"`` get their NGFF type) or dicts with
            ``name``, ``type`` (``"time"``, ``"channel"``, ``"space"`` or another) and
            ``unit`` (UDUNITS-2, e.g. ``"micrometer"``, ``"second"``). NGFF wants 2 to 5
            axes: at most one time axis first, one channel (or custom) axis next, then 2 or 3
            space axes. Default: the last ``len(shape)`` of ``t, c, z, y, x``.
        scale : list of float, optional
            With ``ome``: the physical size of one element of level 0 along each axis
            (default 1).
        translation : list of float, optional
            With ``ome``: the physical position of element 0 of level 0 (default none).
        format : {None, "precomputed", "zarr", "h5s"}
            ``"zarr"`` writes a Zarr array's metadata (``zarr.json``, or ``.zarray`` with
            ``zarr_format=2``); ``shape`` and ``chunks`` are then in the array's own axis
            order, any number of axes, and ``encoding``, ``voxel_offset``, ``resolution``,
            ``num_channels``, ``sharding`` and ``compression`` do not apply.
            ``"h5s"`` writes BigArrays.jl's ``config.json`` in the local directory ``url``;
            ``chunks`` is then the block size (one HDF5 file per block, created on first
            write), ``encoding_options={"chunk_size": (32, 32, 4)}`` the HDF5 chunking
            inside each file, and ``compression`` ``"auto"``/``"blosc"`` (the Blosc filter
            32001, BigArrays.jl's default), ``"gzip"`` (shuffle + deflate) or ``None``.

        Returns
        -------
        BigArray
        """
        _check_cache_bytes(cache_bytes)
        if format not in (None, "precomputed", "h5s", "zarr"):
            raise InvalidArgumentError(
                f"format={format!r} cannot be created ('precomputed', 'zarr' or 'h5s')"
            )
        shape = tuple(int(n) for n in shape)
        if format != "zarr" and (ome or axes is not None):
            raise InvalidArgumentError("ome= and axes= make OME-Zarr images: pass format='zarr'")
        if format in ("zarr", "h5s") and compress_level is not None:
            where = "its codecs= (gzip's configuration level)" if format == "zarr" else "its filter"
            raise InvalidArgumentError(
                f"compress_level applies to Precomputed layers; format={format!r} takes "
                f"its compression level from {where}"
            )
        if format == "zarr":
            if encoding != "raw" or encoding_options or sharding is not None:
                raise InvalidArgumentError(
                    "format='zarr' takes codecs= and shards=, not encoding=, "
                    "encoding_options= or sharding="
                )
            dt = np.dtype(dtype)
            entry = None
            if ome or axes is not None:
                from ._ome import axes_entries, default_axes, image_entry

                if dimension_names is not None:
                    raise InvalidArgumentError(
                        "an OME-Zarr image names its dimensions with axes=, not dimension_names="
                    )
                names = default_axes(len(shape)) if axes is None else axes
                entry = image_entry(axes_entries(names, len(shape)), scale, translation)
            elif scale is not None or translation is not None:
                raise InvalidArgumentError("scale= and translation= need ome=True (or axes=)")
            layer = _core.Layer.create_zarr(
                str(url),
                zarr_format=int(zarr_format),
                shape=list(shape),
                dtype=dt.name,
                chunks=[min(n, 64) or 1 for n in shape]
                if chunks is None
                else [int(c) for c in chunks],
                shards=None if shards is None else [int(s) for s in shards],
                codecs=None if codecs is None else json.dumps([dict(c) for c in codecs]),
                fill_value=None
                if fill_value is None
                else np.asarray(fill_value, dt.newbyteorder("<")).tobytes(),
                dimension_names=None if dimension_names is None else list(dimension_names),
                attributes=None if attributes is None else json.dumps(dict(attributes)),
                ome=None if entry is None else json.dumps(entry),
                overwrite=overwrite,
                store=store,
                **_engine_options(storage_options),
            )
            return cls._opened(url, layer, format, store, fill_missing, compression,
                               storage_options, cache_bytes)  # fmt: skip
        chunks = (64, 64, 64) if chunks is None else chunks
        if len(shape) == 4:
            if num_channels not in (None, shape[3]):
                raise InvalidArgumentError(
                    f"shape {shape} has {shape[3]} channels but num_channels={num_channels}"
                )
            num_channels = shape[3]
        elif len(shape) != 3:
            raise InvalidArgumentError(f"shape must be (x, y, z) or (x, y, z, c), got {shape}")
        if format == "h5s":
            if store is not None or storage_options:
                raise InvalidArgumentError(
                    "h5s layers are local: store= and storage_options= do not apply"
                )
            inner = tuple((encoding_options or {}).get("chunk_size", (32, 32, 4)))
            layer = _core.Layer.create_h5s(
                str(url),
                shape=shape[:3],
                dtype=np.dtype(dtype).name,
                block=tuple(int(c) for c in chunks),
                chunk=tuple(min(int(a), int(b)) for a, b in zip(inner, chunks, strict=True)),
                voxel_offset=tuple(int(o) for o in voxel_offset),
                num_channels=num_channels or 1,
                compression=compression,
                overwrite=overwrite,
            )
        else:
            layer = _core.Layer.create(
                str(url),
                shape=shape[:3],
                dtype=np.dtype(dtype).name,
                chunks=tuple(chunks),
                voxel_offset=tuple(voxel_offset),
                resolution=tuple(float(r) for r in resolution),
                num_channels=num_channels or 1,
                encoding=encoding,
                encoding_options=None
                if encoding_options is None
                else json.dumps(dict(encoding_options)),
                layer_type=layer_type,
                overwrite=overwrite,
                compression=compression,
                store=store,
                sharding=None if sharding is None else json.dumps(sharding),
                compress_level=compress_level,
                **_engine_options(storage_options),
            )
        return cls._opened(url, layer, format, store, fill_missing, compression,
                           storage_options, cache_bytes, compress_level)  # fmt: skip

    @classmethod
    def _opened(
        cls,
        url: str,
        layer: Any,
        format: str | None,
        store: MutableMapping[str, bytes] | None,
        fill_missing: bool,
        compression: str | None,
        storage_options: Mapping[str, Any] | None,
        cache_bytes: int,
        compress_level: int | None = None,
    ) -> BigArray:
        """A handle on the layer ``create`` made, with the options it was asked for."""
        self = cls.__new__(cls)
        self._url = str(url)
        self._init_args = dict(
            mip=0,
            format=format,
            dataset=None,
            store=store,
            fill_missing=fill_missing,
            compression=compression,
            storage_options=storage_options,
            cache_bytes=cache_bytes,
            compress_level=compress_level,
        )
        self._layer = layer
        self._setup()
        if not fill_missing or cache_bytes:  # create opens with defaults
            return cls(url, **self._init_args)
        return self

    # -- properties -------------------------------------------------------------------

    def _xyz(self) -> BigArray:
        """This array indexed ``(x, y, z[, c])`` in absolute coordinates, as Precomputed
        layers are: the view the operations (copies, pyramids) work in. A Zarr array's last
        axes reversed (up to four, after leading axes of extent 1); itself for the other
        formats."""
        if self._nd is None:
            return self
        view = _shallow_copy(self)
        view._nd = None
        return view

    @property
    def shape(self) -> tuple[int, ...]:
        """``(x, y, z)``, or ``(x, y, z, c)`` when the layer has several channels; a Zarr
        array's own shape."""
        if self._nd is not None:
            return self._nd
        size = tuple(self._layer.size)
        return size + (self.num_channels,) if self.num_channels > 1 else size

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """The storage unit: the chunk (a sharded Zarr array's shard)."""
        if self._nd is not None:
            return tuple(self._layer.nd_chunks)
        return tuple(self._layer.chunks)

    @property
    def voxel_offset(self) -> tuple[int, ...]:
        if self._nd is not None:
            return (0,) * len(self._nd)
        return self._lo

    @property
    def bounds(self) -> tuple[slice, ...]:
        """The layer's extent in absolute coordinates: ``a[a.bounds]`` is the whole layer."""
        if self._nd is not None:
            return tuple(slice(0, n) for n in self._nd)
        return tuple(slice(a, b) for a, b in zip(self._lo, self._hi, strict=True))

    @property
    def fill_value(self) -> Any:
        """What missing chunks and elements outside the array read as: a Zarr array's
        ``fill_value``, 0 for the other formats."""
        raw = self._layer.fill_value
        if raw is None:
            return self._dtype.type(0)
        return np.frombuffer(raw, self._dtype.newbyteorder("<"))[0].astype(self._dtype)

    @property
    def axes(self) -> list[dict[str, Any]]:
        """One entry per axis of :attr:`shape`: ``name`` and, where the metadata gives them,
        ``unit``, ``scale`` (physical size of one element) and ``translation`` (position of
        the first): OME-Zarr's ``axes`` and coordinate transformations, Zarr v3's
        ``dimension_names``. Precomputed layers have ``x``, ``y``, ``z`` in nanometres."""
        described = self._layer.nd_axes()
        if described is None:
            names = ["x", "y", "z", "c"][: self.ndim]
            scale = list(self.resolution) + [1.0]
            return [
                {"name": n, "unit": "nanometer" if n != "c" else None, "scale": scale[i],
                 "translation": float(self._lo[i]) * scale[i] if n != "c" else 0.0}
                for i, n in enumerate(names)
            ]  # fmt: skip
        names, units, scale, translation = described
        return [
            {"name": n, "unit": u, "scale": s, "translation": t}
            for n, u, s, t in zip(names, units, scale, translation, strict=True)
        ]

    @property
    def resolution(self) -> tuple[float, float, float]:
        return tuple(self._layer.resolution)

    @property
    def mip(self) -> int:
        return self._layer.mip

    @property
    def num_mips(self) -> int:
        return self._layer.num_mips

    @property
    def num_channels(self) -> int:
        return self._layer.num_channels

    @property
    def order(self) -> str:
        """Memory order of the arrays reads return (and ``read_many(out=...)`` takes):
        ``"F"`` (x fastest, as stored) for ``(x, y, z[, c])`` layers, ``"C"`` for a Zarr
        array in its own axes."""
        return self._order

    @property
    def format(self) -> str:
        """``"precomputed"``, ``"h5s"``, ``"aligned"`` or ``"hdf5"``."""
        return self._layer.format

    @property
    def encoding(self) -> str:
        return self._layer.encoding

    @property
    def read_chunks(self) -> tuple[int, ...]:
        """The read unit: a sharded Zarr array's inner chunk; :attr:`chunks` elsewhere."""
        inner = self._layer.nd_read_chunks
        return self.chunks if inner is None or self._nd is None else tuple(inner)

    def ome_image(self) -> tuple[dict[str, Any], int] | None:
        """The OME-Zarr image this array is a level of: its group's attributes (with the
        ``multiscales``) as stored now, and this level's index; None for anything else."""
        found = self._layer.zarr_multiscale()
        return None if found is None else (json.loads(found[0]), int(found[1]))

    def add_ome_level(
        self,
        level: int,
        shape: Sequence[int],
        scale: Sequence[float],
        translation: Sequence[float],
    ) -> None:
        """Adds level ``level`` to the OME-Zarr image this array is a level of (replacing
        one that is there, its chunks removed): an empty array of ``shape`` chunked and
        encoded as this one, and its entry in the group's ``multiscales`` with ``scale`` and
        ``translation``. What :meth:`downsample` builds its levels with."""
        self._layer.add_zarr_level(level, list(shape), list(scale), list(translation))

    @property
    def writable(self) -> bool:
        """Whether the format and the store take writes (an HTTP layer, the aligned and
        single-file HDF5 layouts do not); a store may still refuse a write it was not
        given the permission for."""
        return self._layer.writable

    @property
    def info(self) -> dict[str, Any]:
        """The ``info`` file as a dict (a copy; unknown keys included)."""
        return json.loads(self._layer.metadata_json())

    @property
    def url(self) -> str:
        """The layer's location, normalised (``file:///abs/path``, ``memory://name``)."""
        return self._layer.url

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self._dtype.itemsize

    # -- reading and writing ------------------------------------------------------------

    def _parse(self, key: object) -> Any:
        """``key`` resolved into the box to read or write and the index into it."""
        if self._nd is not None:
            return _ndselection.parse(key, self._nd)
        return _selection.parse(key, self._lo, self._hi, self.num_channels)

    def _box_shape(self, sel: Any) -> tuple[int, ...]:
        """The shape of a selection's box as an array (channels last, when several)."""
        if self._nd is not None or self.num_channels == 1:
            return tuple(sel.box_shape)
        return tuple(sel.box_shape) + (self.num_channels,)

    @property
    def _order(self) -> str:
        """Memory order of the arrays this handle reads and writes: C for axes of their own
        (Zarr), Fortran (x fastest) as stored for the others."""
        return "F" if self._nd is None else "C"

    def _box_bytes(self, sel: Any) -> int:
        """Bytes of the buffer a box needs (a Python int: never overflows)."""
        n = self._dtype.itemsize
        for d in self._box_shape(sel):
            n *= d
        return n

    def _check_size(self, sel: _selection.Selection, what: str) -> None:
        """Refuses, before anything is allocated, a box whose buffer exceeds this machine's
        memory (``RequestTooLargeError``, a ``MemoryError``, with the size)."""
        n = self._box_bytes(sel)
        limit = memory_bytes()
        if n > min(limit, sys.maxsize):
            shape = self._box_shape(sel)
            raise RequestTooLargeError(
                f"{self.url}: {what} box [{sel.start}, {sel.stop}) of {self._dtype} "
                f"(shape {shape}) needs {n} bytes ({_human(n)}), more than this machine's "
                f"{_human(limit)} of memory; cut it into smaller boxes (to_dask(), copy_to())"
            )

    def _read_box(self, sel: Any) -> np.ndarray:
        self._check_size(sel, "reading the")
        return self._shaped(sel, self._read_flat([sel])[0])

    def _read_flat(self, sels: Sequence[Any]) -> list[np.ndarray]:
        if self._nd is not None:
            return self._layer.read_nd_many([s.start for s in sels], [s.box_shape for s in sels])
        return self._layer.read_many([s.start for s in sels], [s.stop for s in sels])

    def _shaped(self, sel: Any, flat: np.ndarray) -> np.ndarray:
        return flat.view(self._dtype).reshape(self._box_shape(sel), order=self._order)

    def __getitem__(self, key: object) -> np.ndarray:
        """``a[key]``: the voxels ``key`` selects, as a new NumPy array.

        Indexing follows NumPy except for coordinates: integers and slice bounds along x,
        y and z are **absolute voxel coordinates** (``a[a.voxel_offset]`` is the first
        voxel), and negative numbers are coordinates too, never counted from the end.
        Omitted bounds are the layer's (``a[:, :, 10]`` is plane z=10). Voxels outside the
        bounds read as 0, and so do missing chunks unless ``fill_missing=False``. Integers
        drop their axis; slices take positive steps; ``...`` fills the remaining axes. A
        multi-channel layer has a fourth axis, indexed as in NumPy (negatives from the
        end). Boolean masks and integer arrays are refused: index the result instead
        (``a[box][mask]``). Results are Fortran-ordered (x fastest), as stored.
        """
        sel = self._parse(key)
        return self._pick(sel, self._read_box(sel))

    def _pick(self, sel: Any, box: np.ndarray) -> np.ndarray:
        """The voxels ``sel`` asks for, out of the box read for it."""
        if sel.is_whole_box:
            return box
        picked = box[sel.index]
        if not isinstance(picked, np.ndarray):
            return picked
        return np.asfortranarray(picked) if self._nd is None else np.ascontiguousarray(picked)

    def read_many(
        self, keys: Sequence[object], *, out: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Reads several cutouts in one call: ``[a[k] for k in keys]``, but faster.

        Every chunk the cutouts touch is fetched and decoded once, however many of them
        share it (patches of a training batch often do), and all the decoding runs in
        parallel with the GIL released.

        Parameters
        ----------
        keys : sequence
            Index keys as for ``a[...]`` (e.g. tuples of slices, absolute coordinates).
        out : array or sequence of arrays, optional
            Where to read: ``out[i]`` receives ``a[keys[i]]`` with no copy on the way (e.g.
            the patches of a batch, ``out`` a ``(B, x, y, z)`` array). Each ``out[i]`` must
            be writable, of the array's dtype and of the shape of the box ``keys[i]``
            selects (slices without steps), laid out as reads lay out voxels: Fortran order
            for ``(x, y, z[, c])`` layers (``np.empty((B, z, y, x), dtype).transpose(0, 3,
            2, 1)`` gives such a batch), C order for Zarr arrays in their own axes.

        Returns
        -------
        list of ndarray
            One array per key, as ``a[key]`` would return it (views of ``out`` when given).
        """
        sels = [self._parse(k) for k in keys]
        for s in sels:
            self._check_size(s, "reading the")
        if out is not None:
            return self._read_into(sels, out)
        total = sum(self._box_bytes(s) for s in sels)
        if total > memory_bytes():
            raise RequestTooLargeError(
                f"{self.url}: read_many of {len(sels)} boxes needs {total} bytes "
                f"({_human(total)}) in all, more than this machine's "
                f"{_human(memory_bytes())} of memory; read them in smaller batches"
            )
        flats = self._read_flat(sels)
        return [self._pick(s, self._shaped(s, f)) for s, f in zip(sels, flats, strict=True)]

    def _read_into(self, sels: Sequence[Any], out: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``read_many`` into the caller's arrays, each checked to take its box as is."""
        if len(out) != len(sels):
            raise InvalidArgumentError(f"out holds {len(out)} arrays for {len(sels)} keys")
        order = self._order
        dests, flats = [], []
        for i, s in enumerate(sels):
            dest = out[i]
            shape = self._box_shape(s)
            if not s.is_whole_box:
                raise InvalidArgumentError(
                    f"{self.url}: read_many(out=...) reads whole boxes; key {i} picks "
                    "from its box (a step or an integer index)"
                )
            if not isinstance(dest, np.ndarray) or dest.dtype != self._dtype:
                got = dest.dtype if isinstance(dest, np.ndarray) else type(dest).__name__
                raise InvalidArgumentError(f"out[{i}] is {got}; the array holds {self._dtype}")
            contiguous = dest.flags.f_contiguous if order == "F" else dest.flags.c_contiguous
            if dest.shape != shape or not contiguous or not dest.flags.writeable:
                raise InvalidArgumentError(
                    f"out[{i}] must be a writable {shape} array in {order} order, got "
                    f"shape {dest.shape} (F: {dest.flags.f_contiguous}, C: "
                    f"{dest.flags.c_contiguous}, writable: {dest.flags.writeable})"
                )
            dests.append(dest)
            flats.append(dest.reshape(-1, order=order).view(np.uint8))
        if self._nd is not None:
            starts, shapes = [s.start for s in sels], [s.box_shape for s in sels]
            self._layer.read_nd_many_into(starts, shapes, flats)
        else:
            self._layer.read_many_into([s.start for s in sels], [s.stop for s in sels], flats)
        return dests

    @property
    def cache_stats(self) -> dict[str, int] | None:
        """The decoded-chunk cache's ``hits``, ``misses``, ``entries``, ``bytes`` and
        ``budget`` (all since the handle was opened); None without ``cache_bytes``."""
        return self._layer.cache_stats()

    def __setitem__(self, key: object, value: Any) -> None:
        """``a[key] = value``: writes voxels, with the indexing rules of ``a[key]``.

        ``value`` broadcasts to the selection as in NumPy. Casts that lose data are refused
        with nothing written, as NumPy's ``casting="same_kind"`` refuses them: floats into
        an integer layer raise ``TypeError``, a Python integer outside the voxel type's
        range raises ``OverflowError``. Say it explicitly when you mean it:
        ``a[key] = value.astype(a.dtype)`` or ``a.write(key, value, casting="unsafe")``.
        Writing outside the bounds raises :class:`~bigarrays.errors.OutOfBoundsError`.
        """
        self.write(key, value)

    def write(
        self,
        key: object,
        value: Any,
        *,
        casting: str = "same_kind",
        only: Sequence[Box] | None = None,
    ) -> None:
        """Writes ``value`` into the voxels ``key`` selects (``a[key] = value``), casting as
        ``casting`` allows.

        Parameters
        ----------
        key : index
            As for ``a[key]``: absolute coordinates, slices with positive steps, ``...``.
        value : array-like or scalar
            Broadcast to the selection's shape.
        casting : {"no", "equiv", "safe", "same_kind", "unsafe"}
            NumPy's casting rule for the value's type into the layer's (default
            ``"same_kind"``: float into integer is refused). Python numbers have no type
            of their own: integers must fit the layer's type, floats go into floats only.
            ``"unsafe"`` casts as ``ndarray.astype`` does (floats truncate, integers wrap).
        only : list of ((x0, y0, z0), (x1, y1, z1)), optional
            Write just the storage chunks that touch one of these boxes (absolute
            coordinates); the box's other chunks are left as they are (absent chunks stay
            absent, so a sparse layer stays sparse). ``key`` must then select a whole box
            (no steps, every channel). Formats that cannot write part of a box write all of
            it.
        """
        planned = self._plan_write(key, value, casting, only)
        if planned is None:
            return
        sel, values = planned
        # Steps or a subset of channels keep the other voxels: read them first.
        old = None if sel.is_whole_box else self._read_box(sel)
        flat = self._flat_to_write(sel, values, old, own=False)
        if self._nd is not None:
            self._layer.write_nd(sel.start, sel.box_shape, flat)
        elif only is None:
            self._layer.write(sel.start, sel.stop, flat)
        else:
            self._layer.write(sel.start, sel.stop, flat, [_box(b) for b in only])

    def _plan_write(
        self, key: object, value: Any, casting: str, only: Sequence[Box] | None
    ) -> tuple[Any, np.ndarray] | None:
        """The selection and the values a write takes, checked; None when it selects
        nothing."""
        sel = self._parse(key)
        if only is not None and self._nd is not None:
            raise InvalidArgumentError(
                f"{self.url}: write(..., only=...) takes (x, y, z) boxes; "
                "use it on the operations' view, not a Zarr array's own axes"
            )
        if only is not None and not sel.is_whole_box:
            raise InvalidArgumentError(
                f"{self.url}: write(..., only=...) needs a whole box (no steps, every channel)"
            )
        values = _values_to_write(value, self._dtype, casting, self.url)
        if 0 in self._box_shape(sel):
            return None
        self._check_size(sel, "writing the")
        return sel, values

    def _flat_to_write(
        self, sel: Any, values: np.ndarray, old: np.ndarray | None, *, own: bool
    ) -> np.ndarray:
        """The bytes of the whole box a write puts: ``values`` as they are when they fill it
        (copied with ``own``, so that the caller may change its array meanwhile), else
        painted over ``old`` (the box's voxels as read) or over nothing."""
        order, shape = self._order, self._box_shape(sel)
        if sel.is_whole_box and values.dtype == self._dtype and values.shape == shape:
            box = (
                np.array(values, order=order, copy=True) if own else np.asarray(values, order=order)
            )
        else:
            box = np.empty(shape, self._dtype, order=order) if old is None else old
            box[sel.index] = values  # checked by _plan_write; NumPy's broadcasting rules
        return box.reshape(-1, order=order).view(np.uint8)

    # -- asyncio ------------------------------------------------------------------------

    def _read_flat_async(self, sels: Sequence[Any]) -> Any:
        """``_read_flat`` for asyncio: an awaitable of the flat arrays."""
        if self._nd is not None:
            starts, shapes = [s.start for s in sels], [s.box_shape for s in sels]
            return _async.call(
                lambda token, done: self._layer.submit_read_nd_many(starts, shapes, token, done),
                wait_when_cancelled=False,
            )
        starts, stops = [s.start for s in sels], [s.stop for s in sels]
        return _async.call(
            lambda token, done: self._layer.submit_read_many(starts, stops, token, done),
            wait_when_cancelled=False,
        )

    async def read_async(self, key: object) -> np.ndarray:
        """``a[key]`` for asyncio: awaits the read without blocking the event loop.

        The read runs on the engine's threads with the GIL released; the loop keeps running
        meanwhile, and reads awaited together (``asyncio.gather``) share engine calls, so
        many concurrent reads need no thread each and fetch the chunks they share once.
        Cancelling the awaiting task (or an ``asyncio.wait_for`` timeout) stops the read
        within about 50 ms and frees its buffers.

        Parameters
        ----------
        key : index
            As for ``a[key]``: absolute coordinates, slices with positive steps, ``...``.

        Returns
        -------
        ndarray
            What ``a[key]`` returns.
        """
        sel = self._parse(key)
        self._check_size(sel, "reading the")
        (flat,) = await self._read_flat_async([sel])
        return self._pick(sel, self._shaped(sel, flat))

    async def read_many_async(self, keys: Sequence[object]) -> list[np.ndarray]:
        """``read_many(keys)`` for asyncio, as :meth:`read_async`.

        Parameters
        ----------
        keys : sequence
            Index keys as for ``a[...]``.

        Returns
        -------
        list of ndarray
            One array per key, as ``a[key]`` would return it.
        """
        sels = [self._parse(k) for k in keys]
        for s in sels:
            self._check_size(s, "reading the")
        total = sum(self._box_bytes(s) for s in sels)
        if total > memory_bytes():
            raise RequestTooLargeError(
                f"{self.url}: read_many_async of {len(sels)} boxes needs {total} bytes "
                f"({_human(total)}) in all, more than this machine's "
                f"{_human(memory_bytes())} of memory; read them in smaller batches"
            )
        if not sels:
            return []
        flats = await self._read_flat_async(sels)
        return [self._pick(s, self._shaped(s, f)) for s, f in zip(sels, flats, strict=True)]

    async def write_async(
        self,
        key: object,
        value: Any,
        *,
        casting: str = "same_kind",
        only: Sequence[Box] | None = None,
    ) -> None:
        """``a.write(key, value)`` for asyncio: awaits the write without blocking the event
        loop.

        ``value`` is copied first when the write would otherwise use its memory, so the
        caller may change it while the write runs. A selection with steps or a subset of
        channels reads the box first (awaited too), as :meth:`write` does.

        Cancelling the awaiting task (or an ``asyncio.wait_for`` timeout) stops the write
        between chunk puts, and the cancellation is raised once the engine has stopped.
        Each chunk put is atomic, so every chunk of the box is then either as it was or as
        written, never torn; which chunks were written is not said, so write the box again
        to be sure of it.

        Parameters
        ----------
        key, value, casting, only
            As for :meth:`write`.
        """
        planned = self._plan_write(key, value, casting, only)
        if planned is None:
            return
        sel, values = planned
        old = None
        if not sel.is_whole_box:
            (flat_old,) = await self._read_flat_async([sel])
            old = self._shaped(sel, flat_old)
        own = isinstance(value, np.ndarray) and np.may_share_memory(values, value)
        flat = self._flat_to_write(sel, values, old, own=own)
        if self._nd is not None:
            start, shape = sel.start, sel.box_shape
            await _async.call(
                lambda token, done: self._layer.submit_write_nd(start, shape, flat, token, done),
                wait_when_cancelled=True,
            )
            return
        boxes = None if only is None else [_box(b) for b in only]
        await _async.call(
            lambda token, done: self._layer.submit_write(
                sel.start, sel.stop, flat, token, done, boxes
            ),
            wait_when_cancelled=True,
        )

    # -- storage units: what operations built on BigArray (copies, pyramids) need ---------

    def stored_chunks(
        self, key: object = None
    ) -> list[tuple[tuple[int, ...], tuple[int, ...], int]] | None:
        """The storage units of the box ``key`` selects that hold data, learned without
        fetching or decoding them (file metadata, HEAD requests, listings, shard indexes).

        Parameters
        ----------
        key : index, optional
            As for ``a[key]`` (absolute coordinates); default: the whole layer, which on a
            cloud store lists every chunk.

        Returns
        -------
        list of ((x0, y0, z0), (x1, y1, z1), nbytes), or None
            One entry per stored chunk (per block for H5s, per shard of a sharded Zarr array)
            touching the box: its extent in absolute coordinates and its stored size in bytes
            (0 for an empty object). Zarr arrays give extents in the array's own axis order,
            from 0, as many axes as it has. None when the format cannot tell without
            decoding (HDF5 layouts): then every unit may hold data.
        """
        if self._nd is not None:
            nd = _ndselection.parse(slice(None) if key is None else key, self._nd)
            units = self._layer.stored_chunks_nd(nd.start, nd.box_shape)
            return [(tuple(lo), tuple(hi), int(n)) for lo, hi, n in units]
        sel = _selection.parse(
            self.bounds if key is None else key, self._lo, self._hi, self.num_channels
        )
        units = self._layer.stored_chunks(sel.start, sel.stop)
        if units is None:
            return None
        return [(_point(lo), _point(hi), int(n)) for lo, hi, n in units]

    @property
    def stored_form(self) -> str | None:
        """How this layer's chunks are stored where they could move between formats as
        stored bytes (see :meth:`copy_chunks_from`): ``"raw"`` (the voxels as they are) or
        ``"gzip"``; None for any other encoding, compression or sharding."""
        return self._layer.stored_form()

    def copy_chunks_from(
        self, src: BigArray, key: object = None, *, only: Sequence[Box] | None = None
    ) -> bool:
        """Copies the chunks of the box ``key`` selects from ``src`` as they are stored, with
        no re-encoding, when both scales share the chunk grid, encoding and compression, or
        when one is Precomputed and the other Zarr and their chunks are the same bytes: a
        ``raw`` Precomputed scale (plain or gzip) and a Zarr array of axes ``(c, z, y, x)``
        with codecs ``bytes`` (little-endian) or ``bytes`` + ``gzip``, unsharded, on the
        same grid.

        Each chunk is still decoded once to check it; chunks ``src`` lacks are not written.
        Chunks on the edge of either layer (Zarr pads them, Precomputed truncates them) are
        decoded and written.

        Parameters
        ----------
        src : BigArray
            The layer to copy from.
        key : index, optional
            As for ``a[key]``, a whole box (default: this layer's bounds).
        only : list of ((x0, y0, z0), (x1, y1, z1)), optional
            Copy just the chunks touching one of these boxes.

        Returns
        -------
        bool
            True when copied; False, with nothing written, when the two scales do not allow
            a stored-bytes copy (different grid, encoding or compression, or a format other
            than precomputed or zarr on either side): copy by ``a[key] = src[key]`` then.
        """
        sel = _selection.parse(
            self.bounds if key is None else key, self._lo, self._hi, self.num_channels
        )
        boxes = None if only is None else [_box(b) for b in only]
        return self._layer.copy_stored_from(src._layer, sel.start, sel.stop, boxes)

    def update_info(self, info: Mapping[str, Any]) -> None:
        """Replaces the layer's stored ``info`` with ``info`` (e.g. with scales added) and
        points this handle at it. Precomputed layers only.

        The data type, channel count and full-resolution scale must stay the same;
        other handles on the layer keep the ``info`` they opened with (:meth:`reopen`
        them to see the new one).

        Where the store has conditional puts (local disks, S3, GCS, ``memory://``,
        mappings with ``compare_and_set``), scales other writers added to the stored
        ``info`` since this handle opened it are kept where they are (this handle's new
        scales go after them, so find a scale by its key or resolution, not its index),
        and the write is retried if ``info`` changes while it is being written, so writers
        adding scales at once never lose one another's. A scale this handle changed or removed
        wins over the stored one; top-level fields are this ``info``'s. Elsewhere the last
        writer's ``info`` wins.
        """
        self._layer = self._layer.update_info(json.dumps(info))
        self._setup()

    def reopen(self, **changes: Any) -> BigArray:
        """This layer opened again, as a new handle, with some of the constructor's
        options changed (e.g. ``a.reopen(mip=1)``, ``a.reopen(fill_missing=False)``).

        The URL and every option not named in ``changes`` are this handle's.
        """
        return BigArray(self._url, **{**self._init_args, **changes})

    # -- iteration ----------------------------------------------------------------------

    def __len__(self) -> int:
        """The extent along x, the first axis (what iteration goes over), as ``len`` of a
        NumPy array."""
        return self.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yields the planes ``a[x]`` for every x inside the bounds, in order.

        As iterating over a NumPy array yields its first axis: ``list(a)`` has ``len(a)``
        planes and ``list(a)[i]`` equals ``a[a.voxel_offset[0] + i]`` (indexes are absolute
        coordinates, iteration starts at the first voxel). The planes are read in slabs of
        whole chunks (about 64 MiB), not one plane at a time, so each chunk is decoded once.
        """
        contiguous = np.asfortranarray if self._nd is None else np.ascontiguousarray
        for slab in self._slabs():
            for i in range(slab.shape[0]):
                yield contiguous(slab[i])

    def __contains__(self, value: object) -> bool:
        """``value in a``: whether any voxel equals ``value``, as NumPy's
        ``(a == value).any()``. Reads slab by slab and stops at the first match, so an
        absent value reads the whole layer."""
        return any(bool((slab == value).any()) for slab in self._slabs())

    def _slabs(self) -> Iterator[np.ndarray]:
        """The layer in slabs along x: whole chunks thick when a chunk-thick slab fits in
        about 64 MiB, otherwise as many planes as fit (at least one)."""
        x0, x1 = self.bounds[0].start, self.bounds[0].stop
        plane = self._dtype.itemsize * math.prod(self.shape[1:])
        chunk = self.chunks[0]
        if chunk * plane <= _SLAB_BYTES:
            thickness = chunk * (_SLAB_BYTES // (chunk * plane))
        else:
            thickness = max(1, _SLAB_BYTES // max(plane, 1))
        for start in range(x0, x1, thickness):
            yield self[start : min(start + thickness, x1)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = self[self.bounds]
        return whole if dtype is None else whole.astype(dtype)

    # -- pyramids ---------------------------------------------------------------------

    def downsample(
        self,
        factor: tuple[int, int, int] = (2, 2, 1),
        mips: int = 1,
        method: str | None = None,
        *,
        resume: bool = False,
        jobs: int | None = None,
        progress: bool = False,
    ) -> list[BigArray]:
        """Adds ``mips`` lower-resolution scales below this one and computes their voxels.

        Each new level is ``factor`` smaller than the one above it and is computed from it
        block by block (chunk-aligned, in parallel), so the layer is never held in memory.
        The new ``info`` entries are the ones CloudVolume's ``add_scale`` computes for the
        same layer (a scale of the same resolution is replaced). Blocks whose source holds
        no chunk at all are not written: a sparse layer's pyramid stays sparse (absent
        chunks read as zeros, what those blocks reduce to).

        The scales are written into ``info`` first (handles need them to write), so an
        interrupted run leaves them there with part of their chunks. Run the same call
        again with ``resume=True`` to finish: blocks whose destination chunks all exist
        (nonzero size, asked of the store without decoding) are skipped, the rest computed.

        On a level of an OME-Zarr image, the new levels are arrays of the image's group:
        level ``k`` replaces the image's dataset ``k`` where there is one, else is a new
        array at path ``"k"``, chunked and encoded as this level. ``factor`` applies to
        the ``(x, y, z)`` view, the array's last three axes (which must be space axes where
        the factor is not 1); shapes are ceil-divided, scales multiplied, and the
        translation moved to the centre of the voxels each new voxel summarises, as
        ome-zarr-py's pyramids are; the ``multiscales`` metadata gains each level as it is
        created. A plain Zarr array (no image) raises
        :class:`~bigarrays.errors.InvalidArgumentError`.

        Parameters
        ----------
        factor : (int, int, int)
            Reduction per level along x, y, z; (2, 2, 1) suits anisotropic EM.
        mips : int
            How many levels to add.
        method : {"average", "mode", "min", "max", "nearest"}, optional
            How a block of voxels becomes one: ``"mode"`` (most frequent value; ties go to
            the first in x-fastest order) is the default for ``layer_type="segmentation"``,
            ``"average"`` (rounded half up for integers) for images. Voxels outside the
            layer's bounds do not count.
        resume : bool
            Finish an interrupted run with the same arguments: keep the blocks already
            computed (a block counts as done when all its destination chunks exist).
        jobs : int, optional
            Blocks processed at once (default: the CPU count).
        progress : bool
            Show a progress bar on stderr (only on a terminal).

        Returns
        -------
        list of BigArray
            Handles on the new scales, highest resolution first.
        """
        # Imported here: operations import BigArray, never the other way round.
        from ._progress import progress_bar
        from ._pyramid import downsample

        with progress_bar(progress, "downsample") as bar:
            return downsample(self._xyz(), factor, mips, method, jobs, bar, resume)

    def copy_to(
        self,
        url: str,
        *,
        bbox: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
        encoding: str | None = None,
        compression: str | None = "auto",
        compress_level: int | None = None,
        sharding: Any = None,
        chunks: tuple[int, int, int] | None = None,
        resume: bool = False,
        verify: bool = False,
        jobs: int | None = None,
        progress: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        format: str | None = None,
        ome: bool = False,
        overwrite: bool = False,
    ) -> BigArray:
        """Copies this scale (or a box of it) into the layer at ``url``, transcoding as asked.

        A new destination gets this scale's geometry (voxel offset, resolution, chunks,
        channels, dtype, layer type) as its only scale; an existing one must have the same
        dtype and channel count. The copy goes in blocks aligned to the destination's
        chunks, in parallel, with bounded memory. Only destination chunks overlapping a
        chunk the source holds are written, so a sparse source stays sparse (its missing
        chunks read as zeros on both sides); where an existing destination holds data and
        the source nothing, zeros are written.

        Parameters
        ----------
        url : str
            The destination (any URL :class:`BigArray` opens for writing).
        bbox : ((x0, y0, z0), (x1, y1, z1)), optional
            Absolute coordinates to copy, clipped to the bounds (default: everything).
        encoding : str, optional
            The destination's chunk encoding (default: the source's).
        compression : {"auto", "gzip", "zstd", None}
            Transport compression of the written chunks. For a new Zarr destination, its
            codecs: ``bytes`` plus that compressor (``bytes`` alone for None); ``"auto"``
            stores chunks as a ``raw`` Precomputed source does (plain or gzip), so they are
            copied as stored bytes, and ``bytes`` + ``zstd`` otherwise.
        compress_level : int, optional
            The gzip level of the chunks a Precomputed destination gets, 1 (fastest) to 12
            (smallest), default 6 (see :class:`BigArray`). Chunks copied as their stored
            bytes (same grid, encoding and compression) keep the source's.
        sharding : optional
            Passed to :meth:`BigArray.create` for a new destination.
        chunks : (int, int, int), optional
            The destination's chunk size (default: the source's).
        resume : bool
            Skip the chunks that exist in the destination already (with a nonzero size),
            so an interrupted copy finishes without redoing its work. Existence is asked of
            the store (file metadata, HEAD requests, listings, shard indexes): no chunk is
            downloaded or decoded, so the chunks found are trusted.
        verify : bool
            Resume, and also decode every destination chunk found; those that fail to
            decode (truncated or corrupt) are copied again. Reads the whole destination.
        jobs : int, optional
            Blocks copied at once (default: the CPU count).
        progress : bool
            Show a progress bar (bytes, MB/s, chunks, ETA) on stderr when it is a terminal.
        storage_options : dict, optional
            For the destination's store (see :class:`BigArray`).
        format : {None, "precomputed", "zarr", "h5s"}
            The layout of a new destination: precomputed (default); a Zarr v3 array of
            axes ``(c, z, y, x)`` (``(z, y, x)`` with one channel), each chunk the bytes of
            the Precomputed chunk it copies; or BigArrays.jl's H5s block files (then
            ``chunks`` is the block size and ``compression`` picks ``"blosc"``/``"auto"``,
            ``"gzip"`` or None).
        ome : bool
            With ``format="zarr"``: make the destination an OME-Zarr image (level 0 at
            ``"0"``), its space axes in nanometres at this scale's resolution, ready for
            :meth:`downsample`.
        overwrite : bool
            Replace an existing destination with a new, empty one first (as
            :meth:`BigArray.create` with ``overwrite=True`` does: every scale of it is
            removed, nothing else), instead of copying into it. Excludes ``resume`` and
            ``verify``.

        Returns
        -------
        BigArray
            The destination.
        """
        from ._copy import copy  # here: operations import BigArray, not the other way

        return copy(
            self._xyz(),
            url,
            bbox=bbox,
            encoding=encoding,
            compression=compression,
            compress_level=compress_level,
            sharding=sharding,
            chunks=chunks,
            resume=resume,
            verify=verify,
            jobs=jobs,
            progress=progress,
            storage_options=dict(storage_options or {}),
            format=format,
            ome=ome,
            overwrite=overwrite,
        )

    # -- dask ---------------------------------------------------------------------------

    def to_dask(self, chunks: tuple[int, int, int] | None = None) -> Any:
        """This scale as a dask array, for computations on a cluster.

        Dask indexes from 0: dask index ``i`` along an axis is voxel ``voxel_offset + i``
        (``a.to_dask()[i]`` is ``a[a.voxel_offset[0] + i]``). Each task reads its block with
        the array re-opened from its pickled form (URL and options), without locks.

        Parameters
        ----------
        chunks : (int, int, int), optional
            dask block size; default: a whole number of storage chunks per axis, about
            64 MiB per block. Multiples of :attr:`chunks` avoid decoding a chunk twice.

        Returns
        -------
        dask.array.Array
        """
        from ._dask import to_dask  # here: operations import BigArray, not the other way

        return to_dask(self, chunks)

    def write_dask(self, darray: Any, offset: tuple[int, int, int] | None = None) -> None:
        """Writes a dask array into this scale, in parallel on dask's scheduler.

        ``darray[i, j, k]`` lands on voxel ``offset + (i, j, k)`` (default offset:
        :attr:`voxel_offset`). The array is first rechunked so that block edges fall on
        the storage chunk grid: no two tasks write the same chunk, so no locks are needed
        and the result does not depend on task order.
        """
        from ._dask import store  # here: operations import BigArray, not the other way

        store(darray, self, offset)

    # -- viewers ------------------------------------------------------------------------

    def neuroglancer_url(
        self, serve: str | None = None, viewer: str = "https://neuroglancer-demo.appspot.com"
    ) -> str:
        """A neuroglancer link showing this layer.

        The viewer state has one layer (``segmentation`` for a Precomputed segmentation, an
        OME-Zarr label image or 32/64-bit unsigned labels; ``image`` otherwise) with the
        source neuroglancer reads (``precomputed://gs://...``, ``zarr3://s3://...``,
        ``zarr2://https://...``; an OME-Zarr level through its image), the spatial
        dimensions in metres from the resolution (OME-Zarr: the axes' scales and units), and
        the position at the layer's centre.

        Parameters
        ----------
        serve : str, optional
            For a local layer, which a browser cannot read: the ``http://`` URL at which
            ``bigarrays serve`` serves it (``bigarrays view PATH`` starts that server
            itself). Given for a bucket layer, it replaces the layer's own location.
        viewer : str
            The neuroglancer deployment the link opens.

        Returns
        -------
        str
            ``<viewer>/#!<state as URL-encoded JSON>``.

        Raises
        ------
        InvalidArgumentError
            A local or ``memory://`` layer without ``serve``, or an HDF5 layout (which
            neuroglancer does not read).
        """
        from ._neuroglancer import neuroglancer_url  # operations import BigArray, not back

        return neuroglancer_url(self, serve=serve, viewer=viewer)

    def __reduce__(self) -> tuple[Any, ...]:
        # Never secrets: the worker re-opens with its own credentials (see _secrets.py).
        return (_reopen, _secrets.for_pickle(self._url, self._init_args))

    def __copy__(self) -> BigArray:
        # The same handle (cache included), not a reopened one: pickling reopens, because a
        # handle cannot cross processes, but a copy within one must see the same cache.
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        return view

    def __repr__(self) -> str:
        offset = "" if self._nd is not None else f", voxel_offset={self._lo}"
        return (
            f"BigArray({self.url!r}, mip={self.mip}, shape={self.shape}, dtype={self._dtype}, "
            f"chunks={self.chunks}{offset})"
        )


def _reopen(url: str, kwargs: dict[str, Any], dropped: list[str] | None = None) -> BigArray:
    try:
        return BigArray(url, **kwargs)
    except Exception as e:
        if dropped and hasattr(e, "add_note"):  # Python 3.11+
            e.add_note(_secrets.note(dropped))
        raise
