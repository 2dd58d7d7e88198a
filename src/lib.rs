//! bigarrays: arrays far larger than memory, stored as chunked cuboids in key-value stores
//! (Neuroglancer Precomputed), read and written by any box.
//!
//! ```no_run
//! use bigarrays::{BigArray, Bbox, OpenOptions, VolumeExt};
//! let a = BigArray::open("/data/em", OpenOptions::default())?;
//! let cut = a.read::<u8>(&Bbox::new([0, 0, 0], [512, 512, 64])?)?; // Fortran-ordered [x, y, z]
//! # Ok::<(), bigarrays::Error>(())
//! ```

//!
//! # Cargo features
//!
//! None is on by default: Precomputed with every encoding but `jpeg` needs only Rust and a
//! C compiler. `hdf5` adds BigArrays.jl's HDF5 layouts (`H5sArray`, `AlignedArray`,
//! `H5File`; the HDF5 C library, built with CMake); `jpeg` adds the `jpeg` encoding
//! (libjpeg-turbo, built with CMake and nasm); `python` builds the extension module. Without
//! a feature, [`open()`] still detects an HDF5 layout and a layer still parses a `jpeg` scale,
//! and using it is an error naming the feature. See `docs/RUST.md`.

#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("bigarrays stores little-endian voxels and assumes a little-endian host");

pub mod cache;
pub mod codec;
pub mod dtype;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod geometry;
pub mod interrupt;
pub mod nd;
pub mod open;
// The engine's global tokio runtime and CPU pool: public only so the integration tests can
// drive a store's async methods; not API.
#[doc(hidden)]
pub mod runtime;
pub mod store;
pub mod stored;
pub mod volume;

#[cfg(feature = "python")]
mod python;

pub use codec::{Compression, Encoding};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
#[cfg(feature = "hdf5")]
pub use format::hdf5::aligned::AlignedArray;
#[cfg(feature = "hdf5")]
pub use format::hdf5::file::H5File;
#[cfg(feature = "hdf5")]
pub use format::hdf5::h5s::H5sArray;
pub use format::precomputed::BigArray;
pub use format::precomputed::{Info, LayerSpec};
pub use geometry::{Bbox, ChunkGrid};
pub use nd::NdBox;
pub use open::{open, Format, OpenOptions};
pub use store::{ReadStore, Store};
pub use volume::{NdTarget, NdVolume, ReadTarget, Volume, VolumeExt};
