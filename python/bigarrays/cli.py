"""The ``bigarrays`` command: inspect, create, copy, ingest, downsample, serve and look at
layers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import errors
from ._bigarray import BigArray
from ._core import __version__

EXIT_CODES = """\b
Exit codes: 0 success; 1 an error reading or writing data (store, decoding, info file),
or damage `fsck` found; 2 bad usage or an invalid argument; 3 layer not found; 4 layer
exists; 130 interrupted.
Errors are printed on stderr as "bigarrays: error: <message>"."""


def _numbers(n: Sequence[int] | int, kind: type = int) -> Callable[[click.Context, Any, Any], Any]:
    """A click callback parsing "a,b,c" into a tuple of ``n`` numbers (one of ``n`` counts)."""
    counts = (n,) if isinstance(n, int) else tuple(n)
    noun = "integers" if kind is int else "numbers"

    def parse(ctx: click.Context, param: Any, value: str | None) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            parts = tuple(kind(v) for v in value.split(","))
        except ValueError:
            parts = ()
        if len(parts) not in counts:
            want = " or ".join(str(c) for c in counts)
            raise click.BadParameter(f"expected {want} comma-separated {noun}, got {value!r}")
        return parts

    return parse


def _compression(ctx: click.Context, param: Any, value: str) -> str | None:
    return None if value == "none" else value


def _sharding(ctx: click.Context, param: Any, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"expected 'auto' or a JSON sharding spec: {e}") from None


COMPRESSIONS = click.Choice(["auto", "gzip", "zstd", "blosc", "none"])
#: libdeflate's gzip levels (a Zarr gzip codec takes 1 to 9, checked by ingest).
GZIP_LEVELS = click.IntRange(1, 12)


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
# The extension's own version (Cargo.toml's), as `bigarrays.__version__` is: no second source.
@click.version_option(version=__version__, prog_name="bigarrays")
def main() -> None:
    """Chunked arrays far larger than memory (Neuroglancer Precomputed and BigArrays.jl
    layouts) on local disk, S3, GCS and HTTP."""


@main.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the info file as JSON instead.")
def info(url: str, as_json: bool) -> None:
    """Summarise the layer at URL: type, shape, bounds, chunks, encoding, scales."""
    a = BigArray(url)
    if as_json:
        click.echo(json.dumps(a.info, indent=2))
        return
    if a.format == "zarr":
        _zarr_info(url, a)
        return
    meta = a.info
    click.echo(f"url          {a.url}")
    click.echo(f"format       {a.format}")
    click.echo(f"type         {meta.get('type', 'image')}, {a.dtype}, {a.num_channels} channel(s)")
    if "scales" not in meta:  # one volume, described by its handle
        lo = [b.start for b in a.bounds]
        hi = [b.stop for b in a.bounds]
        size = a.shape if a.format == "zarr" else a.shape[:3]
        click.echo(
            f"mip {a.mip:<8} size {_x(size)}, bounds {_x(lo)} .. {_x(hi)}, chunks "
            f"{_x(a.chunks)}, {a.encoding}"
        )
        return
    for mip, scale in enumerate(meta["scales"]):
        lo = scale.get("voxel_offset", [0, 0, 0])
        hi = [o + s for o, s in zip(lo, scale["size"], strict=True)]
        shard = scale.get("sharding")
        click.echo(
            f"mip {mip:<8} key {scale['key']!r}: size {_x(scale['size'])}, bounds "
            f"{_x(lo)} .. {_x(hi)}, resolution {_x(scale['resolution'])} nm, chunks "
            f"{_x(scale['chunk_sizes'][0])}, {scale['encoding']}"
            + (f", sharded ({shard.get('hash', '?')} hash)" if shard else "")
        )


def _zarr_info(url: str, a: BigArray) -> None:
    """A Zarr array's (or OME-Zarr image's) metadata: shape and axes, chunks and shards,
    codecs, fill value, and each level of an image."""
    meta = a.info
    names = [ax["name"] or "?" for ax in a.axes]
    inner = a.read_chunks
    click.echo(f"url          {a.url}")
    click.echo(f"format       zarr v{meta.get('zarr_format', '?')}, {a.dtype}, "
               f"fill value {a.fill_value!r}")  # fmt: skip
    click.echo(f"shape        {_x(a.shape)} ({', '.join(names)})")
    if inner != a.chunks:
        click.echo(f"chunks       {_x(inner)} in shards of {_x(a.chunks)}")
    else:
        click.echo(f"chunks       {_x(a.chunks)}")
    click.echo(f"codecs       {_codecs_text(meta)}")
    found = a.ome_image()
    if found is None:
        return
    attributes, _ = found
    ome = attributes.get("ome", {})
    multiscale = ome.get("multiscales", attributes.get("multiscales", [{}]))[0]
    version = ome.get("version", multiscale.get("version", "?"))
    axes = []
    for ax in multiscale.get("axes", []):
        detail = ", ".join(str(ax[k]) for k in ("type", "unit") if ax.get(k))
        axes.append(f"{ax['name']} ({detail})" if detail else ax["name"])
    click.echo(f"axes         {', '.join(axes)}")
    datasets = multiscale.get("datasets", [])
    click.echo(f"image        OME-Zarr {version}, {len(datasets)} level(s)")
    for mip, dataset in enumerate(datasets):
        level = a if mip == a.mip else BigArray(url, mip=mip)
        scale = [ax["scale"] for ax in level.axes]
        translation = [ax["translation"] for ax in level.axes]
        click.echo(
            f"mip {mip:<8} path {dataset['path']!r}: shape {_x(level.shape)}, scale "
            f"{_x(scale)}, translation {_x(translation)}"
        )


def _codecs_text(meta: dict[str, Any]) -> str:
    """A codec chain in one line: ``sharding_indexed(bytes+zstd)``, v2's compressor."""

    def chain(codecs: list[dict[str, Any]]) -> str:
        parts = []
        for codec in codecs:
            config = codec.get("configuration") or {}
            if codec["name"] == "sharding_indexed":
                parts.append(f"sharding_indexed({chain(config.get('codecs', []))})")
            elif "level" in config:
                parts.append(f"{codec['name']} {config['level']}")
            else:
                parts.append(codec["name"])
        return "+".join(parts)

    if "codecs" in meta:
        return chain(meta["codecs"])
    compressor = meta.get("compressor")
    text = f"order {meta.get('order', 'C')}, " + (
        "no compressor" if compressor is None else f"compressor {compressor.get('id')}"
    )
    return text


def _x(values: Sequence[Any]) -> str:
    return "×".join(str(v) for v in values)


@main.command()
@click.argument("url")
@click.option("--shape", required=True, callback=_numbers((3, 4)), help="x,y,z[,c]")
@click.option("--dtype", required=True, help="uint8, uint16, uint32, uint64, float32, ...")
@click.option("--chunks", default="64,64,64", callback=_numbers(3), show_default=True)
@click.option("--voxel-offset", default="0,0,0", callback=_numbers(3))
@click.option("--resolution", default="1,1,1", callback=_numbers(3, float), help="nm per voxel")
@click.option("--encoding", default="raw", show_default=True)
@click.option("--compression", type=COMPRESSIONS, default="auto", callback=_compression)
@click.option("--layer-type", type=click.Choice(["image", "segmentation"]), default="image")
@click.option("--sharding", callback=_sharding, help="'auto' or a JSON sharding spec")
@click.option("--overwrite", is_flag=True, help="Replace an existing layer with an empty one.")
def create(url: str, **options: Any) -> None:
    """Create an empty layer at URL (reads as zeros until written)."""
    try:
        a = BigArray.create(url, **options)
    except errors.LayerExistsError:
        # The engine's message speaks Python (overwrite=True); here the flag is the way out.
        raise errors.LayerExistsError(
            f"{url}: a layer already exists here (pass --overwrite to replace it)"
        ) from None
    click.echo(repr(a))


@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("--bbox", callback=_numbers(6), help="x0,y0,z0,x1,y1,z1 (absolute)")
@click.option("--mip", default=0, show_default=True, help="Source scale to copy.")
@click.option("--encoding", help="Destination encoding (default: the source's).")
@click.option("--compression", type=COMPRESSIONS, default="auto", callback=_compression)
@click.option(
    "--compress-level",
    type=GZIP_LEVELS,
    help="gzip level of a Precomputed DST, 1 (fastest) to 12 (smallest); default 6.",
)
@click.option("--chunks", callback=_numbers(3), help="Destination chunk size.")
@click.option("--sharding", callback=_sharding, help="'auto' or a JSON sharding spec")
@click.option(
    "--format", type=click.Choice(["precomputed", "zarr", "h5s"]), help="Layout of a new DST."
)
@click.option("--ome", is_flag=True, help="With --format zarr: an OME-Zarr image.")
@click.option("--jobs", type=int, help="Blocks copied at once (default: CPU count).")
@click.option("--resume", is_flag=True, help="Skip chunks already present in DST.")
@click.option(
    "--verify", is_flag=True, help="With --resume: decode DST's chunks, recopy those that fail."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing DST with an empty one first.")
@click.option("--progress/--no-progress", default=True, help="Progress bar (terminal only).")
def cp(src: str, dst: str, bbox: tuple[int, ...] | None, mip: int, **options: Any) -> None:
    """Copy (and transcode) the layer SRC into DST, between any two backends."""
    box = None if bbox is None else (bbox[:3], bbox[3:])
    out = BigArray(src, mip=mip).copy_to(dst, bbox=box, **options)
    click.echo(f"copied to {out.url}", err=True)


@main.command()
@click.argument("url")
@click.option("--factor", default="2,2,1", callback=_numbers(3), show_default=True)
@click.option("--mips", default=1, show_default=True, help="Levels to add.")
@click.option("--mip", default=0, show_default=True, help="Scale to start from.")
@click.option(
    "--method",
    type=click.Choice(["average", "mode", "min", "max", "nearest"]),
    help="Default: mode for segmentation, average for images.",
)
@click.option("--jobs", type=int, help="Blocks computed at once (default: CPU count).")
@click.option(
    "--resume", is_flag=True, help="Finish an interrupted run: skip blocks already computed."
)
@click.option("--progress/--no-progress", default=True, help="Progress bar (terminal only).")
def downsample(url: str, mip: int, **options: Any) -> None:
    """Add lower-resolution scales to the layer at URL and compute them."""
    for level in BigArray(url, mip=mip).downsample(**options):
        click.echo(f"mip {level.mip}: {_x(level.shape)} at {_x(level.resolution)} nm")


def _mips(ctx: click.Context, param: Any, value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number of levels, got {value!r}") from None


def _shards(ctx: click.Context, param: Any, value: str) -> Any:
    words = {"auto": "auto", "on": True, "off": False}
    if value in words:
        return words[value]
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"expected auto, on, off or a JSON sharding spec: {e}") from None


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="SRC... DST")
@click.option("--format", type=click.Choice(["precomputed", "zarr"]), help="Default: precomputed.")
@click.option("--chunks", callback=_numbers(3), help="x,y,z (default by dtype: 128,128,32 ...).")
@click.option(
    "--shards",
    "sharding",
    default="auto",
    show_default=True,
    callback=_shards,
    help="auto (sharded above 1 GiB), on, off, or a JSON sharding spec.",
)
@click.option(
    "--encoding", help="Default: raw (gzip) for images, compressed_segmentation for labels."
)
@click.option("--compression", type=COMPRESSIONS, default="auto", callback=_compression)
@click.option(
    "--compress-level",
    type=GZIP_LEVELS,
    help="gzip level, 1 (fastest) to 12 (smallest; Zarr: 9); default 1 (Zarr: 5).",
)
@click.option(
    "--resolution", callback=_numbers(3, float), help="nm per voxel (default: OME's, else 1,1,1)."
)
@click.option("--offset", default="0,0,0", callback=_numbers(3), help="Voxel offset.")
@click.option("--mips", default="auto", show_default=True, callback=_mips,
              help="Pyramid levels, or auto (until one chunk covers x and y).")  # fmt: skip
@click.option("--factor", default="2,2,1", callback=_numbers(3), show_default=True)
@click.option("--layer-type", type=click.Choice(["image", "segmentation"]),
              help="Default: segmentation for uint32/uint64, image otherwise.")  # fmt: skip
@click.option("--method", type=click.Choice(["average", "mode", "min", "max", "nearest"]),
              help="Pyramid reduction (default: mode for labels, average for images).")  # fmt: skip
@click.option("--axes", type=click.Choice(["zyx", "xyz"]), default="zyx", show_default=True,
              help="Axis order of .npy and HDF5 sources.")  # fmt: skip
@click.option("--jobs", type=int, help="Threads reading slices (default: CPU count).")
@click.option("--resume", is_flag=True, help="Finish an interrupted ingest into DST.")
@click.option("--overwrite", is_flag=True, help="Replace an existing layer at DST.")
@click.option("--progress/--quiet", default=True, help="Progress bars (terminal only).")
def ingest(paths: tuple[str, ...], **options: Any) -> None:
    """Write image stacks into a new pyramided layer at DST and print how to view it.

    SRC: a directory or glob of 2D slices (TIFF, PNG, JPEG; natural order, z2 before z10),
    slice files in z order, a multi-page TIFF (BigTIFF, OME-TIFF), a .npy file, an HDF5
    dataset (file.h5:/path), or an existing layer (copied and pyramided). A slice's rows
    are y and its columns x; slices are z.
    """
    from ._ingest import summary, timed

    if len(paths) < 2:
        raise click.UsageError("give one or more SRC and then DST")
    *sources, dst = paths
    _, seconds = timed(sources, dst, **options)
    click.echo(summary(dst, seconds))


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--port", default=8000, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
def serve(directory: str, port: int, host: str) -> None:
    """Serve DIRECTORY's layers (Precomputed, Zarr, OME-Zarr) over HTTP (CORS, gzip,
    ranges) for neuroglancer."""
    from ._serve import layer_sources, make_server

    server = make_server(directory, port, host)
    base = f"http://{host}:{server.server_address[1]}"
    click.echo(f"serving {Path(directory).resolve()} at {base}")
    for scheme, rel in layer_sources(directory) or [("precomputed", "")]:
        click.echo(f"neuroglancer source: {scheme}://{base}/{rel}".rstrip("/"))
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


@main.command()
@click.argument("url")
@click.option("--mip", default=0, show_default=True)
@click.option(
    "--serve",
    "served_at",
    default=None,
    help="The http(s) URL at which the layer is served already (by `bigarrays serve`).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the link in a web browser.")
@click.option(
    "--viewer",
    default="https://neuroglancer-demo.appspot.com",
    show_default=True,
    help="The neuroglancer deployment the link opens.",
)
@click.option("--port", default=0, show_default=True, help="Local layers: 0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
def view(
    url: str,
    mip: int,
    served_at: str | None,
    open_browser: bool,
    viewer: str,
    port: int,
    host: str,
) -> None:
    """Print a neuroglancer link showing the layer at URL (and open it with --open).

    Bucket and HTTP layers are read by neuroglancer directly. A local layer is served over
    HTTP as `bigarrays serve` does (its directory, or an OME-Zarr level's image) until
    interrupted, unless --serve says where it is served already."""
    import webbrowser
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    from ._neuroglancer import neuroglancer_url, shown_location, source_driver

    a = BigArray(url, mip=mip)
    source_driver(a)  # refuses what neuroglancer cannot read before serving anything
    location = urlsplit(shown_location(a))
    server = None
    if served_at is None and location.scheme == "file":
        from ._serve import make_server

        directory = url2pathname(location.path)
        server = make_server(directory, port, host)
        served_at = f"http://{host}:{server.server_address[1]}"
    link = neuroglancer_url(a, serve=served_at, viewer=viewer)
    click.echo(link)
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(link)
    if server is None:
        return
    click.echo(f"serving {directory} at {served_at} until interrupted (Ctrl-C)", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@main.command(name="slice")
@click.argument("url")
@click.option("--z", "z", type=int, required=True, help="Absolute z of the plane.")
@click.option("--mip", default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def slice_(url: str, z: int, mip: int, output: str) -> None:
    """Write the plane z of the layer at URL as a PNG (x across, y down)."""
    from ._slice import png_bytes, render

    a = BigArray(url, mip=mip)
    x, y, zs = a.bounds
    if not zs.start <= z < zs.stop:
        raise errors.InvalidArgumentError(
            f"z={z} is outside the layer's z range {zs.start}..{zs.stop}"
        )
    plane = np.asarray(a[x, y, z])
    segmentation = a.info.get("type") == "segmentation"
    Path(output).write_bytes(png_bytes(render(plane, segmentation)))
    click.echo(f"wrote {output} ({plane.shape[0]}×{plane.shape[1]})", err=True)


@main.command()
@click.argument("url")
@click.option(
    "--repair",
    is_flag=True,
    help="Remove temporary files of killed writers older than --min-age (nothing else).",
)
@click.option(
    "--min-age",
    default=300.0,  # _fsck.TEMP_MIN_AGE_S; a literal so that --help needs no import
    show_default=True,
    help="Seconds a temporary file must be old before --repair removes it.",
)
@click.option("--jobs", type=int, help="Batches of chunks decoded at once (default: CPU count).")
@click.option("--progress/--no-progress", default=True, help="Progress bar (terminal only).")
def fsck(url: str, repair: bool, min_age: float, jobs: int | None, progress: bool) -> None:
    """Check the layer at URL: metadata, every stored chunk (decoded), chunk keys outside
    the bounds or off the grid, shard indexes and orphaned chunks, temporary files of killed
    writers. One line per problem, then a summary; exits 1 when anything is damaged."""
    from ._fsck import fsck as check

    report = check(url, repair=repair, min_age=min_age, jobs=jobs, progress=progress)
    for problem in report.problems:
        click.echo(str(problem))
    for key in report.repaired:
        click.echo(f"removed: {key}")
    click.echo(report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


def _exit_code(e: BaseException) -> int:
    if isinstance(e, (errors.InvalidArgumentError, errors.OutOfBoundsError)):
        return 2
    if isinstance(e, errors.LayerNotFoundError):
        return 3
    if isinstance(e, errors.LayerExistsError):
        return 4
    return 1


def run(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (for tests and ``python -m bigarrays``)."""
    try:
        # Without standalone mode click hands back an Exit's code (fsck's 1) as the result.
        code = main.main(args=list(argv) if argv is not None else None, standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except click.exceptions.Abort:
        click.echo("bigarrays: interrupted", err=True)
        return 130
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("bigarrays: interrupted", err=True)
        return 130
    except (errors.BigArrayError, OSError, NotImplementedError) as e:
        click.echo(f"bigarrays: error: {e}", err=True)
        return _exit_code(e)
    return 0


def entry_point() -> None:
    sys.exit(run())
