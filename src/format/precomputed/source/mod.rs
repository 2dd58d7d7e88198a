//! Where a scale's chunks are stored: one object per chunk ([`ChunkFiles`]), or packed into
//! shard files ([`ShardedChunks`]). The array plans, decodes and paints; a [`ChunkSource`]
//! fetches stored chunks, tells their sizes, and replaces them by read-modify-write with the
//! one conditional-put protocol both share ([`conflicts_after`]). A future sharded format
//! (Zarr's `sharding_indexed`) is a third implementation.

mod files;
mod sharded;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Stored;
use crate::codec::Compression;
use crate::error::Result;
pub(crate) use crate::format::rmw::{block_on, conflicts_after};
use crate::geometry::Bbox;

pub(crate) use files::ChunkFiles;
pub(crate) use sharded::ShardedChunks;

/// A chunk's share of its read's in-flight byte budget: held from before the chunk is
/// fetched until it has been painted, so fetched-but-unpainted bytes stay bounded however
/// much faster the store is than decoding (one permit may cover several chunks of a shard).
pub(crate) type Held = Option<Arc<OwnedSemaphorePermit>>;

/// Fetched chunks arrive on this channel as `(index, bytes or None when missing, budget)`.
pub(crate) type Fetched = tokio::sync::mpsc::Receiver<(usize, Result<Option<Stored>>, Held)>;

/// Makes the stored bytes of the chunk in grid cell `g` from what is stored for it now
/// (its bytes and declared transport compression), if anything; `None` is also what a chunk
/// the write covers whole gets, its old bytes being of no use.
pub(crate) type ChunkEncoder<'a> =
    dyn Fn([u64; 3], Option<(&[u8], Compression)>) -> Result<Bytes> + Sync + 'a;

/// The in-flight byte budget of one read (in KiB permits) and one chunk's cost in it.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) cost: u32,
}

/// How a scale's chunks are stored.
pub(crate) trait ChunkSource: Send + Sync + std::fmt::Debug {
    /// The key that names cell `g`'s stored bytes in messages (and, for chunk files, in the
    /// store).
    fn key_of(&self, g: [u64; 3]) -> String;

    /// The transport compression new chunks are stored with.
    fn compression(&self) -> Compression;

    /// Starts fetching the stored bytes of `cells` on the IO runtime; results arrive as they
    /// complete, tagged with their index in `cells`. Dropping the receiver stops the
    /// fetching.
    fn fetch(&self, cells: &[[u64; 3]], budget: Budget) -> Fetched;

    /// The stored size of each of `cells` (`None`: absent), without fetching their data.
    fn sizes(&self, cells: &[[u64; 3]]) -> Result<Vec<Option<u64>>>;

    /// Replaces `cells` (chunks that `bbox` touches) with what `encode` makes of each.
    /// Chunks `bbox` covers in part are read for `encode`; where the store puts
    /// conditionally, one that another writer replaced in between is read and made again, so
    /// overlapping writers lose nothing.
    fn write(&self, bbox: &Bbox, cells: &[[u64; 3]], encode: &ChunkEncoder) -> Result<()>;
}

/// The next item of `results`, or `None` once the reader has closed `tx`'s channel (an
/// interrupted read): the fetches in flight are then dropped instead of awaited, which for a
/// stalled remote store could take until its deadline.
async fn next_unless_closed<S: futures::Stream + Unpin, T>(
    tx: &tokio::sync::mpsc::Sender<T>,
    results: &mut S,
) -> Option<S::Item> {
    let closed = std::pin::pin!(tx.closed());
    match futures::future::select(closed, results.next()).await {
        futures::future::Either::Left(_) => None,
        futures::future::Either::Right((next, _)) => next,
    }
}

/// Stops the fetching behind `fetched` and waits until it has stopped: the fetch task ends
/// once its current request does (requests still queued or in flight in an object store are
/// dropped). Waiting matters for Python mapping stores, whose code runs inside the request:
/// an interrupted caller may go on to end the interpreter, under a thread still in it.
pub(crate) fn stop_fetching(fetched: &mut Fetched) {
    fetched.close();
    // A closed channel answers `None` while its sender lives, so watch the sender itself: the
    // fetch task drops it when it ends.
    while fetched.sender_strong_count() > 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
