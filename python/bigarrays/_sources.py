"""What ``ingest`` reads: stacks of 2D images, multi-page TIFFs, NumPy and HDF5 arrays.

Every source is seen in the layer's axes: ``shape`` is ``(x, y, z)``, and ``read(z0, z1,
out)`` fills ``out``, a Fortran-ordered ``(x, y, z1 - z0[, c])`` array, with the source's
planes ``z0 .. z1``. A 2D image is ``(y, x[, c])`` in NumPy (rows first), so its transpose is
an ``(x, y)`` plane; a stack's planes are its z. Arrays (``.npy``, HDF5) are taken as
``(z, y, x[, c])``, the order ``tifffile.imread`` and ``np.stack`` of images give, unless
told ``axes="xyz"``.

The image libraries (tifffile, Pillow, imagecodecs) are the ``ingest`` extra, imported when
a source needs them; h5py only for HDF5 sources.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8", ".tf2"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg"}
IMAGE_SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES
HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5"}

#: Nanometres per unit of OME's PhysicalSize*Unit (micrometre when the unit is not given).
_NM_PER_UNIT = {
    "pm": 1e-3, "Å": 0.1, "nm": 1.0, "µm": 1e3, "um": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9,
}  # fmt: skip


def need(module: str, purpose: str) -> Any:
    """Imports ``module`` or says which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = "h5py" if module == "h5py" else "'bigarrays[ingest]'"
        package = {"PIL.Image": "Pillow"}.get(module, module)
        raise InvalidArgumentError(
            f"{purpose} needs the {package} package: pip install {extra}"
        ) from None


def natural_key(path: str) -> list[Any]:
    """Sorts names as people count: ``z2`` before ``z10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


class Source:
    """A stack seen as ``(x, y, z[, c])``; subclasses fill ``shape``, ``dtype``,
    ``channels`` and ``read``."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    channels: int = 1
    #: nm per voxel found in the files' metadata (OME-TIFF), or None.
    resolution: tuple[float, float, float] | None = None
    name: str = ""

    def read(self, z0: int, z1: int, out: np.ndarray, pool: ThreadPoolExecutor) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Releases open files."""


def _plane(image: np.ndarray) -> np.ndarray:
    """An image ``(y, x[, c])`` as an ``(x, y[, c])`` plane (a view)."""
    return image.transpose(1, 0, 2) if image.ndim == 3 else image.T


class SliceFiles(Source):
    """One 2D image per z: TIFF (tifffile), PNG or JPEG (Pillow), in the order given."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.name = f"{len(self.paths)} slices ({self.paths[0]} ...)"
        # Every header before anything is written (threads: on network file systems each
        # open waits on a round trip), so that an odd slice stops the ingest at once.
        with ThreadPoolExecutor(8, thread_name_prefix="bigarrays-headers") as pool:
            heads = list(pool.map(_header, self.paths))
        first = heads[0]
        for path, head in zip(self.paths[1:], heads[1:], strict=True):
            if head != first:
                raise InvalidArgumentError(
                    f"{path}: {_describe(head)}, but {self.paths[0]} (the first slice) is "
                    f"{_describe(first)}; every slice must have the same size and type"
                )
        (height, width, self.channels), self.dtype = first[0], np.dtype(first[1])
        self.shape = (width, height, len(self.paths))

    def read(self, z0: int, z1: int, out: np.ndarray, pool: ThreadPoolExecutor) -> None:
        def one(k: int) -> None:
            path = self.paths[z0 + k]
            image = _read_image(path)
            want = (self.shape[1], self.shape[0]) + ((self.channels,) if self.channels > 1 else ())
            if image.shape != want or image.dtype != self.dtype:
                # The header said otherwise (a file replaced since, or a lying header).
                raise InvalidArgumentError(
                    f"{path}: decoded as {image.shape} {image.dtype}, expected {want} {self.dtype}"
                )
            out[:, :, k] = _plane(image)

        for f in [pool.submit(one, k) for k in range(z1 - z0)]:
            f.result()


Header = tuple[tuple[int, int, int], str, str]


def _describe(head: Header) -> str:
    (h, w, c), dtype, mode = head
    kind = f"{dtype} ({mode})" if mode else dtype
    return f"{w}×{h} (x×y) {kind}" + (f" with {c} channels" if c > 1 else "")


def _header(path: str) -> Header:
    """((height, width, channels), dtype, Pillow's mode or "") of a 2D image, from its
    header."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            tifffile = need("tifffile", "reading TIFF")
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, dtype = series.shape, series.dtype
            if len(shape) == 2:
                return (shape[0], shape[1], 1), dtype.name, ""
            if len(shape) == 3 and series.axes.endswith("S"):
                return (shape[0], shape[1], shape[2]), dtype.name, ""
            raise InvalidArgumentError(
                f"{path}: a TIFF of shape {shape} (axes {series.axes}) in a list of 2D "
                "slices; give a multi-page stack alone"
            )
        pil = need("PIL.Image", "reading PNG and JPEG")
        with pil.open(path) as im:
            mode, (w, h) = im.mode, im.size
            sample = np.asarray(im.crop((0, 0, 1, 1)))
        channels = sample.shape[2] if sample.ndim == 3 else 1
        return (h, w, channels), sample.dtype.name, mode
    except InvalidArgumentError:
        raise
    except Exception as e:
        raise InvalidArgumentError(f"{path}: cannot read it as an image: {e}") from e


def _read_image(path: str) -> np.ndarray:
    suffix = Path(path).suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return need("tifffile", "reading TIFF").imread(path, maxworkers=1)
        pil = need("PIL.Image", "reading PNG and JPEG")
        with pil.open(path) as im:
            return np.asarray(im)
    except InvalidArgumentError:
        raise
    except Exception as e:
        raise InvalidArgumentError(f"{path}: cannot read it as an image: {e}") from e


class TiffStack(Source):
    """A multi-page TIFF (BigTIFF, OME-TIFF): pages are z, or z and channels (``CZYX``,
    ``ZCYX``); samples (RGB) are channels too; OME's physical sizes are the resolution."""

    def __init__(self, path: str) -> None:
        tifffile = need("tifffile", "reading TIFF")
        self.path = self.name = path
        try:
            self.tif = tifffile.TiffFile(path)
        except Exception as e:
            raise InvalidArgumentError(f"{path}: cannot read it as a TIFF: {e}") from e
        self.series = series = self.tif.series[0]
        axes, shape = series.axes, series.shape
        self.samples = axes.endswith("S")
        core = axes[:-1] if self.samples else axes
        # The page axes: depth (Z, or unnamed Q, I) becomes z, C channels; anything else
        # (time, several unnamed axes) could be mistaken for z and is refused.
        pages = core[:-2].replace("Q", "Z").replace("I", "Z")
        if (
            not core.endswith("YX")
            or pages not in ("", "Z", "C", "CZ", "ZC")
            or ("C" in pages and self.samples)
        ):
            self.tif.close()
            raise InvalidArgumentError(
                f"{path}: axes {axes} (shape {shape}); ingest reads stacks of 2D planes "
                "(YX; pages Z, C, CZ or ZC; samples as channels without C)"
            )
        sizes = dict(zip(pages, shape[: len(pages)], strict=True))
        self.pages, self.page_shape = pages, tuple(shape[: len(pages)])
        height, width = shape[len(core) - 2], shape[len(core) - 1]
        self.channels = shape[-1] if self.samples else sizes.get("C", 1)
        self.dtype = np.dtype(series.dtype)
        self.shape = (width, height, sizes.get("Z", 1))
        self.lock = threading.Lock()
        if self.tif.is_ome and self.tif.ome_metadata:
            self.resolution = _ome_resolution(self.tif.ome_metadata)

    def _keys(self, z0: int, z1: int, c: int) -> list[int]:
        """The page numbers of planes z0..z1 of channel c."""
        index = {"Z": np.arange(z0, z1), "C": np.full(z1 - z0, c)}
        if not self.pages:
            return [0]
        where = tuple(index[a] for a in self.pages)
        return [int(k) for k in np.ravel_multi_index(where, self.page_shape)]

    def _pages(self, keys: list[int]) -> np.ndarray:
        # One file handle: its reads are serialised; tifffile decodes the pages in threads.
        with self.lock:
            try:
                return self.tif.asarray(key=keys, series=0, maxworkers=2)
            except Exception as e:
                raise InvalidArgumentError(f"{self.path}: pages {keys[0]}..{keys[-1]}: {e}") from e

    def read(self, z0: int, z1: int, out: np.ndarray, pool: ThreadPoolExecutor) -> None:
        n, (width, height) = z1 - z0, self.shape[:2]
        if "C" in self.pages:
            for c in range(self.channels):
                data = self._pages(self._keys(z0, z1, c)).reshape((n, height, width))
                out[:, :, :, c] = data.transpose(2, 1, 0)
            return
        data = self._pages(self._keys(z0, z1, 0)).reshape((n, height, width, self.channels))
        # Assigned through a transposed view: no second copy of the slab.
        out[...] = data[..., 0].transpose(2, 1, 0) if out.ndim == 3 else data.transpose(2, 1, 0, 3)

    def close(self) -> None:
        self.tif.close()


def _ome_resolution(xml: str) -> tuple[float, float, float] | None:
    """PhysicalSizeX/Y/Z of the first image of OME-XML, in nm (1 where one is missing)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if value is None or unit not in _NM_PER_UNIT:
            sizes.append(1.0)
        else:
            sizes.append(float(value) * _NM_PER_UNIT[unit])
    if sizes == [1.0, 1.0, 1.0]:
        return None
    return (sizes[0], sizes[1], sizes[2])


class ArraySource(Source):
    """An array (a memory-mapped ``.npy``, an HDF5 dataset), ``(z, y, x[, c])`` by default."""

    def __init__(self, array: Any, name: str, axes: str, closer: Any = None) -> None:
        self.array, self.name, self.axes, self.closer = array, name, axes, closer
        if axes not in ("zyx", "xyz"):
            raise InvalidArgumentError(f"axes={axes!r}: arrays are 'zyx' (default) or 'xyz'")
        shape = tuple(array.shape)
        if len(shape) not in (2, 3, 4):
            raise InvalidArgumentError(f"{name}: shape {shape}; ingest takes 2 to 4 dimensions")
        if len(shape) == 2:
            shape = (1, *shape) if axes == "zyx" else (*shape, 1)
        self.flat = len(array.shape) == 2
        self.channels = shape[3] if len(shape) == 4 else 1
        self.dtype = np.dtype(array.dtype)
        self.shape = (shape[2], shape[1], shape[0]) if axes == "zyx" else shape[:3]

    def read(self, z0: int, z1: int, out: np.ndarray, pool: ThreadPoolExecutor) -> None:
        a = self.array
        if self.flat:
            part = np.asarray(a[...])[None] if self.axes == "zyx" else np.asarray(a[...])[..., None]
        else:
            part = np.asarray(a[z0:z1] if self.axes == "zyx" else a[:, :, z0:z1])
        if self.axes == "zyx":
            part = part.transpose((2, 1, 0, 3) if part.ndim == 4 else (2, 1, 0))
        out[...] = part

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


def expand(sources: Sequence[str]) -> list[str]:
    """The files named by ``sources``: directories give their images, globs their matches;
    each group in natural order."""
    files: list[str] = []
    for src in sources:
        if os.path.isdir(src):
            found = [str(p) for p in Path(src).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                raise InvalidArgumentError(f"{src}: no TIFF, PNG or JPEG files in this directory")
            files += sorted(found, key=natural_key)
        elif not os.path.exists(src) and glob.has_magic(src):
            found = [p for p in glob.glob(src) if os.path.isfile(p)]
            if not found:
                raise InvalidArgumentError(f"{src}: the pattern matches no file")
            files += sorted(found, key=natural_key)
        else:
            files.append(src)
    return files


def open_source(sources: Sequence[str], axes: str = "zyx") -> Source:
    """The stack ``sources`` name (see the module's docstring)."""
    files = expand(sources)
    for f in files:
        if not os.path.isfile(_hdf5_split(f)[0]):
            raise InvalidArgumentError(f"{f}: no such file")
    if len(files) == 1:
        path = files[0]
        suffix = Path(_hdf5_split(path)[0]).suffix.lower()
        if suffix == ".npy":
            try:
                array = np.load(path, mmap_mode="r")
            except Exception as e:
                raise InvalidArgumentError(f"{path}: cannot read it as .npy: {e}") from e
            return ArraySource(array, path, axes)
        if suffix in HDF5_SUFFIXES:
            return _hdf5(path, axes)
        if suffix in TIFF_SUFFIXES:
            return TiffStack(path)
    odd = [f for f in files if Path(f).suffix.lower() not in IMAGE_SUFFIXES]
    if odd:
        raise InvalidArgumentError(
            f"{odd[0]}: not a TIFF, PNG or JPEG slice (a .npy, HDF5 or multi-page TIFF "
            "source is given alone)"
        )
    return SliceFiles(files)


def _hdf5_split(path: str) -> tuple[str, str | None]:
    """``file.h5:/group/dataset`` as the file and the dataset's path."""
    head, sep, tail = path.rpartition(":")
    if sep and Path(head).suffix.lower() in HDF5_SUFFIXES:
        return head, tail
    return path, None


def _hdf5(path: str, axes: str) -> Source:
    h5py = need("h5py", "reading HDF5")
    filename, dataset = _hdf5_split(path)
    try:
        f = h5py.File(filename, "r")
    except Exception as e:
        raise InvalidArgumentError(f"{filename}: cannot open it as HDF5: {e}") from e
    if dataset is None:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if len(names) != 1:
            f.close()
            raise InvalidArgumentError(
                f"{filename} holds {len(names)} datasets ({', '.join(names[:5])}): name one "
                f"as {filename}:/path/to/dataset"
            )
        dataset = names[0]
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        f.close()
        raise InvalidArgumentError(f"{filename}: no dataset {dataset!r}")
    return ArraySource(f[dataset], f"{filename}:{dataset}", axes, f.close)
