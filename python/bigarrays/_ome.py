"""OME-Zarr (OME-NGFF) images: the axes and first level of a new image, checked as the
specification asks, and the scale and translation of each level a pyramid adds.

NGFF 0.4 (Zarr v2) and 0.5 (Zarr v3) agree on everything here: 2 to 5 axes, at most one of
type ``time`` (first) and one ``channel`` (next), then 2 or 3 of type ``space``; units from
the UDUNITS-2 names the specification lists. The engine writes the metadata in the layout
of the version its Zarr format takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidArgumentError

SPACE_UNITS = frozenset(
    "angstrom attometer centimeter decimeter exameter femtometer foot gigameter hectometer "
    "inch kilometer megameter meter micrometer mile millimeter nanometer parsec petameter "
    "picometer terameter yard yoctometer yottameter zeptometer zettameter".split()
)
TIME_UNITS = frozenset(
    "attosecond centisecond day decisecond exasecond femtosecond gigasecond hectosecond hour "
    "kilosecond megasecond microsecond millisecond minute nanosecond petasecond picosecond "
    "second terasecond yoctosecond yottasecond zeptosecond zettasecond".split()
)
#: The type an axis of a conventional name has when none is given.
_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
#: Types in the order NGFF wants them (custom types sit with channels).
_RANK = {"time": 0, "channel": 1, "space": 2}


def default_axes(ndim: int) -> list[str]:
    """ome-zarr-py's default axis names for an array of ``ndim`` axes: the last of
    ``t, c, z, y, x``."""
    if not 2 <= ndim <= 5:
        raise InvalidArgumentError(f"an OME-Zarr image has 2 to 5 axes, the shape has {ndim}")
    return list("tczyx"[5 - ndim :])


def axes_entries(axes: Sequence[str | Mapping[str, Any]], ndim: int) -> list[dict[str, Any]]:
    """The NGFF ``axes`` of ``axes`` (names, or dicts with ``name``, ``type``, ``unit``),
    checked: a message names the axis and what is wrong with it."""
    if len(axes) != ndim:
        raise InvalidArgumentError(f"axes {list(axes)!r}: {len(axes)} axes for {ndim} dimensions")
    entries = []
    for i, axis in enumerate(axes):
        given = {"name": axis} if isinstance(axis, str) else dict(axis)
        unknown = set(given) - {"name", "type", "unit"}
        if unknown:
            raise InvalidArgumentError(f"axes[{i}]: unknown keys {sorted(unknown)}")
        name = given.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"axes[{i}]: a name (a non-empty string) is required")
        entry: dict[str, Any] = {"name": name}
        kind = given.get("type", _TYPES.get(name))
        if kind is not None:
            entry["type"] = kind
        unit = given.get("unit")
        if unit is not None:
            allowed = {"space": SPACE_UNITS, "time": TIME_UNITS}.get(kind or "")
            if allowed is not None and unit not in allowed:
                raise InvalidArgumentError(
                    f"axes[{i}] ({name!r}): unit {unit!r} is not one of NGFF's {kind} units "
                    f"(e.g. {'micrometer' if kind == 'space' else 'second'})"
                )
            entry["unit"] = unit
        entries.append(entry)
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"axes {names}: names repeat")
    kinds = [e.get("type") for e in entries]
    for kind, most in (("time", 1), ("channel", 1), ("space", 3)):
        if kinds.count(kind) > most:
            raise InvalidArgumentError(f"axes {names}: more than {most} of type {kind!r}")
    if not 2 <= kinds.count("space") <= 3:
        raise InvalidArgumentError(f"axes {names}: an image has 2 or 3 axes of type 'space'")
    order = [_RANK.get(k or "", 1) for k in kinds]
    if order != sorted(order):
        raise InvalidArgumentError(
            f"axes {names}: NGFF orders axes time, then channel (or custom), then space"
        )
    return entries


def image_entry(
    axes: list[dict[str, Any]],
    scale: Sequence[float] | None,
    translation: Sequence[float] | None,
    path: str = "0",
) -> dict[str, Any]:
    """A ``multiscales`` entry with one dataset (level 0) at ``path``."""
    n = len(axes)
    scale = [1.0] * n if scale is None else [float(s) for s in scale]
    if len(scale) != n or min(scale) <= 0:
        raise InvalidArgumentError(f"scale {scale}: {n} positive numbers, one per axis")
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if translation is not None:
        translation = [float(t) for t in translation]
        if len(translation) != n:
            raise InvalidArgumentError(f"translation {translation}: {n} numbers, one per axis")
        transforms.append({"type": "translation", "translation": translation})
    return {
        "version": "0.4",
        "axes": axes,
        "datasets": [{"path": path, "coordinateTransformations": transforms}],
    }


def next_level(
    shape: Sequence[int],
    scale: Sequence[float],
    translation: Sequence[float],
    factors: Sequence[int],
) -> tuple[list[int], list[float], list[float]]:
    """The shape, scale and translation of the level ``factors`` coarser than the given one.

    Shapes are ceil-divided (as Precomputed pyramids are); the scale is multiplied; the
    translation moves to the centre of the block of source voxels each new voxel
    summarises, ``t + (s_new - s) / 2``: ome-zarr-py's pyramids put their levels there
    (its ``s / 2 - s0 / 2`` for unit level-0 voxels), and so every level of an image lines
    up in physical space."""
    new_shape = [-(-n // f) for n, f in zip(shape, factors, strict=True)]
    new_scale = [s * f for s, f in zip(scale, factors, strict=True)]
    new_translation = [
        t + (sn - s) / 2 for t, s, sn in zip(translation, scale, new_scale, strict=True)
    ]
    return new_shape, new_scale, new_translation
