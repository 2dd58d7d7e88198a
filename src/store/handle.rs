//! What a layer holds of its store: a reader always, a writer where the store can be
//! written. Reads go through `Deref` to the reader; writes ask for the writer, which a
//! read-only store does not have.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::{ReadStore, Store};
use crate::error::{Error, Result};

/// A layer's store: readable always, writable unless opened read-only.
#[derive(Clone)]
pub struct Handle {
    read: Arc<dyn ReadStore>,
    /// The same store as a writer, or why it cannot be written (for the error message).
    write: Result<Arc<dyn Store>, &'static str>,
}

impl Handle {
    /// A store that cannot be written; writes fail with `why` (naming the key's URL).
    pub fn read_only(store: Arc<dyn ReadStore>, why: &'static str) -> Self {
        Handle {
            read: store,
            write: Err(why),
        }
    }

    /// The reader.
    pub fn reader(&self) -> &Arc<dyn ReadStore> {
        &self.read
    }

    /// Whether the store can be written with conditional puts
    /// ([`Store::conditional_puts`]); `false` where it cannot be written at all.
    pub fn conditional_puts(&self) -> bool {
        self.write.as_ref().is_ok_and(|w| w.conditional_puts())
    }

    /// The writer, or a store error naming `key` where the store is read-only.
    pub fn writer(&self, key: &str) -> Result<&Arc<dyn Store>> {
        self.write
            .as_ref()
            .map_err(|why| Error::store(&self.read.url_of(key), why))
    }
}

impl From<Arc<dyn Store>> for Handle {
    fn from(store: Arc<dyn Store>) -> Self {
        Handle {
            read: store.clone(),
            write: Ok(store),
        }
    }
}

impl Deref for Handle {
    type Target = dyn ReadStore;

    fn deref(&self) -> &Self::Target {
        &*self.read
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.write {
            Ok(_) => write!(f, "Handle({:?})", self.read),
            Err(_) => write!(f, "Handle({:?}, read-only)", self.read),
        }
    }
}
