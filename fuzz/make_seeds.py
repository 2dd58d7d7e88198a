"""Writes a few valid seed inputs per fuzz target into ``fuzz/corpus/<target>/``.

Each decoder input is four layout bytes (see ``fuzz_targets/harness.rs``: shape
``[a % 64 + 1, b % 64 + 1, c % 16 + 1]``, channel count and dtype picked by ``d``) followed by
a chunk that the peers' encoders wrote for exactly that layout, so the fuzzer starts from
well-formed data. Run with the project's venv: ``.venv/bin/python fuzz/make_seeds.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import blosc
import brotli
import compressed_segmentation as cseg
import numpy as np
import pyspng
import simplejpeg

CORPUS = Path(__file__).resolve().parent / "corpus"


def layout(shape: tuple[int, int, int], d: int) -> bytes:
    return bytes([shape[0] - 1, shape[1] - 1, shape[2] - 1, d])


def save(target: str, data: bytes) -> None:
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def volume(shape, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    base = np.linspace(0, top, int(np.prod(shape)) * channels) % (top + 1)
    noise = rng.integers(0, max(top // 16, 2), size=base.size)
    return np.clip(base + noise, 0, top).astype(dtype).reshape((*shape, channels), order="F")


def image(vol: np.ndarray) -> np.ndarray:
    """The chunk as CloudVolume lays it out in an image: width x, height y·z."""
    x, y, z, c = vol.shape
    return np.ascontiguousarray(vol.transpose(2, 1, 0, 3).reshape(z * y, x, c))


def main() -> None:
    shape = (8, 6, 3)
    # jpeg: channels 1 (d >> 4 == 0) and 3 (d >> 4 == 1), uint8.
    for d, channels in ((0x00, 1), (0x10, 3)):
        img = image(volume(shape, channels, "uint8", d))
        space = "GRAY" if channels == 1 else "RGB"
        sub = "Gray" if channels == 1 else "444"
        save("decode_jpeg", layout(shape, d) + simplejpeg.encode_jpeg(img, 85, space, sub))
    # png: channels [1, 2, 3, 4] by d >> 4, dtypes [u8, u16] by d & 15.
    for d, channels, dtype in ((0x00, 1, "uint8"), (0x11, 2, "uint16"), (0x30, 4, "uint8")):
        img = image(volume(shape, channels, dtype, d))
        save("decode_png", layout(shape, d) + pyspng.encode(img))
    # compressed_segmentation: channels [1, 2, 3], dtypes [u32, u64]; the harness uses block
    # size 8×8×8 (the encoding's default).
    for d, dtype in ((0x00, "uint32"), (0x01, "uint64")):
        labels = np.asfortranarray(
            np.random.default_rng(d).integers(0, 5, size=shape).astype(dtype) * 1000003
        )
        save(
            "decode_compressed_segmentation",
            layout(shape, d) + cseg.compress(labels, block_size=(8, 8, 8), order="F"),
        )
    # blosc: channels [1, 2], dtypes [u8, u16, u32, f64].
    for d, itemsize, cname in ((0x00, 1, "lz4"), (0x12, 4, "zstd"), (0x03, 8, "blosclz")):
        raw = volume(shape, 1 + (d >> 4), "uint8", d).tobytes() * itemsize
        save("decode_blosc", layout(shape, d) + blosc.compress(raw, itemsize, cname=cname))
    # brotli around raw: channels [1, 2], dtypes [u8, u32].
    for d, itemsize in ((0x00, 1), (0x11, 4)):
        raw = volume(shape, 1 + (d >> 4), "uint8", d).tobytes() * itemsize
        save("decode_brotli", layout(shape, d) + brotli.compress(raw, quality=5))
    # info files: a raw image layer and a jpeg + compressed_segmentation pair of scales.
    scale = {
        "key": "4_4_40", "size": [45, 29, 11], "voxel_offset": [3, -5, 7],
        "chunk_sizes": [[16, 11, 4]], "resolution": [4, 4, 40], "encoding": "raw",
    }  # fmt: skip
    infos = [
        {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [scale]},
        {
            "type": "segmentation", "data_type": "uint64", "num_channels": 1,
            "scales": [
                {**scale, "encoding": "compressed_segmentation",
                 "compressed_segmentation_block_size": [8, 8, 8]},
                {**scale, "key": "8_8_40", "resolution": [8, 8, 40], "encoding": "jpeg",
                 "jpeg_quality": 90},
            ],
        },
    ]  # fmt: skip
    for info in infos:
        save("parse_info", json.dumps(info).encode())


if __name__ == "__main__":
    main()
