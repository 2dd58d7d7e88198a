"""The ``bigarrays`` xarray backend: ``xr.open_dataset(url, engine="bigarrays")``.

A layer becomes one lazily indexed variable. xarray indexes from 0, so index ``i`` is voxel
``voxel_offset + i`` (as in :meth:`BigArray.to_dask`), and each dimension's coordinate is
the physical position of its indices (:attr:`BigArray.axes`: ``translation + i * scale``,
in nanometres for Precomputed). Nothing is read when the dataset opens: without
``chunks=``, a selection reads just its box when its values are asked for. With
``chunks=`` the variable is a dask array whose blocks xarray cuts along the storage chunks
(the ``preferred_chunks`` below), so no two tasks decode the same chunk: ``"auto"`` for
blocks of many chunks (dask's ``array.chunk-size``), ``{}`` for one chunk a block.

xarray is not a dependency: this module is imported only through the entry point.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ._bigarray import BigArray
from ._dask import ZeroBased
from ._layer_type import layer_type

#: Files whose presence makes a local directory one of ours (guess_can_open). Not the HDF5
#: layouts' config.json and registry.txt: too common a name to claim a directory by.
_METADATA_FILES = ("info", "zarr.json", ".zarray", ".zgroup")


class BigArrayBackendArray(BackendArray):
    """A layer indexed from 0 by xarray's lazy indexing machinery.

    Only slices and integers reach the layer (``IndexingSupport.BASIC``); xarray applies
    any integer arrays and negative steps to the box read, in memory. Pickles as the
    layer's URL and options, so dask workers re-open it.
    """

    def __init__(self, a: BigArray) -> None:
        self.array = a
        self.shape = a.shape
        self.dtype = a.dtype
        self._zero_based = ZeroBased(a, a.voxel_offset, a.shape)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        # ZeroBased shifts xarray's 0-based slices and integers to absolute coordinates.
        return np.asarray(self._zero_based[key])


def _open(source: Any, mip: int, options: Mapping[str, Any]) -> BigArray:
    if isinstance(source, BigArray):
        return source if mip == source.mip and not options else source.reopen(mip=mip, **options)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(
            f"engine='bigarrays' opens a URL, a path or a BigArray, not {type(source).__name__}"
        )
    return BigArray(source, mip=mip, **options)


def _name(a: BigArray) -> str:
    """The variable's name: the last component of the layer's URL (``data`` if none)."""
    return posixpath.basename(a.url.rstrip("/")) or "data"


def to_dataset(a: BigArray) -> xr.Dataset:
    """``a`` as a Dataset of one lazily indexed variable with named, physical axes."""
    dims: list[str] = []
    coords: dict[str, xr.Variable] = {}
    for i, (axis, n) in enumerate(zip(a.axes, a.shape, strict=True)):
        name = axis["name"] or f"dim_{i}"
        dims.append(name)
        # Channels are counted, not placed: they get no coordinate (xarray then indexes
        # them by position).
        if name == "c":
            continue
        scale, translation, unit = axis.get("scale"), axis.get("translation"), axis.get("unit")
        attrs = {"units": unit} if unit else {}
        if unit is None and scale in (None, 1.0) and not translation:
            values = np.arange(n, dtype=np.int64)  # no physical placement: indices
        else:
            values = (translation or 0.0) + (scale or 1.0) * np.arange(n, dtype=np.float64)
        coords[name] = xr.Variable(name, values, attrs)
    # The storage chunks (a sharded Zarr array's shards) with channels whole: xarray warns
    # about dask blocks that split them, and "auto" makes its blocks multiples of them.
    stored = tuple(a.chunks) + a.shape[len(a.chunks) :]
    data = indexing.LazilyIndexedArray(BigArrayBackendArray(a))
    attrs: dict[str, Any] = {
        "url": a.url,
        "format": a.format,
        "mip": a.mip,
        "num_mips": a.num_mips,
        "layer_type": layer_type(a),
    }
    if a.format != "zarr":
        # Not "units": by CF convention that would be the voxel values' unit.
        attrs.update(
            resolution=list(a.resolution),
            resolution_units="nanometer",
            voxel_offset=list(a.voxel_offset),
        )
    variable = xr.Variable(dims, data, attrs)
    variable.encoding = {
        "chunks": stored,
        "preferred_chunks": dict(zip(dims, stored, strict=True)),
    }
    return xr.Dataset({_name(a): variable}, coords=coords)


class BigArraysBackendEntrypoint(BackendEntrypoint):
    """Opens Precomputed layers, Zarr arrays and OME-Zarr images, and BigArrays.jl's HDF5
    layouts with xarray (``engine="bigarrays"``).

    ``mip=k`` opens scale (or OME-Zarr level) ``k``; ``storage_options``, ``format``,
    ``fill_missing``, ``cache_bytes`` and ``dataset`` are :class:`BigArray`'s.
    """

    description = "Neuroglancer Precomputed, Zarr / OME-Zarr and BigArrays.jl layers"
    url = "https://docs.rs/crate/bigarrays/latest/source/README.md"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "mip",
        "storage_options",
        "format",
        "fill_missing",
        "cache_bytes",
        "dataset",
    )

    def open_dataset(  # type: ignore[override]  # xarray's signature takes **kwargs
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mip: int = 0,
        storage_options: Mapping[str, Any] | None = None,
        format: str | None = None,
        fill_missing: bool = True,
        cache_bytes: int = 0,
        dataset: str | None = None,
    ) -> xr.Dataset:
        options: dict[str, Any] = {}
        if storage_options is not None:
            options["storage_options"] = storage_options
        if format is not None:
            options["format"] = format
        if not fill_missing:
            options["fill_missing"] = False
        if cache_bytes:
            options["cache_bytes"] = cache_bytes
        if dataset is not None:
            options["dataset"] = dataset
        ds = to_dataset(_open(filename_or_obj, mip, options))
        if drop_variables is not None:
            drop = [drop_variables] if isinstance(drop_variables, str) else list(drop_variables)
            ds = ds.drop_vars(drop, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """A BigArray, or a local directory holding a layer's metadata (remote URLs need
        ``engine="bigarrays"``: guessing would cost a request per engine tried)."""
        if isinstance(filename_or_obj, BigArray):
            return True
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        path = Path(os.fspath(filename_or_obj))
        try:
            return path.is_dir() and any((path / f).is_file() for f in _METADATA_FILES)
        except OSError:
            return False
