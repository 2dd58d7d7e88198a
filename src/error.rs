//! One error type for the whole engine. Every variant names the URL, key or field involved,
//! so that a message read in a log says where to look. The Python bindings map each variant
//! onto one exception class (`bigarrays.errors`).

/// Errors raised by the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL holds no layer (no Precomputed `info`, no Zarr metadata).
    #[error("{url}: no layer here (no 'info', and no Zarr 'zarr.json', '.zarray' or '.zgroup')")]
    LayerNotFound {
        /// The layer or object URL.
        url: String,
    },

    /// What the URL names is not there: an HDF5 file, or the dataset asked for in one.
    #[error("{url}: {reason}")]
    NotFound {
        /// The layer or object URL.
        url: String,
        /// What is missing, in words.
        reason: String,
    },

    /// `create` found an existing layer and was not told to overwrite it.
    #[error("{url}: a layer already exists here (pass overwrite=True to replace it with an empty layer)")]
    LayerExists {
        /// The layer or object URL.
        url: String,
    },

    /// The layer's metadata is malformed or asks for something unsupported.
    #[error("{url}: {file} field '{field}': {reason}")]
    Info {
        /// The layer URL.
        url: String,
        /// The metadata file at fault: `info` for Precomputed; `zarr.json`, `.zarray`,
        /// `.zattrs` or `.zgroup` for Zarr.
        file: String,
        /// The key at fault (dotted for nested keys).
        field: String,
        /// What is wrong with it, in words.
        reason: String,
    },

    /// A chunk inside the bounds is absent and the layer was opened with `fill_missing=false`.
    #[error("{key}: chunk is missing (opened with fill_missing=False)")]
    MissingChunk {
        /// The chunk's store key.
        key: String,
    },

    /// A chunk's bytes cannot be turned into the voxels the layer's metadata promises.
    #[error("{key}: cannot decode chunk: {reason}")]
    ChunkDecode {
        /// The chunk's store key.
        key: String,
        /// Why it cannot be decoded, in words.
        reason: String,
        /// The codec's own typed error, when a codec raised it (`reason` is its message).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The key-value store failed (IO error, permission, a broken mapping). `reason` says
    /// what went wrong in words (credentials scrubbed); `source` keeps the error it came from
    /// (an `io::Error`, an `object_store::Error`, a Python exception) where there was one.
    #[error("{url}: {reason}")]
    Store {
        /// The URL of the object or store involved.
        url: String,
        /// What went wrong, in words.
        reason: String,
        #[source]
        /// The underlying error, where there was one.
        source: Option<Cause>,
    },

    /// An object changed (another writer replaced it) between the requests of one read
    /// that must all see the same version of it; readers retry, so this rarely escapes.
    #[error("{url}: changed while being read (a concurrent writer replaced it)")]
    Changed {
        /// The layer or object URL.
        url: String,
    },

    /// The store refused access (HTTP 401/403, missing or wrong credentials).
    #[error("{url}: permission denied: {reason}")]
    PermissionDenied {
        /// The URL access was refused to.
        url: String,
        /// What the store said, in words.
        reason: String,
        #[source]
        /// The underlying error, where there was one.
        source: Option<Cause>,
    },

    /// A write reached outside the layer's bounds; nothing was written.
    #[error("{reason}")]
    OutOfBounds {
        /// Which box reached where, in words.
        reason: String,
    },

    /// An argument makes no sense (wrong buffer length, bad option, unknown mip).
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong, in words.
        reason: String,
    },

    /// The caller asked the operation to stop (in Python: Ctrl-C) while it waited; what it
    /// had not yet done was abandoned (see [`crate::interrupt`]). A write stopped this way
    /// leaves each chunk it touches whole, old or new.
    #[error("interrupted")]
    Interrupted,

    /// A bug: a panic caught before it could cross into the caller.
    #[error("internal error (please report): {reason}")]
    Internal {
        /// The panic's message.
        reason: String,
    },
}

/// The error a store error came from, kept for callers that walk `source()` chains.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn info(url: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::metadata(url, "info", field, reason)
    }

    /// Malformed metadata in the file `file` (`zarr.json`, `.zarray`, ...) of the layer at `url`.
    pub(crate) fn metadata(
        url: &str,
        file: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Info {
            url: url.to_string(),
            file: file.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(key: &str, reason: impl Into<String>) -> Self {
        Error::ChunkDecode {
            key: key.to_string(),
            reason: reason.into(),
            source: None,
        }
    }

    /// A chunk decode error raised by a codec, kept as the source.
    pub(crate) fn decode_source(
        key: &str,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> Self {
        Error::ChunkDecode {
            key: key.to_string(),
            reason: source.to_string(),
            source: Some(source),
        }
    }

    /// A store error with no underlying cause (a refusal of our own, a deadline).
    pub(crate) fn store(url: &str, reason: impl std::fmt::Display) -> Self {
        Error::Store {
            url: url.to_string(),
            reason: reason.to_string(),
            source: None,
        }
    }

    /// A store error caused by `source`, whose message is the reason (as before sources
    /// were kept, so messages read the same).
    pub(crate) fn store_caused(
        url: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Store {
            url: url.to_string(),
            reason: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Error::Internal {
            reason: reason.into(),
        }
    }

    /// Turns the payload of a caught panic into an error, so no panic crosses an API boundary.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        Error::Internal { reason }
    }
}
