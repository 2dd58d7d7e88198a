"""dask arrays over layers, and dask arrays written into layers.

dask indexes from 0, layers from ``voxel_offset``: dask index ``i`` along an axis is voxel
``voxel_offset + i`` (for writes, ``offset + i``). Blocks line up with the storage chunks,
so no two tasks ever touch the same chunk and no locks are needed. Tasks carry the
``BigArray`` pickled (URL and options), and each worker re-opens it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._blocks import block_shape
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import dask.array

    from ._bigarray import BigArray


class ZeroBased:
    """A layer seen with its index 0 at ``origin`` (what dask's from_array/store expect)."""

    def __init__(self, array: BigArray, origin: tuple[int, int, int], shape: tuple[int, ...]):
        self.array, self.origin, self.shape = array, origin, shape
        self.dtype, self.ndim = array.dtype, len(shape)

    def _shift(self, key: Any) -> tuple[Any, ...]:
        """dask's 0-based slices and integers → the layer's absolute ones."""
        key = key if isinstance(key, tuple) else (key,)
        shifted: list[Any] = []
        for axis, k in enumerate(key):
            o = self.origin[axis] if axis < len(self.origin) else 0
            if isinstance(k, slice):
                start, stop, step = k.indices(self.shape[axis])
                shifted.append(slice(start + o, stop + o, step))
            else:
                shifted.append(int(k) % self.shape[axis] + o)
        return tuple(shifted)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.array[self._shift(key)]

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        self.array[self._shift(key)] = value


def _dask_array() -> Any:
    """``dask.array``, or an error that says how to install it (dask is an extra)."""
    try:
        import dask.array
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f'to_dask() and write_dask() need dask ({e}): pip install "bigarrays[dask]"',
            name=e.name,
        ) from e
    return dask.array


def to_dask(a: BigArray, chunks: tuple[int, ...] | None) -> dask.array.Array:
    da = _dask_array()

    # The chunked axes: (x, y, z) with channels whole after them, or every axis of a Zarr
    # array.
    spatial = len(a.chunks)
    voxel_bytes = a.dtype.itemsize * math.prod(a.shape[spatial:])
    if chunks is not None:
        block = tuple(chunks)
    else:
        block = block_shape(a.chunks, voxel_bytes, extent=a.shape[:spatial])
    if len(block) != spatial or (block and min(block) < 1):
        raise InvalidArgumentError(f"chunks must be {spatial} positive integers, got {chunks!r}")
    dask_chunks = block + a.shape[spatial:]
    source = ZeroBased(a, a.voxel_offset, a.shape)
    name = f"bigarrays-{a.url}-{a.mip}-{dask_chunks}"
    return da.from_array(source, chunks=dask_chunks, lock=False, asarray=True, name=name)


def store(darray: Any, a: BigArray, offset: tuple[int, int, int] | None = None) -> None:
    """Writes the dask array ``darray`` into ``a`` with ``darray[0, 0, 0]`` at ``offset``.

    See :meth:`BigArray.write_dask`.
    """
    da = _dask_array()

    offset = tuple(a.voxel_offset if offset is None else (int(o) for o in offset))
    if darray.ndim != a.ndim:
        raise InvalidArgumentError(f"a {darray.ndim}-D dask array into a {a.ndim}-D layer")
    aligned = darray.rechunk(_aligned_chunks(darray, a, offset))
    target = ZeroBased(a, offset, darray.shape)
    da.store(aligned, target, lock=False, compute=True)


def _aligned_chunks(
    darray: Any, a: BigArray, offset: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    """Block sizes whose edges fall on ``a``'s chunk grid, near the array's own sizes."""
    result = []
    for axis in range(darray.ndim):
        size = darray.shape[axis]
        if axis >= len(a.chunks):
            result.append((size,))
            continue
        grid = a.chunks[axis]
        step = grid * max(1, round(max(darray.chunks[axis]) / grid))
        # The first block ends on the first grid line after the array's start.
        first = (a.voxel_offset[axis] - offset[axis]) % step or step
        sizes = [min(first, size)]
        while sum(sizes) < size:
            sizes.append(min(step, size - sum(sizes)))
        result.append(tuple(sizes))
    return tuple(result)
