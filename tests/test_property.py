"""Random reads and writes against a NumPy reference of the same layer (hypothesis)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from volumes import window

import bigarrays
from bigarrays import BigArray

OFFSET, SIZE = np.array([-7, 3, 11]), np.array([37, 29, 13])


def boxes(margin: int):
    """Boxes in absolute coordinates, reaching up to `margin` voxels past the bounds."""

    def axis(d: int):
        lo, hi = int(OFFSET[d]) - margin, int(OFFSET[d] + SIZE[d]) + margin
        return st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(sorted)

    return st.tuples(axis(0), axis(1), axis(2))


@pytest.mark.parametrize("channels", [1, 2])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.tuples(st.integers(1, 16), st.integers(1, 16), st.integers(1, 8)),
    ops=st.lists(st.tuples(st.booleans(), boxes(margin=6), st.integers(0, 2**16 - 1)), max_size=8),
)
def test_random_reads_and_writes_match_numpy(channels, chunks, ops):
    shape = tuple(int(n) for n in SIZE) + ((channels,) if channels > 1 else ())
    a = BigArray.create(
        f"memory://{uuid.uuid4().hex}", shape=shape, dtype="uint16", chunks=chunks,
        voxel_offset=tuple(int(o) for o in OFFSET),
    )  # fmt: skip
    ref = np.zeros(shape, np.uint16)
    for is_write, box, seed in ops:
        key = tuple(slice(lo, hi) for lo, hi in box)
        if is_write:
            values = np.random.default_rng(seed).integers(
                0, 2**16, size=tuple(hi - lo for lo, hi in box) + shape[3:], dtype=np.uint16
            )
            inside = all(
                OFFSET[d] <= lo and hi <= OFFSET[d] + SIZE[d] for d, (lo, hi) in enumerate(box)
            )
            empty = any(lo == hi for lo, hi in box)
            if inside or empty:
                a[key] = values
                if not empty:
                    ref[
                        tuple(
                            slice(lo - OFFSET[d], hi - OFFSET[d]) for d, (lo, hi) in enumerate(box)
                        )
                    ] = values
            else:
                with pytest.raises(bigarrays.OutOfBoundsError):
                    a[key] = values
        else:
            np.testing.assert_array_equal(a[key], window(ref, OFFSET, *zip(*box, strict=True)))
    np.testing.assert_array_equal(a[a.bounds], ref)
