//! Which codec a chunk is encoded with, and its writer parameters. Formats map their own
//! metadata onto it (the precomputed `info` keys: `format/precomputed/info.rs`); codecs
//! never look at a format's metadata.

use super::blosc::BloscCompressor;

/// A scale's chunk encoding, with the writer parameters its `info` keys give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    /// `jpeg_quality` (0–100; a hint for writers).
    Jpeg {
        quality: u8,
    },
    /// `png_level` (0–9; a hint for writers).
    Png {
        level: u8,
    },
    /// `compressed_segmentation_block_size`.
    CompressedSegmentation {
        block_size: [u64; 3],
    },
    /// A Blosc-1 buffer; `blosc` or BigArrays.jl's `blosclz` (`name`). The compressor,
    /// level and shuffle (`blosc_compressor`, `blosc_clevel`, `blosc_shuffle`) matter to
    /// writers only: the buffer header tells readers.
    Blosc {
        name: &'static str,
        compressor: BloscCompressor,
        clevel: u8,
        shuffle: u8,
    },
    /// A name we parse but cannot decode (compresso, jxl, ...): IO raises an `InfoError`.
    Unsupported(String),
}
