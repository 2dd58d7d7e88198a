"""Where training patches go: layers of different mips around one physical centre, and
centres drawn by a mask, a weight layer or label-class balance at any mip.

Geometry. The first layer is the reference: a patch of shape ``n0`` at corner ``s0`` has
its centre at the physical point ``(s0 + n0 / 2) * r0`` (absolute voxel coordinates times
the resolution; Precomputed's absolute coordinates already hold the voxel offset). Layer
``j`` (resolution ``rj``, patch ``nj``) is cut at ``round(centre / rj - nj / 2)`` (halves
rounded up), computed in exact integer arithmetic from the resolutions as fractions, so
a batch's corners never depend on floating point. Corners are drawn only where every
layer's patch fits: nothing is padded.

Drawing centres. A sampling layer ``S`` (any mip) gives each of its voxels a weight:
``mask != 0``; the voxel value (``weights``); or ``1 / (count of its label)`` (``balance``:
each class equally likely). A reference voxel ``u`` is the patch centre (corner
``u - n0 // 2``) with probability proportional to the weight of the ``S`` voxel that holds
``u``'s centre, among the ``u`` where every patch fits. So the distribution is exact at
``S``'s resolution and uniform inside each of its voxels: pass a coarse mip of a huge mask
and the scan is that much smaller.

Cost. Once, when the loader is made: ``S`` is read over the region where centres may
fall, block by block (about 16 MiB at a time), and one weight is kept per stored chunk of
``S`` (for ``balance``, one count per label and chunk). Per batch: the ``S`` chunks the
drawn centres fall in are read again (one ``read_many``; open ``S`` with ``cache_bytes`` to
keep them decoded), a chunk is drawn by its weight, then a voxel in it, then a reference
voxel inside that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ._bigarray import BigArray
from ._blocks import aligned_blocks, block_shape, chunk_pieces
from .errors import InvalidArgumentError

#: Voxel bytes of ``S`` read at a time while counting weights.
SCAN_BYTES = 16 << 20


def patch_shapes(patch_shape: Any, count: int) -> list[tuple[int, int, int]]:
    """One (x, y, z) shape for every layer: ``patch_shape`` is one shape or one per layer."""
    try:
        nested = len(patch_shape) > 0 and np.ndim(patch_shape[0]) > 0
    except TypeError:
        raise InvalidArgumentError(
            f"patch_shape must be 3 positive ints, got {patch_shape}"
        ) from None
    rows = list(patch_shape) if nested else [patch_shape] * count
    if len(rows) != count:
        raise InvalidArgumentError(
            f"patch_shape gives {len(rows)} shapes for {count} arrays; give one or one each"
        )
    out = []
    for row in rows:
        try:
            shape = tuple(int(n) for n in row)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise InvalidArgumentError(f"patch_shape must be 3 positive ints, got {row}")
        out.append(shape)
    return out  # type: ignore[return-value]


def _fraction(x: float) -> Fraction:
    # Resolutions are decimal numbers of nanometres (4, 3.6, 40); a bounded denominator
    # turns their binary approximations back into those exact values.
    return Fraction(x).limit_denominator(1000)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Geometry:
    """Where each layer's patch sits for a reference corner, and where corners may go."""

    def __init__(self, arrays: Sequence[BigArray], shapes: Sequence[tuple[int, int, int]]):
        self.shapes = [tuple(s) for s in shapes]
        r0 = [_fraction(r) for r in arrays[0].resolution]
        self.resolution0 = r0
        # Layer j's scale against the reference, r0 / rj = p / q per axis.
        self.p, self.q = [], []
        for a in arrays:
            g = [r / _fraction(rj) for r, rj in zip(r0, a.resolution, strict=True)]
            self.p.append(np.array([f.numerator for f in g], dtype=np.int64))
            self.q.append(np.array([f.denominator for f in g], dtype=np.int64))
        n0 = self.shapes[0]
        lo, hi = [], []  # inclusive range of the reference corner, per axis
        for axis in range(3):
            low, high = -(2**62), 2**62
            for j, a in enumerate(arrays):
                p, q, nj = int(self.p[j][axis]), int(self.q[j][axis]), self.shapes[j][axis]
                first, stop = a.bounds[axis].start, a.bounds[axis].stop
                # floor(((2 s0 + n0) p - (nj - 1) q) / 2q) >= first, and <= stop - nj.
                low = max(low, _ceil_div(2 * q * first + (nj - 1) * q - n0[axis] * p, 2 * p))
                top = 2 * q * (stop - nj + 1) + (nj - 1) * q - n0[axis] * p
                high = min(high, _ceil_div(top, 2 * p) - 1)
            lo.append(low)
            hi.append(high)
        self.lo, self.hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)

    @property
    def fits(self) -> bool:
        return bool(np.all(self.hi >= self.lo))

    def starts(self, layer: int, corners: np.ndarray) -> np.ndarray:
        """Layer ``layer``'s patch corners (B, 3) for reference corners (B, 3)."""
        p, q = self.p[layer], self.q[layer]
        n0, nj = np.array(self.shapes[0]), np.array(self.shapes[layer])
        return ((2 * corners + n0) * p - (nj - 1) * q) // (2 * q)


class CentreTable:
    """Weights per chunk of a sampling layer, and the draw of patch centres from them.

    Parameters
    ----------
    layer : BigArray
        The sampling layer (one channel, any mip).
    kind : {"mask", "weights", "balance"}
    resolution0 : per-axis Fractions of the reference layer's resolution.
    lo, hi : inclusive range of reference voxels that may be centres.
    classes : labels to balance (others weigh 0); None: every label found.
    """

    def __init__(
        self,
        layer: BigArray,
        kind: str,
        resolution0: Sequence[Fraction],
        lo: np.ndarray,
        hi: np.ndarray,
        classes: Sequence[int] | None = None,
    ) -> None:
        if layer.num_channels != 1:
            raise InvalidArgumentError(
                f"{kind}: {layer.url} has {layer.num_channels} channels; a sampling layer needs one"
            )
        self.layer, self.kind, self.lo, self.hi = layer, kind, lo, hi
        # S voxel v holds the centres of reference voxels A(v) <= u < A(v + 1), where
        # A(v) = ceil(v f - 1/2) and f = rs / r0 = fp / fq.
        f = [_fraction(rs) / r for rs, r in zip(layer.resolution, resolution0, strict=True)]
        self.fp = np.array([x.numerator for x in f], dtype=np.int64)
        self.fq = np.array([x.denominator for x in f], dtype=np.int64)
        # The S voxels holding the first and last possible centres, within S's bounds.
        first = ((2 * lo + 1) * self.fq) // (2 * self.fp)
        last = ((2 * hi + 1) * self.fq) // (2 * self.fp)
        s_lo = np.array([b.start for b in layer.bounds], dtype=np.int64)
        s_hi = np.array([b.stop for b in layer.bounds], dtype=np.int64)
        self.box_lo = np.maximum(first, s_lo)
        self.box_hi = np.minimum(last + 1, s_hi)
        self.class_values: np.ndarray | None = None
        self.class_weights: np.ndarray | None = None
        self.wanted = None if classes is None else np.unique(np.asarray(classes))
        self._scan()

    # -- per-voxel weights ---------------------------------------------------------------

    def _counts(self, axis: int, start: int, stop: int) -> np.ndarray:
        """How many possible centres each S voxel ``start..stop`` holds along ``axis``."""
        v = np.arange(start, stop + 1, dtype=np.int64)
        edges = -((-(2 * v * self.fp[axis] - self.fq[axis])) // (2 * self.fq[axis]))
        low = np.maximum(edges[:-1], self.lo[axis])
        high = np.minimum(edges[1:], self.hi[axis] + 1)
        return np.maximum(high - low, 0).astype(np.float64)

    def _spread(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray | float:
        """Possible centres per S voxel of the box, flat in x-fastest order (a number when
        they are all the same, as inside the region with whole-number mip ratios)."""
        cx, cy, cz = (self._counts(a, lo[a], hi[a]) for a in range(3))
        if all(c.min() == c.max() for c in (cx, cy, cz)):
            return float(cx[0] * cy[0] * cz[0])
        return np.multiply.outer(np.multiply.outer(cz, cy), cx).ravel()

    def _piece_weights(self, values: np.ndarray, lo: Sequence[int], hi: Sequence[int]):
        """The weights of a box of S voxels, flat in x-fastest order: the order S's arrays
        come in, so nothing is copied."""
        flat = np.asfortranarray(values).ravel(order="F")
        return flat, self._voxel_weights(flat) * self._spread(lo, hi)

    def _voxel_weights(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "mask":
            return (values != 0).astype(np.float64)
        if self.kind == "weights":
            w = values.astype(np.float64)
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise InvalidArgumentError(
                    f"weights: {self.layer.url} holds negative or non-finite values"
                )
            return w
        assert self.class_values is not None and self.class_weights is not None
        at = np.searchsorted(self.class_values, values).clip(0, len(self.class_values) - 1)
        found = self.class_values[at] == values
        return np.where(found, self.class_weights[at], 0.0)

    # -- the scan ------------------------------------------------------------------------

    def _scan(self) -> None:
        layer = self.layer
        box = (tuple(self.box_lo.tolist()), tuple(self.box_hi.tolist()))
        pieces: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        weights: list[float] = []
        labels: list[tuple[np.ndarray, np.ndarray]] = []
        if np.all(self.box_hi > self.box_lo):
            step = block_shape(layer.chunks[:3], layer.dtype.itemsize, SCAN_BYTES)
            for blo, bhi in aligned_blocks(box, layer.voxel_offset, step):  # type: ignore[arg-type]
                values = layer[tuple(slice(a, b) for a, b in zip(blo, bhi, strict=True))]
                chunks = (layer.chunks[0], layer.chunks[1], layer.chunks[2])
                cells = chunk_pieces((blo, bhi), layer.voxel_offset, chunks)
                for plo, phi in cells.values():
                    at = tuple(slice(a - b, c - b) for a, b, c in zip(plo, blo, phi, strict=True))
                    part = values[at]
                    if self.kind == "balance":
                        flat = np.asfortranarray(part).ravel(order="F")
                        found, inverse = np.unique(flat, return_inverse=True)
                        spread = self._spread(plo, phi)
                        if isinstance(spread, float):
                            spread = np.full(flat.size, spread)
                        counts = np.bincount(inverse.ravel(), weights=spread)
                        if self.wanted is not None:
                            keep = np.isin(found, self.wanted)
                            found, counts = found[keep], counts[keep]
                        keep = counts > 0
                        if keep.any():
                            pieces.append((plo, phi))
                            labels.append((found[keep], counts[keep]))
                        continue
                    total = float(self._piece_weights(part, plo, phi)[1].sum())
                    if total > 0:
                        pieces.append((plo, phi))
                        weights.append(total)
        if self.kind == "balance" and labels:
            names = np.unique(np.concatenate([f for f, _ in labels]))
            totals = np.zeros(len(names))
            for found, counts in labels:
                totals[np.searchsorted(names, found)] += counts
            # Each class gets the same total weight; a voxel of class c weighs 1 / |c|.
            self.class_values, self.class_weights = names, 1.0 / totals
            weights = [
                float((counts * self.class_weights[np.searchsorted(names, found)]).sum())
                for found, counts in labels
            ]
        if not weights:
            raise InvalidArgumentError(
                f"{self.kind}: {layer.url} has no voxel of non-zero weight where the patches fit"
            )
        self.pieces = np.array(pieces, dtype=np.int64).reshape(-1, 2, 3)
        self.cumulative = np.cumsum(np.array(weights))

    @property
    def classes(self) -> np.ndarray | None:
        """The balanced labels (``balance`` only)."""
        return self.class_values

    # -- drawing -------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` centres (reference voxels, (count, 3)) drawn with ``rng``."""
        total = self.cumulative[-1]
        picks = np.searchsorted(self.cumulative, rng.random(count) * total, side="right")
        picks = picks.clip(0, len(self.cumulative) - 1)
        unique = sorted(set(picks.tolist()))
        keys = [
            tuple(slice(int(a), int(b)) for a, b in zip(*self.pieces[k], strict=True))
            for k in unique
        ]
        # Per chunk drawn: its voxels' cumulative weights, or, for a mask chunk whose voxels
        # all hold as many possible centres, just where it is non-zero (all weigh the same).
        cumulative: dict[int, tuple[str, np.ndarray, tuple[int, ...]]] = {}
        for k, values in zip(unique, self.layer.read_many(keys), strict=True):
            plo, phi = self.pieces[k]
            if self.kind == "mask" and isinstance(self._spread(plo, phi), float):
                nonzero = np.flatnonzero(np.asfortranarray(values).ravel(order="F"))
                cumulative[k] = "even", nonzero, values.shape
            else:
                weights = self._piece_weights(values, plo, phi)[1]
                cumulative[k] = "cumulative", np.cumsum(weights), values.shape
        centres = np.empty((count, 3), dtype=np.int64)
        for n, k in enumerate(picks.tolist()):
            how, table, shape = cumulative[k]
            r = rng.random()
            if how == "even":
                at = int(table[min(int(r * table.size), table.size - 1)])
            else:
                at = int(np.searchsorted(table, r * table[-1], side="right"))
                if at >= table.size:  # rounding reached the total: the last that weighs
                    at = int(np.flatnonzero(np.diff(table, prepend=0.0))[-1])
            v = np.array(np.unravel_index(at, shape, order="F")) + self.pieces[k][0]
            # The reference voxels whose centres lie in S voxel v, where centres may go.
            low = -((-(2 * v * self.fp - self.fq)) // (2 * self.fq))
            high = -((-(2 * (v + 1) * self.fp - self.fq)) // (2 * self.fq))
            low, high = np.maximum(low, self.lo), np.minimum(high, self.hi + 1)
            centres[n] = rng.integers(low, high)
        return centres


def build_table(
    geometry: Geometry,
    mask: BigArray | None,
    weights: BigArray | None,
    balance: BigArray | None,
    classes: Sequence[int] | None,
) -> CentreTable | None:
    """The table for whichever of ``mask``, ``weights``, ``balance`` is given (at most one)."""
    given = {k: v for k, v in (("mask", mask), ("weights", weights), ("balance", balance))}
    given = {k: v for k, v in given.items() if v is not None}
    if classes is not None and "balance" not in given:
        raise InvalidArgumentError("classes= goes with balance=")
    if not given:
        return None
    if len(given) > 1:
        raise InvalidArgumentError(
            f"give one of mask=, weights=, balance= (got {', '.join(given)}); put a mask into "
            "a weight layer as zeros, or balance only some classes with classes="
        )
    ((kind, layer),) = given.items()
    if not isinstance(layer, BigArray):
        raise InvalidArgumentError(f"{kind}= takes a BigArray, not {type(layer).__name__}")
    n0 = np.array(geometry.shapes[0])
    half = n0 // 2
    return CentreTable(
        layer, kind, geometry.resolution0, geometry.lo + half, geometry.hi + half, classes
    )
