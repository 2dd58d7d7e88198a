//! Neuroglancer Precomputed, unsharded: the `info` file and the chunk objects.

mod chunks;
mod info;

pub use chunks::{ChunkStore, Stored, SuffixHint};
pub use info::{Encoding, Info, LayerSpec, Scale};
