"""What the benches share: machine facts, the median-of-N timer, the peers' local readers
(TensorStore spec and context, CloudVolume options) and the report, one section per script.

``benches/RESULTS.md`` is the concatenation of sections, each owned by one bench script and
fenced by ``<!-- NAME: begin -->`` / ``<!-- NAME: end -->`` markers, so each script can be
re-run alone without losing the others' tables.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# TensorStore: no cache pool, so a repeated read decodes again instead of hitting memory;
# two copy threads for two cores.
TS_CONTEXT = {
    "cache_pool": {"total_bytes_limit": 0},
    "data_copy_concurrency": {"limit": 2},
    "file_io_concurrency": {"limit": 8},
}


def ts_file_spec(path: Path | str) -> dict[str, Any]:
    """TensorStore's spec for the local precomputed layer at ``path``."""
    return {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(path)}}


def cv_file(path: Path | str, parallel: int = 1) -> Any:
    """CloudVolume on the local layer at ``path``, every cache off (``cache=False`` and
    ``lru_bytes=0`` are its defaults; spelled out because they matter)."""
    from cloudvolume import CloudVolume

    return CloudVolume(
        f"file://{path}", progress=False, parallel=parallel, cache=False, lru_bytes=0
    )


def median_time(f: Callable[[], object], repeats: int) -> float:
    """Seconds ``f()`` takes, the median of ``repeats`` runs after one warm-up run."""
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def write_section(name: str, body: str, path: Path = RESULTS, first: bool = False) -> None:
    """Replaces section ``name`` of the report (or adds it, at the end or ``first``), keeping
    every other section."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    elif first:
        text = section + "\n\n" + text.lstrip("\n")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
    path.write_text(text)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_above_baseline(run) -> tuple[object, int]:
    """Runs ``run()`` and returns its result and how far (bytes) the process's peak resident
    set rose above the resident set at the start: the memory the call needed at its worst,
    output included. Linux only: writing 5 to ``/proc/self/clear_refs`` resets the peak."""
    # Hand freed heap memory back first, or a run that reuses it would look free.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kib("VmRSS")
    result = run()
    return result, (_status_kib("VmHWM") - baseline) * 1024


METRICS = Path(__file__).resolve().parent / "data" / "metrics.json"


def record_metrics(script: str, values: dict[str, float]) -> None:
    """Keeps a script's headline numbers for targets.py's summary (gitignored, merged by
    script so each bench can be re-run alone)."""
    import json

    known = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    known[script] = values
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(known, indent=1) + "\n")
