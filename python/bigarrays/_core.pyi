"""Type stubs for the Rust extension module ``bigarrays._core``."""

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CancelToken",
    "Layer",
    "TEMPORARY_MAX_AGE_S",
    "__version__",
    "_store_conformance",
    "bind_cancel_token",
    "encoding_option_keys",
    "get_num_threads",
    "set_num_threads",
    "temporary_of",
]

__version__: str
TEMPORARY_MAX_AGE_S: int

def encoding_option_keys() -> dict[str, list[str]]:
    """Each encoding name with the ``info`` scale keys that parameterise it."""

def temporary_of(name: str) -> str | None:
    """The key a local writer's temporary file ``name`` (``<key>#<n>``) belongs to, or
    ``None`` when it is not one."""

def _store_conformance(
    url: str,
    storage_options: dict[str, str] | None = None,
    store: MutableMapping[str, bytes] | None = None,
    dir: str = "conformance",
) -> list[str]:
    """Runs the store contract's checks in ``dir`` of the store ``url`` names (or of the
    mapping ``store``, under the prefix ``url``); the names of the checks that ran."""

_Box = tuple[tuple[int, int, int], tuple[int, int, int]]
#: The callback of the ``submit_*`` methods: ``done(result, None)`` or ``done(None, error)``,
#: called from an engine thread.
_Done = Callable[[Any, BaseException | None], object]

@final
class CancelToken:
    """Cancels the engine calls of the threads it is bound to (``bind_cancel_token``)."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

def bind_cancel_token(token: CancelToken | None) -> CancelToken | None: ...
def set_num_threads(n: int | None) -> None: ...
def get_num_threads() -> int: ...

@final
class Layer:
    """One scale of a layer in any format, as the engine sees it. Use ``bigarrays.BigArray``."""

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
        format: str | None = None,
        dataset: str | None = None,
        compress_level: int | None = None,
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
        compress_level: int | None = None,
    ) -> Layer: ...
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
    ) -> Layer: ...
    def metadata_json(self) -> str: ...
    def zarr_multiscale(self) -> tuple[str, int] | None: ...
    def add_zarr_level(
        self,
        index: int,
        shape: Sequence[int],
        scale: Sequence[float],
        translation: Sequence[float] | None = None,
    ) -> None: ...
    def update_info(self, json: str) -> Layer: ...
    @property
    def format(self) -> str: ...
    @property
    def writable(self) -> bool: ...
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
    def read_many_into(
        self,
        starts: list[tuple[int, int, int]],
        stops: list[tuple[int, int, int]],
        outs: Sequence[npt.NDArray[np.uint8]],
    ) -> None: ...
    def submit_read_many(
        self,
        starts: list[tuple[int, int, int]],
        stops: list[tuple[int, int, int]],
        token: CancelToken,
        done: _Done,
    ) -> None: ...
    def submit_read_nd_many(
        self,
        starts: Sequence[Sequence[int]],
        shapes: Sequence[Sequence[int]],
        token: CancelToken,
        done: _Done,
    ) -> None: ...
    def submit_write(
        self,
        start: tuple[int, int, int],
        stop: tuple[int, int, int],
        data: npt.NDArray[np.uint8],
        token: CancelToken,
        done: _Done,
        only: list[_Box] | None = None,
    ) -> None: ...
    def submit_write_nd(
        self,
        start: Sequence[int],
        shape: Sequence[int],
        data: npt.NDArray[np.uint8],
        token: CancelToken,
        done: _Done,
    ) -> None: ...
    def cache_stats(self) -> dict[str, int] | None: ...
    def stored_form(self) -> str | None: ...
    def copy_stored_from(
        self,
        src: Layer,
        start: tuple[int, int, int],
        stop: tuple[int, int, int],
        only: list[_Box] | None = None,
    ) -> bool: ...
    def stored_chunks(
        self, start: tuple[int, int, int], stop: tuple[int, int, int]
    ) -> list[tuple[list[int], list[int], int]] | None: ...
    def stored_chunks_nd(
        self, start: Sequence[int], shape: Sequence[int]
    ) -> list[tuple[list[int], list[int], int]]: ...
    def write(
        self,
        start: tuple[int, int, int],
        stop: tuple[int, int, int],
        data: npt.NDArray[np.uint8],
        only: list[_Box] | None = None,
    ) -> None: ...
    @property
    def nd_shape(self) -> list[int] | None: ...
    @property
    def nd_chunks(self) -> list[int] | None: ...
    @property
    def nd_read_chunks(self) -> list[int] | None: ...
    @property
    def fill_value(self) -> bytes | None: ...
    def nd_axes(
        self,
    ) -> tuple[list[str | None], list[str | None], list[float], list[float]] | None: ...
    def read_nd_many(
        self, starts: Sequence[Sequence[int]], shapes: Sequence[Sequence[int]]
    ) -> list[npt.NDArray[np.uint8]]: ...
    def read_nd_many_into(
        self,
        starts: Sequence[Sequence[int]],
        shapes: Sequence[Sequence[int]],
        outs: Sequence[npt.NDArray[np.uint8]],
    ) -> None: ...
    def write_nd(
        self, start: Sequence[int], shape: Sequence[int], data: npt.NDArray[np.uint8]
    ) -> None: ...
    @staticmethod
    def create_zarr(
        url: str,
        *,
        zarr_format: int,
        shape: Sequence[int],
        dtype: str,
        chunks: Sequence[int],
        shards: Sequence[int] | None = None,
        codecs: str | None = None,
        fill_value: bytes | None = None,
        dimension_names: Sequence[str | None] | None = None,
        attributes: str | None = None,
        ome: str | None = None,
        overwrite: bool = False,
        concurrency: int = 64,
        store: MutableMapping[str, bytes] | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> Layer: ...
