"""Downsampling reductions: each output voxel summarises a ``factor``-sized block of input.

Blocks are aligned to absolute coordinates (output voxel ``i`` covers input voxels
``[i * f, (i + 1) * f)``). Where a block sticks out of the layer, only the voxels inside it
count: the caller passes a ``valid`` mask alongside the block-aligned data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

METHODS = ("average", "mode", "min", "max", "nearest")


def reduce_blocks(
    data: np.ndarray, valid: np.ndarray, factor: tuple[int, int, int], method: str
) -> np.ndarray:
    """Downsamples ``data`` by ``factor`` with ``method``.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z, C)
        Input whose first three sizes are multiples of ``factor``. Voxels where ``valid`` is
        False are ignored (their values do not matter).
    valid : ndarray of bool, shape (X, Y, Z)
        Which voxels lie inside the layer. A block with none gives 0.
    factor : (fx, fy, fz)
    method : {"average", "mode", "min", "max", "nearest"}
        ``average``: the mean, rounded half up for integers (exact, no overflow), True when
        at least half are True for bool. ``mode``: the most frequent value, ties going to
        the one met first in block order (x fastest). ``nearest``: the first voxel in block
        order. ``min``/``max``: as named.

    Returns
    -------
    ndarray, shape (X/fx, Y/fy, Z/fz, C), Fortran-ordered, same dtype as ``data``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if _all_true(valid):
        fast = _reduce_full(data, factor, method)
        if fast is not None:
            return np.asfortranarray(fast)
    values = _blocks(data, factor)  # (x, y, z, c, k)
    mask = _blocks(valid[..., None], factor)  # (x, y, z, 1, k)
    empty = ~mask.any(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _REDUCERS[method](values, mask).astype(data.dtype, copy=False)
    out[np.broadcast_to(empty, out.shape)] = 0
    return np.asfortranarray(out)


def _reduce_full(data: np.ndarray, factor: tuple[int, int, int], method: str) -> np.ndarray | None:
    """The common case, every voxel valid: one strided view per offset within a block,
    combined element-wise (much faster than reducing over non-contiguous axes).

    None where the general path is needed (integer means that could overflow a wider sum).
    """
    fx, fy, fz = factor
    views = [
        data[dx::fx, dy::fy, dz::fz]
        for dz in range(fz)
        for dy in range(fy)
        for dx in range(fx)  # x fastest: views[0] is each block's first voxel
    ]
    if method == "nearest":
        return views[0]
    if method == "mode":
        return _mode_of_views(views)
    if method in ("min", "max"):
        pick = np.minimum if method == "min" else np.maximum
        out = views[0].copy(order="F")
        for v in views[1:]:
            pick(out, v, out=out)
        return out
    n = len(views)
    kind, itemsize = data.dtype.kind, data.dtype.itemsize
    if kind == "f":
        accumulator: type = np.float64
    elif kind == "b" or (kind == "u" and itemsize == 1 and n <= 257):
        accumulator = np.uint16  # n * 255 fits
    elif kind in "iu" and itemsize <= 2:
        accumulator = np.int64
    else:
        return None  # wide integers: the exact path in _average
    if kind == "f":
        # Floats are summed in block order (x fastest), as they always were: another order
        # could round differently.
        total: np.ndarray = views[0].astype(accumulator, order="F")
        for v in views[1:]:
            np.add(total, v, out=total, casting="unsafe")
    else:
        total = _block_sums(data, factor, accumulator)
    if kind == "f":
        return (total / n).astype(data.dtype)
    if kind == "b":
        return 2 * total >= n
    if n & (n - 1) == 0:  # (2t + n) // 2n as a shift when n is a power of two
        total += n // 2
        total >>= n.bit_length() - 1
        return total.astype(data.dtype)
    return ((2 * total + n) // (2 * n)).astype(data.dtype)


def _all_true(valid: np.ndarray) -> bool:
    """``valid.all()``, without a pass over a broadcast mask (every stride 0: one value)."""
    if valid.size and not any(valid.strides):
        return bool(valid.flat[0])
    return bool(valid.all())


def _block_sums(data: np.ndarray, factor: tuple[int, int, int], accumulator: type) -> np.ndarray:
    """Each block's integer sum, one axis at a time: x, then y, then z.

    Summing the ``fx * fy * fz`` strided views one after another reads every input voxel
    through a strided, casting loop; summing along x first shrinks the data before y and z
    are summed with whole contiguous columns. Integer sums are exact in any order, so the
    result is the same. The work goes a few MB of input at a time (whole blocks in z), so
    the temporaries stay small (the input may be a slab of hundreds of MB) and in cache.
    """
    fx, fy, fz = factor
    x, y, z, c = data.shape
    out = np.empty((x // fx, y // fy, z // fz, c), accumulator, order="F")
    plane = max(1, x * y * c * data.itemsize * fz)
    step = max(1, (4 << 20) // plane)
    for k in range(0, z // fz, step):
        stop = min(k + step, z // fz)
        out[:, :, k:stop] = _piece_sums(data[:, :, k * fz : stop * fz], factor, accumulator)
    return out


def _piece_sums(data: np.ndarray, factor: tuple[int, int, int], accumulator: type) -> np.ndarray:
    """``_block_sums`` of one piece. For unsigned bytes halved in x (uint8 and bool images,
    the common case), the two voxels of a pair are the two bytes of a uint16 read
    contiguously: their sum is its low byte plus its high byte, whatever the byte order."""
    fx, fy, fz = factor
    unsigned_bytes = data.dtype.kind in "ub" and data.dtype.itemsize == 1
    if fx == 2 and unsigned_bytes and data.strides[0] == 1 and data.shape[0] % 2 == 0:
        pairs = data.T.view(np.uint16).T  # (X/2, Y, Z, C), x fastest, as data
        total = np.bitwise_and(pairs, 0xFF, dtype=accumulator, order="F")
        np.add(total, pairs >> 8, out=total, casting="unsafe")
    else:
        total = data[0::fx].astype(accumulator, order="F")
        for dx in range(1, fx):
            np.add(total, data[dx::fx], out=total, casting="unsafe")
    for axis, f in ((1, fy), (2, fz)):
        if f == 1:
            continue
        views = []
        for d in range(f):
            step = [slice(None)] * total.ndim
            step[axis] = slice(d, None, f)
            views.append(total[tuple(step)])
        part = np.add(views[0], views[1], order="F")
        for v in views[2:]:
            np.add(part, v, out=part)
        total = part
    return total


def _mode_of_views(views: list[np.ndarray]) -> np.ndarray:
    """The most frequent of the values at each position, ties to the earliest view."""
    k = len(views)
    counts = [np.ones(views[0].shape, np.uint8, order="F") for _ in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            same = views[i] == views[j]
            counts[i] += same
            counts[j] += same
    best, top = views[0].copy(order="F"), counts[0]
    for i in range(1, k):
        better = counts[i] > top
        np.copyto(best, views[i], where=better)
        top = np.maximum(top, counts[i])
    return best


def _blocks(a: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Views ``a`` (X, Y, Z, C) as (X/fx, Y/fy, Z/fz, C, fx*fy*fz), block order x fastest."""
    (x, y, z, c), (fx, fy, fz) = a.shape, factor
    # In Fortran order, axis x of length X splits into (fx, X/fx) with x = dx + fx * i.
    split = a.reshape(fx, x // fx, fy, y // fy, fz, z // fz, c, order="F")
    # Axes: 0 dx, 1 X, 2 dy, 3 Y, 4 dz, 5 Z, 6 C; move the offsets within a block last.
    moved = split.transpose(1, 3, 5, 6, 0, 2, 4)
    return moved.reshape(moved.shape[:4] + (fx * fy * fz,), order="F")


def _average(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=-1, keepdims=True)
    if values.dtype == np.bool_:
        trues = (values & mask).sum(axis=-1, keepdims=True)
        return (2 * trues >= count)[..., 0]
    if values.dtype.kind == "f":
        total = np.where(mask, values, 0).sum(axis=-1, keepdims=True, dtype=np.float64)
        return (total / count)[..., 0]
    # sum(v) / n = sum(v // n) + sum(v % n) / n, so no sum of raw values (which could
    # overflow) is formed. The first sum may wrap in the dtype, but wrapping arithmetic is
    # exact modulo 2**bits and the final mean is in range, so the result is exact.
    count = np.maximum(count, 1)  # empty blocks are zeroed by the caller
    n = count.astype(values.dtype)
    whole = np.where(mask, values // n, 0).sum(axis=-1, keepdims=True, dtype=values.dtype)
    rest = np.where(mask, values % n, 0).sum(axis=-1, keepdims=True, dtype=np.int64)
    return (whole + ((2 * rest + count) // (2 * count)).astype(values.dtype))[..., 0]


def _extreme(pick: Callable[..., np.ndarray], neutral: Callable[[np.dtype], object]):
    def reduce(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return pick(np.where(mask, values, neutral(values.dtype)), axis=-1)

    return reduce


def _limits(dtype: np.dtype) -> tuple[object, object]:
    if dtype == np.bool_:
        return False, True
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return info.min, info.max


def _nearest(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    first = np.argmax(mask, axis=-1)[..., None]  # the first valid voxel of each block
    index = np.broadcast_to(first, values.shape[:-1] + (1,))
    return np.take_along_axis(values, index, axis=-1)[..., 0]


def _mode(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    k = values.shape[-1]
    counts = np.zeros(values.shape, np.int16)
    for i in range(k):
        same = (values == values[..., i : i + 1]) & mask
        counts[..., i] = same.sum(axis=-1)
    counts *= np.broadcast_to(mask, counts.shape)  # an invalid voxel is never the answer
    best = np.argmax(counts, axis=-1)[..., None]
    return np.take_along_axis(values, best, axis=-1)[..., 0]


_REDUCERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "average": _average,
    "mode": _mode,
    "min": _extreme(np.min, lambda d: _limits(d)[1]),
    "max": _extreme(np.max, lambda d: _limits(d)[0]),
    "nearest": _nearest,
}
