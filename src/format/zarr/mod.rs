//! Zarr v2 and v3 arrays (sharding included) and OME-Zarr multiscale images.
//!
//! A Zarr array is N-dimensional and C-ordered in its own axis order. The format reads and
//! writes its arrays in that order (`array`), and presents arrays of up to four dimensions
//! through the 3D [`crate::Volume`] seam with the axes reversed: a C-ordered `(c, z, y, x)`
//! block is byte for byte the Fortran-ordered `[x, y, z, c]` block the seam carries, so the
//! reversal costs no copy.
//!
//! - `metadata`: `.zarray`/`.zattrs` (v2) and `zarr.json` (v3) parsed into one
//!   [`metadata::ArrayMetadata`], v2's order, byte order and compressor expressed as the
//!   equivalent v3 codec chain; data types, fill values and chunk key encodings.
//! - `group`, `ome`: group attributes and OME-Zarr (NGFF 0.4 and 0.5) multiscales.
//! - `codecs`: the codec chain (`bytes`, `transpose`, `gzip`, `zlib`, `zstd`, `blosc`,
//!   `lz4`, `crc32c`, `sharding_indexed`), one codec per file.
//! - `array`: one array (or one OME-Zarr level) opened, created and described; `read` and
//!   `write` move its elements, `read_local` reads uncompressed local chunks in place.

mod array;
pub mod chunk_key;
mod codec_json;
pub mod codecs;
mod doc;
pub mod dtype;
mod fill_value;
pub mod group;
mod group_update;
#[cfg(test)]
mod interop_tests;
pub mod metadata;
pub mod ome;
mod read;
mod read_local;
mod stored;
mod v2_codecs;
mod write;

pub use array::{ZarrArray, ZarrSpec};
