"""A static HTTP server for local layers, as neuroglancer and the HTTP readers expect them.

- CORS open to any origin (neuroglancer runs on another origin), preflight answered.
- A request for ``key`` that exists only as ``key.gz`` / ``key.br`` / ``key.zstd`` (how
  CloudVolume stores compressed chunks) is answered with those bytes and the matching
  ``Content-Encoding``, so clients see the plain key.
- Single byte ranges (``Range: bytes=a-b``, ``a-``, ``-n``) get 206 replies, which sharded
  layers need; other range forms get the whole file.
- Nothing outside the served directory is reachable.
- Zarr arrays and OME-Zarr images are files as they are stored (``zarr.json``, ``.zarray``,
  ``.zgroup``, ``.zattrs``, chunk keys such as ``c/0/0/0`` or ``0.0.0``), so neuroglancer's
  ``zarr://`` and ``zarr3://`` sources read them as they would from a bucket; metadata
  files are served as JSON.
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Stored suffix → Content-Encoding, in the order a missing key is looked for.
ENCODED_SUFFIXES = ((".gz", "gzip"), (".br", "br"), (".zstd", "zstd"))
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Metadata files served as JSON: Precomputed's ``info``, Zarr v2's (v3's end in .json).
_JSON_NAMES = frozenset({"info", ".zarray", ".zgroup", ".zattrs"})
#: The metadata file of a Zarr node and the neuroglancer data source scheme that reads it.
_ZARR_FILES = (("zarr.json", "zarr3"), (".zarray", "zarr"), (".zgroup", "zarr"))


class LayerRequestHandler(SimpleHTTPRequestHandler):
    """Serves files under ``directory`` (see the module docstring for what it adds)."""

    server_version = "bigarrays-serve"
    protocol_version = "HTTP/1.1"

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Encoding")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # noqa: N802 (the http.server naming convention)
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, Content-Type")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._reply(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(body=False)

    def _reply(self, body: bool) -> None:
        found = self._locate()
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        path, encoding = found
        size = path.stat().st_size
        start, stop, status = 0, size, HTTPStatus.OK
        wanted = self.headers.get("Range")
        match = _RANGE.match(wanted.strip()) if wanted else None
        if match and (match[1] or match[2]):
            if match[1]:
                start = int(match[1])
                stop = min(int(match[2]) + 1, size) if match[2] else size
            else:  # a suffix: the last n bytes
                start = max(0, size - int(match[2]))
            if start >= size or start >= stop:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        json_file = path.name in _JSON_NAMES or path.suffix == ".json"
        kind = "application/json" if json_file else "application/octet-stream"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(path.stat().st_mtime, usegmt=True))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        if body:
            with path.open("rb") as f:
                f.seek(start)
                shutil.copyfileobj(_Limited(f, stop - start), self.wfile)

    def _locate(self) -> tuple[Path, str | None] | None:
        """The file behind the request path and its Content-Encoding, if inside the root."""
        root = Path(self.directory).resolve()
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        candidate = (root / relative).resolve()
        if candidate != root and root not in candidate.parents:
            return None
        if candidate.is_file():
            return candidate, None
        for suffix, encoding in ENCODED_SUFFIXES:
            encoded = candidate.with_name(candidate.name + suffix)
            if encoded.is_file():
                return encoded, encoding
        return None

    def log_message(self, format: str, *args: object) -> None:
        if os.environ.get("BIGARRAYS_SERVE_LOG"):
            super().log_message(format, *args)


class _Limited:
    """Reads at most ``n`` bytes from a file (for ``shutil.copyfileobj``)."""

    def __init__(self, f, n: int) -> None:
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data


def make_server(directory: str | os.PathLike, port: int = 0, host: str = "127.0.0.1"):
    """A threading HTTP server for ``directory`` (port 0 picks a free one)."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")

    def handler(*args, **kwargs):
        return LayerRequestHandler(*args, directory=str(root), **kwargs)

    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        # The bare "[Errno 98] Address already in use" names neither the port nor a way out.
        raise OSError(
            e.errno,
            f"cannot serve on {host}:{port}: {e.strerror or e} "
            "(pick another --port, or --port 0 for a free one)",
        ) from e
    server.daemon_threads = True
    return server


def layer_paths(directory: str | os.PathLike) -> list[str]:
    """Layers (dirs with an ``info``) at most two levels down: '' for the root itself.

    Deeper layers are not searched for: a layer directory can hold millions of chunks.
    """
    root = Path(directory).resolve()
    found = []
    for pattern in ("info", "*/info", "*/*/info"):
        for info in sorted(root.glob(pattern)):
            if info.is_file():
                rel = info.parent.relative_to(root).as_posix()
                found.append("" if rel == "." else rel)
    return found


def layer_sources(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """Neuroglancer data sources at most two levels down, as ``(scheme, path)`` with ``''``
    for the root: Precomputed layers (an ``info``; ``precomputed``), Zarr v3 arrays and
    groups (``zarr3``) and v2 ones (``zarr``). The arrays inside a Zarr group found (an
    OME-Zarr image's levels) are not listed apart.
    """
    root = Path(directory).resolve()
    found = [("precomputed", rel) for rel in layer_paths(root)]
    zarr: dict[str, str] = {}
    for depth in ("", "*/", "*/*/"):
        for name, scheme in _ZARR_FILES:
            for meta in sorted(root.glob(depth + name)):
                rel = meta.parent.relative_to(root).as_posix()
                rel = "" if rel == "." else rel
                inside = any(rel == p or rel.startswith(p + "/") or p == "" for p in zarr)
                if meta.is_file() and not inside:
                    zarr[rel] = scheme
    found += [(scheme, rel) for rel, scheme in sorted(zarr.items())]
    return found
