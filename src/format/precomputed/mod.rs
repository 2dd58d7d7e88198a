//! Neuroglancer Precomputed: the `info` file, the chunk objects and the sharded format.

mod chunks;
mod info;

pub mod sharding;

pub use chunks::{ChunkStore, Stored, SuffixHint};
pub use info::{Encoding, Info, LayerSpec, Scale};
