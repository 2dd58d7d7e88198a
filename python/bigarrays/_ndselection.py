"""NumPy-style keys for arrays with axes of their own (Zarr): indices from 0 in the array's
axis order, negative ones counted from the end, as zarr-python and NumPy count them.

Slice bounds past the end are kept (not clipped as NumPy clips them): reads fill what lies
outside the array with its fill value, and writes there raise, which is this project's
contract for every format."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from ._selection import _integer, per_axis


@dataclass(frozen=True)
class NdSelection:
    """A key resolved against an array of some shape.

    ``start``/``stop`` bound the elements to read or write (from 0, may reach past the
    array); ``index`` applied to the C-ordered array of that box gives exactly the elements
    the key asked for, with integer-indexed axes dropped.
    """

    start: tuple[int, ...]
    stop: tuple[int, ...]
    index: tuple[int | slice, ...]

    @property
    def is_whole_box(self) -> bool:
        """Whether ``index`` selects every element of the box (writes need no read first)."""
        return all(i == slice(None) for i in self.index)

    @property
    def box_shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))


def _axis(key: object, n: int, axis: int) -> tuple[int, int, int | slice]:
    """One axis of extent ``n``: (start, stop, index into the box)."""
    if isinstance(key, slice):
        step = 1 if key.step is None else operator.index(key.step)
        if step <= 0:
            raise IndexError(f"axis {axis}: steps must be positive, got {step}")
        start = 0 if key.start is None else operator.index(key.start)
        stop = n if key.stop is None else operator.index(key.stop)
        start = max(start + n, 0) if start < 0 else start
        stop = max(stop + n, 0) if stop < 0 else stop
        stop = max(stop, start)
        return start, stop, slice(None) if step == 1 else slice(None, None, step)
    at = _integer(key, f"axis {axis}")
    if at < 0:
        at += n
        if at < 0:
            raise IndexError(f"index {at - n} is out of bounds for axis {axis} with size {n}")
    return at, at + 1, 0


def parse(key: object, shape: tuple[int, ...]) -> NdSelection:
    """Resolves ``key`` for an array of ``shape``."""
    keys = per_axis(key, len(shape))
    starts, stops, index = [], [], []
    for axis, (k, n) in enumerate(zip(keys, shape, strict=True)):
        start, stop, i = _axis(k, n, axis)
        starts.append(start)
        stops.append(stop)
        index.append(i)
    return NdSelection(tuple(starts), tuple(stops), tuple(index))
