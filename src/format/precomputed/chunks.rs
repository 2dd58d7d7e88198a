//! Chunk objects in a store: probing the transport-compression suffixes on read, and
//! replacing every variant of a chunk on write. CloudVolume's conventions for declaring
//! transport compression live here, not in the store: a `Content-Encoding` on the plain key
//! where the store keeps per-object metadata (object stores), a key suffix (`.gz`) elsewhere
//! (file systems, memory, mappings).

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::codec::Compression;
use crate::error::Result;
use crate::store::{Handle, PutMode, PutOptions};

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
    store: Handle,
    hint: SuffixHint,
}

impl ChunkStore {
    /// Chunk files in `store`, no suffix seen yet.
    pub fn new(store: Handle) -> Self {
        ChunkStore {
            store,
            hint: SuffixHint::default(),
        }
    }

    /// The store the chunk files live in.
    pub fn store(&self) -> &Handle {
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
                .get(&format!("{key}{}", by_suffix.suffix()))
                .await?;
            if let Some(object) = found {
                self.hint.0.store(i, Ordering::Relaxed);
                let declared = declared(by_suffix, object.content_encoding);
                return Ok(Some((object.bytes, declared)));
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
        let by_suffix = if self.store.keeps_metadata() {
            Compression::None
        } else {
            compression
        };
        (by_suffix, format!("{key}{}", by_suffix.suffix()))
    }

    /// [`fetch_declared`](Self::fetch_declared) for replacing the chunk with one written
    /// with `compression`, plus how [`put_if`](Self::put_if) must then put it: on the
    /// version read where the store puts conditionally, last-writer-wins elsewhere.
    pub async fn fetch_for_update(
        &self,
        key: &str,
        compression: Compression,
    ) -> Result<(Option<Stored>, PutMode)> {
        if !self.store.conditional_puts() {
            return Ok((self.fetch_declared(key).await?, PutMode::Overwrite));
        }
        let (by_suffix, target) = self.target(key, compression);
        if let Some(object) = self.store.get(&target).await? {
            // A server that named no version gets a plain put.
            let mode = object
                .version
                .map_or(PutMode::Overwrite, PutMode::IfVersion);
            let declared = declared(by_suffix, object.content_encoding);
            return Ok((Some((object.bytes, declared)), mode));
        }
        // Nothing under the name the chunk will be written to: any old chunk is another
        // variant, and the new one must find that name still free.
        let other = self.probe(key, Some(by_suffix)).await?;
        Ok((other, PutMode::IfAbsent))
    }

    /// Stores an encoded chunk, then removes the other variants so that no reader can find
    /// a stale copy first.
    pub async fn put(&self, key: &str, bytes: Bytes, compression: Compression) -> Result<()> {
        self.put_if(key, bytes, compression, &PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// [`put`](Self::put) in `mode` (from [`fetch_for_update`](Self::fetch_for_update)):
    /// `false`, having changed nothing, when another writer replaced the chunk first.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        compression: Compression,
        mode: &PutMode,
    ) -> Result<bool> {
        let (by_suffix, target) = self.target(key, compression);
        let writer = self.store.writer(&target)?;
        let options = PutOptions {
            mode: mode.clone(),
            // Declared in metadata only where the store keeps it (see `target`).
            content_encoding: if self.store.keeps_metadata() {
                compression.content_encoding()
            } else {
                None
            },
        };
        if !writer.put_opts(&target, bytes, options).await? {
            return Ok(false);
        }
        let stale = Compression::PROBE_ORDER
            .into_iter()
            .filter(|c| c.suffix() != by_suffix.suffix())
            .map(|c| {
                let key = format!("{key}{}", c.suffix());
                async move { writer.delete(&key).await }
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
