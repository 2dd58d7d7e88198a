//! Key-value stores. A layer is a prefix in a store; every backend implements [`Store`].
//! `object` wraps the `object_store` crate (local disk, memory, S3, GCS and HTTP); `cloud`
//! turns cloud URLs and `storage_options` into configured clients. The Python-mapping
//! adapter lives in `python/` because it needs the GIL.

mod aws_profile;
mod cloud;
pub mod local_path;
mod local_read;
mod object;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};

pub use cloud::Scheme;
pub use object::ObjectStoreBackend;

/// What a conditional put ([`Store::put_if`]) expects the key to hold still.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Nothing: the key must still be absent.
    Absent,
    /// The version read: an ETag and/or a store-specific version (a GCS generation).
    Version {
        e_tag: Option<String>,
        version: Option<String>,
    },
}

/// A value read for replacing: its bytes, its declared `Content-Encoding`, and what a
/// conditional put must expect ([`Store::get_for_update`]).
pub type ForUpdate = (Bytes, Option<String>, Option<Expected>);

/// A key-value store holding one layer. Keys are `/`-separated and relative to the layer.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// A printable location of `key` for messages (never with credentials).
    fn url_of(&self, key: &str) -> String;

    /// The value under `key`, or `None` when it is absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// The value under `key` with the `Content-Encoding` the store declares for it (always
    /// `None` where the store keeps no such metadata), or `None` when it is absent.
    async fn get_with_encoding(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>> {
        Ok(self.get(key).await?.map(|bytes| (bytes, None)))
    }

    /// Stores `value` under `key` atomically: readers see the old value or the new one.
    async fn put(&self, key: &str, value: Bytes) -> Result<()>;

    /// Whether [`Store::put_if`] is atomic here (memory, S3 and GCS); elsewhere replacing
    /// a value is last-writer-wins.
    fn conditional_puts(&self) -> bool {
        false
    }

    /// [`Store::get_with_encoding`] plus, where [`Store::conditional_puts`], the version to
    /// expect when replacing the value.
    async fn get_for_update(&self, key: &str) -> Result<Option<ForUpdate>> {
        Ok(self
            .get_with_encoding(key)
            .await?
            .map(|(bytes, encoding)| (bytes, encoding, None)))
    }

    /// [`Store::put_encoded`] only if `key` still holds `expected`: `false`, having stored
    /// nothing, when another writer changed it first. Stores without
    /// [`Store::conditional_puts`] store unconditionally.
    async fn put_if(
        &self,
        key: &str,
        value: Bytes,
        content_encoding: Option<&'static str>,
        expected: &Expected,
    ) -> Result<bool> {
        let _ = expected;
        self.put_encoded(key, value, content_encoding).await?;
        Ok(true)
    }

    /// Removes `key`; an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// The size in bytes of the value under `key`, or `None` when it is absent, without
    /// fetching the value where the store can tell (a HEAD request, a file's metadata).
    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.get(key).await?.map(|bytes| bytes.len() as u64))
    }

    /// Every key under the directory `dir` (keys starting with `dir/`, at any depth,
    /// relative to the layer like all keys) with its size in bytes, in no particular order.
    /// What exists is learned this way without fetching values (whole scales at once), and
    /// [`Store::delete_dir`] removes what it lists. Stores that cannot list (HTTP) raise.
    async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>>;

    /// Removes every key under the directory `dir` (as [`Store::list`] finds them). Only
    /// that directory: a key merely starting with the same letters (`dir_2/...`) stays.
    async fn delete_dir(&self, dir: &str) -> Result<()> {
        for (key, _) in self.list(dir).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Whether transport compression is declared in object metadata (`Content-Encoding`,
    /// CloudVolume's convention in object stores) instead of a key suffix (its convention on
    /// file systems).
    fn encoding_in_metadata(&self) -> bool {
        false
    }

    /// Whether requests go over the network (where latency calls for many in flight).
    fn is_remote(&self) -> bool {
        false
    }

    /// Stores `value` under `key`, declaring `content_encoding` where the store keeps such
    /// metadata. Stores without metadata ignore it.
    async fn put_encoded(
        &self,
        key: &str,
        value: Bytes,
        content_encoding: Option<&'static str>,
    ) -> Result<()> {
        let _ = content_encoding;
        self.put(key, value).await
    }

    /// The bytes of `key` in each of `ranges`, or `None` when `key` is absent. Backends
    /// coalesce nearby ranges into fewer requests.
    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
        let Some(all) = self.get(key).await? else {
            return Ok(None);
        };
        ranges
            .iter()
            .map(|r| {
                let (a, b) = (usize::try_from(r.start), usize::try_from(r.end));
                match (a, b) {
                    (Ok(a), Ok(b)) if a <= b && b <= all.len() => Ok(all.slice(a..b)),
                    _ => Err(Error::store(
                        &self.url_of(key),
                        format!("range {r:?} outside the object's {} bytes", all.len()),
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The bytes of `key` in `range` and the object's total size, or `None` when `key` is
    /// absent. A range reaching past the end comes back short.
    async fn get_range_sized(&self, key: &str, range: Range<u64>) -> Result<Option<(Bytes, u64)>> {
        let Some(all) = self.get(key).await? else {
            return Ok(None);
        };
        let len = all.len() as u64;
        let (a, b) = (range.start.min(len), range.end.min(len));
        Ok(Some((all.slice(a as usize..b.max(a) as usize), len)))
    }

    /// [`Store::get_range_sized`] plus the version tag (an ETag) of the object the bytes
    /// came from, where the store keeps one.
    async fn get_range_sized_tagged(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<Option<(Bytes, u64, Option<String>)>> {
        Ok(self
            .get_range_sized(key, range)
            .await?
            .map(|(bytes, size)| (bytes, size, None)))
    }

    /// [`Store::get_range`] of the version `tag` (from [`Store::get_range_sized_tagged`]):
    /// `Error::Changed` when the answer comes from another version of the object. Stores
    /// that keep no tags, and `tag: None`, read whatever is there.
    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let _ = tag;
        self.get_range(key, range).await
    }

    /// The bytes of `key` in `range`, or `None` when `key` is absent.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        let got = self.get_ranges(key, std::slice::from_ref(&range)).await?;
        Ok(got.and_then(|v| v.into_iter().next()))
    }
}

/// Options for the store a URL names: `(key, value)` pairs from `storage_options`, minus
/// `concurrency`, which the engine handles.
pub type StoreOptions = [(String, String)];

/// Opens the store a URL names: a plain path, `file://` or `memory://`, `s3://`, `gs://`,
/// `http(s)://`. With `create`, a missing local directory is made.
pub fn open_url(url: &str, create: bool) -> Result<Arc<dyn Store>> {
    open_url_with(url, create, &[])
}

/// [`open_url`] with storage options (credentials, endpoints, retries, timeouts).
pub fn open_url_with(url: &str, create: bool, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(ObjectStoreBackend::from_url_with(
        url, create, options,
    )?))
}
