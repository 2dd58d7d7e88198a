"""``PatchLoader``: batches of patches at matching coordinates from one or more layers."""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _sampling
from ._batches import handout, read_batch
from ._bigarray import BigArray
from .errors import InvalidArgumentError

Batch = np.ndarray | tuple[np.ndarray, ...]


class PatchLoader:
    """An iterable of batches of patches, read in background threads while you train.

    Patches of every array share one physical centre (absolute voxel coordinates times
    :attr:`BigArray.resolution`): at the same coordinates for layers of one resolution (an
    image and its labels), and e.g. a wider context patch from a lower mip beside a
    full-resolution one. Positions are drawn only where every layer's patch fits (nothing
    is padded).

    Parameters
    ----------
    arrays : BigArray or sequence of BigArray
        The layers to cut from, any mips. One array gives batches as arrays, several as
        tuples. The first is the reference: positions and centres are its voxels.
    patch_shape : (int, int, int) or sequence of them
        Patch size in voxels (x, y, z) of every layer, or one per layer (each in that
        layer's own voxels). Layer ``j``'s corner is ``round(c / rj - nj / 2)`` (halves up)
        for the physical centre ``c = (s0 + n0 / 2) * r0`` of the first layer's patch.
    batch_size : int
        Patches per batch; a batch is ``(batch_size, x, y, z)`` (plus ``c`` for
        multi-channel layers).
    seed : int
        The sample stream is a function of the seed alone: the same seed gives the same
        batches, whatever ``prefetch`` or the machine.
    sampler : "random" or array-like of shape (N, 3)
        ``"random"`` (default): uniform positions, forever unless ``num_batches`` is given.
        Otherwise the patch centres (absolute voxel coordinates, in order); the last batch
        may be smaller.
    num_batches : int, optional
        Stop after this many batches.
    mask : BigArray, optional
        With ``sampler="random"``: centres only where this layer (one channel, any mip,
        e.g. a coarse mip of a tissue mask) is non-zero.
    weights : BigArray, optional
        Centres drawn with probability proportional to this layer's (non-negative) values.
    balance : BigArray, optional
        A label layer: each label (of ``classes``, or every label found) is equally likely
        to be at the centre, and within a label every voxel equally likely.
    classes : sequence of int, optional
        With ``balance``: the labels to draw (others are never centres).
    prefetch : int
        Batches read ahead in background threads (default 2). Each batch is one
        :meth:`BigArray.read_many` per layer, straight into the batch (no copy); open the
        arrays with ``cache_bytes`` to reuse decoded chunks across batches.
    pin_memory : bool
        Hand out torch tensors instead of NumPy arrays (when torch is installed), in pinned
        memory when CUDA is available, ready for ``.to("cuda", non_blocking=True)``. Inside
        a ``DataLoader`` worker they are not pinned (pass ``pin_memory=True`` to the
        DataLoader instead: it pins in the process that feeds the GPU).

    Notes
    -----
    With ``torch`` imported before the loader is made, it is a
    ``torch.utils.data.IterableDataset``: pass it to ``DataLoader(loader, batch_size=None,
    num_workers=N)``. Each worker then yields its own share of the batch stream (batch ``i``
    goes to worker ``i % N``); :meth:`shard` does the same by hand, e.g. for
    ``multiprocessing``. The loader pickles (it holds only the arrays' URLs and options,
    and for ``mask``, ``weights`` or ``balance`` one weight per chunk of that layer).

    ``mask``, ``weights`` and ``balance`` (at most one) weigh the voxels of their layer
    ``S``; the first layer's voxel ``u`` is the centre (patch corner ``u - n0 // 2``) with
    probability proportional to the weight of the ``S`` voxel holding ``u``'s centre,
    among the ``u`` where every patch fits: exact at ``S``'s resolution, uniform inside
    each ``S`` voxel. Making the loader reads ``S`` once over that region, 16 MiB at a
    time, and keeps one weight per chunk (per label and chunk for ``balance``); each
    batch then reads the ``S`` chunks its centres fall in (open ``S`` with
    ``cache_bytes`` to keep them). Pass a coarse mip of a huge mask: its scan is that much
    smaller. Batch ``i`` still depends only on ``(seed, i)``.

    A batch of an ``(x, y, z)`` layer is ``(B, x, y, z)`` whose memory is ``(B, z, y, x)``
    in C order (each patch as reads lay it out): ``batch.transpose(0, 3, 2, 1)`` (a tensor's
    ``permute``) is the contiguous ``(N, D, H, W)`` layout ``Conv3d`` takes, with no copy.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> PatchLoader:
        torch = sys.modules.get("torch")
        if torch is not None and cls is PatchLoader:
            return super().__new__(_torch_class(torch))
        return super().__new__(cls)

    def __init__(
        self,
        arrays: BigArray | Sequence[BigArray],
        patch_shape: tuple[int, int, int],
        batch_size: int,
        *,
        seed: int,
        sampler: str | Any = "random",
        num_batches: int | None = None,
        prefetch: int = 2,
        mask: BigArray | None = None,
        weights: BigArray | None = None,
        balance: BigArray | None = None,
        classes: Sequence[int] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.single = isinstance(arrays, BigArray)
        self.arrays: tuple[BigArray, ...] = (arrays,) if self.single else tuple(arrays)
        if not self.arrays:
            raise InvalidArgumentError("PatchLoader needs at least one array")
        shapes = _sampling.patch_shapes(patch_shape, len(self.arrays))
        self.patch_shape = shapes[0]
        if batch_size < 1 or prefetch < 0:
            raise InvalidArgumentError("batch_size must be ≥ 1 and prefetch ≥ 0")
        self.batch_size, self.seed, self.prefetch = int(batch_size), int(seed), int(prefetch)
        self.num_batches = num_batches
        self.pin_memory = bool(pin_memory)
        self.shard_index, self.shard_count = 0, 1
        # Patches of every layer share a physical centre; corners are in the first layer's
        # voxels, and range where every layer's patch fits (inclusive).
        self.geometry = _sampling.Geometry(self.arrays, shapes)
        self.table: _sampling.CentreTable | None = None
        if isinstance(sampler, str):
            if sampler != "random":
                raise InvalidArgumentError(f"sampler must be 'random' or centres, not {sampler!r}")
            self.starts: np.ndarray | None = None
            self.lo, self.hi = self.geometry.lo, self.geometry.hi
            if not self.geometry.fits:
                raise InvalidArgumentError(
                    f"patch_shape {shapes}: the patch does not fit in every layer's bounds "
                    f"around one centre (corners would range over {self.lo}..{self.hi})"
                )
            self.table = _sampling.build_table(self.geometry, mask, weights, balance, classes)
        elif any(x is not None for x in (mask, weights, balance)):
            raise InvalidArgumentError("mask=, weights= and balance= go with sampler='random'")
        else:
            centres = np.asarray(sampler, dtype=np.int64).reshape(-1, 3)
            self.starts = centres - np.array(self.patch_shape) // 2

    def __reduce__(self) -> tuple[Any, ...]:
        # By way of a function: the torch flavour of the class is made at run time, so
        # pickle cannot find it by name; the receiving process picks its own flavour.
        return (_restore, (self.__dict__,))

    # -- the sample stream -------------------------------------------------------------

    def __len__(self) -> int:
        total = self._total_batches()
        if total is None:
            raise TypeError("a random PatchLoader without num_batches has no length")
        return len(range(self.shard_index, total, self.shard_count))

    def _total_batches(self) -> int | None:
        if self.starts is not None:
            n = math.ceil(len(self.starts) / self.batch_size)
            return n if self.num_batches is None else min(n, self.num_batches)
        return self.num_batches

    def batch_starts(self, index: int) -> np.ndarray:
        """Patch corners (B, 3) of batch ``index`` of the whole stream (before sharding)."""
        if self.starts is not None:
            return self.starts[index * self.batch_size : (index + 1) * self.batch_size]
        # One generator per batch, keyed on (seed, index): any worker can jump to any batch.
        rng = np.random.default_rng([self.seed, index])
        if self.table is not None:
            return self.table.draw(rng, self.batch_size) - np.array(self.patch_shape) // 2
        return rng.integers(self.lo, self.hi, size=(self.batch_size, 3), endpoint=True)

    def batch_boxes(self, index: int) -> list[list[tuple[slice, ...]]]:
        """Per layer, the patch boxes of batch ``index`` (absolute voxel slices)."""
        corners = self.batch_starts(index)
        return [
            [
                tuple(slice(s, s + n) for s, n in zip(start, shape, strict=True))
                for start in self.geometry.starts(j, corners).tolist()
            ]
            for j, shape in enumerate(self.geometry.shapes)
        ]

    def shard(self, index: int, count: int) -> PatchLoader:
        """A copy that yields only batches ``index, index + count, ...`` of the stream."""
        if not 0 <= index < count:
            raise InvalidArgumentError(f"shard index {index} is not in 0..{count - 1}")
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__, shard_index=index, shard_count=count)
        return other

    # -- reading -----------------------------------------------------------------------

    def read_batch(self, index: int) -> Batch:
        """The patches of batch ``index``: one (B, x, y, z[, c]) array per layer."""
        boxes = self.batch_boxes(index)
        # One call per layer, into the batch: chunks shared by patches are decoded once.
        how, torch = handout(self.pin_memory)
        out = [
            read_batch(a, keys, shape, how, torch)
            for a, keys, shape in zip(self.arrays, boxes, self.geometry.shapes, strict=True)
        ]
        return out[0] if self.single else tuple(out)

    def _indices(self) -> Iterator[int]:
        index, count = self.shard_index, self.shard_count
        worker = _torch_worker()
        if worker is not None:  # inside a DataLoader worker: take this worker's share
            index, count = index + count * worker[0], count * worker[1]
        total = self._total_batches()
        i = index
        while total is None or i < total:
            yield i
            i += count

    def __iter__(self) -> Iterator[Batch]:
        indices = self._indices()
        if self.prefetch == 0:
            for i in indices:
                yield self.read_batch(i)
            return
        with ThreadPoolExecutor(self.prefetch, thread_name_prefix="bigarrays-loader") as pool:
            ahead: deque[Future[Batch]] = deque()
            try:
                for i in indices:
                    ahead.append(pool.submit(self.read_batch, i))
                    if len(ahead) > self.prefetch:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()
            finally:
                for f in ahead:
                    f.cancel()


def _restore(state: dict[str, Any]) -> PatchLoader:
    loader = PatchLoader.__new__(PatchLoader)
    loader.__dict__.update(state)
    return loader


def _torch_worker() -> tuple[int, int] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info = torch.utils.data.get_worker_info()
    return None if info is None else (info.id, info.num_workers)


_TORCH_CLASSES: dict[int, type] = {}


def _torch_class(torch: Any) -> type:
    """PatchLoader as a subclass of torch's IterableDataset (made once per torch module)."""
    key = id(torch)
    if key not in _TORCH_CLASSES:
        _TORCH_CLASSES[key] = type(
            "PatchLoader", (PatchLoader, torch.utils.data.IterableDataset), {}
        )
    return _TORCH_CLASSES[key]
