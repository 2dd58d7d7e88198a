//! Chunk codecs. `transport` undoes (and applies) the byte-level compression that stores put
//! around a chunk; `raw` is the `raw` encoding. The codecs issue adds jpeg, png,
//! compressed_segmentation and blosc beside them.

pub mod raw;
pub mod transport;

pub use transport::Compression;
