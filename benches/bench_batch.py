"""Training-style reads (W3) and a dask reduction on the em layer, against the peers.

- **W3 cold**: 256 random 64×64×32 patches, no cache. bigarrays ``read_many`` (one call,
  each touched chunk decoded once) and ``PatchLoader`` (32 batches of 8, prefetching);
  TensorStore issuing all 256 reads at once and waiting (its best case); CloudVolume one
  patch at a time.
- **W3 warm**: the same patches again with a decoded-chunk cache big enough for the layer:
  bigarrays ``cache_bytes``, TensorStore's ``cache_pool``, CloudVolume's ``lru_bytes``.
- **dask sum**: ``to_dask().sum()`` over the whole layer on dask's threaded scheduler,
  bigarrays vs ``cloudvolume.dask.from_cloudvolume``.

bigarrays and CloudVolume read CloudVolume's gzip copy; TensorStore its sharded gzip copy of
the same voxels (it cannot read local ``.gz`` files). Outputs are checked against the
generated data before timing. Ratio = best peer median / bigarrays median.

``BENCH_SCALE=small`` is a quick check: bench_read.py's small layer, 64 patches, fewer
repeats; its report goes to ``benches/data/small/RESULTS.md``, never to the committed one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import dask
import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume
from cloudvolume.dask import from_cloudvolume
from common import (
    TS_CONTEXT,
    Session,
    bench_scale,
    clock,
    cpu_model,
    medians,
    ratio,
    record_metrics,
    report_path,
    time_round_robin,
    version,
    write_section,
)
from datasets import DATA, SCALES, Dataset

from bigarrays import BigArray, PatchLoader

SCALE = bench_scale(SCALES)
DATASET = Dataset(DATA / SCALE, SCALES[SCALE])
PATCH, SEED, BATCH = (64, 64, 32), 7, 8
# Patches read, timed repeats, and calls per 1-voxel timing: the quick check does fewer.
N_PATCHES, REPEATS, TINY_CALLS = {"full": (256, 5, 200), "small": (64, 2, 50)}[SCALE]
SLOW = 10.0  # seconds: slower readers are timed once
WARM_BURST = 5  # consecutive warm batches per timing
CACHE = 2 << 30


def patch_keys() -> list[tuple[slice, ...]]:
    # The same corners PatchLoader draws, so every reader reads the same patches.
    loader = PatchLoader(BigArray(str(DATASET.cv_gzip)), PATCH, BATCH, seed=SEED)
    starts = np.concatenate([loader.batch_starts(i) for i in range(N_PATCHES // BATCH)])
    return [
        tuple(slice(int(s), int(s) + n) for s, n in zip(st, PATCH, strict=True)) for st in starts
    ]


def readers(keys: list[tuple[slice, ...]], warm: bool) -> dict[str, Callable[[], list]]:
    cache = CACHE if warm else 0
    ba = BigArray(str(DATASET.cv_gzip), cache_bytes=cache)
    loader = PatchLoader(ba, PATCH, BATCH, seed=SEED, num_batches=N_PATCHES // BATCH)
    context = dict(TS_CONTEXT, cache_pool={"total_bytes_limit": cache})
    tss = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": f"file://{DATASET.ts_sharded}/"},
        context=ts.Context(context),
    ).result()
    cv = CloudVolume(
        f"file://{DATASET.cv_gzip}", progress=False, parallel=1, cache=False, lru_bytes=cache
    )

    def ts_all() -> list:
        futures = [tss[(*k, 0)].read(order="F") for k in keys]
        return [f.result() for f in futures]

    return {
        "bigarrays read_many": lambda: ba.read_many(keys),
        "bigarrays PatchLoader": lambda: [p for batch in loader for p in batch],
        "TensorStore": ts_all,
        "CloudVolume": lambda: [cv[k][..., 0] for k in keys],
    }


def time_all(
    runs: dict[str, Callable[[], object]], repeats: int, burst: int = 1
) -> dict[str, list[float]]:
    """Round-robin timings; a reader slower than SLOW seconds is timed once. Each timing is
    the mean of ``burst`` consecutive calls: a training loop's steady state, where the first
    call after another library ran also pays for the memory that library returned."""
    return time_round_robin(
        runs, repeats, collect=False, burst=burst, free_in_timing=True, slow=SLOW
    )


def main() -> None:
    session = Session()
    truth = DATASET.truth()
    keys = patch_keys()
    want = [np.asarray(truth[k]) for k in keys]
    results = {}
    for phase, warm in (("W3 cold", False), ("W3 warm", True)):
        runs = readers(keys, warm)
        for name, run in runs.items():  # check, and warm the caches for the warm phase
            got = run()
            if not all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)):
                raise SystemExit(f"{phase}: {name} returned wrong voxels")
        results[phase] = time_all(runs, REPEATS, WARM_BURST if warm else 1)
        print(phase, {k: round(v, 3) for k, v in medians(results[phase]).items()})

    # Per-call overhead: one voxel, from each library's warm cache, many times.
    ba = BigArray(str(DATASET.cv_gzip), cache_bytes=CACHE)
    tss = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": f"file://{DATASET.ts_sharded}/"},
        context=ts.Context(dict(TS_CONTEXT, cache_pool={"total_bytes_limit": CACHE})),
    ).result()
    cv = CloudVolume(f"file://{DATASET.cv_gzip}", progress=False, lru_bytes=CACHE)
    tiny = {
        "bigarrays": lambda: ba[10, 20, 30],
        "TensorStore": lambda: tss[10, 20, 30, 0].read().result(),
        "CloudVolume": lambda: cv[10:11, 20:21, 30:31],
    }
    results["1-voxel read, warm (µs per call)"] = {}
    for name, read in tiny.items():
        if int(np.asarray(read()).ravel()[0]) != int(truth[10, 20, 30]):
            raise SystemExit(f"1-voxel read: {name} is wrong")
        results["1-voxel read, warm (µs per call)"][name] = [
            clock(read, collect=False, burst=TINY_CALLS, free_in_timing=True) * 1e6
            for _ in range(REPEATS)
        ]
    print(
        "tiny",
        {k: round(v, 1) for k, v in medians(results["1-voxel read, warm (µs per call)"]).items()},
    )

    with dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
        total = int(truth.sum(dtype=np.uint64))
        ours = BigArray(str(DATASET.cv_gzip)).to_dask()
        theirs = from_cloudvolume(f"file://{DATASET.cv_gzip}", parallel=1)
        runs = {
            "bigarrays to_dask": lambda: int(ours.sum(dtype=np.uint64).compute()),
            "CloudVolume from_cloudvolume": lambda: int(theirs.sum(dtype=np.uint64).compute()),
        }
        for name, sum_ in runs.items():
            if sum_() != total:
                raise SystemExit(f"dask sum: {name} is wrong")
        results["dask sum"] = time_all(runs, 3)
        print("dask sum", {k: round(v, 3) for k, v in medians(results["dask sum"]).items()})

    section = report(results, session)
    write_section("bench_batch.py", section, report_path(SCALE, DATASET.root / "RESULTS.md"))
    if SCALE == "full":
        med = {p: medians(t) for p, t in results.items()}
        record_metrics(
            "bench_batch.py",
            {
                "W3 cold patches/s": N_PATCHES / med["W3 cold"]["bigarrays read_many"],
                "W3 warm patches/s": N_PATCHES / med["W3 warm"]["bigarrays read_many"],
                "1-voxel warm read µs": med["1-voxel read, warm (µs per call)"]["bigarrays"],
            },
        )
    print(section)


def report(results: dict[str, dict[str, list[float]]], session: Session) -> str:
    p = DATASET.p
    lines = [
        "## Batched reads (W3) and dask",
        "",
        f"Generated by `benches/bench_batch.py`, started {session.started}; {session.load()}. "
        f"{os.cpu_count()} CPUs, {cpu_model()}; "
        f"bigarrays {version('bigarrays')}, TensorStore {version('tensorstore')}, CloudVolume "
        f"{version('cloud-volume')}, dask {version('dask')}. Data: bench_read.py's uint8 em "
        f"layer {'×'.join(map(str, p.shape))}, chunks {'×'.join(map(str, p.chunks))}, gzip. "
        f"{N_PATCHES} random {'×'.join(map(str, PATCH))} patches (seed {SEED}); medians of "
        f"{REPEATS} runs (one run for a reader slower than {SLOW:.0f} s). Warm: caches of "
        f"{CACHE >> 30} GiB, filled by the checking pass; each warm timing is the mean of "
        f"{WARM_BURST} consecutive batches (a training loop's steady state; the first batch "
        "after another library ran also pays for the memory it handed back).",
        "",
        "| workload | reader | median s | patches/s |",
        "|---|---|---|---|",
    ]
    for phase, t in results.items():
        for name, med in medians(t).items():
            rate = f"{N_PATCHES / med:,.0f}" if phase.startswith("W3") else "—"
            value = f"{med:.1f} µs" if "µs" in phase else f"{med:.3f}"
            lines.append(f"| {phase} | {name} | {value} | {rate} |")
    lines += ["", "Ratio = best peer median / best bigarrays median:", ""]
    for phase, t in results.items():
        med = medians(t)
        ours = min(v for k, v in med.items() if k.startswith("bigarrays"))
        peer = min(v for k, v in med.items() if not k.startswith("bigarrays"))
        lines.append(f"- {phase}: **{ratio(peer, ours)}**")
    return "\n".join(lines)


if __name__ == "__main__":
    DATASET.ensure()
    sys.exit(main())
