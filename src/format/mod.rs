//! On-storage layouts, one folder each: Neuroglancer Precomputed (`precomputed/`: its
//! `info`, chunk keys, sharding and the array that reads and writes them), and BigArrays.jl's
//! HDF5 layouts (`hdf5/`: H5s block directories, aligned 2D sections and single datasets over
//! one shared dataset reader), and Zarr v2/v3 (`zarr/`). Each format implements [`crate::Volume`]; `crate::open` picks
//! one for a URL.

pub(crate) mod first_error;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod precomputed;
pub(crate) mod rmw;
pub(crate) mod sizes;
pub mod zarr;
