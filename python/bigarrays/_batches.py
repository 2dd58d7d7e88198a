"""Batch buffers for ``PatchLoader``: patches read straight into one array per layer, in
NumPy memory or in torch's (pinned when a GPU will take the batch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._bigarray import BigArray

#: By process id: ("numpy" | "torch" | "pinned", the torch module or None). A forked
#: DataLoader worker decides again and never pins: CUDA cannot start after a fork, and
#: DataLoader copies a worker's batches into shared memory anyway.
_MODE: dict[int, tuple[str, Any]] = {}


def handout(pin_memory: bool) -> tuple[str, Any]:
    """How this process hands out batches: NumPy without ``pin_memory``; else torch
    tensors, pinned when CUDA is available outside DataLoader workers; NumPy when torch is
    not installed."""
    if not pin_memory:
        return "numpy", None
    pid = os.getpid()
    if pid not in _MODE:
        try:
            import torch
        except ImportError:
            _MODE[pid] = ("numpy", None)
        else:
            worker = torch.utils.data.get_worker_info() is not None
            pinned = not worker and torch.cuda.is_available()
            _MODE[pid] = ("pinned" if pinned else "torch", torch)
    return _MODE[pid]


def read_batch(
    array: BigArray,
    keys: Sequence[tuple[slice, ...]],
    patch_shape: Sequence[int],
    how: str,
    torch: Any,
) -> Any:
    """The patches ``keys`` of ``array`` as one ``(B, *patch[, c])`` array or tensor, each
    read in place: patch ``i`` is ``batch[i]``, laid out as ``array`` reads lay it out (for
    ``(x, y, z[, c])`` layers the batch's memory is ``(B, [c,] z, y, x)`` in C order, what
    ``Conv3d`` takes after ``permute``)."""
    shape = tuple(patch_shape) + tuple(array.shape[len(patch_shape) :])
    if array.order == "F":
        memory = (len(keys), *shape[::-1])
        axes = (0, *range(len(shape), 0, -1))
    else:
        memory, axes = (len(keys), *shape), tuple(range(len(shape) + 1))
    if how == "numpy":
        batch = np.empty(memory, array.dtype).transpose(axes)
        array.read_many(keys, out=batch)
        return batch
    dtype = torch.from_numpy(np.empty(0, array.dtype)).dtype
    tensor = torch.empty(memory, dtype=dtype, pin_memory=how == "pinned")
    array.read_many(keys, out=tensor.numpy().transpose(axes))
    return tensor.permute(axes)
