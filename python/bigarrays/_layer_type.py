"""Whether a layer holds an image or labels, for the viewers (napari, neuroglancer) that
show the two differently."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._bigarray import BigArray

#: Voxel types that hold object ids, never intensities, in practice: images are 8 to 16
#: bits or floats, segmentations 32 or 64 bits unsigned (CloudVolume's and neuroglancer's).
_LABEL_DTYPES = frozenset({np.dtype("uint32"), np.dtype("uint64"), np.dtype("int64")})


def layer_type(a: BigArray) -> str:
    """``"segmentation"`` or ``"image"``.

    What the metadata says where it says it: a Precomputed ``info``'s ``type``, an OME-Zarr
    image that is a label image (``image-label`` in its attributes). Elsewhere (other Zarr
    arrays, the HDF5 layouts) the voxel type decides: 32- and 64-bit unsigned integers and
    64-bit signed ones are labels.
    """
    if a.format == "precomputed":
        kind = a.info.get("type")
        if kind in ("image", "segmentation"):
            return kind
    elif a.format == "zarr":
        found = a.ome_image()
        if found is not None:
            attrs = found[0]
            if "image-label" in attrs or "image-label" in attrs.get("ome", {}):
                return "segmentation"
            return "image"
    return "segmentation" if a.dtype in _LABEL_DTYPES else "image"
