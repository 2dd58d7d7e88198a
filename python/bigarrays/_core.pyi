"""Type stubs for the Rust extension module ``bigarrays._core``."""

from collections.abc import MutableMapping
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CancelToken",
    "HdfLayer",
    "Layer",
    "__version__",
    "_store_conformance",
    "bind_cancel_token",
    "local_path",
]

__version__: str

def local_path(url: str) -> str | None:
    """The filesystem path a local URL (a path or ``file:`` URL) names; None otherwise."""

def _store_conformance(
    url: str,
    storage_options: dict[str, str] | None = None,
    store: MutableMapping[str, bytes] | None = None,
    dir: str = "conformance",
) -> list[str]:
    """Runs the store contract's checks in ``dir`` of the store ``url`` names (or of the
    mapping ``store``, under the prefix ``url``); the names of the checks that ran."""

_Box = tuple[tuple[int, int, int], tuple[int, int, int]]

@final
class CancelToken:
    """Cancels the engine calls of the threads it is bound to (``bind_cancel_token``)."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

def bind_cancel_token(token: CancelToken | None) -> CancelToken | None: ...

@final
class Layer:
    """One scale of a layer, as the engine sees it. Use ``bigarrays.BigArray``."""

    @staticmethod
    def open(
        url: str,
        *,
        compression: str | None,
        mip: int = 0,
        fill_missing: bool = True,
        concurrency: int = 64,
        store: MutableMapping[str, bytes] | None = None,
        storage_options: dict[str, str] | None = None,
        cache_bytes: int = 0,
    ) -> Layer: ...
    @staticmethod
    def create(
        url: str,
        *,
        shape: tuple[int, int, int],
        dtype: str,
        chunks: tuple[int, int, int],
        voxel_offset: tuple[int, int, int],
        resolution: tuple[float, float, float],
        num_channels: int,
        encoding: str,
        layer_type: str,
        overwrite: bool,
        compression: str | None,
        encoding_options: str | None = None,
        concurrency: int = 64,
        store: MutableMapping[str, bytes] | None = None,
        storage_options: dict[str, str] | None = None,
        sharding: str | None = None,
    ) -> Layer: ...
    def info_json(self) -> str: ...
    def update_info(self, json: str) -> Layer: ...
    @property
    def url(self) -> str: ...
    @property
    def mip(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def num_channels(self) -> int: ...
    @property
    def size(self) -> list[int]: ...
    @property
    def voxel_offset(self) -> list[int]: ...
    @property
    def chunks(self) -> list[int]: ...
    @property
    def resolution(self) -> list[float]: ...
    @property
    def encoding(self) -> str: ...
    @property
    def num_mips(self) -> int: ...
    def read(
        self, start: tuple[int, int, int], stop: tuple[int, int, int]
    ) -> npt.NDArray[np.uint8]: ...
    def read_many(
        self, starts: list[tuple[int, int, int]], stops: list[tuple[int, int, int]]
    ) -> list[npt.NDArray[np.uint8]]: ...
    def cache_stats(self) -> dict[str, int] | None: ...
    def copy_stored_from(
        self,
        src: Layer,
        start: tuple[int, int, int],
        stop: tuple[int, int, int],
        only: list[_Box] | None = None,
    ) -> bool: ...
    def stored_chunks(
        self, start: tuple[int, int, int], stop: tuple[int, int, int]
    ) -> list[tuple[list[int], list[int], int]]: ...
    def write(
        self,
        start: tuple[int, int, int],
        stop: tuple[int, int, int],
        data: npt.NDArray[np.uint8],
        only: list[_Box] | None = None,
    ) -> None: ...

@final
class HdfLayer:
    """An HDF5-backed layer, as the engine sees it. Use ``bigarrays.BigArray``."""

    @staticmethod
    def open(
        url: str, *, format: str, dataset: str | None = None, fill_missing: bool = True
    ) -> HdfLayer: ...
    @staticmethod
    def create_h5s(
        url: str,
        *,
        shape: tuple[int, int, int],
        dtype: str,
        block: tuple[int, int, int],
        chunk: tuple[int, int, int],
        voxel_offset: tuple[int, int, int],
        num_channels: int,
        compression: str | None,
        overwrite: bool,
    ) -> HdfLayer: ...
    @property
    def format(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def resolution(self) -> list[float]: ...
    @property
    def mip(self) -> int: ...
    @property
    def num_mips(self) -> int: ...
    @property
    def encoding(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def num_channels(self) -> int: ...
    @property
    def size(self) -> list[int]: ...
    @property
    def voxel_offset(self) -> list[int]: ...
    @property
    def chunks(self) -> list[int]: ...
    def info_json(self) -> str: ...
    def read(
        self, start: tuple[int, int, int], stop: tuple[int, int, int]
    ) -> npt.NDArray[np.uint8]: ...
    def write(
        self, start: tuple[int, int, int], stop: tuple[int, int, int], data: npt.NDArray[np.uint8]
    ) -> None: ...
