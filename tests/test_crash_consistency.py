"""Writers killed with SIGKILL mid-write (local disk).

A child process writes round after round over a box of a layer, round ``r`` painting the
value ``r`` (the layer starts as ``BASE`` everywhere), and prints ``done r`` after each write
returns. The parent kills it at a random moment (seeded) and then reads the whole layer in a
fresh handle: with ``L`` the last round reported done, every chunk must hold entirely ``L``
or ``L + 1`` inside the box (old or new, never torn, never undecodable) and ``BASE`` outside
it. Cases: unsharded gzip and raw chunks, chunk-aligned and unaligned boxes; sharded
(whole-shard and partial-shard writes, where a shard must also be one round throughout);
and H5s blocks, each of which must be one round throughout (block files are replaced
whole). What the runs saw is in ``FIGURES`` below, printed with ``-s``.

Stale temporary files (object_store writes ``<key>#<n>`` and renames it over ``<key>``) are
counted: they must never be read, and a later write must still succeed.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from volumes import SMALL_SHARDING

from bigarrays import BigArray

SHAPE = (128, 128, 64)
CHUNKS = (16, 16, 16)  # 8 × 8 × 4 = 256 chunks
BASE = 255
ALIGNED = ((0, 0, 0), (128, 128, 64))
UNALIGNED = ((5, 3, 2), (123, 125, 62))
SEED = 20261124

# What the runs saw, for docs/RELIABILITY.md.
FIGURES: Counter[str] = Counter()

WRITER = r"""
import json, sys
import numpy as np
from bigarrays import BigArray
spec = json.loads(sys.argv[1])
kw = {"compression": spec["compression"]} if "compression" in spec else {}
a = BigArray(spec["url"], **kw)
(x0, y0, z0), (x1, y1, z1) = spec["box"]
print("ready", flush=True)
for r in range(1, 250):
    a[x0:x1, y0:y1, z0:z1] = np.uint8(r)
    print(f"done {r}", flush=True)
"""


def run_and_kill(spec: dict[str, Any], delay: float) -> int:
    """Starts the writer, kills it ``delay`` s after it is ready; the last round done."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("ready"):
                ready.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    if not ready.wait(30):
        child.kill()
        raise AssertionError(
            f"writer never got ready: {child.stderr.read() if child.stderr else ''}"
        )
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    t.join(10)
    assert child.returncode == -signal.SIGKILL, (child.returncode, lines)
    done = [int(x[5:]) for x in lines if re.fullmatch(r"done \d+", x)]
    return max(done, default=0)


def kills(landed: Callable[[], object]) -> Iterator[int]:
    """Kill numbers: ``KILLS_PER_CASE``, and more (up to ``MAX_KILLS``) until ``landed()``
    shows that one hit a write in progress. How many do depends on the machine's speed
    (a write's IO window is short next to its encoding), so a fixed count was flaky."""
    n = 0
    while n < KILLS_PER_CASE or (n < MAX_KILLS and not landed()):
        yield n
        n += 1


def value(r: int) -> int:
    return BASE if r == 0 else r


def inside_mask(box: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    (x0, y0, z0), (x1, y1, z1) = box
    m[x0:x1, y0:y1, z0:z1] = True
    return m


def chunk_values(
    got: np.ndarray,
    box: tuple[tuple[int, ...], tuple[int, ...]],
    last: int,
    grid: tuple[int, int, int] = CHUNKS,
) -> dict[tuple[int, int, int], int]:
    """Checks every chunk (of ``grid``) is one round's value inside the box (L or L+1) and
    BASE outside; returns each chunk's round."""
    mask = inside_mask(box)
    allowed = {value(last): last, value(last + 1): last + 1}
    rounds = {}
    for g in np.ndindex(*(s // c for s, c in zip(SHAPE, grid, strict=True))):
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(g, grid, strict=True))
        vox, m = got[sl], mask[sl]
        assert (vox[~m] == BASE).all(), f"chunk {g}: voxels outside the box changed"
        if not m.any():
            continue  # a chunk the box misses
        inside = np.unique(vox[m])
        assert len(inside) == 1, f"chunk {g} is torn: values {inside[:8]} (last done {last})"
        assert int(inside[0]) in allowed, f"chunk {g} holds {inside[0]}, last done {last}"
        rounds[g] = allowed[int(inside[0])]
    return rounds


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*#*") if p.name.rsplit("#", 1)[-1].isdigit()]


def make_layer(path: Path, **kw: Any) -> BigArray:
    a = BigArray.create(str(path), shape=SHAPE, dtype="uint8", chunks=CHUNKS, **kw)
    a[a.bounds] = BASE
    return a


# -- unsharded -------------------------------------------------------------------------------

CASES = {
    "gzip-aligned": ("gzip", ALIGNED),
    "gzip-unaligned": ("gzip", UNALIGNED),
    "raw-aligned": (None, ALIGNED),
    "raw-unaligned": (None, UNALIGNED),
}
KILLS_PER_CASE = 5
MAX_KILLS = 40  # see kills()


@pytest.mark.parametrize("case", list(CASES))
def test_killed_writer_leaves_every_chunk_old_or_new(tmp_path: Path, case: str) -> None:
    compression, box = CASES[case]
    rng = random.Random(f"{SEED}-{case}")
    root = tmp_path / "layer"
    make_layer(root, compression=compression)
    spec = {"url": str(root), "box": box, "compression": compression}
    mid_round = 0
    for _ in kills(lambda: FIGURES[f"{case}: kills landing mid-round"] > 0 or temp_files(root)):
        last = run_and_kill(spec, rng.uniform(0.0, 0.3))
        # fill_missing=False: a chunk file that vanished would be an error, not zeros.
        got = BigArray(str(root), fill_missing=False)[:, :, :]
        rounds = chunk_values(got, box, last)
        mid_round += len(set(rounds.values())) > 1
        FIGURES[f"{case}: kills"] += 1
        FIGURES[f"{case}: kills landing mid-round"] += len(set(rounds.values())) > 1
        # The next writer starts where this one died: its round 1 is older than `last`, so
        # restart the numbering by rewriting the base.
        BigArray(str(root), compression=compression)[:, :, :] = BASE
    stale = temp_files(root)
    FIGURES[f"{case}: stale temp files left"] += len(stale)
    # Stale temp files are never read as chunks, and never stop a later write.
    a = BigArray(str(root), compression=compression, fill_missing=False)
    a[:, :, :] = 42
    assert (a[:, :, :] == 42).all()
    assert len(temp_files(root)) == len(stale)  # they are not cleaned up either
    # At least some kills must land mid-round, or the test tests nothing.
    assert mid_round > 0 or stale, "no kill landed during a write: make the rounds longer"


def test_stale_temp_files_are_never_read(tmp_path: Path) -> None:
    """A leftover ``<key>#<n>`` with garbage in it (what a killed put leaves) next to every
    chunk: reads ignore it, and writes pick the next free temp name."""
    root = tmp_path / "layer"
    a = make_layer(root, compression="gzip")
    chunks = [p for p in root.rglob("*.gz")]
    assert len(chunks) == 256
    for p in chunks:
        Path(f"{p}#1").write_bytes(b"\x1f\x8b garbage from a killed writer")
        Path(f"{p.with_suffix('')}#1").write_bytes(b"torn")  # the plain name's temp too
    b = BigArray(str(root), fill_missing=False)
    assert (b[:, :, :] == BASE).all()
    a[:, :, :] = 3
    assert (b[:, :, :] == 3).all()
    assert len(temp_files(root)) == 2 * 256


# -- sharded ---------------------------------------------------------------------------------

SHARDING = SMALL_SHARDING


def shard_of(g: tuple[int, int, int]) -> int:
    bits = [3, 3, 2]
    code, out_bit = 0, 0
    for bit in range(max(bits)):
        for d in range(3):
            if bit < bits[d]:
                code |= ((g[d] >> bit) & 1) << out_bit
                out_bit += 1
    return (code >> (SHARDING["preshift_bits"] + SHARDING["minishard_bits"])) & 15


SHARDED_CASES = {
    "sharded-whole-shards": ALIGNED,
    "sharded-partial-shards": UNALIGNED,
    "sharded-aligned-partial": ((0, 0, 0), (128, 112, 64)),  # partial shards, whole chunks
}


@pytest.mark.parametrize("case", list(SHARDED_CASES))
def test_killed_sharded_writer_leaves_every_shard_old_or_new(tmp_path: Path, case: str) -> None:
    box = SHARDED_CASES[case]
    rng = random.Random(f"{SEED}-{case}")
    root = tmp_path / "layer"
    make_layer(root, sharding=SHARDING)
    assert len([p for p in root.rglob("*.shard")]) == 16
    spec = {"url": str(root), "box": box}
    mid_round = 0
    for _ in kills(lambda: FIGURES[f"{case}: kills landing mid-round"] > 0 or temp_files(root)):
        last = run_and_kill(spec, rng.uniform(0.0, 0.3))
        got = BigArray(str(root), fill_missing=False)[:, :, :]
        rounds = chunk_values(got, box, last)
        by_shard: dict[int, set[int]] = {}
        for g, r in rounds.items():
            by_shard.setdefault(shard_of(g), set()).add(r)
        torn = {s: r for s, r in by_shard.items() if len(r) > 1}
        assert not torn, f"shards holding chunks of two rounds: {torn}"
        mid_round += len(set(rounds.values())) > 1
        FIGURES[f"{case}: kills"] += 1
        FIGURES[f"{case}: kills landing mid-round"] += len(set(rounds.values())) > 1
        BigArray(str(root))[:, :, :] = BASE
    FIGURES[f"{case}: stale temp files left"] += len(temp_files(root))
    assert mid_round > 0 or temp_files(root), "no kill landed during a write"


# -- H5s ---------------------------------------------------------------------------------------

READER = r"""
import json, sys
import numpy as np
import bigarrays
try:
    got = bigarrays.BigArray(sys.argv[1], fill_missing=False)[0:128, 0:128, 0:64]
    np.save(sys.argv[2], got)
    print(json.dumps({"ok": True}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
"""

H5S_BLOCK = (64, 64, 32)  # 8 block files
H5S_CASES = {
    f"h5s-{comp or 'raw'}-{name}": (comp, box)
    for comp in ("gzip", None)
    for name, box in (("aligned", ALIGNED), ("unaligned", UNALIGNED))
}


@pytest.mark.parametrize("case", list(H5S_CASES))
def test_killed_h5s_writer_leaves_every_block_old_or_new(tmp_path: Path, case: str) -> None:
    """Each block file is replaced whole (a new file renamed over it; unaligned boxes copy
    the old block first), so after a kill a fresh reader (in a subprocess, so that a crash
    of libhdf5 would show) must succeed, with every block holding one round inside the box
    (the last done, or the next) and ``BASE`` outside it."""
    compression, box = H5S_CASES[case]
    rng = random.Random(f"{SEED}-{case}")
    root = tmp_path / "h5s"
    a = BigArray.create(
        str(root),
        format="h5s",
        shape=SHAPE,
        dtype="uint8",
        chunks=H5S_BLOCK,
        encoding_options={"chunk_size": CHUNKS},
        compression=compression,
    )
    a[0:128, 0:128, 0:64] = BASE
    spec = {"url": str(root), "box": box}
    mid_round = 0
    for kill in kills(lambda: FIGURES[f"{case}: kills landing mid-round"] > 0):
        last = run_and_kill(spec, rng.uniform(0.0, 0.3))
        out = tmp_path / f"read{kill}.npy"
        reader = subprocess.run(
            [sys.executable, "-c", READER, str(root), str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, f"the reader died: {reader.returncode} {reader.stderr}"
        result = json.loads(reader.stdout.strip().splitlines()[-1])
        assert result["ok"], f"a read after kill {kill} failed: {result}"
        rounds = chunk_values(np.load(out), box, last, grid=H5S_BLOCK)
        mid_round += len(set(rounds.values())) > 1
        FIGURES[f"{case}: kills"] += 1
        FIGURES[f"{case}: kills landing mid-round"] += len(set(rounds.values())) > 1
        # Every block whole: the next writer starts from BASE again (see above).
        BigArray(str(root))[0:128, 0:128, 0:64] = BASE
    stale = temp_files(root)
    FIGURES[f"{case}: stale temp files left"] += len(stale)
    # Killed writers' temporary files are never read, and never stop a later write.
    BigArray(str(root))[0:128, 0:128, 0:64] = 42
    assert (BigArray(str(root), fill_missing=False)[0:128, 0:128, 0:64] == 42).all()
    assert mid_round > 0, "no kill landed during a write: make the rounds longer"


@pytest.fixture(autouse=True, scope="module")
def print_figures() -> Iterator[None]:
    """Prints what the kills saw (run with -s), for the reliability document."""
    yield
    for k in sorted(FIGURES):
        print(f"{k}: {FIGURES[k]}")
