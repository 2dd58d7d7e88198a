"""Reference volumes and comparisons shared by the interop and property tests."""

from __future__ import annotations

import numpy as np

# A tiny hand-made layer: 10×6×4 uint16, two 5×6×4 chunks along x.
INFO = {
    "@type": "neuroglancer_multiscale_volume",
    "type": "image",
    "data_type": "uint16",
    "num_channels": 1,
    "scales": [
        {
            "key": "s0",
            "size": [10, 6, 4],
            "voxel_offset": [0, 0, 0],
            "resolution": [1, 1, 1],
            "chunk_sizes": [[5, 6, 4]],
            "encoding": "raw",
        }
    ],
}


def values(start: int) -> np.ndarray:
    """The voxels of one chunk of that layer, counting up from `start`."""
    return (np.arange(5 * 6 * 4, dtype=np.uint16) + start).reshape((5, 6, 4), order="F")


def random_volume(
    seed: int, shape: tuple[int, ...], dtype: str, nonzero: bool = False
) -> np.ndarray:
    """Random voxels spanning the dtype's whole range, Fortran-ordered like the files, with
    special values (NaN, ±inf, -0.0, denormals, min/max) that must survive bit-exactly.
    ``nonzero`` avoids 0, the fill value, so that no chunk is all background."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        vol = (rng.standard_normal(shape) * 1e3).astype(dt)
        if nonzero:
            vol[vol == 0] = 1
        flat = vol.reshape(-1, order="F")  # a view
        specials = [np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).tiny / 4, np.finfo(dt).max]
        flat[1 : 1 + len(specials)] = specials
    else:
        info = np.iinfo(dt)
        vol = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        if nonzero:
            vol[vol == 0] = 1
        flat = vol.reshape(-1, order="F")
        flat[:2] = [1 if nonzero and info.min == 0 else info.min, info.max]
    return np.asfortranarray(vol)


def assert_bit_exact(actual, expected, context: object = "") -> None:
    """Same dtype, same shape and the same bytes voxel by voxel (NaN payloads, -0.0 included)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype, context)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, context)
    as_uint = np.dtype(f"u{expected.dtype.itemsize}")
    np.testing.assert_array_equal(
        actual.view(as_uint), expected.view(as_uint), err_msg=str(context)
    )


def window(ref: np.ndarray, offset, start, stop) -> np.ndarray:
    """``ref`` (spanning ``offset`` .. ``offset + shape``) seen through the absolute box
    ``[start, stop)``: zeros wherever the box leaves the layer."""
    out_shape = tuple(b - a for a, b in zip(start, stop, strict=True)) + ref.shape[3:]
    out = np.zeros(out_shape, dtype=ref.dtype)
    src, dst = [], []
    for a, b, o, n in zip(start, stop, offset, ref.shape[:3], strict=True):
        lo, hi = max(a, o), min(b, o + n)
        if hi <= lo:
            return out
        src.append(slice(lo - o, hi - o))
        dst.append(slice(lo - a, hi - a))
    out[tuple(dst)] = ref[tuple(src)]
    return out


def absolute(start, stop) -> tuple[slice, ...]:
    """The absolute box ``[start, stop)`` as an index."""
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


# 16 shards of 4 × 2 × 2 chunks for a 128 × 128 × 64 layer of 16³ chunks (8 × 8 × 4 chunks:
# a compressed Morton code of 3 + 3 + 2 bits; identity hash, preshift 3 + minishard 1 bits).
SMALL_SHARDING = {
    "@type": "neuroglancer_uint64_sharded_v1",
    "preshift_bits": 3,
    "hash": "identity",
    "minishard_bits": 1,
    "shard_bits": 4,
    "minishard_index_encoding": "gzip",
    "data_encoding": "gzip",
}
