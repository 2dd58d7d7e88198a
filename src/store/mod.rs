//! Key-value stores. A layer is a prefix in a store; every backend implements [`Store`].
//! `object` wraps the `object_store` crate (local disk and memory now; S3, GCS and HTTP in
//! the cloud issue). The Python-mapping adapter lives in `python/` because it needs the GIL.

mod object;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub use object::ObjectStoreBackend;

/// A key-value store holding one layer. Keys are `/`-separated and relative to the layer.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// A printable location of `key` for messages (never with credentials).
    fn url_of(&self, key: &str) -> String;

    /// The value under `key`, or `None` when it is absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key` atomically: readers see the old value or the new one.
    async fn put(&self, key: &str, value: Bytes) -> Result<()>;

    /// Removes `key`; an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Opens the store a URL names: a plain path, `file://` or `memory://`.
/// With `create`, a missing local directory is made.
pub fn open_url(url: &str, create: bool) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(ObjectStoreBackend::from_url(url, create)?))
}
