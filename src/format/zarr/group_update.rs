//! Updating the attributes of a group (an OME-Zarr image's `multiscales`) by
//! read-modify-write: the file holding them (v3 `zarr.json`, v2 `.zattrs`) is read with its
//! version, changed, and put only if it is still that version, where the store has
//! conditional puts; a writer who came in between makes the update read and apply again
//! ([`conflicts_after`]), so two processes adding levels to one image both end in the group.
//! Where the store has none (a local file system without directory locks, a Python mapping
//! without `compare_and_set`), the last writer wins.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::group::GroupMetadata;
use super::metadata::ZarrFormat;
use crate::error::{Error, Result};
use crate::format::rmw::{block_on, conflicts_after};
use crate::store::{Handle, PutMode, PutOptions};

/// Applies `edit` to the attributes of the group at the store's root, as stored now, and
/// stores the result, again until no other writer changed them in between (see the module
/// notes). `edit` may run more than once, each time on the attributes as stored then.
pub(super) fn update_attributes(
    store: &Handle,
    zarr_format: ZarrFormat,
    edit: impl Fn(&mut Map<String, Value>) -> Result<()>,
) -> Result<()> {
    let key = match zarr_format {
        ZarrFormat::V3 => "zarr.json",
        ZarrFormat::V2 => ".zattrs",
    };
    let url = store.url_of(key);
    let conditional = store.conditional_puts();
    for round in 1.. {
        let found = block_on(store.get(key))?;
        let mut group = match zarr_format {
            ZarrFormat::V3 => {
                let object = found.as_ref().ok_or_else(|| gone(store))?;
                GroupMetadata::parse_v3(&store.url_of(""), &object.bytes)?
            }
            ZarrFormat::V2 => {
                let zgroup = block_on(store.get_bytes(".zgroup"))?.ok_or_else(|| gone(store))?;
                let attrs = found.as_ref().map(|o| &o.bytes[..]);
                GroupMetadata::parse_v2(&store.url_of(""), &zgroup, attrs)?
            }
        };
        edit(&mut group.attributes)?;
        let bytes = group
            .to_files()?
            .into_iter()
            .find(|(name, _)| *name == key)
            .map(|(_, b)| Bytes::from(b))
            .ok_or_else(|| Error::internal(format!("{url}: no {key} to write")))?;
        let mode = match (&found, conditional) {
            (_, false) => PutMode::Overwrite,
            (Some(object), true) => match &object.version {
                Some(v) => PutMode::IfVersion(v.clone()),
                None => PutMode::Overwrite,
            },
            (None, true) => PutMode::IfAbsent,
        };
        let options = PutOptions {
            mode,
            content_encoding: None,
        };
        let stored = block_on(store.writer(key)?.put_opts(key, bytes, options))?;
        if conflicts_after(round, vec![(0, stored)], |_| url.clone())?.is_none() {
            return Ok(());
        }
    }
    Ok(())
}

fn gone(store: &Handle) -> Error {
    Error::invalid(format!(
        "{}: the OME-Zarr image's group is gone",
        store.url_of("")
    ))
}
