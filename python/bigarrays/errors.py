"""The exceptions bigarrays raises.

Every one derives from :class:`BigArrayError` and from the builtin a Python user would
catch anyway (``KeyError`` for a missing chunk, ``ValueError`` for bad metadata, ...), and
every message names the URL, key or field involved.
"""

from __future__ import annotations


class BigArrayError(Exception):
    """Base class of every error bigarrays raises."""


class LayerNotFoundError(BigArrayError, FileNotFoundError):
    """The URL holds no layer (no ``info`` file)."""


class LayerExistsError(BigArrayError, FileExistsError):
    """``BigArray.create`` found an existing layer and ``overwrite`` was not set."""


class InfoError(BigArrayError, ValueError):
    """The layer's ``info`` is malformed or asks for something unsupported."""


class MissingChunkError(BigArrayError, KeyError):
    """A chunk inside the bounds is absent and the layer was opened with ``fill_missing=False``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ChunkDecodeError(BigArrayError, ValueError):
    """A stored chunk cannot be decoded into the voxels its metadata promises."""


class StoreError(BigArrayError, OSError):
    """The key-value store failed."""


class PermissionDeniedError(StoreError, PermissionError):
    """The store refused access (HTTP 401/403: missing, wrong or insufficient credentials)."""


class OutOfBoundsError(BigArrayError, IndexError):
    """A write reached outside the layer bounds; nothing was written."""


class RequestTooLargeError(BigArrayError, MemoryError):
    """A read or write needs a buffer larger than this machine's memory; raised before
    anything is allocated, with the size in the message."""


class InvalidArgumentError(BigArrayError, ValueError):
    """An argument makes no sense (bad option, unknown mip, wrong shape)."""


class CancelledError(BigArrayError):
    """A block of ``copy_to`` or ``downsample`` stopped because another block failed or the
    caller was interrupted (Ctrl-C); the caller gets that error, not this one."""


__all__ = [
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
]
