"""PatchLoader's sampling: patches of several mips around one physical centre, and centres
drawn by a mask, a weight layer or label-class balance, checked against the distribution
computed by brute force."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from bigarrays import BigArray, PatchLoader
from bigarrays.errors import InvalidArgumentError

SHAPE, OFFSET = (40, 36, 24), (3, -5, 2)


@pytest.fixture
def img(tmp_path):
    rng = np.random.default_rng(5)
    a = BigArray.create(tmp_path / "img", shape=SHAPE, dtype="uint16", chunks=(16, 16, 8),
                        voxel_offset=OFFSET)  # fmt: skip
    a[a.bounds] = rng.integers(0, 60000, SHAPE, dtype=np.uint16)
    return a


def layer(tmp_path, name, values, resolution, offset, chunks=(8, 8, 8)):
    a = BigArray.create(tmp_path / name, shape=values.shape, dtype=values.dtype, chunks=chunks,
                        resolution=resolution, voxel_offset=offset)  # fmt: skip
    a[a.bounds] = values
    return a


def centres(loader, batches):
    half = np.array(loader.patch_shape) // 2
    return np.concatenate([loader.batch_starts(i) + half for i in range(batches)])


def expected_distribution(ref, shape, s, weigh):
    """P(u) by brute force: the weight of the S voxel holding u's centre, where u fits."""
    lo = np.array(ref.voxel_offset) + np.array(shape) // 2
    hi = np.array([b.stop for b in ref.bounds]) - np.array(shape) + np.array(shape) // 2
    values = s[s.bounds]
    w = weigh(values)
    probs = {}
    for u in np.ndindex(*(hi - lo + 1)):
        u = np.array(u) + lo
        # The physical centre of voxel u, in S voxels.
        v = np.floor((u + 0.5) * np.array(ref.resolution) / np.array(s.resolution)).astype(int)
        v = v - np.array(s.voxel_offset)
        if np.all(v >= 0) and np.all(v < values.shape):
            probs[tuple(u)] = w[tuple(v)]
    total = sum(probs.values())
    return {k: p / total for k, p in probs.items() if p > 0}


def total_variation(drawn, probs, key):
    """Between the draws and ``probs``, both grouped by ``key(u)``: grouped, a few thousand
    draws tell a wrong distribution from sampling noise (over every voxel they cannot)."""
    expected: Counter = Counter()
    for u, p in probs.items():
        expected[key(u)] += p
    counts = Counter(key(u) for u in map(tuple, drawn.tolist()))
    n = len(drawn)
    keys = set(counts) | set(expected)
    distance = 0.5 * sum(abs(counts.get(k, 0) / n - expected.get(k, 0.0)) for k in keys)
    # What sampling noise alone gives on average: E|p̂ - p| ≈ sqrt(2 p (1 - p) / (π n)).
    noise = 0.5 * sum(np.sqrt(2 * p * (1 - p) / (np.pi * n)) for p in expected.values())
    return distance, noise


def check_distribution(drawn, probs, factor):
    """Right weight per S voxel, and uniform inside S voxels (``factor`` S / reference)."""
    assert set(map(tuple, drawn.tolist())) <= set(probs)  # never where the weight is 0
    for key in (lambda u: tuple(np.floor_divide(u, factor)), lambda u: tuple(np.mod(u, factor))):
        distance, noise = total_variation(drawn, probs, key)
        # A wrong distribution (weights ignored, a border voxel's share wrong) is ≥ 0.1 off.
        assert distance < 1.5 * noise + 0.01, (distance, noise)


def test_context_patch_from_a_lower_mip_shares_the_centre(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (64, 48, 32), dtype=np.uint8)
    a = BigArray.create(tmp_path / "em", shape=data.shape, dtype="uint8", chunks=(16, 16, 16),
                        voxel_offset=(4, -8, 0))  # fmt: skip
    a[a.bounds] = data
    a.downsample((2, 2, 2), mips=2)
    ctx = BigArray(str(tmp_path / "em"), mip=2)
    shapes = [(8, 8, 8), (8, 8, 4)]
    loader = PatchLoader([a, ctx], shapes, 6, seed=9, num_batches=20)
    lo = np.array([b.start for b in ctx.bounds])
    hi = np.array([b.stop for b in ctx.bounds])
    for i, (x, c) in enumerate(loader):
        assert x.shape == (6, 8, 8, 8) and c.shape == (6, 8, 8, 4)
        boxes, cboxes = loader.batch_boxes(i)
        for k, (box, cbox) in enumerate(zip(boxes, cboxes, strict=True)):
            np.testing.assert_array_equal(x[k], a[box])
            np.testing.assert_array_equal(c[k], ctx[cbox])
            s0 = np.array([b.start for b in box])
            s2 = np.array([b.start for b in cbox])
            # Same physical centre: (s2 + n2/2) * 4 within half a mip-2 voxel of s0 + 4.
            centre0, centre2 = s0 + 4, (s2 + np.array([4, 4, 2])) * 4
            assert np.all(np.abs(centre2 - centre0) <= 2)
            assert np.all(s2 >= lo) and np.all(s2 + shapes[1] <= hi)  # fits: no padding


def test_corner_range_is_exactly_where_every_patch_fits(tmp_path):
    """Every corner in the range fits in every layer, one step outside does not; with
    resolutions of awkward ratios (3/2, 40/4)."""
    ref = BigArray.create(tmp_path / "r", shape=(50, 41, 30), dtype="uint8",
                          voxel_offset=(-7, 3, 11), resolution=(4, 6, 4))  # fmt: skip
    other = BigArray.create(tmp_path / "o", shape=(20, 17, 9), dtype="uint8",
                            voxel_offset=(-3, 2, 1), resolution=(6, 9, 40))  # fmt: skip
    shapes = [(5, 6, 7), (4, 3, 2)]
    loader = PatchLoader([ref, other], shapes, 1, seed=0)
    geo = loader.geometry

    def fits(corner):
        c = np.array([corner])
        for j, a in enumerate((ref, other)):
            s = geo.starts(j, c)[0]
            if np.any(s < [b.start for b in a.bounds]):
                return False
            if np.any(s + shapes[j] > [b.stop for b in a.bounds]):
                return False
        return True

    assert fits(geo.lo) and fits(geo.hi)
    for axis in range(3):
        step = np.eye(3, dtype=np.int64)[axis]
        assert not fits(geo.lo - step) and not fits(geo.hi + step)


def test_mask_at_a_coarse_mip_gives_the_exact_distribution(img, tmp_path):
    # A mask at 4x the resolution of img, offset; two regions of different sizes.
    mask = np.zeros((12, 10, 8), dtype=np.uint8)
    mask[2:4, 1:3, 1:3] = 1
    mask[6:9, 4:7, 3:5] = 7
    m = layer(tmp_path, "mask", mask, (4, 4, 4), (0, -2, 0), chunks=(4, 4, 4))
    shape = (6, 6, 4)
    loader = PatchLoader(img, shape, 500, seed=2, mask=m)
    drawn = centres(loader, 16)
    probs = expected_distribution(img, shape, m, lambda v: (v != 0).astype(float))
    check_distribution(drawn, probs, 4)


def test_weights_layer(img, tmp_path):
    w = np.zeros((20, 18, 12), dtype=np.float32)
    w[2:8, 2:6, 2:5] = 1.0
    w[12:16, 10:14, 6:10] = 3.5
    s = layer(tmp_path, "w", w, (2, 2, 2), (2, -2, 1))
    shape = (4, 4, 2)
    loader = PatchLoader(img, shape, 500, seed=4, weights=s)
    drawn = centres(loader, 16)
    probs = expected_distribution(img, shape, s, lambda v: v.astype(float))
    check_distribution(drawn, probs, 2)


def test_balance_makes_every_class_equally_likely(img, tmp_path):
    labels = np.zeros(SHAPE, dtype=np.uint32)  # class 0: most of it
    labels[5:30, 5:25, 3:20] = 9  # big
    labels[10:13, 10:13, 8:11] = 4  # 27 voxels
    seg = layer(tmp_path, "seg", labels, (1, 1, 1), OFFSET)
    seg_c = BigArray(seg.url, cache_bytes=1 << 20)
    shape = (4, 4, 4)
    loader = PatchLoader([img, seg_c], shape, 400, seed=7, balance=seg_c)
    drawn = centres(loader, 10)
    found = Counter(labels[tuple((drawn - OFFSET).T)].tolist())
    assert set(found) == {0, 4, 9}
    for c in (0, 4, 9):
        assert abs(found[c] / len(drawn) - 1 / 3) < 0.03
    assert list(loader.table.classes) == [0, 4, 9]
    # Only some classes.
    only = PatchLoader(img, shape, 400, seed=7, balance=seg, classes=[4, 9])
    drawn = centres(only, 10)
    found = Counter(labels[tuple((drawn - OFFSET).T)].tolist())
    assert set(found) == {4, 9} and abs(found[4] / len(drawn) - 0.5) < 0.05


def test_weighted_streams_are_deterministic_and_shard(img, tmp_path):
    mask = np.zeros((20, 18, 12), dtype=bool)
    mask[3:15, 4:12, 2:9] = True
    m = layer(tmp_path, "m", mask, (2, 2, 2), (2, -2, 1))
    loader = PatchLoader(img, (6, 6, 4), 4, seed=3, mask=m, num_batches=6)
    first = [x for x in loader]
    again = pickle.loads(pickle.dumps(loader))
    assert all(np.array_equal(p, q) for p, q in zip(first, again, strict=True))
    odd = list(loader.shard(1, 2))  # batch 2k+1 alone, computed from (seed, 2k+1)
    assert all(np.array_equal(first[2 * k + 1], x) for k, x in enumerate(odd))
    other = PatchLoader(img, (6, 6, 4), 4, seed=4, mask=m, num_batches=1)
    assert not np.array_equal(next(iter(other)), first[0])


def test_bad_sampling_arguments(img, tmp_path):
    m = layer(tmp_path, "m", np.zeros((8, 8, 8), dtype=np.uint8), (1, 1, 1), OFFSET)
    with pytest.raises(InvalidArgumentError, match="no voxel of non-zero weight"):
        PatchLoader(img, (4, 4, 4), 2, seed=0, mask=m)
    with pytest.raises(InvalidArgumentError, match="one of mask=, weights=, balance="):
        PatchLoader(img, (4, 4, 4), 2, seed=0, mask=m, balance=m)
    with pytest.raises(InvalidArgumentError, match="classes= goes with balance="):
        PatchLoader(img, (4, 4, 4), 2, seed=0, classes=[1])
    with pytest.raises(InvalidArgumentError, match="sampler='random'"):
        PatchLoader(img, (4, 4, 4), 2, seed=0, sampler=[(10, 10, 10)], mask=m)
    with pytest.raises(InvalidArgumentError, match="2 shapes for 1 arrays"):
        PatchLoader(img, [(4, 4, 4), (2, 2, 2)], 2, seed=0)
    neg = layer(tmp_path, "neg", np.full((8, 8, 8), -1, dtype=np.float32), (1, 1, 1), OFFSET)
    with pytest.raises(InvalidArgumentError, match="weights.*negative"):
        PatchLoader(img, (4, 4, 4), 2, seed=0, weights=neg)
    ctx = layer(tmp_path, "ctx", np.zeros((8, 8, 8), dtype=np.uint8), (8, 8, 8), (0, 0, 0))
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        PatchLoader([img, ctx], [(4, 4, 4), (8, 8, 8)], 2, seed=0)
