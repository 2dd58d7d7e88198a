//! On-storage layouts: Neuroglancer Precomputed, and BigArrays.jl's HDF5 layouts (H5s block
//! directories, aligned 2D sections) over a shared HDF5 dataset reader.

pub mod aligned;
pub mod h5s;
pub mod hdf5_file;
pub mod precomputed;
