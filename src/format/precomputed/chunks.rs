//! Chunk objects in a store: probing the transport-compression suffixes on read, and
//! replacing every variant of a chunk on write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::Compression;
use crate::error::Result;
use crate::store::{Expected, Store};

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
        self.probe(key, None).await
    }

    /// [`fetch_declared`](Self::fetch_declared), not asking for the variant with `skip`'s
    /// suffix (already known absent).
    async fn probe(&self, key: &str, skip: Option<Compression>) -> Result<Option<Stored>> {
        let first = self.hint.0.load(Ordering::Relaxed);
        let order = std::iter::once(first)
            .chain((0..Compression::PROBE_ORDER.len()).filter(|&i| i != first));
        for i in order {
            let by_suffix = Compression::PROBE_ORDER[i];
            if skip.is_some_and(|s| s.suffix() == by_suffix.suffix()) {
                continue;
            }
            let found = self
                .store
                .get_with_encoding(&format!("{key}{}", by_suffix.suffix()))
                .await?;
            if let Some((bytes, content_encoding)) = found {
                self.hint.0.store(i, Ordering::Relaxed);
                return Ok(Some((bytes, declared(by_suffix, content_encoding))));
            }
        }
        Ok(None)
    }

    /// The size in bytes of chunk `key` under whichever suffix holds it (the one a read
    /// would find), or `None`, without fetching it: the suffix that found the last chunk is
    /// asked first, and the others only when it holds nothing.
    pub async fn stored_size(&self, key: &str) -> Result<Option<u64>> {
        let first = self.hint.0.load(Ordering::Relaxed);
        let order = std::iter::once(first)
            .chain((0..Compression::PROBE_ORDER.len()).filter(|&i| i != first));
        for i in order {
            let suffix = Compression::PROBE_ORDER[i].suffix();
            if let Some(size) = self.store.size(&format!("{key}{suffix}")).await? {
                self.hint.0.store(i, Ordering::Relaxed);
                return Ok(Some(size));
            }
        }
        Ok(None)
    }

    /// Where a chunk written with `compression` goes, and how the compression is declared:
    /// in object stores CloudVolume's convention there, the plain key with
    /// `Content-Encoding`; on file systems a key suffix (`.gz`).
    fn target(&self, key: &str, compression: Compression) -> (Compression, String) {
        let by_suffix = if self.store.encoding_in_metadata() {
            Compression::None
        } else {
            compression
        };
        (by_suffix, format!("{key}{}", by_suffix.suffix()))
    }

    /// [`fetch_declared`](Self::fetch_declared) for replacing the chunk with one written
    /// with `compression`, plus what [`put_if`](Self::put_if) must then expect where the
    /// store puts conditionally (`None` elsewhere).
    pub async fn fetch_for_update(
        &self,
        key: &str,
        compression: Compression,
    ) -> Result<(Option<Stored>, Option<Expected>)> {
        if !self.store.conditional_puts() {
            return Ok((self.fetch_declared(key).await?, None));
        }
        let (by_suffix, target) = self.target(key, compression);
        if let Some((bytes, encoding, expected)) = self.store.get_for_update(&target).await? {
            return Ok((Some((bytes, declared(by_suffix, encoding))), expected));
        }
        // Nothing under the name the chunk will be written to: any old chunk is another
        // variant, and the new one must find that name still free.
        let other = self.probe(key, Some(by_suffix)).await?;
        Ok((other, Some(Expected::Absent)))
    }

    /// Stores an encoded chunk, then removes the other variants so that no reader can find
    /// a stale copy first.
    pub async fn put(&self, key: &str, bytes: Bytes, compression: Compression) -> Result<()> {
        self.put_if(key, bytes, compression, None).await.map(|_| ())
    }

    /// [`put`](Self::put) only if the chunk is still as `expected` (from
    /// [`fetch_for_update`](Self::fetch_for_update); `None`: unconditionally): `false`,
    /// having changed nothing, when another writer replaced it first.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        compression: Compression,
        expected: Option<&Expected>,
    ) -> Result<bool> {
        let (by_suffix, target) = self.target(key, compression);
        let declared = compression.content_encoding();
        match expected {
            Some(expected) => {
                if !self
                    .store
                    .put_if(&target, bytes, declared, expected)
                    .await?
                {
                    return Ok(false);
                }
            }
            None => self.store.put_encoded(&target, bytes, declared).await?,
        }
        let stale = Compression::PROBE_ORDER
            .into_iter()
            .filter(|c| c.suffix() != by_suffix.suffix())
            .map(|c| {
                let key = format!("{key}{}", c.suffix());
                async move { self.store.delete(&key).await }
            });
        futures::future::try_join_all(stale).await.map(|_| true)
    }
}

/// The compression a chunk found under a key with `by_suffix`'s suffix declares: the
/// suffix's, or for a plain key its `Content-Encoding`.
fn declared(by_suffix: Compression, content_encoding: Option<String>) -> Compression {
    match (by_suffix, content_encoding) {
        (Compression::None, Some(value)) => Compression::from_content_encoding(&value),
        (by_suffix, _) => by_suffix,
    }
}
