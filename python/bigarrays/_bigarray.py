"""The ``BigArray`` class: a thin, NumPy-shaped face over the Rust engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from . import _core, _selection
from .errors import InvalidArgumentError

_FORMATS = (None, "precomputed")


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


def _check_unbuilt(format: str | None, cache_bytes: int) -> None:
    if format not in _FORMATS:
        raise NotImplementedError(f"format={format!r} is not supported yet (only 'precomputed')")
    if cache_bytes:
        raise NotImplementedError("cache_bytes is not supported yet: pass 0")


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
        ``None`` (auto-detect) or ``"precomputed"``.
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
        Reserved for the decoded-chunk cache; must be 0 for now.

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
    ) -> None:
        _check_unbuilt(format, cache_bytes)
        self._init_args = dict(
            mip=mip,
            format=format,
            store=store,
            fill_missing=fill_missing,
            compression=compression,
            storage_options=storage_options,
            cache_bytes=cache_bytes,
        )
        self._url = str(url)
        self._layer = _core.Layer.open(
            self._url,
            mip=mip,
            fill_missing=fill_missing,
            compression=compression,
            store=store,
            **_engine_options(storage_options),
        )
        self._setup()

    def _setup(self) -> None:
        layer = self._layer
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
        chunks: tuple[int, int, int] = (64, 64, 64),
        voxel_offset: tuple[int, int, int] = (0, 0, 0),
        resolution: tuple[float, float, float] = (1, 1, 1),
        num_channels: int | None = None,
        encoding: str = "raw",
        encoding_options: Mapping[str, Any] | None = None,
        compression: str | None = "auto",
        layer_type: str = "image",
        sharding: Any = None,
        overwrite: bool = False,
        store: MutableMapping[str, bytes] | None = None,
        fill_missing: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        cache_bytes: int = 0,
    ) -> BigArray:
        """Creates a new Neuroglancer Precomputed layer and opens it.

        Parameters
        ----------
        url : str
            Where to create it (a local path, ``file://``, ``memory://``, ``s3://`` or
            ``gs://``).
        shape : tuple of int
            ``(x, y, z)``, or ``(x, y, z, c)`` to give the channel count.
        dtype : numpy dtype
            bool, (u)int8-64, float32 or float64.
        chunks, voxel_offset, resolution : tuple
            Chunk size, the absolute coordinate of the first voxel, and voxel size in nm.
        num_channels : int, optional
            Channels per voxel (default 1, or ``shape[3]``).
        encoding : str
            Chunk encoding: ``"raw"`` (default); ``"jpeg"`` (uint8, 1 or 3 channels, lossy);
            ``"png"`` (uint8 or uint16, 1 to 4 channels); ``"compressed_segmentation"``
            (uint32 or uint64); ``"blosc"`` or ``"blosclz"`` (any type; BigArrays.jl's name).
            An impossible combination raises
            :class:`~bigarrays.errors.InvalidArgumentError` naming the field.
        encoding_options : dict, optional
            Scale keys of the ``info`` that parameterise the encoding: ``jpeg_quality``
            (0-100, default 85), ``png_level`` (0-9, default 9),
            ``compressed_segmentation_block_size`` (default ``[8, 8, 8]``),
            ``blosc_compressor`` (``"lz4"`` default, ``"zstd"``, ``"blosclz"``),
            ``blosc_clevel`` (0-9, default 5), ``blosc_shuffle`` (0, 1 default, 2).
        compression : {"auto", "gzip", "zstd", "br", None}
            Transport compression of written chunks (see :class:`BigArray`).
        layer_type : str
            ``"image"`` or ``"segmentation"`` (neuroglancer's default rendering).
        sharding : None
            Sharded layers are not supported yet.
        overwrite : bool
            Replace an existing ``info``; otherwise an existing layer raises
            :class:`~bigarrays.errors.LayerExistsError`.

        Returns
        -------
        BigArray
        """
        if sharding is not None:
            raise NotImplementedError("sharding is not supported yet: pass sharding=None")
        _check_unbuilt(None, cache_bytes)
        shape = tuple(int(n) for n in shape)
        if len(shape) == 4:
            if num_channels not in (None, shape[3]):
                raise InvalidArgumentError(
                    f"shape {shape} has {shape[3]} channels but num_channels={num_channels}"
                )
            num_channels = shape[3]
        elif len(shape) != 3:
            raise InvalidArgumentError(f"shape must be (x, y, z) or (x, y, z, c), got {shape}")
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
            **_engine_options(storage_options),
        )
        self = cls.__new__(cls)
        self._url = str(url)
        self._init_args = dict(
            mip=0,
            format=None,
            store=store,
            fill_missing=fill_missing,
            compression=compression,
            storage_options=storage_options,
            cache_bytes=cache_bytes,
        )
        self._layer = layer
        self._setup()
        if not fill_missing:  # create opens with defaults; honour the caller's choice
            return cls(url, **self._init_args)
        return self

    # -- properties -------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """``(x, y, z)``, or ``(x, y, z, c)`` when the layer has several channels."""
        size = tuple(self._layer.size)
        return size + (self.num_channels,) if self.num_channels > 1 else size

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, int, int]:
        return tuple(self._layer.chunks)

    @property
    def voxel_offset(self) -> tuple[int, int, int]:
        return self._lo

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """The layer's extent in absolute coordinates: ``a[a.bounds]`` is the whole layer."""
        return tuple(slice(a, b) for a, b in zip(self._lo, self._hi, strict=True))

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
    def encoding(self) -> str:
        return self._layer.encoding

    @property
    def info(self) -> dict[str, Any]:
        """The ``info`` file as a dict (a copy; unknown keys included)."""
        return json.loads(self._layer.info_json())

    @property
    def url(self) -> str:
        """The layer's location, normalised (``file:///abs/path``, ``memory://name``)."""
        return self._layer.url

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self._dtype.itemsize

    # -- reading and writing ------------------------------------------------------------

    def _read_box(self, sel: _selection.Selection) -> np.ndarray:
        flat = self._layer.read(sel.start, sel.stop)
        shape = sel.box_shape + ((self.num_channels,) if self.num_channels > 1 else ())
        return flat.view(self._dtype).reshape(shape, order="F")

    def __getitem__(self, key: object) -> np.ndarray:
        sel = _selection.parse(key, self._lo, self._hi, self.num_channels)
        box = self._read_box(sel)
        if sel.is_whole_box:
            return box
        picked = box[sel.index]
        return np.asfortranarray(picked) if isinstance(picked, np.ndarray) else picked

    def __setitem__(self, key: object, value: Any) -> None:
        sel = _selection.parse(key, self._lo, self._hi, self.num_channels)
        shape = sel.box_shape + ((self.num_channels,) if self.num_channels > 1 else ())
        if 0 in shape:
            return
        if (
            sel.is_whole_box
            and isinstance(value, np.ndarray)
            and value.dtype == self._dtype
            and value.shape == shape
        ):
            box = np.asfortranarray(value)
        else:
            # Steps or a subset of channels keep the other voxels: read them first.
            box = (
                np.empty(shape, self._dtype, order="F") if sel.is_whole_box else self._read_box(sel)
            )
            box[sel.index] = value  # NumPy's own casting and broadcasting rules
        self._layer.write(sel.start, sel.stop, box.reshape(-1, order="F").view(np.uint8))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = self[self.bounds]
        return whole if dtype is None else whole.astype(dtype)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._url, self._init_args))

    def __repr__(self) -> str:
        return (
            f"BigArray({self.url!r}, mip={self.mip}, shape={self.shape}, dtype={self._dtype}, "
            f"chunks={self.chunks}, voxel_offset={self._lo})"
        )


def _reopen(url: str, kwargs: dict[str, Any]) -> BigArray:
    return BigArray(url, **kwargs)
