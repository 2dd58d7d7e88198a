"""PatchLoader: the right patches, deterministic, sharded across processes, torch optional."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys

import numpy as np
import pytest

from bigarrays import BigArray, PatchLoader
from bigarrays.errors import InvalidArgumentError

PATCH = (8, 6, 4)


@pytest.fixture
def pair(tmp_path):
    """An image and its labels, same coordinates, different dtypes and chunks."""
    rng = np.random.default_rng(8)
    img = rng.integers(0, 255, (40, 30, 20), dtype=np.uint8)
    seg = rng.integers(0, 2**40, (40, 30, 20), dtype=np.uint64)
    a = BigArray.create(tmp_path / "img", shape=img.shape, dtype="uint8", chunks=(16, 16, 8),
                        voxel_offset=(5, -3, 2))  # fmt: skip
    b = BigArray.create(tmp_path / "seg", shape=seg.shape, dtype="uint64", chunks=(8, 8, 8),
                        voxel_offset=(5, -3, 2), layer_type="segmentation")  # fmt: skip
    a[a.bounds], b[b.bounds] = img, seg
    return a, b, img, seg


def expected(loader: PatchLoader, index: int, truth: np.ndarray, offset) -> np.ndarray:
    return np.stack(
        [truth[tuple(slice(s - o, s - o + n) for s, o, n in zip(st, offset, PATCH, strict=True))]
         for st in loader.batch_starts(index)]
    )  # fmt: skip


def test_batches_are_the_right_patches_and_deterministic(pair):
    a, b, img, seg = pair
    loader = PatchLoader([a, b], PATCH, 5, seed=3, num_batches=4)
    batches = list(loader)
    assert len(batches) == 4 == len(loader)
    for i, (x, y) in enumerate(batches):
        assert x.shape == (5, *PATCH) and y.dtype == np.uint64
        np.testing.assert_array_equal(x, expected(loader, i, img, a.voxel_offset))
        np.testing.assert_array_equal(y, expected(loader, i, seg, b.voxel_offset))
        starts = loader.batch_starts(i)  # inside the bounds
        assert (starts >= a.voxel_offset).all()
        assert (starts + PATCH <= [s.stop for s in a.bounds]).all()
    again = list(PatchLoader([a, b], PATCH, 5, seed=3, num_batches=4, prefetch=0))
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(batches, again, strict=True))
    other = next(iter(PatchLoader([a, b], PATCH, 5, seed=4, num_batches=1)))
    assert not np.array_equal(other[0], batches[0][0])


def test_centres_in_order_with_a_short_last_batch(pair):
    a, _, img, _ = pair
    centres = [(10, 0, 5), (20, 10, 12), (30, 20, 16)]
    loader = PatchLoader(a, PATCH, 2, seed=0, sampler=centres)
    batches = list(loader)
    assert [len(x) for x in batches] == [2, 1]
    corner = np.array(centres[2]) - np.array(PATCH) // 2 - a.voxel_offset
    np.testing.assert_array_equal(
        batches[1][0], img[tuple(slice(c, c + n) for c, n in zip(corner, PATCH, strict=True))]
    )


def _worker_batches(payload: bytes) -> list[np.ndarray]:
    loader = pickle.loads(payload)
    return [x for x, _ in loader]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shards_across_processes_cover_the_stream_once(pair, method):
    a, b, img, _ = pair
    loader = PatchLoader([a, b], PATCH, 3, seed=11, num_batches=7)
    whole = [x for x, _ in loader]
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        parts = pool.map(_worker_batches, [pickle.dumps(loader.shard(i, 2)) for i in range(2)])
    assert [len(p) for p in parts] == [4, 3]
    for i, x in enumerate(whole):  # batch i went to worker i % 2, in order
        np.testing.assert_array_equal(parts[i % 2][i // 2], x)


def test_bad_arguments(pair):
    a, *_ = pair
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        PatchLoader(a, (100, 6, 4), 2, seed=0)
    with pytest.raises(InvalidArgumentError, match="sampler"):
        PatchLoader(a, PATCH, 2, seed=0, sampler="grid")
    with pytest.raises(TypeError, match="no length"):
        len(PatchLoader(a, PATCH, 2, seed=0))


def test_torch_dataloader(pair):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    a, b, img, _ = pair
    loader = PatchLoader([a, b], PATCH, 4, seed=2, num_batches=6)
    assert isinstance(loader, torch.utils.data.IterableDataset)
    got = list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
    assert len(got) == 6
    firsts = sorted(x[0].numpy().tobytes() for x, _ in got)
    assert firsts == sorted(x[0].tobytes() for x, _ in loader)


# -- batches read in place, and for torch ----------------------------------------------------


def test_read_many_into_a_batch_and_its_checks(pair):
    a, b, img, seg = pair
    starts = [(5, -3, 2), (20, 10, 9), (37, 21, 15)]
    keys = [tuple(slice(s, s + n) for s, n in zip(st, PATCH, strict=True)) for st in starts]
    assert a.order == "F"
    batch = np.empty((3, *PATCH[::-1]), np.uint64).transpose(0, 3, 2, 1)
    views = b.read_many(keys, out=batch)
    assert all(np.shares_memory(v, batch) for v in views)
    np.testing.assert_array_equal(batch, np.stack(b.read_many(keys)))
    np.testing.assert_array_equal(batch[1], seg[15:23, 13:19, 7:11])
    with pytest.raises(InvalidArgumentError, match="F order"):  # C order: not a read's layout
        b.read_many(keys, out=np.empty((3, *PATCH), np.uint64))
    with pytest.raises(InvalidArgumentError, match="uint8"):
        b.read_many(keys, out=np.empty((3, *PATCH[::-1]), np.uint8).transpose(0, 3, 2, 1))
    with pytest.raises(InvalidArgumentError, match="2 arrays for 3 keys"):
        b.read_many(keys, out=batch[:2])
    with pytest.raises(InvalidArgumentError, match="whole boxes"):
        b.read_many([(slice(5, 13, 2), slice(-3, 3), slice(2, 6))], out=batch[:1])
    frozen = batch.copy(order="K")
    frozen.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable: False"):
        b.read_many(keys, out=frozen)


def test_batches_are_laid_out_for_conv3d(pair):
    a, _, img, _ = pair
    loader = PatchLoader(a, PATCH, 4, seed=3, num_batches=1)
    batch = loader.read_batch(0)
    assert batch.shape == (4, *PATCH)
    assert batch.transpose(0, 3, 2, 1).flags.c_contiguous  # (N, D, H, W), no copy
    np.testing.assert_array_equal(batch, expected(loader, 0, img, a.voxel_offset))


def test_pin_memory_hands_out_torch_tensors(pair):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    a, b, img, seg = pair
    loader = PatchLoader([a, b], PATCH, 4, seed=6, num_batches=3, pin_memory=True)
    for i, (x, y) in enumerate(loader):
        assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.shape == (4, *PATCH)
        # Pinned where a GPU will take them; plain CPU tensors on a machine without CUDA.
        assert x.is_pinned() == y.is_pinned() == torch.cuda.is_available()
        assert x.permute(0, 3, 2, 1).is_contiguous()
        np.testing.assert_array_equal(x.numpy(), expected(loader, i, img, a.voxel_offset))
        np.testing.assert_array_equal(y.numpy(), expected(loader, i, seg, b.voxel_offset))


def test_pin_memory_without_torch_gives_numpy(pair):
    a, *_ = pair
    code = (
        "import sys; sys.modules['torch'] = None\n"  # an import of torch now fails
        "import numpy as np; from bigarrays import BigArray, PatchLoader\n"
        f"a = BigArray({str(a.url)!r})\n"
        "x = next(iter(PatchLoader(a, (8, 6, 4), 2, seed=0, pin_memory=True)))\n"
        "assert type(x) is np.ndarray and x.shape == (2, 8, 6, 4), (type(x), x.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
