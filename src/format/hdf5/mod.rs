//! BigArrays.jl's HDF5 layouts, local files only: H5s block directories (`h5s`), aligned 2D
//! sections (`aligned`) and a single dataset of one file (`file`), all reading through one
//! dataset reader (`dataset`) that decodes chunks itself where it can.

pub mod aligned;
pub mod dataset;
pub mod file;
pub mod h5s;
