"""Misuse from Python: values of the wrong dtype or shape, non-contiguous and read-only
sources, requests too large for memory, use after ``os.fork()``, many threads on one
handle, pickling."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import uuid
import warnings

import numpy as np
import pytest

import bigarrays
from bigarrays import BigArray

SHAPE, CHUNKS = (20, 12, 8), (8, 8, 4)


def layer(tmp_path=None, dtype="uint16", channels=1, **kw) -> BigArray:
    url = str(tmp_path / "l") if tmp_path is not None else f"memory://{uuid.uuid4().hex}"
    shape = SHAPE + ((channels,) if channels > 1 else ())
    return BigArray.create(url, shape=shape, dtype=dtype, chunks=CHUNKS, **kw)


# -- dtypes ---------------------------------------------------------------------------------

UNCASTABLE = [
    ("complex-array", np.full((4, 4, 4), 1 + 2j)),
    ("complex-scalar", 1 + 2j),
    ("object-array", np.full((4, 4, 4), None, dtype=object)),
    ("object-of-ints", np.array([[[1]]], dtype=object)),
    ("str-array", np.full((4, 4, 4), "7")),
    ("str-scalar", "7"),
    ("bytes-scalar", b"\x07"),
    ("structured", np.zeros((4, 4, 4), dtype=[("a", "u1"), ("b", "f4")])),
    ("datetime", np.full((4, 4, 4), np.datetime64("2024-01-01"))),
    ("timedelta", np.full((4, 4, 4), np.timedelta64(3, "s"))),
]


@pytest.mark.parametrize("value", [v for _, v in UNCASTABLE], ids=[i for i, _ in UNCASTABLE])
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "unaligned"])
def test_uncastable_values_are_a_type_error_and_write_nothing(value, aligned):
    a = layer()
    a[:, :, :] = 5
    box = (slice(0, 8), slice(0, 8), slice(0, 4)) if aligned else (slice(1, 5),) * 3
    with pytest.raises(TypeError, match="cannot write .* values into a uint16 layer"):
        a[box] = value
    assert (a[:, :, :] == 5).all()


CASTS = [
    ("float64", np.float64, [1.9, -1.0, 70000.5]),
    ("int64", np.int64, [-1, 65536, 65537]),
    ("bool", np.bool_, [True, False, True]),
    ("uint8", np.uint8, [0, 255, 7]),
    ("float32-nan", np.float32, [np.nan, np.inf, 3.0]),
]
#: What NumPy's casting="same_kind" lets into uint16 (the default for writes).
SAME_KIND = {"float64": False, "int64": False, "bool": True, "uint8": True, "float32-nan": False}


@pytest.mark.parametrize("name, kind, values", CASTS, ids=[c[0] for c in CASTS])
def test_unsafe_casting_casts_as_numpy_setitem_casts(name, kind, values):
    # Asked for explicitly, the same (possibly lossy) cast as `ndarray.__setitem__`.
    a = layer()
    value = np.resize(np.array(values, dtype=kind), (4, 4, 4))
    ref = np.zeros((4, 4, 4), np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN -> int
        ref[...] = value
        a.write((slice(0, 4), slice(0, 4), slice(0, 4)), value, casting="unsafe")
    np.testing.assert_array_equal(a[0:4, 0:4, 0:4], ref)


@pytest.mark.parametrize("name, kind, values", CASTS, ids=[c[0] for c in CASTS])
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "unaligned"])
def test_default_casting_is_numpys_same_kind(name, kind, values, aligned):
    a = layer()
    a[:, :, :] = 5
    value = np.resize(np.array(values, dtype=kind), (4, 4, 4))
    box = (slice(0, 8), slice(0, 8), slice(0, 4)) if aligned else (slice(1, 5),) * 3
    value = np.resize(value, a[box].shape)
    assert np.can_cast(value.dtype, np.uint16, "same_kind") == SAME_KIND[name]
    if SAME_KIND[name]:
        a[box] = value
        np.testing.assert_array_equal(a[box], value.astype(np.uint16))
        return
    with pytest.raises(TypeError, match=f"{value.dtype} values into a uint16 layer.*unsafe"):
        a[box] = value
    assert (a[:, :, :] == 5).all()  # nothing written


@pytest.mark.parametrize("value", [0.5, [0.5, 1.0], np.float32(2.0)], ids=str)
def test_floats_into_an_integer_layer_are_refused(value):
    # The new user's case: floats in [0, 1) into uint8 used to store zeros silently.
    a = layer(dtype="uint8")
    a[:, :, :] = 9
    with pytest.raises(TypeError, match="float.* values into a uint8 layer"):
        a[0:2, 0:1, 0:1] = value
    assert (a[:, :, :] == 9).all()


@pytest.mark.parametrize(
    "value, shown", [(1e6, None), (300, "300"), (-1, "-1"), ([1, 2, 256], "256"), (2**70, None)]
)
def test_out_of_range_python_integers_overflow(value, shown):
    a = layer(dtype="uint8")
    a[:, :, :] = 9
    if isinstance(value, float):  # 1e6 is a float: refused as floats are
        with pytest.raises(TypeError, match="float64 values into a uint8 layer"):
            a[0:3, 0:1, 0:1] = value
    else:
        with pytest.raises(OverflowError, match=f"{shown or value} is out of range.*uint8"):
            a[0:3, 0:1, 0:1] = value
    assert (a[:, :, :] == 9).all()


def test_python_integers_that_fit_write_into_any_integer_type():
    fits = [("uint8", 255), ("int8", -128), ("uint64", 2**64 - 1), ("int64", -(2**63))]
    for dtype, value in fits:
        a = layer(dtype=dtype)
        a[0:3, 0:1, 0:1] = value
        a[5, 5, 1:4] = [value, 0, value]
        assert a[0, 0, 0] == value and a[5, 5, 3] == value and a[5, 5, 2] == 0


def test_bad_casting_names_the_choices():
    a = layer()
    with pytest.raises(bigarrays.InvalidArgumentError, match="casting must be one of"):
        a.write((slice(0, 1),) * 3, 1, casting="sometimes")


def test_python_scalars_and_lists_write():
    a = layer(dtype="float32")
    a[0:2, 0:1, 0:1] = [[[1.5]], [[2.5]]]
    a[2:4, 0:2, 0:1] = 3
    a[4:5, 0:1, 0:1] = np.float64(4.25)
    got = a[0:5, 0:2, 0:1][..., 0]
    np.testing.assert_array_equal(got, [[1.5, 0], [2.5, 0], [3, 3], [3, 3], [4.25, 0]])


# -- shapes ---------------------------------------------------------------------------------

BAD_SHAPES = [(3, 3), (4, 4, 5), (5, 4, 4), (4, 4, 4, 2), (2, 4, 4, 4), (0, 4, 4)]


@pytest.mark.parametrize("shape", BAD_SHAPES, ids=[str(s) for s in BAD_SHAPES])
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "unaligned"])
def test_unbroadcastable_shapes_are_a_value_error_naming_both(shape, aligned):
    a = layer()
    a[:, :, :] = 1
    start = 0 if aligned else 1
    box = (slice(start, start + 4),) * 3
    with pytest.raises(ValueError) as e:
        a[box] = np.ones(shape, np.uint16)
    msg = str(e.value).replace(" ", "")
    assert str(shape).replace(" ", "").rstrip(")").rstrip(",") in msg, msg
    assert "(4,4,4)" in msg, msg
    assert (a[:, :, :] == 1).all()


def test_broadcastable_shapes_broadcast():
    a = layer()
    a[0:4, 0:3, 0:2] = np.arange(2, dtype=np.uint16)  # along z
    a[4:8, 0:3, 0:2] = np.arange(4, dtype=np.uint16)[:, None, None]  # along x
    np.testing.assert_array_equal(a[0:4, 0:3, 0:2], np.broadcast_to(np.arange(2), (4, 3, 2)))
    np.testing.assert_array_equal(
        a[4:8, 0:3, 0:2], np.broadcast_to(np.arange(4)[:, None, None], (4, 3, 2))
    )


# -- non-contiguous and read-only sources ---------------------------------------------------


def sources():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**16, (40, 24, 24), dtype=np.uint16)
    ro = base[:20, :12, :8].copy()
    ro.flags.writeable = False
    mm = np.lib.stride_tricks.as_strided(base, (20, 12, 8), (2, 80, 2000), writeable=False)
    return {
        "c-order": np.ascontiguousarray(base[:20, :12, :8]),
        "strided": base[::2, ::2, :16:2],
        "transposed": np.ascontiguousarray(base[:8, :12, :20]).T,
        "reversed": base[19::-1, :12, :8],
        "read-only": ro,
        "as-strided-read-only": mm,
        "broadcast-view": np.broadcast_to(base[:20, :1, :1], (20, 12, 8)),
        "big-endian": base[:20, :12, :8].astype(">u2"),
    }


SOURCES = list(sources())


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("whole", [True, False], ids=["whole", "partial"])
def test_any_layout_of_source_array_writes(tmp_path, name, whole):
    src = sources()[name]
    a = layer(tmp_path)
    if whole:
        a[:, :, :] = src
        np.testing.assert_array_equal(a[:, :, :], src)
    else:
        a[1:19, 1:11, 1:7] = src[1:19, 1:11, 1:7]
        np.testing.assert_array_equal(a[1:19, 1:11, 1:7], src[1:19, 1:11, 1:7])
    assert src.flags.writeable is (name in ("c-order", "strided", "transposed", "reversed",
                                            "big-endian"))  # fmt: skip


# -- requests too large for memory ----------------------------------------------------------


def huge_layer(tmp_path) -> BigArray:
    return BigArray.create(str(tmp_path / "huge"), shape=(2**50, 2**50, 2**40), dtype="uint64",
                           chunks=(64, 64, 64))  # fmt: skip


HUGE = [
    ("2^40-cube", (slice(0, 2**40), slice(0, 2**40), slice(0, 2**20))),  # overflows 64 bits
    ("1-EiB", (slice(0, 2**20), slice(0, 2**20), slice(0, 2**17))),
    ("10-PiB-plane", (slice(0, 2**25), slice(0, 2**25), 7)),
    ("strided", (slice(0, 2**40, 2**20), slice(0, 2**40, 2**20), slice(0, 2**20))),
]


@pytest.mark.parametrize("key", [k for _, k in HUGE], ids=[i for i, _ in HUGE])
def test_huge_reads_are_refused_before_allocating(tmp_path, key):
    a = huge_layer(tmp_path)
    with pytest.raises(bigarrays.RequestTooLargeError) as e:
        a[key]
    assert isinstance(e.value, MemoryError) and isinstance(e.value, bigarrays.BigArrayError)
    assert "bytes" in str(e.value) and "iB" in str(e.value) and a.url in str(e.value)
    with pytest.raises(bigarrays.RequestTooLargeError):
        a.read_many([key])


@pytest.mark.parametrize("key", [k for _, k in HUGE], ids=[i for i, _ in HUGE])
def test_huge_writes_are_refused_before_allocating(tmp_path, key):
    a = huge_layer(tmp_path)
    with pytest.raises(bigarrays.RequestTooLargeError, match="needs"):
        a[key] = 1
    assert sorted(os.listdir(tmp_path / "huge")) == ["info"]


def test_many_boxes_that_fit_one_by_one_but_not_together_are_refused(tmp_path):
    a = huge_layer(tmp_path)
    box = (slice(0, 2**14), slice(0, 2**14), slice(0, 1))  # 2^31 bytes of uint64: fits alone
    n = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**31 + 1
    with pytest.raises(bigarrays.RequestTooLargeError, match=f"read_many of {n} boxes"):
        a.read_many([box] * n)


def test_the_size_in_the_message_is_exact(tmp_path):
    a = huge_layer(tmp_path)
    with pytest.raises(bigarrays.RequestTooLargeError, match=str(2**57 * 8)):
        a[0 : 2**20, 0 : 2**20, 0 : 2**17]


def test_the_binding_itself_raises_memory_error_not_a_panic(tmp_path):
    # Regression: below the Python check, the Rust binding allocated its output with
    # PyArray1::zeros, which panics on numpy's null pointer: a PanicException (not even an
    # Exception) instead of a MemoryError. The public API refuses such sizes before it calls
    # the binding, so only the private handle (`_layer`) reaches this path.
    a = huge_layer(tmp_path)
    with pytest.raises(MemoryError, match="EiB"):
        a._layer.read((0, 0, 0), (2**20, 2**20, 2**17))
    with pytest.raises(MemoryError):
        a._layer.read_many([(0, 0, 0)], [(2**20, 2**20, 2**17)])


def test_a_big_but_possible_read_still_works(tmp_path):
    a = huge_layer(tmp_path)
    assert a[2**49 : 2**49 + 64, 0:64, 0:64].shape == (64, 64, 64)


# -- fork -----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("where", ["local", "memory"])
def test_use_after_fork_reads_and_writes(tmp_path, where):
    a = layer(tmp_path if where == "local" else None)
    a[:, :, :] = 3
    assert (a[:, :, :] == 3).all()  # the IO runtime and thread pool exist before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, write, read back; report through the pipe
        code = 1
        try:
            ok = (a[:, :, :] == 3).all()
            a[0:8, 0:8, 0:4] = 9
            ok = ok and (a[0:8, 0:8, 0:4] == 9).all() and (a[8:, :, :] == 3).all()
            code = 0 if ok else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 1) == b"\0" and os.waitstatus_to_exitcode(status) == 0
    os.close(r)
    # The parent still works; on disk it sees the child's write, in memory it does not.
    expect = 9 if where == "local" else 3
    assert (a[0:8, 0:8, 0:4] == expect).all()
    a[8:16, 0:8, 0:4] = 4
    assert (a[8:16, 0:8, 0:4] == 4).all()


# -- threads --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "memory"])
def test_many_threads_share_one_handle(tmp_path, where):
    # 16 threads: each writes its own chunk-aligned slab (disjoint chunks), then reads it
    # back and reads the whole layer, while the others write.
    a = BigArray.create(str(tmp_path / "t") if where == "local" else f"memory://{uuid.uuid4().hex}",
                        shape=(16 * 8, 16, 8), dtype="uint32", chunks=(8, 8, 4))  # fmt: skip
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for rep in range(5):
                slab = np.full((8, 16, 8), i * 100 + rep, np.uint32)
                a[8 * i : 8 * i + 8, :, :] = slab
                np.testing.assert_array_equal(a[8 * i : 8 * i + 8, :, :], slab)
                whole = a[:, :, :]
                # Every chunk of another slab is uniform: no torn chunk.
                for j in range(16):
                    for c in (whole[8 * j : 8 * j + 8, 0:8, 0:4], whole[8 * j : 8 * j + 8, 8:, 4:]):
                        assert (c == c.flat[0]).all()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    final = a[:, :, :]
    for i in range(16):
        assert (final[8 * i : 8 * i + 8] == i * 100 + 4).all()


# -- pickling -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "memory", "sharded"])
def test_pickle_round_trip(tmp_path, where):
    kw = {"sharding": "auto"} if where == "sharded" else {}
    a = layer(None if where == "memory" else tmp_path, dtype="float32", channels=2, **kw)
    a[:, :, :, :] = np.arange(np.prod(a.shape), dtype=np.float32).reshape(a.shape)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        b = pickle.loads(pickle.dumps(a, protocol=protocol))
        assert (b.url, b.shape, b.dtype, b.chunks, b.mip) == (a.url, a.shape, a.dtype, a.chunks,
                                                              a.mip)  # fmt: skip
        np.testing.assert_array_equal(b[:, :, :], a[:, :, :])
    b[0:1, 0:1, 0:1, 0] = -1  # the copy writes to the same layer
    assert a[0, 0, 0, 0] == -1


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_shard_rewritten_by_another_handle_is_read_anew(tmp_path, where):
    # Regression: handle `a` cached a shard's minishard index; the pickled copy `b` then
    # rewrote the shard with a chunk that shifts the others (raw chunks, raw indexes), and
    # `a` read through its stale offsets: another chunk's voxels, silently.
    spec = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity",
            "minishard_bits": 0, "shard_bits": 0, "minishard_index_encoding": "raw",
            "data_encoding": "raw"}  # fmt: skip
    a = layer(None if where == "memory" else tmp_path, dtype="uint8", sharding=spec)
    a[8:16, 0:8, 0:4] = 5  # chunk 1 only
    assert (a[8:16, 0:8, 0:4] == 5).all()  # `a` now caches the index
    b = pickle.loads(pickle.dumps(a))
    b[0:8, 0:8, 0:4] = 9  # chunk 0 lands before chunk 1 in the rewritten shard
    assert (a[8:16, 0:8, 0:4] == 5).all()
    assert (a[0:8, 0:8, 0:4] == 9).all()


def test_to_dask_without_dask_says_how_to_install_it(tmp_path):
    # A child whose import system has no dask, as a user's environment without the extra.
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
        "from bigarrays import BigArray\n"
        "a = BigArray.create('memory://x', shape=(4, 4, 4), dtype='uint8', chunks=(4, 4, 4))\n"
        "try:\n"
        "    a.to_dask()\n"
        "except ModuleNotFoundError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "bigarrays[dask]"' in out.stdout, out.stdout + out.stderr
