//! Opening a layer of any format: [`open`] reads what is at a URL, picks the format from its
//! metadata files (or the one asked for) and returns it as a [`Volume`].

use std::path::Path;
use std::sync::Arc;

use crate::codec::{Compression, GzipLevel};
use crate::error::{Error, Result};
#[cfg(feature = "hdf5")]
use crate::format::hdf5::aligned::AlignedArray;
#[cfg(feature = "hdf5")]
use crate::format::hdf5::file::H5File;
#[cfg(feature = "hdf5")]
use crate::format::hdf5::h5s::H5sArray;
use crate::format::precomputed::BigArray;
use crate::format::zarr::ZarrArray;
use crate::store::{self, local_path, Handle};
use crate::volume::Volume;

/// The on-storage layouts this engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Neuroglancer Precomputed: an `info` file and chunk objects, in any store.
    Precomputed,
    /// BigArrays.jl's block directories: `config.json` and one HDF5 file per block.
    H5s,
    /// BigArrays.jl's aligned 2D sections: `registry.txt` and one HDF5 file per section.
    Aligned,
    /// One dataset of one HDF5 file.
    Hdf5,
    /// A Zarr v2 or v3 array, or an OME-Zarr image (a group whose `multiscales` name its
    /// levels), in any store.
    Zarr,
}

impl Format {
    /// Every format, in the order messages list them.
    pub const ALL: [Format; 5] = [
        Format::Precomputed,
        Format::Zarr,
        Format::H5s,
        Format::Aligned,
        Format::Hdf5,
    ];

    /// The format's name, as `format=` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Precomputed => "precomputed",
            Format::H5s => "h5s",
            Format::Aligned => "aligned",
            Format::Hdf5 => "hdf5",
            Format::Zarr => "zarr",
        }
    }

    /// The format called `name`.
    pub fn parse(name: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Format::ALL
                    .iter()
                    .map(|f| format!("'{}'", f.name()))
                    .collect();
                Error::invalid(format!(
                    "format={name:?} is not one of {}",
                    names.join(", ")
                ))
            })
    }

    /// Whether the format lives in local HDF5 files (no other store, a single scale).
    pub fn is_hdf5(self) -> bool {
        matches!(self, Format::H5s | Format::Aligned | Format::Hdf5)
    }
}

/// The metadata files that make a directory a Zarr array or group.
const ZARR_FILES: [&str; 3] = ["zarr.json", ".zarray", ".zgroup"];

/// File names that make a path a single HDF5 file.
const HDF5_SUFFIXES: [&str; 3] = [".h5", ".hdf5", ".hdf"];

/// How to open a layer.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Index into `info["scales"]`; 0 is full resolution.
    pub mip: usize,
    /// Missing chunks read as zeros (`true`) or raise [`Error::MissingChunk`].
    pub fill_missing: bool,
    /// Transport compression of the chunks this handle writes; `None` picks the encoding's
    /// default ([`crate::codec::default_compression`]: gzip for raw and
    /// compressed_segmentation, none for jpeg, png and blosc, as CloudVolume does).
    pub compression: Option<Compression>,
    /// The gzip level of what this handle compresses with gzip (chunk transport, shard data,
    /// minishard indexes); chunks copied as their stored bytes keep theirs.
    pub gzip_level: GzipLevel,
    /// Store requests in flight at once.
    pub concurrency: usize,
    /// Bytes of decoded chunks kept for later reads on this handle (0: no cache).
    pub cache_bytes: usize,
    /// The format; `None` detects it ([`detect`]).
    pub format: Option<Format>,
    /// With a single HDF5 file: the dataset to open (default `img`).
    pub dataset: Option<String>,
    /// Options of the store the URL names (credentials, endpoints, retries, timeouts), as
    /// `(key, value)` pairs.
    pub storage_options: Vec<(String, String)>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            mip: 0,
            fill_missing: true,
            compression: None,
            gzip_level: GzipLevel::DEFAULT,
            concurrency: 64,
            cache_bytes: 0,
            format: None,
            dataset: None,
            storage_options: Vec::new(),
        }
    }
}

/// The format of what `url` holds: the one `options` names; else a single HDF5 file when a
/// dataset is named or the path ends in `.h5`/`.hdf5`/`.hdf`; `registry.txt` (the file or a
/// directory holding it) is aligned sections; a directory with `config.json` and no `info`
/// is H5s; one with Zarr metadata (`zarr.json`, `.zarray`, `.zgroup`) and no `info` is Zarr.
/// Everything else, remote URLs included, is Precomputed here; [`open`] then looks for Zarr
/// metadata where it finds no `info`.
pub fn detect(url: &str, options: &OpenOptions) -> Result<Format> {
    if let Some(format) = options.format {
        return Ok(format);
    }
    if options.dataset.is_some() {
        return Ok(Format::Hdf5);
    }
    let remote = url
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.eq_ignore_ascii_case("file"));
    if remote {
        return Ok(Format::Precomputed);
    }
    let path = local_path::path_of(url)?;
    let name = path.to_string_lossy().to_lowercase();
    if HDF5_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Ok(Format::Hdf5);
    }
    let has = |dir: &Path, file: &str| dir.join(file).exists();
    if path.is_file() && path.file_name().is_some_and(|n| n == "registry.txt") {
        return Ok(Format::Aligned);
    }
    if path.is_dir() && !has(&path, "info") {
        if has(&path, "config.json") {
            return Ok(Format::H5s);
        }
        if has(&path, "registry.txt") {
            return Ok(Format::Aligned);
        }
        if ZARR_FILES.iter().any(|f| has(&path, f)) {
            return Ok(Format::Zarr);
        }
    }
    Ok(Format::Precomputed)
}

/// Opens the layer at `url` (a path, `file://`, `memory://`, `s3://`, `gs://` or
/// `http(s)://`) in its format ([`detect`]). An HDF5 layout in a build without the `hdf5`
/// feature is an `InvalidArgument` error that names the feature.
pub fn open(url: &str, options: &OpenOptions) -> Result<Arc<dyn Volume>> {
    let format = detect(url, options)?;
    if format.is_hdf5() {
        check_local(format, options)?;
    }
    Ok(match format {
        Format::Precomputed | Format::Zarr => {
            let store = store::open_url_with(url, false, &options.storage_options)?;
            open_store(store, options)?
        }
        #[cfg(feature = "hdf5")]
        Format::H5s => Arc::new(H5sArray::open(url, options.fill_missing)?),
        #[cfg(feature = "hdf5")]
        Format::Aligned => Arc::new(AlignedArray::open(url, options.fill_missing)?),
        #[cfg(feature = "hdf5")]
        Format::Hdf5 => Arc::new(H5File::open(
            url,
            options.dataset.as_deref().unwrap_or("img"),
        )?),
        #[cfg(not(feature = "hdf5"))]
        Format::H5s | Format::Aligned | Format::Hdf5 => {
            return Err(Error::invalid(format!(
                "{url}: format {:?} needs bigarrays built with the `hdf5` cargo feature",
                format.name()
            )))
        }
    })
}

/// Opens the layer a store holds at its root: Precomputed or Zarr, as `options.format` says
/// or, when it says nothing, Precomputed where there is an `info` and Zarr where there is Zarr
/// metadata instead (an `info` is looked for first, so Precomputed layers cost no extra
/// request).
pub fn open_store(store: Handle, options: &OpenOptions) -> Result<Arc<dyn Volume>> {
    match options.format {
        Some(Format::Zarr) => return Ok(Arc::new(ZarrArray::open(store, options)?)),
        Some(Format::Precomputed) => {
            return Ok(Arc::new(BigArray::open_store(store, options.clone())?))
        }
        Some(other) => {
            return Err(Error::invalid(format!(
                "format {:?} reads local files, not a store",
                other.name()
            )))
        }
        None => {}
    }
    match BigArray::open_store(store.clone(), options.clone()) {
        Err(Error::LayerNotFound { url }) => match ZarrArray::detect(&store)? {
            true => Ok(Arc::new(ZarrArray::open(store, options)?)),
            false => Err(Error::LayerNotFound { url }),
        },
        other => Ok(Arc::new(other?)),
    }
}

/// The HDF5 layouts read local files at one scale, without a cache: options that only mean
/// something elsewhere are refused rather than ignored.
fn check_local(format: Format, options: &OpenOptions) -> Result<()> {
    if !options.storage_options.is_empty() || options.mip != 0 || options.cache_bytes != 0 {
        return Err(Error::invalid(format!(
            "format {:?} reads local files: store=, storage_options=, mip= and cache_bytes= \
             do not apply",
            format.name()
        )));
    }
    Ok(())
}

#[cfg(all(test, not(feature = "hdf5")))]
mod without_hdf5 {
    use super::*;

    #[test]
    fn hdf5_layouts_are_detected_and_refused_naming_the_feature() {
        let options = OpenOptions::default();
        assert_eq!(detect("/nowhere/x.h5", &options).unwrap(), Format::Hdf5);
        let Err(err) = open("/nowhere/x.h5", &options) else {
            panic!("an HDF5 file opened without the hdf5 feature");
        };
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        assert!(err.to_string().contains("`hdf5` cargo feature"), "{err}");
    }
}
