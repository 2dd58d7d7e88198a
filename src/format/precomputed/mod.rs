//! Neuroglancer Precomputed, unsharded: the `info` file and the chunk objects.

mod chunks;
mod info;

pub use chunks::{ChunkStore, SuffixHint};
pub use info::{Encoding, Info, LayerSpec, Scale};
