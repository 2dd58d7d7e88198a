"""S3 read benchmark: bigarrays against TensorStore and CloudVolume, over loopback to moto.

Run from the repository root (``make bench`` runs it after ``bench_read.py``)::

    .venv/bin/python benches/bench_s3.py

moto's S3 server runs in a subprocess on 127.0.0.1 (served by waitress with 8 threads when
waitress is installed, otherwise by ``moto_server``) and is always stopped at the end. One
deterministic EM-like uint8 layer (bench_read.py's generator) is uploaded,
written by ``BigArray.create`` with its default compression, which follows CloudVolume's
convention in buckets (gzip body, ``Content-Encoding: gzip``, no suffix). All three readers
read this one copy: TensorStore's ``s3`` kvstore undoes the Content-Encoding itself.

Workloads: W1, the whole 512x512x256 cutout; W3, 256 random 64x64x32 patches (fixed seed)
read one after another. Nothing is cached between reads. The report replaces only its own
section of ``benches/RESULTS.md`` (between the markers below).

``BENCH_SCALE=small`` is a quick check: a 256x256x128 layer, 32 patches, 2 repeats; its
report goes to ``benches/data/small/RESULTS.md``, never to the committed one.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import boto3
import cloudfiles.paths
import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from common import (
    KEY,
    SECRET,
    TS_CONTEXT,
    Session,
    bench_scale,
    cpu_model,
    medians,
    moto_server,
    report_path,
    server_kind,
    time_round_robin,
    version,
    vs_best,
    write_section,
)
from datasets import DATA, Scale, generate_volume

from bigarrays import BigArray

SCALE_NAME = bench_scale(("full", "small"))
# Chunks 128x128x64, bench_read.py's content and seed; the quick check's layer is smaller.
SCALE = Scale(shape={"full": (512, 512, 256), "small": (256, 256, 128)}[SCALE_NAME])
PATCH = (64, 64, 32)
N_PATCHES, REPEATS = {"full": (256, 5), "small": (32, 2)}[SCALE_NAME]
PATCH_SEED = 7

# TensorStore: the local benches' context (no cache pool, two copy threads), less the file
# IO limit, which an S3 kvstore does not use.
TS_S3_CONTEXT = {k: v for k, v in TS_CONTEXT.items() if k != "file_io_concurrency"}

Box = tuple[slice, slice, slice]
# A reader takes a list of boxes, reads them one after another and returns the arrays.
Reader = Callable[[list[Box]], list[np.ndarray]]


# -- data ------------------------------------------------------------------------------------


def upload(url: str, vol: np.ndarray, options: dict) -> None:
    """Default compression: gzip with Content-Encoding in a bucket."""
    a = BigArray.create(
        url,
        shape=vol.shape,
        dtype="uint8",
        chunks=SCALE.chunks,
        resolution=SCALE.resolution,
        storage_options=options,
    )
    a[a.bounds] = vol


def patches() -> list[Box]:
    rng = np.random.default_rng(PATCH_SEED)
    hi = np.array(SCALE.shape) - np.array(PATCH)
    out = []
    for _ in range(N_PATCHES):
        o = rng.integers(0, hi, endpoint=True)
        out.append(tuple(slice(int(a), int(a) + s) for a, s in zip(o, PATCH, strict=True)))
    return out


# -- readers ---------------------------------------------------------------------------------


def make_readers(endpoint: str, bucket: str, layers: dict[str, str]) -> dict[str, Reader]:
    """layers: which copy ("gzip" or "raw") each library reads."""
    opts = {
        "endpoint": endpoint,
        "aws_access_key_id": KEY,
        "aws_secret_access_key": SECRET,
        "region": "us-east-1",
    }
    ba = BigArray(f"s3://{bucket}/{layers['bigarrays']}", storage_options=opts)
    tss = ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": {
                "driver": "s3",
                "bucket": bucket,
                "path": f"{layers['TensorStore']}/",
                "endpoint": endpoint,
                "aws_region": "us-east-1",
                # Credentials from the environment (set in main): moto refuses anonymous
                # requests to a private bucket with 403.
            },
        },
        read=True,
        context=ts.Context(TS_S3_CONTEXT),
    ).result()
    cloudfiles.paths.add_alias("motos3", f"s3://{endpoint}/")
    cv = CloudVolume(
        f"motos3://{bucket}/{layers['CloudVolume']}",
        secrets={"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
        progress=False,
        parallel=1,
        cache=False,
        lru_bytes=0,
    )
    return {
        "bigarrays": lambda boxes: [ba[b] for b in boxes],
        "TensorStore": lambda boxes: [tss[(*b, 0)].read(order="F").result() for b in boxes],
        # CloudVolume returns (x, y, z, channel).
        "CloudVolume": lambda boxes: [cv[b][..., 0] for b in boxes],
    }


def verify(name: str, boxes: list[Box], readers: dict[str, Reader], truth: np.ndarray) -> None:
    """Every reader must return exactly the generated voxels; doubles as the warm-up."""
    for reader, read in readers.items():
        for b, got in zip(boxes, read(boxes), strict=True):
            got = np.asarray(got)
            if got.shape != truth[b].shape or not np.array_equal(got, truth[b]):
                raise SystemExit(f"{name}: {reader} returned wrong voxels for {b}")


def time_workload(boxes: list[Box], readers: dict[str, Reader]) -> dict[str, list[float]]:
    """Round-robin over the readers, REPEATS times."""
    runs = {name: lambda read=read: read(boxes) for name, read in readers.items()}
    return time_round_robin(runs, REPEATS)


# -- report ----------------------------------------------------------------------------------


def report(results: dict, layers: dict[str, str], ratio: float, session: Session) -> str:
    w1, w3 = results["W1"], results["W3"]
    peers = [k for k in w1 if k != "bigarrays"]

    def med(t: dict, k: str) -> float:
        return statistics.median(t[k])

    rows = [
        "| workload | " + " | ".join(f"{k} median" for k in w1) + " | best peer / bigarrays |",
        "|---|" + "---:|" * (len(w1) + 1),
    ]
    for name, t, unit in (("W1", w1, "s"), ("W3", w3, "patches/s")):
        if unit == "s":
            cells = [f"{med(t, k):.3f} s" for k in t]
        else:
            cells = [f"{N_PATCHES / med(t, k):.0f} patches/s ({med(t, k):.2f} s)" for k in t]
        desc = (
            f"W1: whole {'×'.join(map(str, SCALE.shape))} cutout"
            if name == "W1"
            else f"W3: {N_PATCHES} random {'×'.join(map(str, PATCH))} patches, one after another"
        )
        meds = medians(t)
        peer_meds = {k: meds[k] for k in peers}
        rows.append(
            f"| {desc} | " + " | ".join(cells) + f" | {vs_best(peer_meds, meds['bigarrays'])} |"
        )
    detail = ["| workload | reader | median (s) | min (s) | max (s) |", "|---|---|---:|---:|---:|"]
    for name, t in results.items():
        for k, v in t.items():
            detail.append(
                f"| {name} | {k} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} |"
            )
    server = (
        "moto's WSGI app served by waitress (8 threads)"
        if server_kind() == "waitress"
        else "`moto_server` (werkzeug)"
    )
    copies = ", ".join(f"{k} reads the **{v}** copy" for k, v in layers.items())
    lines = [
        "## S3 on loopback (moto)",
        "",
        f"Generated by `benches/bench_s3.py`, started {session.started}; {session.load()}. "
        f"{os.cpu_count()} CPUs, {cpu_model()}; "
        f"moto {version('moto')}, waitress {version('waitress')}, bigarrays "
        f"{version('bigarrays')}, TensorStore {version('tensorstore')}, CloudVolume "
        f"{version('cloud-volume')}.",
        "",
        f"- **Server**: {server}, in its own process on 127.0.0.1, on the same 2 cores as the "
        "readers. **The server is the bottleneck**: moto is Python and spends about as much "
        "CPU per read as the reader itself (measured once for bigarrays: ~0.23 s server CPU "
        "vs ~0.24 s client CPU per W1, ~2.5 s vs ~2.4 s per W3, the client's share mostly "
        "gzip decoding of whole chunks), and the two share the 2 cores; so these numbers "
        "compare the readers against a slow, CPU-bound local server, not S3 latency or "
        "throughput.",
        f"- **Data**: one uint8 layer {'×'.join(map(str, SCALE.shape))} "
        f"({math.prod(SCALE.shape) / 2**20:.0f} MiB), chunks {'×'.join(map(str, SCALE.chunks))} "
        f"({math.prod(s // c for s, c in zip(SCALE.shape, SCALE.chunks, strict=True))} objects), "
        f"bench_read.py's EM-like generator (seed {SCALE.seed}), uploaded once by "
        "`BigArray.create` with its default compression for buckets, CloudVolume's convention: "
        f"gzip body with `Content-Encoding: gzip`, no key suffix (ratio {ratio:.2f}).",
        f"- **Who reads what**: {copies} (TensorStore's `s3` kvstore, curl, undoes "
        "`Content-Encoding: gzip` itself, so it needs no copy of its own). bigarrays over "
        "object_store (access key in `storage_options`, as in the tests), TensorStore through "
        "its `s3` kvstore (`endpoint`, `aws_region: us-east-1`, credentials from "
        "`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`: moto answers anonymous requests with "
        "403), CloudVolume through a "
        "cloud-files alias (`motos3://` → `s3://http://127.0.0.1:PORT/`) with `parallel=1`, "
        "`cache=False, lru_bytes=0`.",
        f"- **Method**: handles opened once, outside the timing; every reader's output checked "
        f"voxel-for-voxel against the generated data first (also the warm-up); then timed "
        f"round-robin {REPEATS} times, median reported. W3's {N_PATCHES} patch origins come "
        f"from `numpy.random.default_rng({PATCH_SEED})`, uniformly over the volume (not "
        "chunk-aligned: a patch touches 1 to 8 chunks); they are read one after another, and "
        "no reader caches chunks (TensorStore's cache pool is 0).",
        "",
        "Ratio = best peer median time / bigarrays median time; > 1 means bigarrays is faster.",
        "",
        *rows,
        "",
        *detail,
    ]
    return "\n".join(lines)


def main() -> None:
    session = Session()
    t = time.perf_counter()
    truth = generate_volume(SCALE)
    print(f"data: generated in {time.perf_counter() - t:.0f} s")
    with moto_server() as endpoint:
        print(f"server: {server_kind()} at {endpoint}")
        bucket = f"bench{uuid.uuid4().hex[:8]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=bucket)
        opts = {
            "endpoint": endpoint,
            "aws_access_key_id": KEY,
            "aws_secret_access_key": SECRET,
            "region": "us-east-1",
        }
        t = time.perf_counter()
        upload(f"s3://{bucket}/gzip", truth, opts)
        print(f"data: uploaded in {time.perf_counter() - t:.0f} s")
        objs = s3.list_objects_v2(Bucket=bucket, Prefix="gzip/")["Contents"]
        chunks = [o for o in objs if not o["Key"].endswith("/info")]
        ratio = math.prod(SCALE.shape) / sum(o["Size"] for o in chunks)
        encoding = s3.head_object(Bucket=bucket, Key=chunks[0]["Key"]).get("ContentEncoding")
        n = math.prod(s // c for s, c in zip(SCALE.shape, SCALE.chunks, strict=True))
        if len(chunks) != n or encoding != "gzip":
            raise SystemExit(f"expected {n} gzip objects, got {len(chunks)} ({encoding})")
        print(f"data: {len(chunks)} objects, Content-Encoding {encoding}, ratio {ratio:.2f}")

        # All three read the same copy: TensorStore's s3 kvstore (curl) decodes
        # Content-Encoding: gzip, so it needs no copy of its own.
        layers = {"bigarrays": "gzip", "TensorStore": "gzip", "CloudVolume": "gzip"}
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = KEY, SECRET
        # cloud-files reads AWS_SESSION_TOKEN whenever the other two are set (KeyError if not).
        os.environ.setdefault("AWS_SESSION_TOKEN", "")
        readers = make_readers(endpoint, bucket, layers)
        workloads = {"W1": [tuple(slice(0, s) for s in SCALE.shape)], "W3": patches()}
        results = {}
        for name, boxes in workloads.items():
            verify(name, boxes, readers, truth)
            results[name] = time_workload(boxes, readers)
            meds = ", ".join(f"{k} {v:.3f}" for k, v in medians(results[name]).items())
            print(f"{name}: {meds}", flush=True)
    section = report(results, layers, ratio, session)
    path = report_path(SCALE_NAME, DATA / SCALE_NAME / "RESULTS.md")
    write_section("bench_s3.py", section, path)
    print()
    print(section)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
