"""Reads at cloud latency: bigarrays against TensorStore through a delay proxy in front of moto.

Run from the repository root (``make bench`` runs it after ``bench_s3.py``)::

    .venv/bin/python benches/bench_latency.py

moto's S3 server runs in a subprocess on 127.0.0.1 (``common.moto_server``) and
``delay_proxy.py`` in another, holding every request ``BENCH_LATENCY_MS`` milliseconds
(default 25) before passing it on, as if the bucket were that far away; both readers read
through the proxy. Two layers of the same voxels (bench_read.py's generator) are uploaded
straight to moto by ``BigArray.create``: an unsharded gzip one (one object per chunk,
``Content-Encoding: gzip``) and a sharded one (``neuroglancer_uint64_sharded_v1``, gzip data
and minishard indexes, datasets.py's spec). Every reader's output is checked against the
generated voxels first.

Workloads on each layer: W1, one aligned cutout; a batch of random 64x64x32 patches read
at once (``read_many`` against all TensorStore futures issued before the first is awaited),
on handles already used (warm: bigarrays keeps shard and minishard indexes) and on new ones
(cold); and patches read one after another. The proxy replays answers it has given before
(``BENCH_LATENCY_REPLAY=0`` turns that off), so moto's own rate does not cap the readers.
W1 is bound by what the proxy (and moto, without replay) can serve
on this machine: the same requests bigarrays sends for it, replayed as plain GETs (boto3,
same concurrency) through the same proxy, measure that bound. The proxy's log counts each
reader's requests and the round trips it waited for one after another.

``BENCH_SCALE=small`` is a quick check (a smaller layer, 2 repeats); its report goes to
``benches/data/small/RESULTS.md``, never to the committed one.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import numpy as np
import tensorstore as ts
from botocore.config import Config
from common import (
    KEY,
    SECRET,
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    medians,
    moto_server,
    record_metrics,
    report_path,
    server_kind,
    time_round_robin,
    version,
    write_section,
)
from datasets import DATA, Scale, generate_volume, sharding_spec
from delay_proxy import clear_log, delay_proxy, proxy_log, rounds

from bigarrays import BigArray

SCALE_NAME = bench_scale(("full", "small"))
# Chunks of 64x64x32 (128 KiB), small enough that a patch's round trips, not its bytes, set
# its time; shards of 4x4x4 chunks (8 MiB): 32 at full scale, 2 in the quick check.
SCALE = Scale(
    shape={"full": (1024, 1024, 256), "small": (512, 256, 128)}[SCALE_NAME], chunks=(64, 64, 32)
)
W1 = {"full": (512, 512, 256), "small": (256, 256, 128)}[SCALE_NAME]
PATCH = (64, 64, 32)
N_BATCH, N_ONE_BY_ONE = 64, 16
REPEATS = {"full": 5, "small": 2}[SCALE_NAME]
PATCH_SEED = 21
DELAY = float(os.environ.get("BENCH_LATENCY_MS", "25")) / 1000
# The proxy answers a request it has answered before from memory (delay_proxy.py says why);
# BENCH_LATENCY_REPLAY=0 sends every request on to moto, as before.
REPLAY = os.environ.get("BENCH_LATENCY_REPLAY", "1") != "0"
# Requests in flight: bigarrays' default, and the plain GETs' thread pool.
CONCURRENCY = 64
LAYERS = ("unsharded", "sharded")

# TensorStore: the other benches' context (no cache pool, two copy threads), less the file
# IO limit, which an S3 kvstore does not use.
TS_S3_CONTEXT = {k: v for k, v in TS_CONTEXT.items() if k != "file_io_concurrency"}

Box = tuple[slice, slice, slice]


def volume() -> np.ndarray:
    """The generated voxels, kept beside the other benches' data between runs."""
    stamp = hashlib.sha256(json.dumps(SCALE.stamp(), sort_keys=True).encode()).hexdigest()[:12]
    path = DATA / f"latency-{stamp}.npy"
    if path.exists():
        return np.asfortranarray(np.load(path))
    vol = generate_volume(SCALE)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vol)
    return vol


def boxes(n: int, seed: int) -> list[Box]:
    rng = np.random.default_rng(seed)
    hi = np.array(SCALE.shape) - np.array(PATCH)
    out = []
    for _ in range(n):
        o = rng.integers(0, hi, endpoint=True)
        out.append(tuple(slice(int(a), int(a) + s) for a, s in zip(o, PATCH, strict=True)))
    return out


class Layer:
    """One layer's readers through the proxy, and how to tell its requests apart."""

    def __init__(self, name: str, bucket: str, proxy: str, s3) -> None:
        self.name, self.bucket, self.proxy = name, bucket, proxy
        self.options = {
            "endpoint": proxy,
            "aws_access_key_id": KEY,
            "aws_secret_access_key": SECRET,
            "region": "us-east-1",
        }
        self.spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": {
                "driver": "s3",
                "bucket": bucket,
                "path": f"{name}/",
                "endpoint": proxy,
                "aws_region": "us-east-1",
                # Credentials from the environment (set in main): moto refuses anonymous
                # requests to a private bucket with 403.
            },
        }
        self.ba = self.open_bigarrays()
        self.ts = self.open_tensorstore()
        self.minishard_indexes = self.find_minishard_indexes(s3) if name == "sharded" else {}

    def open_bigarrays(self) -> BigArray:
        return BigArray(f"s3://{self.bucket}/{self.name}", storage_options=self.options)

    def open_tensorstore(self):
        return ts.open(self.spec, read=True, context=ts.Context(TS_S3_CONTEXT)).result()

    def find_minishard_indexes(self, s3) -> dict[str, list[tuple[int, int]]]:
        """Each shard file's minishard index ranges, read from its shard index directly."""
        spec, _ = sharding_spec(SCALE)
        index_bytes = 16 << spec["minishard_bits"]
        self.index_bytes = index_bytes
        listed = s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.name}/")["Contents"]
        found = {}
        for o in listed:
            if not o["Key"].endswith(".shard"):
                continue
            index = f"bytes=0-{index_bytes - 1}"
            got = s3.get_object(Bucket=self.bucket, Key=o["Key"], Range=index)
            entries = np.frombuffer(got["Body"].read(), "<u8").reshape(-1, 2)
            found[o["Key"]] = [(int(a) + index_bytes, int(b) + index_bytes) for a, b in entries]
        return found

    def kind(self, request: dict) -> str:
        """What a request fetches: metadata (a whole-object GET of ``info``, or a HEAD), data,
        or a shard's index or minishard indexes (a range that holds nothing else; one that
        also holds chunk data counts as data)."""
        key = urllib.parse.unquote(request["path"].split("?")[0]).split("/", 2)[-1]
        if request["method"] != "GET" or key.endswith("info"):
            return f"{request['method']} metadata"
        if key not in self.minishard_indexes or not request["range"]:
            return "data"
        first, last = request["range"].removeprefix("bytes=").split("-")
        start, stop = int(first), int(last) + 1
        if stop <= self.index_bytes:
            return "shard index"
        indexes = self.minishard_indexes[key]
        if start >= self.index_bytes and any(a <= start and stop <= b for a, b in indexes):
            return "minishard index"
        return "data"

    def readers(self, workload: str, work: list[Box]) -> dict[str, Callable[[], list]]:
        ba, tss = self.ba, self.ts
        if workload == "W1":
            return {
                "bigarrays": lambda: [ba[work[0]]],
                "TensorStore": lambda: [tss[(*work[0], 0)].read(order="F").result()],
            }
        if workload.startswith("batch"):
            return {
                "bigarrays": lambda: ba.read_many(work),
                "TensorStore": lambda: [
                    f.result() for f in [tss[(*b, 0)].read(order="F") for b in work]
                ],
            }
        return {
            "bigarrays": lambda: [ba[b] for b in work],
            "TensorStore": lambda: [tss[(*b, 0)].read(order="F").result() for b in work],
        }


def verify(layer: Layer, work: list[Box], readers: dict, truth: np.ndarray) -> None:
    for name, read in readers.items():
        for b, got in zip(work, read(), strict=True):
            got = np.asarray(got)
            if got.shape != truth[b].shape or not np.array_equal(got, truth[b]):
                raise SystemExit(f"{layer.name}: {name} returned wrong voxels for {b}")


def count(layer: Layer, read: Callable[[], object]) -> tuple[Counter, int, list[dict]]:
    """The requests one call of ``read`` sends, by kind, and its round trips in a row."""
    clear_log(layer.proxy)
    read()
    log = proxy_log(layer.proxy)
    return Counter(layer.kind(r) for r in log), rounds(log), log


def s3_client(endpoint: str, **options: Any) -> Any:
    """A boto3 S3 client for the bench's server (or its proxy) at ``endpoint``."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        **options,
    )


def plain_gets(proxy: str, log: list[dict]) -> Callable[[], object]:
    """The requests of ``log`` again, as plain boto3 GETs (Range as logged) through the
    proxy, CONCURRENCY at a time: what the server and proxy serve with no decoding at all."""
    s3 = s3_client(proxy, config=Config(max_pool_connections=CONCURRENCY))
    gets = []
    for r in log:
        if r["method"] != "GET":
            continue
        bucket, key = urllib.parse.unquote(r["path"].split("?")[0]).lstrip("/").split("/", 1)
        gets.append((bucket, key, r["range"]))

    def get(g: tuple[str, str, str | None]) -> int:
        bucket, key, byte_range = g
        extra = {"Range": byte_range} if byte_range else {}
        return len(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())

    pool = ThreadPoolExecutor(CONCURRENCY)

    def run() -> int:
        return sum(pool.map(get, gets))

    return run


def cold_batches(layer: Layer, work: list[Box]) -> dict[str, list[float]]:
    """The batch on handles opened just before it (opening not timed), round-robin."""
    times: dict[str, list[float]] = {"bigarrays": [], "TensorStore": []}
    for _ in range(REPEATS):
        ba, tss = layer.open_bigarrays(), layer.open_tensorstore()
        t = time.perf_counter()
        ba.read_many(work)
        times["bigarrays"].append(time.perf_counter() - t)
        t = time.perf_counter()
        [f.result() for f in [tss[(*b, 0)].read(order="F") for b in work]]
        times["TensorStore"].append(time.perf_counter() - t)
    return times


def upload(bucket: str, endpoint: str, truth: np.ndarray) -> None:
    options = {
        "endpoint": endpoint,
        "aws_access_key_id": KEY,
        "aws_secret_access_key": SECRET,
        "region": "us-east-1",
    }
    spec, _ = sharding_spec(SCALE)
    for name, sharding in (("unsharded", None), ("sharded", spec)):
        a = BigArray.create(
            f"s3://{bucket}/{name}",
            shape=truth.shape,
            dtype="uint8",
            chunks=SCALE.chunks,
            resolution=SCALE.resolution,
            sharding=sharding,
            storage_options=options,
        )
        a[a.bounds] = truth


# -- report ----------------------------------------------------------------------------------


def describe(workload: str) -> str:
    patch = "×".join(map(str, PATCH))
    return {
        "W1": f"W1: {'×'.join(map(str, W1))} aligned cutout",
        "batch": f"{N_BATCH} random {patch} patches at once (warm handles)",
        "batch cold": f"{N_BATCH} random {patch} patches at once (new handles)",
        "one by one": f"{N_ONE_BY_ONE} random {patch} patches one after another",
    }[workload]


def shown(c: Counter) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "none"


def busy(session: Session) -> list[str]:
    """A warning when other work shared the cores (the load above their number)."""
    cores = os.cpu_count() or 1
    end = session.load_end if session.load_end is not None else os.getloadavg()[0]
    if max(session.load_start, end) <= cores:
        return []
    return [
        f"- **Busy machine**: the load average stayed above the {cores} cores (other builds "
        "ran beside this one): ratios within this run compare, absolute times do not, and "
        "round trips in a row also count requests that waited for a free slot or for CPU."
    ]


def report(results: dict, counts: dict, bounds: dict, session: Session) -> str:
    spec, shard_shape = sharding_spec(SCALE)
    rows = [
        "| layer | workload | bigarrays | TensorStore | TensorStore / bigarrays |",
        "|---|---|---:|---:|---:|",
    ]
    for (layer, workload), t in results.items():
        m = medians(t)
        rows.append(
            f"| {layer} | {describe(workload)} | {m['bigarrays']:.3f} s | "
            f"{m['TensorStore']:.3f} s | {m['TensorStore'] / m['bigarrays']:.2f}× |"
        )
    bound_rows = [
        "| layer | W1 bigarrays | plain GETs of the same bytes | bigarrays / plain GETs |",
        "|---|---:|---:|---:|",
    ]
    for layer, plain in bounds.items():
        ours = medians(results[(layer, "W1")])["bigarrays"]
        bound_rows.append(f"| {layer} | {ours:.3f} s | {plain:.3f} s | {ours / plain:.2f}× |")
    shard_rows = [
        "| workload | sharded / unsharded (bigarrays) | sharded / unsharded (TensorStore) |",
        "|---|---:|---:|",
    ]
    for workload in ("batch", "batch cold", "one by one"):
        s = medians(results[("sharded", workload)])
        u = medians(results[("unsharded", workload)])
        shard_rows.append(
            f"| {describe(workload)} | {s['bigarrays'] / u['bigarrays']:.2f}× | "
            f"{s['TensorStore'] / u['TensorStore']:.2f}× |"
        )
    count_rows = [
        "| layer | workload | reader | requests by kind | round trips in a row |",
        "|---|---|---|---|---:|",
    ]
    for (layer, workload, reader), (c, depth) in counts.items():
        count_rows.append(f"| {layer} | {describe(workload)} | {reader} | {shown(c)} | {depth} |")
    detail = ["| layer | workload | reader | median (s) | min (s) | max (s) |"]
    detail.append("|---|---|---|---:|---:|---:|")
    for (layer, workload), t in results.items():
        for k, v in t.items():
            detail.append(
                f"| {layer} | {workload} | {k} | {statistics.median(v):.3f} | "
                f"{min(v):.3f} | {max(v):.3f} |"
            )
    n_shards = 1 << spec["shard_bits"]
    lines = [
        "## Reads at cloud latency (a delay proxy in front of moto)",
        "",
        f"Generated by `benches/bench_latency.py`, started {session.started}; {session.load()}. "
        f"{os.cpu_count()} CPUs, {cpu_model()}; moto {version('moto')}, waitress "
        f"{version('waitress')}, bigarrays {version('bigarrays')}, TensorStore "
        f"{version('tensorstore')}.",
        "",
        f"- **Latency**: `benches/delay_proxy.py` (asyncio, its own process) holds every "
        f"request {DELAY * 1000:.0f} ms before passing it on to moto ({server_kind()}, 8 "
        "threads, its own process), any number at once; clients keep their connections. "
        + (
            "**Replay on**: a GET or HEAD the proxy has answered before (in the checking "
            "passes, before any timing) is answered from its memory, byte for byte, after "
            "the same delay, so moto's own rate (about 100 requests a second here; real "
            "buckets serve thousands) does not cap the readers. "
            if REPLAY
            else "**Replay off**: every request goes on to moto. "
        )
        + "**The machine's limits**: the readers, the proxy"
        + ("" if REPLAY else " and moto")
        + f" share {os.cpu_count()} cores; whole cutouts (W1) are bound by what the proxy"
        + ("" if REPLAY else " and moto")
        + " serve, measured below by sending bigarrays' own W1 requests again as plain GETs, "
        "and the patch rows by latency.",
        f"- **Data**: one uint8 volume {'×'.join(map(str, SCALE.shape))}, chunks "
        f"{'×'.join(map(str, SCALE.chunks))}, bench_read.py's EM-like generator (seed "
        f"{SCALE.seed}), written twice straight to moto by `BigArray.create`: unsharded (gzip "
        "chunk objects with `Content-Encoding: gzip`) and sharded "
        f"(`neuroglancer_uint64_sharded_v1`, identity hash, preshift {spec['preshift_bits']}, "
        f"{1 << spec['minishard_bits']} minishards a shard, {n_shards} shard(s) of "
        f"{'×'.join(map(str, shard_shape))} voxels, gzip data and minishard indexes). Both "
        "readers read both layers.",
        f"- **Readers**: bigarrays (defaults: {CONCURRENCY} requests in flight) and TensorStore "
        "(`s3` kvstore with its default request concurrency; no cache pool, two copy threads, "
        "as in the other benches), each with a handle opened once, outside the timing, except "
        "in the cold rows (new handles before each batch, opening not timed). bigarrays keeps "
        "shard and minishard indexes on its handle (that is the warm row); TensorStore, with no "
        "cache pool, looks them up again every time.",
        f"- **Method**: every reader's output is checked voxel for voxel first (also the "
        f"warm-up); then timed round-robin {REPEATS} times, medians. Patches: "
        f"`numpy.random.default_rng({PATCH_SEED})` origins, uniform over the volume, not "
        "aligned (a patch touches 1 to 8 chunks). The batch row issues all patches at once "
        "(`read_many`; TensorStore: every future before the first `result()`).",
        *busy(session),
        "",
        "Ratio > 1: bigarrays is faster. Targets: patch rows ≥ 2× TensorStore; sharded patch "
        "reads within 1.3× of unsharded.",
        "",
        *rows,
        "",
        "W1 against what the server serves (the same requests as plain GETs, boto3, "
        f"{CONCURRENCY} at a time, through the same proxy):",
        "",
        *bound_rows,
        "",
        "Sharded against unsharded, the same patches:",
        "",
        *shard_rows,
        "",
        "Requests one read sends (counted in the proxy, after the warm-up) and the longest "
        "chain of them each sent only after the one before was answered:",
        "",
        *count_rows,
        "",
        *detail,
    ]
    return "\n".join(lines)


def main() -> None:
    session = Session()
    t = time.perf_counter()
    truth = volume()
    print(f"data: generated in {time.perf_counter() - t:.0f} s", flush=True)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = KEY, SECRET
    with moto_server() as endpoint, delay_proxy(endpoint, DELAY, REPLAY) as proxy:
        print(f"server: {server_kind()} at {endpoint}, proxy at {proxy}", flush=True)
        bucket = f"bench{uuid.uuid4().hex[:8]}"
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=bucket)
        t = time.perf_counter()
        upload(bucket, endpoint, truth)
        print(f"data: uploaded in {time.perf_counter() - t:.0f} s", flush=True)
        work = {
            "W1": [tuple(slice(0, s) for s in W1)],
            "batch": boxes(N_BATCH, PATCH_SEED),
            "one by one": boxes(N_ONE_BY_ONE, PATCH_SEED + 1),
        }
        results: dict = {}
        counts: dict = {}
        bounds: dict = {}
        for name in LAYERS:
            layer = Layer(name, bucket, proxy, s3)
            for workload, boxes_ in work.items():
                readers = layer.readers(workload, boxes_)
                verify(layer, boxes_, readers, truth)
                logs = {}
                for reader, read in readers.items():
                    c, depth, logs[reader] = count(layer, read)
                    counts[(name, workload, reader)] = (c, depth)
                    print(f"{name} {workload} {reader}: {shown(c)}; {depth} in a row", flush=True)
                results[(name, workload)] = time_round_robin(readers, REPEATS)
                if workload == "W1":
                    plain = plain_gets(proxy, logs["bigarrays"])
                    plain()
                    bounds[name] = statistics.median(
                        time_round_robin({"plain": plain}, REPEATS)["plain"]
                    )
                if workload == "batch":
                    fresh = Layer(name, bucket, proxy, s3)
                    for reader, read in fresh.readers(workload, boxes_).items():
                        c, depth, _ = count(layer, read)
                        counts[(name, "batch cold", reader)] = (c, depth)
                        print(f"{name} batch cold {reader}: {shown(c)}; {depth} in a row")
                    results[(name, "batch cold")] = cold_batches(layer, boxes_)
                for row in [workload, "batch cold"] if workload == "batch" else [workload]:
                    m = ", ".join(f"{k} {v:.3f}" for k, v in medians(results[(name, row)]).items())
                    print(f"{name} {row}: {m}", flush=True)
        session.stop()
    section = report(results, counts, bounds, session)
    path = report_path(SCALE_NAME, DATA / SCALE_NAME / "RESULTS.md")
    write_section("bench_latency.py", section, path)
    if SCALE_NAME == "full":
        metrics = {}
        for (layer, workload), t in results.items():
            m = medians(t)
            metrics[f"{layer} {workload} TensorStore / bigarrays"] = (
                m["TensorStore"] / m["bigarrays"]
            )
        for workload in ("batch", "batch cold", "one by one"):
            s = medians(results[("sharded", workload)])["bigarrays"]
            u = medians(results[("unsharded", workload)])["bigarrays"]
            metrics[f"{workload} sharded / unsharded"] = s / u
        record_metrics("bench_latency.py", metrics)
    print()
    print(section)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
