"""bigarrays: arrays far larger than memory, stored as chunked cuboids in key-value stores
(Neuroglancer Precomputed) and read or written by any box as NumPy arrays.

>>> from bigarrays import BigArray
>>> a = BigArray("/data/em")             # doctest: +SKIP
>>> cut = a[100:612, 200:712, 0:64]      # doctest: +SKIP
"""

from ._bigarray import BigArray
from ._core import __version__
from ._dask import store
from ._loader import PatchLoader
from .errors import (
    BigArrayError,
    CancelledError,
    ChunkDecodeError,
    InfoError,
    InvalidArgumentError,
    LayerExistsError,
    LayerNotFoundError,
    MissingChunkError,
    OutOfBoundsError,
    PermissionDeniedError,
    RequestTooLargeError,
    StoreError,
)

__all__ = [
    "BigArray",
    "PatchLoader",
    "BigArrayError",
    "CancelledError",
    "ChunkDecodeError",
    "InfoError",
    "InvalidArgumentError",
    "LayerExistsError",
    "LayerNotFoundError",
    "MissingChunkError",
    "OutOfBoundsError",
    "PermissionDeniedError",
    "RequestTooLargeError",
    "StoreError",
    "__version__",
    "store",
]
