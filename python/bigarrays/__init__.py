"""bigarrays: arrays far larger than memory, stored as chunked cuboids in key-value stores
(Neuroglancer Precomputed) and read or written by any box as NumPy arrays.

>>> from bigarrays import BigArray
>>> a = BigArray("/data/em")             # doctest: +SKIP
>>> cut = a[100:612, 200:712, 0:64]      # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

from ._bigarray import BigArray
from ._core import __version__
from ._threads import get_num_threads, set_num_threads
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
    "BlendedWriter",
    "FsckReport",
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
    "fsck",
    "get_num_threads",
    "ingest",
    "set_num_threads",
    "sliding_blocks",
    "store",
    "weight_window",
]

if TYPE_CHECKING:
    from ._dask import store
    from ._fsck import FsckReport, fsck
    from ._inference import BlendedWriter, sliding_blocks, weight_window
    from ._ingest import ingest
    from ._loader import PatchLoader

#: Names served by operation modules, imported on first use so that ``import bigarrays``
#: loads ``BigArray`` alone (operations import it, never the other way round).
_LAZY = {
    "store": "._dask",
    "PatchLoader": "._loader",
    "BlendedWriter": "._inference",
    "sliding_blocks": "._inference",
    "weight_window": "._inference",
    "fsck": "._fsck",
    "FsckReport": "._fsck",
    "ingest": "._ingest",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
