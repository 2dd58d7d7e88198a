//! bigarrays: arrays far larger than memory, stored as chunked cuboids in key-value stores
//! (Neuroglancer Precomputed), read and written by any box.
//!
//! ```no_run
//! use bigarrays::{BigArray, Bbox, OpenOptions, VolumeExt};
//! let a = BigArray::open("/data/em", OpenOptions::default())?;
//! let cut = a.read::<u8>(&Bbox::new([0, 0, 0], [512, 512, 64])?)?; // Fortran-ordered [x, y, z]
//! # Ok::<(), bigarrays::Error>(())
//! ```

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
pub mod open;
pub mod runtime;
pub mod store;
pub mod volume;

#[cfg(feature = "python")]
mod python;

pub use codec::Compression;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use format::hdf5::aligned::AlignedArray;
pub use format::hdf5::file::H5File;
pub use format::hdf5::h5s::H5sArray;
pub use format::precomputed::BigArray;
pub use format::precomputed::{Info, LayerSpec};
pub use geometry::{Bbox, ChunkGrid};
pub use open::{open, Format, OpenOptions};
pub use store::{ReadStore, Store};
pub use volume::{ReadTarget, Volume, VolumeExt};
