//! Neuroglancer Precomputed: the `info` file, the chunk objects and the sharded format.

mod chunks;
mod info;

pub mod sharding;

pub use chunks::{ChunkStore, SuffixHint};
pub use info::{Encoding, Info, LayerSpec, Scale};
