"""Imports go one way: the operations (copy, pyramid, dask, loader, sampling, inference,
fsck, ingest) import ``BigArray`` and use its public seam; ``BigArray`` imports them only
inside the methods that front them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import bigarrays

PACKAGE = Path(bigarrays.__file__).parent
OPERATIONS = (
    "_copy", "_pyramid", "_dask", "_loader", "_sampling", "_inference", "_fsck",
    "_ingest", "_sources", "_xarray", "_napari", "_neuroglancer", "_layer_type",
)  # fmt: skip


def test_importing_bigarray_loads_no_operation():
    code = (
        "import sys, bigarrays._bigarray\n"
        f"print([m for m in {OPERATIONS!r} if 'bigarrays.' + m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_lazy_package_names_still_import():
    from bigarrays import PatchLoader, store

    assert PatchLoader.__module__ == "bigarrays._loader"
    assert store.__module__ == "bigarrays._dask"
    assert {"PatchLoader", "store"} <= set(dir(bigarrays))


def test_only_bigarray_touches_its_private_attributes():
    private = re.compile(r"\._(layer|lo|hi|reopen|init_args|setup|read_box|shaped)\b")
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "_bigarray.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []


def test_public_seam(tmp_path):
    """The methods the operations use instead of private attributes."""
    import numpy as np
    import pytest

    from bigarrays import BigArray, InvalidArgumentError

    a = BigArray.create(str(tmp_path / "a"), shape=(32, 32, 8), dtype="uint8", chunks=(16, 16, 8))
    assert a.stored_chunks() == []
    # Only the chunk touching the given box is written; the other stays absent.
    a.write((slice(0, 32), slice(0, 16), slice(0, 8)), 5, only=[((0, 0, 0), (1, 1, 1))])
    assert [(lo, hi) for lo, hi, n in a.stored_chunks()] == [((0, 0, 0), (16, 16, 8))]
    assert a.stored_chunks(np.s_[16:32, :, :]) == []
    assert int(a[20, 0, 0]) == 0 and int(a[0, 0, 0]) == 5
    with pytest.raises(InvalidArgumentError):
        a.write(np.s_[0:32:2, 0:16, 0:8], 1, only=[((0, 0, 0), (1, 1, 1))])
    b = BigArray.create(str(tmp_path / "b"), shape=(32, 32, 8), dtype="uint8", chunks=(16, 16, 8))
    assert b.copy_chunks_from(a) is True
    assert np.array_equal(b[b.bounds], a[a.bounds])
    assert len(b.stored_chunks()) == 1
    assert a.reopen(fill_missing=False).url == a.url
    info = a.info
    info["scales"].append({**info["scales"][0], "key": "2_2_1", "resolution": [2, 2, 1],
                           "size": [16, 16, 8]})  # fmt: skip
    a.update_info(info)
    assert a.num_mips == 2 and a.reopen(mip=1).shape == (16, 16, 8)
