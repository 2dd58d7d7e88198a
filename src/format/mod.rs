//! On-storage layouts. Only Neuroglancer Precomputed so far; the HDF5 issue adds `h5s` and
//! `aligned` beside it.

pub mod precomputed;
