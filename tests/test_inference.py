"""Sliding-window inference: the blocks, the blended writer against a NumPy reference
computed in memory, each chunk written once, resume, channels and types, bad arguments."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path

import numpy as np
import pytest

from bigarrays import BigArray, BlendedWriter, sliding_blocks
from bigarrays.errors import InvalidArgumentError, StoreError

SHAPE, OFFSET, CHUNKS = (37, 29, 19), (5, -3, 2), (8, 8, 8)
BLOCK, OVERLAP = (12, 10, 8), (4, 3, 2)


class CountingStore(MutableMapping):
    """A dict that counts the puts of every key."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts: Counter = Counter()

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.puts[key] += 1
        self.data[key] = bytes(value)

    def __delitem__(self, key):
        del self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(3)
    a = BigArray.create(tmp_path / "src", shape=SHAPE, dtype="float32", chunks=(16, 16, 8),
                        voxel_offset=OFFSET)  # fmt: skip
    a[a.bounds] = rng.random(SHAPE, dtype=np.float32) * 10
    return a


def model(x: np.ndarray) -> np.ndarray:
    """A "model" whose output depends on the block (its mean), so blending shows."""
    return 2 * x + x.mean()


def two_channels(x: np.ndarray) -> np.ndarray:
    return np.stack([model(x), -x], axis=-1)


def profile(kind: str, n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    return {
        "cosine": np.sin(np.pi * i / n) ** 2,
        "gaussian": np.exp(-0.5 * ((i - n / 2) / (n / 8)) ** 2),
        "uniform": np.ones(n),
    }[kind]


def starts(lo: int, hi: int, b: int, o: int) -> list[int]:
    out = list(range(lo, hi - b, b - o)) + [hi - b]
    return sorted(set(out))


def reference(volume, lo, hi, fn, kind, block=BLOCK, overlap=OVERLAP):
    """The blend computed in memory over the region lo..hi (offsets removed)."""
    region = volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    win = np.einsum("i,j,k->ijk", *(profile(kind, n) for n in block))
    total = np.zeros(region.shape + fn(region[:1, :1, :1]).shape[3:])
    weight = np.zeros(region.shape)
    grids = [starts(0, hi[a] - lo[a], block[a], overlap[a]) for a in range(3)]
    for z in grids[2]:
        for y in grids[1]:
            for x in grids[0]:
                at = np.s_[x : x + block[0], y : y + block[1], z : z + block[2]]
                p = fn(region[at])
                total[at] += p * (win[..., None] if p.ndim == 4 else win)
                weight[at] += win
    return total / (weight[..., None] if total.ndim == 4 else weight)


def run(writer, src, fn):
    for x, box in writer.blocks(src):
        writer.add(box, fn(x))


@pytest.mark.parametrize("kind", ["cosine", "gaussian", "uniform"])
def test_blend_equals_the_numpy_reference(src, tmp_path, kind):
    out = BigArray.create(tmp_path / "out", shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    writer = BlendedWriter(out, BLOCK, OVERLAP, window=kind)
    run(writer, src, model)
    assert writer.finished and writer.open_chunks == 0
    truth = reference(src[src.bounds], (0, 0, 0), SHAPE, model, kind)
    np.testing.assert_allclose(out[out.bounds], truth, rtol=1e-5)


def test_a_region_not_on_the_chunk_grid_with_edges_and_corners(src, tmp_path):
    """Region edges inside chunks (partial chunks written, the rest kept), one block along
    z (block = region), no overlap along y."""
    out = BigArray.create(tmp_path / "out", shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    out[out.bounds] = -1
    lo, hi = (8, 0, 5), (35, 21, 13)
    block, overlap = (9, 7, 8), (3, 0, 2)
    writer = BlendedWriter(out, block, overlap, region=(lo, hi), window="gaussian")
    assert writer.grid.shape == (4, 3, 1)
    run(writer, src, model)
    data = src[src.bounds]
    rel = [tuple(v - o for v, o in zip(p, OFFSET, strict=True)) for p in (lo, hi)]
    truth = reference(data, *rel, model, "gaussian", block, overlap)
    got = out[out.bounds]
    inside = tuple(slice(a, b) for a, b in zip(*rel, strict=True))
    np.testing.assert_allclose(got[inside], truth, rtol=1e-5)
    got[inside] = -1
    assert np.all(got == -1)  # nothing outside the region changed


def test_each_chunk_is_written_once_and_memory_is_released(src):
    store = CountingStore()
    out = BigArray.create("out", store=store, shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    store.puts.clear()
    writer = BlendedWriter(out, BLOCK, OVERLAP)
    most = 0
    for x, box in writer.blocks(src):
        writer.add(box, model(x))
        most = max(most, writer.open_chunks)
    cells = [math.ceil(n / c) for n, c in zip(SHAPE, CHUNKS, strict=True)]
    assert len(store.puts) == math.prod(cells) == writer.written
    assert set(store.puts.values()) == {1}
    # Open at most: the x-y extent times the chunks within block_z + chunk_z of z.
    assert most <= cells[0] * cells[1] * (math.ceil((BLOCK[2] + CHUNKS[2]) / CHUNKS[2]) + 1)
    assert most < math.prod(cells) and writer.open_bytes == 0


def test_resume_after_an_interruption(src):
    store = CountingStore()
    out = BigArray.create("out", store=store, shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    store.puts.clear()
    first = BlendedWriter(out, BLOCK, OVERLAP)
    for n, (x, box) in enumerate(first.blocks(src)):
        if n == 35:
            break  # interrupted: some chunks written, others half accumulated
        first.add(box, model(x))
    first.close()  # the writes in flight finish (a crash would lose them: not stored)
    assert 0 < first.written and first.open_chunks > 0
    again = BlendedWriter(out, BLOCK, OVERLAP, resume=True)
    assert len(again.pending()) < len(again.boxes)  # finished blocks are skipped
    run(again, src, model)
    assert again.finished
    np.testing.assert_allclose(
        out[out.bounds], reference(src[src.bounds], (0, 0, 0), SHAPE, model, "cosine"), rtol=1e-5
    )
    assert set(store.puts.values()) == {1}  # a chunk written before is not written again
    done = BlendedWriter(out, BLOCK, OVERLAP, resume=True)
    assert done.pending() == [] and done.finished


def test_multichannel_and_integer_outputs(src, tmp_path):
    out = BigArray.create("memory://blend-c2", shape=(*SHAPE, 2), dtype="float64", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    writer = BlendedWriter(out, BLOCK, OVERLAP)
    run(writer, src, two_channels)
    truth = reference(src[src.bounds], (0, 0, 0), SHAPE, two_channels, "cosine")
    np.testing.assert_allclose(out[out.bounds], truth, rtol=1e-6)
    # uint8 after scaling: rounded, and clipped to 0..255.
    u8 = BigArray.create(tmp_path / "u8", shape=SHAPE, dtype="uint8", chunks=CHUNKS,
                         voxel_offset=OFFSET)  # fmt: skip
    writer = BlendedWriter(u8, BLOCK, OVERLAP, window="uniform")
    for x, box in sliding_blocks(src, BLOCK, OVERLAP):  # all blocks, no writer involved
        writer.add(box, 20 * x - 30)
    truth = reference(src[src.bounds], (0, 0, 0), SHAPE, lambda x: 20.0 * x - 30, "uniform")
    np.testing.assert_array_equal(u8[u8.bounds], np.clip(np.rint(truth), 0, 255))


class FailingStore(CountingStore):
    """Refuses puts once ``fail`` is set."""

    fail = False

    def __setitem__(self, key, value):
        if self.fail:
            raise OSError(f"disk full writing {key}")
        super().__setitem__(key, value)


def test_a_failed_write_raises_and_resume_finishes(src):
    store = FailingStore()
    out = BigArray.create("out", store=store, shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    store.fail = True
    with pytest.raises(StoreError, match=r"out/1_1_1/.*disk full"):
        with BlendedWriter(out, BLOCK, OVERLAP, jobs=1) as writer:  # waits for its writes
            run(writer, src, model)
    store.fail = False
    again = BlendedWriter(out, BLOCK, OVERLAP, resume=True)
    run(again, src, model)
    assert again.finished
    np.testing.assert_allclose(
        out[out.bounds], reference(src[src.bounds], (0, 0, 0), SHAPE, model, "cosine"), rtol=1e-5
    )


def test_blocks_cover_the_region_in_x_fastest_order(src):
    boxes = [box for _, box in sliding_blocks(src, BLOCK, OVERLAP, region=np.s_[5:42, -3:26, 2:21])]
    xs = starts(5, 42, BLOCK[0], OVERLAP[0])
    assert [b[0][0] for b in boxes[: len(xs)]] == xs  # x moves first
    assert boxes[-1][1] == (42, 26, 21)  # the last block ends at the region's end
    covered = np.zeros(SHAPE, dtype=int)
    for lo, hi in boxes:
        covered[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, OFFSET, strict=True))] += 1
    assert covered.min() >= 1


def test_bad_arguments(src, tmp_path):
    out = BigArray.create(tmp_path / "out", shape=SHAPE, dtype="float32", chunks=CHUNKS,
                          voxel_offset=OFFSET)  # fmt: skip
    with pytest.raises(InvalidArgumentError, match=r"overlap .* smaller than block.*y: 10 >= 10"):
        BlendedWriter(out, BLOCK, (2, 10, 2))
    with pytest.raises(InvalidArgumentError, match=r"block .* does not fit in the region.*z"):
        BlendedWriter(out, (8, 8, 40), (0, 0, 0))
    with pytest.raises(InvalidArgumentError, match="block must be 3 positive ints"):
        BlendedWriter(out, (8, 0, 8), (0, 0, 0))
    with pytest.raises(InvalidArgumentError, match="window must be one of"):
        BlendedWriter(out, BLOCK, OVERLAP, window="hann")
    with pytest.raises(InvalidArgumentError, match="region .* not inside"):
        BlendedWriter(out, BLOCK, OVERLAP, region=((0, 0, 0), (10, 10, 10)))
    writer = BlendedWriter(out, BLOCK, OVERLAP)
    box = writer.boxes[0]
    with pytest.raises(InvalidArgumentError, match="is not one of the blocks"):
        writer.add(((6, -3, 2), (18, 7, 10)), np.zeros(BLOCK))
    with pytest.raises(InvalidArgumentError, match=r"prediction for block .* has shape \(12, 10\)"):
        writer.add(box, np.zeros(BLOCK[:2]))
    writer.add(box, np.zeros(BLOCK))
    with pytest.raises(InvalidArgumentError, match="already added"):
        writer.add(box, np.zeros(BLOCK))
    small = BigArray.create(tmp_path / "small", shape=(10, 10, 10), dtype="float32",
                            voxel_offset=OFFSET)  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="region .* not inside .*small"):
        next(iter(writer.blocks(small)))


def readme_loops() -> list[str]:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## Training and inference")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_training_and_inference_loops_run(tmp_path):
    pytest.importorskip(
        "torch", reason="torch is not installed (CI does not download it: multi-GB wheels)"
    )
    train, infer = readme_loops()
    assert len(train.splitlines()) < 15 and len(infer.splitlines()) < 15
    rng = np.random.default_rng(0)
    shape = (96, 96, 32)
    em = BigArray.create(tmp_path / "data/em", shape=shape, dtype="uint8", chunks=(32, 32, 16),
                         resolution=(4, 4, 40))  # fmt: skip
    em[em.bounds] = rng.integers(0, 255, shape, dtype=np.uint8)
    seg = BigArray.create(tmp_path / "data/seg", shape=shape, dtype="uint8", chunks=(32, 32, 16),
                          resolution=(4, 4, 40), layer_type="segmentation")  # fmt: skip
    labels = np.zeros(shape, dtype=np.uint8)
    labels[10:60, 20:80, 4:20], labels[30:34, 40:44, 8:12] = 1, 2
    seg[seg.bounds] = labels
    em.downsample((2, 2, 1), mips=2)
    seg.downsample((2, 2, 1), mips=2)
    # On the tiny layers: the same code, with a few batches instead of a thousand.
    code = (train + infer).replace('"/data/', f'"{tmp_path}/data/')
    code = code.replace("num_batches=1000", "num_batches=4")
    exec(compile(code, "README.md", "exec"), {})
    pred = BigArray(str(tmp_path / "data/pred"))
    assert pred.shape == (*shape, 3) and len(pred.stored_chunks()) == 2 * 2 * 2
    probs = pred[pred.bounds].astype(int).sum(axis=-1)
    assert np.all(abs(probs - 255) <= 2)  # softmax over the classes, scaled and rounded


def test_block_order_decodes_each_input_chunk_once_with_a_slab_cache(src):
    cached = BigArray(src.url, cache_bytes=64 << 20)
    for _ in sliding_blocks(cached, BLOCK, OVERLAP, prefetch=0):
        pass
    chunks = math.prod(math.ceil(n / c) for n, c in zip(SHAPE, src.chunks, strict=True))
    assert cached.cache_stats["misses"] == chunks and cached.cache_stats["hits"] > 0
