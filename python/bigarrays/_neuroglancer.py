"""Neuroglancer links: a viewer state showing one layer, encoded in a URL's fragment.

The state has one layer (``image``, or ``segmentation`` for labels: see
:func:`~bigarrays._layer_type.layer_type`) whose source is the layer's location in the form
neuroglancer's data sources read (``precomputed://gs://...``, ``zarr2://s3://...``,
``zarr3://https://...``), the layer's spatial dimensions in metres from its resolution
(OME-Zarr: its axes' scales and units), and the position at the layer's centre. Local
layers are not reachable by a browser: they are shown through ``bigarrays serve``, whose
URL for the layer is given as ``serve``.
"""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ._layer_type import layer_type
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._bigarray import BigArray

#: The public neuroglancer deployment links open in unless told otherwise.
DEFAULT_VIEWER = "https://neuroglancer-demo.appspot.com"
#: Schemes a browser-side neuroglancer reads directly (it has its own GCS and S3 clients).
_REMOTE_SCHEMES = frozenset({"gs", "s3", "http", "https"})
#: Metres per unit, for the units OME-Zarr axes use and neuroglancer's dimensions take.
_METRES = {
    "angstrom": 1e-10,
    "picometer": 1e-12,
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
}
#: Characters neuroglancer itself leaves unescaped in a state fragment (its to_url).
_SAFE = "~@#$&()*!+=:;,.?/'"


def shown_location(a: BigArray) -> str:
    """The URL neuroglancer is pointed at for ``a``: the layer's own, or for a level of an
    OME-Zarr image the image's (the group above it), so that neuroglancer finds every
    level and the axes."""
    location = a.url.rstrip("/")
    found = a.ome_image() if a.format == "zarr" else None
    if found is not None:
        attrs, level = found
        multiscales = attrs.get("ome", attrs)["multiscales"][0]
        path = multiscales["datasets"][level]["path"].strip("/")
        if location.endswith("/" + path):
            location = location[: -len(path) - 1]
    return location


def source_driver(a: BigArray) -> str:
    """neuroglancer's data source for ``a``'s format (``precomputed``, ``zarr2``, ``zarr3``)."""
    if a.format == "precomputed":
        return "precomputed"
    if a.format == "zarr":
        return "zarr3" if a.info.get("zarr_format") == 3 else "zarr2"
    raise InvalidArgumentError(
        f"{a.url}: neuroglancer reads Precomputed and Zarr layers, not {a.format!r} "
        "(copy it to Precomputed first: bigarrays cp)"
    )


def _data_source(a: BigArray, serve: str | None) -> tuple[str, str]:
    """The layer's data source driver and location (a URL a browser reads)."""
    driver = source_driver(a)
    location = shown_location(a)
    if serve is not None:
        served = serve.split("://", 1)[1] if serve.startswith(f"{driver}://") else serve
        if urlsplit(served).scheme not in ("http", "https"):
            raise InvalidArgumentError(
                f"serve={serve!r}: expected the http(s) URL that `bigarrays serve` gives "
                "for the layer"
            )
        location = served
    elif urlsplit(location).scheme not in _REMOTE_SCHEMES:
        raise InvalidArgumentError(
            f"{a.url}: a browser cannot read this location; run `bigarrays serve DIR` on "
            "the directory holding it and pass the layer's URL there as serve= (or use "
            "`bigarrays view PATH`, which does both)"
        )
    return driver, location.rstrip("/")


def viewer_state(a: BigArray, serve: str | None = None) -> dict[str, Any]:
    """The viewer state (neuroglancer's JSON) showing ``a``; see :func:`neuroglancer_url`."""
    driver, location = _data_source(a, serve)
    dimensions: dict[str, list[Any]] = {}
    position: list[float] = []
    for axis, n in zip(a.axes, a.shape, strict=True):
        name, unit = axis["name"], axis.get("unit")
        spatial = name in ("x", "y", "z") or unit in _METRES
        if not spatial or not name:
            continue
        scale = float(axis.get("scale") or 1.0)
        translation = float(axis.get("translation") or 0.0)
        metres = _METRES.get(unit) if unit else None
        dimensions[name] = [scale * metres, "m"] if metres is not None else [scale, ""]
        # Positions are in units of the dimensions: here, voxels of this scale.
        position.append(translation / scale + n / 2)
    return {
        "dimensions": dimensions,
        "position": position,
        "crossSectionScale": 1,
        "projectionScale": 1024,
        "layers": [
            {
                "type": layer_type(a),
                "source": f"{driver}://{location}",
                "name": posixpath.basename(urlsplit(location).path)
                or posixpath.basename(shown_location(a))
                or "layer",
            }
        ],
        "selectedLayer": {"visible": True, "layer": 0},
        "layout": "4panel",
    }


def neuroglancer_url(a: BigArray, serve: str | None = None, viewer: str = DEFAULT_VIEWER) -> str:
    """A link that opens neuroglancer at ``viewer`` showing ``a``; see
    :meth:`BigArray.neuroglancer_url`."""
    state = viewer_state(a, serve)
    fragment = quote(json.dumps(state, separators=(",", ":")), safe=_SAFE)
    return f"{viewer.rstrip('/')}/#!{fragment}"
