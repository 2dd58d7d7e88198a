"""The napari reader (``napari.yaml``): a layer URL or a local layer directory opened as a
multiscale image or labels layer, each scale a dask array read only where napari looks.

napari shows the last two axes as rows and columns and slices the ones before them, in C
order: ``(x, y, z[, c])`` layers are handed over reversed, as ``([c,] z, y, x)``; Zarr
arrays in their own axes. Channels of an image become one layer each (``channel_axis``).
Scale and translation are the physical ones of the full-resolution level
(:attr:`BigArray.axes`). napari is not a dependency: this module imports nothing of it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import Any

from ._bigarray import BigArray
from ._layer_type import layer_type
from ._neuroglancer import shown_location
from .errors import BigArrayError

#: What napari's reader hook returns: ``(data, layer keyword arguments, layer type)`` tuples.
LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's reader hook: a function that reads ``path``, or None where bigarrays
    cannot open it (napari then asks the next reader).

    Opening reads only the metadata (one request for a URL).
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None  # a stack of several layers is not one layer
        path = path[0]
    try:
        a = BigArray(os.fspath(path))
    except (BigArrayError, OSError, ValueError, TypeError):
        return None
    return lambda _path: read_layer(a)


def read_layer(a: BigArray) -> list[LayerData]:
    """``a``'s scales (all of them, from ``a.mip`` down) as one multiscale napari layer:
    ``labels`` for segmentations (:func:`layer_type`), ``image`` otherwise."""
    levels = [a if m == a.mip else a.reopen(mip=m) for m in range(a.mip, a.num_mips)]
    reverse = a.format != "zarr"  # (x, y, z, c) → (c, z, y, x)
    data = [level.to_dask().transpose() if reverse else level.to_dask() for level in levels]
    axes = a.axes[::-1] if reverse else a.axes
    names = [axis["name"] or f"dim_{i}" for i, axis in enumerate(axes)]
    kind = "labels" if layer_type(a) == "segmentation" else "image"
    channel = names.index("c") if "c" in names and kind == "image" else None
    placed = [i for i in range(len(names)) if i != channel]
    meta: dict[str, Any] = {
        # An OME-Zarr level by its image's name, not the level's ("0").
        "name": posixpath.basename(shown_location(a)) or a.url,
        "scale": [axes[i].get("scale") or 1.0 for i in placed],
        "translate": [axes[i].get("translation") or 0.0 for i in placed],
        "axis_labels": [names[i] for i in placed],
        "units": [axes[i].get("unit") or "pixel" for i in placed],
        "metadata": {"url": a.url, "format": a.format, "mip": a.mip},
    }
    if channel is not None:
        meta["channel_axis"] = channel
    if len(data) > 1:
        meta["multiscale"] = True
        return [(data, meta, kind)]
    return [(data[0], meta, kind)]
