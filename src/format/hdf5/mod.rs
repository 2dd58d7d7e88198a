//! BigArrays.jl's HDF5 layouts, local files only: H5s block directories (`h5s`), aligned 2D
//! sections (`aligned`) and a single dataset of one file (`file`), all reading through one
//! dataset reader (`dataset`) that decodes chunks itself where it can. H5s and aligned share
//! their cache of open files (`open_files`) and the reader of their metadata file
//! (`metadata_file`).

pub mod aligned;
pub mod dataset;
pub mod file;
pub mod h5s;
pub mod metadata_file;
pub mod open_files;
