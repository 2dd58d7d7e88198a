"""NumPy-style keys (``a[x0:x1, 5, ::2]``) turned into a box in absolute voxel coordinates
plus the NumPy index that picks the requested voxels out of that box."""

from __future__ import annotations

import operator
from dataclasses import dataclass

#: What indexing supports, for the errors that refuse everything else.
SUPPORTED = (
    "index with integers (absolute voxel coordinates), slices with positive steps and '...'; "
    "boolean masks and integer arrays are not supported: read a box, then index the NumPy "
    "array it returns (a[box][mask])"
)


@dataclass(frozen=True)
class Selection:
    """A key resolved against a layer.

    ``start``/``stop`` bound the voxels to read or write (absolute, may cross the layer
    bounds); ``index`` applied to the ``(x, y, z[, c])`` array of that box gives exactly
    the voxels the key asked for, with integer-indexed axes dropped.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    index: tuple[int | slice, ...]

    @property
    def is_whole_box(self) -> bool:
        """Whether ``index`` selects every voxel of the box (writes need no read first)."""
        return all(i == slice(None) for i in self.index)

    @property
    def box_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]


def _spatial(key: object, lo: int, hi: int, axis: str) -> tuple[int, int, int | slice]:
    """One spatial axis: (start, stop, index into the box)."""
    if isinstance(key, slice):
        step = 1 if key.step is None else operator.index(key.step)
        if step <= 0:
            raise IndexError(f"axis {axis}: steps must be positive, got {step}")
        start = lo if key.start is None else operator.index(key.start)
        stop = hi if key.stop is None else operator.index(key.stop)
        stop = max(stop, start)
        return start, stop, slice(None) if step == 1 else slice(None, None, step)
    at = _integer(key, f"axis {axis}")
    return at, at + 1, 0


class UnsupportedIndexError(IndexError, TypeError):
    """A mask or an integer array: NumPy would raise ``IndexError`` for an index it cannot
    use, and before masks were refused by name they raised ``TypeError``; both catch it."""


def _integer(key: object, where: str) -> int:
    """An integer index; booleans and arrays (masks, fancy indexing) are refused."""
    if isinstance(key, bool) or getattr(getattr(key, "dtype", None), "kind", "") == "b":
        raise UnsupportedIndexError(f"{where}: boolean index {_short(key)}; {SUPPORTED}")
    if getattr(key, "ndim", 0) != 0 or isinstance(key, (list, tuple)):
        raise UnsupportedIndexError(f"{where}: array index {_short(key)}; {SUPPORTED}")
    try:
        return operator.index(key)
    except TypeError:
        raise TypeError(
            f"{where}: index {_short(key)} is not an integer or a slice; {SUPPORTED}"
        ) from None


def _short(key: object) -> str:
    """A key for a message: arrays by their shape and dtype, not their (huge) repr."""
    shape, dtype = getattr(key, "shape", None), getattr(key, "dtype", None)
    if shape is not None and dtype is not None:
        return f"of shape {tuple(shape)} and dtype {dtype}"
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def per_axis(key: object, ndim: int) -> list[object]:
    """``key`` as one entry per axis: ``...`` expanded, missing trailing axes whole."""
    keys = list(key) if isinstance(key, tuple) else [key]
    # Identity, not ==: an array among the keys would compare element-wise.
    ellipses = [i for i, k in enumerate(keys) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        keys[at : at + 1] = [slice(None)] * (ndim - len(keys) + 1)
    if len(keys) > ndim:
        raise IndexError(f"too many indices: the array has {ndim} axes, got {len(keys)}")
    return keys + [slice(None)] * (ndim - len(keys))


def parse(
    key: object, lo: tuple[int, int, int], hi: tuple[int, int, int], num_channels: int
) -> Selection:
    """Resolves ``key`` for a layer spanning ``[lo, hi)`` with ``num_channels`` channels.

    Spatial numbers are absolute coordinates, never counted from the end; the channel
    axis (present when ``num_channels > 1``) follows NumPy's rules.
    """
    keys = per_axis(key, 3 + (num_channels > 1))

    starts, stops, index = [], [], []
    for axis, (k, a, b) in enumerate(zip(keys[:3], lo, hi, strict=True)):
        start, stop, i = _spatial(k, a, b, "xyz"[axis])
        starts.append(start)
        stops.append(stop)
        index.append(i)
    if len(keys) == 4:
        channel = keys[3]
        if not isinstance(channel, slice):
            channel = _integer(channel, "channel axis")
            if not -num_channels <= channel < num_channels:
                raise IndexError(f"channel {channel} is out of range for {num_channels} channels")
        index.append(channel)
    return Selection(tuple(starts), tuple(stops), tuple(index))  # type: ignore[arg-type]
