"""What the benches share: the scale a run asks for, machine facts, the timers (one call,
median of N, round-robin over readers), the peers' local readers (TensorStore spec and
context, CloudVolume options), ratio formatting and the report, one section per script; and
for the S3 benches, moto's server in a subprocess on 127.0.0.1.
The data the benches read is generated in ``datasets.py``.

``benches/RESULTS.md`` is the concatenation of sections, each owned by one bench script and
fenced by ``<!-- NAME: begin -->`` / ``<!-- NAME: end -->`` markers, so each script can be
re-run alone without losing the others' tables.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def bench_scale(choices: Iterable[str]) -> str:
    """The scale ``BENCH_SCALE`` asks for: ``full`` (the default, the committed report) or
    ``small`` (a quick end-to-end check)."""
    choices = sorted(choices)
    scale = os.environ.get("BENCH_SCALE", "full")
    if scale not in choices:
        raise SystemExit(f"BENCH_SCALE must be one of {choices}, got {scale!r}")
    return scale


def report_path(scale: str, elsewhere: Path) -> Path:
    """Where a run's section goes: ``RESULTS.md`` for the full run; any other scale's goes to
    ``elsewhere`` (beside its data), so a quick run never replaces the committed report."""
    return RESULTS if scale == "full" else elsewhere


class Session:
    """One run of a bench: when it started, and the machine's load then and at its end (the
    timings are only as quiet as the machine was)."""

    def __init__(self) -> None:
        self.started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        self.load_start = os.getloadavg()[0]
        self.load_end: float | None = None

    def stop(self) -> None:
        """Notes the load at the end of the measurements (else the report's time is used)."""
        self.load_end = os.getloadavg()[0]

    def load(self) -> str:
        end = os.getloadavg()[0] if self.load_end is None else self.load_end
        return f"load average (1 min) {self.load_start:.2f} at start, {end:.2f} at end"


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


def clock(
    run: Callable[[], object],
    *,
    collect: bool = True,
    burst: int = 1,
    free_in_timing: bool = False,
) -> float:
    """Seconds one call of ``run()`` takes.

    ``collect``: a garbage collection first, outside the timing, so no earlier garbage is
    collected inside it. ``burst``: the mean of that many consecutive calls. The last call's
    result is freed after the clock stops unless ``free_in_timing`` (then, as every earlier
    call's, inside the timing: freeing a large output is part of that measurement).
    """
    if collect:
        gc.collect()
    t = time.perf_counter()
    for _ in range(burst - 1):
        run()
    if free_in_timing:
        run()
        elapsed = time.perf_counter() - t
    else:
        out = run()
        elapsed = time.perf_counter() - t
        del out
    return elapsed / burst


def median_time(f: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Seconds ``f()`` takes, the median of ``repeats`` runs (after one warm-up run unless
    ``warm_up`` is off); results are freed inside the timing, no collection between runs."""
    if warm_up:
        f()
    return statistics.median(clock(f, collect=False, free_in_timing=True) for _ in range(repeats))


def time_round_robin(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    collect: bool = True,
    burst: int = 1,
    free_in_timing: bool = False,
    slow: float = math.inf,
    peaks: dict[str, int] | None = None,
) -> dict[str, list[float]]:
    """Each run's timings (seconds), taken round-robin ``repeats`` times, so that background
    load (the machine may be busy) spreads over all of them instead of landing on whichever
    happened to run at the time. No warm-up: each bench's checking pass is its warm-up.

    ``collect``, ``burst`` and ``free_in_timing`` are :func:`clock`'s. A run whose first
    timing took more than ``slow`` seconds is timed once. With ``peaks``, each run's last
    call also measures how far the process's resident set rose above its level at the start
    (:func:`peak_rss_above_baseline`, inside the timing), stored under the run's name.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            if times[name] and times[name][0] > slow:
                continue
            if peaks is not None and i == repeats - 1:

                def run_measuring_peak(run: Callable[[], object] = run, name: str = name) -> object:
                    out, peaks[name] = peak_rss_above_baseline(run)
                    return out

                run = run_measuring_peak
            times[name].append(
                clock(run, collect=collect, burst=burst, free_in_timing=free_in_timing)
            )
    return times


def medians(times: Mapping[str, list[float]]) -> dict[str, float]:
    """Each name's median time."""
    return {name: statistics.median(t) for name, t in times.items()}


def ratio(theirs: float, ours: float) -> str:
    """``theirs / ours`` as the reports show it: ``1.23×`` (> 1: ours is faster)."""
    return f"{theirs / ours:.2f}×"


def vs_best(peers: Mapping[str, float], ours: float) -> str:
    """The fastest peer's median over ours, naming it: ``1.23× (vs TensorStore)``."""
    best = min(peers, key=lambda name: peers[name])
    return f"{ratio(peers[best], ours)} (vs {best})"


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
    path.parent.mkdir(parents=True, exist_ok=True)
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


# -- moto's S3 server (bench_s3.py, bench_latency.py) ---------------------------------------

# moto's server answers any key; these are what the S3 benches sign with.
KEY, SECRET = "testing", "testing-secret"

# Runs in the server subprocess: moto's WSGI app behind waitress.
WAITRESS_SERVER = """
import logging, sys
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve
logging.disable(logging.WARNING)
serve(DomainDispatcherApplication(create_backend_app), host="127.0.0.1",
      port=int(sys.argv[1]), threads=8, connection_limit=256, _quiet=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_kind() -> str:
    return "waitress" if importlib.util.find_spec("waitress") else "moto_server"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in a subprocess on 127.0.0.1 (waitress with 8 threads where it is
    installed); yields its endpoint and always stops it."""
    port = free_port()
    if server_kind() == "waitress":
        args = [sys.executable, "-c", WAITRESS_SERVER, str(port)]
    else:
        exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
        exe = exe if os.path.exists(exe) else (shutil.which("moto_server") or "moto_server")
        args = [exe, "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    raise SystemExit(f"moto server did not start ({args[0]})") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server subprocess: politely, then for good after 5 seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
