//! On-storage layouts: Neuroglancer Precomputed, and BigArrays.jl's HDF5 layouts (H5s block
//! directories, aligned 2D sections) over a shared HDF5 dataset reader.

//! The HDF5 layouts need the `hdf5` cargo feature (the HDF5 C library, built with CMake).

#[cfg(feature = "hdf5")]
pub mod aligned;
#[cfg(feature = "hdf5")]
pub mod h5s;
#[cfg(feature = "hdf5")]
pub mod hdf5_file;
pub mod precomputed;
