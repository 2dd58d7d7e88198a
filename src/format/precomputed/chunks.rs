//! Chunk objects in a store: probing the transport-compression suffixes on read, and
//! replacing every variant of a chunk on write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::Compression;
use crate::error::Result;
use crate::store::Store;

/// A chunk's stored bytes, with the transport compression its key suffix or
/// `Content-Encoding` declares.
pub type Stored = (Bytes, Compression);

/// Which suffix found the last chunk, so the next probe tries it first (as CloudVolume does):
/// a gzip layer on disk then costs one lookup per chunk, not two.
#[derive(Debug, Default)]
pub struct SuffixHint(AtomicUsize);

/// The chunk objects of a layer.
#[derive(Debug)]
pub struct ChunkStore {
    store: Arc<dyn Store>,
    hint: SuffixHint,
}

impl ChunkStore {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ChunkStore {
            store,
            hint: SuffixHint::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stored bytes of chunk `key` under whichever suffix holds it, or `None`.
    pub async fn fetch(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.fetch_declared(key).await?.map(|(bytes, _)| bytes))
    }

    /// [`fetch`](Self::fetch), with the transport compression the stored object declares:
    /// by its suffix (`.br`), else by its `Content-Encoding` (`br`). Brotli needs this, having
    /// no magic number; the decoders still sniff gzip and zstd whatever is declared.
    pub async fn fetch_declared(&self, key: &str) -> Result<Option<Stored>> {
        let first = self.hint.0.load(Ordering::Relaxed);
        let order = std::iter::once(first)
            .chain((0..Compression::PROBE_ORDER.len()).filter(|&i| i != first));
        for i in order {
            let by_suffix = Compression::PROBE_ORDER[i];
            let found = self
                .store
                .get_with_encoding(&format!("{key}{}", by_suffix.suffix()))
                .await?;
            if let Some((bytes, content_encoding)) = found {
                self.hint.0.store(i, Ordering::Relaxed);
                let declared = match (by_suffix, content_encoding) {
                    (Compression::None, Some(value)) => Compression::from_content_encoding(&value),
                    (by_suffix, _) => by_suffix,
                };
                return Ok(Some((bytes, declared)));
            }
        }
        Ok(None)
    }

    /// Stores an encoded chunk, then removes the other variants so that no reader can find
    /// a stale copy first. On file systems the compression is a key suffix (`.gz`); in object
    /// stores it is CloudVolume's convention there: the plain key with `Content-Encoding`.
    pub async fn put(&self, key: &str, bytes: Bytes, compression: Compression) -> Result<()> {
        let written = if self.store.encoding_in_metadata() {
            self.store
                .put_encoded(key, bytes, compression.content_encoding())
                .await?;
            Compression::None.suffix()
        } else {
            self.store
                .put(&format!("{key}{}", compression.suffix()), bytes)
                .await?;
            compression.suffix()
        };
        let stale = Compression::PROBE_ORDER
            .into_iter()
            .filter(|c| c.suffix() != written)
            .map(|c| {
                let key = format!("{key}{}", c.suffix());
                async move { self.store.delete(&key).await }
            });
        futures::future::try_join_all(stale).await.map(|_| ())
    }
}
