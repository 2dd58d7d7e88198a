"""Writers of ``info`` at once keep each other's scales (issue 22).

``update_info`` (what ``downsample`` uses to add its scales) reads the stored ``info`` with its
version, keeps the scales other writers added since this handle opened the layer, and puts
the result only if ``info`` is still that version, else reads it again
(``src/format/precomputed/array/mod.rs``). Where the store has conditional puts (local disks,
S3, GCS, ``memory://``, mappings with ``compare_and_set``) two processes adding scales at
once both keep theirs; elsewhere the last writer's ``info`` wins, as before.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import numpy as np
import pytest
from conftest import Moto

from bigarrays import BigArray

SHAPE = (64, 64, 16)
CHUNKS = (16, 16, 8)
FACTORS = [(2, 2, 1), (4, 4, 1), (2, 2, 2), (8, 8, 2)]


# Kills the run with every thread's traceback if a test hangs (conftest.hang_guard).
pytestmark = pytest.mark.hang_after(150)


def model() -> np.ndarray:
    return np.asfortranarray(np.random.default_rng(22).integers(0, 255, SHAPE, dtype=np.uint8))


def layer(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, dict[str, Any] | None]:
    if request.param == "local":
        return str(tmp_path / "layer"), None
    moto: Moto = request.getfixturevalue("moto")
    return f"s3://{moto.bucket()}/layer", moto.options()


@pytest.fixture(params=["local", "s3"])
def made(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, dict[str, Any] | None]:
    url, options = layer(request, tmp_path)
    a = BigArray.create(url, shape=SHAPE, dtype="uint8", chunks=CHUNKS, storage_options=options)
    a[...] = model()
    return url, options


def expected(factor: tuple[int, ...]) -> np.ndarray:
    """What ``downsample`` by ``factor`` gives for the model, computed in memory."""
    want = BigArray.create(f"memory://want-{time.time_ns()}", shape=SHAPE, dtype="uint8",
                           chunks=CHUNKS)  # fmt: skip
    want[...] = model()
    (level,) = want.downsample(factor=factor, method="average")
    return level[...]


def resolutions(url: str, options: dict[str, Any] | None) -> list[list[float]]:
    return [s["resolution"] for s in BigArray(url, storage_options=options).info["scales"]]


def test_handles_opened_before_keep_each_others_scales(
    made: tuple[str, dict[str, Any] | None],
) -> None:
    """Two handles opened on the same ``info``, each adding a scale: the second, whose
    ``info`` is stale, keeps the first's scale, and its mip indexes follow what is stored."""
    url, options = made
    first, second = (BigArray(url, storage_options=options) for _ in range(2))
    first.downsample(factor=(2, 2, 1), method="average")
    (level,) = second.downsample(factor=(4, 4, 2), method="average")
    assert resolutions(url, options) == [[1, 1, 1], [2, 2, 1], [4, 4, 2]]
    assert level.resolution == (4, 4, 2)
    np.testing.assert_array_equal(level[...], expected((4, 4, 2)))
    # The second handle's view of the layer now holds both (it read them to merge).
    assert len(second.info["scales"]) == 3


def add_scale(url: str, options: dict[str, Any] | None, factor: tuple[int, int, int],
              start_at: float) -> list[float]:  # fmt: skip
    a = BigArray(url, storage_options=options)
    time.sleep(max(0.0, start_at - time.time()))
    (level,) = a.downsample(factor=factor, method="average")
    return list(level.resolution)


def test_processes_adding_scales_at_once_keep_all_of_them(
    made: tuple[str, dict[str, Any] | None],
) -> None:
    """Four processes open the layer, then each adds its own scale at the same moment:
    every scale is in ``info`` afterwards and reads what ``downsample`` computes."""
    url, options = made
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 5  # past the children's start-up
    with ctx.Pool(len(FACTORS)) as pool:
        result = pool.starmap_async(add_scale, [(url, options, f, start_at) for f in FACTORS])
        got = result.get(timeout=120)
    assert sorted(map(tuple, got)) == sorted(FACTORS)
    stored = resolutions(url, options)
    assert stored[0] == [1, 1, 1]
    assert sorted(map(tuple, stored[1:])) == sorted(FACTORS), stored
    base = BigArray(url, storage_options=options)
    for mip, res in enumerate(stored[1:], start=1):
        level = base.reopen(mip=mip)
        want = expected(tuple(int(r) for r in res))
        np.testing.assert_array_equal(level[...], want, err_msg=f"scale {res}")
