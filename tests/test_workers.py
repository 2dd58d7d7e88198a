"""Threads under control: ``set_num_threads`` and ``BIGARRAYS_NUM_THREADS``, changes while
reads run, and DataLoader / ``multiprocessing.Pool`` workers after the parent has read (fork,
spawn, forkserver): right batches, no hang, no leaked threads, each worker's share of the
cores. The worker runs happen in a fresh interpreter (``workers_child.py``) bounded by a
timeout, so a hang fails the test instead of the run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Moto, run_threads

import bigarrays
from bigarrays import BigArray
from bigarrays.errors import InvalidArgumentError

CHILD = Path(__file__).with_name("workers_child.py")
#: One start method's whole run (spawn starts a dozen interpreters that import torch).
RUN_SECONDS = 480

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the DataLoader tests need torch"
)


def cpu_threads(want: int) -> int:
    """This process's CPU pool threads, once any replaced pool's threads have exited (they
    do so on their own, shortly after the replacement), or after 10 s."""
    end = time.monotonic() + 10
    while True:
        names = []
        for task in os.listdir("/proc/self/task"):
            try:
                names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
            except OSError:  # ended meanwhile
                pass
        n = sum(name.startswith("bigarrays-cpu") for name in names)
        if n == want or time.monotonic() > end:
            return n
        time.sleep(0.05)


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def volume(tmp_path: Path) -> tuple[BigArray, np.ndarray]:
    data = np.random.default_rng(3).integers(0, 60000, (48, 40, 24), dtype=np.uint16)
    a = BigArray.create(
        tmp_path / "img", shape=data.shape, dtype="uint16", chunks=(16, 16, 8), encoding="raw"
    )
    a[a.bounds] = data
    return a, data


def test_set_num_threads_sizes_the_pool_and_none_restores_the_default(volume):
    a, data = volume
    default = bigarrays.get_num_threads()
    try:
        bigarrays.set_num_threads(1)
        assert bigarrays.get_num_threads() == 1
        np.testing.assert_array_equal(a[a.bounds], data)
        assert cpu_threads(1) == 1
        bigarrays.set_num_threads(3)
        np.testing.assert_array_equal(a[a.bounds], data)
        assert bigarrays.get_num_threads() == 3
        assert cpu_threads(3) == 3
    finally:
        bigarrays.set_num_threads(None)
    assert bigarrays.get_num_threads() == default
    for bad in (0, -2):
        with pytest.raises(InvalidArgumentError, match="at least 1"):
            bigarrays.set_num_threads(bad)
    with pytest.raises(InvalidArgumentError, match="int or None"):
        bigarrays.set_num_threads(2.5)  # type: ignore[arg-type]


def test_changing_the_count_while_reads_run_is_safe(volume):
    """Readers on several threads while another keeps changing the count: every read is
    right (each finishes on the pools it started with), none hangs."""
    a, data = volume
    keys = [
        tuple(slice(o, o + n) for o, n in zip(start, (12, 10, 6), strict=True))
        for start in [(0, 0, 0), (20, 15, 9), (36, 30, 18), (7, 22, 3)]
    ]
    stop = threading.Event()

    def reader() -> None:
        for _ in range(40):
            for key, got in zip(keys, a.read_many(keys), strict=True):
                np.testing.assert_array_equal(got, data[key])

    def changer() -> None:
        n = 0
        while not stop.is_set():
            bigarrays.set_num_threads(1 + n % 3)
            n += 1
            time.sleep(0.005)
        bigarrays.set_num_threads(None)

    changing = threading.Thread(target=changer)
    changing.start()
    try:
        run_threads([reader] * 3)
    finally:
        stop.set()
        changing.join(timeout=30)
    assert not changing.is_alive()


def test_the_environment_variable_sizes_the_engine_and_a_bad_one_is_named(volume):
    a, _ = volume
    read = f"import bigarrays; a = bigarrays.BigArray({str(a.url)!r}); a[a.bounds]; "
    count = (
        "import os; print(bigarrays.get_num_threads(), sum(open(f'/proc/self/task/{t}/comm')"
        ".read().startswith('bigarrays-cpu') for t in os.listdir('/proc/self/task')))"
    )
    done = python(read + count, BIGARRAYS_NUM_THREADS="3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]
    # set_num_threads beats it in the process that calls it.
    done = python("import bigarrays; bigarrays.set_num_threads(2); " + read + count,
                  BIGARRAYS_NUM_THREADS="3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]
    bad = python(read, BIGARRAYS_NUM_THREADS="many")
    assert bad.returncode != 0
    assert 'BIGARRAYS_NUM_THREADS="many" is not a positive integer' in bad.stderr
    assert "InvalidArgumentError" in bad.stderr


def _layer(tmp_path: Path, url: str, name: str, options: dict | None = None) -> dict:
    data = np.random.default_rng(len(name)).integers(0, 255, (64, 48, 32), dtype=np.uint8)
    a = BigArray.create(
        url,
        shape=data.shape,
        dtype="uint8",
        chunks=(32, 32, 16),
        voxel_offset=(10, -4, 3),
        compression="gzip",
        storage_options=options,
    )
    a[a.bounds] = data
    np.save(tmp_path / f"{name}.npy", data)
    return {
        "url": url,
        "options": options,
        "truth": str(tmp_path / f"{name}.npy"),
        "offset": [10, -4, 3],
        "all": options is None,
    }


@needs_torch
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_dataloader_and_pool_workers_after_the_parent_read(tmp_path, moto: Moto, method):
    """For a local and an S3 layer: PatchLoader and a plain map-style Dataset through
    ``DataLoader(num_workers=2)``, the workers' engines sized to their share (or to what
    ``worker_init_fn`` set), a ``multiprocessing.Pool``; the parent ends with the threads
    it started with. See workers_child.py."""
    spec = {
        "layers": [
            _layer(tmp_path, str(tmp_path / "local"), "local"),
            _layer(tmp_path, f"s3://{moto.bucket()}/em", "s3", moto.options()),
        ]
    }
    # Workers re-open from pickles, which never carry secrets: they find the keys where
    # cluster workers would, in their environment.
    options = spec["layers"][1]["options"]
    keys = {k.upper(): options.pop(k) for k in ("aws_access_key_id", "aws_secret_access_key")}
    try:
        done = subprocess.run(
            [sys.executable, str(CHILD), method, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            env={**os.environ, **keys, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{method}: no result in {RUN_SECONDS} s (a hang?)\n{e.stderr!r}")
    assert done.returncode == 0, f"{method}:\n{done.stderr[-6000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["method"] == method
