//! Key-value stores. A layer is a prefix in a store. Reading and writing are two traits:
//! every backend implements [`ReadStore`]; those that can be written also implement
//! [`Store`], so a read-only store (HTTP) is a type that has no write methods, not a runtime
//! check. [`Handle`] is what a layer holds: a reader, plus a writer where there is one.
//!
//! `object` wraps the `object_store` crate (local disk, memory, S3, GCS and HTTP); `cloud`
//! turns cloud URLs and `storage_options` into configured clients; `conformance` checks any
//! implementation against the contract written here. The Python-mapping adapter lives in
//! `python/` because it needs the GIL.

mod aws_process;
mod aws_profile;
mod aws_sts;
mod cloud;
mod cloud_host;
#[doc(hidden)]
pub mod conformance;
mod gcp_user;
mod handle;
pub mod local_path;
mod local_read;
mod local_write;
mod object;
mod refresh;
mod small;
mod whole;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub use cloud::Scheme;
pub use handle::Handle;
pub use local_write::{temporary_of, TEMPORARY_MAX_AGE};
// For formats that write files of their own beside a store (H5s blocks), with the same
// temporary names, directory lock and versions as the local store's puts.
#[cfg(feature = "hdf5")]
pub(crate) use local_write::{create_temporary, directory_locks_work, publish, stamp, version_of};
pub use object::ObjectStoreBackend;
pub use small::{get_small, Small};
pub use whole::{range_of, ranges_of};

/// The version of an object a conditional put expects to replace: an ETag and/or a
/// store-specific version (a GCS generation), as the store named it when the object was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The ETag the store named, if any.
    pub e_tag: Option<String>,
    /// The store-specific version (a GCS generation), if any.
    pub version: Option<String>,
}

/// How [`Store::put_opts`] treats what the key holds already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there (last writer wins).
    #[default]
    Overwrite,
    /// Store only if the key is absent.
    IfAbsent,
    /// Store only if the key still holds this version (from [`Object::version`]).
    IfVersion(Version),
}

/// A value read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The value.
    pub bytes: Bytes,
    /// The `Content-Encoding` stored with the object; always `None` where the store keeps no
    /// per-object metadata ([`ReadStore::keeps_metadata`]).
    pub content_encoding: Option<String>,
    /// What [`PutMode::IfVersion`] must expect to replace this object; `None` where the
    /// store has no conditional puts ([`Store::conditional_puts`]) or named no version.
    pub version: Option<Version>,
}

/// Part of a value read from a store ([`ReadStore::get_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranged {
    /// The bytes asked for; short where the range reaches past the end of the object.
    pub bytes: Bytes,
    /// The size of the whole object.
    pub size: u64,
    /// The ETag of the object the bytes came from, where the store keeps one (for
    /// [`ReadStore::get_range_if`]).
    pub e_tag: Option<String>,
}

/// A key found by [`ReadStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the layer, like all keys.
    pub key: String,
    /// The size of its value in bytes.
    pub size: u64,
}

/// Options of a put ([`Store::put_opts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// What the put may replace.
    pub mode: PutMode,
    /// The `Content-Encoding` to store with the object. Only for stores that keep
    /// per-object metadata ([`ReadStore::keeps_metadata`]); elsewhere it is an error.
    pub content_encoding: Option<&'static str>,
}

/// The read half of a key-value store holding one layer. Keys are `/`-separated and
/// relative to the layer.
#[async_trait]
pub trait ReadStore: Send + Sync + Debug {
    /// A printable location of `key` for messages (never with credentials).
    fn url_of(&self, key: &str) -> String;

    /// Whether requests go over the network (where latency calls for many in flight).
    fn is_remote(&self) -> bool {
        false
    }

    /// Whether the store keeps per-object metadata (`Content-Encoding`): object stores do,
    /// file systems, memory and mappings do not.
    fn keeps_metadata(&self) -> bool {
        false
    }

    /// The file on this machine that holds `key`'s value, where the store is a local
    /// directory: a reader that wants parts of a large value straight in its own memory
    /// (positional reads into the output, no whole-value buffer) opens it itself. `None`
    /// for every other store, and for keys the store would refuse.
    fn local_file(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    /// The value under `key`, with its metadata and version, or `None` when it is absent.
    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// The bytes under `key`, or `None` when it is absent.
    async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.get(key).await?.map(|object| object.bytes))
    }

    /// The bytes of `key` in `range`, with the object's size and ETag, or `None` when `key`
    /// is absent. A range reaching past the end comes back short (empty past the end).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>>;

    /// The bytes of `key` in each of `ranges`, or `None` when `key` is absent. A range
    /// reaching past the end of the object comes back short or is an error naming the key,
    /// depending on the backend: callers check lengths. Backends coalesce nearby ranges into
    /// fewer requests.
    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>>;

    /// The bytes of `key` in `range` from the version with ETag `tag` (from
    /// [`Ranged::e_tag`]): `Error::Changed` when the answer comes from another version. With
    /// `tag: None`, and in stores that keep no ETags, whatever is there. Past the end, as
    /// [`ReadStore::get_ranges`].
    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Option<Bytes>>;

    /// The size in bytes of the value under `key`, or `None` when it is absent (a
    /// directory holds no value), without fetching the value where the store can tell.
    async fn size(&self, key: &str) -> Result<Option<u64>>;

    /// Every key under the directory `dir` (keys starting with `dir/`, at any depth) with
    /// its size, in no particular order; a key merely starting with the same letters
    /// (`dir_2/...`) is not under it. Stores that cannot list (HTTP) raise.
    async fn list(&self, dir: &str) -> Result<Vec<Listed>>;
}

/// A key-value store that can also be written.
#[async_trait]
pub trait Store: ReadStore {
    /// Whether [`PutMode::IfAbsent`] and [`PutMode::IfVersion`] are atomic here (memory, S3,
    /// GCS, local disks where directory locks work, mappings with `compare_and_set`). Where they are not, [`Store::put_opts`] refuses them, and callers choose
    /// what to do instead (the array writes last-writer-wins).
    fn conditional_puts(&self) -> bool;

    /// Stores `value` under `key` atomically (readers see the old value or the new one) as
    /// `options` say: `false`, having stored nothing, when the condition of `options.mode`
    /// does not hold (another writer came first).
    async fn put_opts(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool>;

    /// Stores `value` under `key`, replacing what is there.
    async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        self.put_opts(key, value, PutOptions::default())
            .await
            .map(|_| ())
    }

    /// Removes `key`; an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Removes every key under the directory `dir` (as [`ReadStore::list`] finds them), and
    /// only those.
    async fn delete_dir(&self, dir: &str) -> Result<()>;
}

/// Options for the store a URL names: `(key, value)` pairs from `storage_options`, minus
/// `concurrency`, which the engine handles.
pub type StoreOptions = [(String, String)];

/// Opens the store a URL names: a plain path, `file://` or `memory://`, `s3://`, `gs://`,
/// `http(s)://`. With `create`, a missing local directory is made.
pub fn open_url(url: &str, create: bool) -> Result<Handle> {
    open_url_with(url, create, &[])
}

/// [`open_url`] with storage options (credentials, endpoints, retries, timeouts). HTTP
/// stores come back read-only.
pub fn open_url_with(url: &str, create: bool, options: &StoreOptions) -> Result<Handle> {
    let backend = ObjectStoreBackend::from_url_with(url, create, options)?;
    Ok(match backend.read_only() {
        Some(why) => Handle::read_only(Arc::new(backend), why),
        None => Handle::from(Arc::new(backend) as Arc<dyn Store>),
    })
}
