//! The `object_store` crate behind our [`Store`] trait.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::Store;
use crate::error::{Error, Result};

/// A store backed by any `object_store` implementation, rooted at a prefix.
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    /// The URL of the layer root, for messages; ends without a slash.
    url: String,
}

impl fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectStoreBackend({})", self.url)
    }
}

/// `memory://name` stores live for the whole process, so that two arrays opened on the same
/// name share data (object_store's own `memory://` parser makes a fresh store every time).
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

impl ObjectStoreBackend {
    /// Opens a plain path, `file://` URL or `memory://name`.
    pub fn from_url(url: &str, create: bool) -> Result<Self> {
        if let Some(name) = url.strip_prefix("memory://") {
            let name = name.trim_end_matches('/');
            return Ok(ObjectStoreBackend {
                inner: memory_store(name),
                url: format!("memory://{name}"),
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            if scheme != "file" {
                return Err(Error::invalid(format!(
                    "{url}: the {scheme}:// scheme is not supported yet (local paths, file:// and memory:// are)"
                )));
            }
        }
        let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        if !create && !path.is_dir() {
            return Err(Error::LayerNotFound {
                url: url.to_string(),
            });
        }
        Self::local(&path, create).map_err(|e| Error::store(url, e))
    }

    fn local(path: &FsPath, create: bool) -> std::io::Result<Self> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let root = std::path::absolute(path)?;
        let inner = LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?;
        let url = format!("file://{}", root.display());
        Ok(ObjectStoreBackend {
            inner: Arc::new(inner),
            url: url.trim_end_matches('/').to_string(),
        })
    }

    fn path(&self, key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| Error::store(&self.url_of(key), format!("invalid key: {e}")))
    }
}

#[async_trait]
impl Store for ObjectStoreBackend {
    fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.url, key)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        let result = match self.inner.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(&self.url_of(key), e)),
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        let path = self.path(key)?;
        self.inner
            .put(&path, value.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::store(&self.url_of(key), e))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(&self.url_of(key), e)),
        }
    }
}
