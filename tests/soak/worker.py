"""A soak writer or reader: ``python worker.py CONFIG_JSON`` in its own process (so that it
can be SIGKILLed), or ``run(config, stop)`` on a thread (``memory://`` layers, which only
threads of one process share).

Writer: loops until ``stop`` (a file, or an event) over random unaligned boxes, each written
with a value of its own, ``id = incarnation << 16 | seq``; before a write it appends
``I id x0 y0 z0 x1 y1 z1 t`` to its log and fsyncs, after it ``C id t`` (``E id message``
when the write raised). Reader: reads random boxes (and now and then the whole layer) and
appends ``(box, t0, t1, voxels)`` records to its log. Times are ``time.monotonic_ns()``,
one clock for every process on the machine.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np


def _open(config: dict[str, Any]) -> Any:
    from bigarrays import BigArray

    return BigArray(config["url"], storage_options=config.get("storage_options"))


def random_box(rng: random.Random, config: dict[str, Any], most: int) -> tuple[list, list]:
    lo, hi = [], []
    for d in range(3):
        origin, size = config["origin"][d], config["size"][d]
        extent = rng.randint(1, min(size, most if d < 2 else max(1, most // 2)))
        start = origin + rng.randint(0, size - extent)
        lo.append(start)
        hi.append(start + extent)
    return lo, hi


def _stopped(stop: Any) -> bool:
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return Path(stop).exists()


def writer(config: dict[str, Any], stop: Any) -> None:
    rng = random.Random(config["seed"])
    a = _open(config)
    inc = config["incarnation"]
    with open(config["log"], "a") as log:

        def note(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

        for seq in range(1, 1 << 16):
            if _stopped(stop):
                return
            lo, hi = random_box(rng, config, config["max_extent"])
            wid = inc << 16 | seq
            note(f"I {wid} {' '.join(map(str, lo + hi))} {time.monotonic_ns()}")
            try:
                a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = np.uint32(wid)
            except Exception as e:  # noqa: BLE001 - a failed write is logged, then the next
                note(f"E {wid} {type(e).__name__}: {str(e)[:300]!r}")
                continue
            note(f"C {wid} {time.monotonic_ns()}")


def reader(config: dict[str, Any], stop: Any) -> None:
    rng = random.Random(config["seed"])
    a = _open(config)
    whole = (
        config["origin"],
        [o + s for o, s in zip(config["origin"], config["size"], strict=True)],
    )
    with open(config["log"], "ab") as log:
        while not _stopped(stop):
            lo, hi = (
                whole if rng.random() < 0.1 else random_box(rng, config, 2 * config["max_extent"])
            )
            t0 = time.monotonic_ns()
            try:
                data = np.asarray(a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], np.uint32)
            except Exception as e:  # noqa: BLE001 - a failed read is a finding: logged
                pickle.dump(("error", f"read {lo}..{hi}: {type(e).__name__}: {e}"), log)
                log.flush()
                continue
            t1 = time.monotonic_ns()
            packed = zlib.compress(np.ascontiguousarray(data).tobytes(), 1)
            pickle.dump((tuple(lo), tuple(hi), t0, t1, data.shape, packed), log)
            log.flush()
            if config.get("pause"):
                time.sleep(config["pause"])


def run(config: dict[str, Any], stop: Any) -> None:
    (writer if config["role"] == "writer" else reader)(config, stop)


if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    run(cfg, cfg["stop"])
