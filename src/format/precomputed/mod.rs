//! Neuroglancer Precomputed: the `info` file, the chunk objects, the sharded format, and
//! [`BigArray`], the array that reads and writes one scale through them.

mod array;
mod chunks;
mod info;
mod source;
mod stored_copy;

pub mod sharding;

pub use array::BigArray;
pub use chunks::{ChunkStore, Stored, SuffixHint};
pub use info::{Encoding, Info, LayerSpec, Scale};
