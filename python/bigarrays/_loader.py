"""``PatchLoader``: batches of patches at matching coordinates from one or more layers."""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._batches import handout, read_batch
from ._bigarray import BigArray
from .errors import InvalidArgumentError

Batch = np.ndarray | tuple[np.ndarray, ...]


class PatchLoader:
    """An iterable of batches of patches, read in background threads while you train.

    Patches are cut at the same absolute coordinates from every array (e.g. an image and
    its labels), so they must share a coordinate space; positions are drawn where the patch
    fits inside all of them.

    Parameters
    ----------
    arrays : BigArray or sequence of BigArray
        The layers to cut from. One array gives batches as arrays, several as tuples.
    patch_shape : (int, int, int)
        Patch size in voxels (x, y, z).
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
    ``multiprocessing``. The loader pickles (it holds only the arrays' URLs and options).

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
        pin_memory: bool = False,
    ) -> None:
        self.single = isinstance(arrays, BigArray)
        self.arrays: tuple[BigArray, ...] = (arrays,) if self.single else tuple(arrays)
        if not self.arrays:
            raise InvalidArgumentError("PatchLoader needs at least one array")
        self.patch_shape = tuple(int(n) for n in patch_shape)
        if len(self.patch_shape) != 3 or min(self.patch_shape) < 1:
            raise InvalidArgumentError(f"patch_shape must be 3 positive ints, got {patch_shape}")
        if batch_size < 1 or prefetch < 0:
            raise InvalidArgumentError("batch_size must be ≥ 1 and prefetch ≥ 0")
        self.batch_size, self.seed, self.prefetch = int(batch_size), int(seed), int(prefetch)
        self.num_batches = num_batches
        self.pin_memory = bool(pin_memory)
        self.shard_index, self.shard_count = 0, 1
        lo = np.max([a.voxel_offset for a in self.arrays], axis=0)
        hi = np.min([[b.stop for b in a.bounds] for a in self.arrays], axis=0)
        if isinstance(sampler, str):
            if sampler != "random":
                raise InvalidArgumentError(f"sampler must be 'random' or centres, not {sampler!r}")
            self.starts: np.ndarray | None = None
            self.lo, self.hi = lo, hi - np.array(self.patch_shape)  # inclusive upper start
            if np.any(self.hi < self.lo):
                raise InvalidArgumentError(
                    f"patch {self.patch_shape} does not fit in the common bounds {lo}..{hi}"
                )
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
        return rng.integers(self.lo, self.hi, size=(self.batch_size, 3), endpoint=True)

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
        keys = [
            tuple(slice(s, s + n) for s, n in zip(start, self.patch_shape, strict=True))
            for start in self.batch_starts(index).tolist()
        ]
        # One call per layer, into the batch: chunks shared by patches are decoded once.
        how, torch = handout(self.pin_memory)
        out = [read_batch(a, keys, self.patch_shape, how, torch) for a in self.arrays]
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
