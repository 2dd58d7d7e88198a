"""``bigarrays fsck``: a clean layer passes; each kind of damage is named with its key and
makes the exit code non-zero; ``--repair`` removes only old temporary files."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import bigarrays
from bigarrays import BigArray
from bigarrays._fsck import murmurhash3_x86_128_low64
from bigarrays.cli import run

SHAPE = (40, 40, 20)
CHUNKS = (16, 16, 8)


def layer(path: Path, **kw) -> BigArray:
    a = BigArray.create(str(path), shape=SHAPE, dtype="uint16", chunks=CHUNKS, **kw)
    a[a.bounds] = np.arange(np.prod(SHAPE), dtype="uint16").reshape(SHAPE)
    return a


def scale_dir(a: BigArray) -> Path:
    return Path(a.url.removeprefix("file://")) / a.info["scales"][0]["key"]


def fsck_cli(path: Path, *args: str, capsys) -> tuple[int, str]:
    code = run(["fsck", "--no-progress", *args, str(path)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"compression": None},
        {"sharding": "auto"},
        {"sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0,
                      "hash": "murmurhash3_x86_128", "minishard_bits": 1, "shard_bits": 2,
                      "minishard_index_encoding": "gzip", "data_encoding": "gzip"}},
    ],
    ids=["gzip", "raw", "sharded-auto", "sharded-murmur"],
)  # fmt: skip
def test_a_clean_layer_passes(tmp_path, capsys, kw):
    a = layer(tmp_path / "l", **kw)
    a.update_info({**a.info, "scales": [*a.info["scales"], {**a.info["scales"][0],
                   "key": "2_2_1", "size": [20, 20, 20], "resolution": [2, 2, 1]}]})  # fmt: skip
    a.reopen(mip=1)[0:20, 0:20, 0:20] = 3
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 0, out
    assert "clean" in out.splitlines()[-1]
    report = bigarrays.fsck(str(tmp_path / "l"))
    assert report.ok and report.problems == []
    # 3 × 3 × 3 chunks at mip 0, 2 × 2 × 3 at mip 1: every one decoded.
    assert report.chunks == 27 + 12


def test_a_truncated_chunk_is_named(tmp_path, capsys):
    a = layer(tmp_path / "l", compression=None)
    f = scale_dir(a) / "16-32_0-16_8-16"
    f.write_bytes(f.read_bytes()[:100])
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("undecodable")]
    assert "16-32_0-16_8-16" in line
    assert "1 problem(s)" in out.splitlines()[-1]


def test_a_garbage_chunk_is_named_with_the_decoders_message(tmp_path, capsys):
    a = layer(tmp_path / "l")
    (scale_dir(a) / "0-16_16-32_0-8.gz").write_bytes(b"not gzip at all" * 10)
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    (p,) = bigarrays.fsck(str(tmp_path / "l")).damage
    assert p.kind == "undecodable" and "0-16_16-32_0-8" in p.key
    assert "0-16_16-32_0-8" in p.message  # the engine's ChunkDecodeError names it too


def test_a_bad_info_field_is_named(tmp_path, capsys):
    a = layer(tmp_path / "l")
    info = a.info
    info["scales"][0]["chunk_sizes"] = [[16, -16, 8]]
    (tmp_path / "l" / "info").write_text(json.dumps(info))
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    assert "chunk_sizes" in out and out.startswith("info:")


def test_a_bad_field_of_a_lower_scale_is_named(tmp_path, capsys):
    a = layer(tmp_path / "l")
    info = a.info
    info["scales"].append({**info["scales"][0], "key": "2_2_1", "encoding": "nope"})
    (tmp_path / "l" / "info").write_text(json.dumps(info))
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1 and "encoding" in out


def test_keys_outside_the_bounds_or_off_the_grid(tmp_path, capsys):
    a = layer(tmp_path / "l", compression=None)
    d = scale_dir(a)
    good = (d / "0-16_0-16_0-8").read_bytes()
    (d / "48-64_0-16_0-8").write_bytes(good)  # beyond x = 40
    (d / "0-15_0-16_0-8").write_bytes(good)  # one short: not a chunk of the grid
    (d / "notes.txt").write_text("hello")  # not a chunk key: a note, not damage
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    kinds = {p.kind: p for p in bigarrays.fsck(str(tmp_path / "l")).problems}
    assert kinds["outside-bounds"].key.endswith("48-64_0-16_0-8")
    assert kinds["off-grid"].key.endswith("0-15_0-16_0-8")
    assert not kinds["unknown-key"].damage


MURMUR = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0,
          "hash": "murmurhash3_x86_128", "minishard_bits": 1, "shard_bits": 2,
          "minishard_index_encoding": "gzip", "data_encoding": "gzip"}  # fmt: skip


def test_an_orphaned_shard_is_named(tmp_path, capsys):
    """A shard file under another shard's name: its chunks sit where no reader looks."""
    a = layer(tmp_path / "l", sharding=MURMUR)
    d = scale_dir(a)
    names = sorted(p.name for p in d.iterdir())
    assert len(names) >= 2, names
    (d / names[1]).write_bytes((d / names[0]).read_bytes())
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    orphans = [p for p in bigarrays.fsck(str(tmp_path / "l")).damage if p.kind == "orphaned"]
    assert orphans and all(p.key.endswith(names[1]) for p in orphans)
    assert f"{names[1]}" in out


def test_a_shard_index_pointing_past_the_end(tmp_path, capsys):
    a = layer(tmp_path / "l", sharding="auto")
    (shard,) = scale_dir(a).iterdir()
    shard.write_bytes(shard.read_bytes()[:-50])
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    assert any(
        p.kind == "shard-index" and "past the end" in p.message and p.key.endswith(shard.name)
        for p in bigarrays.fsck(str(tmp_path / "l")).damage
    ), out


def test_temporary_files_old_removed_by_repair_young_left_alone(tmp_path, capsys):
    a = layer(tmp_path / "l")
    d = scale_dir(a)
    old = d / "0-16_0-16_0-8.gz#3"
    young = d / "16-32_0-16_0-8.gz#1"
    old.write_bytes(b"half a chunk")
    young.write_bytes(b"half a chunk")
    then = time.time() - 3600
    os.utime(old, (then, then))
    code, out = fsck_cli(tmp_path / "l", capsys=capsys)
    assert code == 1
    temps = [x for x in out.splitlines() if x.startswith("temporary")]
    assert len(temps) == 2 and any(str(old) in x for x in temps)
    assert any(str(young) in x and "young" in x for x in temps)
    code, out = fsck_cli(tmp_path / "l", "--repair", capsys=capsys)
    assert not old.exists() and young.exists()
    assert f"removed: {old}" in out
    assert code == 1  # the young one is still there
    os.utime(young, (then, then))
    code, out = fsck_cli(tmp_path / "l", "--repair", capsys=capsys)
    assert code == 0 and not young.exists()
    assert "1 temporary file(s) removed" in out


def test_a_mapping_store(tmp_path):
    store: dict[str, bytes] = {}
    a = BigArray.create("lay", store=store, shape=SHAPE, dtype="uint16", chunks=CHUNKS)
    a[a.bounds] = 5
    assert bigarrays.fsck("lay", store=store).ok
    store["lay/1_1_1/16-32_16-32_0-8.gz"] = gzip.compress(b"short")
    store["lay/1_1_1/40-56_0-16_0-8.gz"] = store["lay/1_1_1/0-16_0-16_0-8.gz"]
    report = bigarrays.fsck("lay", store=store)
    assert {(p.kind, p.key) for p in report.damage} == {
        ("undecodable", "lay/1_1_1/16-32_16-32_0-8.gz"),
        ("outside-bounds", "lay/1_1_1/40-56_0-16_0-8.gz"),
    }


def test_s3_through_the_engine(moto):
    """Buckets are checked through the engine's listing and decoders."""
    bucket = moto.bucket()
    url = f"s3://{bucket}/l"
    a = BigArray.create(url, shape=SHAPE, dtype="uint16", chunks=CHUNKS,
                        storage_options=moto.options())  # fmt: skip
    a[a.bounds] = 9
    assert bigarrays.fsck(url, storage_options=moto.options()).ok
    moto.client().put_object(Bucket=bucket, Key="l/1_1_1/16-32_0-16_0-8", Body=b"garbage")
    (p,) = bigarrays.fsck(url, storage_options=moto.options()).damage
    assert p.kind == "undecodable" and "16-32_0-16_0-8" in p.message


def test_zarr(tmp_path, capsys):
    z = BigArray.create(str(tmp_path / "z.zarr"), format="zarr", shape=(20, 30, 12),
                        dtype="uint16", chunks=(8, 8, 8))  # fmt: skip
    z[:, :, :] = 7
    code, out = fsck_cli(tmp_path / "z.zarr", capsys=capsys)
    assert code == 0, out
    assert bigarrays.fsck(str(tmp_path / "z.zarr")).chunks == 3 * 4 * 2
    (tmp_path / "z.zarr" / "c" / "1" / "2" / "0").write_bytes(b"garbage")
    (tmp_path / "z.zarr" / "c" / "0" / "0" / "0#7").write_bytes(b"partial")
    code, out = fsck_cli(tmp_path / "z.zarr", capsys=capsys)
    assert code == 1
    kinds = sorted(p.kind for p in bigarrays.fsck(str(tmp_path / "z.zarr")).damage)
    assert kinds == ["temporary", "undecodable"]
    assert "c/1/2/0" in out and "0#7" in out
    # Any rank: chunks are listed and read in the array's own axes.
    flat = BigArray.create(str(tmp_path / "f.zarr"), format="zarr", shape=(20, 30),
                           dtype="uint8", chunks=(8, 16))  # fmt: skip
    flat[:, :] = 1
    assert bigarrays.fsck(str(tmp_path / "f.zarr")).chunks == 3 * 2
    (tmp_path / "f.zarr" / "c" / "2" / "1").write_bytes(b"garbage")
    (damage,) = bigarrays.fsck(str(tmp_path / "f.zarr")).damage
    assert damage.kind == "undecodable" and "c/2/1" in str(damage)


def test_murmur_matches_cloudvolumes_mmh3():
    from cloudvolume.datasource.precomputed import mmh3

    rng = np.random.default_rng(1)
    for x in [0, 1, 2**32, 2**64 - 1, *rng.integers(0, 2**63, 200).tolist()]:
        want = mmh3.hash64(int(x).to_bytes(8, "little"), x64arch=False)[0] % 2**64
        assert murmurhash3_x86_128_low64(int(x)) == want, x


def test_h5s_metadata_only_says_so(tmp_path, capsys):
    a = BigArray.create(str(tmp_path / "h"), format="h5s", shape=(32, 32, 16), dtype="uint8",
                        chunks=(16, 16, 16))  # fmt: skip
    a[0:32, 0:32, 0:16] = 3
    code, out = fsck_cli(tmp_path / "h", capsys=capsys)
    assert code == 0, out
    (note,) = bigarrays.fsck(str(tmp_path / "h")).problems
    assert note.kind == "unchecked" and not note.damage
    # A killed writer's copy of a block (H5s writes build <block>.h5#<n>, then rename).
    block = sorted((tmp_path / "h").glob("*.h5"))[0]
    leftover = block.with_name(block.name + "#1")
    leftover.write_bytes(block.read_bytes()[:100])
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    report = bigarrays.fsck(str(tmp_path / "h"))
    assert [p.kind for p in report.damage] == ["temporary"], report
    assert leftover.name in str(report)
    assert bigarrays.fsck(str(tmp_path / "h"), repair=True).repaired
    assert not leftover.exists() and bigarrays.fsck(str(tmp_path / "h")).problems == [note]


def test_a_sharded_mapping_store():
    store: dict[str, bytes] = {}
    a = BigArray.create("lay", store=store, shape=SHAPE, dtype="uint16", chunks=CHUNKS,
                        sharding=MURMUR)  # fmt: skip
    a[a.bounds] = 5
    assert bigarrays.fsck("lay", store=store).ok
    shards = sorted(k for k in store if k.endswith(".shard"))
    store[shards[1]] = store[shards[0]]
    assert {p.kind for p in bigarrays.fsck("lay", store=store).damage} == {"orphaned"}


@pytest.mark.parametrize(
    "name, temporary",
    [("0-16_0-16_0-8#3", True), ("1_1_1/0.shard#12", True), ("c/0/0/0#7", True),
     ("0-16_0-16_0-8", False), ("a#", False), ("#3", False), ("a#1#2", False),
     ("a#x1", False), ("info#1", True)],
)  # fmt: skip
def test_the_temporary_name_rule(name, temporary):
    """The rule branch `localcas` has in Rust (`temporary_of`): no `#` before the one."""
    from bigarrays._fsck import is_temporary

    assert is_temporary(name) is temporary
