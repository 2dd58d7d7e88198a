"""Copies keep sparse sources sparse, resume by existence (no decoding) and verify on request;
downsample resumes after an interruption. Existence comes from ``Layer.stored_chunks``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST, HttpServer, Moto

import bigarrays._pyramid
from bigarrays import BigArray
from bigarrays.cli import run
from bigarrays.errors import InvalidArgumentError, StoreError

SHAPE, CHUNKS = (128, 128, 64), (16, 16, 16)  # 8 × 8 × 4 = 256 chunks
#: The chunks the sparse source holds (grid cells), 16 of 256.
CELLS = [(i, (i * 3) % 8, i % 4) for i in range(8)] + [(7 - i, i, (i + 1) % 4) for i in range(8)]


def sparse_layer(url: str, sharding: Any = None, **options: Any) -> tuple[BigArray, np.ndarray]:
    """A layer with data in the chunks CELLS only (never written elsewhere)."""
    a = BigArray.create(
        url, shape=SHAPE, dtype="uint16", chunks=CHUNKS, sharding=sharding, **options
    )
    truth = np.zeros(SHAPE, np.uint16, order="F")
    rng = np.random.default_rng(2)
    for cell in CELLS:
        box = tuple(slice(c * n, (c + 1) * n) for c, n in zip(cell, CHUNKS, strict=True))
        truth[box] = rng.integers(1, 60000, CHUNKS, dtype=np.uint16)
        a[box] = truth[box]
    return a, truth


def stored(a: BigArray) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    units = a.stored_chunks()
    assert units is not None  # a Precomputed layer always tells
    return units


def chunk_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name != "info"]


@pytest.mark.parametrize("sharding", [None, "auto"])
def test_stored_chunks_names_exactly_the_written_chunks(tmp_path: Path, sharding: Any) -> None:
    a, _ = sparse_layer(str(tmp_path / "src"), sharding)
    want = sorted(
        (
            tuple(c * n for c, n in zip(cell, CHUNKS, strict=True)),
            tuple((c + 1) * n for c, n in zip(cell, CHUNKS, strict=True)),
        )
        for cell in CELLS
    )
    got = stored(a)
    assert sorted((lo, hi) for lo, hi, _ in got) == want
    assert all(n > 0 for _, _, n in got)
    # A box: only the chunks it touches.
    inner = a.stored_chunks(np.s_[0:16, 0:16, 0:16])
    assert inner is not None
    assert [lo for lo, _, _ in inner] == ([(0, 0, 0)] if (0, 0, 0) in CELLS else [])


@pytest.mark.parametrize("sharding", [None, "auto"])
def test_copy_of_a_sparse_layer_stays_sparse(tmp_path: Path, sharding: Any) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"), sharding)
    for dst_sharding in (None, "auto"):
        out = tmp_path / f"dst-{dst_sharding}"
        dst = src.copy_to(str(out), sharding=dst_sharding, jobs=2)
        np.testing.assert_array_equal(dst[...], truth)
        assert len(stored(dst)) == len(CELLS)
        if dst_sharding is None:
            assert len(chunk_files(out)) == len(CELLS)


def test_copy_to_other_chunks_writes_those_overlapping_source_chunks(tmp_path: Path) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    dst = src.copy_to(str(tmp_path / "dst"), chunks=(24, 32, 8), encoding="raw", jobs=2)
    np.testing.assert_array_equal(dst[...], truth)
    want = set()
    for cell in CELLS:
        lo = [c * n for c, n in zip(cell, CHUNKS, strict=True)]
        ranges = [
            range(lo[d] // m, (lo[d] + CHUNKS[d] - 1) // m + 1) for d, m in enumerate((24, 32, 8))
        ]
        want |= set(itertools.product(*ranges))
    got = {tuple(v // m for v, m in zip(lo, (24, 32, 8), strict=True)) for lo, _, _ in stored(dst)}
    assert got == want


def test_copy_into_a_layer_with_data_zeroes_where_the_source_has_none(tmp_path: Path) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    old = BigArray.create(str(tmp_path / "dst"), shape=SHAPE, dtype="uint16", chunks=CHUNKS)
    old[...] = 77
    for as_stored in (True, False):  # the stored-bytes path and the decoding path
        dst = src.copy_to(str(tmp_path / "dst"), compression="auto" if as_stored else None)
        np.testing.assert_array_equal(dst[...], truth)
        BigArray(str(tmp_path / "dst"))[...] = 77


def test_sparse_copy_to_s3_and_back(tmp_path: Path, moto: Moto) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"), "auto")
    bucket = moto.bucket()
    url = f"s3://{bucket}/em"
    dst = src.copy_to(url, storage_options=moto.options(), jobs=2)
    listed = moto.client().list_objects_v2(Bucket=bucket, Prefix="em/")
    assert len(listed["Contents"]) == len(CELLS) + 1  # and the info
    np.testing.assert_array_equal(dst[...], truth)
    # Resuming a complete copy writes nothing.
    before = {o["Key"]: o["LastModified"] for o in listed["Contents"]}
    src.copy_to(url, storage_options=moto.options(), resume=True)
    again = moto.client().list_objects_v2(Bucket=bucket, Prefix="em/")["Contents"]
    assert {o["Key"]: o["LastModified"] for o in again} == before
    back = BigArray(url, storage_options=moto.options()).copy_to(str(tmp_path / "back"))
    assert len(chunk_files(tmp_path / "back")) == len(CELLS)
    np.testing.assert_array_equal(back[...], truth)


def test_sparse_copy_from_http_probes_what_cannot_be_listed(
    tmp_path: Path, http_server: HttpServer
) -> None:
    # A static server cannot list: each chunk is asked for by HEAD (gzip files by suffix).
    _, truth = sparse_layer(str(http_server.root / "em"))
    src = BigArray(f"{http_server.url}/em", storage_options=FAST)
    assert len(stored(src)) == len(CELLS)
    dst = src.copy_to(str(tmp_path / "dst"))
    assert len(chunk_files(tmp_path / "dst")) == len(CELLS)
    np.testing.assert_array_equal(dst[...], truth)


def test_resume_trusts_existing_chunks_and_verify_recopies_broken_ones(tmp_path: Path) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    out = tmp_path / "dst"
    src.copy_to(str(out), compression=None)
    files = sorted(chunk_files(out))
    files[0].write_bytes(b"\x01" * 100)  # corrupt, but not empty: resume cannot tell
    files[1].write_bytes(b"")  # empty: not a finished chunk
    files[2].unlink()  # lost
    assert run(["cp", str(tmp_path / "src"), str(out), "--resume", "--compression", "none"]) == 0
    assert files[1].stat().st_size > 0 and files[2].exists()
    assert files[0].read_bytes() == b"\x01" * 100
    assert run(["cp", str(tmp_path / "src"), str(out), "--verify", "--compression", "none"]) == 0
    np.testing.assert_array_equal(BigArray(str(out))[...], truth)


@pytest.mark.parametrize("format", ["precomputed", "zarr", "h5s"])
def test_overwrite_replaces_the_destination_instead_of_copying_into_it(
    tmp_path: Path, format: str
) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    out = str(tmp_path / "dst")
    BigArray.create(out, shape=(32, 32, 32), dtype="uint8", chunks=(16, 16, 16), format=format)
    with pytest.raises(InvalidArgumentError, match="uint8"):
        src.copy_to(out, format=format)  # into it: the dtypes differ
    with pytest.raises(InvalidArgumentError, match="overwrite excludes resume"):
        src.copy_to(out, format=format, overwrite=True, resume=True)
    args = ["cp", str(tmp_path / "src"), out, "--overwrite", "--format", format]
    assert run(args) == 0
    dst = BigArray(out)
    assert dst.dtype == np.uint16
    got = dst[...] if format != "zarr" else dst[...].transpose()
    np.testing.assert_array_equal(got, truth)


def test_resume_into_a_sharded_layer(tmp_path: Path) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    out = str(tmp_path / "dst")
    # The first half only, as if interrupted.
    src.copy_to(out, sharding="auto", bbox=((0, 0, 0), (128, 128, 32)))
    dst = src.copy_to(out, resume=True)
    np.testing.assert_array_equal(dst[...], truth)
    assert len(stored(dst)) == len(CELLS)


# -- downsample: interrupted, then resumed ------------------------------------------------


class Flaky(dict):
    """A mapping store whose chunk reads fail after ``budget`` of them (an interruption)."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: int | None = None
        self.writes = 0

    def __getitem__(self, key: str) -> bytes:
        if self.budget is not None and not key.endswith("/info"):
            if self.budget <= 0:
                raise OSError("connection lost")
            self.budget -= 1
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def test_interrupted_downsample_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One chunk per work block, so that an interruption leaves some blocks finished.
    monkeypatch.setattr(bigarrays._pyramid, "block_shape", lambda chunks, _: tuple(chunks))
    store = Flaky()
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 255, (256, 256, 16), dtype=np.uint8)
    a = BigArray.create(
        "l", store=store, shape=truth.shape, dtype="uint8", chunks=(32, 32, 16),
        resolution=(4, 4, 40),
    )  # fmt: skip
    a[...] = truth
    reference = BigArray.create(
        str(tmp_path / "ref"), shape=truth.shape, dtype="uint8", chunks=(32, 32, 16),
        resolution=(4, 4, 40),
    )  # fmt: skip
    reference[...] = truth
    ref_levels = reference.downsample(factor=(2, 2, 1), mips=2, jobs=1)

    store.budget = 60  # of 64 source chunks at mip 0 (probes count too)
    with pytest.raises(StoreError, match="connection lost"):
        BigArray("l", store=store).downsample(factor=(2, 2, 1), mips=2, jobs=1)
    store.budget = None
    assert BigArray("l", store=store).num_mips == 3  # the scales are in the info already
    done = len(stored(BigArray("l", store=store, mip=1)))
    assert 0 < done < 16  # mip 1 has 16 chunks, mip 2 has 4
    assert not stored(BigArray("l", store=store, mip=2))
    store.writes = 0
    levels = BigArray("l", store=store).downsample(factor=(2, 2, 1), mips=2, jobs=1, resume=True)
    for got, want in zip(levels, ref_levels, strict=True):
        np.testing.assert_array_equal(got[...], want[...])
    # The info, the rest of mip 1 and all of mip 2: finished blocks were not redone.
    assert store.writes == 1 + (16 - done) + 4
    store.writes = 0
    BigArray("l", store=store).downsample(factor=(2, 2, 1), mips=2, resume=True)
    assert store.writes == 1  # only the info: every block was done


def test_downsample_of_a_sparse_layer_stays_sparse_and_cli_resume(tmp_path: Path) -> None:
    src, truth = sparse_layer(str(tmp_path / "src"))
    levels = src.downsample(factor=(2, 2, 2), mips=1)
    (level,) = levels
    assert 0 < len(stored(level)) <= len(CELLS)
    before = level[...]
    assert run(["downsample", str(tmp_path / "src"), "--factor", "2,2,2", "--resume"]) == 0
    np.testing.assert_array_equal(BigArray(str(tmp_path / "src"), mip=1)[...], before)
    assert len(stored(BigArray(str(tmp_path / "src"), mip=1))) == len(stored(level))
    # The sparse pyramid is the dense one's: absent chunks are the zeros they reduce to.
    dense = BigArray.create(str(tmp_path / "dense"), shape=SHAPE, dtype="uint16", chunks=CHUNKS)
    dense[...] = truth
    (want,) = dense.downsample(factor=(2, 2, 2), mips=1)
    np.testing.assert_array_equal(before, want[...])
