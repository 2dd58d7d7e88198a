//! The `object_store` crate behind our [`Store`] trait.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode as OsPutMode,
    PutOptions as OsPutOptions, UpdateVersion,
};

use super::cloud::{self, Scheme};
use super::{local_path, local_read, local_write};
use super::{Listed, Object, PutMode, PutOptions, Ranged, ReadStore, Store, StoreOptions, Version};
use crate::error::{Cause, Error, Result};

/// What a write to an HTTP store says.
const HTTP_READ_ONLY: &str = "HTTP stores are read-only (write to s3://, gs:// or a local path)";

/// A store backed by any `object_store` implementation, rooted at a prefix.
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    /// The URL of the layer root, for messages; ends without a slash.
    url: String,
    /// The layer's path inside `inner` (empty when `inner` is already rooted there).
    prefix: Path,
    /// Remote stores: each operation ends by then, retries included.
    deadline: Option<Duration>,
    /// Remote stores: how often a response body cut off mid-transfer is fetched again
    /// (see [`is_body_error`]), and a failed conditional put is tried again (see
    /// `put_if`); the configured `retries`.
    body_retries: usize,
    /// Object stores keep Content-Encoding; file systems and memory do not.
    remote: bool,
    /// Local layers: the directory `inner` is rooted at, whose files are read directly
    /// (see `local_read`).
    local_root: Option<PathBuf>,
    read_only: bool,
    /// What identifies the version a conditional put expects.
    versions: Versions,
    /// S3 relying on the instance-metadata service for credentials: its endpoint, and what
    /// to say when a request fails there (see `cloud::missing_credentials`).
    missing_credentials: Option<(String, String)>,
    /// No credentials were found, so requests go unsigned: what a refusal adds.
    unsigned: Option<String>,
}

/// How a store names versions for conditional puts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Versions {
    /// No conditional puts: HTTP (read-only), S3 look-alikes without them, and local file
    /// systems without directory locks (NFS, Windows).
    None,
    /// By ETag (If-Match / If-None-Match): memory and S3.
    ETag,
    /// By generation (`x-goog-if-generation-match`): GCS.
    Generation,
    /// By inode, size and time, compared and renamed under a directory lock: local disks
    /// where directory locks work (see `local_write`).
    Local,
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
    /// Opens a plain path, `file://` URL or `memory://name`, `s3://`, `gs://` or `http(s)://`.
    pub fn from_url(url: &str, create: bool) -> Result<Self> {
        Self::from_url_with(url, create, &[])
    }

    /// [`ObjectStoreBackend::from_url`] with storage options (see `cloud.rs`).
    pub fn from_url_with(url: &str, create: bool, options: &StoreOptions) -> Result<Self> {
        if let Some(scheme) = Scheme::of(url) {
            let c = cloud::connect(url, scheme, options)?;
            return Ok(ObjectStoreBackend {
                inner: c.store,
                url: c.url,
                prefix: c.prefix,
                deadline: Some(c.deadline),
                body_retries: c.retries,
                remote: true,
                local_root: None,
                read_only: c.read_only,
                missing_credentials: c.missing_credentials,
                unsigned: c.unsigned,
                versions: match scheme {
                    // S3 look-alikes without If-Match, configured `conditional_put: disabled`.
                    Scheme::S3 if !c.conditional_puts => Versions::None,
                    Scheme::S3 => Versions::ETag,
                    Scheme::Gcs => Versions::Generation,
                    Scheme::Http => Versions::None,
                },
            });
        }
        cloud::reject_for_local(url, options)?;
        if let Some(name) = url.strip_prefix("memory://") {
            let name = name.trim_end_matches('/');
            return Ok(Self::rooted(memory_store(name), format!("memory://{name}")));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            if !scheme.eq_ignore_ascii_case("file") {
                return Err(Error::invalid(format!(
                    "{url}: the {scheme}:// scheme is not supported (local paths, file://, \
                     memory://, s3://, gs://, http:// and https:// are)"
                )));
            }
        }
        let path = local_path::path_of(url)?;
        if !create && !path.is_dir() {
            return Err(Error::LayerNotFound {
                url: url.to_string(),
            });
        }
        Self::local(&path, create).map_err(|e| Error::store_caused(url, e))
    }

    fn local(path: &FsPath, create: bool) -> std::io::Result<Self> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let root = std::path::absolute(path)?;
        let inner = LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?;
        let url = local_path::url_of(&root);
        let store = Self::rooted(Arc::new(inner), url.trim_end_matches('/').to_string());
        let versions = if local_write::directory_locks_work(&root) {
            Versions::Local
        } else {
            Versions::None
        };
        Ok(ObjectStoreBackend {
            local_root: Some(root),
            versions,
            ..store
        })
    }

    /// A memory store (or, with `local_root` and `versions` set after, a local one) already
    /// rooted at the layer.
    fn rooted(inner: Arc<dyn ObjectStore>, url: String) -> Self {
        ObjectStoreBackend {
            inner,
            url,
            prefix: Path::default(),
            deadline: None,
            body_retries: 0,
            remote: false,
            local_root: None,
            read_only: false,
            versions: Versions::ETag,
            missing_credentials: None,
            unsigned: None,
        }
    }

    fn path(&self, key: &str) -> Result<Path> {
        let parsed = if self.prefix.as_ref().is_empty() {
            Path::parse(key)
        } else {
            Path::parse(format!("{}/{key}", self.prefix))
        };
        parsed.map_err(|e| Error::store(&self.url_of(key), format!("invalid key: {e}")))
    }

    /// The engine error for a failed operation on `key` (credentials in URLs scrubbed).
    fn error(&self, key: &str, e: object_store::Error) -> Error {
        let url = self.url_of(key);
        let reason = cloud::scrub(&e.to_string());
        let denied = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        );
        let source = clean_cause(e);
        if let Some((endpoint, message)) = &self.missing_credentials {
            // The request never left: asking the metadata service for credentials failed.
            if reason.contains(endpoint.as_str()) {
                let reason = format!("{message} (the metadata service: {reason})");
                return Error::PermissionDenied {
                    url,
                    reason,
                    source,
                };
            }
        }
        if denied {
            let reason = match &self.unsigned {
                Some(note) => format!("{reason}; {note}"),
                None => reason,
            };
            Error::PermissionDenied {
                url,
                reason,
                source,
            }
        } else {
            Error::Store {
                url,
                reason,
                source,
            }
        }
    }

    /// Runs one store operation under the deadline, so a server that stops answering is an
    /// error naming the URL, never a hang.
    async fn timed<T>(&self, key: &str, op: impl Future<Output = T>) -> Result<T> {
        match self.deadline {
            None => Ok(op.await),
            Some(deadline) => tokio::time::timeout(deadline, op).await.map_err(|_| {
                Error::store(
                    &self.url_of(key),
                    format!(
                        "no answer within the deadline ({:.1} s)",
                        deadline.as_secs_f64()
                    ),
                )
            }),
        }
    }

    /// [`Self::timed`] for a read that may be run again: when the response body is cut off
    /// mid-transfer and object_store could not resume it (it resumes only objects with an
    /// ETag, which plain HTTP servers often omit), the whole read is retried, up to
    /// `body_retries` times with backoff, all within the deadline.
    async fn timed_read<T, F, Fut>(&self, key: &str, mut op: F) -> Result<object_store::Result<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.timed(key, async {
            let mut attempt = 0;
            loop {
                match op().await {
                    Err(e) if attempt < self.body_retries && is_body_error(&e) => {
                        attempt += 1;
                        let ms = 50u64 << attempt.min(6);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    done => return done,
                }
            }
        })
        .await
    }

    /// Puts `value` under `key` in `mode`, declaring `content_encoding` where the store keeps
    /// attributes; the outer error is ours (read-only store, bad key, deadline), the inner
    /// object_store's, for the caller to interpret.
    async fn put_with(
        &self,
        key: &str,
        value: Bytes,
        content_encoding: Option<&'static str>,
        mode: OsPutMode,
    ) -> Result<object_store::Result<()>> {
        self.check_writable(key)?;
        let path = self.path(key)?;
        let mut attributes = Attributes::new();
        // `put_opts` let an encoding through only where the store keeps metadata.
        if let Some(encoding) = content_encoding {
            attributes.insert(Attribute::ContentEncoding, encoding.into());
        }
        let options = OsPutOptions {
            mode,
            attributes,
            ..Default::default()
        };
        let put = self.inner.put_opts(&path, value.into(), options);
        Ok(self.timed(key, put).await?.map(|_| ()))
    }

    /// Why this store cannot be written (HTTP), or `None` where it can: [`super::open_url`]
    /// then hands it out as a reader only.
    pub fn read_only(&self) -> Option<&'static str> {
        self.read_only.then_some(HTTP_READ_ONLY)
    }

    /// Writes through a backend made directly (not through [`super::open_url`]) still meet
    /// the read-only refusal.
    fn check_writable(&self, key: &str) -> Result<()> {
        match self.read_only() {
            Some(why) => Err(Error::store(&self.url_of(key), why)),
            None => Ok(()),
        }
    }

    /// `get` for a local layer: the file read directly (see `local_read`).
    async fn get_local(&self, root: &FsPath, key: &str) -> Result<Option<Object>> {
        let path = self.path(key)?;
        // `path` parsed: no `..` or empty segments, so the file lies under `root`.
        let file = root.join(path.as_ref());
        let read = tokio::task::spawn_blocking(move || local_read::read_file(&file));
        let versioned = self.versions == Versions::Local;
        match read.await {
            Ok(Ok(found)) => Ok(found.map(|(bytes, meta)| Object {
                bytes,
                content_encoding: None,
                version: versioned.then(|| local_write::version_of(&meta)),
            })),
            Ok(Err(e)) => Err(Error::store_caused(&self.url_of(key), e)),
            Err(e) => Err(Error::store_caused(&self.url_of(key), e)),
        }
    }

    /// A put to a local layer where directory locks work, in any mode (see `local_write`).
    async fn put_local(
        &self,
        root: &FsPath,
        key: &str,
        value: Bytes,
        mode: PutMode,
    ) -> Result<bool> {
        let path = self.path(key)?;
        // object_store's own check: such names are temporary files, hidden from listings.
        if local_write::temporary_of(key).is_some() {
            return Err(Error::store(
                &self.url_of(key),
                "invalid key: names ending in # and digits are reserved for temporary files",
            ));
        }
        // `path` parsed: no `..` or empty segments, so the file lies under `root`.
        let file = root.join(path.as_ref());
        let put = tokio::task::spawn_blocking(move || local_write::put(&file, &value, &mode));
        match put.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(e)) => Err(Error::store_caused(&self.url_of(key), e)),
            Err(e) => Err(Error::store_caused(&self.url_of(key), e)),
        }
    }

    /// A conditional put, retried where a failed attempt may succeed: `false` when the
    /// condition does not hold.
    async fn put_conditional(
        &self,
        key: &str,
        value: Bytes,
        content_encoding: Option<&'static str>,
        mode: OsPutMode,
    ) -> Result<bool> {
        // object_store does not retry conditional puts (an attempt that failed after it was
        // applied makes the next one fail its precondition). That is safe here: a false
        // answer makes the caller read the object again and redo its change, which it then
        // finds already made. So failed attempts are retried as plain puts are.
        let attempts = async {
            let mut attempt = 0;
            loop {
                match self
                    .put_with(key, value.clone(), content_encoding, mode.clone())
                    .await?
                {
                    Err(e) if attempt < self.body_retries && is_transient(&e) => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                    }
                    outcome => return Ok(outcome),
                }
            }
        };
        match self.timed(key, attempts).await?? {
            Ok(()) => Ok(true),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

/// `e` as the source of an engine error, unless something in its chain needed scrubbing of
/// credentials: loggers print source chains whole, and only the message is scrubbed.
fn clean_cause(e: object_store::Error) -> Option<Cause> {
    let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = link {
        let text = err.to_string();
        if cloud::scrub(&text) != text {
            return None;
        }
        link = err.source();
    }
    Some(Box::new(e))
}

/// Whether a failed request may succeed if tried again: anything but an answer about the
/// object or the caller's rights.
fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error::*;
    !matches!(
        e,
        NotFound { .. }
            | Precondition { .. }
            | AlreadyExists { .. }
            | NotImplemented { .. }
            | PermissionDenied { .. }
            | Unauthenticated { .. }
            | InvalidPath { .. }
    )
}

/// Whether `e` is a transfer that broke after the response had started (the connection reset
/// or closed mid-body, a body timeout). object_store reports those as an `HttpError` of its
/// own; failed requests it already retried come wrapped in its retry error instead.
fn is_body_error(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::Generic { source, .. } => source
            .downcast_ref::<object_store::client::HttpError>()
            .is_some_and(|h| {
                use object_store::client::HttpErrorKind::*;
                matches!(h.kind(), Request | Interrupted | Timeout | Connect)
            }),
        _ => false,
    }
}

#[async_trait]
impl ReadStore for ObjectStoreBackend {
    fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.url, key)
    }

    fn is_remote(&self) -> bool {
        self.remote
    }

    fn keeps_metadata(&self) -> bool {
        self.remote
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        // `path` parsed: no `..` or empty segments, so the file lies under the root.
        let path = self.path(key).ok()?;
        Some(self.local_root.as_ref()?.join(path.as_ref()))
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        if let Some(root) = &self.local_root {
            return self.get_local(root, key).await;
        }
        let path = self.path(key)?;
        let fetch = || async {
            let r = self.inner.get(&path).await?;
            let content_encoding = r
                .attributes
                .get(&Attribute::ContentEncoding)
                .map(|v| v.to_string());
            // A server that names no version of the kind the store needs (an S3 look-alike
            // without ETags, a GCS look-alike without generations) gets a plain put.
            let named = match self.versions {
                Versions::ETag => r.meta.e_tag.is_some(),
                Versions::Generation => r.meta.version.is_some(),
                Versions::None | Versions::Local => false,
            };
            let version = named.then(|| Version {
                e_tag: r.meta.e_tag.clone(),
                version: r.meta.version.clone(),
            });
            r.bytes().await.map(|bytes| Object {
                bytes,
                content_encoding,
                version,
            })
        };
        match self.timed_read(key, fetch).await? {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>> {
        let path = self.path(key)?;
        let (range_start, range_end) = (range.start, range.end);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let fetch = || async {
            let r = self.inner.get_opts(&path, options.clone()).await?;
            let (size, e_tag) = (r.meta.size, r.meta.e_tag.clone());
            r.bytes().await.map(|bytes| Ranged { bytes, size, e_tag })
        };
        match self.timed_read(key, fetch).await? {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                // A range past the end is an error in most backends (416, or a local
                // out-of-range read): answer short instead, as the trait promises, so the
                // caller can tell a truncated object from a failing store.
                let Ok(Ok(meta)) = self.timed(key, self.inner.head(&path)).await else {
                    return Err(self.error(key, e));
                };
                if meta.size >= range_end {
                    return Err(self.error(key, e));
                }
                let start = range_start.min(meta.size);
                let bytes = if start < meta.size {
                    match self
                        .timed_read(key, || self.inner.get_range(&path, start..meta.size))
                        .await?
                    {
                        Ok(b) => b,
                        Err(e) => return Err(self.error(key, e)),
                    }
                } else {
                    Bytes::new()
                };
                Ok(Some(Ranged {
                    bytes,
                    size: meta.size,
                    e_tag: meta.e_tag,
                }))
            }
        }
    }

    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
        let path = self.path(key)?;
        // object_store coalesces ranges less than 1 MiB apart into one request.
        match self
            .timed_read(key, || self.inner.get_ranges(&path, ranges))
            .await?
        {
            Ok(parts) => Ok(Some(parts)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let Some(tag) = tag else {
            let got = self.get_ranges(key, std::slice::from_ref(&range)).await?;
            return Ok(got.and_then(|parts| parts.into_iter().next()));
        };
        let path = self.path(key)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        // The tag of each answer is compared here rather than sent as If-Match: servers
        // send weak ETags (which never match in If-Match) and object_store's HTTP store
        // reports a 412 as a generic error; the answer's own ETag describes its bytes
        // either way.
        let fetch = || async {
            let r = self.inner.get_opts(&path, options.clone()).await?;
            let same = r.meta.e_tag.as_deref().is_none_or(|t| t == tag);
            r.bytes().await.map(|bytes| (bytes, same))
        };
        match self.timed_read(key, fetch).await? {
            Ok((bytes, true)) => Ok(Some(bytes)),
            Ok((_, false)) => Err(Error::Changed {
                url: self.url_of(key),
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                // A range that lay inside the version read can lie past the end of a
                // shorter one written since, and some stores (memory, S3's 416) refuse it
                // before showing an ETag: if the object is no longer that version, say so.
                let changed = match self.inner.head(&path).await {
                    Ok(meta) => meta.e_tag.as_deref().is_some_and(|t| t != tag),
                    Err(object_store::Error::NotFound { .. }) => true,
                    Err(_) => false,
                };
                Err(if changed {
                    Error::Changed {
                        url: self.url_of(key),
                    }
                } else {
                    self.error(key, e)
                })
            }
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        if let Some(root) = &self.local_root {
            // `path` parsed: no `..` or empty segments, so the file lies under `root`.
            let file = root.join(path.as_ref());
            return match std::fs::metadata(&file) {
                Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::store_caused(&self.url_of(key), e)),
            };
        }
        match self.timed(key, self.inner.head(&path)).await? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let path = self.path(dir)?;
        // Keys come back whole; the layer's own prefix (and its slash) is cut off them.
        let skip = match self.prefix.as_ref() {
            "" => 0,
            p => p.len() + 1,
        };
        // No overall deadline: a listing takes one request per 1000 keys, however many
        // there are; each request has its own timeout and retries.
        match self.inner.list(Some(&path)).try_collect::<Vec<_>>().await {
            Ok(metas) => Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let key = m.location.as_ref().get(skip..)?.to_string();
                    Some(Listed { key, size: m.size })
                })
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(dir, e)),
        }
    }
}

#[async_trait]
impl Store for ObjectStoreBackend {
    fn conditional_puts(&self) -> bool {
        self.versions != Versions::None
    }

    async fn put_opts(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.check_writable(key)?;
        if options.content_encoding.is_some() && !self.keeps_metadata() {
            return Err(Error::store(
                &self.url_of(key),
                "this store keeps no per-object metadata (Content-Encoding)",
            ));
        }
        if let (Some(root), Versions::Local) = (&self.local_root, self.versions) {
            return self.put_local(root, key, value, options.mode).await;
        }
        let mode = match options.mode {
            PutMode::Overwrite => {
                return self
                    .put_with(key, value, options.content_encoding, OsPutMode::Overwrite)
                    .await?
                    .map(|()| true)
                    .map_err(|e| self.error(key, e));
            }
            _ if !self.conditional_puts() => {
                return Err(Error::store(
                    &self.url_of(key),
                    "this store has no conditional puts (check Store::conditional_puts first)",
                ));
            }
            PutMode::IfAbsent => OsPutMode::Create,
            PutMode::IfVersion(Version { e_tag, version }) => {
                OsPutMode::Update(UpdateVersion { e_tag, version })
            }
        };
        self.put_conditional(key, value, options.content_encoding, mode)
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check_writable(key)?;
        let path = self.path(key)?;
        match self.timed(key, self.inner.delete(&path)).await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn delete_dir(&self, dir: &str) -> Result<()> {
        self.check_writable(dir)?;
        let path = self.path(dir)?;
        if let Some(root) = &self.local_root {
            // The whole directory at once, the temporary files of killed writers (which
            // listing hides) included. `path` parsed, so it lies under `root`.
            let target = root.join(path.as_ref());
            // A file (or a link) of that name holds no keys under it: nothing to remove.
            // remove_dir_all never follows links out of the layer either.
            if !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Ok(());
            }
            return match std::fs::remove_dir_all(&target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::store_caused(&self.url_of(dir), e)),
            };
        }
        // Listed and deleted as one stream: object stores delete in batches (S3 up to 1000
        // keys per request), and no listing is held in memory. No overall deadline, as for
        // `list`: each request has its own.
        let inner = self.inner.clone();
        let locations = inner.list(Some(&path)).map_ok(|meta| meta.location).boxed();
        let deleting = inner
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) });
        match deleting.await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URL schemes are case-insensitive (RFC 3986), so `FILE://` opens the same directory as
    /// `file://`, and a put lands there as a file named after the key.
    #[test]
    fn file_urls_in_any_case_open_the_directory() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid(e.to_string()))?;
        let url = format!("FILE://{}", dir.path().display());
        let store = ObjectStoreBackend::from_url(&url, false)?;
        let io = crate::runtime::io();
        io.block_on(store.put("info", Bytes::from_static(b"{}")))?;
        assert!(dir.path().join("info").is_file());
        assert!(ObjectStoreBackend::from_url("ftp://host/layer", false).is_err());
        Ok(())
    }
}
