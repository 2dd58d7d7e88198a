"""One plane of a layer as a PNG picture: grey levels for images, colours for labels."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def render(plane: np.ndarray, segmentation: bool) -> np.ndarray:
    """An (height=y, width=x) uint8 grey or (y, x, 3) RGB picture of an (x, y[, c]) plane.

    Images: uint8 as is; other types stretched from their min to their max (NaN → 0);
    three channels become RGB, otherwise the first channel is shown. Segmentation: each
    label gets a stable pseudo-random colour (the same in every run), 0 is black.
    """
    if plane.ndim == 3 and not (plane.shape[2] == 3 and not segmentation):
        plane = plane[:, :, 0]
    picture = np.swapaxes(plane, 0, 1)  # rows are y, columns x
    if segmentation:
        return label_colours(picture)
    if picture.dtype == np.uint8:
        return np.ascontiguousarray(picture)
    values = np.nan_to_num(picture.astype(np.float64))
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def label_colours(labels: np.ndarray) -> np.ndarray:
    """RGB colours from a 64-bit mix (splitmix64's finaliser) of each label; 0 is black."""
    x = labels.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    rgb = np.stack([(x >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], axis=-1)
    rgb = rgb.astype(np.uint8)
    rgb[labels == 0] = 0
    return rgb


def png_bytes(picture: np.ndarray) -> bytes:
    """A PNG file of an 8-bit grey (h, w) or RGB (h, w, 3) picture.

    Written here rather than with an imaging library: the format's minimum (IHDR, one IDAT,
    IEND; filter 0 on every row) is a few lines, and it spares users a dependency.
    """
    height, width = picture.shape[:2]
    colour = 2 if picture.ndim == 3 else 0
    rows = np.ascontiguousarray(picture, np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
