"""Regenerates the Zarr metadata fixtures the Rust test `format::zarr::interop_tests` parses.

Each case is a folder holding the metadata files a peer wrote (zarr-python 3, TensorStore,
ome-zarr-py) and `expected.json`: what the peer itself reports about the node, which the Rust
parse must agree with. Run from the repository root:

    .venv/bin/python tests/data/zarr_metadata/generate.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numcodecs
import numpy as np
import tensorstore as ts
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

HERE = Path(__file__).parent
METADATA_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup")
# Our names for NumPy's types (the v3 names; NumPy's own str(dtype) says "bool" too).
DTYPES = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]  # fmt: skip


def fill_bytes(dtype: np.dtype, fill) -> str:
    """The fill value as little-endian bytes in hex (v2 None reads as zeros)."""
    le = dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype
    if fill is None:
        return bytes(dtype.itemsize).hex()
    return np.array(fill, dtype=dtype).astype(le).tobytes().hex()


def v2_codec_names(meta: dict) -> list[str]:
    """The v3 chain our parser makes of v2 metadata: transpose, bytes, filters, compressor."""
    names = ["transpose"] if meta["order"] == "F" else []
    names.append("bytes")
    names += [f["id"] for f in meta.get("filters") or []]
    if meta.get("compressor"):
        names.append(meta["compressor"]["id"])
    return names


def save(case: str, node: Path, expected: dict) -> None:
    out = HERE / case
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for name in METADATA_FILES:
        if (node / name).exists():
            data = (node / name).read_bytes()
            assert len(data) < 4096, (case, name, len(data))
            (out / name).write_bytes(data)
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def expect_array(path: Path) -> dict:
    """What zarr-python reports about the array at `path`."""
    a = zarr.open_array(str(path), mode="r")
    dtype = np.dtype(a.dtype)
    meta_file = path / ("zarr.json" if a.metadata.zarr_format == 3 else ".zarray")
    meta = json.loads(meta_file.read_text())
    if a.metadata.zarr_format == 3:
        codecs = [c["name"] if isinstance(c, dict) else c for c in meta["codecs"]]
        endian = (
            "big"
            if any(
                isinstance(c, dict) and c.get("configuration", {}).get("endian") == "big"
                for c in meta["codecs"]
            )
            else "little"
        )
    else:
        codecs = v2_codec_names(meta)
        endian = "big" if dtype.byteorder == ">" else "little"
    le = dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype
    return {
        "node": "array",
        "zarr_format": a.metadata.zarr_format,
        "shape": list(a.shape),
        "chunk_shape": list(a.shards or a.chunks),
        "dtype": str(le) if le.kind != "b" else "bool",
        "endian": endian,
        "fill_value_le_hex": fill_bytes(dtype, a.metadata.fill_value),
        "codecs": codecs,
        "attributes": dict(a.attrs),
    }


def zarr_case(root: Path, case: str, **kwargs) -> None:
    path = root / case
    zarr.create_array(str(path), **kwargs)
    save(case, path, expect_array(path))


def ts_case(root: Path, case: str, spec: dict) -> None:
    path = root / case
    spec = {**spec, "kvstore": {"driver": "file", "path": str(path)}, "create": True}
    ts.open(spec).result()
    save(case, path, expect_array(path))


def main() -> None:
    for old in HERE.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in DTYPES:
            for fmt in (2, 3):
                zarr_case(
                    root, f"v{fmt}_{d}", shape=(7, 9), chunks=(4, 5), dtype=d, zarr_format=fmt
                )
        for fmt in (2, 3):
            v = f"v{fmt}"
            zarr_case(
                root,
                f"{v}_f32_nan",
                shape=(5,),
                chunks=(2,),
                dtype="float32",
                fill_value=np.nan,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_f64_neginf",
                shape=(5,),
                chunks=(2,),
                dtype="float64",
                fill_value=-np.inf,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_f16_inf",
                shape=(5,),
                chunks=(2,),
                dtype="float16",
                fill_value=np.inf,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_f32_1p5",
                shape=(5,),
                chunks=(2,),
                dtype="float32",
                fill_value=1.5,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_i16_minus7",
                shape=(5,),
                chunks=(2,),
                dtype="int16",
                fill_value=-7,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_u64_max",
                shape=(5,),
                chunks=(2,),
                dtype="uint64",
                fill_value=2**64 - 1,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_i64_min",
                shape=(5,),
                chunks=(2,),
                dtype="int64",
                fill_value=-(2**63),
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_c128_fill",
                shape=(5,),
                chunks=(2,),
                dtype="complex128",
                fill_value=1 + 2j,
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_c64_nan",
                shape=(5,),
                chunks=(2,),
                dtype="complex64",
                fill_value=complex(np.nan, -np.inf),
                zarr_format=fmt,
            )
            zarr_case(
                root,
                f"{v}_bool_true",
                shape=(5,),
                chunks=(2,),
                dtype="bool",
                fill_value=True,
                zarr_format=fmt,
            )
            zarr_case(
                root, f"{v}_0d", shape=(), chunks=(), dtype="uint8", fill_value=3, zarr_format=fmt
            )
            zarr_case(
                root,
                f"{v}_5d",
                shape=(2, 3, 4, 5, 6),
                chunks=(1, 2, 3, 4, 5),
                dtype="uint16",
                zarr_format=fmt,
                attributes={"note": "five"},
            )
        # v2: orders, byte orders, compressors, filters, separators, no fill value.
        zarr_case(
            root,
            "v2_order_f_big",
            shape=(6, 8, 10),
            chunks=(3, 4, 5),
            dtype=">i4",
            order="F",
            zarr_format=2,
        )
        zarr_case(
            root,
            "v2_fill_none",
            shape=(6,),
            chunks=(3,),
            dtype="<f8",
            fill_value=None,
            zarr_format=2,
        )
        zarr_case(
            root,
            "v2_no_compressor",
            shape=(6,),
            chunks=(3,),
            dtype="<u2",
            compressors=None,
            zarr_format=2,
        )
        for cid, codec in {
            "zlib": numcodecs.Zlib(level=3),
            "gzip": numcodecs.GZip(level=6),
            "zstd": numcodecs.Zstd(level=5, checksum=True),
            "lz4": numcodecs.LZ4(acceleration=2),
            "blosc_bitshuffle": numcodecs.Blosc(
                cname="zstd", clevel=4, shuffle=numcodecs.Blosc.BITSHUFFLE
            ),
            "blosc_auto": numcodecs.Blosc(
                cname="lz4", clevel=5, shuffle=numcodecs.Blosc.AUTOSHUFFLE, blocksize=256
            ),
        }.items():
            zarr_case(
                root,
                f"v2_{cid}",
                shape=(6, 7),
                chunks=(3, 4),
                dtype="<u2",
                compressors=codec,
                zarr_format=2,
            )
        zarr_case(
            root,
            "v2_filter_zlib",
            shape=(6,),
            chunks=(3,),
            dtype="<u2",
            filters=[numcodecs.Zlib(level=1)],
            compressors=numcodecs.GZip(level=1),
            zarr_format=2,
        )
        zarr_case(
            root,
            "v2_slash",
            shape=(6, 7),
            chunks=(3, 4),
            dtype="|u1",
            chunk_key_encoding={"name": "v2", "separator": "/"},
            zarr_format=2,
        )
        # v3: codecs, sharding, key encodings, dimension names.
        zarr_case(
            root,
            "v3_big_gzip",
            shape=(6, 7),
            chunks=(3, 4),
            dtype="uint16",
            serializer=BytesCodec(endian="big"),
            compressors=GzipCodec(level=4),
        )
        zarr_case(
            root,
            "v3_transpose_blosc_crc",
            shape=(6, 7, 8),
            chunks=(3, 4, 5),
            dtype="float32",
            filters=[TransposeCodec(order=(2, 1, 0))],
            compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec()],
        )
        zarr_case(
            root,
            "v3_no_compressor",
            shape=(6,),
            chunks=(3,),
            dtype="int32",
            compressors=None,
            dimension_names=["x"],
        )
        zarr_case(
            root,
            "v3_sharded",
            shape=(64, 64, 64),
            chunks=(8, 8, 8),
            shards=(32, 32, 32),
            dtype="uint16",
            compressors=ZstdCodec(level=0),
            dimension_names=["z", "y", "x"],
        )
        zarr_case(
            root,
            "v3_sharded_index_start",
            shape=(20, 20),
            chunks=(10, 10),
            dtype="uint8",
            serializer=ShardingCodec(
                chunk_shape=(5, 5),
                codecs=[BytesCodec(), GzipCodec(level=1)],
                index_location="start",
            ),
        )
        zarr_case(
            root,
            "v3_key_dot",
            shape=(6, 7),
            chunks=(3, 4),
            dtype="int8",
            chunk_key_encoding={"name": "default", "separator": "."},
        )
        zarr_case(
            root,
            "v3_key_v2",
            shape=(6, 7),
            chunks=(3, 4),
            dtype="int8",
            chunk_key_encoding={"name": "v2", "separator": "."},
        )
        # TensorStore's zarr and zarr3 drivers.
        ts_case(
            root,
            "ts_zarr2",
            {
                "driver": "zarr",
                "metadata": {
                    "shape": [30, 40],
                    "chunks": [8, 9],
                    "dtype": "<f4",
                    "fill_value": 2.5,
                    "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
                },
            },
        )
        ts_case(
            root,
            "ts_zarr2_order_f",
            {
                "driver": "zarr",
                "metadata": {
                    "shape": [30, 40],
                    "chunks": [8, 9],
                    "dtype": ">u2",
                    "order": "F",
                    "compressor": {"id": "zlib", "level": 2},
                },
            },
        )
        ts_case(
            root,
            "ts_zarr3",
            {
                "driver": "zarr3",
                "metadata": {
                    "shape": [30, 40],
                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 9]}},
                    "data_type": "int16",
                    "fill_value": -3,
                    "codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "zstd", "configuration": {"level": 1}},
                    ],
                },
            },
        )
        ts_case(
            root,
            "ts_zarr3_sharded",
            {
                "driver": "zarr3",
                "metadata": {
                    "shape": [64, 64],
                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [32, 32]}},
                    "data_type": "float64",
                    "fill_value": "NaN",
                    "codecs": [
                        {
                            "name": "sharding_indexed",
                            "configuration": {
                                "chunk_shape": [8, 8],
                                "codecs": [
                                    {"name": "bytes", "configuration": {"endian": "little"}},
                                    {"name": "gzip", "configuration": {"level": 3}},
                                ],
                                "index_codecs": [
                                    {"name": "bytes", "configuration": {"endian": "little"}},
                                    {"name": "crc32c"},
                                ],
                                "index_location": "end",
                            },
                        }
                    ],
                    "dimension_names": ["y", "x"],
                },
            },
        )
        groups_and_ome(root)


def groups_and_ome(root: Path) -> None:
    for fmt in (2, 3):
        g = zarr.open_group(str(root / f"group_v{fmt}"), mode="w", zarr_format=fmt)
        g.attrs.update({"description": "a group", "n": [1, 2]})
        save(
            f"group_v{fmt}",
            root / f"group_v{fmt}",
            {"node": "group", "zarr_format": fmt, "attributes": dict(g.attrs)},
        )

    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    image = np.zeros((2, 16, 32, 32), dtype="uint8")
    for fmt, case in ((FormatV04(), "ome_v04"), (FormatV05(), "ome_v05")):
        path = root / case
        g = zarr.open_group(str(path), mode="w", zarr_format=2 if case == "ome_v04" else 3)
        write_image(image, g, scale_factors=[2, 4], axes="czyx", fmt=fmt)
        save(case, path, expect_ome(path))
        save(f"{case}_level0", path / "s0", expect_array(path / "s0"))

    # NGFF 0.5 written by zarr-python alone: attributes under "ome", with units and a
    # half-voxel translation on the coarser level.
    path = root / "ome_v05_zarr_python"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    s0 = [{"type": "scale", "scale": [0.5, 0.25, 0.25]}]
    s1 = [
        {"type": "scale", "scale": [1.0, 0.5, 0.5]},
        {"type": "translation", "translation": [0.25, 0.125, 0.125]},
    ]
    datasets = [
        {"path": "s0", "coordinateTransformations": s0},
        {"path": "s1", "coordinateTransformations": s1},
    ]
    g.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"name": "img", "axes": axes, "datasets": datasets}],
    }
    save("ome_v05_zarr_python", path, expect_ome(path))


def expect_ome(path: Path) -> dict:
    """The multiscales as the group's attributes hold them, read by zarr-python."""
    g = zarr.open_group(str(path), mode="r")
    attrs = dict(g.attrs)
    ome = attrs.get("ome")
    version = ome["version"] if ome else attrs["multiscales"][0]["version"]
    ms = (ome or attrs)["multiscales"][0]
    transforms = [d["coordinateTransformations"] for d in ms["datasets"]]
    return {
        "node": "group",
        "zarr_format": g.metadata.zarr_format,
        "attributes": attrs,
        "ome": {
            "version": version,
            "axes": [a["name"] for a in ms["axes"]],
            "units": [a.get("unit") for a in ms["axes"]],
            "paths": [d["path"] for d in ms["datasets"]],
            "scales": [t[0]["scale"] for t in transforms],
            "translations": [t[1]["translation"] if len(t) > 1 else None for t in transforms],
        },
    }


if __name__ == "__main__":
    main()
