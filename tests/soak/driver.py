"""The soak: writers and readers on one layer, a killer, checkpoints, and the model check.

``run_soak(...)`` is what ``tests/soak/test_soak.py`` (short) and ``make soak`` (long,
``python tests/soak/soak.py --seconds N``) call. Per case:

1. Create a small uint32 layer (32 × 32 × 16 in 8³ chunks: 32 chunks; sharded: 4 shards of
   8 chunks), so that random unaligned boxes overlap constantly.
2. Start ``writers`` writer processes and one reader process (threads for ``memory://``,
   which processes cannot share; those are never killed).
3. Until the time is up: every ``kill_every`` seconds on average, SIGKILL a random writer
   that has begun writing, and start a new one (a new incarnation, so values stay unique);
   every ``checkpoint_every`` seconds, SIGKILL every writer, read the whole layer, check
   that state at once, and start them again.
4. Stop the writers (a stop file, then SIGKILL for any that linger), read the whole layer,
   and check every observation (reads, checkpoints, the final state) with
   ``history.check``. Run ``bigarrays.fsck`` on the layer: nothing but temporary files of
   killed writers may be found.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from history import INF, Grid, Observation, Violation, Write, check  # noqa: E402
from worker import run as run_worker  # noqa: E402

SHAPE = (32, 32, 16)
CHUNKS = (8, 8, 8)
SHARDING = {
    "@type": "neuroglancer_uint64_sharded_v1",
    "preshift_bits": 1,
    "hash": "identity",
    "minishard_bits": 1,
    "shard_bits": 2,
    "minishard_index_encoding": "gzip",
    "data_encoding": "gzip",
}


@dataclass
class Stats:
    case: str
    seconds: float = 0.0
    writes: int = 0
    completed: int = 0
    interrupted: int = 0  # logged intent, never completion (killed mid-write, or failed)
    failed: int = 0  # raised (counted in interrupted too)
    reads: int = 0
    kills: int = 0
    kills_mid_write: int = 0
    checkpoints: int = 0
    chunk_states: int = 0  # (observation, chunk) pairs checked
    violations: list[Violation] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)  # reads that raised
    fsck: str = ""
    errors: list[str] = field(default_factory=list)  # the harness's own: fsck damage, ...

    @property
    def state_violations(self) -> list[Violation]:
        """Violations of the states read by fresh handles (checkpoints, the end)."""
        return [v for v in self.violations if not v.label.startswith("reader")]

    @property
    def reader_violations(self) -> list[Violation]:
        """Violations of what the long-lived reader handle saw."""
        return [v for v in self.violations if v.label.startswith("reader")]

    def line(self) -> str:
        return (
            f"{self.case}: {self.seconds:.0f} s, {self.writes} writes ({self.completed} "
            f"completed, {self.interrupted} interrupted, {self.failed} failed), {self.reads} "
            f"reads, {self.kills} kills ({self.kills_mid_write} mid-write), "
            f"{self.checkpoints} checkpoints, {self.chunk_states} chunk states checked, "
            f"{len(self.violations)} violations ({len(self.reader_violations)} in reads, "
            f"{len(self.state_violations)} in checkpoints and the final state), "
            f"{len(self.read_errors)} failed reads; fsck: {self.fsck}"
        )


class _Proc:
    """A writer or reader: a process, or a thread with its stop event."""

    def __init__(self, config: dict[str, Any], threaded: bool, stop: Any) -> None:
        self.config = config
        self.thread: threading.Thread | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        if threaded:
            self.thread = threading.Thread(target=run_worker, args=(config, stop), daemon=True)
            self.thread.start()
        else:
            self.popen = subprocess.Popen(
                [sys.executable, str(HERE / "worker.py"), json.dumps(config)],
                stderr=None,
            )

    def alive(self) -> bool:
        if self.thread is not None:
            return self.thread.is_alive()
        assert self.popen is not None
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)

    def wait(self, seconds: float) -> bool:
        if self.thread is not None:
            self.thread.join(seconds)
            return not self.thread.is_alive()
        assert self.popen is not None
        try:
            self.popen.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def has_written(self) -> bool:
        """Whether it completed a write: killing it sooner would only test start-up."""
        try:
            text = Path(self.config["log"]).read_text()
        except FileNotFoundError:
            return False
        return text.startswith("C ") or "\nC " in text


def _open_intent(log: Path) -> bool:
    """Whether the log's last write began and never ended (the kill landed mid-write)."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return False
    done = {ln.split()[1] for ln in lines if ln[:1] in "CE" and len(ln.split()) > 1}
    return any(ln.startswith("I ") and ln.split()[1] not in done for ln in lines[-2:])


def read_writes(logs: list[Path], stats: Stats | None = None) -> dict[int, Write]:
    """Every write the logs record (a killed writer's torn last line is skipped)."""
    starts: dict[int, tuple[tuple[Any, Any], float]] = {}
    ends: dict[int, float] = {}
    failed = 0
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text().splitlines():
            parts = line.split()
            try:
                if parts[0] == "I" and len(parts) == 9:
                    v = [int(p) for p in parts[2:8]]
                    starts[int(parts[1])] = ((tuple(v[:3]), tuple(v[3:])), int(parts[8]))
                elif parts[0] == "C" and len(parts) == 3:
                    ends[int(parts[1])] = int(parts[2])
                elif parts[0] == "E":
                    failed += 1
            except (ValueError, IndexError):
                continue  # a line cut short by the kill
    writes = {
        wid: Write(wid, box, float(t), float(ends.get(wid, INF)))
        for wid, (box, t) in starts.items()
    }
    if stats is not None:
        stats.writes = len(writes)
        stats.completed = sum(1 for w in writes.values() if w.completed)
        stats.interrupted = stats.writes - stats.completed
        stats.failed = failed
    return writes


def read_observations(log: Path, errors: list[str]) -> Iterator[Observation]:
    if not log.exists():
        return
    with open(log, "rb") as f:
        n = 0
        while True:
            try:
                record = pickle.load(f)
            except (EOFError, pickle.UnpicklingError):
                return
            if record[0] == "error":
                errors.append(record[1])
                continue
            lo, hi, t0, t1, shape, packed = record
            data = np.frombuffer(zlib.decompress(packed), dtype=np.uint32).reshape(shape)
            n += 1
            yield Observation((lo, hi), float(t0), float(t1), data, f"{log.stem} read {n}")


def _whole_read(url: str, storage_options: dict[str, str] | None, label: str) -> Observation:
    from bigarrays import BigArray

    a = BigArray(url, storage_options=storage_options)
    lo = tuple(s.start for s in a.bounds[:3])
    hi = tuple(s.stop for s in a.bounds[:3])
    t0 = time.monotonic_ns()
    data = np.asarray(a[a.bounds], dtype=np.uint32)
    t1 = time.monotonic_ns()
    return Observation((lo, hi), float(t0), float(t1), data, label)  # type: ignore[arg-type]


@contextlib.contextmanager
def moto_endpoint() -> Iterator[tuple[Any, str]]:
    """A moto S3 server of its own (for ``make soak``) and ``serialising_proxy`` before it."""
    from conftest import Moto, start_moto

    with start_moto() as proc:
        port = int(proc.args[-1])  # type: ignore[index]
        moto = Moto(f"http://127.0.0.1:{port}", proc)
        with serialising_proxy(moto) as endpoint:
            yield moto, endpoint


@contextlib.contextmanager
def serialising_proxy(moto: Any) -> Iterator[str]:
    """The endpoint of a proxy before ``moto`` that forwards writes one at a time (moto
    checks a conditional put and stores the object in two steps that concurrent requests
    can interleave; a real store does it atomically) and drops requests whose client was
    killed before sending them whole. Reads go through at once: moto swaps a stored
    object for its new version in one step, so a GET sees one version whole."""
    from faulty_proxy import FaultyProxy

    class WholeRequestsProxy(FaultyProxy):
        def _forward(self, lines: list[str], body: bytes) -> bytes:
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            if "chunked" in headers.get("transfer-encoding", "").lower():
                whole = body.endswith(b"0\r\n\r\n")
            else:
                whole = len(body) >= int(headers.get("content-length", "0") or 0)
            if not whole:
                raise OSError("the client went away before sending the whole request")
            response = super()._forward(lines, body)
            self.log.clear()  # nothing reads it here; a long soak must not hoard it
            return response

    host, port = moto.endpoint.removeprefix("http://").split(":")
    with WholeRequestsProxy((host, int(port)), serialize_writes=True) as proxy:
        yield proxy.url


def run_soak(
    *,
    backend: str,
    sharded: bool,
    seconds: float,
    workdir: Path,
    writers: int = 3,
    kill_every: float = 2.0,
    checkpoint_every: float = 20.0,
    max_extent: int = 12,
    seed: int = 0,
    moto: Any = None,
    endpoint: str | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> Stats:
    """One soak case; returns its figures (``stats.violations`` empty when all is well).

    ``backend`` is ``"local"``, ``"s3"`` (needs ``moto`` and the proxy's ``endpoint``) or
    ``"memory"`` (threads, no kills).
    """
    from bigarrays import BigArray, fsck

    case = f"{backend}{'-sharded' if sharded else ''}"
    stats = Stats(case)
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    options: dict[str, str] | None = None
    if backend == "local":
        url = str(workdir / "layer")
    elif backend == "s3":
        url = f"s3://{moto.bucket()}/layer"
        options = {k: str(v) for k, v in moto.options(endpoint=endpoint).items()}
        options.update(retries="5", timeout="10", deadline="60")
    else:
        url = f"memory://soak-{case}-{seed}-{time.monotonic_ns()}"
    BigArray.create(url, shape=SHAPE, dtype="uint32", chunks=CHUNKS, overwrite=True,
                    sharding=SHARDING if sharded else None, storage_options=options)  # fmt: skip
    threaded = backend == "memory"
    stop: Any = threading.Event() if threaded else str(workdir / "stop")
    base = {"url": url, "storage_options": options, "origin": [0, 0, 0], "size": list(SHAPE),
            "max_extent": max_extent, "stop": stop if not threaded else None}  # fmt: skip
    logs: list[Path] = []
    incarnation = 0

    def spawn_writer() -> _Proc:
        nonlocal incarnation
        incarnation += 1
        log = workdir / f"writer-{incarnation}.log"
        logs.append(log)
        cfg = {**base, "role": "writer", "incarnation": incarnation, "log": str(log),
               "seed": rng.randrange(1 << 30)}  # fmt: skip
        return _Proc(cfg, threaded, stop)

    reader_log = workdir / "reader.log"
    # The proxy before moto forwards one write at a time: a reader that never paused
    # would slow the writers there.
    pause = 0.1 if backend == "s3" else 0.02
    reader = _Proc({**base, "role": "reader", "log": str(reader_log), "seed": seed,
                    "pause": pause}, threaded, stop)  # fmt: skip
    pool = [spawn_writer() for _ in range(writers)]
    checkpoints: list[Observation] = []
    began = time.monotonic()
    end = began + seconds
    next_kill = began + rng.expovariate(1 / kill_every)
    next_checkpoint = began + checkpoint_every

    def kill(p: _Proc) -> None:
        p.kill()
        stats.kills += 1
        stats.kills_mid_write += _open_intent(Path(p.config["log"]))

    while time.monotonic() < end:
        time.sleep(0.02)
        now = time.monotonic()
        if not threaded and now >= next_kill:
            ready = [p for p in pool if p.alive() and p.has_written()]
            if ready:
                victim = rng.choice(ready)
                kill(victim)
                pool[pool.index(victim)] = spawn_writer()
            next_kill = now + rng.expovariate(1 / kill_every)
        if now >= next_checkpoint and now + 1 < end:
            if not threaded:
                for p in pool:
                    kill(p)
            stats.checkpoints += 1
            obs = _whole_read(url, options, f"checkpoint {stats.checkpoints}")
            checkpoints.append(obs)
            found = check(read_writes(logs), [obs], _grid())
            say(f"[{now - began:5.0f} s] checkpoint {stats.checkpoints}: "
                f"{len(found)} violations; kills so far {stats.kills}")  # fmt: skip
            for v in found[:10]:
                say(f"  {v}")
            if not threaded:
                pool = [spawn_writer() for _ in pool]
            next_checkpoint = time.monotonic() + checkpoint_every
        for i, p in enumerate(pool):
            if not p.alive():  # a writer that ran out of values, or crashed on its own
                pool[i] = spawn_writer()
    if threaded:
        stop.set()
    else:
        Path(stop).touch()
    for p in [*pool, reader]:
        if not p.wait(60):
            if p is reader:
                stats.errors.append("the reader did not stop within 60 s")
            kill(p)
    if reader.popen is not None and reader.popen.returncode not in (0, None):
        stats.errors.append(f"the reader exited with {reader.popen.returncode}")
    stats.seconds = time.monotonic() - began
    final = _whole_read(url, options, "final state")
    writes = read_writes(logs, stats)
    observations = [*read_observations(reader_log, stats.read_errors), *checkpoints, final]
    stats.reads = len(observations) - len(checkpoints) - 1
    grid = _grid()
    stats.chunk_states = sum(len(grid.chunks_of(o.box)) for o in observations)
    stats.violations = check(writes, observations, grid)
    if backend != "memory":
        report = fsck(url, storage_options=options)
        damage = [p for p in report.damage if p.kind != "temporary"]
        temporary = len(report.damage) - len(damage)
        stats.fsck = f"{report.chunks} chunks decoded, {temporary} temporary files"
        stats.errors += [f"fsck: {p}" for p in damage]
    say(stats.line())
    for v in stats.violations[:20]:
        say(f"  {v}")
    for e in stats.read_errors[:5]:
        say(f"  failed read: {e}")
    return stats


def _grid() -> Grid:
    return Grid((0, 0, 0), SHAPE, CHUNKS)


CASES = {
    "s3": ("s3", False),
    "s3-sharded": ("s3", True),
    "local": ("local", False),
    "local-sharded": ("local", True),
    "memory": ("memory", False),
    "memory-sharded": ("memory", True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="per case")
    parser.add_argument("--cases", default="s3,s3-sharded", help=f"of {', '.join(CASES)}")
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--checkpoint-every", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    import tempfile

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    share = args.seconds
    failed = False
    with contextlib.ExitStack() as stack:
        root = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        moto, endpoint = (None, None)
        if any(CASES[c][0] == "s3" for c in cases):
            moto, endpoint = stack.enter_context(moto_endpoint())
        for i, case in enumerate(cases):
            backend, sharded = CASES[case]
            print(f"soak {case}: {share:.0f} s, {args.writers} writers, a kill every "
                  f"{args.kill_every} s on average", flush=True)  # fmt: skip
            stats = run_soak(backend=backend, sharded=sharded, seconds=share,
                             workdir=root / case, writers=args.writers,
                             kill_every=args.kill_every,
                             checkpoint_every=args.checkpoint_every, seed=args.seed + i,
                             moto=moto, endpoint=endpoint,
                             say=lambda s: print(s, flush=True))  # fmt: skip
            failed |= bool(stats.violations or stats.errors or stats.read_errors)
            for e in stats.errors:
                print(f"  error: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
